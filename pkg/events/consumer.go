package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// Handler applies one event. It runs inside tx, the same transaction that records the
// event in the consumer's inbox, so its effects and the "handled" mark commit together.
// A consumer without a database (NewConsumer with a nil pool) has no inbox and gives
// its handler a nil tx: the handler must then be idempotent by itself, since an entry
// may come again (the gateway's cache invalidation, whose drops are).
// The transaction may hold other events of the same batch, applied in the order read
// (see processBatch): a handler must leave it usable, and undo nothing but by erring.
// An error wrapping ErrMalformed sends the entry to the DLQ at once (retrying cannot
// fix it); any other error leaves it for another delivery.
type Handler func(ctx context.Context, tx pgx.Tx, e Envelope) error

// ConsumerOptions tune a consumer; zero values take the defaults.
type ConsumerOptions struct {
	// Group is the consumer group, named after the consuming service.
	Group string
	// Name is this replica within the group (default: the host name). A stable name
	// lets a restarted replica take back its own unacknowledged entries at once; a
	// name that changes with every container (its id) leaves the old one behind in
	// the group, its entries taken over after ClaimIdle and the name itself removed
	// after ForgetAfter.
	Name string
	// ForgetAfter is how long another consumer of the group may stay idle, with
	// nothing pending, before this one deletes it from the group (default 1h): the
	// replicas that are gone for good (a container recreated under a new name, a
	// scaled-down pod). A live consumer reads every Block, so it is never that idle,
	// and one that was would come back by reading again; with nothing pending,
	// nothing is lost either way.
	ForgetAfter time.Duration
	// Streams are read together.
	Streams []string
	// StartAtEnd creates a missing group at the end of its stream rather than at its
	// beginning: for a consumer to whom only what happens from now on matters (a
	// cache, which holds nothing from before it first ran).
	StartAtEnd bool
	// Block is how long one XREADGROUP waits for entries (default 2s); it bounds how
	// long a stop takes.
	Block time.Duration
	// ClaimIdle is how long another replica's entry must sit unacknowledged before this
	// one takes it over with XAUTOCLAIM (default 30s).
	ClaimIdle time.Duration
	// RetryDelay is how long an entry this replica failed waits before its second try
	// (default 1s); each later try waits twice as long as the one before, up to a minute.
	RetryDelay time.Duration
	// MaxDeliveries is how many failed deliveries send an entry to the DLQ (default 5).
	MaxDeliveries int64
	// BatchSize is the most new entries read at once and applied in one transaction
	// (default 128). A batch that fails is applied again entry by entry, so that one
	// failing event holds up no other.
	BatchSize int64
	// DLQMaxLen trims the DLQ to about this many entries as they are added
	// (XADD MAXLEN ~; default DefaultDLQMaxLen): a flood of poison messages must not
	// fill Redis, and under noeviction a full Redis stops every stream.
	DLQMaxLen int64
	// Registerer receives the consumer's metrics (nil: none).
	Registerer prometheus.Registerer
	// Tracer gives each handled event a span (nil: none), a child of the span that
	// wrote it (see Consumer.handle).
	Tracer trace.TracerProvider
}

// DefaultDLQMaxLen is the DLQ's default MAXLEN: far more dead letters than anyone
// reads through, few enough that they cost Redis little. Past it the oldest are
// dropped; events_dlq_entries says when the DLQ needs a human long before that.
const DefaultDLQMaxLen = 10_000

// Consumer reads streams with a consumer group and applies each event exactly once in
// effect: at-least-once delivery, deduplicated by the inbox table
// (event_id uuid PRIMARY KEY, stream, type, handled_at) in the consumer's database.
type Consumer struct {
	pool    *pgxpool.Pool
	redis   *redis.Client
	log     *slog.Logger
	handler Handler
	opts    ConsumerOptions

	// paused is set when a delivery failed because the consumer's own database was
	// unreachable: reading stops until it answers again, so that an outage does not
	// use up entries' deliveries and send healthy events to the DLQ.
	paused atomic.Bool
	// lastForget is when a sweep last looked for consumers gone from the group
	// (forgetGone); only Run's goroutine touches it.
	lastForget time.Time

	tracer trace.Tracer

	consumed *prometheus.CounterVec
	lag      *prometheus.GaugeVec
	unacked  *prometheus.GaugeVec
	dlqLen   prometheus.Gauge
}

