package postgres_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/internal/eventcontract"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/product"
	"github.com/bazaar-shop/bazaar/services/inventory/inventoryevents"
)

// The store is the only writer of inventory's events, so its outbox rows are what
// every consumer reads: each type it writes must be inventoryevents' example, which
// consumers are tested with.
func TestTheEventsWrittenAreTheContractExamples(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	mug := product.Product{
		ID: uuid.MustParse("0b000000-0000-4000-8000-000000000001"), SKU: "BZR-MUG-001", Name: "Bazaar mug",
		Description: "Stoneware, 350 ml.", Price: 1299, Currency: "USD", Stock: 10, CreatedAt: at, UpdatedAt: at,
	}
	tee := product.Product{
		ID: uuid.MustParse("0b000000-0000-4000-8000-000000000002"), SKU: "BZR-TEE-001", Name: "Bazaar tee",
		Description: "Cotton.", Price: 1999, Currency: "USD", Stock: 5, CreatedAt: at, UpdatedAt: at,
	}
	for _, p := range []product.Product{mug, tee} {
		if err := store.CreateProduct(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	price, stock := product.Price(1499), product.Stock(25)
	if _, err := store.UpdateProduct(ctx, mug.ID, product.Patch{Price: &price, Stock: &stock}, at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	order := uuid.MustParse("0b000000-0000-4000-8000-0000000000a1")
	if _, _, err := store.Reserve(ctx, order, basket(t, item(mug, 2), item(tee, 1)), at, at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Release(ctx, order, at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}

	rows, err := pool.Query(ctx, `SELECT stream, source, type, subject, data FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var written []string
	for rows.Next() {
		var stream, source, typ, subject string
		var data []byte
		if err := rows.Scan(&stream, &source, &typ, &subject, &data); err != nil {
			t.Fatal(err)
		}
		if stream != inventoryevents.Stream {
			t.Errorf("%s on stream %s, want %s", typ, stream, inventoryevents.Stream)
		}
		if source != inventoryevents.Source {
			t.Errorf("%s from source %s, want %s", typ, source, inventoryevents.Source)
		}
		if typ == string(inventoryevents.TypeProductCreated) && subject == tee.ID.String() {
			continue // the second product, there to be reserved; the mug is the example
		}
		written = append(written, typ)
		eventcontract.SameJSON(t, typ, data, eventcontract.Example(t, typ))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{"product.created", "product.updated", "stock.reserved", "stock.released"}
	if len(written) != len(want) {
		t.Errorf("written %v, want one of each of %v", written, want)
	}
}
