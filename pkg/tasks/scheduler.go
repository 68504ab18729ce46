package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
)

// Scheduler enqueues periodic tasks, once per slot across every replica that runs one
// (see the package doc for why that holds). Register entries with Every and Daily,
// then call Run.
type Scheduler struct {
	client  *Client
	log     *slog.Logger
	entries []*entry
}

// entry is one periodic task: its slots start at offset + k·period after the Unix
// epoch.
type entry struct {
	task    Task
	period  time.Duration
	offset  time.Duration
	payload []byte
	done    time.Time // the last slot known to be enqueued, by us or another replica
}

// NewScheduler is a Scheduler that enqueues through c (and so on c's service queues),
// logging to log.
func NewScheduler(c *Client, log *slog.Logger) *Scheduler {
	return &Scheduler{client: c, log: log}
}

// Every runs t once per period, in slots aligned to the Unix epoch (every 15s runs at
// :00, :15, :30, :45), with payload marshalled to JSON. period must be a whole number
// of seconds, at least one. Call it before Run.
func (s *Scheduler) Every(t Task, period time.Duration, payload any) error {
	if period < time.Second || period%time.Second != 0 {
		return fmt.Errorf("tasks: every %s: %s is not a whole number of seconds", t.Type, period)
	}
	return s.add(t, period, 0, payload)
}

// Daily runs t once a day at the UTC time of day at (3*time.Hour is 03:00 UTC), with
// payload marshalled to JSON. at must be a whole number of seconds in [0, 24h). Call it
// before Run.
func (s *Scheduler) Daily(t Task, at time.Duration, payload any) error {
	if at < 0 || at >= 24*time.Hour || at%time.Second != 0 {
		return fmt.Errorf("tasks: daily %s: time of day %s is not whole seconds in [0, 24h)", t.Type, at)
	}
	return s.add(t, 24*time.Hour, at, payload)
}

func (s *Scheduler) add(t Task, period, offset time.Duration, payload any) error {
	if err := t.validate(); err != nil {
		return err
	}
	data, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("tasks: schedule %s: marshal payload: %w", t.Type, err)
	}
	s.entries = append(s.entries, &entry{task: t, period: period, offset: offset, payload: data})
	return nil
}

// slotStart is the start of the slot that holds now.
func (e *entry) slotStart(now time.Time) time.Time {
	n := now.UnixNano() - int64(e.offset)
	p := int64(e.period)
	start := n - n%p
	if n < 0 && n%p != 0 { // before the epoch, round down, not toward zero
		start -= p
	}
	return time.Unix(0, start+int64(e.offset)).UTC()
}

// retention keeps a slot's task id taken well past the end of its slot, so that a
// replica that enqueues late in the slot still finds it: at least a full period more,
// and an hour for short periods.
func (e *entry) retention() time.Duration {
	return max(2*e.period, time.Hour, e.task.Retention)
}

// Run enqueues each entry's current slot unless it already is, sleeps until the next
// slot starts, and repeats until ctx ends; then it returns nil. A slot that could not
// be enqueued (Redis down) is tried again while it is current; a slot that passed
// while no replica ran is skipped.
func (s *Scheduler) Run(ctx context.Context) error {
	for {
		now := time.Now()
		next := now.Add(time.Hour)
		for _, e := range s.entries {
			slot := e.slotStart(now)
			if !e.done.Equal(slot) && s.enqueue(ctx, e, slot, false) {
				e.done = slot
				// Enqueue the next slot's run too, to start at its time: it is then
				// visible in the monitor as scheduled, and it carries the same slot id,
				// so it is still the only run of that slot.
				s.enqueue(ctx, e, slot.Add(e.period), true)
			}
			wake := slot.Add(e.period)
			if !e.done.Equal(slot) {
				// Retry soon, but not in a tight loop while Redis is down.
				wake = now.Add(min(max(e.period/10, 100*time.Millisecond), 10*time.Second))
			}
			if wake.Before(next) {
				next = wake
			}
		}
		timer := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
}

// enqueue enqueues e's run of slot, reporting whether the slot is now taken care of:
// enqueued here or, if its id exists, by another replica (or an earlier run of this
// one). The enqueue gives up when the slot ends, so that a write cannot land long
// after the slot, when its id might no longer be retained.
func (s *Scheduler) enqueue(ctx context.Context, e *entry, slot time.Time, ahead bool) bool {
	id := e.task.Type + "@" + slot.Format(time.RFC3339)
	deadline := slot.Add(e.period)
	opts := []asynq.Option{asynq.TaskID(id), asynq.Retention(ceilSecond(e.retention()))}
	if ahead {
		deadline = slot
		opts = append(opts, asynq.ProcessAt(slot))
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	headers := map[string]string{scheduledForHeader: slot.Format(time.RFC3339)}
	_, err := s.client.enqueue(ctx, e.task, e.payload, headers, opts...)
	switch {
	case errors.Is(err, ErrTaskExists):
		s.log.Debug("periodic task already scheduled", "task_type", e.task.Type, "task_id", id)
		return true
	case err != nil:
		if !errors.Is(ctx.Err(), context.Canceled) { // not when Run is stopping
			s.log.Warn("periodic task not enqueued, will try again", "task_type", e.task.Type, "task_id", id, "error", err.Error())
		}
		return false
	}
	s.log.Info("periodic task enqueued", "task_type", e.task.Type, "task_id", id)
	return true
}
