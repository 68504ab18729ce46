package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
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
	bazaarevents "github.com/bazaar-shop/bazaar/pkg/events"
	"github.com/bazaar-shop/bazaar/pkg/pgdb"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
	"github.com/bazaar-shop/bazaar/pkg/svcauth/svcauthtest"
	"github.com/bazaar-shop/bazaar/pkg/tcpproxy"
	"github.com/bazaar-shop/bazaar/services/payments/internal/payment"
	"github.com/bazaar-shop/bazaar/services/payments/internal/postgres"
	"github.com/bazaar-shop/bazaar/services/payments/internal/postgres/migrations"
)

// The payments service starts on its own fresh database, applies its migrations and
// answers the operational routes.
func TestRunServesOperationalRoutes(t *testing.T) {
	t.Parallel()
	prog := startProgram(t, svcauthtest.New(t, "orders"), map[string]string{
		"DATABASE_URL": pgtest.NewDatabase(t),
		"REDIS_URL":    redistest.New(t),
	})
	programtest.AssertOperational(t, prog, "postgres", "migrations", "redis")
}

// stack is one payments service under test, the users service's key set faked by an
// httptest server, and a direct line to the database.
type stack struct {
	url      string
	internal string // the internal listener
	keys     svcauthtest.Keys
	db       *pgxpool.Pool
	redisURL string
	signer   *auth.Signer
}

// startProgram runs payments with env and the service keys in keys.
func startProgram(t *testing.T, keys svcauthtest.Keys, env map[string]string) *programtest.Program {
	t.Helper()
	all := keys.Env("payments")
	maps.Copy(all, env)
	return programtest.Start(t, run, all)
}

// saga calls an internal route the way the orders saga does: on the internal
// listener, with orders' service token.
func (s stack) saga(t *testing.T, method, path, body string, header ...string) response {
	t.Helper()
	return call(t, method, s.internal+path, body, append(s.keys.Authorization(t, "orders", "payments"), header...)...)
}

func startPayments(t *testing.T) stack {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	const kid = "test-key"
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(auth.KeySet{Keys: []auth.JWK{auth.PublicJWK(kid, pub)}})
	}))
	t.Cleanup(jwks.Close)
	dbURL, redisURL := pgtest.NewDatabase(t), redistest.New(t)
	keys := svcauthtest.New(t, "orders", "notifications")
	prog := startProgram(t, keys, map[string]string{
		"DATABASE_URL": dbURL, "REDIS_URL": redisURL, "JWKS_URL": jwks.URL + "/.well-known/jwks.json",
	})
	pool, err := pgdb.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return stack{url: prog.URL, internal: prog.InternalURL(), keys: keys, db: pool, redisURL: redisURL,
		signer: auth.NewSigner(kid, priv, time.Minute)}
}

// token is a customer's access token for user.
func (s stack) token(t *testing.T, user string) string {
	t.Helper()
	return s.tokenAs(t, user, auth.RoleCustomer)
}

