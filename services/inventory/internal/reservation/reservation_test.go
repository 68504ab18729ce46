package reservation

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

// fields returns the field names of an apperr.Invalid error, or fails.
func fields(t *testing.T, err error) []string {
	t.Helper()
	var ae *apperr.Error
	if !errors.As(err, &ae) || ae.Code != apperr.Invalid {
		t.Fatalf("got %v, want an invalid error", err)
	}
	var names []string
	for _, f := range ae.Fields {
		names = append(names, f.Field)
	}
	return names
}

func TestParseQuantity(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2, MaxQuantity} {
		if q, err := ParseQuantity(n); err != nil {
			t.Errorf("ParseQuantity(%d): %v, want no error", n, err)
		} else if int(q) != n {
			t.Errorf("ParseQuantity(%d) = %d, want %d", n, q, n)
		}
	}
	for _, n := range []int{0, -1, MaxQuantity + 1} {
		if _, err := ParseQuantity(n); apperr.CodeOf(err) != apperr.Invalid {
			t.Errorf("ParseQuantity(%d) = %v, want invalid", n, err)
		}
	}
}

func items(n int) []Item {
	out := make([]Item, n)
	for i := range out {
		out[i] = Item{ProductID: uuid.New(), Quantity: 1}
	}
	return out
}

func TestNewBasket(t *testing.T) {
	t.Parallel()
	in := items(3)
	b, err := NewBasket(in)
	if err != nil {
		t.Fatalf("NewBasket: %v, want no error", err)
	}
	if !slices.Equal(b.Items(), in) {
		t.Fatalf("NewBasket items %+v, want %+v", b.Items(), in)
	}
	if got := b.ProductIDs(); len(got) != 3 {
		t.Errorf("ProductIDs = %v, want 3", got)
	} else {
		if got[0] != in[0].ProductID {
			t.Errorf("ProductIDs[0] = %s, want %s", got[0], in[0].ProductID)
		}
		if got[2] != in[2].ProductID {
			t.Errorf("ProductIDs[2] = %s, want %s", got[2], in[2].ProductID)
		}
	}
	in[0].Quantity = 99 // the basket keeps its own copy
	if b.Items()[0].Quantity != 1 {
		t.Error("the basket shares its items with the caller")
	}
	if _, err := NewBasket(items(MaxItems)); err != nil {
		t.Errorf("%d items: %v", MaxItems, err)
	}

	if got := fields(t, must(NewBasket(nil))); !slices.Equal(got, []string{"items"}) {
		t.Errorf("no items: fields %v", got)
	}
	if got := fields(t, must(NewBasket(items(MaxItems+1)))); !slices.Equal(got, []string{"items"}) {
		t.Errorf("too many items: fields %v", got)
	}
	dup := items(4)
	dup[2].ProductID = dup[0].ProductID
	dup[3].ProductID = dup[0].ProductID
	if got := fields(t, must(NewBasket(dup))); !slices.Equal(got, []string{"items[2].product_id", "items[3].product_id"}) {
		t.Errorf("duplicates: fields %v", got)
	}
}

func must[T any](_ T, err error) error { return err }

func TestPriceBasket(t *testing.T) {
	t.Parallel()
	a, b, c := uuid.New(), uuid.New(), uuid.New()
	basket, err := NewBasket([]Item{{a, 2}, {b, 1}, {c, 3}})
	if err != nil {
		t.Fatal(err)
	}
	offers := map[uuid.UUID]Offer{a: {1250, "USD"}, b: {99, "USD"}, c: {1, "USD"}}
	q, err := PriceBasket(basket, offers)
	if err != nil {
		t.Fatal(err)
	}
	want := []Line{{a, 2, 1250}, {b, 1, 99}, {c, 3, 1}}
	if !slices.Equal(q.Lines, want) {
		t.Errorf("quote lines %+v, want %+v", q.Lines, want)
	}
	if q.Currency != "USD" {
		t.Errorf("quote currency %q, want USD", q.Currency)
	}
	if q.Total() != 2*1250+99+3 {
		t.Errorf("quote total %d, want %d", q.Total(), 2*1250+99+3)
	}

	// Unknown products are named by their place in the request.
	_, err = PriceBasket(basket, map[uuid.UUID]Offer{b: {99, "USD"}})
	if got := fields(t, err); !slices.Equal(got, []string{"items[0].product_id", "items[2].product_id"}) {
		t.Errorf("unknown products: fields %v", got)
	}

	offers[c] = Offer{1, "EUR"}
	_, err = PriceBasket(basket, offers)
	if !errors.Is(err, ErrMixedCurrencies) {
		t.Errorf("mixed currencies: %v, want ErrMixedCurrencies", err)
	}
	if code := apperr.CodeOf(err); code != apperr.Invalid {
		t.Errorf("mixed currencies: %v with code %s, want %s", err, code, apperr.Invalid)
	}
}

