package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	netmail "net/mail"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/programtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/smtptest"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/events"
	"github.com/bazaar-shop/bazaar/pkg/pgdb"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
	"github.com/bazaar-shop/bazaar/pkg/tasks"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/jobs"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/postgres/migrations"
)

// The deadlines are generous: these tests share a small machine with every other
// package's, and asynq looks for due retries only once a second.
const (
	arrives = 60 * time.Second
)

// issuer plays the users service: it signs access tokens and serves their JWKS.
type issuer struct {
	signer *auth.Signer
	jwks   string
}

func newIssuer(t *testing.T) issuer {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	const kid = "test-key"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(auth.KeySet{Keys: []auth.JWK{auth.PublicJWK(kid, pub)}})
	}))
	t.Cleanup(srv.Close)
	return issuer{signer: auth.NewSigner(kid, priv, 15*time.Minute), jwks: srv.URL + "/.well-known/jwks.json"}
}

func (i issuer) token(t *testing.T, user uuid.UUID) string {
	t.Helper()
	return i.tokenAs(t, user, auth.RoleCustomer)
}

func (i issuer) tokenAs(t *testing.T, user uuid.UUID, role auth.Role) string {
	t.Helper()
	tok, err := i.signer.Sign(auth.Principal{UserID: user, Role: role})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// stack is one notifications service under test, with its outside world: a fake SMTP
// server, a token issuer, and direct lines to its database and Redis.
type stack struct {
	url      string
	prog     *programtest.Program
	db       *pgxpool.Pool
	redis    *redis.Client
	redisURL string
	smtp     *smtptest.Server
	issuer   issuer
	env      map[string]string
}

// newStack prepares the world without starting the service (see start).
func newStack(t *testing.T, extra map[string]string) *stack {
	t.Helper()
	s := &stack{smtp: smtptest.New(t), issuer: newIssuer(t), redisURL: redistest.New(t)}
	dbURL := pgtest.NewDatabase(t)
	s.env = map[string]string{
		"DATABASE_URL":    dbURL,
		"REDIS_URL":       s.redisURL,
		"SMTP_ADDR":       s.smtp.Addr(),
		"JWKS_URL":        s.issuer.jwks,
		"EMAIL_MAX_RETRY": "5",
		"LOG_LEVEL":       "debug",
	}
	for k, v := range extra {
		s.env[k] = v
	}
	pool, err := pgdb.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s.db = pool
	rdb, err := redisclient.Open(s.redisURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	s.redis = rdb
	return s
}

// start runs the service's run() (one more replica on each call).
func (s *stack) start(t *testing.T, extra map[string]string) *programtest.Program {
	t.Helper()
	env := map[string]string{}
	for k, v := range s.env {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	prog := programtest.Start(t, run, env)
	if s.prog == nil {
		s.prog, s.url = prog, prog.URL
	}
	return prog
}

func startStack(t *testing.T, extra map[string]string) *stack {
	t.Helper()
	s := newStack(t, extra)
	s.start(t, nil)
	return s
}

// publish XADDs an event to stream the way an outbox relay does, and returns it.
func (s *stack) publish(t *testing.T, stream, typ string, data any) events.Envelope {
	t.Helper()
	b, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	e := events.Envelope{ID: uuid.New(), Type: typ, Source: "test", Subject: "test", Time: time.Now(), Data: b}
	s.publishEnvelope(t, stream, e)
	return e
}

func (s *stack) publishEnvelope(t *testing.T, stream string, e events.Envelope) {
	t.Helper()
	s.xadd(t, stream, e.Fields())
}

func (s *stack) xadd(t *testing.T, stream string, fields map[string]any) {
	t.Helper()
	if err := s.redis.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: fields}).Err(); err != nil {
		t.Fatal(err)
	}
}

// user is a registered user: its id, address and name.
type user struct {
	id    uuid.UUID
	email string
	name  string
}

func newUser(name string) user {
	id := uuid.New()
	return user{id: id, email: "u-" + id.String()[:8] + "@example.com", name: name}
}

func (s *stack) register(t *testing.T, u user) events.Envelope {
	t.Helper()
	return s.publish(t, "events.users", "user.registered", map[string]any{"user_id": u.id, "email": u.email, "name": u.name})
}

// row is a notification as stored.
type row struct {
	id       uuid.UUID
	kind     string
	status   string
	attempts int
	err      string
	sentAt   *time.Time
}

// checkSentOnce checks a row of kind that went out at its first attempt.
func checkSentOnce(t *testing.T, r row, kind string) {
	t.Helper()
	if r.kind != kind {
		t.Errorf("row %+v: kind %q, want %q", r, r.kind, kind)
	}
	if r.attempts != 1 {
		t.Errorf("row %+v: %d attempts, want 1", r, r.attempts)
	}
	if r.sentAt == nil {
		t.Errorf("row %+v: no sent_at", r)
	}
}

// checkWaiting checks a row that waits, queued, through a mail server outage whose
// reply is code.
func checkWaiting(t *testing.T, what string, r row, code string) {
	t.Helper()
	if r.status != "queued" {
		t.Errorf("%s: %+v; want it queued", what, r)
	}
	if !strings.Contains(r.err, code) {
		t.Errorf("%s: error %q; want the mail server's %s", what, r.err, code)
	}
	if r.sentAt != nil {
		t.Errorf("%s: %+v; want no sent_at", what, r)
	}
}

// checkTo checks that an e-mail's To header is u, address and name.
func checkTo(t *testing.T, h netmail.Header, u user) {
	t.Helper()
	to, err := h.AddressList("To")
	if err != nil {
		t.Errorf("To %q: %v", h.Get("To"), err)
		return
	}
	if len(to) == 0 {
		t.Errorf("To %q: no address", h.Get("To"))
		return
	}
	if to[0].Address != u.email {
		t.Errorf("To %q: address %q, want %q", h.Get("To"), to[0].Address, u.email)
	}
	if to[0].Name != u.name {
		t.Errorf("To %q: name %q, want %q", h.Get("To"), to[0].Name, u.name)
	}
}

func (s *stack) rowOf(t *testing.T, eventID uuid.UUID) (row, bool) {
	t.Helper()
	var r row
	var errText *string
	err := s.db.QueryRow(context.Background(), `SELECT id, kind, status, attempts, error, sent_at FROM notifications WHERE event_id = $1`, eventID).
		Scan(&r.id, &r.kind, &r.status, &r.attempts, &errText, &r.sentAt)
	if err != nil {
		return row{}, false
	}
	if errText != nil {
		r.err = *errText
	}
	return r, true
}

// waitRow polls until the event's notification satisfies cond.
func (s *stack) waitRow(t *testing.T, eventID uuid.UUID, what string, cond func(row) bool) row {
	t.Helper()
	var last row
	eventually(t, arrives, what, func() bool {
		r, ok := s.rowOf(t, eventID)
		last = r
		return ok && cond(r)
	})
	return last
}

func (s *stack) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitMail polls until n e-mails have been accepted for rcpt and returns them.
func (s *stack) waitMail(t *testing.T, rcpt string, n int) []smtptest.Message {
	t.Helper()
	var msgs []smtptest.Message
	eventually(t, arrives, fmt.Sprintf("%d e-mails to %s", n, rcpt), func() bool {
		msgs = s.smtp.To(rcpt)
		return len(msgs) >= n
	})
	return msgs
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(25 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
	}
}

// get is a GET of path, presenting token when there is one.
// metrics reads the first replica's /metrics, on its internal listener.
func (s *stack) metrics(t *testing.T) programtest.Response {
	t.Helper()
	return programtest.Call(t, http.MethodGet, s.prog.InternalURL()+"/metrics", "")
}

func (s *stack) get(t *testing.T, path, token string) programtest.Response {
	t.Helper()
	var header []string
	if token != "" {
		header = programtest.Bearer(token)
	}
	return programtest.Call(t, http.MethodGet, s.url+path, "", header...)
}

// notificationBody is a notification as its user sees it.
type notificationBody struct {
	ID        string     `json:"id"`
	Kind      string     `json:"kind"`
	Subject   string     `json:"subject"`
	Status    string     `json:"status"`
	CreatedAt time.Time  `json:"created_at"`
	SentAt    *time.Time `json:"sent_at"`
}

type listBody struct {
	Items      []notificationBody `json:"items"`
	NextCursor *string            `json:"next_cursor"`
}

func (s *stack) list(t *testing.T, token, query string) listBody {
	t.Helper()
	r := s.get(t, "/api/v1/notifications"+query, token)
	if r.Status != http.StatusOK {
		t.Fatalf("list: %d %s", r.Status, r.Body)
	}
	var b listBody
	if err := json.Unmarshal(r.Body, &b); err != nil {
		t.Fatal(err)
	}
	if b.Items == nil {
		t.Fatalf("items is null, want a list: %s", r.Body)
	}
	return b
}

// The notifications service starts on its own fresh database, applies its migrations,
// and answers the operational routes, with the mail server among its checks.
func TestRunServesOperationalRoutes(t *testing.T) {
	t.Parallel()
	s := startStack(t, nil)
	programtest.AssertOperational(t, s.prog, "postgres", "migrations", "redis", "smtp")
}

func TestBadSettingsStopTheStart(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SMTP_ADDR": "no-port", "MAIL_FROM": "not an address", "EMAIL_MAX_RETRY": "99",
		"REPORT_EMAIL": "Admin <admin@bazaar.local>", "EMAIL_GIVE_UP_AFTER": "2000h", "EMAIL_RETRY_CAP": "2h",
		"INBOX_RETENTION": "30m", "DLQ_MAXLEN": "10"}
	err := run(t.Context(), nil, func(k string) string { return env[k] }, io.Discard)
	for _, name := range []string{"SMTP_ADDR", "MAIL_FROM", "EMAIL_MAX_RETRY", "REPORT_EMAIL", "EMAIL_GIVE_UP_AFTER", "EMAIL_RETRY_CAP",
		"INBOX_RETENTION", "DLQ_MAXLEN"} {
		if !strings.Contains(fmt.Sprint(err), name) {
			t.Errorf("run = %v; want it to name %s", err, name)
		}
	}
}