// tokenAs is an access token for user in role.
func (s stack) tokenAs(t *testing.T, user string, role auth.Role) string {
	t.Helper()
	tok, err := s.signer.Sign(auth.Principal{UserID: uuid.MustParse(user), Role: role})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (s stack) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// response is a programtest.Response whose problem also wants the instance every
// payments problem names.
type response struct{ programtest.Response }

func (r response) problem(t *testing.T, status int) problem.Details {
	t.Helper()
	d := r.Problem(t, status)
	if d.Instance == "" {
		t.Errorf("problem document %+v", d)
	}
	return d
}

func call(t *testing.T, method, u, body string, header ...string) response {
	t.Helper()
	return response{programtest.Call(t, method, u, body, header...)}
}

// paymentBody is the internal API's payment.
type paymentBody struct {
	ID          string `json:"id"`
	OrderID     string `json:"order_id"`
	UserID      string `json:"user_id"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
	Status      string `json:"status"`
	DeclineCode string `json:"decline_code"` // null reads as ""
}

// chargeBody is a charge request for a fresh order of a fresh user.
type chargeBody struct {
	OrderID       string `json:"order_id"`
	UserID        string `json:"user_id"`
	AmountCents   int64  `json:"amount_cents"`
	Currency      string `json:"currency"`
	PaymentMethod string `json:"payment_method"`
}

func newCharge(method string) chargeBody {
	return chargeBody{OrderID: uuid.NewString(), UserID: uuid.NewString(), AmountCents: 2599, Currency: "USD", PaymentMethod: method}
}

func (c chargeBody) String() string {
	b, _ := json.Marshal(c)
	return string(b)
}

// charge posts c with its order id as the Idempotency-Key.
func (s stack) charge(t *testing.T, c chargeBody) response {
	t.Helper()
	return s.saga(t, http.MethodPost, "/internal/charges", c.String(), "Idempotency-Key", c.OrderID)
}

func (s stack) payment(t *testing.T, r response, status int) paymentBody {
	t.Helper()
	if r.Status != status {
		t.Fatalf("got %d %s; want %d", r.Status, r.Body, status)
	}
	var p paymentBody
	r.JSON(t, &p)
	return p
}

func TestAVisaChargeIsCapturedOnceAndPublished(t *testing.T) {
	t.Parallel()
	s := startPayments(t)
	c := newCharge("pm_card_visa")

	r := s.charge(t, c)
	p := s.payment(t, r, http.StatusCreated)
	if _, err := uuid.Parse(p.ID); err != nil {
		t.Errorf("charge answered id %q: %v, want a UUID", p.ID, err)
	}
	if p.OrderID != c.OrderID {
		t.Errorf("charge answered order_id %s, want %s", p.OrderID, c.OrderID)
	}
	if p.UserID != c.UserID {
		t.Errorf("charge answered user_id %s, want %s", p.UserID, c.UserID)
	}
	if p.AmountCents != 2599 {
		t.Errorf("charge answered amount_cents %d, want 2599", p.AmountCents)
	}
	if p.Currency != "USD" {
		t.Errorf("charge answered currency %q, want USD", p.Currency)
	}
	if p.Status != "captured" {
		t.Errorf("charge answered status %q, want captured", p.Status)
	}
	if p.DeclineCode != "" {
		t.Errorf("charge answered decline_code %q, want none", p.DeclineCode)
	}
	if !strings.Contains(string(r.Body), `"decline_code":null`) {
		t.Errorf("charge answered %s, want \"decline_code\":null in it", r.Body)
	}
	if loc := r.Header.Get("Location"); loc != "/internal/charges/"+c.OrderID {
		t.Errorf("Location %q", loc)
	}
	// The retry: the same answer, no second payment.
	if again := s.payment(t, s.charge(t, c), http.StatusCreated); again != p {
		t.Errorf("retry answered %+v, first %+v", again, p)
	}
	if got := s.payment(t, s.saga(t, http.MethodGet, "/internal/charges/"+c.OrderID, ""), http.StatusOK); got != p {
		t.Errorf("look-up %+v, want %+v", got, p)
	}
	if n := s.count(t, `SELECT count(*) FROM payments`); n != 1 {
		t.Errorf("%d payments, want 1", n)
	}

	// The relay publishes payment.captured to events.payments.
	rdb, err := redisclient.Open(s.redisURL)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	var published []bazaarevents.Envelope
	for deadline := time.Now().Add(15 * time.Second); len(published) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		msgs, _ := rdb.XRange(context.Background(), "events.payments", "-", "+").Result()
		for _, m := range msgs {
			e, err := bazaarevents.Parse(m.Values)
			if err != nil {
				t.Fatalf("bad entry on events.payments: %v %v", m.Values, err)
			}
			published = append(published, e)
		}
	}
	if len(published) != 1 {
		t.Fatalf("events.payments = %+v, want one event", published)
	}
	if published[0].Type != "payment.captured" {
		t.Errorf("event type %q, want payment.captured", published[0].Type)
	}
	if published[0].Source != "payments" {
		t.Errorf("event source %q, want payments", published[0].Source)
	}
	if published[0].Subject != p.ID {
		t.Errorf("event subject %q, want the payment %s", published[0].Subject, p.ID)
	}
	var data map[string]any
	if err := published[0].Decode(&data); err != nil {
		t.Fatalf("event data: %v, want no error", err)
	}
	for k, v := range map[string]any{"payment_id": p.ID, "order_id": c.OrderID, "user_id": c.UserID,
		"amount_cents": float64(2599), "currency": "USD", "decline_code": nil} {
		if data[k] != v {
			t.Errorf("event data %s = %v, want %v", k, data[k], v)
		}
	}
}

func TestDeclinedChargesAre402WithTheirCode(t *testing.T) {
	t.Parallel()
	s := startPayments(t)
	for method, code := range map[string]string{
		"pm_card_chargeDeclined":                  "payment_declined",
		"pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
	} {
		c := newCharge(method)
		first := s.charge(t, c).problem(t, http.StatusPaymentRequired)
		if first.Type != "urn:bazaar:problem:"+code {
			t.Errorf("%s: type %q, want urn:bazaar:problem:%s", method, first.Type, code)
		}
		if first.Title != "Payment Required" {
			t.Errorf("%s: title %q, want Payment Required", method, first.Title)
		}
		if first.Instance != "/internal/charges" {
			t.Errorf("%s: instance %q, want /internal/charges", method, first.Instance)
		}
		if !strings.Contains(first.Detail, "declined") {
			t.Errorf("%s: detail %q, want it to say declined", method, first.Detail)
		}
		if code == "insufficient_funds" && !strings.Contains(first.Detail, "insufficient funds") {
			t.Errorf("%s: detail %q does not say why", method, first.Detail)
		}
		// The retry answers the first outcome again: 402 with the same type.
		if again := s.charge(t, c).problem(t, http.StatusPaymentRequired); again.Type != first.Type {
			t.Errorf("%s retry: %+v", method, again)
		}
		p := s.payment(t, s.saga(t, http.MethodGet, "/internal/charges/"+c.OrderID, ""), http.StatusOK)
		if p.Status != "declined" {
			t.Errorf("%s look-up: status %q, want declined", method, p.Status)
		}
		if p.DeclineCode != code {
			t.Errorf("%s look-up: decline_code %q, want %q", method, p.DeclineCode, code)
		}
		if p.OrderID != c.OrderID {
			t.Errorf("%s look-up: order_id %s, want %s", method, p.OrderID, c.OrderID)
		}
		// A compensation refunding it finishes with nothing to do.
		if got := s.payment(t, s.saga(t, http.MethodPost, "/internal/charges/"+c.OrderID+"/refund", ""), http.StatusOK); got != p {
			t.Errorf("%s refund: %+v, want %+v", method, got, p)
		}
	}
	if n, e := s.count(t, `SELECT count(*) FROM payments`), s.count(t, `SELECT count(*) FROM outbox WHERE type = 'payment.declined'`); n != 2 || e != 2 {
		t.Errorf("%d payments, %d payment.declined events; want 2 and 2", n, e)
	}
	if n := s.count(t, `SELECT count(*) FROM outbox WHERE type <> 'payment.declined'`); n != 0 {
		t.Errorf("%d other events, want none", n)
	}
}

func TestRefundIsIdempotent(t *testing.T) {
	t.Parallel()
	s := startPayments(t)
	c := newCharge("pm_card_visa")
	charged := s.payment(t, s.charge(t, c), http.StatusCreated)

	refund := "/internal/charges/" + c.OrderID + "/refund"
	first := s.payment(t, s.saga(t, http.MethodPost, refund, ""), http.StatusOK)
	if first.ID != charged.ID {
		t.Errorf("refund answered payment %s, want %s", first.ID, charged.ID)
	}
	if first.Status != "refunded" {
		t.Errorf("refund answered status %q, want refunded", first.Status)
	}
	if first.AmountCents != charged.AmountCents {
		t.Errorf("refund answered amount_cents %d, want %d", first.AmountCents, charged.AmountCents)
	}
	if again := s.payment(t, s.saga(t, http.MethodPost, refund, ""), http.StatusOK); again != first {
		t.Errorf("second refund %+v, want %+v", again, first)
	}
	if got := s.payment(t, s.saga(t, http.MethodGet, "/internal/charges/"+c.OrderID, ""), http.StatusOK); got.Status != "refunded" {
		t.Errorf("look-up after the refund: %+v", got)
	}
	// A retried charge of the refunded order charges nothing: it answers the payment.
	again := s.payment(t, s.charge(t, c), http.StatusCreated)
	if again.ID != charged.ID {
		t.Errorf("charge after the refund: payment %s, want %s", again.ID, charged.ID)
	}
	if again.Status != "refunded" {
		t.Errorf("charge after the refund: status %q, want refunded", again.Status)
	}
	if n := s.count(t, `SELECT count(*) FROM outbox WHERE type = 'payment.refunded' AND subject = $1`, charged.ID); n != 1 {
		t.Errorf("%d payment.refunded events, want 1", n)
	}

	// An order never charged: 200, nothing to refund, and no payment written.
	late := newCharge("pm_card_visa")
	r := s.saga(t, http.MethodPost, "/internal/charges/"+late.OrderID+"/refund", "")
	var none map[string]any
	r.JSON(t, &none)
	if r.Status != http.StatusOK {
		t.Errorf("refund of an order never charged: status %d, want 200; body %s", r.Status, r.Body)
	}
	if none["order_id"] != late.OrderID {
		t.Errorf("refund of an order never charged: order_id %v, want %s", none["order_id"], late.OrderID)
	}
	if none["status"] != "none" {
		t.Errorf("refund of an order never charged: status %v, want none", none["status"])
	}
	// The refund voided the order: a charge arriving late (sent before the saga gave up
	// and compensated) takes no money.
	if d := s.charge(t, late).problem(t, http.StatusConflict); d.Type != "urn:bazaar:problem:order_voided" {
		t.Errorf("late charge of a voided order: %+v", d)
	}
	if n := s.count(t, `SELECT count(*) FROM payments`); n != 1 {
		t.Errorf("%d payments, want 1", n)
	}
}

func TestConcurrentIdenticalChargesAnswerTheSamePayment(t *testing.T) {
	t.Parallel()
	s := startPayments(t)
	c := newCharge("pm_card_visa")
	const callers = 10
	answers := make([]paymentBody, callers)
	auth := s.keys.Authorization(t, "orders", "payments")[1]
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, s.internal+"/internal/charges", strings.NewReader(c.String()))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", auth)
			req.Header.Set("Idempotency-Key", c.OrderID)
			resp, err := testhttp.Client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Errorf("status %d", resp.StatusCode)
			}
			_ = json.NewDecoder(resp.Body).Decode(&answers[i])
		})
	}
	wg.Wait()
	for i, a := range answers {
		if a != answers[0] {
			t.Errorf("answer %d %+v differs from the first %+v; all: %+v", i, a, answers[0], answers)
			break
		}
	}
	if answers[0].Status != "captured" {
		t.Errorf("answers: status %q, want captured", answers[0].Status)
	}
	if n, e := s.count(t, `SELECT count(*) FROM payments`), s.count(t, `SELECT count(*) FROM outbox`); n != 1 || e != 1 {
		t.Errorf("%d payments, %d events; want 1 and 1", n, e)
	}
}

func TestBadChargesAreRefusedAndChangeNothing(t *testing.T) {
	t.Parallel()
	s := startPayments(t)
	existing := newCharge("pm_card_visa")
	s.payment(t, s.charge(t, existing), http.StatusCreated)

	valid := newCharge("pm_card_visa")
	edit := func(change func(*chargeBody)) string {
		c := valid
		change(&c)
		return c.String()
	}
	other := existing
	other.AmountCents++
	cases := []struct {
		name, body, key string
		status          int
		fields          []string
	}{
		{"malformed JSON", `{"order_id":`, valid.OrderID, 400, nil},
		{"unknown field", `{"order_id":"` + valid.OrderID + `","tip":1}`, valid.OrderID, 400, nil},
		{"fractional amount", `{"order_id":"` + valid.OrderID + `","amount_cents":25.5}`, valid.OrderID, 400, nil},
		{"empty body", ``, valid.OrderID, 400, nil},
		{"missing Idempotency-Key", valid.String(), "", 422, []string{"Idempotency-Key"}},
		{"Idempotency-Key is not the order id", valid.String(), uuid.NewString(), 422, []string{"Idempotency-Key"}},
		{"unknown payment method", edit(func(c *chargeBody) { c.PaymentMethod = "pm_card_amex" }), valid.OrderID, 422, []string{"payment_method"}},
		{"zero amount", edit(func(c *chargeBody) { c.AmountCents = 0 }), valid.OrderID, 422, []string{"amount_cents"}},
		{"bad currency", edit(func(c *chargeBody) { c.Currency = "dollars" }), valid.OrderID, 422, []string{"currency"}},
		{"bad user id", edit(func(c *chargeBody) { c.UserID = "ann" }), valid.OrderID, 422, []string{"user_id"}},
		{"everything missing", `{}`, "", 422, []string{"order_id", "user_id", "amount_cents", "currency", "payment_method", "Idempotency-Key"}},
		{"same key, different body", other.String(), existing.OrderID, 422, []string{"Idempotency-Key"}},
	}
	for _, c := range cases {
		r := s.saga(t, http.MethodPost, "/internal/charges", c.body, "Idempotency-Key", c.key)
		if c.key == "" {
			r = s.saga(t, http.MethodPost, "/internal/charges", c.body)
		}
		d := r.problem(t, c.status)
		var got []string
		for _, f := range d.Errors {
			got = append(got, f.Field)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.fields) {
			t.Errorf("%s: field errors %v, want %v (%s)", c.name, got, c.fields, r.Body)
		}
	}
	if n, e := s.count(t, `SELECT count(*) FROM payments`), s.count(t, `SELECT count(*) FROM outbox`); n != 1 || e != 1 {
		t.Errorf("%d payments, %d events; want 1 and 1 (the valid charge)", n, e)
	}

	// Paths that name no charge.
	for _, path := range []string{"/internal/charges/not-a-uuid", "/internal/charges/" + uuid.NewString()} {
		s.saga(t, http.MethodGet, path, "").problem(t, http.StatusNotFound)
	}
	s.saga(t, http.MethodPost, "/internal/charges/not-a-uuid/refund", "").problem(t, http.StatusNotFound)
	s.saga(t, http.MethodGet, "/internal/charges", "").problem(t, http.StatusMethodNotAllowed)
}

// listBody is the public list of payments.
type listBody struct {
	Items      []map[string]any `json:"items"`
	NextCursor *string          `json:"next_cursor"`
}

func TestTheOwnerListsTheirPaymentsAndNobodyElseSeesThem(t *testing.T) {
	t.Parallel()
	s := startPayments(t)
	c := newCharge("pm_card_visa")
	p := s.payment(t, s.charge(t, c), http.StatusCreated)
	list := func(token, query string) response {
		return call(t, http.MethodGet, s.url+"/api/v1/payments"+query, "", programtest.Bearer(token)...)
	}

	owner := s.token(t, c.UserID)
	r := list(owner, "?order_id="+c.OrderID)
	var got listBody
	r.JSON(t, &got)
	want := map[string]any{"id": p.ID, "order_id": c.OrderID, "amount_cents": float64(2599), "currency": "USD", "status": "captured"}
	if r.Status != http.StatusOK {
		t.Fatalf("owner's list: status %d, want 200; body %s", r.Status, r.Body)
	}
	if len(got.Items) != 1 {
		t.Errorf("owner's list: %d items %v, want one", len(got.Items), got.Items)
	} else if fmt.Sprint(got.Items[0]) != fmt.Sprint(want) {
		t.Errorf("owner's list: item %v, want %v", got.Items[0], want)
	}
	if got.NextCursor != nil {
		t.Errorf("owner's list: next_cursor %q, want null", *got.NextCursor)
	}
	if !strings.Contains(string(r.Body), `"next_cursor":null`) {
		t.Errorf("owner's list: %s, want \"next_cursor\":null in it", r.Body)
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", r.Header.Get("Cache-Control"))
	}

	// A refund shows in the owner's list.
	s.saga(t, http.MethodPost, "/internal/charges/"+c.OrderID+"/refund", "")
	got = listBody{}
	list(owner, "?order_id="+c.OrderID+"&limit=1").JSON(t, &got)
	if len(got.Items) != 1 {
		t.Errorf("owner's list after the refund: %d items %v, want one", len(got.Items), got.Items)
	} else if got.Items[0]["status"] != "refunded" {
		t.Errorf("owner's list after the refund: status %v, want refunded", got.Items[0]["status"])
	}
	if got.NextCursor != nil {
		t.Errorf("owner's list after the refund: next_cursor %q, want null", *got.NextCursor)
	}

	// Another user asking for the order gets an empty list: not a 403 or 404 that
	// would tell them the order exists.
	r = list(s.token(t, uuid.NewString()), "?order_id="+c.OrderID)
	got = listBody{}
	r.JSON(t, &got)
	if r.Status != http.StatusOK {
		t.Errorf("another user's list: status %d, want 200; body %s", r.Status, r.Body)
	}
	if got.Items == nil {
		t.Errorf("another user's list: items null, want []; body %s", r.Body)
	}
	if len(got.Items) != 0 {
		t.Errorf("another user's list: %d items %v, want none", len(got.Items), got.Items)
	}
	if !strings.Contains(string(r.Body), `"items":[]`) {
		t.Errorf("another user's list: %s, want \"items\":[] in it", r.Body)
	}

	if r := call(t, http.MethodGet, s.url+"/api/v1/payments?order_id="+c.OrderID, ""); r.Status != http.StatusUnauthorized {
		t.Errorf("no token: %d %s", r.Status, r.Body)
	} else if r.Header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	list("not-a-token", "?order_id="+c.OrderID).problem(t, http.StatusUnauthorized)

	for query, fields := range map[string]string{
		"":                                      "[order_id]",
		"?order_id=42":                          "[order_id]",
		"?order_id=" + c.OrderID + "&limit=0":   "[limit]",
		"?order_id=" + c.OrderID + "&cursor=x!": "[cursor]",
		"?order_id=&limit=101":                  "[order_id limit]",
	} {
		d := list(owner, query).problem(t, http.StatusUnprocessableEntity)
		var got []string
		for _, f := range d.Errors {
			got = append(got, f.Field)
		}
		if fmt.Sprint(got) != fields {
			t.Errorf("query %q: field errors %v, want %s", query, got, fields)
		}
	}
}

func TestBadConfigurationStopsStartNamingTheVariable(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"PROCESSOR_TIMEOUT", "HTTP_ADDR"} {
		env := map[string]string{v: "soon"}
		err := run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("%s=soon: err = %v, want it to name %s", v, err, v)
		}
	}
}

// The processor call is bounded well inside the 5s the orders saga gives each payments
// call (docs/internal-api.md), so payments always answers — 504 past the bound — before
// its caller gives up and has to guess.
func TestSettingsDefaults(t *testing.T) {
	t.Parallel()
	s, err := loadSettings(func(string) string { return "" })
	if err != nil || s.ProcessorTimeout != 3*time.Second || s.HTTPAddr != ":8083" {
		t.Errorf("defaults: %+v, %v; want PROCESSOR_TIMEOUT 3s on :8083", s, err)
	}
	s, err = loadSettings(func(k string) string { return map[string]string{"PROCESSOR_TIMEOUT": "1500ms"}[k] })
	if err != nil {
		t.Errorf("PROCESSOR_TIMEOUT=1500ms: %v, want no error", err)
	} else if s.ProcessorTimeout != 1500*time.Millisecond {
		t.Errorf("PROCESSOR_TIMEOUT=1500ms: %v, want 1.5s", s.ProcessorTimeout)
	}
}

// A charge whose process died between recording the pending payment and recording the
// processor's answer is settled by the sweep, even if nobody asks about it again, and
// even while Redis is down: the sweep runs in process (see internal/jobs).
func TestTheSweepSettlesPaymentsLeftPendingWithoutRedis(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	pool, err := pgdb.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := pgdb.Migrate(ctx, pool, migrations.FS, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	// What dead processes left behind two minutes ago, and a charge in progress now.
	store := postgres.NewStore(pool)
	left := map[payment.Method]uuid.UUID{}
	for _, m := range []payment.Method{payment.MethodVisa, payment.MethodDeclined} {
		p := payment.NewPending(uuid.New(), payment.ChargeRequest{OrderID: uuid.New(), UserID: uuid.New(),
			Amount: payment.Money{Cents: 999, Currency: "EUR"}, Method: m}, time.Now().Add(-2*time.Minute))
		if err := store.CreatePending(ctx, p); err != nil {
			t.Fatal(err)
		}
		left[m] = p.ID
	}
	recent := payment.NewPending(uuid.New(), payment.ChargeRequest{OrderID: uuid.New(), UserID: uuid.New(),
		Amount: payment.Money{Cents: 999, Currency: "EUR"}, Method: payment.MethodVisa}, time.Now())
	if err := store.CreatePending(ctx, recent); err != nil {
		t.Fatal(err)
	}

	// Redis behind a proxy that lets nothing through.
	redisURL, err := url.Parse(redistest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	redis, err := tcpproxy.New(redisURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { redis.Close() })
	redis.Cut()
	redisURL.Host = redis.Addr()
	keys := svcauthtest.New(t, "orders")
	prog := startProgram(t, keys, map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redisURL.String()})

	status := func(id uuid.UUID) string {
		var st string
		if err := pool.QueryRow(ctx, `SELECT status FROM payments WHERE id = $1`, id).Scan(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	for deadline := time.Now().Add(30 * time.Second); status(left[payment.MethodVisa]) == "pending" || status(left[payment.MethodDeclined]) == "pending"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still pending after 30s: visa %s, declined %s", status(left[payment.MethodVisa]), status(left[payment.MethodDeclined]))
		}
	}
	if st := status(left[payment.MethodVisa]); st != "captured" {
		t.Errorf("the visa charge left pending is %s, want captured", st)
	}
	if st := status(left[payment.MethodDeclined]); st != "declined" {
		t.Errorf("the declined charge left pending is %s, want declined", st)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(prog.Logs(), `"msg":"pending payments settled"`) || !strings.Contains(prog.Logs(), `"settled":2`); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the sweep did not log how many payments it settled")
		}
	}
	if st := status(recent.ID); st != "pending" {
		t.Errorf("the charge in progress is %s; the sweep must leave it to its request", st)
	}
	var events []string
	rows, err := pool.Query(ctx, `SELECT type || ' ' || subject FROM outbox ORDER BY type`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{"payment.captured " + left[payment.MethodVisa].String(), "payment.declined " + left[payment.MethodDeclined].String()}
	if fmt.Sprint(events) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v", events, want)
	}
}

// A void only has to outlive a charge request that was on its way when the saga gave
// up, seconds or minutes; the daily payments:voids-cleanup forgets the voids older
// than VOID_RETENTION (30 days), so the table does not grow forever.
func TestTheDailyCleanupForgetsOldVoids(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	pool, err := pgdb.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := pgdb.Migrate(ctx, pool, migrations.FS, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	store := postgres.NewStore(pool)
	old, recent := uuid.New(), uuid.New()
	for order, at := range map[uuid.UUID]time.Time{old: time.Now().Add(-31 * 24 * time.Hour), recent: time.Now().Add(-29 * 24 * time.Hour)} {
		if voided, err := store.Void(ctx, order, at); err != nil {
			t.Fatalf("void: %v, want no error", err)
		} else if !voided {
			t.Fatal("void: not voided, want voided")
		}
	}
	voided := func(order uuid.UUID) bool {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM voided_orders WHERE order_id = $1`, order).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}

	// The scheduler enqueues the current day's run as the program starts.
	keys := svcauthtest.New(t, "orders")
	prog := startProgram(t, keys, map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redistest.New(t)})
	for deadline := time.Now().Add(30 * time.Second); voided(old); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the void older than 30 days is still there after 30s")
		}
	}
	if !voided(recent) {
		t.Error("the void younger than 30 days is gone")
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(prog.Logs(), `"msg":"old voids forgotten"`); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the cleanup did not log what it deleted")
		}
	}
	// A charge of the forgotten order would now be taken: a charge request does not
	// arrive a month late, so that is no longer a risk.
	c := newCharge("pm_card_visa")
	c.OrderID = old.String()
	s := stack{url: prog.URL, internal: prog.InternalURL(), keys: keys}
	if p := s.payment(t, s.charge(t, c), http.StatusCreated); p.Status != "captured" {
		t.Errorf("charge of an order whose void was forgotten: %+v", p)
	}
}

