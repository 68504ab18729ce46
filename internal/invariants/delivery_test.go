package invariants_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/internal/invariants"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
)

// stockEvent writes inventory's stock.reserved or stock.released of order for lines,
// as a reserve or a release does in its transaction.
func (f *fixture) stockEvent(typ, order string, lines ...line) {
	f.t.Helper()
	items := []map[string]any{}
	for _, l := range lines {
		items = append(items, map[string]any{"product_id": l.product, "quantity": l.quantity})
	}
	data, _ := json.Marshal(map[string]any{"order_id": order, "items": items})
	f.exec(f.inv, `INSERT INTO outbox (id, stream, type, source, subject, time, data)
		VALUES ($1, 'events.inventory', $2, 'inventory', $3, now(), $4)`, uuid.New(), typ, order, data)
}

// patchStock sets a product's stock as an admin's PATCH does: the row and its
// product.updated event with the new stock.
func (f *fixture) patchStock(product string, stock int) {
	f.t.Helper()
	f.setStock(product, stock)
	f.exec(f.inv, `INSERT INTO outbox (id, stream, type, source, subject, time, data)
		VALUES ($1, 'events.inventory', 'product.updated', 'inventory', $2, now(), jsonb_build_object('id', $2::text, 'stock', $3::int))`,
		uuid.New(), product, stock)
}

// ledgerWorld is goodWorld with the stock events inventory writes for it.
func ledgerWorld(f *fixture) world {
	w := goodWorld(f)
	f.stockEvent("stock.reserved", w.confirmed, line{w.a, 2})
	f.stockEvent("stock.reserved", w.declined, line{w.a, 1})
	f.stockEvent("stock.released", w.declined, line{w.a, 1})
	f.stockEvent("stock.reserved", w.customer, line{w.a, 3})
	f.stockEvent("stock.released", w.customer, line{w.a, 3})
	return w
}

func TestAdminStockChangesAreAccountedByTheirDelta(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, c := range []struct {
		name  string
		do    func(f *fixture, w world)
		rules []string // the violations wanted, by rule; none for a shop that adds up
	}{
		{"no change", func(*fixture, world) {}, nil},
		{"a restock while an order holds stock", func(f *fixture, w world) {
			// a: 8 in stock, 2 held by the confirmed order. The admin sets 50: +42.
			f.patchStock(w.a, 50)
			held := f.order("confirmed", "", "done", line{w.a, 5})
			f.reservation(held, "committed", line{w.a, 5})
			f.payment(held, "captured", 1250)
			f.stockEvent("stock.reserved", held, line{w.a, 5})
			f.setStock(w.a, 45)
			f.patchStock(w.b, 0) // b: written off
			f.patchStock(w.b, 0) // an update that changes no stock (a price, say)
		}, nil},
		{"stock lost after a restock", func(f *fixture, w world) {
			f.patchStock(w.a, 50)
			f.setStock(w.a, 49)
		}, []string{invariants.RuleConservation, invariants.RuleStockLedger}},
		{"a reservation's stock taken without its event", func(f *fixture, w world) {
			o := f.order("confirmed", "", "done", line{w.b, 1})
			f.reservation(o, "committed", line{w.b, 1})
			f.payment(o, "captured", 250)
			f.setStock(w.b, 2)
		}, []string{invariants.RuleStockLedger}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.t = t
			f.reset()
			w := ledgerWorld(f)
			c.do(f, w)
			vs, rep, err := invariants.Violations(t.Context(), f.dbs, invariants.AccountStockChanges())
			if err != nil {
				t.Fatal(err)
			}
			if got := rules(vs); !slices.Equal(got, c.rules) {
				t.Errorf("violations %v; want rules %v", vs, c.rules)
			}
			if len(rep.Skipped) != 0 {
				t.Errorf("skipped %v; want every product checked", rep.Skipped)
			}
			if !slices.Contains(rep.Rules, invariants.RuleStockLedger) {
				t.Errorf("rules applied %v; want %s among them", rep.Rules, invariants.RuleStockLedger)
			}
		})
	}
}

// rules are the distinct rules of vs, sorted; nil for none.
func rules(vs []invariants.Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Rule)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// deliveryFixture adds users' and notifications' databases, a Redis and a fake
// Mailpit API to the saga's three databases.
type deliveryFixture struct {
	*fixture
	users, notes *pgxpool.Pool
	rdb          *redis.Client
	redisURL     string
	mail         *fakeMailpit
}

func newDeliveryFixture(t *testing.T) *deliveryFixture {
	t.Helper()
	f := &deliveryFixture{fixture: newFixture(t), users: migrated(t, "users"), notes: migrated(t, "notifications")}
	f.dbs.Users, f.dbs.Notifications = f.users.Config().ConnString(), f.notes.Config().ConnString()
	f.redisURL = redistest.New(t)
	opt, _ := redis.ParseURL(f.redisURL)
	f.rdb = redis.NewClient(opt)
	t.Cleanup(func() { f.rdb.Close() })
	f.mail = &fakeMailpit{}
	srv := httptest.NewServer(f.mail)
	t.Cleanup(srv.Close)
	f.mail.url = srv.URL
	return f
}