func TestWelcomeEmailIsSentOnceAndListed(t *testing.T) {
	t.Parallel()
	s := startStack(t, nil)
	ann := newUser(`Ann O'Neil <b>`)
	ev := s.register(t, ann)

	msg := s.waitMail(t, ann.email, 1)[0]
	r := s.waitRow(t, ev.ID, "the welcome notification sent", func(r row) bool { return r.status == "sent" })
	checkSentOnce(t, r, "welcome")
	h := msg.Header
	if msg.From != "no-reply@bazaar.local" {
		t.Errorf("envelope From %q, want no-reply@bazaar.local", msg.From)
	}
	if want := `"Bazaar" <no-reply@bazaar.local>`; h.Get("From") != want {
		t.Errorf("header From %q, want %q", h.Get("From"), want)
	}
	checkTo(t, h, ann)
	if h.Get("Subject") != "Welcome to Bazaar, Ann O'Neil <b>" {
		t.Errorf("Subject %q", h.Get("Subject"))
	}
	if h.Get("Message-ID") != "<"+r.id.String()+"@bazaar.local>" {
		t.Errorf("Message-ID %q, want one made of notification id %s", h.Get("Message-ID"), r.id)
	}
	parts, err := msg.Parts()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(parts["text/plain"], "Hello Ann O'Neil <b>,") {
		t.Errorf("text part:\n%s", parts["text/plain"])
	}
	if !strings.Contains(parts["text/html"], "Hello Ann O&#39;Neil &lt;b&gt;,") {
		t.Errorf("HTML part does not greet Ann by her escaped name:\n%s", parts["text/html"])
	}
	if strings.Contains(parts["text/html"], "<b>,") {
		t.Errorf("HTML part has the name unescaped:\n%s", parts["text/html"])
	}

	// The same event again (a relay re-publishing after a crash): one notification,
	// one e-mail. A later registration on the same stream shows the duplicate was
	// handled: a group delivers a stream's entries in order.
	s.publishEnvelope(t, "events.users", ev)
	marker := newUser("Marker")
	s.register(t, marker)
	s.waitMail(t, marker.email, 1)
	if n := len(s.smtp.To(ann.email)); n != 1 {
		t.Errorf("%d e-mails to %s after a duplicate event, want 1", n, ann.email)
	}
	if n := s.count(t, `SELECT count(*) FROM notifications WHERE user_id = $1`, ann.id); n != 1 {
		t.Errorf("%d notifications for %s, want 1", n, ann.email)
	}
	if m := s.metrics(t); !strings.Contains(string(m.Body), `events_consumed_total{group="notifications",result="duplicate",stream="events.users"} 1`) {
		t.Errorf("the duplicate is not counted as one")
	}

	// Ann sees her notification; someone else sees none of it.
	b := s.list(t, s.issuer.token(t, ann.id), "")
	if len(b.Items) != 1 {
		t.Fatalf("Ann's list: %+v; want one notification", b)
	}
	if b.NextCursor != nil {
		t.Errorf("Ann's list: next_cursor %q; want none, it is the only page", *b.NextCursor)
	}
	it := b.Items[0]
	if it.ID != r.id.String() {
		t.Errorf("Ann's notification: id %s, want the row's %s", it.ID, r.id)
	}
	if it.Kind != "welcome" {
		t.Errorf("Ann's notification: kind %q, want welcome", it.Kind)
	}
	if it.Status != "sent" {
		t.Errorf("Ann's notification: status %q, want sent", it.Status)
	}
	if want := "Welcome to Bazaar, Ann O'Neil <b>"; it.Subject != want {
		t.Errorf("Ann's notification: subject %q, want %q", it.Subject, want)
	}
	if it.CreatedAt.IsZero() {
		t.Error("Ann's notification: no created_at")
	}
	switch {
	case it.SentAt == nil:
		t.Error("Ann's notification: no sent_at")
	case it.SentAt.Before(it.CreatedAt):
		t.Errorf("Ann's notification: sent at %v, before it was created at %v", *it.SentAt, it.CreatedAt)
	}
	stranger := s.list(t, s.issuer.token(t, uuid.New()), "")
	if len(stranger.Items) != 0 {
		t.Errorf("a stranger's list: %+v; want it empty", stranger)
	}
	if stranger.NextCursor != nil {
		t.Errorf("a stranger's list: next_cursor %q; want none", *stranger.NextCursor)
	}

	s.get(t, "/api/v1/notifications", "").Problem(t, http.StatusUnauthorized)
	s.get(t, "/api/v1/notifications", "not-a-token").Problem(t, http.StatusUnauthorized)
	for _, q := range []string{"?limit=0", "?limit=101", "?limit=ten", "?cursor=garbage"} {
		d := s.get(t, "/api/v1/notifications"+q, s.issuer.token(t, ann.id)).Problem(t, http.StatusUnprocessableEntity)
		if len(d.Errors) != 1 {
			t.Errorf("%s: %+v, want one field error", q, d)
		}
	}
}

