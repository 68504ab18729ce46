package tasks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// Config tunes a Worker. Only Service is required.
type Config struct {
	// Service names the queues the worker serves (QueueName).
	Service string
	// Concurrency is how many tasks run at once; default 10 (tasks mostly wait on I/O).
	Concurrency int
	// ShutdownTimeout is how long Run waits, after its context ends, for running tasks
	// to finish; those still running then are put back on their queue. Default 20s,
	// inside Kubernetes' default 30s grace period.
	ShutdownTimeout time.Duration
	// RetryBase and RetryCap shape the backoff: retry n waits between half and all of
	// RetryBase·2^n, at most RetryCap (plus up to a second, as asynq keeps due times
	// in whole seconds). Defaults 1s and 5m.
	RetryBase, RetryCap time.Duration
	// PollInterval is how often idle workers look for new tasks and for retries that
	// are due; default 1s. Tests lower it.
	PollInterval time.Duration
	// Registerer receives the worker's metrics; nil records none.
	Registerer prometheus.Registerer
	// Tracer gives each run a span, "run <type>", in the trace of whatever enqueued
	// the task (nil: none).
	Tracer trace.TracerProvider
}

// Worker runs a service's tasks: an asynq server over the service's three queues by
// priority, with a handler per task type.
type Worker struct {
	log      *slog.Logger
	rdb      *redis.Client
	srv      *asynq.Server
	mux      *asynq.ServeMux
	handlers map[string]handler
	metrics  *workerMetrics
	tracer   trace.Tracer
}

type handler struct {
	task    Task
	fn      HandlerFunc
	onFinal func(ctx context.Context, payload []byte, err error)
}

// HandleOption adds to a handler registration.
type HandleOption func(*handler)

// OnFinalFailure calls fn once a task of this type has failed for good: its last
// attempt failed (an error, a panic or a time-out), or it returned SkipRetry. fn gets
// a context that is not cancelled (the failed run's may be), bounded to 30 seconds, and
// runs before the task is archived. If the worker process dies in between, or a run
// is lost with its worker and asynq's recoverer archives it, fn does not run: keep a
// sweep over the source of truth (e.g. stale "queued" rows) for that.
func OnFinalFailure(fn func(ctx context.Context, payload []byte, err error)) HandleOption {
	return func(h *handler) { h.onFinal = fn }
}

// onFinalTimeout bounds an OnFinalFailure hook.
const onFinalTimeout = 30 * time.Second

// NewWorker is a Worker for cfg.Service's queues in the Redis at redisURL, logging to
// log. Register handlers with Handle, then call Run. It fails on a bad URL, a missing
// service name or metrics that clash with ones already registered.
func NewWorker(redisURL string, log *slog.Logger, cfg Config) (*Worker, error) {
	if err := checkService(cfg.Service); err != nil {
		return nil, err
	}
	m, err := newWorkerMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	rdb, err := openRedis(redisURL)
	if err != nil {
		return nil, err
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 10
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 20 * time.Second
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = time.Second
	}
	if cfg.RetryCap <= 0 {
		cfg.RetryCap = 5 * time.Minute
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider()
	}
	queues := make(map[string]int, len(priorities))
	for q, weight := range priorities {
		queues[QueueName(cfg.Service, q)] = weight
	}
	w := &Worker{
		log:      log,
		rdb:      rdb,
		mux:      asynq.NewServeMux(),
		handlers: map[string]handler{},
		metrics:  m,
		tracer:   cfg.Tracer.Tracer("github.com/bazaar-shop/bazaar/pkg/tasks"),
	}
	level := asynq.InfoLevel
	if log.Enabled(context.Background(), slog.LevelDebug) {
		level = asynq.DebugLevel
	}
	w.srv = asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency:              cfg.Concurrency,
		Queues:                   queues,
		RetryDelayFunc:           w.retryDelay(cfg.RetryBase, cfg.RetryCap),
		ErrorHandler:             asynq.ErrorHandlerFunc(w.handleError),
		Logger:                   asynqLogger{log.With("component", "asynq")},
		LogLevel:                 level,
		ShutdownTimeout:          cfg.ShutdownTimeout,
		TaskCheckInterval:        cfg.PollInterval,
		DelayedTaskCheckInterval: cfg.PollInterval,
	})
	return w, nil
}

// Handle registers fn for tasks of kind t; call it before Run. The run's context ends
// at t's Timeout. Registering an invalid Task or a type twice is a programming error
// and panics, as with http.ServeMux.
func (w *Worker) Handle(t Task, fn HandlerFunc, opts ...HandleOption) {
	if err := t.validate(); err != nil {
		panic(err)
	}
	if _, dup := w.handlers[t.Type]; dup {
		panic(fmt.Sprintf("tasks: a handler for %s is already registered", t.Type))
	}
	h := handler{task: t, fn: fn}
	for _, o := range opts {
		o(&h)
	}
	w.handlers[t.Type] = h
	w.mux.HandleFunc(t.Type, func(ctx context.Context, at *asynq.Task) error {
		return w.run(ctx, h, at)
	})
}

// Run processes tasks until ctx ends, then stops taking new ones, lets running tasks
// finish within the shutdown timeout, and returns nil. Redis being down is not an
// error: asynq logs and keeps trying.
func (w *Worker) Run(ctx context.Context) error {
	defer w.rdb.Close()
	if err := w.srv.Start(w.mux); err != nil {
		return fmt.Errorf("tasks: start worker: %w", err)
	}
	<-ctx.Done()
	w.srv.Shutdown()
	return nil
}