// publish writes an event into service's outbox, published, XADDs it to its stream
// and, for a stream notifications reads, records it in the inbox and acknowledges
// it; the gateway's group reads events.inventory up to it.
func (f *deliveryFixture) publish(pool *pgxpool.Pool, stream, typ, subject string, data map[string]any) string {
	f.t.Helper()
	id := uuid.NewString()
	b, _ := json.Marshal(data)
	f.exec(pool, `INSERT INTO outbox (id, stream, type, source, subject, time, data, published_at)
		VALUES ($1, $2, $3, 'test', $4, now(), $5, now())`, id, stream, typ, subject, b)
	f.deliver(stream, map[string]any{"id": id, "type": typ, "subject": subject, "data": string(b)}, typ != "poison")
	if stream != "events.inventory" {
		f.exec(f.notes, `INSERT INTO inbox (event_id, stream, type) VALUES ($1, $2, $3)`, id, stream, typ)
	}
	return id
}

// deliver XADDs an entry and has the stream's group read it, acknowledging it if ack.
func (f *deliveryFixture) deliver(stream string, values map[string]any, ack bool) {
	f.t.Helper()
	ctx := context.Background()
	group := "notifications"
	if stream == "events.inventory" {
		group = "gateway"
	}
	_ = f.rdb.XGroupCreateMkStream(ctx, stream, group, "0").Err()
	if err := f.rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: values}).Err(); err != nil {
		f.t.Fatal(err)
	}
	res, err := f.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "c", Streams: []string{stream, ">"}, Count: 100}).Result()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, m := range res[0].Messages {
		if ack {
			f.rdb.XAck(ctx, stream, group, m.ID)
		}
	}
}

// notify writes the notification of event, sent, and its e-mail in Mailpit.
func (f *deliveryFixture) notify(event, kind, order, subject string) string {
	f.t.Helper()
	id := uuid.NewString()
	data, _ := json.Marshal(map[string]any{"order_id": order})
	if order == "" {
		data = []byte(`{}`)
	}
	f.exec(f.notes, `INSERT INTO notifications (id, event_id, kind, user_id, recipient, subject, data, status, created_at, sent_at)
		VALUES ($1, $2, $3, $4, 'ada@example.com', $5, $6, 'sent', now(), now())`, id, event, kind, uuid.New(), subject, data)
	f.mail.add(id, subject)
	return id
}

func orderSubject(order, outcome string) string {
	return "Your order " + strings.ToUpper(order[len(order)-8:]) + " " + outcome
}

// fakeMailpit answers GET /api/v1/messages as Mailpit does, from a list.
type fakeMailpit struct {
	url  string
	mu   sync.Mutex
	msgs []map[string]any
}

func (m *fakeMailpit) add(notification, subject string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs = append(m.msgs, map[string]any{
		"ID": uuid.NewString(), "MessageID": notification + "@bazaar.local", "Subject": subject,
		"To": []map[string]string{{"Address": "ada@example.com"}},
	})
}

func (m *fakeMailpit) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.URL.Path != "/api/v1/messages" {
		http.NotFound(w, r)
		return
	}
	start := 0
	_ = json.Unmarshal([]byte(r.URL.Query().Get("start")), &start)
	page := m.msgs[min(start, len(m.msgs)):]
	page = page[:min(len(page), 1000)]
	_ = json.NewEncoder(w).Encode(map[string]any{"total": len(m.msgs), "messages": page})
}

// deliveredWorld is goodWorld with every event a stack would have published, handled
// and mailed for it, and one poison entry on events.orders in the DLQ.
func deliveredWorld(f *deliveryFixture) (world, string) {
	f.reset()
	f.exec(f.users, `TRUNCATE outbox`)
	f.exec(f.notes, `TRUNCATE inbox, notifications`)
	f.mail.msgs = nil
	if err := f.rdb.FlushDB(context.Background()).Err(); err != nil {
		f.t.Fatal(err)
	}
	w := goodWorld(f.fixture)
	f.exec(f.inv, `UPDATE outbox SET published_at = now()`)
	for _, p := range []string{w.a, w.b} {
		f.deliver("events.inventory", map[string]any{"id": uuid.NewString(), "subject": p}, true)
	}
	reg := f.publish(f.users, "events.users", "user.registered", uuid.NewString(), nil)
	f.notify(reg, "welcome", "", "Welcome to Bazaar, Ada")
	for _, o := range []string{w.confirmed, w.customer} {
		e := f.publish(f.ord, "events.orders", "order.confirmed", o, nil)
		f.notify(e, "order_confirmed", o, orderSubject(o, "is confirmed"))
	}
	for _, o := range []string{w.declined, w.outOfStock, w.customer} {
		e := f.publish(f.ord, "events.orders", "order.cancelled", o, nil)
		f.notify(e, "order_cancelled", o, orderSubject(o, "was cancelled"))
	}
	e := f.publish(f.pay, "events.payments", "payment.refunded", uuid.NewString(), map[string]any{"order_id": w.customer})
	f.notify(e, "payment_refunded", w.customer, "Your refund of $7.50 is on its way")

	poison := uuid.NewString()
	f.deliver("events.orders", map[string]any{"id": poison, "data": "{"}, true)
	f.rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: "events.dlq", Values: map[string]any{
		"id": poison, "data": "{", "dlq_stream": "events.orders", "dlq_group": "notifications", "dlq_error": "malformed event: data is not JSON",
	}})
	return w, poison
}