func TestOrderAndPaymentEventsSendTheirEmails(t *testing.T) {
	t.Parallel()
	s := startStack(t, nil)
	cy := newUser("Cy")
	s.register(t, cy)
	s.waitMail(t, cy.email, 1)

	order, product := uuid.New(), uuid.New()
	confirmed := s.publish(t, "events.orders", "order.confirmed", map[string]any{
		"order_id": order, "user_id": cy.id, "total_cents": 2598, "currency": "USD",
		"items": []map[string]any{{"product_id": product, "quantity": 2, "unit_price_cents": 1299}},
	})
	s.waitMail(t, cy.email, 2)
	cancelled := s.publish(t, "events.orders", "order.cancelled", map[string]any{
		"order_id": order, "user_id": cy.id, "reason": "payment_declined", "total_cents": 2598, "currency": "USD",
	})
	s.waitMail(t, cy.email, 3)
	refunded := s.publish(t, "events.payments", "payment.refunded", map[string]any{
		"payment_id": uuid.New(), "order_id": order, "user_id": cy.id, "amount_cents": 1250, "currency": "EUR",
	})
	msgs := s.waitMail(t, cy.email, 4)

	orderRef := ref(order)
	want := []struct {
		subject string
		text    []string
	}{
		{"Welcome to Bazaar, Cy", []string{"Hello Cy,"}},
		{"Your order " + orderRef + " is confirmed", []string{"2 x product " + ref(product) + " at $12.99: $25.98", "Total: $25.98"}},
		{"Your order " + orderRef + " was cancelled", []string{"($25.98) was cancelled because", "the payment was declined"}},
		{"Your refund of €12.50 is on its way", []string{"We have refunded €12.50 for your order " + orderRef}},
	}
	for i, m := range msgs {
		subject, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
		if err != nil {
			t.Errorf("e-mail %d: subject %q does not decode: %v", i, m.Header.Get("Subject"), err)
		}
		if subject != want[i].subject {
			t.Errorf("e-mail %d: subject %q, want %q", i, subject, want[i].subject)
		}
		parts, err := m.Parts()
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want[i].text {
			if !strings.Contains(parts["text/plain"], w) {
				t.Errorf("e-mail %d text lacks %q:\n%s", i, w, parts["text/plain"])
			}
		}
		if !strings.Contains(parts["text/html"], "<html") {
			t.Errorf("e-mail %d has no HTML part", i)
		}
	}
	for _, ev := range []events.Envelope{confirmed, cancelled, refunded} {
		s.waitRow(t, ev.ID, ev.Type+" sent", func(r row) bool { return r.status == "sent" })
	}

	// Four notifications, listed newest first, three then one.
	token := s.issuer.token(t, cy.id)
	first := s.list(t, token, "?limit=3")
	if len(first.Items) != 3 {
		t.Fatalf("first page: %+v; want 3 notifications", first)
	}
	if first.NextCursor == nil {
		t.Fatalf("first page: %+v; want a next_cursor, a fourth notification follows", first)
	}
	second := s.list(t, token, "?limit=3&cursor="+*first.NextCursor)
	if len(second.Items) != 1 {
		t.Fatalf("second page: %+v; want the 1 notification left", second)
	}
	if second.NextCursor != nil {
		t.Errorf("second page: next_cursor %q; want none, it is the last page", *second.NextCursor)
	}
	var kinds []string
	for _, it := range append(first.Items, second.Items...) {
		kinds = append(kinds, it.Kind)
		if it.Status != "sent" {
			t.Errorf("%s is %s", it.Kind, it.Status)
		}
	}
	if got := strings.Join(kinds, ","); got != "payment_refunded,order_cancelled,order_confirmed,welcome" {
		t.Errorf("listed %s; want newest first", got)
	}
}