// NewConsumer applies h to the events of opts.Streams, with an inbox in pool's
// database, or none when pool is nil (see Handler).
func NewConsumer(pool *pgxpool.Pool, rdb *redis.Client, log *slog.Logger, h Handler, opts ConsumerOptions) *Consumer {
	if opts.Name == "" {
		host, _ := os.Hostname()
		opts.Name = opts.Group + "@" + host
	}
	if opts.Block <= 0 {
		opts.Block = 2 * time.Second
	}
	if opts.ClaimIdle <= 0 {
		opts.ClaimIdle = 30 * time.Second
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = time.Second
	}
	if opts.MaxDeliveries <= 0 {
		opts.MaxDeliveries = 5
	}
	if opts.DLQMaxLen <= 0 {
		opts.DLQMaxLen = DefaultDLQMaxLen
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 128
	}
	if opts.ForgetAfter <= 0 {
		opts.ForgetAfter = time.Hour
	}
	if opts.Tracer == nil {
		opts.Tracer = noop.NewTracerProvider()
	}
	c := &Consumer{
		pool: pool, redis: rdb, handler: h, opts: opts,
		tracer: opts.Tracer.Tracer("github.com/bazaar-shop/bazaar/pkg/events"),
		log:    log.With("component", "events-consumer", "group", opts.Group, "consumer", opts.Name),
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "events_consumed_total",
			Help: "Stream entries processed, by stream, group and result (ok, duplicate, failed, dead_lettered).",
		}, []string{"stream", "group", "result"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "events_consumer_lag", Help: "Stream entries not yet delivered to the group.",
		}, []string{"stream", "group"}),
		unacked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "events_consumer_pending", Help: "Entries delivered to the group but not yet acknowledged.",
		}, []string{"stream", "group"}),
		dlqLen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "events_dlq_entries", Help: "Entries waiting in " + DLQStream + ".",
		}),
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(c.consumed, c.lag, c.unacked, c.dlqLen)
	}
	return c
}

// Run consumes until ctx ends, finishing the entry in hand, then returns nil. Redis
// outages are waited out.
func (c *Consumer) Run(ctx context.Context) error {
	c.log.Info("consuming", "streams", c.opts.Streams)
	wait := 100 * time.Millisecond
	var lastSweep time.Time
	for ctx.Err() == nil {
		if c.paused.Load() && c.pool != nil {
			if err := c.pool.Ping(ctx); err != nil {
				c.log.Warn("database unreachable; consuming paused", "err", err, "retry_in", wait.String())
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
				wait = min(2*wait, 5*time.Second)
				continue
			}
			c.paused.Store(false)
			c.log.Info("database back; consuming resumed")
		}
		err := c.ensureGroups(ctx)
		if err == nil && time.Since(lastSweep) >= c.opts.RetryDelay {
			err = c.sweep(ctx)
			lastSweep = time.Now()
		}
		if err == nil {
			err = c.readNew(ctx)
		}
		if err == nil || ctx.Err() != nil {
			wait = 100 * time.Millisecond
			continue
		}
		c.log.Warn("consuming failed; retrying", "err", err, "in", wait.String())
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
	return nil
}

// ensureGroups creates the groups (and streams) if missing. A new group starts at the
// beginning of the stream, so events published before the consumer first ran are
// handled too. It runs every round because a Redis that restarted without its data
// has lost the groups.
func (c *Consumer) ensureGroups(ctx context.Context) error {
	start := "0"
	if c.opts.StartAtEnd {
		start = "$"
	}
	for _, s := range c.opts.Streams {
		err := c.redis.XGroupCreateMkStream(ctx, s, c.opts.Group, start).Err()
		if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
			return fmt.Errorf("create group %s on %s: %w", c.opts.Group, s, err)
		}
	}
	return nil
}

func (c *Consumer) readNew(ctx context.Context) error {
	args := &redis.XReadGroupArgs{Group: c.opts.Group, Consumer: c.opts.Name, Count: c.opts.BatchSize, Block: c.opts.Block}
	args.Streams = append(append(args.Streams, c.opts.Streams...), repeat(">", len(c.opts.Streams))...)
	res, err := c.redis.XReadGroup(ctx, args).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("xreadgroup: %w", err)
	}
	var batch []entry
	for _, s := range res {
		for _, m := range s.Messages {
			batch = append(batch, entry{stream: s.Stream, m: m})
		}
	}
	c.processBatch(ctx, batch)
	return nil
}

// entry is a stream entry delivered to this replica.
type entry struct {
	stream string
	m      redis.XMessage
	env    Envelope
}

