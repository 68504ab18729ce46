package events_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
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

	"github.com/bazaar-shop/bazaar/internal/benchdoc"
	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/pkg/events"
	"github.com/bazaar-shop/bazaar/pkg/outbox"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
)

// benchSchema is a service with an outbox that also consumes: one database keeps the
// set-up small, and the paths are the same as between two services.
var benchSchema = outbox.WithTable(fstest.MapFS{"00002_inbox.sql": {Data: []byte(`-- +goose Up
CREATE TABLE inbox (event_id uuid PRIMARY KEY, stream text NOT NULL, type text NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT now());
-- +goose Down
DROP TABLE inbox;
`)}})

// The benchmark's load, changed by EVENTS_BENCH_* variables (see settings).
type benchSettings struct {
	events  int           // events per throughput run
	writers int           // producers flat out in a throughput run
	perTx   int           // events each producer sends at once in a throughput run
	rate    int           // events a second offered in the latency run
	length  time.Duration // of the latency run
	doc     string        // the file to write the results into, or "off"
}

func settings(b *testing.B) benchSettings {
	s := benchSettings{events: 50_000, writers: 8, perTx: 50, rate: 1000, length: 5 * time.Second,
		doc: filepath.Join("..", "..", "docs", "benchmarks.md")}
	for name, p := range map[string]*int{"EVENTS_BENCH_EVENTS": &s.events, "EVENTS_BENCH_WRITERS": &s.writers, "EVENTS_BENCH_PER_TX": &s.perTx, "EVENTS_BENCH_RATE": &s.rate} {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				b.Fatalf("%s=%q: want a positive number", name, v)
			}
			*p = n
		}
	}
	if v := os.Getenv("EVENTS_BENCH_LENGTH"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("EVENTS_BENCH_LENGTH=%q: want a duration", v)
		}
		s.length = d
	}
	if v := os.Getenv("EVENTS_BENCH_DOC"); v != "" {
		s.doc = v
	}
	return s
}

// path is one way an event can travel: publish sends one, and the path's consumer
// reports each arrival to its arrivals.
type path interface {
	publish(ctx context.Context, first, n int) error
}

// arrivals counts handled events and keeps how long each took from its publication.
type arrivals struct {
	mu   sync.Mutex
	n    int
	want int
	all  chan struct{}
	took []time.Duration
}

func newArrivals(want int) *arrivals {
	return &arrivals{want: want, all: make(chan struct{}), took: make([]time.Duration, 0, want)}
}

func (a *arrivals) add(published time.Time) {
	d := time.Since(published)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	a.took = append(a.took, d)
	if a.n == a.want {
		close(a.all)
	}
}

func (a *arrivals) wait(b *testing.B, within time.Duration) {
	select {
	case <-a.all:
	case <-time.After(within):
		a.mu.Lock()
		defer a.mu.Unlock()
		b.Fatalf("%d of %d events handled within %s", a.n, a.want, within)
	}
}

// quantile of the arrivals' times; call after wait.
func (a *arrivals) quantile(q float64) time.Duration {
	slices.Sort(a.took)
	return a.took[int(q*float64(len(a.took)-1))]
}

