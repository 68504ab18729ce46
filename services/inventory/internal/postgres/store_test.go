package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/page"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/postgres"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/postgres/migrations"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/product"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/reservation"
)

// concurrentConns is the pool size of the concurrency tests: enough for real contention
// on the server, while leaving connections for the other tests sharing it.
const concurrentConns = 16

func newStore(t *testing.T) (*postgres.Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.New(t, migrations.FS)
	return postgres.NewStore(pool), pool
}

// newConcurrentStore is a store on its own pool of concurrentConns connections.
func newConcurrentStore(t *testing.T) (*postgres.Store, *pgxpool.Pool) {
	t.Helper()
	small := pgtest.New(t, migrations.FS)
	cfg, err := pgxpool.ParseConfig(small.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = concurrentConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	small.Close() // free its connections: pgtest's cleanup closing it again is harmless
	return postgres.NewStore(pool), pool
}

var ctx = context.Background()

// clock hands out increasing times at the database's precision.
var clock atomic.Int64

func now() time.Time {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return base.Add(time.Duration(clock.Add(1)) * time.Millisecond)
}

func newProduct(t *testing.T, store *postgres.Store, sku string, stock int, price int64, currency string) product.Product {
	t.Helper()
	at := now()
	p := product.Product{
		ID: uuid.Must(uuid.NewV7()), SKU: product.SKU(sku), Name: product.Name("Product " + sku),
		Description: "A thing.", Price: product.Price(price), Currency: product.Currency(currency),
		Stock: product.Stock(stock), CreatedAt: at, UpdatedAt: at,
	}
	if err := store.CreateProduct(ctx, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func stockOf(t *testing.T, pool *pgxpool.Pool, id uuid.UUID) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(ctx, `SELECT stock FROM products WHERE id = $1`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func count(t *testing.T, pool *pgxpool.Pool, query string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func events(t *testing.T, pool *pgxpool.Pool, typ string) int {
	t.Helper()
	return count(t, pool, `SELECT count(*) FROM outbox WHERE type = $1`, typ)
}

func basket(t *testing.T, items ...reservation.Item) reservation.Basket {
	t.Helper()
	b, err := reservation.NewBasket(items)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func item(p product.Product, q int) reservation.Item {
	return reservation.Item{ProductID: p.ID, Quantity: reservation.Quantity(q)}
}

func reserve(t *testing.T, store *postgres.Store, order uuid.UUID, b reservation.Basket, ttl time.Duration) reservation.Reservation {
	t.Helper()
	at := now()
	r, created, err := store.Reserve(ctx, order, b, at, at.Add(ttl))
	if err != nil {
		t.Fatalf("Reserve: %v, want no error", err)
	}
	if !created {
		t.Fatal("Reserve: not created, want a new reservation")
	}
	return r
}

func TestProductsAreCreatedUpdatedAndPublished(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	p := newProduct(t, store, "MUG-1", 7, 1800, "USD")

	got, err := store.Product(ctx, p.ID)
	if err != nil || got != p {
		t.Errorf("Product = %+v, %v; want %+v", got, err, p)
	}
	var stream, typ, source, subject string
	var data []byte
	err = pool.QueryRow(ctx, `SELECT stream, type, source, subject, data FROM outbox`).Scan(&stream, &typ, &source, &subject, &data)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	_ = json.Unmarshal(data, &body)
	want := map[string]any{"id": p.ID.String(), "sku": "MUG-1", "name": "Product MUG-1", "description": "A thing.",
		"price_cents": 1800.0, "currency": "USD", "stock": 7.0}
	if stream != "events.inventory" {
		t.Errorf("outbox row stream %q, want events.inventory", stream)
	}
	if typ != "product.created" {
		t.Errorf("outbox row type %q, want product.created", typ)
	}
	if source != "inventory" {
		t.Errorf("outbox row source %q, want inventory", source)
	}
	if subject != p.ID.String() {
		t.Errorf("outbox row subject %q, want the product %s", subject, p.ID)
	}
	if fmt.Sprint(body) != fmt.Sprint(want) {
		t.Errorf("outbox row data %v, want %v", body, want)
	}

	// A duplicate SKU is refused and writes nothing.
	dup := p
	dup.ID = uuid.New()
	if err := store.CreateProduct(ctx, dup); !errors.Is(err, product.ErrSKUTaken) {
		t.Errorf("duplicate sku: %v", err)
	}
	if n := count(t, pool, `SELECT count(*) FROM products`); n != 1 {
		t.Errorf("after the duplicate: %d products, want 1", n)
	}
	if n := events(t, pool, "product.created"); n != 1 {
		t.Errorf("after the duplicate: %d product.created events, want 1", n)
	}

	// A patch changes what it names, and only that.
	name, stock := product.Name("Big Mug"), product.Stock(0)
	at := now()
	up, err := store.UpdateProduct(ctx, p.ID, product.Patch{Name: &name, Stock: &stock}, at)
	want2 := p
	want2.Name, want2.Stock, want2.UpdatedAt = name, stock, at
	if err != nil || up != want2 {
		t.Errorf("UpdateProduct = %+v, %v; want %+v", up, err, want2)
	}
	if got, _ := store.Product(ctx, p.ID); got != want2 {
		t.Errorf("stored %+v", got)
	}
	if err := pool.QueryRow(ctx, `SELECT data FROM outbox WHERE type = 'product.updated'`).Scan(&data); err != nil {
		t.Fatal(err)
	}
	body = nil
	_ = json.Unmarshal(data, &body)
	for k, v := range map[string]any{"name": "Big Mug", "stock": 0.0, "price_cents": 1800.0} {
		if body[k] != v {
			t.Errorf("product.updated data %s = %v, want %v; data %s", k, body[k], v, data)
		}
	}

	if _, err := store.UpdateProduct(ctx, uuid.New(), product.Patch{Name: &name}, at); !errors.Is(err, product.ErrNotFound) {
		t.Errorf("update unknown: %v", err)
	}
	if _, err := store.Product(ctx, uuid.New()); !errors.Is(err, product.ErrNotFound) {
		t.Errorf("get unknown: %v", err)
	}
	if n := count(t, pool, `SELECT count(*) FROM outbox`); n != 2 {
		t.Errorf("%d outbox rows, want 2 (created, updated)", n)
	}
}

// A patch may change the SKU: to a free one it is stored and published like any other
// change; to another product's it is ErrSKUTaken, as on create, and nothing of the
// patch is written, its other fields included.
func TestUpdateProductChangesTheSKUUnlessAnotherProductHasIt(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	p := newProduct(t, store, "OLD-SKU", 4, 900, "USD")
	other := newProduct(t, store, "TAKEN", 1, 100, "USD")

	sku, at := product.SKU("NEW-SKU"), now()
	up, err := store.UpdateProduct(ctx, p.ID, product.Patch{SKU: &sku}, at)
	want := p
	want.SKU, want.UpdatedAt = sku, at
	if err != nil || up != want {
		t.Fatalf("UpdateProduct(sku) = %+v, %v; want %+v", up, err, want)
	}
	if got, _ := store.Product(ctx, p.ID); got != want {
		t.Errorf("stored %+v; want %+v", got, want)
	}
	var data []byte
	if err := pool.QueryRow(ctx, `SELECT data FROM outbox WHERE type = 'product.updated' AND subject = $1`, p.ID.String()).Scan(&data); err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	_ = json.Unmarshal(data, &body)
	if body["sku"] != "NEW-SKU" {
		t.Errorf("product.updated sku %v, want the new NEW-SKU; data %s", body["sku"], data)
	}
	if body["id"] != p.ID.String() {
		t.Errorf("product.updated id %v, want the product's %s; data %s", body["id"], p.ID, data)
	}

	// Another product's SKU: refused with the create's error, and the name in the same
	// patch is not written either.
	name := product.Name("Renamed")
	taken := other.SKU
	_, err = store.UpdateProduct(ctx, p.ID, product.Patch{SKU: &taken, Name: &name}, now())
	if !errors.Is(err, product.ErrSKUTaken) {
		t.Errorf("UpdateProduct(another's sku) = %v; want ErrSKUTaken", err)
	}
	if got, _ := store.Product(ctx, p.ID); got != want {
		t.Errorf("after the refused patch the product is %+v; want %+v", got, want)
	}
	if n := events(t, pool, "product.updated"); n != 1 {
		t.Errorf("%d product.updated events; want 1 (the refused patch publishes nothing)", n)
	}

	// The old SKU is free again.
	newProduct(t, store, "OLD-SKU", 1, 100, "USD")
}

func TestProductsPageInCreationOrder(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	var want []uuid.UUID
	for i := range 5 {
		want = append(want, newProduct(t, store, fmt.Sprintf("P-%d", i), 1, 100, "USD").ID)
	}
	var got []uuid.UUID
	var after *page.Cursor
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		ps, err := store.Products(ctx, "", page.Request{Limit: 2, After: after})
		if err != nil {
			t.Fatal(err)
		}
		items, next := page.Next(ps, 2, func(p product.Product) page.Cursor { return page.Cursor{Time: p.CreatedAt, ID: p.ID} })
		for _, p := range items {
			got = append(got, p.ID)
		}
		if next == nil {
			break
		}
		c, err := page.Decode(*next)
		if err != nil {
			t.Fatal(err)
		}
		after = &c
	}
	if !slices.Equal(got, want) {
		t.Errorf("pages gave %v, want %v", got, want)
	}
}

// described adds a product with the name and description.
func described(t *testing.T, store *postgres.Store, sku, name, description string) product.Product {
	t.Helper()
	at := now()
	p := product.Product{
		ID: uuid.Must(uuid.NewV7()), SKU: product.SKU(sku), Name: product.Name(name), Description: product.Description(description),
		Price: 100, Currency: "USD", Stock: 1, CreatedAt: at, UpdatedAt: at,
	}
	if err := store.CreateProduct(ctx, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// searchAll pages through the products matching q, limit at a time, and returns their
// SKUs in the order listed and how many pages it took.
func searchAll(t *testing.T, store *postgres.Store, q string, limit int) (skus []string, pages int) {
	t.Helper()
	search, err := product.ParseSearch(q)
	if err != nil {
		t.Fatal(err)
	}
	var after *page.Cursor
	for pages = 1; ; pages++ {
		if pages > 20 {
			t.Fatalf("searching %q: pagination does not end", q)
		}
		ps, err := store.Products(ctx, search, page.Request{Limit: limit, After: after})
		if err != nil {
			t.Fatalf("searching %q: %v", q, err)
		}
		items, next := page.Next(ps, limit, func(p product.Product) page.Cursor { return page.Cursor{Time: p.CreatedAt, ID: p.ID} })
		for _, p := range items {
			skus = append(skus, p.SKU.String())
		}
		if next == nil {
			return skus, pages
		}
		c, err := page.Decode(*next)
		if err != nil {
			t.Fatal(err)
		}
		after = &c
	}
}

func TestProductsSearchEveryWordInNameSKUOrDescription(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	described(t, store, "MUG-001", "Mug, blue", "Stoneware, 350 ml.")
	described(t, store, "MUG-002", "Mug, red", "Stoneware.")
	described(t, store, "TEE-BLUE", "T-shirt", "Organic cotton.")
	described(t, store, "BAG-1", "100% cotton bag", "A tote.")
	described(t, store, "POSTER_1", "Poster", `Print A\B, matte.`)
	all := []string{"MUG-001", "MUG-002", "TEE-BLUE", "BAG-1", "POSTER_1"}

	for q, want := range map[string][]string{
		"":               all,
		"   ":            all,
		"mug":            {"MUG-001", "MUG-002"}, // name, any case
		"MUG":            {"MUG-001", "MUG-002"},
		"tee-b":          {"TEE-BLUE"},           // SKU, any case
		"ug-00":          {"MUG-001", "MUG-002"}, // inside a SKU
		"STONEWARE":      {"MUG-001", "MUG-002"}, // description
		"350 ml":         {"MUG-001"},
		"blue mug":       {"MUG-001"}, // every word, in any order
		"mug blue":       {"MUG-001"},
		"blue":           {"MUG-001", "TEE-BLUE"},
		"blue cotton":    {"TEE-BLUE"},          // one word in the SKU, one in the description
		"cotton":         {"TEE-BLUE", "BAG-1"}, // the name or the description
		"mug teapot":     nil,                   // one word that matches nothing is enough
		"%":              {"BAG-1"},             // wildcards match as themselves
		"_":              {"POSTER_1"},
		`\`:              {"POSTER_1"},
		`a\b`:            {"POSTER_1"},
		"0% c":           {"BAG-1"},
		"r_1":            {"POSTER_1"},
		"g_0":            nil, // "_" is not a one-character wildcard: MUG-001 does not match
		"bluemug-001":    nil, // no word runs from one field into the next
		"red, stoneware": nil, // "red," is a word of its own, with its comma
		"red stoneware.": {"MUG-002"},
	} {
		got, _ := searchAll(t, store, q, 100)
		if !slices.Equal(got, want) {
			t.Errorf("search %q found %v, want %v", q, got, want)
		}
	}
}

// A search pages like the whole list: oldest first, and the next_cursor of a page of
// it, sent with the same search, goes on with the same search.
func TestProductsSearchPagesInCreationOrder(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	var want []string
	for i := range 7 {
		described(t, store, fmt.Sprintf("OTHER-%d", i), "Teapot", "Cast iron.")
		sku := fmt.Sprintf("MUG-%d", i)
		described(t, store, sku, "Mug", "Stoneware.")
		want = append(want, sku)
	}
	got, pages := searchAll(t, store, "mug", 2)
	if !slices.Equal(got, want) || pages != 4 {
		t.Errorf("pages of 2 of the search found %v in %d pages, want %v in 4", got, pages, want)
	}
	if got, pages := searchAll(t, store, "", 5); len(got) != 14 || pages != 3 {
		t.Errorf("without a search: %d products in %d pages, want 14 in 3", len(got), pages)
	}
}

func seedProducts(n int, skus ...string) []product.Product {
	var ps []product.Product
	at := now()
	for i, sku := range skus {
		ps = append(ps, product.Product{
			ID: uuid.New(), SKU: product.SKU(sku), Name: "Seeded", Price: 100, Currency: "USD", Stock: product.Stock(n),
			CreatedAt: at.Add(time.Duration(i) * time.Microsecond), UpdatedAt: at,
		})
	}
	return ps
}

func TestSeedProductsAddsEachSKUOnce(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	if n, err := store.SeedProducts(ctx, seedProducts(10, "A", "B", "C")); err != nil {
		t.Fatalf("first seed: %v, want no error", err)
	} else if n != 3 {
		t.Fatalf("first seed = %d, want 3", n)
	}
	// Again, from two "replicas" at once, with one new SKU and new ids for the rest.
	var wg sync.WaitGroup
	results := make([]int, 2)
	for i := range results {
		wg.Go(func() {
			n, err := store.SeedProducts(ctx, seedProducts(99, "A", "B", "C", "D"))
			if err != nil {
				t.Error(err)
			}
			results[i] = n
		})
	}
	wg.Wait()
	if results[0]+results[1] != 1 {
		t.Errorf("the second seeds created %v, want 1 between them", results)
	}
	if n := count(t, pool, `SELECT count(*) FROM products`); n != 4 || events(t, pool, "product.created") != 4 {
		t.Errorf("%d products and %d product.created, want 4 each", n, events(t, pool, "product.created"))
	}
	if n := count(t, pool, `SELECT count(*) FROM products WHERE stock = 10`); n != 3 {
		t.Errorf("%d seeded products kept their stock, want 3: a seed never overwrites", n)
	}
}

func TestConcurrentReservesNeverOversell(t *testing.T) {
	t.Parallel()
	store, pool := newConcurrentStore(t)
	p := newProduct(t, store, "LAST-FIVE", 5, 1000, "USD")
	b := basket(t, item(p, 1))

	// Watch the stock while the reserves run: it must never be seen below zero.
	stop := make(chan struct{})
	lowest := make(chan int)
	go func() {
		low := 5
		for {
			select {
			case <-stop:
				lowest <- low
				return
			default:
			}
			var n int
			if err := pool.QueryRow(ctx, `SELECT stock FROM products WHERE id = $1`, p.ID).Scan(&n); err == nil {
				low = min(low, n)
			}
		}
	}()

	const shoppers = 50
	var reserved, refused atomic.Int32
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range shoppers {
		wg.Go(func() {
			<-start
			at := now()
			_, _, err := store.Reserve(ctx, uuid.New(), b, at, at.Add(time.Hour))
			switch {
			case err == nil:
				reserved.Add(1)
			case errors.Is(err, reservation.ErrOutOfStock):
				refused.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	close(stop)
	low := <-lowest

	if reserved.Load() != 5 || refused.Load() != shoppers-5 {
		t.Errorf("%d reserved, %d refused; want 5 and %d", reserved.Load(), refused.Load(), shoppers-5)
	}
	if s := stockOf(t, pool, p.ID); s != 0 || low < 0 {
		t.Errorf("stock %d (lowest seen %d), want 0 and never negative", s, low)
	}
	if n := count(t, pool, `SELECT coalesce(sum(quantity), 0) FROM reservation_lines`); n != 5 {
		t.Errorf("%d units on reservation lines, want 5", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM reservations WHERE status = 'reserved'`); n != 5 || events(t, pool, "stock.reserved") != 5 {
		t.Errorf("%d reservations and %d stock.reserved events, want 5 each", n, events(t, pool, "stock.reserved"))
	}
}

func TestConcurrentReservesOfOneOrderMakeOneReservation(t *testing.T) {
	t.Parallel()
	store, pool := newConcurrentStore(t)
	a := newProduct(t, store, "A", 10, 250, "USD")
	b := newProduct(t, store, "B", 10, 100, "USD")
	order := uuid.New()
	bk := basket(t, item(a, 2), item(b, 3))

	const calls = 20
	got := make([]reservation.Reservation, calls)
	var created atomic.Int32
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			<-start
			at := now()
			r, c, err := store.Reserve(ctx, order, bk, at, at.Add(time.Hour))
			if err != nil {
				t.Error(err)
			}
			if c {
				created.Add(1)
			}
			got[i] = r
		})
	}
	close(start)
	wg.Wait()

	if created.Load() != 1 {
		t.Errorf("%d calls created the reservation, want 1", created.Load())
	}
	for i := range got {
		if got[i].OrderID != order {
			t.Errorf("call %d got order %s, want %s", i, got[i].OrderID, order)
		}
		if got[i].Status != reservation.StatusReserved {
			t.Errorf("call %d got status %v, want %v", i, got[i].Status, reservation.StatusReserved)
		}
		if got[i].Total() != 2*250+3*100 {
			t.Errorf("call %d got total %d, want %d", i, got[i].Total(), 2*250+3*100)
		}
		if !slices.Equal(got[i].Lines, got[0].Lines) {
			t.Errorf("call %d got lines %+v, want the first call's %+v", i, got[i].Lines, got[0].Lines)
		}
		if !got[i].ExpiresAt.Equal(got[0].ExpiresAt) {
			t.Errorf("call %d got expiry %v, want the first call's %v", i, got[i].ExpiresAt, got[0].ExpiresAt)
		}
	}
	if stockOf(t, pool, a.ID) != 8 || stockOf(t, pool, b.ID) != 7 {
		t.Errorf("stock %d and %d, want 8 and 7: taken once", stockOf(t, pool, a.ID), stockOf(t, pool, b.ID))
	}
	if n := count(t, pool, `SELECT count(*) FROM reservations`); n != 1 || events(t, pool, "stock.reserved") != 1 {
		t.Errorf("%d reservations, %d stock.reserved events; want 1 each", n, events(t, pool, "stock.reserved"))
	}
}

func TestReserveIsAllOrNothing(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	plenty := newProduct(t, store, "PLENTY", 5, 100, "USD")
	scarce := newProduct(t, store, "SCARCE", 1, 100, "USD")
	outboxBefore := count(t, pool, `SELECT count(*) FROM outbox`)
	order := uuid.New()
	bk := basket(t, item(plenty, 2), item(scarce, 3))

	at := now()
	if _, _, err := store.Reserve(ctx, order, bk, at, at.Add(time.Hour)); !errors.Is(err, reservation.ErrOutOfStock) {
		t.Fatalf("Reserve = %v, want out of stock", err)
	}
	if stockOf(t, pool, plenty.ID) != 5 || stockOf(t, pool, scarce.ID) != 1 {
		t.Errorf("stock %d and %d after a refused reserve, want 5 and 1", stockOf(t, pool, plenty.ID), stockOf(t, pool, scarce.ID))
	}
	if n := count(t, pool, `SELECT count(*) FROM reservation_lines`); n != 0 {
		t.Errorf("a refused reserve left %d reservation lines, want 0", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM outbox`); n != outboxBefore {
		t.Errorf("a refused reserve left %d new events, want 0", n-outboxBefore)
	}

	// The refusal stands for that order, even once there is stock: the saga may have
	// cancelled it already.
	enough := product.Stock(10)
	if _, err := store.UpdateProduct(ctx, scarce.ID, product.Patch{Stock: &enough}, now()); err != nil {
		t.Fatal(err)
	}
	at = now()
	if _, _, err := store.Reserve(ctx, order, bk, at, at.Add(time.Hour)); !errors.Is(err, reservation.ErrOutOfStock) {
		t.Errorf("repeat Reserve = %v, want out of stock again", err)
	}
	if _, err := store.Reservation(ctx, order); !errors.Is(err, reservation.ErrNotFound) {
		t.Errorf("Reservation of a refused order = %v, want not found", err)
	}
	if _, err := store.Commit(ctx, order, now()); !errors.Is(err, reservation.ErrNotFound) {
		t.Errorf("Commit of a refused order = %v, want not found", err)
	}
	r, err := store.Release(ctx, order, now())
	if err != nil {
		t.Fatalf("Release of a refused order: %v, want no error", err)
	}
	if r.Status != reservation.StatusReleased {
		t.Errorf("Release of a refused order: status %v, want %v", r.Status, reservation.StatusReleased)
	}
	if len(r.Lines) != 0 {
		t.Errorf("Release of a refused order: lines %+v, want none", r.Lines)
	}
	if n := stockOf(t, pool, plenty.ID); n != 5 {
		t.Errorf("releasing a refused order gave back stock it never took: plenty's stock %d, want 5", n)
	}
	if n := stockOf(t, pool, scarce.ID); n != 10 {
		t.Errorf("releasing a refused order gave back stock it never took: scarce's stock %d, want 10", n)
	}
	if n := events(t, pool, "stock.released"); n != 0 {
		t.Errorf("releasing a refused order wrote %d stock.released events, want 0", n)
	}
	// Another order gets the stock.
	reserve(t, store, uuid.New(), bk, time.Hour)
	if stockOf(t, pool, plenty.ID) != 3 || stockOf(t, pool, scarce.ID) != 7 {
		t.Errorf("stock %d and %d, want 3 and 7", stockOf(t, pool, plenty.ID), stockOf(t, pool, scarce.ID))
	}
}

func TestReserveRefusesUnknownProductsAndMixedCurrencies(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	usd := newProduct(t, store, "USD-1", 5, 100, "USD")
	eur := newProduct(t, store, "EUR-1", 5, 100, "EUR")
	outboxBefore := count(t, pool, `SELECT count(*) FROM outbox`)

	at := now()
	_, _, err := store.Reserve(ctx, uuid.New(), basket(t, item(usd, 1), reservation.Item{ProductID: uuid.New(), Quantity: 1}), at, at.Add(time.Hour))
	var ae *apperr.Error
	if !errors.As(err, &ae) {
		t.Errorf("unknown product: %v, want an apperr", err)
	} else {
		if ae.Code != apperr.Invalid {
			t.Errorf("unknown product: code %s, want %s", ae.Code, apperr.Invalid)
		}
		if len(ae.Fields) != 1 {
			t.Errorf("unknown product: field errors %+v, want one", ae.Fields)
		} else if ae.Fields[0].Field != "items[1].product_id" {
			t.Errorf("unknown product: field %q named, want items[1].product_id", ae.Fields[0].Field)
		}
	}
	_, _, err = store.Reserve(ctx, uuid.New(), basket(t, item(usd, 1), item(eur, 1)), at, at.Add(time.Hour))
	if !errors.Is(err, reservation.ErrMixedCurrencies) {
		t.Errorf("mixed currencies: %v", err)
	}
	if n := count(t, pool, `SELECT count(*) FROM reservations`); n != 0 {
		t.Errorf("refused reserves left %d reservations behind, want 0", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM outbox`); n != outboxBefore {
		t.Errorf("refused reserves left %d new events, want 0", n-outboxBefore)
	}
	if n := stockOf(t, pool, usd.ID); n != 5 {
		t.Errorf("refused reserves took stock: %d left, want 5", n)
	}

	offers, err := store.Offers(ctx, []uuid.UUID{usd.ID, eur.ID, uuid.New()})
	if err != nil {
		t.Fatalf("Offers: %v, want no error", err)
	}
	if len(offers) != 2 {
		t.Errorf("Offers = %v, want the 2 known products", offers)
	}
	if want := (reservation.Offer{UnitPrice: 100, Currency: "USD"}); offers[usd.ID] != want {
		t.Errorf("offer for the USD product %+v, want %+v", offers[usd.ID], want)
	}
	if offers[eur.ID].Currency != "EUR" {
		t.Errorf("offer for the EUR product in %q, want EUR", offers[eur.ID].Currency)
	}
}

func TestReserveRoundTripsAndPricesFromTheCatalogue(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	a := newProduct(t, store, "A", 5, 1999, "USD")
	b := newProduct(t, store, "B", 5, 5, "USD")
	order := uuid.New()
	at := now()
	r, created, err := store.Reserve(ctx, order, basket(t, item(b, 4), item(a, 1)), at, at.Add(15*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Fatal("Reserve: not created, want a new reservation")
	}
	want := reservation.Reservation{
		OrderID: order, Status: reservation.StatusReserved, Currency: "USD",
		Lines:     []reservation.Line{{ProductID: b.ID, Quantity: 4, UnitPrice: 5}, {ProductID: a.ID, Quantity: 1, UnitPrice: 1999}},
		ExpiresAt: at.Add(15 * time.Minute), CreatedAt: at, UpdatedAt: at,
	}
	if fmt.Sprint(r) != fmt.Sprint(want) {
		t.Errorf("Reserve = %+v, want %+v", r, want)
	}
	if r.Total() != 2019 {
		t.Errorf("Reserve total %d, want 2019", r.Total())
	}
	got, err := store.Reservation(ctx, order)
	if err != nil {
		t.Errorf("Reservation: %v, want no error", err)
	} else if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Reservation = %+v, want %+v", got, want)
	}
	var data []byte
	if err := pool.QueryRow(ctx, `SELECT data FROM outbox WHERE type = 'stock.reserved' AND subject = $1`, order.String()).Scan(&data); err != nil {
		t.Fatal(err)
	}
	var ev struct {
		OrderID uuid.UUID `json:"order_id"`
		Items   []struct {
			ProductID uuid.UUID `json:"product_id"`
			Quantity  int       `json:"quantity"`
		} `json:"items"`
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		t.Fatalf("stock.reserved data %s: %v", data, err)
	}
	if ev.OrderID != order {
		t.Errorf("stock.reserved order_id %s, want %s", ev.OrderID, order)
	}
	if len(ev.Items) != 2 {
		t.Errorf("stock.reserved items %+v, want 2", ev.Items)
	} else {
		if ev.Items[0].ProductID != b.ID {
			t.Errorf("stock.reserved item 0 product %s, want b %s", ev.Items[0].ProductID, b.ID)
		}
		if ev.Items[0].Quantity != 4 {
			t.Errorf("stock.reserved item 0 quantity %d, want 4", ev.Items[0].Quantity)
		}
		if ev.Items[1].ProductID != a.ID {
			t.Errorf("stock.reserved item 1 product %s, want a %s", ev.Items[1].ProductID, a.ID)
		}
	}

	// A price change later does not reprice the reservation.
	price := product.Price(3000)
	if _, err := store.UpdateProduct(ctx, a.ID, product.Patch{Price: &price}, now()); err != nil {
		t.Fatal(err)
	}
	if got, _ := store.Reservation(ctx, order); got.Total() != 2019 {
		t.Errorf("total after a price change %d, want 2019", got.Total())
	}
	if _, err := store.Reservation(ctx, uuid.New()); !errors.Is(err, reservation.ErrNotFound) {
		t.Errorf("unknown reservation: %v", err)
	}
}

func TestReleaseRestocksExactlyOnce(t *testing.T) {
	t.Parallel()
	store, pool := newConcurrentStore(t)
	p := newProduct(t, store, "P", 10, 100, "USD")
	order := uuid.New()
	reserve(t, store, order, basket(t, item(p, 3)), time.Hour)
	if stockOf(t, pool, p.ID) != 7 {
		t.Fatalf("stock %d after reserving 3 of 10", stockOf(t, pool, p.ID))
	}

	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			<-start
			r, err := store.Release(ctx, order, now())
			if err != nil {
				t.Errorf("Release: %v, want no error", err)
				return
			}
			if r.Status != reservation.StatusReleased {
				t.Errorf("Release: status %v, want %v", r.Status, reservation.StatusReleased)
			}
			if len(r.Lines) != 1 {
				t.Errorf("Release: lines %+v, want one", r.Lines)
			}
		})
	}
	close(start)
	wg.Wait()
	if _, err := store.Release(ctx, order, now()); err != nil {
		t.Fatal(err)
	}
	if s := stockOf(t, pool, p.ID); s != 10 || events(t, pool, "stock.released") != 1 {
		t.Errorf("stock %d, %d stock.released events after 11 releases; want 10 and 1", s, events(t, pool, "stock.released"))
	}
	if _, err := store.Commit(ctx, order, now()); !errors.Is(err, reservation.ErrReleased) {
		t.Errorf("Commit after release = %v, want ErrReleased", err)
	}
}

func TestCommitThenReleaseRestocks(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	p := newProduct(t, store, "P", 10, 100, "USD")
	order := uuid.New()
	reserve(t, store, order, basket(t, item(p, 4)), time.Hour)

	committedAt := now()
	c, err := store.Commit(ctx, order, committedAt)
	if err != nil {
		t.Fatalf("Commit: %v, want no error", err)
	}
	if c.Status != reservation.StatusCommitted {
		t.Fatalf("Commit: status %v, want %v", c.Status, reservation.StatusCommitted)
	}
	if !c.UpdatedAt.Equal(committedAt) {
		t.Fatalf("Commit: updated at %v, want %v", c.UpdatedAt, committedAt)
	}
	again, err := store.Commit(ctx, order, now())
	if err != nil {
		t.Fatalf("second Commit: %v, want no error", err)
	}
	if again.Status != reservation.StatusCommitted {
		t.Errorf("second Commit: status %v, want it unchanged, %v", again.Status, reservation.StatusCommitted)
	}
	if !again.UpdatedAt.Equal(committedAt) {
		t.Errorf("second Commit: updated at %v, want it unchanged, %v", again.UpdatedAt, committedAt)
	}
	if stockOf(t, pool, p.ID) != 6 {
		t.Errorf("stock %d after commit, want 6", stockOf(t, pool, p.ID))
	}
	if _, err := store.Commit(ctx, uuid.New(), now()); !errors.Is(err, reservation.ErrNotFound) {
		t.Errorf("Commit of no reservation = %v", err)
	}

	// A customer cancels the confirmed order: the committed stock comes back.
	r, err := store.Release(ctx, order, now())
	if err != nil {
		t.Fatalf("Release: %v, want no error", err)
	}
	if r.Status != reservation.StatusReleased {
		t.Fatalf("Release: status %v, want %v", r.Status, reservation.StatusReleased)
	}
	if n := stockOf(t, pool, p.ID); n != 10 {
		t.Errorf("stock %d after releasing a committed reservation, want 10", n)
	}
	if n := events(t, pool, "stock.released"); n != 1 {
		t.Errorf("%d stock.released after releasing a committed reservation, want 1", n)
	}
}

func TestReleaseBeforeReserveHoldsNothing(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	p := newProduct(t, store, "P", 10, 100, "USD")
	order := uuid.New()

	r, err := store.Release(ctx, order, now())
	if err != nil {
		t.Fatalf("Release of nothing: %v, want no error", err)
	}
	if r.OrderID != order {
		t.Fatalf("Release of nothing: order %s, want %s", r.OrderID, order)
	}
	if r.Status != reservation.StatusReleased {
		t.Fatalf("Release of nothing: status %v, want %v", r.Status, reservation.StatusReleased)
	}
	if len(r.Lines) != 0 {
		t.Fatalf("Release of nothing: lines %+v, want none", r.Lines)
	}
	// The saga's reserve arrives late: it finds the released reservation.
	at := now()
	late, created, err := store.Reserve(ctx, order, basket(t, item(p, 2)), at, at.Add(time.Hour))
	if err != nil {
		t.Fatalf("late Reserve: %v, want no error", err)
	}
	if created {
		t.Error("late Reserve created a reservation, want the released one found")
	}
	if late.Status != reservation.StatusReleased {
		t.Errorf("late Reserve: status %v, want %v", late.Status, reservation.StatusReleased)
	}
	if n := stockOf(t, pool, p.ID); n != 10 {
		t.Errorf("a reserve after its release took stock: %d left, want 10", n)
	}
	if n := events(t, pool, "stock.reserved") + events(t, pool, "stock.released"); n != 0 {
		t.Errorf("a reserve after its release wrote %d stock events, want 0", n)
	}
}

func TestExpireDueReleasesOnlyExpiredReservations(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	p := newProduct(t, store, "P", 100, 100, "USD")
	q := newProduct(t, store, "Q", 100, 100, "USD")
	b := basket(t, item(p, 1), item(q, 2))

	expired := reserve(t, store, uuid.New(), b, time.Minute)
	fresh := reserve(t, store, uuid.New(), b, time.Hour)
	committed := reserve(t, store, uuid.New(), b, time.Minute)
	if _, err := store.Commit(ctx, committed.OrderID, now()); err != nil {
		t.Fatal(err)
	}
	released := reserve(t, store, uuid.New(), b, time.Minute)
	if _, err := store.Release(ctx, released.OrderID, now()); err != nil {
		t.Fatal(err)
	}
	eventsBefore := events(t, pool, "stock.released")

	// Half an hour on: only "expired" is past its time and still reserved.
	later := now().Add(30 * time.Minute)
	n, err := store.ExpireDue(ctx, later, 10)
	if err != nil || n != 1 {
		t.Fatalf("ExpireDue = %d, %v; want 1", n, err)
	}
	status := func(r reservation.Reservation) reservation.Status {
		got, err := store.Reservation(ctx, r.OrderID)
		if err != nil {
			t.Fatal(err)
		}
		return got.Status
	}
	for _, c := range []struct {
		name string
		r    reservation.Reservation
		want reservation.Status
	}{
		{"expired", expired, reservation.StatusReleased},
		{"fresh", fresh, reservation.StatusReserved},
		{"committed", committed, reservation.StatusCommitted},
		{"released", released, reservation.StatusReleased},
	} {
		if got := status(c.r); got != c.want {
			t.Errorf("the %s reservation is %s after expiry, want %s", c.name, got, c.want)
		}
	}
	// fresh and committed still hold theirs.
	if stockOf(t, pool, p.ID) != 98 || stockOf(t, pool, q.ID) != 96 {
		t.Errorf("stock %d and %d, want 98 and 96", stockOf(t, pool, p.ID), stockOf(t, pool, q.ID))
	}
	if got := events(t, pool, "stock.released") - eventsBefore; got != 1 {
		t.Errorf("%d stock.released events from expiry, want 1", got)
	}
	if n := count(t, pool, `SELECT count(*) FROM outbox WHERE type = 'stock.released' AND subject = $1`, expired.OrderID.String()); n != 1 {
		t.Errorf("%d stock.released events for the expired order, want 1", n)
	}
	if n, err := store.ExpireDue(ctx, later, 10); err != nil || n != 0 {
		t.Errorf("second ExpireDue = %d, %v; want nothing left", n, err)
	}
	if _, err := store.Commit(ctx, expired.OrderID, now()); !errors.Is(err, reservation.ErrReleased) {
		t.Errorf("Commit after expiry = %v, want ErrReleased", err)
	}
}

func TestExpireDueWorksInBatches(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	p := newProduct(t, store, "P", 100, 100, "USD")
	b := basket(t, item(p, 2))
	for range 5 {
		reserve(t, store, uuid.New(), b, time.Second)
	}
	later := now().Add(time.Hour)
	var batches []int
	for {
		n, err := store.ExpireDue(ctx, later, 2)
		if err != nil {
			t.Fatal(err)
		}
		batches = append(batches, n)
		if n < 2 {
			break
		}
	}
	if !slices.Equal(batches, []int{2, 2, 1}) {
		t.Errorf("batches %v, want [2 2 1]", batches)
	}
	if n := stockOf(t, pool, p.ID); n != 100 {
		t.Errorf("stock %d after expiry, want 100", n)
	}
	if n := events(t, pool, "stock.released"); n != 5 {
		t.Errorf("%d stock.released events, want 5", n)
	}

	// Through the service, which loops over batches by itself.
	clockNow := later.Add(time.Hour)
	svc := reservation.NewService(store, time.Minute, func() time.Time { return clockNow })
	for range 3 {
		if _, _, err := svc.Reserve(ctx, uuid.New(), b); err != nil {
			t.Fatal(err)
		}
	}
	clockNow = clockNow.Add(59 * time.Second)
	if n, err := svc.ExpireDue(ctx); err != nil {
		t.Errorf("service ExpireDue before the TTL: %v, want no error", err)
	} else if n != 0 {
		t.Errorf("service ExpireDue before the TTL = %d, want 0", n)
	}
	clockNow = clockNow.Add(time.Second)
	if n, err := svc.ExpireDue(ctx); err != nil {
		t.Errorf("service ExpireDue: %v, want no error", err)
	} else if n != 3 {
		t.Errorf("service ExpireDue = %d, want 3", n)
	}
	if n := stockOf(t, pool, p.ID); n != 100 {
		t.Errorf("stock %d after the service's expiry, want 100", n)
	}
}

// Reserves of overlapping baskets in every order, releases and expiry, all at once:
// no deadlock or other error, and every unit is either on the shelf or held by a
// reservation that is reserved or committed.
func TestMixedConcurrentTrafficConservesStock(t *testing.T) {
	t.Parallel()
	store, pool := newConcurrentStore(t)
	var ps []product.Product
	for i := range 4 {
		ps = append(ps, newProduct(t, store, fmt.Sprintf("P%d", i), 12, 100, "USD"))
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 40 {
		wg.Go(func() {
			<-start
			// Each goroutine names the products in its own rotation and direction, so
			// requests arrive in every order.
			var items []reservation.Item
			for k := range 3 {
				idx := (g + k) % len(ps)
				if g%2 == 1 {
					idx = (g - k + 2*len(ps)) % len(ps)
				}
				items = append(items, item(ps[idx], 1+g%3))
			}
			order := uuid.New()
			at := now()
			ttl := time.Hour
			if g%5 == 0 {
				ttl = -time.Hour // already due: expiry may take it
			}
			_, _, err := store.Reserve(ctx, order, basket(t, items...), at, at.Add(ttl))
			if err != nil && !errors.Is(err, reservation.ErrOutOfStock) {
				t.Errorf("reserve: %v", err)
				return
			}
			switch g % 4 {
			case 0:
				if _, err := store.Release(ctx, order, now()); err != nil {
					t.Errorf("release: %v", err)
				}
			case 1:
				if _, err := store.Commit(ctx, order, now()); err != nil && !errors.Is(err, reservation.ErrNotFound) &&
					!errors.Is(err, reservation.ErrReleased) {
					t.Errorf("commit: %v", err)
				}
			case 2:
				if _, err := store.ExpireDue(ctx, now(), 3); err != nil {
					t.Errorf("expire: %v", err)
				}
			}
		})
	}
	close(start)
	wg.Wait()

	for _, p := range ps {
		held := count(t, pool, `SELECT coalesce(sum(l.quantity), 0) FROM reservation_lines l
			JOIN reservations r USING (order_id) WHERE l.product_id = $1 AND r.status IN ('reserved', 'committed')`, p.ID)
		s := stockOf(t, pool, p.ID)
		if s < 0 {
			t.Errorf("%s: stock %d, want never negative", p.SKU, s)
		}
		if s+held != 12 {
			t.Errorf("%s: stock %d + held %d, want 12", p.SKU, s, held)
		}
	}
	reserved := events(t, pool, "stock.reserved")
	released := events(t, pool, "stock.released")
	live := count(t, pool, `SELECT count(*) FROM reservations WHERE status IN ('reserved', 'committed')`)
	if reserved-released != live {
		t.Errorf("%d stock.reserved - %d stock.released events, but %d live reservations", reserved, released, live)
	}
}
