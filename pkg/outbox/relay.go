package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/bazaar-shop/bazaar/pkg/events"
	"github.com/bazaar-shop/bazaar/pkg/metrics"
	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// RelayOptions tune a relay; zero values take the defaults.
type RelayOptions struct {
	// Name identifies the relay's service: replicas with the same name share one
	// advisory lock, so exactly one of them publishes at a time.
	Name string
	// BatchSize is the most rows published per transaction (default 256).
	BatchSize int
	// PollInterval is how often the relay looks for rows without being notified
	// (default 1s): the fallback for notifications that were lost.
	PollInterval time.Duration
	// MaxLen trims each stream to about this many entries (default 100000). Trimming
	// drops entries whether or not every group has read them: keep it far above the
	// consumer lag you alert on (docs/events.md).
	MaxLen int64
	// Registerer receives the relay's metrics (nil: none).
	Registerer prometheus.Registerer
	// Tracer gives each published event a span (nil: none), "publish <stream>", a
	// child of the span that wrote it.
	Tracer trace.TracerProvider
}

// Relay copies unpublished outbox rows, oldest first, to their Redis Streams and marks
// them published. Delivery is at least once: a crash between XADD and the commit that
// marks the rows publishes them again, and consumers deduplicate by event id.
type Relay struct {
	pool  *pgxpool.Pool
	redis *redis.Client
	log   *slog.Logger
	opts  RelayOptions
	lock  int64
	trace trace.Tracer

	published *prometheus.CounterVec
	errors    prometheus.Counter
	leader    prometheus.Gauge
}

// NewRelay relays pool's outbox to rdb.
func NewRelay(pool *pgxpool.Pool, rdb *redis.Client, log *slog.Logger, opts RelayOptions) *Relay {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 256
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.MaxLen <= 0 {
		opts.MaxLen = 100_000
	}
	if opts.Tracer == nil {
		opts.Tracer = noop.NewTracerProvider()
	}
	h := fnv.New64a()
	h.Write([]byte("bazaar outbox relay " + opts.Name))
	r := &Relay{
		pool: pool, redis: rdb, log: log.With("component", "outbox-relay"), opts: opts, lock: int64(h.Sum64()),
		trace: opts.Tracer.Tracer("github.com/bazaar-shop/bazaar/pkg/outbox"),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_published_total", Help: "Outbox events published to Redis Streams, by stream.",
		}, []string{"stream"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outbox_relay_errors_total", Help: "Failed relay attempts (Postgres or Redis errors).",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outbox_relay_leader", Help: "1 while this replica holds the relay lock.",
		}),
	}
	if opts.Registerer != nil {
		pending := metrics.QueriedGauge(prometheus.GaugeOpts{
			Name: "outbox_pending_rows", Help: "Outbox rows not yet published; -1 when the database did not answer the scrape.",
		}, func(ctx context.Context) (int64, error) { return Pending(ctx, pool) })
		opts.Registerer.MustRegister(r.published, r.errors, r.leader, pending)
	}
	return r
}

