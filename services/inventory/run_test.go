package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/programtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/pgdb"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/pkg/svcauth"
	"github.com/bazaar-shop/bazaar/pkg/svcauth/svcauthtest"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/catalogue"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/postgres"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/postgres/migrations"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/product"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/reservation"
)

// The inventory service starts on its own fresh database, applies its migrations and
// answers the operational routes.
func TestRunServesOperationalRoutes(t *testing.T) {
	t.Parallel()
	env := svcauthtest.New(t, "orders").Env("inventory")
	env["DATABASE_URL"], env["REDIS_URL"] = pgtest.NewDatabase(t), redistest.New(t)
	prog := programtest.Start(t, run, env)
	programtest.AssertOperational(t, prog, "postgres", "migrations", "redis")
}

// keys stands in for the users service: it publishes a JWKS and signs tokens with it.
type keys struct {
	jwksURL string
	signer  *auth.Signer
}

func newKeys(t *testing.T) keys {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set := auth.KeySet{Keys: []auth.JWK{auth.PublicJWK("test-key", pub)}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(srv.Close)
	return keys{jwksURL: srv.URL, signer: auth.NewSigner("test-key", priv, time.Minute)}
}

func (k keys) token(t *testing.T, role auth.Role) string {
	t.Helper()
	tok, err := k.signer.Sign(auth.Principal{UserID: uuid.New(), Role: role})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// stack is one inventory service under test with a direct line to its database and
// tokens for an admin and a customer.
type stack struct {
	url      string
	internal string // the internal listener
	keys     svcauthtest.Keys
	db       *pgxpool.Pool
	prog     *programtest.Program
	admin    string
	customer string
}

// startInventory runs the service on dbURL (a fresh database when "") and a fresh
// Redis; extra adds or overrides environment variables.
func startInventory(t *testing.T, dbURL string, extra map[string]string) stack {
	t.Helper()
	if dbURL == "" {
		dbURL = pgtest.NewDatabase(t)
	}
	k := newKeys(t)
	sk := svcauthtest.New(t, "orders", "notifications")
	env := sk.Env("inventory")
	maps.Copy(env, map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redistest.New(t), "JWKS_URL": k.jwksURL})
	for key, v := range extra {
		env[key] = v
	}
	prog := programtest.Start(t, run, env)
	return stack{
		url: prog.URL, internal: prog.InternalURL(), keys: sk, db: openDB(t, dbURL), prog: prog,
		admin: k.token(t, auth.RoleAdmin), customer: k.token(t, auth.RoleCustomer),
	}
}

func openDB(t *testing.T, dbURL string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgdb.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// response is a programtest.Response whose problem also wants what every inventory
// problem carries: a type under problem.TypePrefix and a detail.
type response struct{ programtest.Response }

func (r response) problem(t *testing.T, status int) problem.Details {
	t.Helper()
	d := r.Problem(t, status)
	if !strings.HasPrefix(d.Type, problem.TypePrefix) {
		t.Errorf("problem type %q, want one under %s", d.Type, problem.TypePrefix)
	}
	if d.Detail == "" {
		t.Errorf("problem document %+v without a detail, want one", d)
	}
	return d
}

// fields are the field names of a problem's errors.
func fields(d problem.Details) []string {
	var out []string
	for _, f := range d.Errors {
		out = append(out, f.Field)
	}
	return out
}

func call(t *testing.T, method, u, body string, header ...string) response {
	t.Helper()
	return response{programtest.Call(t, method, u, body, header...)}
}

// saga calls an internal route the way the orders saga does: on the internal
// listener, with orders' service token.
func (s stack) saga(t *testing.T, method, path, body string) response {
	t.Helper()
	return call(t, method, s.internal+path, body, s.keys.Authorization(t, "orders", "inventory")...)
}

func (s stack) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (s stack) stock(t *testing.T, id string) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(context.Background(), "SELECT stock FROM products WHERE id = $1", id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

type productBody struct {
	ID          string    `json:"id"`
	SKU         string    `json:"sku"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	PriceCents  int64     `json:"price_cents"`
	Currency    string    `json:"currency"`
	Stock       int       `json:"stock"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

type listBody struct {
	Items      []productBody `json:"items"`
	NextCursor *string       `json:"next_cursor"`
}

// create adds a product through the admin API.
func (s stack) create(t *testing.T, sku string, priceCents int64, currency string, stock int) productBody {
	t.Helper()
	r := call(t, http.MethodPost, s.url+"/api/v1/products",
		fmt.Sprintf(`{"sku":%q,"name":"Product %s","price_cents":%d,"currency":%q,"stock":%d}`, sku, sku, priceCents, currency, stock),
		programtest.Bearer(s.admin)...)
	if r.Status != http.StatusCreated {
		t.Fatalf("create %s: %d %s", sku, r.Status, r.Body)
	}
	var p productBody
	r.JSON(t, &p)
	return p
}

func TestAdminCreatesAndPatchesProducts(t *testing.T) {
	t.Parallel()
	s := startInventory(t, "", nil)

	r := call(t, http.MethodPost, s.url+"/api/v1/products",
		`{"sku":"  BZR-MUG-001 ","name":" Stoneware Mug ","description":"350 ml.\nDishwasher safe.","price_cents":1800,"currency":"USD","stock":12}`,
		programtest.Bearer(s.admin)...)
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	var mug productBody
	r.JSON(t, &mug)
	if _, err := uuid.Parse(mug.ID); err != nil {
		t.Errorf("created id %q: %v, want a UUID", mug.ID, err)
	}
	if mug.SKU != "BZR-MUG-001" {
		t.Errorf("created sku %q, want BZR-MUG-001", mug.SKU)
	}
	if mug.Name != "Stoneware Mug" {
		t.Errorf("created name %q, want Stoneware Mug", mug.Name)
	}
	if mug.Description != "350 ml.\nDishwasher safe." {
		t.Errorf("created description %q, want %q", mug.Description, "350 ml.\nDishwasher safe.")
	}
	if mug.PriceCents != 1800 {
		t.Errorf("created price_cents %d, want 1800", mug.PriceCents)
	}
	if mug.Currency != "USD" {
		t.Errorf("created currency %q, want USD", mug.Currency)
	}
	if mug.Stock != 12 {
		t.Errorf("created stock %d, want 12", mug.Stock)
	}
	if time.Since(mug.CreatedAt) > time.Minute {
		t.Errorf("created created_at %v, want within the last minute", mug.CreatedAt)
	}
	if !mug.UpdatedAt.Equal(mug.CreatedAt) {
		t.Errorf("created updated_at %v, want created_at %v", mug.UpdatedAt, mug.CreatedAt)
	}
	if loc := r.Header.Get("Location"); loc != "/api/v1/products/"+mug.ID {
		t.Errorf("Location %q", loc)
	}
	r = call(t, http.MethodGet, s.url+r.Header.Get("Location"), "")
	var got productBody
	if r.Status != http.StatusOK {
		t.Fatalf("get: %d %s", r.Status, r.Body)
	}
	r.JSON(t, &got)
	if got != mug {
		t.Errorf("GET = %+v, want %+v", got, mug)
	}
	var typ, subject, data string
	err := s.db.QueryRow(context.Background(), `SELECT type, subject, data::text FROM outbox`).Scan(&typ, &subject, &data)
	if err != nil {
		t.Fatalf("outbox: %v, want one event", err)
	}
	if typ != "product.created" {
		t.Errorf("outbox type %q, want product.created", typ)
	}
	if subject != mug.ID {
		t.Errorf("outbox subject %q, want the product %s", subject, mug.ID)
	}
	if !strings.Contains(data, `"sku": "BZR-MUG-001"`) {
		t.Errorf("outbox data %s, want \"sku\": \"BZR-MUG-001\" in it", data)
	}

	// The same SKU again is a conflict.
	r = call(t, http.MethodPost, s.url+"/api/v1/products",
		`{"sku":"BZR-MUG-001","name":"Another","price_cents":1,"currency":"USD","stock":1}`, programtest.Bearer(s.admin)...)
	if d := r.problem(t, http.StatusConflict); d.Type != "urn:bazaar:problem:conflict" {
		t.Errorf("duplicate sku problem %+v", d)
	}

	// A patch changes what it names.
	r = call(t, http.MethodPatch, s.url+"/api/v1/products/"+mug.ID, `{"name":"Big Mug","description":" Now 500 ml. ","stock":0,"price_cents":2100}`, programtest.Bearer(s.admin)...)
	if r.Status != http.StatusOK {
		t.Fatalf("patch: %d %s", r.Status, r.Body)
	}
	r.JSON(t, &got)
	want := mug
	want.Name, want.Description, want.Stock, want.PriceCents, want.UpdatedAt = "Big Mug", "Now 500 ml.", 0, 2100, got.UpdatedAt
	if got != want {
		t.Errorf("patched %+v, want %+v", got, want)
	}
	if !got.UpdatedAt.After(mug.UpdatedAt) {
		t.Errorf("patched updated_at %v, want after the creation's %v", got.UpdatedAt, mug.UpdatedAt)
	}
	var updated int
	_ = s.db.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE type = 'product.updated' AND data->>'name' = 'Big Mug'`).Scan(&updated)
	if updated != 1 {
		t.Errorf("%d product.updated events", updated)
	}
	// An empty patch changes nothing and publishes nothing.
	r = call(t, http.MethodPatch, s.url+"/api/v1/products/"+mug.ID, `{}`, programtest.Bearer(s.admin)...)
	var same productBody
	if r.Status != http.StatusOK {
		t.Fatalf("empty patch: %d %s", r.Status, r.Body)
	}
	r.JSON(t, &same)
	if same != got {
		t.Errorf("empty patch gave %+v, want it unchanged %+v", same, got)
	}
	if n := s.count(t, "outbox"); n != 2 {
		t.Errorf("after an empty patch %d events, want still 2", n)
	}
	for _, id := range []string{uuid.NewString(), "not-a-uuid"} {
		call(t, http.MethodPatch, s.url+"/api/v1/products/"+id, `{"name":"X"}`, programtest.Bearer(s.admin)...).problem(t, http.StatusNotFound)
	}
}

// An admin can correct a product's SKU: the product keeps its id (which orders and
// reservations refer to), the change goes out as product.updated, and a SKU another
// product has is the same 409 as on create, with nothing of the patch written.
func TestAdminChangesAProductsSKU(t *testing.T) {
	t.Parallel()
	s := startInventory(t, "", nil)
	p := s.create(t, "TYPO-SKU", 1500, "USD", 9)
	other := s.create(t, "TAKEN-SKU", 100, "USD", 1)
	patch := func(body string) response {
		t.Helper()
		return call(t, http.MethodPatch, s.url+"/api/v1/products/"+p.ID, body, programtest.Bearer(s.admin)...)
	}

	r := patch(`{"sku":"  FIXED-SKU "}`)
	if r.Status != http.StatusOK {
		t.Fatalf("patch sku: %d %s", r.Status, r.Body)
	}
	var got productBody
	r.JSON(t, &got)
	want := p
	want.SKU, want.UpdatedAt = "FIXED-SKU", got.UpdatedAt // trimmed, as on create
	if got != want {
		t.Errorf("patched %+v, want %+v", got, want)
	}
	if !got.UpdatedAt.After(p.UpdatedAt) {
		t.Errorf("patched updated_at %v, want after the creation's %v", got.UpdatedAt, p.UpdatedAt)
	}
	var read productBody
	call(t, http.MethodGet, s.url+"/api/v1/products/"+p.ID, "").JSON(t, &read)
	if read != got {
		t.Errorf("GET after the patch = %+v, want %+v", read, got)
	}
	var updated int
	_ = s.db.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE type = 'product.updated'
		AND subject = $1 AND data->>'sku' = 'FIXED-SKU'`, p.ID).Scan(&updated)
	if updated != 1 {
		t.Errorf("%d product.updated events with the new sku; want 1", updated)
	}

	// Another product's SKU: the create's conflict, and the name sent with it is not
	// written either.
	dup := call(t, http.MethodPost, s.url+"/api/v1/products",
		`{"sku":"TAKEN-SKU","name":"Again","price_cents":1,"currency":"USD","stock":1}`, programtest.Bearer(s.admin)...).problem(t, http.StatusConflict)
	events := s.count(t, "outbox")
	d := patch(`{"sku":"TAKEN-SKU","name":"Should not stick"}`).problem(t, http.StatusConflict)
	if d.Type != dup.Type || d.Title != dup.Title || d.Detail != dup.Detail {
		t.Errorf("patching to a taken sku: %+v; want the create's problem %+v", d, dup)
	}
	call(t, http.MethodGet, s.url+"/api/v1/products/"+p.ID, "").JSON(t, &read)
	if read != got || s.count(t, "outbox") != events {
		t.Errorf("the refused patch changed something: %+v (was %+v), %d events (were %d)", read, got, s.count(t, "outbox"), events)
	}

	// SKUs are compared exactly, as on create: another case is another SKU. And the
	// product's own SKU is no conflict with itself.
	for _, sku := range []string{"taken-sku" /* another case */, "taken-sku" /* now its own */} {
		if r := patch(`{"sku":"` + sku + `"}`); r.Status != http.StatusOK {
			t.Errorf("patch sku %s: %d %s", sku, r.Status, r.Body)
		}
	}
	// The old SKU is free again.
	s.create(t, "TYPO-SKU", 100, "USD", 1)
	var stillOther productBody
	call(t, http.MethodGet, s.url+"/api/v1/products/"+other.ID, "").JSON(t, &stillOther)
	if stillOther != other {
		t.Errorf("the other product changed: %+v, was %+v", stillOther, other)
	}
}

func TestCatalogueListsPagesAndGets(t *testing.T) {
	t.Parallel()
	s := startInventory(t, "", nil)
	var want []string
	for i := range 5 {
		want = append(want, s.create(t, fmt.Sprintf("SKU-%d", i), 100, "USD", 1).ID)
	}

	var got []string
	next := s.url + "/api/v1/products?limit=2"
	for pages := 0; next != ""; pages++ {
		if pages == 3 {
			t.Fatal("more than 3 pages of 2 for 5 products")
		}
		r := call(t, http.MethodGet, next, "")
		if r.Status != http.StatusOK {
			t.Fatalf("list: %d %s", r.Status, r.Body)
		}
		var l listBody
		r.JSON(t, &l)
		for _, p := range l.Items {
			got = append(got, p.ID)
		}
		next = ""
		if l.NextCursor != nil {
			next = s.url + "/api/v1/products?limit=2&cursor=" + *l.NextCursor
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("pages listed %v, want %v (creation order)", got, want)
	}

	// The default page holds them all; the last page says so with a null cursor.
	r := call(t, http.MethodGet, s.url+"/api/v1/products", "")
	if r.Status != http.StatusOK {
		t.Errorf("default list: status %d, want 200; body %s", r.Status, r.Body)
	}
	if !strings.Contains(string(r.Body), `"next_cursor":null`) {
		t.Errorf("default list: %s, want \"next_cursor\":null in it", r.Body)
	}
	for _, q := range []string{"limit=0", "limit=101", "limit=x", "cursor=nonsense"} {
		d := call(t, http.MethodGet, s.url+"/api/v1/products?"+q, "").problem(t, http.StatusUnprocessableEntity)
		if len(d.Errors) != 1 {
			t.Errorf("?%s: %+v", q, d)
		}
	}

	for _, id := range []string{uuid.NewString(), "42", "not-a-uuid"} {
		call(t, http.MethodGet, s.url+"/api/v1/products/"+id, "").problem(t, http.StatusNotFound)
	}
}

// ?q= narrows the list to the products with every word of it, pages on with the same
// q, and is refused (422 naming q) when longer than 100 characters.
func TestCatalogueSearch(t *testing.T) {
	t.Parallel()
	s := startInventory(t, "", nil)
	var want []string
	for i := range 3 {
		s.create(t, fmt.Sprintf("TEAPOT-%d", i), 100, "USD", 1)
		want = append(want, s.create(t, fmt.Sprintf("MUG-%d", i), 100, "USD", 1).ID)
	}

	var got []string
	next := s.url + "/api/v1/products?limit=2&q=" + url.QueryEscape(" product  mug ")
	for pages := 0; next != ""; pages++ {
		if pages == 2 {
			t.Fatal("more than 2 pages of 2 for 3 products")
		}
		var l listBody
		call(t, http.MethodGet, next, "").JSON(t, &l)
		for _, p := range l.Items {
			got = append(got, p.ID)
		}
		next = ""
		if l.NextCursor != nil {
			next = s.url + "/api/v1/products?limit=2&q=mug+product&cursor=" + *l.NextCursor
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("the search listed %v, want the mugs %v", got, want)
	}

	for q, n := range map[string]int{"": 6, "%20": 6, "nothing": 0, "%25": 0, strings.Repeat("x", 100): 0} {
		var l listBody
		call(t, http.MethodGet, s.url+"/api/v1/products?q="+q, "").JSON(t, &l)
		if len(l.Items) != n {
			t.Errorf("?q=%s listed %d products, want %d", q, len(l.Items), n)
		}
	}

	for _, q := range []string{strings.Repeat("x", 101), strings.Repeat("%C3%A9", 101), "a%00b", "%FF"} {
		d := call(t, http.MethodGet, s.url+"/api/v1/products?q="+q, "").problem(t, http.StatusUnprocessableEntity)
		if !slices.Equal(fields(d), []string{"q"}) {
			t.Errorf("?q=%s: %+v, want a 422 naming q", q, d)
		}
	}
	// Every bad parameter is named at once.
	d := call(t, http.MethodGet, s.url+"/api/v1/products?limit=0&q="+strings.Repeat("x", 101), "").problem(t, http.StatusUnprocessableEntity)
	f := fields(d)
	if !slices.Contains(f, "q") {
		t.Errorf("a bad q and limit: fields %v, want q among them", f)
	}
	if !slices.Contains(f, "limit") {
		t.Errorf("a bad q and limit: fields %v, want limit among them", f)
	}
	if len(f) != 2 {
		t.Errorf("a bad q and limit: fields %v, want the 2", f)
	}
}

func TestProductWritesNeedAnAdmin(t *testing.T) {
	t.Parallel()
	s := startInventory(t, "", nil)
	p := s.create(t, "MINE", 100, "USD", 3)
	stranger := newKeys(t).token(t, auth.RoleAdmin) // signed by a key the service does not trust
	before := [2]int{s.count(t, "products"), s.count(t, "outbox")}

	body := `{"sku":"NEW","name":"New","price_cents":100,"currency":"USD","stock":1}`
	for _, c := range []struct {
		name   string
		header []string
		status int
	}{
		{"no token", nil, http.StatusUnauthorized},
		{"garbage token", programtest.Bearer("not.a.token"), http.StatusUnauthorized},
		{"foreign key", programtest.Bearer(stranger), http.StatusUnauthorized},
		{"customer", programtest.Bearer(s.customer), http.StatusForbidden},
	} {
		r := call(t, http.MethodPost, s.url+"/api/v1/products", body, c.header...)
		r.problem(t, c.status)
		r = call(t, http.MethodPatch, s.url+"/api/v1/products/"+p.ID, `{"stock":100}`, c.header...)
		r.problem(t, c.status)
		if c.status == http.StatusUnauthorized && r.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", c.name)
		}
	}
	if after := [2]int{s.count(t, "products"), s.count(t, "outbox")}; after != before {
		t.Errorf("refused writes changed the rows (products, outbox): %v → %v, want them as they were", before, after)
	}
	if n := s.stock(t, p.ID); n != 3 {
		t.Errorf("refused writes changed the stock to %d, want 3", n)
	}
}

func TestBadProductInputIsRefusedAndWritesNothing(t *testing.T) {
	t.Parallel()
	s := startInventory(t, "", nil)
	p := s.create(t, "EXISTING", 100, "USD", 3)
	before := [2]int{s.count(t, "products"), s.count(t, "outbox")}

	create := func(overrides string) string {
		m := map[string]any{"sku": "NEW-1", "name": "New", "description": "", "price_cents": 100, "currency": "USD", "stock": 1}
		var o map[string]any
		if err := json.Unmarshal([]byte(overrides), &o); err != nil {
			t.Fatal(err)
		}
		for k, v := range o {
			if v == "<absent>" {
				delete(m, k)
				continue
			}
			m[k] = v
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	for _, c := range []struct {
		method, path, body string
		status             int
		fields             []string
	}{
		{"POST", "", create(`{"sku":""}`), 422, []string{"sku"}},
		{"POST", "", create(`{"sku":"has space"}`), 422, []string{"sku"}},
		{"POST", "", create(`{"sku":"` + strings.Repeat("x", 65) + `"}`), 422, []string{"sku"}},
		{"POST", "", create(`{"name":"  "}`), 422, []string{"name"}},
		{"POST", "", create(`{"name":"` + strings.Repeat("n", 201) + `"}`), 422, []string{"name"}},
		{"POST", "", create(`{"description":"` + strings.Repeat("d", 2001) + `"}`), 422, []string{"description"}},
		{"POST", "", create(`{"price_cents":0}`), 422, []string{"price_cents"}},
		{"POST", "", create(`{"price_cents":-5}`), 422, []string{"price_cents"}},
		{"POST", "", create(`{"price_cents":"<absent>"}`), 422, []string{"price_cents"}},
		{"POST", "", create(`{"currency":"usd"}`), 422, []string{"currency"}},
		{"POST", "", create(`{"currency":"<absent>"}`), 422, []string{"currency"}},
		{"POST", "", create(`{"stock":-1}`), 422, []string{"stock"}},
		{"POST", "", create(`{"stock":"<absent>"}`), 422, []string{"stock"}},
		{"POST", "", `{}`, 422, []string{"sku", "name", "currency", "price_cents", "stock"}},
		{"POST", "", create(`{"price_cents":12.5}`), 400, nil},
		{"POST", "", create(`{"stock":"many"}`), 400, nil},
		{"POST", "", create(`{"id":"` + uuid.NewString() + `"}`), 400, nil},
		{"POST", "", `{"sku":`, 400, nil},
		{"POST", "", `[]`, 400, nil},
		{"PATCH", p.ID, `{"name":null}`, 422, []string{"name"}},
		{"PATCH", p.ID, `{"price_cents":null,"stock":null,"description":null}`, 422, []string{"description", "price_cents", "stock"}},
		{"PATCH", p.ID, `{"stock":-1}`, 422, []string{"stock"}},
		{"PATCH", p.ID, `{"price_cents":0,"name":""}`, 422, []string{"name", "price_cents"}},
		{"PATCH", p.ID, `{"name":"Fine","stock":-1}`, 422, []string{"stock"}},
		// The SKU may change (TestAdminChangesAProductsSKU), under the create's rules.
		{"PATCH", p.ID, `{"sku":""}`, 422, []string{"sku"}},
		{"PATCH", p.ID, `{"sku":"has space"}`, 422, []string{"sku"}},
		{"PATCH", p.ID, `{"sku":"` + strings.Repeat("x", 65) + `"}`, 422, []string{"sku"}},
		{"PATCH", p.ID, `{"sku":null}`, 422, []string{"sku"}},
		{"PATCH", p.ID, `{"sku":"FINE","stock":-1}`, 422, []string{"stock"}},
		{"PATCH", p.ID, `{"sku":7}`, 400, nil},
		{"PATCH", p.ID, `{"currency":"EUR"}`, 400, nil},
		{"PATCH", p.ID, `{"stock":"3"}`, 400, nil},
		{"PATCH", p.ID, `not json`, 400, nil},
	} {
		path := "/api/v1/products"
		if c.path != "" {
			path += "/" + c.path
		}
		r := call(t, c.method, s.url+path, c.body, programtest.Bearer(s.admin)...)
		d := r.problem(t, c.status)
		if got := fields(d); !slices.Equal(got, c.fields) {
			t.Errorf("%s %s: fields %v, want %v (%s)", c.method, c.body, got, c.fields, r.Body)
		}
	}
	if after := [2]int{s.count(t, "products"), s.count(t, "outbox")}; after != before {
		t.Errorf("bad input changed products/outbox: %v → %v", before, after)
	}
	var got productBody
	call(t, http.MethodGet, s.url+"/api/v1/products/"+p.ID, "").JSON(t, &got)
	if got != p {
		t.Errorf("the product changed: %+v, was %+v", got, p)
	}
}

type lineBody struct {
	ProductID      string `json:"product_id"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

type reservationBody struct {
	OrderID    string     `json:"order_id"`
	Status     string     `json:"status"`
	Items      []lineBody `json:"items"`
	TotalCents int64      `json:"total_cents"`
	Currency   string     `json:"currency"`
	ExpiresAt  time.Time  `json:"expires_at"`
}

func reserveBody(order string, items ...any) string {
	var parts []string
	for i := 0; i+1 < len(items); i += 2 {
		parts = append(parts, fmt.Sprintf(`{"product_id":%q,"quantity":%d}`, items[i], items[i+1]))
	}
	return fmt.Sprintf(`{"order_id":%q,"items":[%s]}`, order, strings.Join(parts, ","))
}

func TestQuotesAndReservationsOverHTTP(t *testing.T) {
	t.Parallel()
	s := startInventory(t, "", map[string]string{"RESERVATION_TTL": "10m"})
	mug := s.create(t, "MUG", 1800, "USD", 10)
	tee := s.create(t, "TEE", 2900, "USD", 2)
	euro := s.create(t, "EURO", 500, "EUR", 10)

	// A quote prices the basket and changes nothing.
	r := s.saga(t, http.MethodPost, "/internal/quotes",
		fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":3},{"product_id":%q,"quantity":1}]}`, mug.ID, tee.ID))
	var q struct {
		Items      []lineBody `json:"items"`
		TotalCents int64      `json:"total_cents"`
		Currency   string     `json:"currency"`
	}
	if r.Status != http.StatusOK {
		t.Fatalf("quote: %d %s", r.Status, r.Body)
	}
	r.JSON(t, &q)
	if q.TotalCents != 3*1800+2900 {
		t.Errorf("quote total_cents %d, want %d", q.TotalCents, 3*1800+2900)
	}
	if q.Currency != "USD" {
		t.Errorf("quote currency %q, want USD", q.Currency)
	}
	if len(q.Items) != 2 {
		t.Errorf("quote items %+v, want 2", q.Items)
	} else {
		if want := (lineBody{mug.ID, 3, 1800}); q.Items[0] != want {
			t.Errorf("quote item 0 %+v, want %+v", q.Items[0], want)
		}
		if want := (lineBody{tee.ID, 1, 2900}); q.Items[1] != want {
			t.Errorf("quote item 1 %+v, want %+v", q.Items[1], want)
		}
	}
	d := s.saga(t, http.MethodPost, "/internal/quotes",
		fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1},{"product_id":%q,"quantity":1}]}`, mug.ID, uuid.New())).
		problem(t, http.StatusUnprocessableEntity)
	if !slices.Equal(fields(d), []string{"items[1].product_id"}) {
		t.Errorf("unknown product in a quote: %+v", d)
	}
	d = s.saga(t, http.MethodPost, "/internal/quotes",
		fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1},{"product_id":%q,"quantity":1}]}`, mug.ID, euro.ID)).
		problem(t, http.StatusUnprocessableEntity)
	if !slices.Equal(fields(d), []string{"items"}) {
		t.Errorf("mixed currencies in a quote: %+v", d)
	}
	if n := s.stock(t, mug.ID); n != 10 {
		t.Errorf("a quote changed the stock to %d, want 10", n)
	}
	if n := s.count(t, "reservations"); n != 0 {
		t.Errorf("a quote made %d reservations, want 0", n)
	}

	// Reserve: 201 the first time, 200 with the same reservation after.
	order := uuid.NewString()
	body := reserveBody(order, mug.ID, 3, tee.ID, 2)
	r = s.saga(t, http.MethodPost, "/internal/reservations", body)
	if r.Status != http.StatusCreated {
		t.Fatalf("reserve: status %d, want 201; body %s", r.Status, r.Body)
	}
	if loc := r.Header.Get("Location"); loc != "/internal/reservations/"+order {
		t.Errorf("reserve: Location %q, want /internal/reservations/%s", loc, order)
	}
	var res reservationBody
	r.JSON(t, &res)
	if res.OrderID != order {
		t.Errorf("reservation order_id %s, want %s", res.OrderID, order)
	}
	if res.Status != "reserved" {
		t.Errorf("reservation status %q, want reserved", res.Status)
	}
	if res.TotalCents != 3*1800+2*2900 {
		t.Errorf("reservation total_cents %d, want %d", res.TotalCents, 3*1800+2*2900)
	}
	if res.Currency != "USD" {
		t.Errorf("reservation currency %q, want USD", res.Currency)
	}
	if len(res.Items) != 2 {
		t.Errorf("reservation items %+v, want 2", res.Items)
	} else if want := (lineBody{tee.ID, 2, 2900}); res.Items[1] != want {
		t.Errorf("reservation item 1 %+v, want %+v", res.Items[1], want)
	}
	if res.ExpiresAt.Sub(time.Now()) < 9*time.Minute || res.ExpiresAt.Sub(time.Now()) > 10*time.Minute {
		t.Errorf("reservation expires_at %v, %s from now; want 9 to 10 minutes", res.ExpiresAt, time.Until(res.ExpiresAt))
	}
	r = s.saga(t, http.MethodPost, "/internal/reservations", body)
	var again reservationBody
	if r.Status != http.StatusOK {
		t.Fatalf("repeat reserve: %d %s", r.Status, r.Body)
	}
	r.JSON(t, &again)
	if fmt.Sprint(again) != fmt.Sprint(res) {
		t.Errorf("repeat gave %+v, want %+v", again, res)
	}
	if n := s.stock(t, mug.ID); n != 7 {
		t.Errorf("after a repeat reserve mug stock %d, want 7", n)
	}
	if n := s.stock(t, tee.ID); n != 0 {
		t.Errorf("after a repeat reserve tee stock %d, want 0", n)
	}
	r = s.saga(t, http.MethodGet, "/internal/reservations/"+order, "")
	r.JSON(t, &again)
	if r.Status != http.StatusOK {
		t.Errorf("GET reservation: status %d, want 200; body %s", r.Status, r.Body)
	}
	if fmt.Sprint(again) != fmt.Sprint(res) {
		t.Errorf("GET reservation %+v, want %+v", again, res)
	}

	// The tee is sold out: another order for it is refused with out_of_stock, and
	// takes nothing.
	short := uuid.NewString()
	before := s.count(t, "outbox")
	d = s.saga(t, http.MethodPost, "/internal/reservations", reserveBody(short, mug.ID, 1, tee.ID, 1)).problem(t, http.StatusConflict)
	if d.Type != "urn:bazaar:problem:out_of_stock" {
		t.Errorf("out of stock problem type %q, want urn:bazaar:problem:out_of_stock", d.Type)
	}
	if d.Title != "Conflict" {
		t.Errorf("out of stock problem title %q, want Conflict", d.Title)
	}
	if d.Instance != "/internal/reservations" {
		t.Errorf("out of stock problem instance %q, want /internal/reservations", d.Instance)
	}
	if n := s.stock(t, mug.ID); n != 7 {
		t.Errorf("a refused reserve changed the mug stock to %d, want 7", n)
	}
	if n := s.count(t, "outbox"); n != before {
		t.Errorf("a refused reserve left %d events, want still %d", n, before)
	}
	d = s.saga(t, http.MethodPost, "/internal/reservations", reserveBody(short, mug.ID, 1, tee.ID, 1)).problem(t, http.StatusConflict)
	if d.Type != "urn:bazaar:problem:out_of_stock" {
		t.Errorf("repeat of a refused reserve: %+v", d)
	}
	s.saga(t, http.MethodGet, "/internal/reservations/"+short, "").problem(t, http.StatusNotFound)

	// Commit, twice.
	for range 2 {
		r = s.saga(t, http.MethodPost, "/internal/reservations/"+order+"/commit", "")
		r.JSON(t, &again)
		if r.Status != http.StatusOK {
			t.Errorf("commit: status %d, want 200; body %s", r.Status, r.Body)
		}
		if again.Status != "committed" {
			t.Errorf("commit: reservation status %q, want committed", again.Status)
		}
		if again.TotalCents != res.TotalCents {
			t.Errorf("commit: total_cents %d, want %d", again.TotalCents, res.TotalCents)
		}
	}
	// Release (a customer cancels): the stock comes back, once.
	for range 2 {
		r = s.saga(t, http.MethodPost, "/internal/reservations/"+order+"/release", "")
		r.JSON(t, &again)
		if r.Status != http.StatusOK {
			t.Errorf("release: status %d, want 200; body %s", r.Status, r.Body)
		}
		if again.Status != "released" {
			t.Errorf("release: reservation status %q, want released", again.Status)
		}
		if len(again.Items) != 2 {
			t.Errorf("release: items %+v, want 2", again.Items)
		}
	}
	if s.stock(t, mug.ID) != 10 || s.stock(t, tee.ID) != 2 {
		t.Errorf("stock %d/%d after release, want 10/2", s.stock(t, mug.ID), s.stock(t, tee.ID))
	}
	d = s.saga(t, http.MethodPost, "/internal/reservations/"+order+"/commit", "").problem(t, http.StatusConflict)
	if d.Type != "urn:bazaar:problem:reservation_released" {
		t.Errorf("commit after release: %+v", d)
	}

	// Releasing an order that never reserved is fine (a compensation always finishes);
	// committing or reading one is 404, as is a malformed order id.
	never := uuid.NewString()
	s.saga(t, http.MethodPost, "/internal/reservations/"+uuid.NewString()+"/commit", "").problem(t, http.StatusNotFound)
	s.saga(t, http.MethodGet, "/internal/reservations/"+never, "").problem(t, http.StatusNotFound)
	r = s.saga(t, http.MethodPost, "/internal/reservations/"+never+"/release", "")
	r.JSON(t, &again)
	if r.Status != http.StatusOK {
		t.Errorf("release of nothing: status %d, want 200; body %s", r.Status, r.Body)
	}
	if again.Status != "released" {
		t.Errorf("release of nothing: status %q, want released", again.Status)
	}
	if again.OrderID != never {
		t.Errorf("release of nothing: order_id %s, want %s", again.OrderID, never)
	}
	if len(again.Items) != 0 {
		t.Errorf("release of nothing: items %+v, want none", again.Items)
	}
	if !strings.Contains(string(r.Body), `"items":[]`) {
		t.Errorf("release of nothing: %s, want \"items\":[] in it", r.Body)
	}
	for _, path := range []string{"/internal/reservations/nope", "/internal/reservations/nope/commit", "/internal/reservations/nope/release"} {
		method := http.MethodPost
		if !strings.HasSuffix(path, "commit") && !strings.HasSuffix(path, "release") {
			method = http.MethodGet
		}
		call(t, method, s.url+path, "").problem(t, http.StatusNotFound)
	}

	var reserved, released int
	_ = s.db.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE type = 'stock.reserved'), count(*) FILTER (WHERE type = 'stock.released') FROM outbox`).
		Scan(&reserved, &released)
	if reserved != 1 || released != 1 {
		t.Errorf("%d stock.reserved and %d stock.released events, want 1 each", reserved, released)
	}
}

func TestBadReservationInputIsRefusedAndWritesNothing(t *testing.T) {
	t.Parallel()
	s := startInventory(t, "", nil)
	p := s.create(t, "P", 100, "USD", 500)
	order := uuid.NewString()
	before := [3]int{s.count(t, "reservations"), s.count(t, "outbox"), s.stock(t, p.ID)}

	many := make([]any, 0, 102)
	for range 51 {
		many = append(many, uuid.NewString(), 1)
	}
	for _, c := range []struct {
		path, body string
		status     int
		fields     []string
	}{
		{"/internal/reservations", reserveBody(order, p.ID, 0), 422, []string{"items[0].quantity"}},
		{"/internal/reservations", reserveBody(order, p.ID, 101), 422, []string{"items[0].quantity"}},
		{"/internal/reservations", reserveBody(order, many...), 422, []string{"items"}},
		{"/internal/reservations", reserveBody(order), 422, []string{"items"}},
		{"/internal/reservations", reserveBody(order, p.ID, 1, p.ID, 2), 422, []string{"items[1].product_id"}},
		{"/internal/reservations", reserveBody(order, "not-a-uuid", 1), 422, []string{"items[0].product_id"}},
		{"/internal/reservations", reserveBody(order, uuid.NewString(), 1), 422, []string{"items[0].product_id"}},
		{"/internal/reservations", reserveBody("", p.ID, 1), 422, []string{"order_id"}},
		{"/internal/reservations", reserveBody("123", p.ID, 1), 422, []string{"order_id"}},
		{"/internal/reservations", `{"order_id":"` + order + `"}`, 422, []string{"items"}},
		{"/internal/reservations", `{"order_id":"` + order + `","items":[{"product_id":"` + p.ID + `","quantity":"2"}]}`, 400, nil},
		{"/internal/reservations", `{"order_id":"` + order + `","items":[],"extra":1}`, 400, nil},
		{"/internal/reservations", ``, 400, nil},
		{"/internal/quotes", `{"items":[{"product_id":"` + p.ID + `","quantity":0}]}`, 422, []string{"items[0].quantity"}},
		{"/internal/quotes", `{"items":[]}`, 422, []string{"items"}},
		{"/internal/quotes", `{"items":{}}`, 400, nil},
	} {
		d := s.saga(t, http.MethodPost, c.path, c.body).problem(t, c.status)
		if got := fields(d); !slices.Equal(got, c.fields) {
			t.Errorf("%s %.80s: fields %v, want %v", c.path, c.body, got, c.fields)
		}
	}
	if after := [3]int{s.count(t, "reservations"), s.count(t, "outbox"), s.stock(t, p.ID)}; after != before {
		t.Errorf("bad input changed reservations/outbox/stock: %v → %v", before, after)
	}
}

func TestSeededCatalogueIsAddedOnce(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	want, err := catalogue.Products()
	if err != nil {
		t.Fatal(err)
	}
	// Two replicas start on one database; each seeds before it listens.
	first := startInventory(t, dbURL, map[string]string{"SEED_CATALOGUE": "true"})
	startInventory(t, dbURL, map[string]string{"SEED_CATALOGUE": "true"})
	// A third whose admin has already changed a seeded product's stock.
	if _, err := first.db.Exec(context.Background(), `UPDATE products SET stock = 1 WHERE sku = $1`, want[0].SKU); err != nil {
		t.Fatal(err)
	}
	startInventory(t, dbURL, map[string]string{"SEED_CATALOGUE": "yes"})

	var created int
	_ = first.db.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE type = 'product.created'`).Scan(&created)
	if n := first.count(t, "products"); n != len(want) || created != len(want) {
		t.Errorf("%d products and %d product.created events, want %d each", n, created, len(want))
	}
	r := call(t, http.MethodGet, first.url+"/api/v1/products?limit=100", "")
	var l listBody
	r.JSON(t, &l)
	if len(l.Items) != len(want) {
		t.Fatalf("listed %d products, want %d", len(l.Items), len(want))
	}
	for i, p := range l.Items {
		w := want[i]
		wantStock := int(w.Stock)
		if i == 0 {
			wantStock = 1 // a later seed never overwrites
		}
		if p.SKU != w.SKU.String() {
			t.Errorf("product %d: sku %q, want %q", i, p.SKU, w.SKU)
		}
		if p.Name != w.Name.String() {
			t.Errorf("product %d: name %q, want %q", i, p.Name, w.Name)
		}
		if p.PriceCents != int64(w.Price) {
			t.Errorf("product %d: price_cents %d, want %d", i, p.PriceCents, int64(w.Price))
		}
		if p.Currency != "USD" {
			t.Errorf("product %d: currency %q, want USD", i, p.Currency)
		}
		if p.Stock != wantStock {
			t.Errorf("product %d: stock %d, want %d", i, p.Stock, wantStock)
		}
	}

	// Without SEED_CATALOGUE nothing is seeded.
	empty := startInventory(t, "", nil)
	if n := empty.count(t, "products"); n != 0 {
		t.Errorf("%d products without SEED_CATALOGUE", n)
	}
}