// processBatch applies entries delivered for the first time in one transaction, one
// inbox row each, and acknowledges them together once it has committed: a commit per
// batch rather than per event is what lets a consumer keep up with a busy stream. If
// the batch fails, its entries are applied again one by one (process), so that the
// entry at fault is retried or dead-lettered alone and the rest go through; unless the
// database is down, which pauses the consumer with every entry left pending.
func (c *Consumer) processBatch(ctx context.Context, batch []entry) {
	if len(batch) == 1 || c.pool == nil { // no transaction to share without a database
		for _, e := range batch {
			c.process(ctx, e.stream, e.m, 1)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()

	good := batch[:0:0]
	for _, e := range batch {
		env, err := Parse(e.m.Values)
		if err != nil {
			c.deadLetter(ctx, c.log.With("stream", e.stream, "entry", e.m.ID, "delivery", 1), e.stream, e.m, 1, err.Error())
			continue
		}
		e.env = env
		good = append(good, e)
	}
	if len(good) == 0 {
		return
	}
	duplicate, err := c.apply(ctx, good)
	if err != nil {
		if c.pool.Ping(ctx) != nil {
			c.paused.Store(true)
			for _, e := range good {
				c.consumed.WithLabelValues(e.stream, c.opts.Group, "failed").Inc()
			}
			c.log.WarnContext(ctx, "events not handled: the database is unreachable", "entries", len(good), "err", err)
			return
		}
		c.log.InfoContext(ctx, "a batch failed; applying its entries one by one", "entries", len(good), "err", err)
		for _, e := range good {
			c.process(ctx, e.stream, e.m, 1)
		}
		return
	}
	// The effects are committed; a crash before the XACKs only means more deliveries,
	// which the inbox turns into no-ops.
	acks := make(map[string][]string, len(c.opts.Streams))
	for _, e := range good {
		acks[e.stream] = append(acks[e.stream], e.m.ID)
	}
	pipe := c.redis.Pipeline()
	for stream, ids := range acks {
		pipe.XAck(ctx, stream, c.opts.Group, ids...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		c.log.WarnContext(ctx, "ack failed; the entries will be delivered again", "entries", len(good), "err", err)
	}
	debug := c.log.Enabled(ctx, slog.LevelDebug)
	for i, e := range good {
		result := "ok"
		if duplicate[i] {
			result = "duplicate"
		}
		c.consumed.WithLabelValues(e.stream, c.opts.Group, result).Inc()
		if debug {
			c.log.DebugContext(ctx, "event handled", "stream", e.stream, "entry", e.m.ID, "delivery", 1,
				"event_id", e.env.ID, "type", e.env.Type, "result", result)
		}
	}
}

// sweep retries this replica's failed entries after RetryDelay and takes over other
// replicas' entries idle for ClaimIdle (a replica that died leaves its entries pending
// forever unless someone claims them). It also refreshes the lag metrics.
func (c *Consumer) sweep(ctx context.Context) error {
	// Gone consumers are looked for four times per ForgetAfter, not every sweep:
	// they matter on that scale, and each look is a round trip per stream.
	forget := time.Since(c.lastForget) >= c.opts.ForgetAfter/4
	for _, s := range c.opts.Streams {
		mine, err := c.redis.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: s, Group: c.opts.Group, Consumer: c.opts.Name, Idle: c.opts.RetryDelay, Start: "-", End: "+", Count: 100,
		}).Result()
		if err != nil {
			return fmt.Errorf("xpending: %w", err)
		}
		for _, p := range mine {
			if p.Idle < c.retryAfter(p.RetryCount) {
				continue // backing off
			}
			msgs, err := c.redis.XClaim(ctx, &redis.XClaimArgs{
				Stream: s, Group: c.opts.Group, Consumer: c.opts.Name, MinIdle: c.opts.RetryDelay, Messages: []string{p.ID},
			}).Result()
			if err != nil {
				return fmt.Errorf("xclaim: %w", err)
			}
			for _, m := range msgs {
				c.process(ctx, s, m, p.RetryCount+1) // XCLAIM counted one more delivery
			}
		}

		abandoned, _, err := c.redis.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: s, Group: c.opts.Group, Consumer: c.opts.Name, MinIdle: c.opts.ClaimIdle, Start: "0-0", Count: 100,
		}).Result()
		if err != nil {
			return fmt.Errorf("xautoclaim: %w", err)
		}
		for _, m := range abandoned {
			c.process(ctx, s, m, c.deliveries(ctx, s, m.ID))
		}
		if forget {
			if err := c.forgetGone(ctx, s); err != nil {
				return err
			}
		}
		c.refreshMetrics(ctx, s)
	}
	if forget {
		c.lastForget = time.Now()
	}
	return nil
}