func TestPoisonGoesToTheDLQAndLateRecipientsAreWaitedFor(t *testing.T) {
	t.Parallel()
	s := startStack(t, nil)
	ctx := context.Background()

	// An order for a user whose registration has not arrived yet fails and is
	// retried...
	late := newUser("Lee")
	order := s.publish(t, "events.orders", "order.confirmed", map[string]any{
		"order_id": uuid.New(), "user_id": late.id, "total_cents": 500, "currency": "USD", "items": []any{},
	})
	eventually(t, arrives, "the order event to fail for want of its recipient", func() bool {
		m := s.metrics(t)
		return strings.Contains(string(m.Body), `events_consumed_total{group="notifications",result="failed",stream="events.orders"}`)
	})
	// ...poison and misfits go to the DLQ, other types are ignored...
	s.xadd(t, "events.users", map[string]any{"garbage": "yes"})
	bad := s.publish(t, "events.users", "user.registered", map[string]any{"user_id": "not-a-uuid", "email": "x@example.com"})
	ignored := s.publish(t, "events.orders", "order.created", map[string]any{"order_id": uuid.New()})
	// ...and once the registration arrives, both of Lee's e-mails go out.
	s.register(t, late)
	msgs := s.waitMail(t, late.email, 2)
	subjects := msgs[0].Header.Get("Subject") + " | " + msgs[1].Header.Get("Subject")
	if !strings.Contains(subjects, "Welcome to Bazaar, Lee") {
		t.Errorf("Lee's e-mails: %s; want the welcome", subjects)
	}
	if !strings.Contains(subjects, "is confirmed") {
		t.Errorf("Lee's e-mails: %s; want the order confirmation", subjects)
	}
	s.waitRow(t, order.ID, "the late order's notification sent", func(r row) bool { return r.status == "sent" })

	var dlq []events.DeadLetter
	eventually(t, arrives, "two entries in the DLQ", func() bool {
		var err error
		dlq, err = events.ListDLQ(ctx, s.redis, 10)
		return err == nil && len(dlq) >= 2
	})
	if len(dlq) != 2 {
		t.Fatalf("DLQ: %+v; want the poison entry and the misfit", dlq)
	}
	for _, d := range dlq {
		if d.Stream != "events.users" {
			t.Errorf("DLQ entry %+v: stream %q, want events.users", d, d.Stream)
		}
		if d.Group != "notifications" {
			t.Errorf("DLQ entry %+v: group %q, want notifications", d, d.Group)
		}
		if !strings.Contains(d.Error, "malformed") {
			t.Errorf("DLQ entry %+v: error %q; want it to say malformed", d, d.Error)
		}
	}
	if dlq[1].EventID != bad.ID.String() {
		t.Errorf("DLQ holds %s, want the misfit %s", dlq[1].EventID, bad.ID)
	}
	if n := s.count(t, `SELECT count(*) FROM notifications`); n != 2 {
		t.Errorf("%d notifications, want Lee's 2", n)
	}
	eventually(t, arrives, "the ignored event recorded as handled", func() bool {
		return s.count(t, `SELECT count(*) FROM inbox WHERE event_id = $1`, ignored.ID) == 1
	})
}

