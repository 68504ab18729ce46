package notification

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Email is one message for the Mailer to send.
type Email struct {
	// ID is the notification's id; the Mailer derives the Message-ID from it, so that
	// a second copy sent after a crash carries the same Message-ID and can be told for
	// what it is.
	ID      uuid.UUID
	To      string // a bare address
	ToName  string // may be empty
	Subject string
	Date    time.Time
	Content
}

// Mailer sends e-mail. Send fails with an error wrapping ErrUndeliverable when the
// server refused the message for good, and with any other error when a later try may
// succeed (the server is down, said "try again later", or ctx ended).
type Mailer interface {
	Send(ctx context.Context, e Email) error
}

// SendStore is the storage the Sender needs. Every method fails with an error when the
// database cannot be reached.
type SendStore interface {
	// Notification is the notification with id, or ErrNotFound.
	Notification(ctx context.Context, id uuid.UUID) (Notification, error)
	// MarkSent records a successful attempt at at: queued becomes sent. It does
	// nothing for a notification that is no longer queued.
	MarkSent(ctx context.Context, id uuid.UUID, at time.Time) error
	// RecordFailure counts a failed attempt and keeps its reason; the notification
	// stays queued.
	RecordFailure(ctx context.Context, id uuid.UUID, reason string) error
	// MarkFailed gives up: queued becomes failed with reason. It does nothing for a
	// notification that is no longer queued.
	MarkFailed(ctx context.Context, id uuid.UUID, reason string) error
}

// GiveUp says when the Sender stops trying to deliver a notification whose attempts
// fail for a reason that may pass (the mail server is down, unreachable, or answers
// "try again later"): only once the notification has had at least Retries retries
// and is at least After old. The age is what protects e-mail from an outage: an
// outage shorter than After delays mail and loses none, however many attempts fail
// meanwhile; the count keeps a young notification from being given up on a single
// unlucky try when After is set short. A permanent refusal (ErrUndeliverable) is
// final at once, whatever this says.
type GiveUp struct {
	Retries int           // EMAIL_MAX_RETRY
	After   time.Duration // EMAIL_GIVE_UP_AFTER, from the notification's creation
}

// DefaultGiveUp waits out a mail server outage of up to three days.
var DefaultGiveUp = GiveUp{Retries: 5, After: 72 * time.Hour}

// due reports whether a notification n whose latest attempt just failed at now has
// waited long enough to be given up. n.Attempts counts the attempts before this one,
// so it is the number of retries this attempt completes.
func (g GiveUp) due(n Notification, now time.Time) bool {
	return n.Attempts >= g.Retries && now.Sub(n.CreatedAt) >= g.After
}

// Sender delivers notifications: the work of one email:send task.
type Sender struct {
	store  SendStore
	mailer Mailer
	now    func() time.Time
	giveUp GiveUp
}

// NewSender sends through mailer, keeping the outcome in store; now tells the time
// (nil is time.Now; tests pass their own), giveUp when transient failures end in
// failed.
func NewSender(store SendStore, mailer Mailer, now func() time.Time, giveUp GiveUp) *Sender {
	if now == nil {
		now = time.Now
	}
	return &Sender{store: store, mailer: mailer, now: now, giveUp: giveUp}
}

// recordTimeout bounds the write that records an attempt's outcome.
const recordTimeout = 5 * time.Second

// maxReason bounds a failure reason kept on a notification.
const maxReason = 1000

// Send renders and sends notification id and marks it sent. It is idempotent: a
// notification that is not queued (sent, failed) is left alone and Send returns nil,
// so a task that runs twice sends once — unless the first run died in the window
// below.
//
// Delivery is at least once. Between the mail server's "250 accepted" and the commit
// that marks the row sent there is a window: if the process dies (or the database
// fails) there, the row is still queued, the task runs again and the recipient gets
// a second copy. The copy carries the same Message-ID, derived from the notification
// id, so mail clients and people can recognise it. Closing the window would need the
// mail server to take part in our transaction, which SMTP cannot.
//
// A failure that may pass (the server is down, or said "try again later") leaves the
// notification queued for the next try until the Sender's GiveUp says it has waited
// long enough; a permanent refusal (a 5xx reply) fails it at once.
//
// Send fails with an error wrapping ErrNotFound, ErrUndeliverable or ErrGaveUp when no
// retry can help (the notification is then already marked failed, where it exists),
// and with another error when a retry may; each failed attempt is recorded on the row.
func (s *Sender) Send(ctx context.Context, id uuid.UUID) error {
	n, err := s.store.Notification(ctx, id)
	if err != nil {
		return fmt.Errorf("load notification %s: %w", id, err)
	}
	if n.Status != StatusQueued {
		return nil
	}
	content, err := Render(n)
	if err != nil {
		// A template that cannot render this notification will not render it on the
		// next try either.
		err = fmt.Errorf("%w: %w", ErrUndeliverable, err)
		return errors.Join(err, s.store.MarkFailed(ctx, id, reason(err)))
	}
	sendErr := s.mailer.Send(ctx, Email{
		ID: n.ID, To: n.Recipient, ToName: n.Details.Name, Subject: n.Subject, Date: s.now(), Content: content,
	})
	// The outcome is recorded even when the attempt used up the task's time: a send
	// that succeeded at the deadline must still be marked, or it would be sent again.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if sendErr != nil {
		sendErr = fmt.Errorf("send notification %s: %w", id, sendErr)
		var recErr error
		switch now := s.now(); {
		case errors.Is(sendErr, ErrUndeliverable):
			recErr = s.store.MarkFailed(ctx, id, reason(sendErr))
		case s.giveUp.due(n, now):
			sendErr = fmt.Errorf("%w after %d attempts in %s: %w", ErrGaveUp, n.Attempts+1,
				now.Sub(n.CreatedAt).Round(time.Second), sendErr)
			// Counted, then given up: should the second write fail, the row is still
			// queued and the task's final-failure hook (or the dispatcher) marks it.
			recErr = s.store.RecordFailure(ctx, id, reason(sendErr))
			if recErr == nil {
				recErr = s.store.MarkFailed(ctx, id, reason(sendErr))
			}
		default:
			recErr = s.store.RecordFailure(ctx, id, reason(sendErr))
		}
		return errors.Join(sendErr, recErr)
	}
	if err := s.store.MarkSent(ctx, id, s.now()); err != nil {
		// The e-mail is out but not recorded: the retry will send it again (see above).
		return fmt.Errorf("mark notification %s sent: %w", id, err)
	}
	return nil
}

// Fail marks notification id failed with reason once its task has failed for good
// (a permanent refusal, giving up, or the task's own retries running out, which the
// task is declared never to reach before GiveUp does). A notification no longer
// queued is left alone.
func (s *Sender) Fail(ctx context.Context, id uuid.UUID, why error) error {
	return s.store.MarkFailed(ctx, id, reason(why))
}

func reason(err error) string {
	msg := err.Error()
	if r := []rune(msg); len(r) > maxReason {
		msg = string(r[:maxReason])
	}
	return msg
}