// forgetGone deletes from the group on stream the other consumers that have been
// idle for ForgetAfter with nothing pending (see ConsumerOptions.ForgetAfter).
func (c *Consumer) forgetGone(ctx context.Context, stream string) error {
	consumers, err := c.redis.XInfoConsumers(ctx, stream, c.opts.Group).Result()
	if err != nil {
		return fmt.Errorf("xinfo consumers: %w", err)
	}
	for _, other := range consumers {
		if other.Name == c.opts.Name || other.Pending > 0 || other.Idle < c.opts.ForgetAfter {
			continue
		}
		if err := c.redis.XGroupDelConsumer(ctx, stream, c.opts.Group, other.Name).Err(); err != nil {
			return fmt.Errorf("xgroup delconsumer: %w", err)
		}
		c.log.InfoContext(ctx, "forgot a consumer gone from the group", "stream", stream, "gone", other.Name,
			"idle", other.Idle.Round(time.Second).String())
	}
	return nil
}

// retryAfter is how long an entry delivered n times waits before the next try:
// RetryDelay·2^(n-1), capped at a minute, so a handler waiting for something that has
// not happened yet (another stream's event) gets tens of seconds, not five.
func (c *Consumer) retryAfter(n int64) time.Duration {
	d := c.opts.RetryDelay
	for i := int64(1); i < n && d < time.Minute; i++ {
		d *= 2
	}
	return min(d, time.Minute)
}

func (c *Consumer) deliveries(ctx context.Context, stream, id string) int64 {
	p, err := c.redis.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: c.opts.Group, Start: id, End: id, Count: 1}).Result()
	if err != nil || len(p) == 0 {
		return 1
	}
	return p[0].RetryCount
}

func (c *Consumer) refreshMetrics(ctx context.Context, stream string) {
	groups, err := c.redis.XInfoGroups(ctx, stream).Result()
	if err == nil {
		for _, g := range groups {
			if g.Name == c.opts.Group {
				c.lag.WithLabelValues(stream, c.opts.Group).Set(float64(g.Lag))
				c.unacked.WithLabelValues(stream, c.opts.Group).Set(float64(g.Pending))
			}
		}
	}
	if n, err := c.redis.XLen(ctx, DLQStream).Result(); err == nil {
		c.dlqLen.Set(float64(n))
	}
}

// process applies one entry and acknowledges it, or leaves it pending for a retry, or
// dead-letters it. It runs to the end even when ctx is cancelled (a graceful stop
// finishes the entry in hand), within a time limit.
func (c *Consumer) process(ctx context.Context, stream string, m redis.XMessage, delivery int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	log := c.log.With("stream", stream, "entry", m.ID, "delivery", delivery)

	env, err := Parse(m.Values)
	if err != nil {
		c.deadLetter(ctx, log, stream, m, delivery, err.Error())
		return
	}
	// In the event's trace from here: the log lines of its handling name it.
	ctx = telemetry.WithTraceParent(ctx, env.TraceParent)
	log = log.With("event_id", env.ID, "type", env.Type)
	if delivery > c.opts.MaxDeliveries {
		// Deliveries ran out without a recorded failure: the consumer died while
		// handling it (a handler that crashes the process, say). Do not try again.
		c.deadLetter(ctx, log, stream, m, delivery, fmt.Sprintf("delivered %d times without success", delivery))
		return
	}

	dup, err := c.apply(ctx, []entry{{stream: stream, m: m, env: env}})
	duplicate := err == nil && dup[0]
	switch {
	case err == nil:
		// The effects are committed; a crash before this XACK only means one more
		// delivery, which the inbox (or the handler's idempotence) turns into a no-op.
		if err := c.redis.XAck(ctx, stream, c.opts.Group, m.ID).Err(); err != nil {
			log.WarnContext(ctx, "ack failed; the entry will be delivered again", "err", err)
		}
		result := "ok"
		if duplicate {
			result = "duplicate"
		}
		c.consumed.WithLabelValues(stream, c.opts.Group, result).Inc()
		log.DebugContext(ctx, "event handled", "result", result)
	case errors.Is(err, ErrMalformed):
		c.deadLetter(ctx, log, stream, m, delivery, err.Error())
	case c.pool != nil && c.pool.Ping(ctx) != nil:
		// Not the event's fault: the database is down. Leave the entry pending and
		// pause until the database is back (see paused).
		c.paused.Store(true)
		c.consumed.WithLabelValues(stream, c.opts.Group, "failed").Inc()
		log.WarnContext(ctx, "event not handled: the database is unreachable", "err", err)
	case delivery >= c.opts.MaxDeliveries:
		c.deadLetter(ctx, log, stream, m, delivery, err.Error())
	default:
		c.consumed.WithLabelValues(stream, c.opts.Group, "failed").Inc()
		log.WarnContext(ctx, "event handler failed; will retry", "err", err, "max_deliveries", c.opts.MaxDeliveries)
	}
}

