package notification_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
)

// fakeStore keeps notifications in memory with the SendStore and DispatchStore rules.
type fakeStore struct {
	mu       sync.Mutex
	rows     map[uuid.UUID]*fakeRow
	failNext error // returned by the next write
}

type fakeRow struct {
	n          notification.Notification
	enqueuedAt time.Time
}

var (
	_ notification.SendStore     = (*fakeStore)(nil)
	_ notification.DispatchStore = (*fakeStore)(nil)
)

func newFakeStore(ns ...notification.Notification) *fakeStore {
	s := &fakeStore{rows: map[uuid.UUID]*fakeRow{}}
	for _, n := range ns {
		s.rows[n.ID] = &fakeRow{n: n}
	}
	return s
}

func (s *fakeStore) get(id uuid.UUID) notification.Notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rows[id].n
}

func (s *fakeStore) write() error {
	err := s.failNext
	s.failNext = nil
	return err
}

func (s *fakeStore) Notification(_ context.Context, id uuid.UUID) (notification.Notification, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rows[id]
	if !ok {
		return notification.Notification{}, notification.ErrNotFound
	}
	return r.n, nil
}

func (s *fakeStore) update(id uuid.UUID, fn func(*notification.Notification)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.write(); err != nil {
		return err
	}
	if r, ok := s.rows[id]; ok && r.n.Status == notification.StatusQueued {
		fn(&r.n)
	}
	return nil
}

func (s *fakeStore) MarkSent(_ context.Context, id uuid.UUID, at time.Time) error {
	return s.update(id, func(n *notification.Notification) {
		n.Status, n.SentAt = notification.StatusSent, at
		n.Attempts++
	})
}

func (s *fakeStore) RecordFailure(_ context.Context, id uuid.UUID, reason string) error {
	return s.update(id, func(n *notification.Notification) {
		n.Attempts++
		n.Error = reason
	})
}

func (s *fakeStore) MarkFailed(_ context.Context, id uuid.UUID, reason string) error {
	return s.update(id, func(n *notification.Notification) { n.Status, n.Error = notification.StatusFailed, reason })
}

func (s *fakeStore) Due(_ context.Context, staleBefore time.Time, limit int) ([]notification.Due, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []notification.Due
	for _, r := range s.rows {
		if r.n.Status == notification.StatusQueued && (r.enqueuedAt.IsZero() || r.enqueuedAt.Before(staleBefore)) && len(out) < limit {
			out = append(out, notification.Due{ID: r.n.ID, Stale: !r.enqueuedAt.IsZero()})
		}
	}
	return out, nil
}

func (s *fakeStore) MarkEnqueued(_ context.Context, ids []uuid.UUID, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.write(); err != nil {
		return err
	}
	for _, id := range ids {
		s.rows[id].enqueuedAt = at
	}
	return nil
}

// fakeMailer records what it was asked to send, failing with err while it is set.
type fakeMailer struct {
	mu   sync.Mutex
	sent []notification.Email
	err  error
}

var _ notification.Mailer = (*fakeMailer)(nil)

func (m *fakeMailer) Send(_ context.Context, e notification.Email) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	m.sent = append(m.sent, e)
	return nil
}

func clock() time.Time { return at }

func queued(t *testing.T) notification.Notification {
	t.Helper()
	return notification.New(uuid.New(), notification.KindWelcome, recipient(t, "Ann"), notification.Details{}, at)
}