func TestVoidRetentionIsAMonthAndAtLeastAnHour(t *testing.T) {
	t.Parallel()
	settingsOf := func(v string) (settings, error) {
		return loadSettings(func(k string) string { return map[string]string{"VOID_RETENTION": v}[k] })
	}
	if s, err := settingsOf(""); err != nil || s.VoidRetention != 30*24*time.Hour {
		t.Errorf("default: %v, %v; want 720h", s.VoidRetention, err)
	}
	if s, err := settingsOf("2h"); err != nil {
		t.Errorf("VOID_RETENTION=2h: %v, want no error", err)
	} else if s.VoidRetention != 2*time.Hour {
		t.Errorf("VOID_RETENTION=2h: %v, want 2h", s.VoidRetention)
	}
	// Shorter than an hour, a void could be forgotten while a charge it must stop is
	// still on its way.
	for _, v := range []string{"30m", "soon", "-720h"} {
		if _, err := settingsOf(v); err == nil || !strings.Contains(err.Error(), "VOID_RETENTION") {
			t.Errorf("VOID_RETENTION=%s: %v, want an error naming it", v, err)
		}
	}
}

// A compensation's refund of a charge a crash left pending learns the charge's outcome
// first: money the interrupted charge took comes back, a decline stays as it is, and
// repeats change nothing.
func TestRefundSettlesAChargeLeftPending(t *testing.T) {
	t.Parallel()
	s := startPayments(t)
	ctx := context.Background()
	store := postgres.NewStore(s.db)
	left := map[payment.Method]uuid.UUID{}
	orders := map[payment.Method]uuid.UUID{}
	for _, m := range []payment.Method{payment.MethodVisa, payment.MethodInsufficientFunds} {
		p := payment.NewPending(uuid.New(), payment.ChargeRequest{OrderID: uuid.New(), UserID: uuid.New(),
			Amount: payment.Money{Cents: 1250, Currency: "USD"}, Method: m}, time.Now())
		if err := store.CreatePending(ctx, p); err != nil {
			t.Fatal(err)
		}
		left[m], orders[m] = p.ID, p.OrderID
	}
	refund := func(m payment.Method) paymentBody {
		t.Helper()
		return s.payment(t, s.saga(t, http.MethodPost, "/internal/charges/"+orders[m].String()+"/refund", ""), http.StatusOK)
	}

	for range 2 {
		visa := refund(payment.MethodVisa)
		if visa.ID != left[payment.MethodVisa].String() {
			t.Errorf("refund of a pending visa charge: payment %s, want %s", visa.ID, left[payment.MethodVisa])
		}
		if visa.Status != "refunded" {
			t.Errorf("refund of a pending visa charge: status %q, want refunded", visa.Status)
		}
		declined := refund(payment.MethodInsufficientFunds)
		if declined.ID != left[payment.MethodInsufficientFunds].String() {
			t.Errorf("refund of a pending declined charge: payment %s, want %s", declined.ID, left[payment.MethodInsufficientFunds])
		}
		if declined.Status != "declined" {
			t.Errorf("refund of a pending declined charge: status %q, want it declined as it is", declined.Status)
		}
		if declined.DeclineCode != "insufficient_funds" {
			t.Errorf("refund of a pending declined charge: decline_code %q, want insufficient_funds", declined.DeclineCode)
		}
	}
	// Exactly one event per change, whatever the repeats.
	for _, e := range []struct{ typ, subject string }{
		{"payment.captured", left[payment.MethodVisa].String()},
		{"payment.refunded", left[payment.MethodVisa].String()},
		{"payment.declined", left[payment.MethodInsufficientFunds].String()},
	} {
		if n := s.count(t, `SELECT count(*) FROM outbox WHERE type = $1 AND subject = $2`, e.typ, e.subject); n != 1 {
			t.Errorf("%d %s events about %s, want 1", n, e.typ, e.subject)
		}
	}
	if n := s.count(t, `SELECT count(*) FROM outbox`); n != 3 {
		t.Errorf("%d events, want 3", n)
	}
}

