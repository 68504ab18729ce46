package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/programtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/pgdb"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/pkg/svcauth"
	"github.com/bazaar-shop/bazaar/pkg/svcauth/svcauthtest"
	"github.com/bazaar-shop/bazaar/pkg/tasks"
	"github.com/bazaar-shop/bazaar/services/orders/internal/fakes"
	"github.com/bazaar-shop/bazaar/services/orders/internal/jobs"
)

// The orders service starts on its own fresh database, applies its migrations and
// answers the operational routes.
func TestRunServesOperationalRoutes(t *testing.T) {
	t.Parallel()
	env := svcauthtest.New(t, "orders").Env("orders")
	env["DATABASE_URL"], env["REDIS_URL"] = pgtest.NewDatabase(t), redistest.New(t)
	prog := programtest.Start(t, run, env)
	programtest.AssertOperational(t, prog, "postgres", "migrations", "redis")
}

// Orders signs every call to inventory and payments; without its key it does not start.
func TestWithoutAServiceKeyOrdersDoesNotStart(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": pgtest.NewDatabase(t), "REDIS_URL": redistest.New(t),
		"HTTP_ADDR": "127.0.0.1:0", "INTERNAL_ADDR": "127.0.0.1:0"}
	err := run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "SERVICE_KEY_FILE") {
		t.Fatalf("run without a service key = %v; want an error naming SERVICE_KEY_FILE", err)
	}
}

func TestBadConfigurationStopsStartNamingTheVariable(t *testing.T) {
	t.Parallel()
	for name, env := range map[string]map[string]string{
		"INVENTORY_URL":       {"INVENTORY_URL": "ftp://x"},
		"PAYMENTS_URL":        {"PAYMENTS_URL": "nope"},
		"SAGA_INLINE_TIMEOUT": {"SAGA_INLINE_TIMEOUT": "soon"},
		"CHARGE_BUDGET":       {"CHARGE_BUDGET": "-1m"},
		"RECOVER_EVERY":       {"RECOVER_EVERY": "0s"},
		"SAGA_ALARM_AFTER":    {"SAGA_ALARM_AFTER": "soon"},
		"PAYMENTS_TIMEOUT":    {"PAYMENTS_TIMEOUT": "-5s"},
	} {
		err := run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%v: err = %v, want it to name %s", env, err, name)
		}
	}
}

// stack is one orders service under test, with fake neighbours, a key to sign access
// tokens with, and a direct line to its database.
type stack struct {
	url      string
	db       *pgxpool.Pool
	redisURL string
	inv      *fakes.Inventory
	pay      *fakes.Payments
	signer   *auth.Signer
	keys     svcauthtest.Keys
	internal string // the internal listener: probes and metrics
}

func startOrders(t *testing.T, extra map[string]string) *stack {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(auth.KeySet{Keys: []auth.JWK{auth.PublicJWK("k1", pub)}})
	}))
	t.Cleanup(jwks.Close)
	s := &stack{inv: fakes.NewInventory(t), pay: fakes.NewPayments(t), signer: auth.NewSigner("k1", priv, 15*time.Minute)}
	// The fakes check orders' service credential as the real services do, so every
	// test below also proves that each call carries it.
	keys := svcauthtest.New(t, "orders", "notifications")
	s.inv.RequireOrders(t, svcauth.TrustDir(keys.Dir))
	s.pay.RequireOrders(t, svcauth.TrustDir(keys.Dir))
	s.keys = keys
	dbURL := pgtest.NewDatabase(t)
	s.redisURL = redistest.New(t)
	env := keys.Env("orders")
	maps.Copy(env, map[string]string{
		"DATABASE_URL": dbURL, "REDIS_URL": s.redisURL, "JWKS_URL": jwks.URL,
		"INVENTORY_URL": s.inv.URL, "PAYMENTS_URL": s.pay.URL,
		"SAGA_INLINE_TIMEOUT": "2s", "RECOVER_EVERY": "1s", "DOWNSTREAM_TIMEOUT": "300ms", "BREAKER_COOLDOWN": "200ms",
	})
	for k, v := range extra {
		env[k] = v
	}
	prog := programtest.Start(t, run, env)
	s.url, s.internal = prog.URL, prog.InternalURL()
	pool, err := pgdb.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s.db = pool
	return s
}