// Pending counts the rows not yet published.
func Pending(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var n int64
	err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE published_at IS NULL`).Scan(&n)
	return n, err
}

// Run relays until ctx ends, then returns nil. It waits as a standby while another
// replica holds the lock, and survives Postgres and Redis outages by retrying with
// backoff; rows wait in the outbox meanwhile.
func (r *Relay) Run(ctx context.Context) error {
	wait := r.opts.PollInterval
	for {
		err := r.lead(ctx)
		r.leader.Set(0)
		if ctx.Err() != nil {
			return nil
		}
		r.errors.Inc()
		r.log.Warn("relay interrupted; retrying", "err", err, "in", wait.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// lead holds a dedicated connection (not one of the pool's, which it would starve) for
// the advisory lock and LISTEN; both end with the connection, so a relay that loses it
// stops leading at once.
func (r *Relay) lead(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, r.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	for {
		var got bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, r.lock).Scan(&got); err != nil {
			return fmt.Errorf("try lock: %w", err)
		}
		if got {
			break
		}
		select { // another replica leads: stand by and try again
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * r.opts.PollInterval):
		}
	}
	r.leader.Set(1)
	r.log.Info("relay leading", "name", r.opts.Name)
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// The batches are published on this connection too (see publishBatch), whose
	// commits need not wait for the disk.
	if _, err := conn.Exec(ctx, "SET synchronous_commit = off"); err != nil {
		return fmt.Errorf("set synchronous_commit: %w", err)
	}

	backoff := r.opts.PollInterval
	for {
		n, err := r.publishBatch(ctx, conn)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			// Redis or a statement failed; keep the lock and try again after a pause (a
			// broken connection ends the wait, and with it the lead).
			r.errors.Inc()
			r.log.Warn("publishing failed; rows wait in the outbox", "err", err, "retry_in", backoff.String())
			if err := r.wait(ctx, conn, backoff); err != nil {
				return err
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		backoff = r.opts.PollInterval
		if n == r.opts.BatchSize {
			continue // more may be waiting
		}
		if err := r.wait(ctx, conn, r.opts.PollInterval); err != nil {
			return err
		}
	}
}

// wait returns on a notification or after d; an error means the lock connection broke.
func (r *Relay) wait(ctx context.Context, conn *pgx.Conn, d time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	_, err := conn.WaitForNotification(wctx)
	if err == nil || (errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("wait for notification: %w", err)
}

type outboxRow struct {
	seq    int64
	stream string
	env    events.Envelope
}

// publishBatch publishes the oldest unpublished rows in one transaction: one
// statement locks and marks them (FOR UPDATE, so that even two relays that both
// believe they lead, one's lock connection just died, cannot publish a row twice or
// out of order: the second waits, then finds them published), one pipeline XADDs
// them, and the commit makes the marks stick; a failed XADD rolls the marks back.
//
// It runs on the leader's own connection, so that it takes none from the service's
// pool and its commit does not wait for its WAL to reach the disk (lead sets
// synchronous_commit off there): a mark lost in a crash only publishes its rows
// again, which consumers take as duplicates, and not waiting takes a disk flush off
// every event's way.
func (r *Relay) publishBatch(ctx context.Context, conn *pgx.Conn) (int, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// clock_timestamp(), not now(): now() is when the transaction began, which can
	// be before an event it then finds was written, and a row must not say it was
	// published before it happened.
	rows, err := tx.Query(ctx, `
		UPDATE outbox SET published_at = clock_timestamp()
		WHERE id IN (SELECT id FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE)
		RETURNING seq, id, stream, type, source, subject, time, data, traceparent`, r.opts.BatchSize)
	if err != nil {
		return 0, err
	}
	batch, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (outboxRow, error) {
		var b outboxRow
		var data []byte
		err := row.Scan(&b.seq, &b.env.ID, &b.stream, &b.env.Type, &b.env.Source, &b.env.Subject, &b.env.Time, &data, &b.env.TraceParent)
		b.env.Data = data
		return b, err
	})
	if err != nil || len(batch) == 0 {
		return 0, err
	}
	// RETURNING follows no order; the streams must get the rows in the order written.
	slices.SortFunc(batch, func(a, b outboxRow) int { return cmp.Compare(a.seq, b.seq) })

	spans := r.publishing(ctx, batch)
	pipe := r.redis.Pipeline()
	for _, b := range batch {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: b.stream, MaxLen: r.opts.MaxLen, Approx: true, Values: b.env.Fields()})
	}
	_, err = pipe.Exec(ctx)
	if err == nil {
		err = tx.Commit(ctx)
	}
	for _, span := range spans {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
	if err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	for _, b := range batch {
		r.published.WithLabelValues(b.stream).Inc()
	}
	return len(batch), nil
}

// publishing starts a span for each event of batch, "publish <stream>", in the trace
// of the request that wrote it (its traceparent): the hop from the outbox to the
// stream shows in that trace, with how long the event waited for it. The spans end
// when the batch is published and marked, together.
func (r *Relay) publishing(ctx context.Context, batch []outboxRow) []trace.Span {
	spans := make([]trace.Span, len(batch))
	for i, b := range batch {
		_, spans[i] = r.trace.Start(telemetry.WithTraceParent(ctx, b.env.TraceParent), "publish "+b.stream,
			trace.WithSpanKind(trace.SpanKindProducer))
		if spans[i].IsRecording() { // the attributes cost allocations per event, for an exporter only
			spans[i].SetAttributes(
				attribute.String("messaging.system", "redis"),
				attribute.String("messaging.destination.name", b.stream),
				attribute.String("messaging.message.id", b.env.ID.String()),
				attribute.String("event.type", b.env.Type),
				attribute.Float64("outbox.wait_seconds", time.Since(b.env.Time).Seconds()),
			)
		}
	}
	return spans
}

// Republish marks the rows written in [from, to) unpublished again, so the relay sends
// them once more: the repair for entries that Redis lost (a restart without persistence,
// the last second under appendfsync everysec) or that MAXLEN trimmed before a consumer
// read them. Consumers deduplicate, so overlap is harmless. It returns the row count.
func Republish(ctx context.Context, pool *pgxpool.Pool, from, to time.Time) (int64, error) {
	tag, err := pool.Exec(ctx, `UPDATE outbox SET published_at = NULL
		WHERE time >= $1 AND time < $2 AND published_at IS NOT NULL`, from, to)
	if err != nil {
		return 0, err
	}
	_, _ = pool.Exec(ctx, "SELECT pg_notify($1, 'republish')", NotifyChannel)
	return tag.RowsAffected(), nil
}
