package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// HandlerFunc runs one task with its JSON payload. Returning nil completes the task;
// an error fails this run, which is retried unless it was the last attempt or the
// error wraps SkipRetry. Handlers must be idempotent: a task can run more than once
// (a retry after a run whose success was not recorded, a worker killed mid-run).
type HandlerFunc func(ctx context.Context, payload []byte) error

// JSON adapts a handler of a typed payload: the payload is decoded into a T (unknown
// fields allowed, so producers can add fields first). A payload that does not decode
// will never decode, so that failure is not retried.
func JSON[T any](fn func(ctx context.Context, payload T) error) HandlerFunc {
	return func(ctx context.Context, data []byte) error {
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return SkipRetry(fmt.Errorf("decode payload: %w", err))
		}
		return fn(ctx, v)
	}
}

// SkipRetry marks err as permanent: the task is archived as failed at once instead of
// being retried (a malformed payload, a recipient that does not exist). nil stays nil.
func SkipRetry(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w (%w)", err, asynq.SkipRetry)
}

// IsLastAttempt reports whether the task run by ctx has no retries left, so that a
// failure now is final. It is false outside a task. A SkipRetry error is final too,
// whatever this says.
func IsLastAttempt(ctx context.Context) bool {
	retried, ok := asynq.GetRetryCount(ctx)
	maxRetry, ok2 := asynq.GetMaxRetry(ctx)
	return ok && ok2 && retried >= maxRetry
}

// isFinal reports whether a run of ctx's task that failed with err leaves the task
// archived, the rule asynq's processor applies.
func isFinal(ctx context.Context, err error) bool {
	if errors.Is(err, asynq.RevokeTask) {
		return false
	}
	return errors.Is(err, asynq.SkipRetry) || IsLastAttempt(ctx)
}

type ctxKey int

const (
	resultWriterKey ctxKey = iota
	scheduledForKey
)

// WriteResult stores v, marshalled to JSON, as the result of the task run by ctx, for
// Inspector.Get to return. It lasts as long as the task does (see Task.Retention).
// It fails outside a task, when v does not marshal, or when Redis cannot be reached.
func WriteResult(ctx context.Context, v any) error {
	w, ok := ctx.Value(resultWriterKey).(*asynq.ResultWriter)
	if !ok {
		return errors.New("tasks: WriteResult outside a task")
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("tasks: marshal result: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("tasks: write result: %w", err)
	}
	return nil
}

// ScheduledFor is the start of the slot a periodic run was enqueued for (e.g.
// 03:00 UTC of its day), so that a handler computes "yesterday" from its slot and not
// from the clock, which a retry or a late run would shift. ok is false for a task that
// was not enqueued by the Scheduler.
func ScheduledFor(ctx context.Context) (slot time.Time, ok bool) {
	slot, ok = ctx.Value(scheduledForKey).(time.Time)
	return slot, ok
}

// scheduledForHeader carries the slot from the Scheduler to the worker.
const scheduledForHeader = "bazaar-scheduled-for"

// traceparentHeader carries the trace of whatever enqueued the task (W3C
// traceparent) to the worker, whose run joins it.
const traceparentHeader = "traceparent"