// token is an access token for a new user with role.
func (s *stack) token(t *testing.T, role auth.Role) (string, uuid.UUID) {
	t.Helper()
	id := uuid.New()
	tok, err := s.signer.Sign(auth.Principal{UserID: id, Role: role})
	if err != nil {
		t.Fatal(err)
	}
	return tok, id
}

func (s *stack) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// call is programtest.Call presenting token, when there is one, before header.
func call(t *testing.T, method, u, token, body string, header ...string) programtest.Response {
	t.Helper()
	if token != "" {
		header = append(programtest.Bearer(token), header...)
	}
	return programtest.Call(t, method, u, body, header...)
}

type orderBody struct {
	ID     string `json:"id"`
	UserID string `json:"user_id"`
	Status string `json:"status"`
	Items  []struct {
		ProductID      string `json:"product_id"`
		Quantity       int    `json:"quantity"`
		UnitPriceCents int64  `json:"unit_price_cents"`
	} `json:"items"`
	TotalCents    int64     `json:"total_cents"`
	Currency      string    `json:"currency"`
	PaymentMethod string    `json:"payment_method"`
	CancelReason  *string   `json:"cancel_reason"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// cancelledAs is the order r answers (what names it in messages), failing the test
// unless r has status and the order is cancelled for reason.
func cancelledAs(t *testing.T, what string, r programtest.Response, status int, reason string) orderBody {
	t.Helper()
	var o orderBody
	r.JSON(t, &o)
	if r.Status != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, r.Status, status, r.Body)
	}
	if o.Status != "cancelled" {
		t.Fatalf("%s: order status %q, want cancelled", what, o.Status)
	}
	if o.CancelReason == nil {
		t.Fatalf("%s: cancel_reason null, want %s", what, reason)
	} else if *o.CancelReason != reason {
		t.Fatalf("%s: cancel_reason %q, want %s", what, *o.CancelReason, reason)
	}
	return o
}

type listBody struct {
	Items      []orderBody `json:"items"`
	NextCursor *string     `json:"next_cursor"`
}

func orderJSON(method string, lines ...any) string {
	var items []string
	for i := 0; i+1 < len(lines); i += 2 {
		items = append(items, fmt.Sprintf(`{"product_id":%q,"quantity":%d}`, fmt.Sprint(lines[i]), lines[i+1]))
	}
	return fmt.Sprintf(`{"items":[%s],"payment_method":%q}`, strings.Join(items, ","), method)
}

// waitFor polls the order until cond holds, or fails after a deadline.
func (s *stack) waitFor(t *testing.T, token, id string, cond func(orderBody) bool) orderBody {
	t.Helper()
	var o orderBody
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		r := call(t, http.MethodGet, s.url+"/api/v1/orders/"+id, token, "")
		o = orderBody{}
		r.JSON(t, &o)
		if cond(o) {
			return o
		}
	}
	t.Fatalf("order %s never got there; last %+v", id, o)
	return o
}

func TestOrdersAPI(t *testing.T) {
	t.Parallel()
	s := startOrders(t, nil)
	apple, pear := s.inv.AddProduct(120, 50), s.inv.AddProduct(300, 50)
	ann, annID := s.token(t, auth.RoleCustomer)
	bob, _ := s.token(t, auth.RoleCustomer)
	orders := s.url + "/api/v1/orders"

	// Create: 201 with the finished order, priced by inventory whatever the client says.
	r := call(t, http.MethodPost, orders, ann, orderJSON("pm_card_visa", apple, 2, pear, 1))
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	var o orderBody
	r.JSON(t, &o)
	if loc := r.Header.Get("Location"); loc != "/api/v1/orders/"+o.ID {
		t.Errorf("created: Location %q, want /api/v1/orders/%s", loc, o.ID)
	}
	if o.Status != "confirmed" {
		t.Errorf("created: status %q, want confirmed", o.Status)
	}
	if o.UserID != annID.String() {
		t.Errorf("created: user_id %s, want ann's %s", o.UserID, annID)
	}
	if o.TotalCents != 540 {
		t.Errorf("created: total_cents %d, want 540", o.TotalCents)
	}
	if o.Currency != "USD" {
		t.Errorf("created: currency %q, want USD", o.Currency)
	}
	if len(o.Items) != 2 {
		t.Errorf("created: %d items %+v, want 2", len(o.Items), o.Items)
	} else if o.Items[1].UnitPriceCents != 300 {
		t.Errorf("created: second item's unit_price_cents %d, want 300", o.Items[1].UnitPriceCents)
	}
	if o.CancelReason != nil {
		t.Errorf("created: cancel_reason %q, want null", *o.CancelReason)
	}
	if o.PaymentMethod != "pm_card_visa" {
		t.Errorf("created: payment_method %q, want pm_card_visa", o.PaymentMethod)
	}
	if time.Since(o.CreatedAt) > time.Minute {
		t.Errorf("created: created_at %v, want within the last minute", o.CreatedAt)
	}
	if !strings.Contains(string(r.Body), `"cancel_reason":null`) {
		t.Errorf("cancel_reason is not null: %s", r.Body)
	}

	t.Run("get is owner only", func(t *testing.T) {
		r := call(t, http.MethodGet, orders+"/"+o.ID, ann, "")
		var got orderBody
		r.JSON(t, &got)
		if r.Status != http.StatusOK {
			t.Fatalf("get: status %d, want 200; body %s", r.Status, r.Body)
		}
		if got.ID != o.ID {
			t.Errorf("get: id %s, want %s", got.ID, o.ID)
		}
		if got.Status != "confirmed" {
			t.Errorf("get: status %q, want confirmed", got.Status)
		}
		if !got.CreatedAt.Equal(o.CreatedAt) {
			t.Errorf("get: created_at %v, want %v", got.CreatedAt, o.CreatedAt)
		}
		if !got.UpdatedAt.Equal(o.UpdatedAt) {
			t.Errorf("get: updated_at %v, want %v", got.UpdatedAt, o.UpdatedAt)
		}
		call(t, http.MethodGet, orders+"/"+o.ID, bob, "").Problem(t, http.StatusNotFound)
		call(t, http.MethodGet, orders+"/"+uuid.NewString(), ann, "").Problem(t, http.StatusNotFound)
		call(t, http.MethodGet, orders+"/not-an-id", ann, "").Problem(t, http.StatusNotFound)
		call(t, http.MethodGet, orders+"/"+o.ID, "", "").Problem(t, http.StatusUnauthorized)
		call(t, http.MethodPost, orders+"/"+o.ID+"/cancel", bob, "").Problem(t, http.StatusNotFound)
	})

	t.Run("list is the owner's, newest first, paged", func(t *testing.T) {
		second := call(t, http.MethodPost, orders, ann, orderJSON("pm_card_chargeDeclined", pear, 1))
		declined := cancelledAs(t, "declined", second, http.StatusCreated, "payment_declined")
		var page1, page2 listBody
		call(t, http.MethodGet, orders+"?limit=1", ann, "").JSON(t, &page1)
		if len(page1.Items) != 1 {
			t.Fatalf("page 1: %d items %+v, want one", len(page1.Items), page1.Items)
		}
		if page1.Items[0].ID != declined.ID {
			t.Errorf("page 1: order %s, want the newest, %s", page1.Items[0].ID, declined.ID)
		}
		if page1.NextCursor == nil {
			t.Fatal("page 1: next_cursor null, want one")
		}
		call(t, http.MethodGet, orders+"?limit=1&cursor="+*page1.NextCursor, ann, "").JSON(t, &page2)
		if len(page2.Items) != 1 {
			t.Errorf("page 2: %d items %+v, want one", len(page2.Items), page2.Items)
		} else if page2.Items[0].ID != o.ID {
			t.Errorf("page 2: order %s, want the first %s", page2.Items[0].ID, o.ID)
		}
		if page2.NextCursor != nil {
			t.Errorf("page 2: next_cursor %q, want null", *page2.NextCursor)
		}
		var others listBody
		r := call(t, http.MethodGet, orders, bob, "")
		r.JSON(t, &others)
		if len(others.Items) != 0 {
			t.Errorf("bob's list: %d items %+v, want none", len(others.Items), others.Items)
		}
		if !strings.Contains(string(r.Body), `"next_cursor":null`) {
			t.Errorf("bob's list %s, want \"next_cursor\":null in it", r.Body)
		}
		if !strings.Contains(string(r.Body), `"items":[]`) {
			t.Errorf("bob's list %s, want \"items\":[] in it", r.Body)
		}
		call(t, http.MethodGet, orders+"?limit=0", ann, "").Problem(t, http.StatusUnprocessableEntity)
	})

	t.Run("bad input is refused and writes nothing", func(t *testing.T) {
		tables := []string{"orders", "order_lines", "sagas", "saga_steps", "outbox", "idempotency_keys"}
		counts := func() []int {
			var n []int
			for _, tb := range tables {
				n = append(n, s.count(t, tb))
			}
			return n
		}
		before := counts()
		lines := make([]any, 0, 102)
		for range 51 {
			lines = append(lines, uuid.New(), 1)
		}
		cases := []struct {
			name, body string
			header     []string
			status     int
			fields     []string
		}{
			{"unknown product", orderJSON("pm_card_visa", apple, 1, uuid.New(), 1), nil, 422, []string{"items[1].product_id"}},
			{"quantity 0", orderJSON("pm_card_visa", apple, 0), nil, 422, []string{"items[0].quantity"}},
			{"quantity 101", orderJSON("pm_card_visa", apple, 101), nil, 422, []string{"items[0].quantity"}},
			{"51 lines", orderJSON("pm_card_visa", lines...), nil, 422, []string{"items"}},
			{"no lines", `{"items":[],"payment_method":"pm_card_visa"}`, nil, 422, []string{"items"}},
			{"missing payment method", `{"items":[{"product_id":"` + apple.String() + `","quantity":1}]}`, nil, 422, []string{"payment_method"}},
			{"unknown payment method", orderJSON("pm_card_amex", apple, 1), nil, 422, []string{"payment_method"}},
			{"malformed product id", orderJSON("pm_card_visa", "apple", 1), nil, 422, []string{"items[0].product_id"}},
			{"same product twice", orderJSON("pm_card_visa", apple, 1, apple, 2), nil, 422, []string{"items[1].product_id"}},
			{"malformed JSON", `{"items":[`, nil, 400, nil},
			{"unknown field", `{"items":[{"product_id":"` + apple.String() + `","quantity":1,"unit_price_cents":1}],"payment_method":"pm_card_visa"}`, nil, 400, nil},
			{"fractional quantity", `{"items":[{"product_id":"` + apple.String() + `","quantity":1.5}],"payment_method":"pm_card_visa"}`, nil, 400, nil},
			{"empty body", ``, nil, 400, nil},
			{"bad Idempotency-Key", orderJSON("pm_card_visa", apple, 1), []string{"Idempotency-Key", strings.Repeat("k", 256)}, 422, []string{"Idempotency-Key"}},
			{"unknown product with a key", orderJSON("pm_card_visa", uuid.New(), 1), []string{"Idempotency-Key", "bad-1"}, 422, []string{"items[0].product_id"}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				d := call(t, http.MethodPost, orders, ann, c.body, c.header...).Problem(t, c.status)
				var got []string
				for _, f := range d.Errors {
					got = append(got, f.Field)
				}
				if !slices.Equal(got, c.fields) {
					t.Errorf("fields %v, want %v (%+v)", got, c.fields, d)
				}
			})
		}
		if after := counts(); !slices.Equal(after, before) {
			t.Errorf("rows of %v went from %v to %v", tables, before, after)
		}
		call(t, http.MethodPost, orders, "", orderJSON("pm_card_visa", apple, 1)).Problem(t, http.StatusUnauthorized)
	})

	t.Run("Idempotency-Key replays the first answer", func(t *testing.T) {
		body := orderJSON("pm_card_visa", apple, 1)
		first := call(t, http.MethodPost, orders, ann, body, "Idempotency-Key", "order-42")
		again := call(t, http.MethodPost, orders, ann, " "+body, "Idempotency-Key", "order-42")
		if first.Status != http.StatusCreated {
			t.Fatalf("first: status %d, want 201; body %s", first.Status, first.Body)
		}
		if again.Status != first.Status {
			t.Fatalf("again: status %d, want the first's %d; body %s", again.Status, first.Status, again.Body)
		}
		if string(again.Body) != string(first.Body) {
			t.Fatalf("again: body %s, want the first's %s", again.Body, first.Body)
		}
		if loc, want := again.Header.Get("Location"), first.Header.Get("Location"); loc != want {
			t.Fatalf("again: Location %q, want the first's %q", loc, want)
		}
		if replayed := again.Header.Get("Idempotent-Replayed"); replayed != "true" {
			t.Fatalf("again: Idempotent-Replayed %q, want true", replayed)
		}
		var fo orderBody
		first.JSON(t, &fo)
		if n := s.pay.Captures(uuid.MustParse(fo.ID)); n != 1 {
			t.Errorf("%d captures, want 1", n)
		}
		if n := s.pay.Calls("charge", uuid.MustParse(fo.ID)); n != 1 {
			t.Errorf("%d charge calls, want 1", n)
		}
		d := call(t, http.MethodPost, orders, ann, orderJSON("pm_card_visa", apple, 2), "Idempotency-Key", "order-42").Problem(t, http.StatusUnprocessableEntity)
		if len(d.Errors) != 1 {
			t.Errorf("mismatch problem: %d field errors %+v, want one", len(d.Errors), d.Errors)
		} else if d.Errors[0].Field != "Idempotency-Key" {
			t.Errorf("mismatch problem: field %q named, want Idempotency-Key", d.Errors[0].Field)
		}
		// Keys are per user: bob's order-42 is his own order.
		other := call(t, http.MethodPost, orders, bob, body, "Idempotency-Key", "order-42")
		var bo orderBody
		other.JSON(t, &bo)
		if other.Status != http.StatusCreated {
			t.Errorf("bob's order: status %d, want 201; body %s", other.Status, other.Body)
		}
		if bo.ID == fo.ID {
			t.Errorf("bob's order is ann's %s, want his own", bo.ID)
		}
		if replayed := other.Header.Get("Idempotent-Replayed"); replayed != "" {
			t.Errorf("bob's order: Idempotent-Replayed %q, want none", replayed)
		}
	})

	t.Run("ten concurrent requests with one key make one order and one charge", func(t *testing.T) {
		s.inv.SetSlow(150 * time.Millisecond) // the first is still running when the rest arrive
		defer s.inv.SetSlow(0)
		carol, carolID := s.token(t, auth.RoleCustomer)
		body := orderJSON("pm_card_visa", pear, 3)
		answers := make([]programtest.Response, 10)
		var wg sync.WaitGroup
		for i := range answers {
			wg.Go(func() { answers[i] = call(t, http.MethodPost, orders, carol, body, "Idempotency-Key", "same") })
		}
		wg.Wait()
		for i, a := range answers {
			if a.Status != http.StatusCreated {
				t.Errorf("answer %d: status %d, want 201; body %s", i, a.Status, a.Body)
			}
			if string(a.Body) != string(answers[0].Body) {
				t.Errorf("answer %d: %s, want the first's %s", i, a.Body, answers[0].Body)
			}
		}
		var n int
		if err := s.db.QueryRow(context.Background(), `SELECT count(*) FROM orders WHERE user_id = $1`, carolID).Scan(&n); err != nil || n != 1 {
			t.Errorf("%d orders, want 1 (%v)", n, err)
		}
		var co orderBody
		answers[0].JSON(t, &co)
		id := uuid.MustParse(co.ID)
		if n := s.pay.Captures(id); n != 1 {
			t.Errorf("%d captures, want 1", n)
		}
		if n := s.pay.Calls("charge", id); n != 1 {
			t.Errorf("%d charge calls, want 1", n)
		}
		if n := s.inv.Calls("reserve", id); n != 1 {
			t.Errorf("%d reserve calls, want 1", n)
		}
	})

	t.Run("cancel a confirmed order", func(t *testing.T) {
		r := call(t, http.MethodPost, orders+"/"+o.ID+"/cancel", ann, "")
		cancelledAs(t, "cancel", r, http.StatusOK, "customer_request")
		id := uuid.MustParse(o.ID)
		if p, _ := s.pay.Payment(id); p.Status != "refunded" {
			t.Errorf("payment %q, want refunded", p.Status)
		}
		if res := s.inv.Reservation(id); res != "released" {
			t.Errorf("reservation %q, want released", res)
		}
		// Cancelling again: it is not confirmed any more (409, TestCancellingTwiceIsAConflict).
		// Not confirmed (cancelled for another reason): 409.
		var list listBody
		call(t, http.MethodGet, orders+"?limit=100", ann, "").JSON(t, &list)
		for _, it := range list.Items {
			if it.CancelReason != nil && *it.CancelReason == "payment_declined" {
				d := call(t, http.MethodPost, orders+"/"+it.ID+"/cancel", ann, "").Problem(t, http.StatusConflict)
				if d.Type != problem.TypePrefix+"not_cancellable" {
					t.Errorf("type %q", d.Type)
				}
			}
		}
	})

	t.Run("admin views sagas; customers may not", func(t *testing.T) {
		admin, _ := s.token(t, auth.RoleAdmin)
		sagas := s.url + "/api/v1/admin/sagas"
		call(t, http.MethodGet, sagas, ann, "").Problem(t, http.StatusForbidden)
		d := call(t, http.MethodGet, sagas+"?state=paused", admin, "").Problem(t, http.StatusUnprocessableEntity)
		if len(d.Errors) != 1 {
			t.Errorf("bad state problem: %d field errors %+v, want one", len(d.Errors), d.Errors)
		} else if d.Errors[0].Field != "state" {
			t.Errorf("bad state problem: field %q named, want state", d.Errors[0].Field)
		}
		type sagaList struct {
			Items []struct {
				OrderID string `json:"order_id"`
				State   string `json:"state"`
				Steps   []struct {
					Step, Outcome string
				} `json:"steps"`
			} `json:"items"`
			NextCursor *string `json:"next_cursor"`
		}
		var done sagaList
		r := call(t, http.MethodGet, sagas+"?state=done&limit=100", admin, "")
		r.JSON(t, &done)
		if r.Status != http.StatusOK {
			t.Fatalf("done sagas: %d %s", r.Status, r.Body)
		}
		if len(done.Items) < 4 {
			t.Fatalf("%d done sagas, want at least 4: %s", len(done.Items), r.Body)
		}
		if done.Items[0].OrderID != o.ID {
			t.Errorf("oldest done saga is order %s, want %s", done.Items[0].OrderID, o.ID)
		}
		if n := len(done.Items[0].Steps); n < 5 {
			t.Errorf("oldest done saga has %d steps, want at least 5", n)
		}
		if done.NextCursor != nil {
			t.Errorf("a next_cursor after all %d done sagas", len(done.Items))
		}
		// Two at a time, following next_cursor: the same sagas in the same order.
		var paged []string
		for q := "?state=done&limit=2"; ; {
			var p sagaList
			call(t, http.MethodGet, sagas+q, admin, "").JSON(t, &p)
			for _, it := range p.Items {
				paged = append(paged, it.OrderID)
			}
			if p.NextCursor == nil || len(paged) > len(done.Items) {
				break
			}
			q = "?state=done&limit=2&cursor=" + url.QueryEscape(*p.NextCursor)
		}
		var whole []string
		for _, it := range done.Items {
			whole = append(whole, it.OrderID)
		}
		if !slices.Equal(paged, whole) {
			t.Errorf("paged by two: %v, want %v", paged, whole)
		}
		var unfinished listBody
		call(t, http.MethodGet, sagas, admin, "").JSON(t, &unfinished)
		if len(unfinished.Items) != 0 {
			t.Errorf("unfinished sagas %+v", unfinished)
		}
	})

	t.Run("sales report runs as a task", func(t *testing.T) {
		admin, _ := s.token(t, auth.RoleAdmin)
		reports := s.url + "/api/v1/admin/reports/sales"
		call(t, http.MethodPost, reports+"?from=2025-01-01&to=2025-01-31", ann, "").Problem(t, http.StatusForbidden)
		for _, q := range []string{"", "?from=2025-01-31&to=2025-01-01", "?from=yesterday&to=2025-01-01", "?from=2020-01-01&to=2025-01-01"} {
			call(t, http.MethodPost, reports+q, admin, "").Problem(t, http.StatusUnprocessableEntity)
		}
		today := time.Now().UTC().Format(time.DateOnly)
		r := call(t, http.MethodPost, reports+"?from="+today+"&to="+today, admin, "")
		var task struct {
			TaskID string `json:"task_id"`
		}
		r.JSON(t, &task)
		if r.Status != http.StatusAccepted {
			t.Fatalf("enqueue: status %d, want 202; body %s", r.Status, r.Body)
		}
		if task.TaskID == "" {
			t.Fatalf("enqueue: task_id empty, want one; body %s", r.Body)
		}
		if loc := r.Header.Get("Location"); loc != "/api/v1/admin/tasks/"+task.TaskID {
			t.Errorf("enqueue: Location %q, want /api/v1/admin/tasks/%s", loc, task.TaskID)
		}
		in, err := tasks.NewInspector(s.redisURL, "orders")
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		var info tasks.Info
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if info, err = in.Get(context.Background(), task.TaskID); err == nil && info.State == tasks.StateCompleted {
				break
			}
		}
		var rep struct {
			Orders, Confirmed, Cancelled int64
			Revenue                      []struct {
				Currency    string `json:"currency"`
				AmountCents int64  `json:"amount_cents"`
			}
			TopProducts []struct {
				ProductID string `json:"product_id"`
				Quantity  int64  `json:"quantity"`
			} `json:"top_products"`
		}
		if info.State != tasks.StateCompleted {
			t.Fatalf("task %+v: state %v, want %v", info, info.State, tasks.StateCompleted)
		}
		if err := json.Unmarshal(info.Result, &rep); err != nil {
			t.Fatalf("task result %s: %v", info.Result, err)
		}
		var orders, confirmed int64
		var revenue int64
		if err := s.db.QueryRow(context.Background(),
			`SELECT count(*), count(*) FILTER (WHERE status = 'confirmed'), coalesce(sum(total_cents) FILTER (WHERE status = 'confirmed'), 0) FROM orders`).
			Scan(&orders, &confirmed, &revenue); err != nil {
			t.Fatal(err)
		}
		if rep.Orders != orders {
			t.Errorf("report of %d orders, want %d", rep.Orders, orders)
		}
		if rep.Confirmed != confirmed {
			t.Errorf("report of %d confirmed, want %d", rep.Confirmed, confirmed)
		}
		if len(rep.Revenue) != 1 {
			t.Errorf("report revenue %+v, want one currency", rep.Revenue)
		} else if rep.Revenue[0].AmountCents != revenue {
			t.Errorf("report revenue %d cents, want %d", rep.Revenue[0].AmountCents, revenue)
		}
		if len(rep.TopProducts) == 0 {
			t.Errorf("report without top products, want the pear %s first", pear)
		} else if rep.TopProducts[0].ProductID != pear.String() {
			t.Errorf("report top product %s, want the pear %s", rep.TopProducts[0].ProductID, pear)
		}
	})

	t.Run("the daily sales report is written to the outbox once", func(t *testing.T) {
		client, err := tasks.NewClient(s.redisURL, "orders")
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		for range 2 { // a run repeated (a retry, a second replica) writes one event
			if _, err := client.Enqueue(context.Background(), jobs.DailySales, nil); err != nil {
				t.Fatal(err)
			}
		}
		yesterday := time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly)
		var n int
		var data string
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			err := s.db.QueryRow(context.Background(),
				`SELECT count(*) OVER (), data::text FROM outbox WHERE type = 'report.daily_sales' AND subject = $1`, yesterday).Scan(&n, &data)
			if err == nil && n >= 1 {
				break
			}
		}
		if n != 1 {
			t.Errorf("%d report.daily_sales events for %s, want 1", n, yesterday)
		}
		if !strings.Contains(data, `"day": "`+yesterday+`"`) {
			t.Errorf("report.daily_sales data %s, want \"day\": %q in it", data, yesterday)
		}
		if !strings.Contains(data, `"top_products"`) {
			t.Errorf("report.daily_sales data %s, want \"top_products\" in it", data)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		r := call(t, http.MethodGet, s.internal+"/metrics", "", "")
		for _, want := range []string{
			`saga_outcomes_total{reason="",result="confirmed"}`,
			`saga_outcomes_total{reason="payment_declined",result="cancelled"}`,
			`saga_outcomes_total{reason="customer_request",result="cancelled"}`,
			`saga_duration_seconds_count{result="confirmed"}`,
			`circuit_breaker_state{service="inventory"} 0`,
			`circuit_breaker_state{service="payments"} 0`,
			`downstream_attempts_total{result="ok",service="payments"}`,
		} {
			if !strings.Contains(string(r.Body), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})
}

// sse reads an event stream, sending each status event's data on a channel that
// closes when the stream ends.
func sse(t *testing.T, url, token string) (<-chan map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := testhttp.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("events: %d %s", resp.StatusCode, b)
	}
	out := make(chan map[string]any, 16)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == "status":
				var m map[string]any
				if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &m) == nil {
					out <- m
				}
			}
		}
	}()
	return out, resp.Header
}

func TestPendingOrdersAreFinishedByRecoveryAndStreamed(t *testing.T) {
	t.Parallel()
	s := startOrders(t, nil)
	apple := s.inv.AddProduct(100, 10)
	ann, _ := s.token(t, auth.RoleCustomer)
	bob, _ := s.token(t, auth.RoleCustomer)

	// Inventory cannot reserve: 202 with the order pending, quickly.
	s.inv.SetFailing("reserve", true)
	start := time.Now()
	r := call(t, http.MethodPost, s.url+"/api/v1/orders", ann, orderJSON("pm_card_visa", apple, 2))
	var o orderBody
	r.JSON(t, &o)
	if r.Status != http.StatusAccepted {
		t.Fatalf("create with reservations failing: status %d, want 202; body %s", r.Status, r.Body)
	}
	if o.Status != "pending" {
		t.Fatalf("create with reservations failing: order status %q, want pending", o.Status)
	}
	if loc := r.Header.Get("Location"); loc != "/api/v1/orders/"+o.ID {
		t.Errorf("create with reservations failing: Location %q, want /api/v1/orders/%s", loc, o.ID)
	}
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Errorf("the 202 took %s", took)
	}
	if d := call(t, http.MethodGet, s.url+"/api/v1/orders/"+o.ID+"/events", bob, "").Problem(t, http.StatusNotFound); d.Detail == "" {
		t.Errorf("someone else's stream: %+v", d)
	}

	events, header := sse(t, s.url+"/api/v1/orders/"+o.ID+"/events", ann)
	if header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("content type %q", header.Get("Content-Type"))
	}
	first := <-events
	if first["status"] != "pending" {
		t.Fatalf("first event %v: status %v, want pending", first, first["status"])
	}
	if first["order_id"] != o.ID {
		t.Errorf("first event %v: order_id %v, want %s", first, first["order_id"], o.ID)
	}
	if first["cancel_reason"] != nil {
		t.Errorf("first event %v: cancel_reason %v, want null", first, first["cancel_reason"])
	}
	// Payments goes down too; inventory comes back: recovery reserves, but cannot charge.
	s.pay.SetDown(true)
	s.inv.SetFailing("reserve", false)
	s.waitFor(t, ann, o.ID, func(o orderBody) bool { return o.Status == "reserved" })
	s.pay.SetDown(false)

	statuses := []string{"pending"}
	timeout := time.After(30 * time.Second)
	for done := false; !done; {
		select {
		case m, ok := <-events:
			if !ok {
				done = true
				break
			}
			statuses = append(statuses, m["status"].(string))
		case <-timeout:
			t.Fatalf("the stream did not close; saw %v", statuses)
		}
	}
	if statuses[len(statuses)-1] != "confirmed" || !slices.Contains(statuses, "reserved") {
		t.Errorf("stream showed %v, want pending … reserved … confirmed", statuses)
	}
	rank := map[string]int{"pending": 0, "reserved": 1, "paid": 2, "confirmed": 3}
	for i := 1; i < len(statuses); i++ {
		if rank[statuses[i]] <= rank[statuses[i-1]] {
			t.Errorf("stream went backwards: %v", statuses)
		}
	}
	id := uuid.MustParse(o.ID)
	if n := s.pay.Captures(id); n != 1 {
		t.Errorf("%d captures, want 1", n)
	}
	if res := s.inv.Reservation(id); res != "committed" {
		t.Errorf("reservation %q, want committed", res)
	}
	if n := s.inv.Stock(apple); n != 8 {
		t.Errorf("stock %d, want 8", n)
	}

	// A finished order's stream sends its status and closes at once.
	done, _ := sse(t, s.url+"/api/v1/orders/"+o.ID+"/events", ann)
	if m := <-done; m["status"] != "confirmed" {
		t.Errorf("finished order's event %v", m)
	}
	if _, open := <-done; open {
		t.Error("a finished order's stream stayed open")
	}
}