func TestSMTPOutageIsRetriedUntilItRecovers(t *testing.T) {
	t.Parallel()
	s := startStack(t, map[string]string{"EMAIL_MAX_RETRY": "10"})
	s.smtp.Refuse()
	bo := newUser("Bo")
	ev := s.register(t, bo)
	r := s.waitRow(t, ev.ID, "two failed attempts", func(r row) bool { return r.attempts >= 2 })
	checkWaiting(t, "row while SMTP is down", r, "421")
	b := s.list(t, s.issuer.token(t, bo.id), "")
	if len(b.Items) != 1 {
		t.Fatalf("listed while SMTP is down: %+v; want one notification", b)
	}
	if b.Items[0].Status != "queued" {
		t.Errorf("listed while SMTP is down: status %q, want queued", b.Items[0].Status)
	}
	if b.Items[0].SentAt != nil {
		t.Errorf("listed while SMTP is down: sent_at %v, want none", *b.Items[0].SentAt)
	}

	s.smtp.Recover()
	s.waitMail(t, bo.email, 1)
	r = s.waitRow(t, ev.ID, "sent after SMTP came back", func(r row) bool { return r.status == "sent" })
	if r.attempts < 3 {
		t.Errorf("row after recovery: %+v; want at least 3 attempts, 2 failed and the one that went through", r)
	}
	if r.sentAt == nil {
		t.Errorf("row after recovery: %+v; want a sent_at", r)
	}
}

// An SMTP outage that outlasts the retry count is not the e-mail's fault: with one
// retry allowed, the notification still waits, queued, through more attempts than
// that (and the dispatcher's sweeps), and goes out once when the server is back.
func TestSMTPOutageOutlastingTheRetriesLosesNoEmail(t *testing.T) {
	t.Parallel()
	s := startStack(t, map[string]string{"EMAIL_MAX_RETRY": "1"})
	s.smtp.Refuse()
	dee := newUser("Dee")
	ev := s.register(t, dee)
	r := s.waitRow(t, ev.ID, "more failed attempts than 1 + EMAIL_MAX_RETRY, or the row given up",
		func(r row) bool { return r.attempts >= 4 || r.status != "queued" })
	if r.status != "queued" {
		t.Fatalf("row after %d attempts in an SMTP outage: %+v; want it still queued", r.attempts, r)
	}
	checkWaiting(t, fmt.Sprintf("row after %d attempts in an SMTP outage", r.attempts), r, "421")

	s.smtp.Recover()
	s.waitMail(t, dee.email, 1)
	r = s.waitRow(t, ev.ID, "sent after SMTP came back", func(r row) bool { return r.status == "sent" })
	if r.sentAt == nil {
		t.Errorf("row after recovery: %+v; want a sent_at", r)
	}
	if r.attempts < 5 {
		t.Errorf("row after recovery: %+v; want at least 5 attempts, the 4 that failed and the one that went through", r)
	}
	if n := len(s.smtp.To(dee.email)); n != 1 {
		t.Errorf("%d e-mails to %s, want 1", n, dee.email)
	}
}

