package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// ErrTaskExists is returned by Enqueue when a task with the same asynq.TaskID (or an
// asynq.Unique duplicate) is already queued or retained: the work is already there.
var ErrTaskExists = errors.New("tasks: a task with this id already exists")

// Client enqueues a service's tasks. It is safe for concurrent use.
type Client struct {
	service string
	rdb     *redis.Client
	c       *asynq.Client
	tracer  trace.Tracer
}

// NewClient is a Client that puts tasks on service's queues in the Redis at redisURL.
// It connects lazily, so it fails only on a bad URL or an empty service name.
func NewClient(redisURL, service string) (*Client, error) {
	if err := checkService(service); err != nil {
		return nil, err
	}
	rdb, err := openRedis(redisURL)
	if err != nil {
		return nil, err
	}
	return &Client{service: service, rdb: rdb, c: asynq.NewClientFromRedisClient(rdb),
		tracer: noop.NewTracerProvider().Tracer("")}, nil
}

// Traced makes each enqueue a span, "enqueue <type>", from tp. Whether or not it is
// called, a task enqueued within a trace carries it (traceparentHeader), so that
// the worker's run joins the trace of the request or event that asked for it.
func (c *Client) Traced(tp trace.TracerProvider) *Client {
	c.tracer = tp.Tracer("github.com/bazaar-shop/bazaar/pkg/tasks")
	return c
}

// Close releases the Redis connections.
func (c *Client) Close() error { return c.rdb.Close() }

// Enqueue puts a task of kind t on its queue, with payload marshalled to JSON, and
// returns the task's id (a UUID unless opts carry asynq.TaskID). The Task's queue,
// retries, timeout and retention apply; opts (asynq.TaskID, asynq.ProcessIn,
// asynq.Retention, ...) come after them and win. An asynq.Queue option names a
// priority (QueueLow) and is put in the service's namespace like the Task's.
// It fails with ErrTaskExists when the task id is taken, and otherwise when the
// payload cannot be marshalled or Redis cannot be reached before ctx ends.
func (c *Client) Enqueue(ctx context.Context, t Task, payload any, opts ...asynq.Option) (string, error) {
	data, err := json.Marshal(payload)
	if err != nil {
		return "", fmt.Errorf("tasks: enqueue %s: marshal payload: %w", t.Type, err)
	}
	return c.enqueue(ctx, t, data, nil, opts...)
}

func (c *Client) enqueue(ctx context.Context, t Task, payload []byte, headers map[string]string, opts ...asynq.Option) (string, error) {
	if err := t.validate(); err != nil {
		return "", err
	}
	all := t.options(c.service)
	for _, o := range opts {
		if o.Type() == asynq.QueueOpt {
			q, _ := o.Value().(string)
			if _, ok := priorities[q]; !ok {
				return "", fmt.Errorf("tasks: enqueue %s: unknown queue %q (want critical, default or low)", t.Type, q)
			}
			o = asynq.Queue(QueueName(c.service, q))
		}
		all = append(all, o)
	}
	ctx, span := c.tracer.Start(ctx, "enqueue "+t.Type, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "asynq"), attribute.String("task.type", t.Type)))
	defer span.End()
	if tp := telemetry.TraceParent(ctx); tp != "" {
		headers = maps.Clone(headers)
		if headers == nil {
			headers = map[string]string{}
		}
		headers[traceparentHeader] = tp
	}
	info, err := c.c.EnqueueContext(ctx, asynq.NewTaskWithHeaders(t.Type, payload, headers), all...)
	switch {
	case errors.Is(err, asynq.ErrTaskIDConflict), errors.Is(err, asynq.ErrDuplicateTask):
		return "", fmt.Errorf("enqueue %s: %w", t.Type, ErrTaskExists)
	case err != nil:
		span.SetStatus(codes.Error, err.Error())
		return "", fmt.Errorf("tasks: enqueue %s: %w", t.Type, err)
	}
	span.SetAttributes(attribute.String("task.id", info.ID), attribute.String("task.queue", info.Queue))
	return info.ID, nil
}