func TestSendSendsOnceAndMarksSent(t *testing.T) {
	t.Parallel()
	n := queued(t)
	store, mailer := newFakeStore(n), &fakeMailer{}
	s := notification.NewSender(store, mailer, clock, notification.DefaultGiveUp)
	if err := s.Send(t.Context(), n.ID); err != nil {
		t.Fatal(err)
	}
	// The task runs again (a retry after a lost acknowledgement): nothing more is sent.
	if err := s.Send(t.Context(), n.ID); err != nil {
		t.Fatal(err)
	}
	if len(mailer.sent) != 1 {
		t.Fatalf("sent %d e-mails, want 1", len(mailer.sent))
	}
	e := mailer.sent[0]
	if e.ID != n.ID {
		t.Errorf("e-mail id %s, want the notification's %s", e.ID, n.ID)
	}
	if e.To != "ann@example.com" {
		t.Errorf("e-mail to %q, want ann@example.com", e.To)
	}
	if e.ToName != "Ann" {
		t.Errorf("e-mail to name %q, want Ann", e.ToName)
	}
	if e.Subject != "Welcome to Bazaar, Ann" {
		t.Errorf("e-mail subject %q, want %q", e.Subject, "Welcome to Bazaar, Ann")
	}
	if !e.Date.Equal(at) {
		t.Errorf("e-mail date %v, want %v", e.Date, at)
	}
	if !strings.Contains(e.Text, "Hello Ann") {
		t.Errorf("e-mail text lacks Hello Ann:\n%s", e.Text)
	}
	if !strings.Contains(e.HTML, "Hello Ann") {
		t.Errorf("e-mail HTML lacks Hello Ann:\n%s", e.HTML)
	}
	got := store.get(n.ID)
	if got.Status != notification.StatusSent {
		t.Errorf("row after send: status %q, want %q", got.Status, notification.StatusSent)
	}
	if !got.SentAt.Equal(at) {
		t.Errorf("row after send: sent at %v, want %v", got.SentAt, at)
	}
	if got.Attempts != 1 {
		t.Errorf("row after send: attempts %d, want 1", got.Attempts)
	}
}

func TestSendFailureIsRecordedAndRetryable(t *testing.T) {
	t.Parallel()
	n := queued(t)
	store, mailer := newFakeStore(n), &fakeMailer{err: errors.New("smtp: 451 try again later")}
	s := notification.NewSender(store, mailer, clock, notification.DefaultGiveUp)
	for range 2 {
		err := s.Send(t.Context(), n.ID)
		if err == nil || errors.Is(err, notification.ErrUndeliverable) {
			t.Fatalf("Send = %v, want a retryable error", err)
		}
		if !strings.Contains(err.Error(), "451") {
			t.Fatalf("Send = %v, want the SMTP error, 451", err)
		}
	}
	got := store.get(n.ID)
	if got.Status != notification.StatusQueued {
		t.Errorf("row after two failures: status %q, want %q", got.Status, notification.StatusQueued)
	}
	if got.Attempts != 2 {
		t.Errorf("row after two failures: attempts %d, want 2", got.Attempts)
	}
	if !strings.Contains(got.Error, "451") {
		t.Errorf("row after two failures: error %q, want the SMTP error, 451", got.Error)
	}

	// The last retry failed too: the task's final-failure hook gives up.
	if err := s.Fail(t.Context(), n.ID, errors.New("smtp: 451 try again later")); err != nil {
		t.Fatal(err)
	}
	got = store.get(n.ID)
	if got.Status != notification.StatusFailed {
		t.Errorf("row after Fail: status %q, want %q", got.Status, notification.StatusFailed)
	}
	if !strings.Contains(got.Error, "451") {
		t.Errorf("row after Fail: error %q, want the SMTP error, 451", got.Error)
	}
	// A failed notification is not sent by a late run.
	mailer.err = nil
	if err := s.Send(t.Context(), n.ID); err != nil {
		t.Errorf("Send of a failed notification: %v, want no error", err)
	}
	if len(mailer.sent) != 0 {
		t.Errorf("Send of a failed notification sent %d e-mails, want 0", len(mailer.sent))
	}
}