// A notification is given up once it has had EMAIL_MAX_RETRY retries and is
// EMAIL_GIVE_UP_AFTER old; here the age is no obstacle, so the retries decide.
func TestSMTPFailingUntilTheLastRetryMarksItFailed(t *testing.T) {
	t.Parallel()
	s := startStack(t, map[string]string{"EMAIL_MAX_RETRY": "2", "EMAIL_GIVE_UP_AFTER": "1ms"})
	s.smtp.FailMail(451, "4.3.0 mailbox busy, try again later")
	cat := newUser("Cat")
	ev := s.register(t, cat)
	r := s.waitRow(t, ev.ID, "the notification failed", func(r row) bool { return r.status == "failed" })
	if r.attempts != 3 {
		t.Errorf("failed row: %+v; want 3 attempts (1 + 2 retries)", r)
	}
	if !strings.Contains(r.err, "451") {
		t.Errorf("failed row: error %q; want the mail server's 451", r.err)
	}
	if r.sentAt != nil {
		t.Errorf("failed row: %+v; want no sent_at", r)
	}
	if n := s.smtp.Rejected(); n != 3 {
		t.Errorf("the server rejected %d messages; want 3", n)
	}
	if n := len(s.smtp.Messages()); n != 0 {
		t.Errorf("the server took %d messages; want none", n)
	}
	b := s.list(t, s.issuer.token(t, cat.id), "")
	if len(b.Items) != 1 {
		t.Fatalf("listed: %+v; want one notification", b)
	}
	if b.Items[0].Status != "failed" {
		t.Errorf("listed: status %q, want failed", b.Items[0].Status)
	}
	if b.Items[0].SentAt != nil {
		t.Errorf("listed: sent_at %v, want none", *b.Items[0].SentAt)
	}
}

