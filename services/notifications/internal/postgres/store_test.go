package postgres_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/pkg/page"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/postgres"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/postgres/migrations"
)

var at = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

func newStore(t *testing.T) (*postgres.Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.New(t, migrations.FS)
	return postgres.NewStore(pool), pool
}

// inTx runs fn in a committed transaction, as the consumer does.
func inTx(t *testing.T, pool *pgxpool.Pool, s *postgres.Store, fn func(*postgres.TxStore) error) {
	t.Helper()
	err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error { return fn(s.InTx(tx)) })
	if err != nil {
		t.Fatal(err)
	}
}

func ann(t *testing.T) notification.Recipient {
	t.Helper()
	r, err := notification.NewRecipient(uuid.New(), "ann@example.com", "Ann")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func add(t *testing.T, pool *pgxpool.Pool, s *postgres.Store, n notification.Notification) {
	t.Helper()
	inTx(t, pool, s, func(tx *postgres.TxStore) error {
		created, err := tx.Add(context.Background(), n)
		if err == nil && !created {
			t.Errorf("Add(%s) did not create it", n.ID)
		}
		return err
	})
}

func TestAddAndReadBackEveryField(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	d := notification.Details{
		OrderID:   uuid.New(),
		PaymentID: uuid.New(),
		Total:     notification.Money{Cents: 2598, Currency: "USD"},
		Items:     []notification.Item{{ProductID: uuid.New(), Quantity: 2, UnitPrice: notification.Money{Cents: 1299, Currency: "USD"}}},
		Reason:    notification.ReasonOutOfStock,
		Refunded:  notification.Money{Cents: 100, Currency: "USD"},
	}
	n := notification.New(uuid.New(), notification.KindOrderConfirmed, ann(t), d, at)
	add(t, pool, s, n)
	got, err := s.Notification(ctx, n.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != n.ID || got.EventID != n.EventID || got.Kind != n.Kind || got.UserID != n.UserID ||
		got.Recipient != n.Recipient || got.Subject != n.Subject || got.Status != notification.StatusQueued ||
		got.Attempts != 0 || got.Error != "" || !got.CreatedAt.Equal(n.CreatedAt) || !got.SentAt.IsZero() {
		t.Errorf("read back %+v\nwant %+v", got, n)
	}
	gd := got.Details
	if gd.Name != "Ann" {
		t.Errorf("details name %q, want Ann", gd.Name)
	}
	if gd.OrderID != d.OrderID {
		t.Errorf("details order %s, want %s", gd.OrderID, d.OrderID)
	}
	if gd.PaymentID != d.PaymentID {
		t.Errorf("details payment %s, want %s", gd.PaymentID, d.PaymentID)
	}
	if gd.Total != d.Total {
		t.Errorf("details total %+v, want %+v", gd.Total, d.Total)
	}
	if gd.Reason != d.Reason {
		t.Errorf("details reason %q, want %q", gd.Reason, d.Reason)
	}
	if gd.Refunded != d.Refunded {
		t.Errorf("details refunded %+v, want %+v", gd.Refunded, d.Refunded)
	}
	if len(gd.Items) != 1 {
		t.Errorf("details items %+v, want one", gd.Items)
	} else if gd.Items[0] != d.Items[0] {
		t.Errorf("details item %+v, want %+v", gd.Items[0], d.Items[0])
	}

	if _, err := s.Notification(ctx, uuid.New()); !errors.Is(err, notification.ErrNotFound) {
		t.Errorf("unknown id: %v, want ErrNotFound", err)
	}
}

func TestAddIsOncePerEvent(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	r := ann(t)
	ev := uuid.New()
	add(t, pool, s, notification.New(ev, notification.KindWelcome, r, notification.Details{}, at))
	inTx(t, pool, s, func(tx *postgres.TxStore) error {
		created, err := tx.Add(context.Background(), notification.New(ev, notification.KindWelcome, r, notification.Details{}, at))
		if created {
			t.Error("a second notification for the same event was created")
		}
		return err
	})
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM notifications WHERE event_id = $1`, ev).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d rows for the event (%v), want 1", n, err)
	}
}

func TestRecipients(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	r := ann(t)
	inTx(t, pool, s, func(tx *postgres.TxStore) error {
		if _, err := tx.Recipient(ctx, r.UserID); !errors.Is(err, notification.ErrUnknownRecipient) {
			t.Errorf("unknown recipient: %v, want ErrUnknownRecipient", err)
		}
		return tx.SaveRecipient(ctx, r)
	})
	changed := r
	changed.Email, changed.Name = "ann@example.org", "Ann B."
	inTx(t, pool, s, func(tx *postgres.TxStore) error { return tx.SaveRecipient(ctx, changed) })
	inTx(t, pool, s, func(tx *postgres.TxStore) error {
		got, err := tx.Recipient(ctx, r.UserID)
		if err != nil || got != changed {
			t.Errorf("Recipient = %+v, %v; want %+v", got, err, changed)
		}
		return nil
	})
}

func TestRecipientByEmailIgnoresCase(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	admin, err := notification.NewRecipient(uuid.New(), "admin@bazaar.local", "Ada")
	if err != nil {
		t.Fatal(err)
	}
	inTx(t, pool, s, func(tx *postgres.TxStore) error {
		if _, err := tx.RecipientByEmail(ctx, "admin@bazaar.local"); !errors.Is(err, notification.ErrUnknownRecipient) {
			t.Errorf("before registration: %v, want ErrUnknownRecipient", err)
		}
		if err := tx.SaveRecipient(ctx, ann(t)); err != nil {
			return err
		}
		return tx.SaveRecipient(ctx, admin)
	})
	inTx(t, pool, s, func(tx *postgres.TxStore) error {
		for _, email := range []string{"admin@bazaar.local", "Admin@Bazaar.LOCAL"} {
			if got, err := tx.RecipientByEmail(ctx, email); err != nil || got != admin {
				t.Errorf("RecipientByEmail(%q) = %+v, %v; want %+v", email, got, err, admin)
			}
		}
		for _, email := range []string{"admin@bazaar.locall", "dmin@bazaar.local", "%@bazaar.local"} {
			if _, err := tx.RecipientByEmail(ctx, email); !errors.Is(err, notification.ErrUnknownRecipient) {
				t.Errorf("RecipientByEmail(%q) = %v, want ErrUnknownRecipient", email, err)
			}
		}
		return nil
	})
}

func TestDailySalesReportIsStoredWhole(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	day := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	report := &notification.SalesReport{
		Day: day, From: day, To: day.AddDate(0, 0, 1), Orders: 9, Confirmed: 6, Cancelled: 2,
		Revenue:     []notification.Money{{Cents: 1200, Currency: "EUR"}, {Cents: 123456, Currency: "USD"}},
		TopProducts: []notification.ProductSales{{ProductID: uuid.New(), Quantity: 12, Revenue: notification.Money{Cents: 15588, Currency: "USD"}}},
	}
	n := notification.New(uuid.New(), notification.KindDailySalesReport, ann(t), notification.Details{Sales: report}, at)
	add(t, pool, s, n)
	got, err := s.Notification(ctx, n.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != notification.KindDailySalesReport {
		t.Errorf("read back kind %q, want %q", got.Kind, notification.KindDailySalesReport)
	}
	if got.Subject != "Bazaar daily sales for 2026-11-25" {
		t.Errorf("read back subject %q, want %q", got.Subject, "Bazaar daily sales for 2026-11-25")
	}
	r := got.Details.Sales
	if r == nil || !r.Day.Equal(day) || !r.From.Equal(report.From) || !r.To.Equal(report.To) ||
		r.Orders != 9 || r.Confirmed != 6 || r.Cancelled != 2 ||
		len(r.Revenue) != 2 || r.Revenue[0] != report.Revenue[0] || r.Revenue[1] != report.Revenue[1] ||
		len(r.TopProducts) != 1 || r.TopProducts[0] != report.TopProducts[0] {
		t.Errorf("report read back %+v\nwant %+v", r, report)
	}
	// Other kinds carry no report.
	w := notification.New(uuid.New(), notification.KindWelcome, ann(t), notification.Details{}, at)
	add(t, pool, s, w)
	if got, err := s.Notification(ctx, w.ID); err != nil {
		t.Errorf("welcome read back: %v, want no error", err)
	} else if got.Details.Sales != nil {
		t.Errorf("welcome read back with a report %+v, want none", *got.Details.Sales)
	}
}

// The kinds are the domain's, and the table holds it to them.
func TestOnlyTheDomainsKindsAreStored(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	for _, k := range notification.Kinds {
		add(t, pool, s, notification.New(uuid.New(), k, ann(t), notification.Details{}, at))
	}
	err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		_, err := s.InTx(tx).Add(context.Background(), notification.New(uuid.New(), "birthday", ann(t), notification.Details{}, at))
		return err
	})
	if err == nil {
		t.Error("a notification of an unknown kind was stored")
	}
}

func TestStatusTransitions(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	r := ann(t)
	a := notification.New(uuid.New(), notification.KindWelcome, r, notification.Details{}, at)
	b := notification.New(uuid.New(), notification.KindWelcome, r, notification.Details{}, at)
	add(t, pool, s, a)
	add(t, pool, s, b)

	if err := s.RecordFailure(ctx, a.ID, "smtp: 451 later"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkSent(ctx, a.ID, at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// A late failure mark (a hook after the row was sent) changes nothing.
	if err := s.MarkFailed(ctx, a.ID, "too late"); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Notification(ctx, a.ID)
	if got.Status != notification.StatusSent {
		t.Errorf("after failure then send: status %q, want %q", got.Status, notification.StatusSent)
	}
	if got.Attempts != 2 {
		t.Errorf("after failure then send: attempts %d, want 2", got.Attempts)
	}
	if want := at.Add(time.Minute); !got.SentAt.Equal(want) {
		t.Errorf("after failure then send: sent at %v, want %v", got.SentAt, want)
	}
	if got.Error != "smtp: 451 later" {
		t.Errorf("after failure then send: error %q, want the first failure's %q", got.Error, "smtp: 451 later")
	}

	if err := s.MarkFailed(ctx, b.ID, "smtp: 451 still"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkSent(ctx, b.ID, at); err != nil { // a run racing the failure mark
		t.Fatal(err)
	}
	if err := s.RecordFailure(ctx, b.ID, "ignored"); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Notification(ctx, b.ID)
	if got.Status != notification.StatusFailed {
		t.Errorf("after failed: status %q, want %q", got.Status, notification.StatusFailed)
	}
	if got.Attempts != 0 {
		t.Errorf("after failed: attempts %d, want 0", got.Attempts)
	}
	if !got.SentAt.IsZero() {
		t.Errorf("after failed: sent at %v, want zero", got.SentAt)
	}
	if got.Error != "smtp: 451 still" {
		t.Errorf("after failed: error %q, want %q", got.Error, "smtp: 451 still")
	}
	if n, err := s.CountQueued(ctx); err != nil {
		t.Errorf("CountQueued: %v, want no error", err)
	} else if n != 0 {
		t.Errorf("CountQueued = %d, want 0", n)
	}
}

func TestDueAndMarkEnqueued(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	r := ann(t)
	older := notification.New(uuid.New(), notification.KindWelcome, r, notification.Details{}, at)
	newer := notification.New(uuid.New(), notification.KindWelcome, r, notification.Details{}, at.Add(time.Second))
	sent := notification.New(uuid.New(), notification.KindWelcome, r, notification.Details{}, at)
	for _, n := range []notification.Notification{newer, older, sent} {
		add(t, pool, s, n)
	}
	if err := s.MarkSent(ctx, sent.ID, at); err != nil {
		t.Fatal(err)
	}
	now := at.Add(time.Hour)
	due, err := s.Due(ctx, now.Add(-5*time.Minute), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 2 {
		t.Fatalf("Due = %+v; want 2, older then newer", due)
	}
	if want := (notification.Due{ID: older.ID}); due[0] != want {
		t.Fatalf("Due[0] = %+v; want the older, not stale, %+v", due[0], want)
	}
	if want := (notification.Due{ID: newer.ID}); due[1] != want {
		t.Fatalf("Due[1] = %+v; want the newer, not stale, %+v", due[1], want)
	}
	if due, _ := s.Due(ctx, now, 1); len(due) != 1 {
		t.Errorf("Due with limit 1 = %+v, want one", due)
	} else if due[0].ID != older.ID {
		t.Errorf("Due with limit 1 = %s, want the older %s", due[0].ID, older.ID)
	}

	if err := s.MarkEnqueued(ctx, []uuid.UUID{older.ID, newer.ID}, now); err != nil {
		t.Fatal(err)
	}
	if due, _ := s.Due(ctx, now.Add(-5*time.Minute), 10); len(due) != 0 {
		t.Errorf("just enqueued, yet due: %+v", due)
	}
	// Ten minutes on, both are still queued: stale.
	due, err = s.Due(ctx, now.Add(10*time.Minute).Add(-5*time.Minute), 10)
	if err != nil {
		t.Fatalf("stale Due: %v, want no error", err)
	}
	if len(due) != 2 {
		t.Errorf("stale Due = %+v, want 2", due)
	} else {
		for i, d := range due {
			if !d.Stale {
				t.Errorf("stale Due[%d] = %+v, want it stale", i, d)
			}
		}
	}
	if n, err := s.CountQueued(ctx); err != nil {
		t.Errorf("CountQueued: %v, want no error", err)
	} else if n != 2 {
		t.Errorf("CountQueued = %d, want 2", n)
	}
}

func TestListIsPerUserNewestFirstByPage(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	r, other := ann(t), ann(t)
	var want []uuid.UUID // newest first
	for i := range 5 {
		// Two share a timestamp: the id breaks the tie, and no page loses either.
		created := at.Add(time.Duration(i/2*2) * time.Second)
		n := notification.New(uuid.New(), notification.KindWelcome, r, notification.Details{}, created)
		add(t, pool, s, n)
		want = append(want, n.ID)
	}
	add(t, pool, s, notification.New(uuid.New(), notification.KindWelcome, other, notification.Details{}, at.Add(time.Hour)))

	var got []uuid.UUID
	pr := page.Request{Limit: 2}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		found, err := s.List(ctx, r.UserID, pr)
		if err != nil {
			t.Fatal(err)
		}
		items, next := page.Next(found, pr.Limit, func(n notification.Notification) page.Cursor {
			return page.Cursor{Time: n.CreatedAt, ID: n.ID}
		})
		for _, n := range items {
			if n.UserID != r.UserID {
				t.Fatalf("another user's notification listed: %+v", n)
			}
			got = append(got, n.ID)
		}
		if next == nil {
			break
		}
		c, err := page.Decode(*next)
		if err != nil {
			t.Fatal(err)
		}
		pr.After = &c
	}
	if len(got) != 5 {
		t.Fatalf("listed %d, want 5", len(got))
	}
	seen := map[uuid.UUID]bool{}
	var prev notification.Notification
	for i, id := range got {
		if seen[id] {
			t.Errorf("%s listed twice", id)
		}
		seen[id] = true
		n, _ := s.Notification(ctx, id)
		if i > 0 && (n.CreatedAt.After(prev.CreatedAt) || (n.CreatedAt.Equal(prev.CreatedAt) && n.ID.String() > prev.ID.String())) {
			t.Errorf("not newest first at %d: %v after %v", i, n.CreatedAt, prev.CreatedAt)
		}
		prev = n
	}
	for _, id := range want {
		if !seen[id] {
			t.Errorf("%s never listed", id)
		}
	}
}

func TestListenerWakesAfterACommittedNotification(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	l := postgres.NewListener(pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	// Run wakes once when it starts listening, for anything announced before.
	select {
	case <-l.C():
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up when listening started")
	}
	add(t, pool, s, notification.New(uuid.New(), notification.KindWelcome, ann(t), notification.Details{}, at))
	select {
	case <-l.C():
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up after a committed notification")
	}
}
