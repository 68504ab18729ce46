package events_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/pkg/events"
	"github.com/bazaar-shop/bazaar/pkg/outbox"
	"github.com/bazaar-shop/bazaar/pkg/pgtest"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
	"github.com/bazaar-shop/bazaar/pkg/redistest"
)

// benchSchema is a service with an outbox that also consumes: one database keeps the
// set-up small, and the paths are the same as between two services.
var benchSchema = fstest.MapFS{"00001_bench.sql": {Data: []byte(`-- +goose Up
CREATE TABLE outbox (id uuid PRIMARY KEY, stream text NOT NULL, type text NOT NULL,
    source text NOT NULL, subject text NOT NULL, time timestamptz NOT NULL, data jsonb NOT NULL,
    traceparent text NOT NULL DEFAULT '', seq bigint GENERATED ALWAYS AS IDENTITY, published_at timestamptz);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
CREATE TABLE inbox (event_id uuid PRIMARY KEY, stream text NOT NULL, type text NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT now());
-- +goose Down
DROP TABLE inbox; DROP TABLE outbox;
`)}}

// writers is how many producers write at once in the throughput runs.
const writers = 8

// path is one way an event can travel: publish sends one, and handled reports each
// arrival (its publish time) to the bench.
type path interface {
	publish(ctx context.Context, i int) error
}

// arrivals counts handled events and, in latency runs, signals each one.
type arrivals struct {
	mu   sync.Mutex
	n    int
	want int
	all  chan struct{}
	each chan time.Duration
}

func newArrivals(want int, each bool) *arrivals {
	a := &arrivals{want: want, all: make(chan struct{})}
	if each {
		a.each = make(chan time.Duration, 1)
	}
	return a
}

func (a *arrivals) add(published time.Time) {
	d := time.Since(published)
	a.mu.Lock()
	a.n++
	if a.n == a.want {
		close(a.all)
	}
	a.mu.Unlock()
	if a.each != nil {
		a.each <- d
	}
}

// run measures p: throughput with 8 writers flat out, then latency of one event at a
// time (send, wait for it to be handled, next), which is what a single request sees when
// the system is not saturated.
func run(b *testing.B, setup func(b *testing.B, a *arrivals) path) {
	b.Run("throughput", func(b *testing.B) {
		a := newArrivals(b.N, false)
		p := setup(b, a)
		ctx := context.Background()
		b.ResetTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < b.N; i += writers {
					if err := p.publish(ctx, i); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		select {
		case <-a.all:
		case <-time.After(2 * time.Minute):
			b.Fatal("not every event was handled")
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		b.ReportMetric(0, "ns/op")
	})
	b.Run("latency", func(b *testing.B) {
		a := newArrivals(b.N, true)
		p := setup(b, a)
		ctx := context.Background()
		ds := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := range b.N {
			if err := p.publish(ctx, i); err != nil {
				b.Fatal(err)
			}
			select {
			case d := <-a.each:
				ds = append(ds, d)
			case <-time.After(30 * time.Second):
				b.Fatal("the event was not handled")
			}
		}
		slices.Sort(ds)
		q := func(p float64) float64 { return float64(ds[int(p*float64(len(ds)-1))].Microseconds()) / 1000 }
		b.ReportMetric(q(0.50), "p50-ms")
		b.ReportMetric(q(0.99), "p99-ms")
		b.ReportMetric(0, "ns/op")
	})
}

type outboxPath struct{ pool *pgxpool.Pool }

// publish commits one event per transaction, as a service does.
func (o outboxPath) publish(ctx context.Context, i int) error {
	return pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		return outbox.Write(ctx, tx, outbox.Event{Stream: "events.bench", Type: "bench.happened",
			Source: "bench", Subject: strconv.Itoa(i), Data: map[string]int{"i": i}})
	})
}

// BenchmarkOutboxToConsumer is the whole path: outbox row committed with the change,
// relay (woken by NOTIFY) XADDs it, a consumer group applies it in a transaction with its
// inbox row. Latency is from the event's time (set in the producer's transaction) to the
// consumer's handler, just before its commit.
func BenchmarkOutboxToConsumer(b *testing.B) {
	run(b, func(b *testing.B, a *arrivals) path {
		pool := pgtest.New(b, benchSchema)
		rdb, err := redisclient.Open(redistest.New(b))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { rdb.Close() })
		handler := func(ctx context.Context, tx pgx.Tx, e events.Envelope) error { a.add(e.Time); return nil }
		relay := outbox.NewRelay(pool, rdb, quiet, outbox.RelayOptions{Name: "bench"})
		consumer := events.NewConsumer(pool, rdb, quiet, handler, events.ConsumerOptions{Group: "bench", Streams: []string{"events.bench"}})
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); relay.Run(ctx) }()
		go func() { defer wg.Done(); consumer.Run(ctx) }()
		b.Cleanup(func() { cancel(); wg.Wait() })
		return outboxPath{pool}
	})
}

type rawPath struct{ rdb *redis.Client }

func (r rawPath) publish(ctx context.Context, i int) error {
	return r.rdb.XAdd(ctx, &redis.XAddArgs{Stream: "events.raw", Values: map[string]any{
		"id": uuid.NewString(), "time": time.Now().Format(time.RFC3339Nano), "i": fmt.Sprint(i)}}).Err()
}

// BenchmarkRawStreams is the floor on the same Redis: XADD by the producers, one
// consumer XREADGROUPs (BLOCK) and XACKs, no Postgres on either side.
func BenchmarkRawStreams(b *testing.B) {
	run(b, func(b *testing.B, a *arrivals) path {
		rdb, err := redisclient.Open(redistest.New(b))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { rdb.Close() })
		ctx, cancel := context.WithCancel(context.Background())
		if err := rdb.XGroupCreateMkStream(ctx, "events.raw", "raw", "$").Err(); err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for ctx.Err() == nil {
				res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "raw", Consumer: "c",
					Streams: []string{"events.raw", ">"}, Count: 64, Block: 200 * time.Millisecond}).Result()
				if err != nil {
					continue
				}
				for _, m := range res[0].Messages {
					t, _ := time.Parse(time.RFC3339Nano, m.Values["time"].(string))
					rdb.XAck(ctx, "events.raw", "raw", m.ID)
					a.add(t)
				}
			}
		}()
		b.Cleanup(func() { cancel(); <-done })
		return rawPath{rdb}
	})
}