func TestExpiryTaskReleasesAbandonedReservations(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	pool := openDB(t, dbURL)
	ctx := context.Background()
	if err := pgdb.Migrate(ctx, pool, migrations.FS, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	// A reservation whose saga never came back, and one still within its time.
	store := postgres.NewStore(pool)
	products := product.NewService(store, time.Now)
	p, err := products.Create(ctx, product.New{SKU: "P", Name: "P", Price: 100, Currency: "USD", Stock: 10})
	if err != nil {
		t.Fatal(err)
	}
	b, err := reservation.NewBasket([]reservation.Item{{ProductID: p.ID, Quantity: 4}})
	if err != nil {
		t.Fatal(err)
	}
	abandoned, live := uuid.New(), uuid.New()
	past := time.Now().Add(-time.Hour)
	if _, _, err := reservation.NewService(store, 15*time.Minute, func() time.Time { return past }).Reserve(ctx, abandoned, b); err != nil {
		t.Fatal(err)
	}
	if _, _, err := reservation.NewService(store, 15*time.Minute, time.Now).Reserve(ctx, live, b); err != nil {
		t.Fatal(err)
	}

	// The scheduler enqueues the current minute's run as the program starts.
	s := startInventory(t, dbURL, nil)
	status := func(order uuid.UUID) string {
		var st string
		if err := s.db.QueryRow(ctx, `SELECT status FROM reservations WHERE order_id = $1`, order).Scan(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	for deadline := time.Now().Add(30 * time.Second); status(abandoned) != "released"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the abandoned reservation is still %s after 30s", status(abandoned))
		}
	}
	if status(live) != "reserved" || s.stock(t, p.ID.String()) != 6 {
		t.Errorf("live reservation %s, stock %d; want reserved and 6", status(live), s.stock(t, p.ID.String()))
	}
	if !strings.Contains(s.prog.Logs(), `"msg":"expired reservations released"`) {
		t.Errorf("the task did not log \"expired reservations released\":\n%s", s.prog.Logs())
	}
	if !strings.Contains(s.prog.Logs(), `"released":1`) {
		t.Errorf("the task did not log its count \"released\":1:\n%s", s.prog.Logs())
	}
}

func TestBadSettingsStopTheStart(t *testing.T) {
	t.Parallel()
	for _, env := range []map[string]string{
		{"RESERVATION_TTL": "soon"},
		{"RESERVATION_TTL": "-1m"},
		{"SEED_CATALOGUE": "maybe"},
	} {
		_, err := loadSettings(func(k string) string { return env[k] })
		for k := range env {
			if err == nil || !strings.Contains(err.Error(), k) {
				t.Errorf("%v: %v, want an error naming %s", env, err, k)
			}
		}
	}
	s, err := loadSettings(func(string) string { return "" })
	if err != nil {
		t.Fatalf("defaults: %v, want no error", err)
	}
	if s.ReservationTTL != 15*time.Minute {
		t.Errorf("default RESERVATION_TTL %v, want 15m", s.ReservationTTL)
	}
	if s.SeedCatalogue {
		t.Error("default SEED_CATALOGUE true, want false")
	}
	if s.HTTPAddr != ":8082" {
		t.Errorf("default HTTP_ADDR %q, want :8082", s.HTTPAddr)
	}
}

// Only the orders service gets into the internal routes, only on the internal
// listener, and a refused call changes nothing.
func TestInternalRoutesLetInOnlyTheOrdersService(t *testing.T) {
	t.Parallel()
	s := startInventory(t, "", nil)
	p := s.create(t, "SIDE-DOOR", 1000, "USD", 100)
	body := reserveBody(uuid.NewString(), p.ID, 100)
	for _, c := range []struct {
		name   string
		header []string
		status int
	}{
		{"no credential", nil, http.StatusUnauthorized},
		{"a customer's access token", []string{"Authorization", "Bearer " + s.customer}, http.StatusUnauthorized},
		{"an admin's access token", []string{"Authorization", "Bearer " + s.admin}, http.StatusUnauthorized},
		{"orders' token for payments", s.keys.Authorization(t, "orders", "payments"), http.StatusUnauthorized},
		{"another service's token", s.keys.Authorization(t, "notifications", "inventory"), http.StatusForbidden},
	} {
		for _, path := range []string{"/internal/reservations", "/internal/quotes"} {
			call(t, http.MethodPost, s.internal+path, body, c.header...).problem(t, c.status)
		}
		call(t, http.MethodPost, s.internal+"/internal/reservations/"+uuid.NewString()+"/release", "", c.header...).problem(t, c.status)
	}
	// The public listener has no internal route at all, whatever the credential.
	call(t, http.MethodPost, s.url+"/internal/reservations", body, s.keys.Authorization(t, "orders", "inventory")...).
		problem(t, http.StatusNotFound)
	if n, stock := s.count(t, "reservations"), s.stock(t, p.ID); n != 0 || stock != 100 {
		t.Fatalf("refused calls left %d reservations and stock %d, want 0 and 100", n, stock)
	}
	// And the saga's own call works.
	if r := s.saga(t, http.MethodPost, "/internal/reservations", body); r.Status != http.StatusCreated {
		t.Fatalf("orders' reservation = %d %s", r.Status, r.Body)
	}
}

// A rotated key is trusted without a restart, and tokens signed before the rotation
// keep working until they expire.
func TestARotatedServiceKeyIsTrustedWithoutARestart(t *testing.T) {
	t.Parallel()
	s := startInventory(t, "", nil)
	p := s.create(t, "ROTATE", 1000, "USD", 10)
	quote := `{"items":[{"product_id":"` + p.ID + `","quantity":1}]}`
	before := s.keys.Authorization(t, "orders", "inventory")
	if _, err := svcauth.Rotate(s.keys.Dir, "orders", 2, func() {}); err != nil {
		t.Fatal(err)
	}
	after := s.keys.Authorization(t, "orders", "inventory")
	if after[1] == before[1] {
		t.Fatal("the token did not change with the key")
	}
	for deadline := time.Now().Add(3 * svcauth.ReloadEvery); ; time.Sleep(100 * time.Millisecond) {
		r := call(t, http.MethodPost, s.internal+"/internal/quotes", quote, after...)
		if r.Status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new key's token is still refused: %d %s", r.Status, r.Body)
		}
	}
	if r := call(t, http.MethodPost, s.internal+"/internal/quotes", quote, before...); r.Status != http.StatusOK {
		t.Fatalf("a token signed before the rotation = %d %s", r.Status, r.Body)
	}
}