// Finding: anyone who reached payments could read and refund another user's charge,
// or charge any user_id. Now only the orders service gets in, only on the internal
// listener, and a refused call changes nothing.
func TestInternalRoutesLetInOnlyTheOrdersService(t *testing.T) {
	t.Parallel()
	s := startPayments(t)
	victim := newCharge("pm_card_visa")
	s.payment(t, s.charge(t, victim), http.StatusCreated)
	intruder := newCharge("pm_card_visa")
	for _, c := range []struct {
		name   string
		header []string
		status int
	}{
		{"no credential", nil, http.StatusUnauthorized},
		{"a customer's access token", programtest.Bearer(s.token(t, victim.UserID)), http.StatusUnauthorized},
		{"orders' token for inventory", s.keys.Authorization(t, "orders", "inventory"), http.StatusUnauthorized},
		{"another service's token", s.keys.Authorization(t, "notifications", "payments"), http.StatusForbidden},
	} {
		t.Run(c.name, func(t *testing.T) {
			call(t, http.MethodGet, s.internal+"/internal/charges/"+victim.OrderID, "", c.header...).problem(t, c.status)
			call(t, http.MethodPost, s.internal+"/internal/charges/"+victim.OrderID+"/refund", "", c.header...).problem(t, c.status)
			call(t, http.MethodPost, s.internal+"/internal/charges", intruder.String(),
				append([]string{"Idempotency-Key", intruder.OrderID}, c.header...)...).problem(t, c.status)
		})
	}
	// The public listener has no internal route at all, whatever the credential.
	call(t, http.MethodPost, s.url+"/internal/charges/"+victim.OrderID+"/refund", "", s.keys.Authorization(t, "orders", "payments")...).
		problem(t, http.StatusNotFound)
	if got := s.payment(t, s.saga(t, http.MethodGet, "/internal/charges/"+victim.OrderID, ""), http.StatusOK); got.Status != "captured" {
		t.Errorf("the victim's charge is %s after the refused refunds, want captured", got.Status)
	}
	if n := s.count(t, `SELECT count(*) FROM payments WHERE order_id = $1`, intruder.OrderID); n != 0 {
		t.Errorf("a refused charge left %d payments", n)
	}
}