// throughput publishes n events from writers producers flat out, perTx at a time, and
// returns how many a second were handled, from the first publication to the last
// arrival.
func throughput(b *testing.B, setup func(*testing.B, *arrivals) path, n, writers, perTx int) float64 {
	a := newArrivals(n)
	p := setup(b, a)
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for first := w * perTx; first < n; first += writers * perTx {
				if err := p.publish(ctx, first, min(perTx, n-first)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	a.wait(b, 3*time.Minute)
	return float64(n) / time.Since(start).Seconds()
}

// latencyAt offers rate events a second for length in an open loop (each on time,
// whether or not the ones before have been handled) and returns the arrivals, from
// each event's publication to its handler.
func latencyAt(b *testing.B, setup func(*testing.B, *arrivals) path, rate int, length time.Duration) *arrivals {
	n := int(float64(rate) * length.Seconds())
	a := newArrivals(n)
	p := setup(b, a)
	ctx := context.Background()
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
			time.Sleep(d) // the schedule, not synchronisation
		}
		wg.Go(func() {
			if err := p.publish(ctx, i, 1); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	a.wait(b, time.Minute)
	return a
}

// BenchmarkEventsOutboxVsRaw runs the two paths one after the other in one run:
// the outbox path (each event committed in its own producer transaction with
// outbox.Write, the relay, woken by NOTIFY, XADDing it, a consumer group applying it
// in a transaction with its inbox row) and the raw path (XADD, XREADGROUP, XACK on the
// same Redis, no Postgres). For each: throughput with producers flat out, and the
// latency from publication to handler at a steady offered rate. It prints the table
// and writes it to docs/benchmarks.md.
func BenchmarkEventsOutboxVsRaw(b *testing.B) {
	if testing.Short() {
		b.Skip("runs for a minute; skipped by -short")
	}
	set := settings(b)
	rawTP := throughput(b, setupRaw, set.events, set.writers, set.perTx)
	outTP := throughput(b, setupOutbox, set.events, set.writers, set.perTx)
	rawLat := latencyAt(b, setupRaw, set.rate, set.length)
	outLat := latencyAt(b, setupOutbox, set.rate, set.length)

	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
	table := "| path | throughput (events/s) | ÷ raw | p50 at " + strconv.Itoa(set.rate) + "/s | p99 at " + strconv.Itoa(set.rate) + "/s |\n" +
		"|---|---|---|---|---|\n" +
		fmt.Sprintf("| raw XADD → XREADGROUP → XACK | %.0f | 1.00 | %s | %s |\n", rawTP, ms(rawLat.quantile(0.5)), ms(rawLat.quantile(0.99))) +
		fmt.Sprintf("| outbox → relay → stream → consumer (inbox) | %.0f | %.2f | %s | %s |\n", outTP, outTP/rawTP, ms(outLat.quantile(0.5)), ms(outLat.quantile(0.99)))
	b.Logf("%d events from %d producers flat out, %d at a time; %d events/s offered for %s:\n%s",
		set.events, set.writers, set.perTx, set.rate, set.length, table)
	b.ReportMetric(outTP, "outbox-events/s")
	b.ReportMetric(rawTP, "raw-events/s")
	b.ReportMetric(outTP/rawTP, "outbox/raw")
	b.ReportMetric(float64(outLat.quantile(0.99).Microseconds())/1000, "outbox-p99-ms")
	b.ReportMetric(0, "ns/op") // one whole run, not a per-op time
	if set.doc != "off" {
		section := fmt.Sprintf("`BenchmarkEventsOutboxVsRaw`, %s: throughput of %d events from %d producers flat out, %d to a "+
			"transaction (outbox) or a round trip (raw); latency with %d events/s offered for %s, each event alone; %s, "+
			"Postgres and Redis on the same machine; %s.\n\n%s",
			time.Now().UTC().Format("2006-01-02 15:04 MST"), set.events, set.writers, set.perTx, set.rate, set.length,
			benchdoc.Machine(), runtime.Version(), table)
		if err := benchdoc.WriteSection(set.doc, "BenchmarkEventsOutboxVsRaw", section); err != nil {
			b.Errorf("writing %s: %v", set.doc, err)
		}
	}
}

type outboxPath struct{ pool *pgxpool.Pool }

// publish commits one event per transaction, as a service does.
// publish commits events first … first+n-1 in one transaction, as a service's
// request does (with n 1) or many requests committing at once would.
func (o outboxPath) publish(ctx context.Context, first, n int) error {
	return pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		for i := first; i < first+n; i++ {
			if err := outbox.Write(ctx, tx, outbox.Event{Stream: "events.bench", Type: "bench.happened",
				Source: "bench", Subject: strconv.Itoa(i), Data: map[string]int{"i": i}}); err != nil {
				return err
			}
		}
		return nil
	})
}

// setupOutbox is the outbox path on a database and Redis of its own. Latency is from
// the event's time (set in the producer's transaction, before its commit) to the
// consumer's handler, just before its commit.
func setupOutbox(b *testing.B, a *arrivals) path {
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
	wg.Go(func() { relay.Run(ctx) })
	wg.Go(func() { consumer.Run(ctx) })
	b.Cleanup(func() { cancel(); wg.Wait() })
	return outboxPath{pool}
}

type rawPath struct{ rdb *redis.Client }

// publish XADDs events first … first+n-1 in one round trip.
func (r rawPath) publish(ctx context.Context, first, n int) error {
	pipe := r.rdb.Pipeline()
	for i := first; i < first+n; i++ {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: "events.raw", Values: map[string]any{
			"id": uuid.NewString(), "time": time.Now().Format(time.RFC3339Nano), "i": fmt.Sprint(i)}})
	}
	_, err := pipe.Exec(ctx)
	return err
}

// setupRaw is the floor on a Redis of its own: XADD by the producers, one consumer
// XREADGROUPs (BLOCK) and XACKs, no Postgres on either side.
func setupRaw(b *testing.B, a *arrivals) path {
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
				Streams: []string{"events.raw", ">"}, Count: 128, Block: 200 * time.Millisecond}).Result()
			if err != nil {
				continue
			}
			ids := make([]string, 0, len(res[0].Messages))
			for _, m := range res[0].Messages {
				ids = append(ids, m.ID)
			}
			rdb.XAck(ctx, "events.raw", "raw", ids...)
			for _, m := range res[0].Messages {
				t, _ := time.Parse(time.RFC3339Nano, m.Values["time"].(string))
				a.add(t)
			}
		}
	}()
	b.Cleanup(func() { cancel(); <-done })
	return rawPath{rdb}
}
