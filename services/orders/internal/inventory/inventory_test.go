package inventory_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/services/orders/internal/downstream"
	"github.com/bazaar-shop/bazaar/services/orders/internal/fakes"
	"github.com/bazaar-shop/bazaar/services/orders/internal/inventory"
	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
)

func newClient(t *testing.T, url string) *inventory.Client {
	t.Helper()
	c, err := inventory.New(downstream.Config{BaseURL: url, Timeout: time.Second, BackoffInitial: time.Millisecond, Credentials: fakes.Credentials{}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestQuoteReserveCommitRelease(t *testing.T) {
	t.Parallel()
	f := fakes.NewInventory(t)
	c := newClient(t, f.URL)
	ctx := context.Background()
	a, b := f.AddProduct(250, 5), f.AddProduct(99, 1)
	lines := []order.WantedLine{{ProductID: a, Quantity: 2}, {ProductID: b, Quantity: 1}}

	q, err := c.Quote(ctx, lines)
	if err != nil {
		t.Fatalf("quote: %v, want no error", err)
	}
	if q.TotalCents != 599 {
		t.Fatalf("quote total %d cents, want 599", q.TotalCents)
	}
	if q.Currency != "USD" {
		t.Fatalf("quote currency %q, want USD", q.Currency)
	}
	if len(q.Lines) != 2 {
		t.Fatalf("quote lines %+v, want 2", q.Lines)
	}
	if q.Lines[0].UnitPriceCents != 250 {
		t.Fatalf("quote line 0 unit price %d cents, want 250", q.Lines[0].UnitPriceCents)
	}
	if q.Lines[1].ProductID != b {
		t.Fatalf("quote line 1 product %s, want %s", q.Lines[1].ProductID, b)
	}
	_, err = c.Quote(ctx, []order.WantedLine{{ProductID: a, Quantity: 1}, {ProductID: uuid.New(), Quantity: 1}})
	var ae *apperr.Error
	if !errors.As(err, &ae) {
		t.Errorf("quote of an unknown product: %v, want an apperr", err)
	} else {
		if ae.Code != apperr.Invalid {
			t.Errorf("quote of an unknown product: code %s, want %s", ae.Code, apperr.Invalid)
		}
		if len(ae.Fields) != 1 {
			t.Errorf("quote of an unknown product: field errors %+v, want one", ae.Fields)
		} else if ae.Fields[0].Field != "items[1].product_id" {
			t.Errorf("quote of an unknown product: field %q named, want items[1].product_id", ae.Fields[0].Field)
		}
	}

	id := uuid.New()
	reserved, err := c.Reserve(ctx, id, lines)
	if err != nil {
		t.Fatal(err)
	}
	if len(reserved) != 2 || reserved[0] != q.Lines[0] || reserved[1] != q.Lines[1] {
		t.Errorf("reserved %+v, quoted %+v", reserved, q.Lines)
	}
	if _, err := c.Reserve(ctx, id, lines); err != nil { // idempotent
		t.Errorf("repeat reserve: %v", err)
	}
	if _, err := c.Reserve(ctx, uuid.New(), lines); !errors.Is(err, inventory.ErrOutOfStock) {
		t.Errorf("reserve beyond stock: %v, want out_of_stock", err)
	}
	if err := c.Commit(ctx, id); err != nil {
		t.Errorf("commit: %v", err)
	}
	if err := c.Commit(ctx, uuid.New()); apperr.CodeOf(err) != apperr.NotFound {
		t.Errorf("commit of no reservation: %v", err)
	}
	if err := c.Release(ctx, id); err != nil {
		t.Errorf("release: %v, want no error", err)
	}
	if n := f.Stock(a); n != 5 {
		t.Errorf("stock %d after the release, want 5", n)
	}
	if err := c.Release(ctx, uuid.New()); err != nil {
		t.Errorf("release of nothing: %v", err)
	}

	expired := uuid.New()
	if _, err := c.Reserve(ctx, expired, lines[:1]); err != nil {
		t.Fatal(err)
	}
	f.Expire(expired)
	err = c.Commit(ctx, expired)
	if !errors.Is(err, inventory.ErrReservationReleased) {
		t.Errorf("commit of an expired reservation: %v, want ErrReservationReleased", err)
	}
	if errors.Is(err, inventory.ErrOutOfStock) {
		t.Errorf("commit of an expired reservation: %v, want it not to be ErrOutOfStock", err)
	}
}