// The payments left pending are on the internal listener's /metrics, read from the
// database at each scrape; a database that stops answering costs the scrape about a
// second (paymentmetrics.ScrapeTimeout), not the scraper's timeout, and shows as -1.
func TestPendingPaymentsAreScrapedAndASlowDatabaseDoesNotHoldTheScrape(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	proxied, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	db, err := tcpproxy.New(proxied.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	proxied.Host = db.Addr()
	prog := startProgram(t, svcauthtest.New(t, "orders"), map[string]string{"DATABASE_URL": proxied.String(), "REDIS_URL": redistest.New(t)})
	pool, err := pgdb.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	metrics := func(t *testing.T) (string, time.Duration) {
		t.Helper()
		start := time.Now()
		r := programtest.Call(t, http.MethodGet, prog.InternalURL()+"/metrics", "")
		if r.Status != http.StatusOK {
			t.Fatalf("/metrics: %d", r.Status)
		}
		return string(r.Body), time.Since(start)
	}
	if body, _ := metrics(t); !strings.Contains(body, "payments_pending 0\n") {
		t.Errorf("with nothing pending, /metrics lacks payments_pending 0:\n%s", body)
	} else if !strings.Contains(body, "payments_pending_oldest_age_seconds 0\n") {
		t.Errorf("with nothing pending, /metrics lacks payments_pending_oldest_age_seconds 0:\n%s", body)
	}

	// A charge in progress for 30 s: younger than the sweep's minute, so it stays.
	p := payment.NewPending(uuid.New(), payment.ChargeRequest{OrderID: uuid.New(), UserID: uuid.New(),
		Amount: payment.Money{Cents: 999, Currency: "EUR"}, Method: payment.MethodVisa}, time.Now().Add(-30*time.Second))
	if err := postgres.NewStore(pool).CreatePending(ctx, p); err != nil {
		t.Fatal(err)
	}
	body, _ := metrics(t)
	if !strings.Contains(body, "payments_pending 1\n") {
		t.Errorf("/metrics lacks payments_pending 1:\n%s", body)
	}
	var age float64
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(line, "payments_pending_oldest_age_seconds "); ok {
			if _, err := fmt.Sscan(v, &age); err != nil {
				t.Fatal(err)
			}
		}
	}
	if age < 30 || age > 90 {
		t.Errorf("payments_pending_oldest_age_seconds = %v, want about 30", age)
	}

	// Every answer of the database now takes 5 s: the scrape answers in about one.
	db.SetDelay(5 * time.Second)
	t.Cleanup(func() { db.SetDelay(0) })
	body, took := metrics(t)
	if took > 3*time.Second {
		t.Errorf("the scrape took %s with the database slow; want about %s", took, time.Second)
	}
	if !strings.Contains(body, "payments_pending -1\n") {
		t.Errorf("with the database slow, /metrics lacks payments_pending -1:\n%s", body)
	}
}
