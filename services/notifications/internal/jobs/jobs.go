// Package jobs is the notifications service's background work: the email:send task,
// its declaration (EmailTask), its payload, the EmailEnqueuer the dispatcher puts it on
// the queue with, and its worker handler (RegisterEmail), which hands the work to
// notification.Sender. It is the only part of the service that knows the task queue
// (pkg/tasks, asynq).
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/bazaar-shop/bazaar/pkg/tasks"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
)

// EmailType is email:send's type name.
const EmailType = "email:send"

// DefaultEmailRetryCap is the longest wait between two tries of an e-mail: through a
// long outage of the mail server each waiting e-mail knocks about every 8 to 15
// minutes, instead of hammering it, and goes out within a quarter of an hour of its
// return.
const DefaultEmailRetryCap = 15 * time.Minute

// EmailTask declares email:send for a Sender that gives up as giveUp says, retrying
// with backoff capped at retryCap: on the critical queue, 30 s per attempt, and kept
// for a day once completed so that its id — the notification id — goes on refusing a
// second enqueue of the same notification.
//
// The Sender, not asynq's retry count, decides when to give up, since it must wait out
// an outage of giveUp.After however many tries fail meanwhile. So the task's retry
// budget is set beyond anything the Sender can use: giveUp.Retries, plus the retries
// that can fit in giveUp.After (each waits at least half of retryCap, and at least a
// second, once the backoff has grown to the cap), plus 64 for that growth. asynq
// archiving the task for lack of retries would mark the notification failed early.
func EmailTask(giveUp notification.GiveUp, retryCap time.Duration) tasks.Task {
	if retryCap <= 0 {
		retryCap = DefaultEmailRetryCap
	}
	perRetry := max(retryCap/2, time.Second)
	return tasks.Task{
		Type:      EmailType,
		Queue:     tasks.QueueCritical,
		MaxRetry:  max(giveUp.Retries, 0) + int(giveUp.After/perRetry) + 64,
		Timeout:   30 * time.Second,
		Retention: 24 * time.Hour,
		RetryCap:  retryCap,
	}
}

// EmailPayload is email:send's payload: only the id; the row holds the rest, so that
// what is sent is what the row says when the task runs.
type EmailPayload struct {
	NotificationID uuid.UUID `json:"notification_id"`
}

// EmailTaskID is the asynq task id of notification id's email:send: the notification id
// itself.
func EmailTaskID(id uuid.UUID) string { return id.String() }

// EmailEnqueuer implements notification.Enqueuer on a task client: it enqueues
// email:send.
type EmailEnqueuer struct {
	task      tasks.Task
	client    *tasks.Client
	inspector *tasks.Inspector
}

var _ notification.Enqueuer = (*EmailEnqueuer)(nil)

// NewEmailEnqueuer enqueues task (EmailTask(...)) with client and reads task states
// with inspector.
func NewEmailEnqueuer(task tasks.Task, client *tasks.Client, inspector *tasks.Inspector) *EmailEnqueuer {
	return &EmailEnqueuer{task: task, client: client, inspector: inspector}
}

// Enqueue implements notification.Enqueuer.
func (e *EmailEnqueuer) Enqueue(ctx context.Context, id uuid.UUID) error {
	_, err := e.client.Enqueue(ctx, e.task, EmailPayload{NotificationID: id}, asynq.TaskID(EmailTaskID(id)))
	if errors.Is(err, tasks.ErrTaskExists) {
		return fmt.Errorf("%w: %w", notification.ErrAlreadyEnqueued, err)
	}
	return err
}

// FailedTask implements notification.Enqueuer.
func (e *EmailEnqueuer) FailedTask(ctx context.Context, id uuid.UUID) (string, bool, error) {
	info, err := e.inspector.Get(ctx, EmailTaskID(id))
	if errors.Is(err, tasks.ErrTaskNotFound) {
		return "", false, nil // gone since the enqueue was refused: the next pass enqueues it
	}
	if err != nil {
		return "", false, err
	}
	if info.State != tasks.StateFailed {
		return "", false, nil
	}
	return info.Error, true, nil
}

// RegisterEmail makes w run email:send (declared as task) with sender: a failure is
// retried with backoff unless retrying is over (notification.ErrNotFound,
// ErrUndeliverable, ErrGaveUp), and once the task fails for good the notification is
// marked failed (the Sender has mostly done so already). If the process dies between the last
// failure and that mark, the dispatcher's stale sweep finds the row still queued with
// its task failed, and marks it.
func RegisterEmail(w *tasks.Worker, task tasks.Task, sender *notification.Sender, log *slog.Logger) {
	w.Handle(task, tasks.JSON(func(ctx context.Context, p EmailPayload) error {
		err := sender.Send(ctx, p.NotificationID)
		if errors.Is(err, notification.ErrNotFound) || errors.Is(err, notification.ErrUndeliverable) ||
			errors.Is(err, notification.ErrGaveUp) {
			return tasks.SkipRetry(err)
		}
		return err
	}), tasks.OnFinalFailure(func(ctx context.Context, payload []byte, err error) {
		var p EmailPayload
		if jerr := json.Unmarshal(payload, &p); jerr != nil {
			return // the payload never decoded; there is no row to mark
		}
		if ferr := sender.Fail(ctx, p.NotificationID, err); ferr != nil {
			log.ErrorContext(ctx, "could not mark a notification failed; the dispatcher's sweep will",
				"notification_id", p.NotificationID, "err", ferr)
		}
	}))
}