func TestEventAndMailRules(t *testing.T) {
	t.Parallel()
	f := newDeliveryFixture(t)
	for _, c := range []struct {
		name    string
		breakIt func(f *deliveryFixture, w world, poison string)
		want    []string
		inHand  bool // the backlog is not zero
	}{
		{"everything delivered", func(*deliveryFixture, world, string) {}, nil, false},
		{"an outbox row not published", func(f *deliveryFixture, w world, _ string) {
			f.exec(f.pay, `UPDATE outbox SET published_at = NULL`)
		}, []string{invariants.RuleUnpublished}, true},
		{"an event notifications never handled", func(f *deliveryFixture, w world, _ string) {
			f.exec(f.notes, `DELETE FROM inbox WHERE type = 'user.registered'`)
		}, []string{invariants.RuleUnconsumed}, false},
		{"an entry delivered and not acknowledged", func(f *deliveryFixture, w world, _ string) {
			f.deliver("events.inventory", map[string]any{"id": uuid.NewString()}, false)
		}, []string{invariants.RuleUnconsumed}, true},
		{"an entry not yet delivered", func(f *deliveryFixture, w world, _ string) {
			f.rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: "events.users", Values: map[string]any{"id": uuid.NewString()}})
		}, []string{invariants.RuleUnconsumed}, true},
		{"a group lost", func(f *deliveryFixture, w world, _ string) {
			f.rdb.XGroupDestroy(context.Background(), "events.inventory", "gateway")
		}, []string{invariants.RuleUnconsumed}, true},
		{"a dead letter that is not the poison", func(f *deliveryFixture, w world, _ string) {
			f.rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: "events.dlq", Values: map[string]any{
				"id": uuid.NewString(), "type": "order.confirmed", "subject": w.confirmed, "dlq_stream": "events.orders", "dlq_group": "notifications",
			}})
		}, []string{invariants.RuleDeadLetter}, false},
		{"the poison not dead-lettered", func(f *deliveryFixture, w world, _ string) {
			f.rdb.Del(context.Background(), "events.dlq")
		}, []string{invariants.RuleDeadLetter}, false},
		{"a notification not sent", func(f *deliveryFixture, w world, _ string) {
			f.exec(f.notes, `UPDATE notifications SET status = 'failed', sent_at = NULL, error = '550 no such user' WHERE kind = 'welcome'`)
		}, []string{invariants.RuleEmailUnsent}, false},
		{"an e-mail lost", func(f *deliveryFixture, w world, _ string) {
			f.mail.msgs = f.mail.msgs[1:]
		}, []string{invariants.RuleEmailOnce}, false},
		{"an event with no notification", func(f *deliveryFixture, w world, _ string) {
			f.exec(f.notes, `DELETE FROM notifications WHERE kind = 'payment_refunded'`)
			f.mail.msgs = slices.DeleteFunc(f.mail.msgs, func(m map[string]any) bool { return strings.HasPrefix(m["Subject"].(string), "Your refund") })
		}, []string{invariants.RuleEmailOnce}, false},
		{"two e-mails for one outcome", func(f *deliveryFixture, w world, _ string) {
			e := f.publish(f.ord, "events.orders", "order.confirmed", w.confirmed, nil)
			f.notify(e, "order_confirmed", w.confirmed, orderSubject(w.confirmed, "is confirmed"))
		}, []string{invariants.RuleEmailOnce}, false},
		{"a copy of one e-mail is no violation", func(f *deliveryFixture, w world, _ string) {
			f.mail.msgs = append(f.mail.msgs, f.mail.msgs[0])
		}, nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.t = t
			w, poison := deliveredWorld(f)
			c.breakIt(f, w, poison)
			vs, rep, err := invariants.Violations(t.Context(), f.dbs, invariants.CheckEvents(f.redisURL),
				invariants.ExpectDeadLetter("events.orders", poison), invariants.CheckMail(f.mail.url))
			if err != nil {
				t.Fatal(err)
			}
			if got := rules(vs); !slices.Equal(got, c.want) {
				t.Errorf("violations %v; want rules %v", vs, c.want)
			}
			if rep.Delivery.Notifications == 0 || rep.Delivery.Emails == 0 || rep.Delivery.OutboxRows == 0 {
				t.Errorf("delivery report %+v; want what was read counted", rep.Delivery)
			}
			b, err := invariants.ReadBacklog(t.Context(), f.dbs, f.redisURL)
			if err != nil {
				t.Fatal(err)
			}
			if b.Zero() == c.inHand {
				t.Errorf("backlog %s; want it zero: %v", b, !c.inHand)
			}
		})
	}
}