// run is the handler asynq calls: it adds the time-limit guard, the result writer and
// the periodic slot to ctx, and records the metrics.
func (w *Worker) run(ctx context.Context, h handler, at *asynq.Task) (err error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, h.task.timeout())
	defer cancel()
	ctx, span := w.tracer.Start(telemetry.WithTraceParent(ctx, at.Headers()[traceparentHeader]), "run "+h.task.Type,
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
			attribute.String("messaging.system", "asynq"), attribute.String("task.type", h.task.Type)))
	if id, ok := asynq.GetTaskID(ctx); ok {
		span.SetAttributes(attribute.String("task.id", id))
	}
	if n, ok := asynq.GetRetryCount(ctx); ok {
		span.SetAttributes(attribute.Int("task.retry", n))
	}
	defer func() {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	ctx = context.WithValue(ctx, resultWriterKey, at.ResultWriter())
	if s, ok := at.Headers()[scheduledForHeader]; ok {
		if slot, perr := time.Parse(time.RFC3339, s); perr == nil {
			ctx = context.WithValue(ctx, scheduledForKey, slot)
		}
	}
	defer func() {
		// A panic is recorded as the failure it is, then handed on to asynq, which
		// recovers it into an error that asynq.IsPanicError recognises.
		p := recover()
		failure := err
		if p != nil {
			failure = fmt.Errorf("panic: %v", p)
		}
		result := "success"
		if failure != nil {
			result = "retry"
			if isFinal(ctx, failure) {
				result = "failed"
			}
		}
		w.metrics.observe(h.task.Type, result, time.Since(start))
		if p != nil {
			panic(p)
		}
	}()
	err = h.fn(ctx, at.Payload())
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		deadline, _ := ctx.Deadline() // ours, or an earlier asynq.Deadline of the task
		err = fmt.Errorf("over its time limit of %s: %w", deadline.Sub(start).Round(time.Millisecond), err)
	}
	return err
}

// handleError logs each failed run and calls the type's final-failure hook once the
// failure is final.
func (w *Worker) handleError(ctx context.Context, at *asynq.Task, err error) {
	id, _ := asynq.GetTaskID(ctx)
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	queue, _ := asynq.GetQueueName(ctx)
	final := isFinal(ctx, err)
	level, msg := slog.LevelWarn, "task failed, will retry"
	if final {
		level, msg = slog.LevelError, "task failed for good"
	}
	w.log.Log(ctx, level, msg,
		"task_type", at.Type(), "task_id", id, "queue", queue,
		"retried", retried, "max_retry", maxRetry,
		"panic", asynq.IsPanicError(err), "error", err.Error())
	if !final {
		return
	}
	h, ok := w.handlers[at.Type()]
	if !ok || h.onFinal == nil {
		return
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), onFinalTimeout)
	defer cancel()
	h.onFinal(hctx, at.Payload(), err)
}

// retryDelay is the backoff of each task type: base·2^n with jitter, capped at the
// type's Task.RetryCap when it has one and at limit otherwise. It reads the handlers,
// which Handle writes before Run and nothing writes after.
func (w *Worker) retryDelay(base, limit time.Duration) asynq.RetryDelayFunc {
	fallback := backoff(base, limit)
	return func(n int, err error, at *asynq.Task) time.Duration {
		if h, ok := w.handlers[at.Type()]; ok && h.task.RetryCap > 0 {
			return backoff(base, h.task.RetryCap)(n, err, at)
		}
		return fallback(n, err, at)
	}
}

// backoff is exponential backoff with "equal jitter": retry n waits between half and
// all of base·2^n (at most limit), so retries spread out but never come early. asynq
// files a retry under its due time in whole seconds, rounded down, so that it can come
// up to a second early; the extra second returned makes up for that.
func backoff(base, limit time.Duration) asynq.RetryDelayFunc {
	return func(n int, _ error, _ *asynq.Task) time.Duration {
		d := limit
		if n < 32 {
			if x := base << n; x > 0 && x < limit {
				d = x
			}
		}
		return d/2 + rand.N(d/2+1) + time.Second
	}
}

// workerMetrics are the task counters and latencies; a nil *workerMetrics records
// nothing.
type workerMetrics struct {
	processed *prometheus.CounterVec
	duration  *prometheus.HistogramVec
}

func newWorkerMetrics(reg prometheus.Registerer) (*workerMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	processed, err := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tasks_processed_total",
		Help: "Task runs, by task type and result: success, retry (failed, will be retried) or failed (for good).",
	}, []string{"type", "result"}))
	if err != nil {
		return nil, err
	}
	duration, err := register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tasks_duration_seconds",
		Help:    "Task run time, by task type.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"type"}))
	if err != nil {
		return nil, err
	}
	return &workerMetrics{processed: processed, duration: duration}, nil
}

func (m *workerMetrics) observe(taskType, result string, d time.Duration) {
	if m == nil {
		return
	}
	m.processed.WithLabelValues(taskType, result).Inc()
	m.duration.WithLabelValues(taskType).Observe(d.Seconds())
}

// register registers c, or returns the equal collector already registered, so that
// several workers in one program (or test) share the series.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("tasks: register metrics: %w", err)
	}
	return c, nil
}

// asynqLogger sends asynq's own log lines to slog.
type asynqLogger struct{ log *slog.Logger }

func (l asynqLogger) Debug(args ...any) { l.log.Debug(fmt.Sprint(args...)) }
func (l asynqLogger) Info(args ...any)  { l.log.Info(fmt.Sprint(args...)) }
func (l asynqLogger) Warn(args ...any)  { l.log.Warn(fmt.Sprint(args...)) }
func (l asynqLogger) Error(args ...any) { l.log.Error(fmt.Sprint(args...)) }

// Fatal is part of asynq's Logger contract (log, then exit); asynq itself never calls it.
func (l asynqLogger) Fatal(args ...any) {
	l.log.Error(fmt.Sprint(args...))
	os.Exit(1)
}
