// Package tasks is Bazaar's small layer over hibiken/asynq, the background task queue
// (Celery's role) and its periodic scheduler (Celery Beat's role).
//
// A service declares each kind of task once, as a Task value naming its type, queue,
// retry budget and time limit, and uses that value on both sides:
//
//	var SendEmail = tasks.Task{Type: "email:send", Queue: tasks.QueueCritical, MaxRetry: 5, Timeout: 30 * time.Second}
//
//	client.Enqueue(ctx, SendEmail, payload)            // producer
//	worker.Handle(SendEmail, tasks.JSON(send))         // consumer
//	scheduler.Every(RecoverSagas, 15*time.Second, nil) // periodic
//
// # Queues are per service
//
// Every service shares one Redis (and asynqmon watches that one), and asynq's keys take
// no namespace: a worker takes any task from the queues it serves, whatever its type.
// So the three priority queues, critical, default and low (weights 6, 3, 1), are named
// per service: orders' "default" queue is the asynq queue "orders:default" (QueueName).
// A worker serves only its own service's queues, so the notifications worker never
// takes orders' saga:recover, and each service's outbox:cleanup runs against its own
// database.
//
// # Retries and time limits
//
// A failed run is retried after between half and all of 1s·2^n (capped at 5
// minutes, or at the Task's RetryCap), up to the Task's MaxRetry; then it is archived, asynq's "failed". A
// handler that knows a retry cannot help returns SkipRetry(err). Each run has the Task's Timeout twice over: as
// asynq's task timeout, set at enqueue, and as a context deadline the worker puts on
// the handler, so that a task enqueued with a longer timeout (or none) is still cut
// off. A final failure, whether an error, a panic or a time-out, can be acted on
// (OnFinalFailure, IsLastAttempt), e.g. to mark a notification row failed.
//
// # Periodic tasks never run twice
//
// asynq's Unique option is a lock released when the task finishes, so two schedulers
// whose ticks are a few milliseconds apart can still both enqueue a fast task. The
// Scheduler here does not rely on timing: time is cut into slots (every D aligned to
// the Unix epoch, or daily at a fixed UTC time), and the run of a slot is enqueued with
// the deterministic task id "<type>@<slot start, RFC 3339>" and a retention longer than
// the slot. asynq refuses a second task with an id that still exists (pending, active,
// retrying, archived, or completed and retained), so whichever replica comes second
// gets asynq.ErrTaskIDConflict, which counts as "already scheduled". Each replica
// enqueues a slot only while that slot is current, and the id outlives the slot by at
// least half an hour (max(2×period, 1h) of retention), so a slot runs at most once as
// long as Redis keeps its data and the replicas' clocks agree to within that margin; it
// runs at least once if any replica is up during the slot (a replica that starts late
// in a slot, e.g. after a deploy at 10:00 for a 03:00 daily task, catches the slot up).
// A run still retrying when the next slot starts overlaps that slot's run, one more
// reason for handlers to be idempotent; ScheduledFor tells a handler its slot.
// The next slot's run is enqueued ahead with the same id, to start at its time, so the
// monitor lists every periodic task's next run under its queue's "Scheduled" tab.
// asynqmon's "Schedulers" page stays empty, since asynq.Scheduler is not used: a
// leader-elected asynq.Scheduler would only fill that page and would add a lease to
// reason about.
//
// Results: a handler may store a JSON result with WriteResult; Inspector.Get reads a
// task's state and result for GET /admin/tasks/{id}. A result lives as long as the
// task, so a Task whose result is read later sets Retention.
package tasks

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/pkg/redisclient"
)

// The priority queues of every service. A worker takes work from them 6, 3 and 1 times
// in 10 when all three have tasks waiting, so low never starves.
const (
	QueueCritical = "critical"
	QueueDefault  = "default"
	QueueLow      = "low"
)

// priorities are the weights asynq uses to pick the next queue to dequeue from.
var priorities = map[string]int{QueueCritical: 6, QueueDefault: 3, QueueLow: 1}

// QueueName is the asynq queue that holds service's tasks of priority queue (one of
// QueueCritical, QueueDefault, QueueLow), e.g. "orders:critical"; it is the name
// asynqmon shows.
func QueueName(service, queue string) string { return service + ":" + queue }

// Defaults of a Task's zero fields.
const (
	DefaultMaxRetry = 5
	DefaultTimeout  = time.Minute
)

// NoRetry as a Task's MaxRetry means a failed run is not retried.
const NoRetry = -1

// Task describes one kind of task: its type name and how it runs. Declare it once and
// use it with Client.Enqueue, Worker.Handle and the Scheduler.
type Task struct {
	// Type names the task, "area:verb" by convention (email:send).
	Type string
	// Queue is QueueCritical, QueueDefault or QueueLow; "" is QueueDefault.
	Queue string
	// MaxRetry is how many times a failed run is retried before the task is archived
	// as failed; 0 means DefaultMaxRetry, NoRetry means none.
	MaxRetry int
	// Timeout is the time limit of one run; 0 means DefaultTimeout. asynq keeps
	// timeouts in whole seconds, so it is rounded up there; the handler's own context
	// deadline is exact.
	Timeout time.Duration
	// Retention keeps a completed task (and its result) readable by the Inspector for
	// this long; 0 deletes it on success.
	Retention time.Duration
	// RetryCap, when set, is this task's longest wait between retries, in place of the
	// worker's (Config.RetryCap): a task that goes on retrying through an outage of
	// hours (e-mail while the mail server is down) should knock every few minutes,
	// not every few seconds, yet the worker's other tasks keep their own cap.
	RetryCap time.Duration
}

func (t Task) queue() string {
	if t.Queue == "" {
		return QueueDefault
	}
	return t.Queue
}

func (t Task) maxRetry() int {
	switch {
	case t.MaxRetry == 0:
		return DefaultMaxRetry
	case t.MaxRetry < 0:
		return 0
	}
	return t.MaxRetry
}

func (t Task) timeout() time.Duration {
	if t.Timeout <= 0 {
		return DefaultTimeout
	}
	return t.Timeout
}

func (t Task) validate() error {
	if t.Type == "" {
		return errors.New("tasks: a Task needs a Type")
	}
	if _, ok := priorities[t.queue()]; !ok {
		return fmt.Errorf("tasks: %s: unknown queue %q (want critical, default or low)", t.Type, t.Queue)
	}
	return nil
}

// options are the asynq options a Task implies for service.
func (t Task) options(service string) []asynq.Option {
	opts := []asynq.Option{
		asynq.Queue(QueueName(service, t.queue())),
		asynq.MaxRetry(t.maxRetry()),
		asynq.Timeout(ceilSecond(t.timeout())),
	}
	if t.Retention > 0 {
		opts = append(opts, asynq.Retention(ceilSecond(t.Retention)))
	}
	return opts
}

// ceilSecond rounds d up to whole seconds: asynq truncates durations to seconds, and a
// timeout truncated to zero would become asynq's default of 30 minutes.
func ceilSecond(d time.Duration) time.Duration {
	return time.Duration(math.Ceil(d.Seconds())) * time.Second
}

// openRedis is the go-redis client for redisURL, with the timeouts every Bazaar
// program uses; asynq is handed the client and never closes it, so we do.
func openRedis(redisURL string) (*redis.Client, error) {
	rdb, err := redisclient.Open(redisURL)
	if err != nil {
		return nil, fmt.Errorf("tasks: %w", err)
	}
	return rdb, nil
}

func checkService(service string) error {
	if service == "" {
		return errors.New("tasks: a service name is needed to name its queues")
	}
	return nil
}
