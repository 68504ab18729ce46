package notification_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/page"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
)

// readStore answers the Service's reads from fixed lists and records what it was
// asked; the SQL store has its own tests.
type readStore struct {
	listed    []notification.Notification
	made      []notification.Notification
	handled   []notification.Handled
	byEvents  error // when set, ByEvents fails with it
	inbox     error // when set, Handled fails with it
	listUser  uuid.UUID
	listPage  page.Request
	asked     [][]uuid.UUID // the ids of each ByEvents and Handled call, in order
	askedKind []string
}

var _ notification.Store = (*readStore)(nil)

func (s *readStore) List(_ context.Context, user uuid.UUID, pr page.Request) ([]notification.Notification, error) {
	s.listUser, s.listPage = user, pr
	return s.listed, nil
}

func (s *readStore) ByEvents(_ context.Context, ids []uuid.UUID) ([]notification.Notification, error) {
	s.asked, s.askedKind = append(s.asked, ids), append(s.askedKind, "ByEvents")
	return s.made, s.byEvents
}

func (s *readStore) Handled(_ context.Context, ids []uuid.UUID) ([]notification.Handled, error) {
	s.asked, s.askedKind = append(s.asked, ids), append(s.askedKind, "Handled")
	return s.handled, s.inbox
}

func messageID(id uuid.UUID) string { return "<" + id.String() + "@test>" }

// The Service hands the store's page on whole, the extra item included: the HTTP
// layer cuts it and makes the cursor (page.Next).
func TestServiceListHandsOnTheStoresPage(t *testing.T) {
	t.Parallel()
	ann := uuid.New()
	after := page.Cursor{Time: at, ID: uuid.New()}
	store := &readStore{listed: []notification.Notification{queued(t), queued(t), queued(t)}}
	svc := notification.NewService(store, messageID)

	got, err := svc.List(t.Context(), ann, page.Request{Limit: 2, After: &after})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Errorf("listed %d, want the store's 3 (a page of 2 and the one that says another follows)", len(got))
	}
	if store.listUser != ann {
		t.Errorf("the store was asked for user %s, want %s", store.listUser, ann)
	}
	if store.listPage.Limit != 2 {
		t.Errorf("the store was asked for a limit of %d, want 2", store.listPage.Limit)
	}
	switch got := store.listPage.After; {
	case got == nil:
		t.Errorf("the store was asked for the first page, want the one after %v", after)
	case *got != after:
		t.Errorf("the store was asked for the page after %v, want after %v", *got, after)
	}
}

func TestServiceTrailHasTheEventsNotificationsAndInboxEntries(t *testing.T) {
	t.Parallel()
	made := queued(t)
	ignored := uuid.New() // an event the consumer handled without making a notification
	handled := []notification.Handled{
		{EventID: made.EventID, Stream: "events.users", Type: "user.registered", HandledAt: at},
		{EventID: ignored, Stream: "events.orders", Type: "order.created", HandledAt: at.Add(time.Second)},
	}
	store := &readStore{made: []notification.Notification{made}, handled: handled}
	svc := notification.NewService(store, messageID)
	ids := []uuid.UUID{made.EventID, ignored, uuid.New()}

	trail, err := svc.Trail(t.Context(), ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(trail.Notifications) != 1 {
		t.Fatalf("%d notifications, want the one made", len(trail.Notifications))
	}
	if trail.Notifications[0].ID != made.ID {
		t.Errorf("notification %s, want %s", trail.Notifications[0].ID, made.ID)
	}
	if !slices.Equal(trail.Handled, handled) {
		t.Errorf("inbox entries %+v, want %+v", trail.Handled, handled)
	}
	for i, asked := range store.asked {
		if !slices.Equal(asked, ids) {
			t.Errorf("%s was asked about %v, want %v", store.askedKind[i], asked, ids)
		}
	}
}

// A store failure is the answer, whichever read fails: half a trail would tell an
// operator that an event was never handled when it only could not be read.
func TestServiceTrailFailsWhenEitherReadFails(t *testing.T) {
	t.Parallel()
	down := apperr.E(apperr.Unavailable, "the notifications database is unavailable")

	store := &readStore{byEvents: down}
	if _, err := notification.NewService(store, messageID).Trail(t.Context(), []uuid.UUID{uuid.New()}); !errors.Is(err, down) {
		t.Errorf("Trail with ByEvents failing: %v, want %v", err, down)
	}
	if !slices.Equal(store.askedKind, []string{"ByEvents"}) {
		t.Errorf("the store was asked %v; want nothing after the failed ByEvents", store.askedKind)
	}

	store = &readStore{inbox: down}
	if _, err := notification.NewService(store, messageID).Trail(t.Context(), []uuid.UUID{uuid.New()}); !errors.Is(err, down) {
		t.Errorf("Trail with Handled failing: %v, want %v", err, down)
	}
}

func TestServiceMessageIDIsTheMailersOne(t *testing.T) {
	t.Parallel()
	id := uuid.New()
	if got, want := notification.NewService(&readStore{}, messageID).MessageID(id), messageID(id); got != want {
		t.Errorf("MessageID(%s) = %q, want %q", id, got, want)
	}
}