// Failures that may pass (the server down, "try again later") keep a notification
// queued however many there are, until it is both retried GiveUp.Retries times and
// GiveUp.After old; then it is failed, with the attempts counted and the last error.
func TestSendGivesUpOnlyWhenOldAndRetriedEnough(t *testing.T) {
	t.Parallel()
	n, late, young := queued(t), queued(t), queued(t)
	store, mailer := newFakeStore(n, late, young), &fakeMailer{err: errors.New("smtp greeting: 421 service not available")}
	now := at
	s := notification.NewSender(store, mailer, func() time.Time { return now }, notification.GiveUp{Retries: 3, After: 24 * time.Hour})
	send := func(id uuid.UUID) error {
		t.Helper()
		err := s.Send(t.Context(), id)
		if err == nil || errors.Is(err, notification.ErrUndeliverable) {
			t.Fatalf("Send = %v, want a retryable error", err)
		}
		if !strings.Contains(err.Error(), "421") {
			t.Fatalf("Send = %v, want the SMTP error, 421", err)
		}
		return err
	}
	// An outage just short of a day: tries every 15 minutes all fail, and it waits.
	for now.Sub(at) < 24*time.Hour-15*time.Minute {
		if err := send(n.ID); errors.Is(err, notification.ErrGaveUp) {
			t.Fatalf("gave up %s after creation: %v", now.Sub(at), err)
		}
		now = now.Add(15 * time.Minute)
	}
	if got := store.get(n.ID); got.Status != notification.StatusQueued || got.Attempts != 95 {
		t.Fatalf("after a 23h45m outage: %+v; want queued with 95 attempts", got)
	}
	// A day old and retried enough: the next failure is the last.
	now = at.Add(24 * time.Hour)
	err := send(n.ID)
	if !errors.Is(err, notification.ErrGaveUp) || !strings.Contains(err.Error(), "96 attempts in 24h0m0s") {
		t.Fatalf("Send a day on = %v, want ErrGaveUp after 96 attempts in 24h", err)
	}
	got := store.get(n.ID)
	if got.Status != notification.StatusFailed {
		t.Errorf("given-up row: status %q, want %q", got.Status, notification.StatusFailed)
	}
	if got.Attempts != 96 {
		t.Errorf("given-up row: attempts %d, want 96", got.Attempts)
	}
	if !strings.Contains(got.Error, "gave up") {
		t.Errorf("given-up row: error %q, want it to say gave up", got.Error)
	}
	if !strings.Contains(got.Error, "421") {
		t.Errorf("given-up row: error %q, want the last SMTP error, 421", got.Error)
	}

	// Old, but not yet retried GiveUp.Retries times (its task was lost and only now
	// re-enqueued, say): it is tried that often first.
	now = at.Add(72 * time.Hour)
	for i := range 4 {
		if gaveUp := errors.Is(send(late.ID), notification.ErrGaveUp); gaveUp != (i == 3) {
			t.Fatalf("attempt %d of an old notification: gave up %v", i+1, gaveUp)
		}
	}

	// Once the server is back, a notification still queued goes out, however old.
	mailer.err = nil
	if err := s.Send(t.Context(), young.ID); err != nil {
		t.Errorf("Send after the outage: %v, want no error", err)
	}
	if len(mailer.sent) != 1 {
		t.Errorf("Send after the outage sent %d e-mails, want 1", len(mailer.sent))
	}
}

func TestSendUndeliverableFailsAtOnce(t *testing.T) {
	t.Parallel()
	n := queued(t)
	store := newFakeStore(n)
	mailer := &fakeMailer{err: errors.Join(notification.ErrUndeliverable, errors.New("550 no such user"))}
	err := notification.NewSender(store, mailer, clock, notification.DefaultGiveUp).Send(t.Context(), n.ID)
	if !errors.Is(err, notification.ErrUndeliverable) {
		t.Fatalf("Send = %v, want ErrUndeliverable", err)
	}
	got := store.get(n.ID)
	if got.Status != notification.StatusFailed {
		t.Errorf("row: status %q, want %q", got.Status, notification.StatusFailed)
	}
	if !strings.Contains(got.Error, "550") {
		t.Errorf("row: error %q, want the SMTP error, 550", got.Error)
	}
}

func TestSendUnknownNotification(t *testing.T) {
	t.Parallel()
	err := notification.NewSender(newFakeStore(), &fakeMailer{}, clock, notification.DefaultGiveUp).Send(t.Context(), uuid.New())
	if !errors.Is(err, notification.ErrNotFound) {
		t.Errorf("Send = %v, want ErrNotFound", err)
	}
}

func TestSendWhenMarkingFailsReturnsAnError(t *testing.T) {
	t.Parallel()
	n := queued(t)
	store, mailer := newFakeStore(n), &fakeMailer{}
	store.failNext = errors.New("connection reset")
	s := notification.NewSender(store, mailer, clock, notification.DefaultGiveUp)
	// Sent but not recorded: the error makes the task run again, which sends a
	// second copy (the documented at-least-once window) and records it.
	if err := s.Send(t.Context(), n.ID); err == nil {
		t.Fatal("Send hid a failed MarkSent")
	}
	if err := s.Send(t.Context(), n.ID); err != nil {
		t.Fatal(err)
	}
	if len(mailer.sent) != 2 {
		t.Errorf("sent %d copies; want 2", len(mailer.sent))
	} else if mailer.sent[0].ID != mailer.sent[1].ID {
		t.Errorf("sent copies with the ids %s and %s; want the same id", mailer.sent[0].ID, mailer.sent[1].ID)
	}
	if got := store.get(n.ID); got.Status != notification.StatusSent {
		t.Errorf("row: %+v", got)
	}
}