func TestByProductSortsLikePostgres(t *testing.T) {
	t.Parallel()
	ids := []uuid.UUID{
		uuid.MustParse("ffffffff-0000-0000-0000-000000000000"),
		uuid.MustParse("00000000-0000-0000-0000-00000000000a"),
		uuid.MustParse("0000000a-0000-0000-0000-000000000000"),
		uuid.MustParse("00000000-0000-0000-0000-000000000009"),
	}
	lines := []Line{{ProductID: ids[0]}, {ProductID: ids[1]}, {ProductID: ids[2]}, {ProductID: ids[3]}}
	got := ByProduct(lines)
	want := []uuid.UUID{ids[3], ids[1], ids[2], ids[0]}
	for i := range want {
		if got[i].ProductID != want[i] {
			t.Fatalf("ByProduct order %v, want %v", got, want)
		}
	}
	if lines[0].ProductID != ids[0] {
		t.Error("ByProduct sorted its argument in place")
	}
}

func TestReservationTotal(t *testing.T) {
	t.Parallel()
	r := Reservation{Lines: []Line{{Quantity: 100, UnitPrice: 100_000_000}, {Quantity: 3, UnitPrice: 7}}}
	if r.Total() != 100*100_000_000+21 {
		t.Errorf("Total = %d", r.Total())
	}
	if (Reservation{}).Total() != 0 {
		t.Error("an empty reservation has a total")
	}
}

// expiringStore releases its due reservations in batches.
type expiringStore struct {
	Store
	due     int
	calls   int
	lastNow time.Time
}

func (s *expiringStore) ExpireDue(_ context.Context, now time.Time, limit int) (int, error) {
	s.calls++
	s.lastNow = now
	n := min(s.due, limit)
	s.due -= n
	return n, nil
}

func TestExpireDueWorksThroughEveryBatch(t *testing.T) {
	t.Parallel()
	store := &expiringStore{due: 2*ExpireBatch + 7}
	at := time.Date(2026, 3, 1, 12, 0, 0, 999, time.UTC)
	s := NewService(store, time.Minute, func() time.Time { return at })
	n, err := s.ExpireDue(context.Background())
	if err != nil {
		t.Errorf("ExpireDue: %v, want no error", err)
	}
	if n != 2*ExpireBatch+7 {
		t.Errorf("ExpireDue = %d, want %d", n, 2*ExpireBatch+7)
	}
	if store.calls != 3 {
		t.Errorf("ExpireDue made %d calls, want 3", store.calls)
	}
	if want := at.Truncate(time.Microsecond); !store.lastNow.Equal(want) {
		t.Errorf("ExpireDue asked with now %v, want %v", store.lastNow, want)
	}
	store.due = ExpireBatch // exactly one batch: one more call finds nothing
	store.calls = 0
	n, err = s.ExpireDue(context.Background())
	if err != nil {
		t.Errorf("ExpireDue of one batch: %v, want no error", err)
	}
	if n != ExpireBatch {
		t.Errorf("ExpireDue of one batch = %d, want %d", n, ExpireBatch)
	}
	if store.calls != 2 {
		t.Errorf("ExpireDue of one batch made %d calls, want 2", store.calls)
	}
}
