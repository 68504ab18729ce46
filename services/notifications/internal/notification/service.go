package notification

import (
	"context"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/page"
)

// Store is the storage the Service needs. Every method fails with an
// apperr.Unavailable error when the database cannot be reached.
type Store interface {
	// List returns user's notifications newest first (created_at, then id), after
	// pr.After when set, up to pr.Limit+1 of them (one more than a page, so that
	// page.Next can tell whether another follows).
	List(ctx context.Context, user uuid.UUID, pr page.Request) ([]Notification, error)
	// ByEvents returns the notifications made from the events ids, oldest first.
	ByEvents(ctx context.Context, ids []uuid.UUID) ([]Notification, error)
	// Handled returns the inbox entries of those of the events ids the consumer
	// handled (within the inbox's retention).
	Handled(ctx context.Context, ids []uuid.UUID) ([]Handled, error)
}

// Service answers what is asked of the notifications over HTTP: a user's list, and
// what became of given events, for operators. Making notifications is the intake's
// work and sending them the Dispatcher's and the Sender's; this only reads.
type Service struct {
	store     Store
	messageID func(uuid.UUID) string
}

// NewService reads from store. messageID is the Message-ID that the e-mail of a
// notification carries (mail.Mailer.MessageID): operators look for it in mailboxes
// and mail server logs.
func NewService(store Store, messageID func(uuid.UUID) string) *Service {
	return &Service{store: store, messageID: messageID}
}

// List returns a page of user's notifications, newest first, with one more than
// pr.Limit when another page follows (for page.Next): the HTTP layer makes the cursor.
func (s *Service) List(ctx context.Context, user uuid.UUID, pr page.Request) ([]Notification, error) {
	return s.store.List(ctx, user, pr)
}

// Trail is what the service did with some events.
type Trail struct {
	// Notifications are those the events made, oldest first (at most one each).
	Notifications []Notification
	// Handled are the inbox entries of the events the consumer handled, whether or
	// not they made a notification: an event absent from both was never handled, or
	// so long ago that the inbox has forgotten it.
	Handled []Handled
}

// Trail returns what became of the events ids, whoever's they were.
func (s *Service) Trail(ctx context.Context, ids []uuid.UUID) (Trail, error) {
	made, err := s.store.ByEvents(ctx, ids)
	if err != nil {
		return Trail{}, err
	}
	handled, err := s.store.Handled(ctx, ids)
	if err != nil {
		return Trail{}, err
	}
	return Trail{Notifications: made, Handled: handled}, nil
}

// MessageID is the Message-ID of notification id's e-mail: the same on every copy
// sent, so that a resend after a crash is recognisable.
func (s *Service) MessageID(id uuid.UUID) string { return s.messageID(id) }