// A process that died after committing a notification and before enqueueing its
// task, or a task Redis lost, or a task that failed for good while its worker died:
// the row is the source of truth, and the dispatcher repairs each.
func TestDispatcherRepairsLostTasks(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	ctx := context.Background()

	// The third case needs its failed task in place before the service looks.
	doomed := uuid.New()
	client, err := tasks.NewClient(s.redisURL, "notifications")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Enqueue(ctx, jobs.EmailTask(notification.DefaultGiveUp, 0), jobs.EmailPayload{NotificationID: doomed},
		asynq.TaskID(jobs.EmailTaskID(doomed)), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := asynq.NewInspectorFromRedisClient(s.redis).ArchiveTask(tasks.QueueName("notifications", tasks.QueueCritical), jobs.EmailTaskID(doomed)); err != nil {
		t.Fatal(err)
	}

	// Written straight into the table, before the service starts (so migrated here
	// first), and without NOTIFY: polling must find them.
	if err := pgdb.Migrate(ctx, s.db, migrations.FS, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	insert := func(id uuid.UUID, email string, enqueuedAgo *time.Duration) {
		var enqueuedAt *time.Time
		if enqueuedAgo != nil {
			at := time.Now().Add(-*enqueuedAgo)
			enqueuedAt = &at
		}
		_, err := s.db.Exec(ctx, `INSERT INTO notifications
			(id, event_id, kind, user_id, recipient, subject, data, status, created_at, enqueued_at)
			VALUES ($1, $2, 'welcome', $3, $4, 'Welcome to Bazaar', '{"name":"Lost"}', 'queued', now(), $5)`,
			id, uuid.New(), uuid.New(), email, enqueuedAt)
		if err != nil {
			t.Fatal(err)
		}
	}
	hour := time.Hour
	neverEnqueued, taskLost := uuid.New(), uuid.New()
	insert(neverEnqueued, "never-enqueued@example.com", nil)
	insert(taskLost, "task-lost@example.com", &hour)
	insert(doomed, "doomed@example.com", &hour)
	s.start(t, nil)

	for _, rcpt := range []string{"never-enqueued@example.com", "task-lost@example.com"} {
		m := s.waitMail(t, rcpt, 1)[0]
		if !strings.Contains(m.Header.Get("Subject"), "Welcome to Bazaar") {
			t.Errorf("%s got %q", rcpt, m.Header.Get("Subject"))
		}
	}
	for _, id := range []uuid.UUID{neverEnqueued, taskLost} {
		eventually(t, arrives, "repaired notifications sent", func() bool {
			return s.count(t, `SELECT count(*) FROM notifications WHERE id = $1 AND status = 'sent'`, id) == 1
		})
	}
	eventually(t, arrives, "the notification whose task failed marked failed", func() bool {
		return s.count(t, `SELECT count(*) FROM notifications WHERE id = $1 AND status = 'failed' AND error <> ''`, doomed) == 1
	})
	if n := len(s.smtp.To("doomed@example.com")); n != 0 {
		t.Errorf("the failed notification was sent %d times", n)
	}
}

// Two replicas consume, dispatch and send together: each event becomes one
// notification and one e-mail.
func TestTwoReplicasSendEachEmailOnce(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.start(t, map[string]string{"CONSUMER_NAME": "replica-1"})
	s.start(t, map[string]string{"CONSUMER_NAME": "replica-2"})
	const n = 20
	for i := range n {
		s.register(t, newUser(fmt.Sprintf("User %d", i)))
	}
	if _, err := s.smtp.WaitFor(n, arrives); err != nil {
		t.Fatal(err)
	}
	eventually(t, arrives, "every notification sent", func() bool {
		return s.count(t, `SELECT count(*) FROM notifications WHERE status = 'sent'`) == n
	})
	eventually(t, arrives, "every row enqueued", func() bool {
		return s.count(t, `SELECT count(*) FROM notifications WHERE enqueued_at IS NOT NULL`) == n
	})
	if got := len(s.smtp.Messages()); got != n {
		t.Errorf("%d e-mails for %d notifications", got, n)
	}
	if got := s.count(t, `SELECT count(*) FROM notifications`); got != n {
		t.Errorf("%d notifications for %d events", got, n)
	}
}

// An order whose user never registered (that event was lost) is not dropped: after its
// last delivery it waits in the DLQ, and once the registration is re-published, a
// replay sends its e-mail.
func TestOrderForAnUnknownUserIsDeadLetteredThenReplayed(t *testing.T) {
	t.Parallel()
	s := startStack(t, nil)
	ctx := context.Background()
	ghost := newUser("Gus")
	order := s.publish(t, "events.orders", "order.cancelled", map[string]any{
		"order_id": uuid.New(), "user_id": ghost.id, "reason": "out_of_stock", "total_cents": 700, "currency": "USD",
	})
	var dlq []events.DeadLetter
	eventually(t, arrives, "the order event in the DLQ", func() bool {
		var err error
		dlq, err = events.ListDLQ(ctx, s.redis, 10)
		return err == nil && len(dlq) == 1
	})
	d := dlq[0]
	if d.EventID != order.ID.String() {
		t.Errorf("DLQ entry %+v: event %s, want the order event %s", d, d.EventID, order.ID)
	}
	if d.Deliveries != 5 {
		t.Errorf("DLQ entry %+v: %d deliveries, want 5", d, d.Deliveries)
	}
	if !strings.Contains(d.Error, "recipient not known yet") {
		t.Errorf("DLQ entry %+v: error %q; want it to say the recipient is not known yet", d, d.Error)
	}

	s.register(t, ghost)
	s.waitMail(t, ghost.email, 1) // the welcome
	if err := events.Replay(ctx, s.redis, dlq[0].ID); err != nil {
		t.Fatal(err)
	}
	msgs := s.waitMail(t, ghost.email, 2)
	if !strings.Contains(msgs[1].Header.Get("Subject"), "was cancelled") {
		t.Errorf("after the replay: %q", msgs[1].Header.Get("Subject"))
	}
	s.waitRow(t, order.ID, "the replayed order's notification sent", func(r row) bool { return r.status == "sent" })
}

func TestReportEmailSetting(t *testing.T) {
	t.Parallel()
	for value, want := range map[string]string{
		"":                  "admin@bazaar.local", // unset: the bootstrapped admin
		"boss@example.com":  "boss@example.com",
		" ops@example.com ": "ops@example.com",
		"off":               "", // reports not mailed
		"OFF":               "",
	} {
		cfg, err := loadSettings(func(k string) string {
			if k == "REPORT_EMAIL" {
				return value
			}
			return ""
		})
		if err != nil {
			t.Errorf("REPORT_EMAIL=%q: %v", value, err)
		}
		if cfg.ReportEmail != want {
			t.Errorf("REPORT_EMAIL=%q: ReportEmail %q, want %q", value, cfg.ReportEmail, want)
		}
	}
	for _, bad := range []string{"admin", "Admin <admin@bazaar.local>", "a@example.com, b@example.com"} {
		if _, err := loadSettings(func(k string) string {
			if k == "REPORT_EMAIL" {
				return bad
			}
			return ""
		}); !strings.Contains(fmt.Sprint(err), "REPORT_EMAIL") {
			t.Errorf("REPORT_EMAIL=%q: %v; want an error naming it", bad, err)
		}
	}
}

// salesReport is the data of a report.daily_sales event, as the orders service
// writes it.
func salesReport(day string, products ...uuid.UUID) map[string]any {
	from, err := time.Parse(time.DateOnly, day)
	if err != nil {
		panic(err)
	}
	top := []map[string]any{}
	for i, p := range products {
		top = append(top, map[string]any{"product_id": p, "quantity": 12 - 5*i, "revenue_cents": 15588 - 10000*i, "currency": "USD"})
	}
	return map[string]any{
		"day": day, "from": from, "to": from.AddDate(0, 0, 1),
		"orders": 9, "confirmed": 6, "cancelled": 2,
		"revenue":      []map[string]any{{"currency": "EUR", "amount_cents": 1200}, {"currency": "USD", "amount_cents": 123456}},
		"top_products": top,
	}
}

// The admin registers through users like anyone; the daily report from orders then
// goes to the admin's address (REPORT_EMAIL's default), once per event, and is in the
// admin's list.
func TestDailySalesReportIsMailedToTheAdmin(t *testing.T) {
	t.Parallel()
	s := startStack(t, nil)
	admin := user{id: uuid.New(), email: "admin@bazaar.local", name: "Bazaar Admin"}
	s.register(t, admin)
	s.waitMail(t, admin.email, 1)

	p1, p2 := uuid.New(), uuid.New()
	report := s.publish(t, "events.orders", "report.daily_sales", salesReport("2026-11-25", p1, p2))
	m := s.waitMail(t, admin.email, 2)[1]
	subject, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		t.Errorf("subject %q does not decode: %v", m.Header.Get("Subject"), err)
	}
	if want := "Bazaar daily sales for 2026-11-25"; subject != want {
		t.Errorf("subject %q, want %q", subject, want)
	}
	checkTo(t, m.Header, admin)
	parts, err := m.Parts()
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(parts["text/plain"], "\r\n", "\n") // SMTP lines end in CRLF
	ref1, ref2 := ref(p1), ref(p2)
	for _, w := range []string{
		"Hello Bazaar Admin,",
		"sales for 2026-11-25",
		"Orders placed: 9\n  confirmed:   6\n  cancelled:   2\n  still open:  1\n",
		"  €12.00\n  $1,234.56\n",
		"1. product " + ref1 + ": 12 sold, $155.88\n  2. product " + ref2 + ": 7 sold, $55.88",
	} {
		if !strings.Contains(text, w) {
			t.Errorf("text lacks %q:\n%s", w, text)
		}
	}
	for _, w := range []string{"<li>€12.00</li><li>$1,234.56</li>", "<td>" + ref1 + "</td>", "<td>" + ref2 + "</td>", "$155.88"} {
		if !strings.Contains(parts["text/html"], w) {
			t.Errorf("HTML lacks %q:\n%s", w, parts["text/html"])
		}
	}
	r := s.waitRow(t, report.ID, "the report's notification sent", func(r row) bool { return r.status == "sent" })
	checkSentOnce(t, r, "daily_sales_report")

	// The same event again (orders' task ran twice, or its relay re-published): one
	// e-mail. The next day's report, on the same stream, shows the duplicate handled.
	s.publishEnvelope(t, "events.orders", report)
	s.publish(t, "events.orders", "report.daily_sales", salesReport("2026-11-26"))
	msgs := s.waitMail(t, admin.email, 3)
	var days []string
	for _, m := range msgs[1:] {
		days = append(days, m.Header.Get("Subject"))
	}
	if got := strings.Join(days, " | "); got != "Bazaar daily sales for 2026-11-25 | Bazaar daily sales for 2026-11-26" {
		t.Errorf("reports mailed: %s", got)
	}
	if n := s.count(t, `SELECT count(*) FROM notifications WHERE kind = 'daily_sales_report'`); n != 2 {
		t.Errorf("%d report notifications, want 2", n)
	}

	// The admin sees the reports among their notifications, like any other.
	eventually(t, arrives, "every notification sent", func() bool {
		return s.count(t, `SELECT count(*) FROM notifications WHERE status <> 'sent'`) == 0
	})
	b := s.list(t, s.issuer.tokenAs(t, admin.id, auth.RoleAdmin), "")
	var listed []string
	for _, it := range b.Items {
		listed = append(listed, it.Kind+": "+it.Subject+" ("+it.Status+")")
	}
	want := "daily_sales_report: Bazaar daily sales for 2026-11-26 (sent), " +
		"daily_sales_report: Bazaar daily sales for 2026-11-25 (sent), welcome: Welcome to Bazaar, Bazaar Admin (sent)"
	if got := strings.Join(listed, ", "); got != want {
		t.Errorf("the admin's list: %s\nwant %s", got, want)
	}
}

// REPORT_EMAIL=off: the report is acknowledged (in the inbox) and nobody is mailed.
func TestDailySalesReportIsNotMailedWhenReportEmailIsOff(t *testing.T) {
	t.Parallel()
	s := startStack(t, map[string]string{"REPORT_EMAIL": "off"})
	admin := user{id: uuid.New(), email: "admin@bazaar.local", name: "Bazaar Admin"}
	s.register(t, admin)
	s.waitMail(t, admin.email, 1)
	report := s.publish(t, "events.orders", "report.daily_sales", salesReport("2026-11-25", uuid.New()))
	eventually(t, arrives, "the report acknowledged", func() bool {
		return s.count(t, `SELECT count(*) FROM inbox WHERE event_id = $1`, report.ID) == 1
	})
	if n := s.count(t, `SELECT count(*) FROM notifications WHERE kind = 'daily_sales_report'`); n != 0 {
		t.Errorf("%d report notifications, want none", n)
	}
	if n := len(s.smtp.Messages()); n != 1 {
		t.Errorf("%d e-mails, want the welcome only", n)
	}
}

// ref is how an e-mail names an order or product: the upper-cased tail of its id.
func ref(id uuid.UUID) string { s := id.String(); return strings.ToUpper(s[len(s)-8:]) }

// The inbox keeps the ids of handled events only as long as a redelivery can come:
// the daily inbox:cleanup (whose slot for today runs as soon as the service starts)
// deletes those handled over INBOX_RETENTION (10 days) ago, and no other.
func TestInboxIsCleanedOfOldEventIDs(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	ctx := context.Background()
	if err := pgdb.Migrate(ctx, s.db, migrations.FS, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	insert := func(n int, age string) {
		t.Helper()
		for range n {
			if _, err := s.db.Exec(ctx, `INSERT INTO inbox (event_id, stream, type, handled_at)
				VALUES ($1, 'events.users', 'user.registered', now() - $2::interval)`, uuid.New(), age); err != nil {
				t.Fatal(err)
			}
		}
	}
	insert(3, "11 days")
	insert(2, "9 days")
	s.start(t, nil)
	eventually(t, arrives, "the old inbox rows deleted", func() bool {
		return s.count(t, `SELECT count(*) FROM inbox WHERE handled_at < now() - interval '10 days'`) == 0
	})
	if n := s.count(t, `SELECT count(*) FROM inbox`); n != 2 {
		t.Errorf("%d inbox rows left, want the 2 younger than 10 days", n)
	}
}