// apply records entries in the inbox and applies the new ones in the order read, in
// one transaction; duplicate[i] tells that entries[i] was handled before (or earlier
// in the same batch) and was not applied again. Without a database each entry is
// simply handed to the handler, with no transaction and no inbox.
func (c *Consumer) apply(ctx context.Context, entries []entry) (duplicate []bool, err error) {
	duplicate = make([]bool, len(entries))
	if c.pool == nil {
		for _, e := range entries {
			if err := c.handle(ctx, nil, e); err != nil {
				return nil, err
			}
		}
		return duplicate, nil
	}
	err = pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		ids, streams, types := make([]uuid.UUID, len(entries)), make([]string, len(entries)), make([]string, len(entries))
		for i, e := range entries {
			ids[i], streams[i], types[i] = e.env.ID, e.stream, e.env.Type
		}
		rows, err := tx.Query(ctx, `INSERT INTO inbox (event_id, stream, type)
			SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING RETURNING event_id`,
			ids, streams, types)
		if err != nil {
			return fmt.Errorf("record in inbox: %w", err)
		}
		inserted, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return fmt.Errorf("record in inbox: %w", err)
		}
		fresh := make(map[uuid.UUID]bool, len(inserted))
		for _, id := range inserted {
			fresh[id] = true
		}
		for i, e := range entries {
			if !fresh[e.env.ID] { // handled before, or earlier in this batch
				duplicate[i] = true
				continue
			}
			delete(fresh, e.env.ID)
			if err := c.handle(ctx, tx, e); err != nil {
				if len(entries) == 1 {
					return err
				}
				return fmt.Errorf("entry %s (%s %s): %w", e.m.ID, e.env.Type, e.env.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return duplicate, nil
}

// handle runs the handler for e in a span of its own, "process <stream>", a child of
// the span that wrote the event (its envelope's traceparent): the event's effects are
// part of the trace of the request that caused them, across services.
func (c *Consumer) handle(ctx context.Context, tx pgx.Tx, e entry) error {
	ctx, span := c.tracer.Start(telemetry.WithTraceParent(ctx, e.env.TraceParent), "process "+e.stream,
		trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()
	if span.IsRecording() { // the attributes cost an allocation per event, for an exporter only
		span.SetAttributes(
			attribute.String("messaging.system", "redis"),
			attribute.String("messaging.destination.name", e.stream),
			attribute.String("messaging.consumer.group.name", c.opts.Group),
			attribute.String("messaging.message.id", e.env.ID.String()),
			attribute.String("messaging.redis.entry_id", e.m.ID),
			attribute.String("event.type", e.env.Type),
		)
	}
	err := c.safeHandle(ctx, tx, e.env)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}

// safeHandle runs the handler, turning a panic into an error so that one bad event
// cannot take the consumer down.
func (c *Consumer) safeHandle(ctx context.Context, tx pgx.Tx, env Envelope) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("handler panicked: %v", v)
		}
	}()
	return c.handler(ctx, tx, env)
}

// deadLetter moves an entry to the DLQ with why it failed, and acknowledges it, in one
// MULTI so that it is never both lost and acknowledged. The DLQ is trimmed to about
// DLQMaxLen on the way, oldest entries first.
func (c *Consumer) deadLetter(ctx context.Context, log *slog.Logger, stream string, m redis.XMessage, delivery int64, reason string) {
	values := map[string]any{}
	for k, v := range m.Values {
		values[k] = v
	}
	values[dlqPrefix+"stream"] = stream
	values[dlqPrefix+"entry_id"] = m.ID
	values[dlqPrefix+"group"] = c.opts.Group
	values[dlqPrefix+"error"] = reason
	values[dlqPrefix+"deliveries"] = strconv.FormatInt(delivery, 10)
	values[dlqPrefix+"time"] = time.Now().UTC().Format(time.RFC3339Nano)
	_, err := c.redis.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAdd(ctx, &redis.XAddArgs{Stream: DLQStream, MaxLen: c.opts.DLQMaxLen, Approx: true, Values: values})
		p.XAck(ctx, stream, c.opts.Group, m.ID)
		return nil
	})
	if err != nil {
		log.ErrorContext(ctx, "dead-lettering failed; the entry stays pending", "err", err)
		return
	}
	c.consumed.WithLabelValues(stream, c.opts.Group, "dead_lettered").Inc()
	log.ErrorContext(ctx, "event sent to the DLQ", "reason", reason)
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}
