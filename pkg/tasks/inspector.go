package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

// State is where a task is in its life, as GET /admin/tasks/{id} reports it.
type State string

// The states of a task. asynq's scheduled and aggregating count as pending; its
// archived (retries exhausted, or SkipRetry) is failed.
const (
	StatePending   State = "pending"
	StateActive    State = "active"
	StateRetry     State = "retry"
	StateCompleted State = "completed"
	StateFailed    State = "failed"
)

// ErrTaskNotFound is returned by Inspector.Get for an id that no queue holds: never
// enqueued, or completed and no longer retained. It is a 404 for problem.Write.
var ErrTaskNotFound = apperr.E(apperr.NotFound, "task not found")

// Info is the state of one task.
type Info struct {
	ID    string
	Type  string
	Queue string // the asynq queue, e.g. "orders:default"
	State State
	// Result is what the handler stored with WriteResult, or nil.
	Result json.RawMessage
	// Error is the last failure's message while the task is retrying or failed.
	Error       string
	Retried     int
	MaxRetry    int
	CompletedAt time.Time // zero unless completed
}

// Inspector reads tasks' states and results.
type Inspector struct {
	service string
	rdb     *redis.Client
	in      *asynq.Inspector
}

// NewInspector is an Inspector over service's queues in the Redis at redisURL, or over
// every queue when service is "" (the gateway's view). It fails only on a bad URL.
func NewInspector(redisURL, service string) (*Inspector, error) {
	rdb, err := openRedis(redisURL)
	if err != nil {
		return nil, err
	}
	return &Inspector{service: service, rdb: rdb, in: asynq.NewInspectorFromRedisClient(rdb)}, nil
}

// Close releases the Redis connections.
func (i *Inspector) Close() error { return i.rdb.Close() }

// Get is the task with id, looked up in each queue in turn (asynq files tasks by queue
// and its inspector takes no context, so ctx is checked between lookups). It fails with
// ErrTaskNotFound, or when Redis cannot be reached.
func (i *Inspector) Get(ctx context.Context, id string) (Info, error) {
	queues, err := i.queues()
	if err != nil {
		return Info{}, err
	}
	for _, q := range queues {
		if err := ctx.Err(); err != nil {
			return Info{}, err
		}
		ti, err := i.in.GetTaskInfo(q, id)
		switch {
		case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
			continue
		case err != nil:
			return Info{}, fmt.Errorf("tasks: get task %s: %w", id, err)
		}
		return toInfo(ti), nil
	}
	return Info{}, ErrTaskNotFound
}

func (i *Inspector) queues() ([]string, error) {
	if i.service == "" {
		qs, err := i.in.Queues()
		if err != nil {
			return nil, fmt.Errorf("tasks: list queues: %w", err)
		}
		return qs, nil
	}
	return []string{
		QueueName(i.service, QueueCritical),
		QueueName(i.service, QueueDefault),
		QueueName(i.service, QueueLow),
	}, nil
}

func toInfo(ti *asynq.TaskInfo) Info {
	info := Info{
		ID:          ti.ID,
		Type:        ti.Type,
		Queue:       ti.Queue,
		State:       toState(ti.State),
		Retried:     ti.Retried,
		MaxRetry:    ti.MaxRetry,
		CompletedAt: ti.CompletedAt,
	}
	if len(ti.Result) > 0 && json.Valid(ti.Result) {
		info.Result = json.RawMessage(ti.Result)
	}
	if info.State == StateRetry || info.State == StateFailed {
		info.Error = ti.LastErr
	}
	return info
}

func toState(s asynq.TaskState) State {
	switch s {
	case asynq.TaskStateActive:
		return StateActive
	case asynq.TaskStateRetry:
		return StateRetry
	case asynq.TaskStateCompleted:
		return StateCompleted
	case asynq.TaskStateArchived:
		return StateFailed
	}
	return StatePending // pending, scheduled, aggregating
}
