package outbox_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/pkg/events"
	"github.com/bazaar-shop/bazaar/pkg/outbox"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
	"github.com/bazaar-shop/bazaar/pkg/tcpproxy"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type fixture struct {
	pool  *pgxpool.Pool
	redis *redis.Client
	url   string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	u := redistest.New(t)
	rdb, err := redisclient.Open(u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return fixture{pool: pgtest.New(t, schema), redis: rdb, url: u}
}

// startRelay runs a relay until the test ends.
func startRelay(t *testing.T, pool *pgxpool.Pool, rdb *redis.Client, opts outbox.RelayOptions) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- outbox.NewRelay(pool, rdb, quiet, opts).Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay Run = %v", err)
		}
	})
}

func write(t *testing.T, pool *pgxpool.Pool, subject string) {
	t.Helper()
	err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		return outbox.Write(context.Background(), tx, outbox.Event{Stream: "events.test", Type: "thing.happened",
			Source: "test", Subject: subject, Data: map[string]string{"subject": subject}})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// streamSubjects polls until the stream holds want entries and returns their subjects
// in stream order.
func streamSubjects(t *testing.T, rdb *redis.Client, want int) []string {
	t.Helper()
	var subjects []string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		msgs, err := rdb.XRange(context.Background(), "events.test", "-", "+").Result()
		if err != nil {
			continue
		}
		subjects = subjects[:0]
		for _, m := range msgs {
			e, err := events.Parse(m.Values)
			if err != nil {
				t.Fatalf("entry %s: %v", m.ID, err)
			}
			subjects = append(subjects, e.Subject)
		}
		if len(subjects) >= want {
			return subjects
		}
	}
	t.Fatalf("stream has %d entries, want %d", len(subjects), want)
	return nil
}

func pending(t *testing.T, pool *pgxpool.Pool) int64 {
	t.Helper()
	n, err := outbox.Pending(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRelayPublishesInOrderOnNotification(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// Polling once a minute: events arriving within the deadline came by notification.
	startRelay(t, f.pool, f.redis, outbox.RelayOptions{Name: "t", PollInterval: time.Minute})
	var want []string
	for i := range 30 {
		s := fmt.Sprintf("s%02d", i)
		want = append(want, s)
		write(t, f.pool, s)
	}
	got := streamSubjects(t, f.redis, len(want))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stream order %v, want %v", got, want)
	}
	for deadline := time.Now().Add(10 * time.Second); pending(t, f.pool) != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("rows not marked published")
		}
	}
	msgs, _ := f.redis.XRange(context.Background(), "events.test", "-", "+").Result()
	v := msgs[0].Values
	for _, k := range []string{"id", "type", "source", "subject", "time", "datacontenttype", "data", "traceparent", "specversion"} {
		if _, ok := v[k]; !ok {
			t.Errorf("entry lacks field %s", k)
		}
	}
}

func TestTwoRelaysPublishEachEventOnceInOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for range 2 {
		startRelay(t, f.pool, f.redis, outbox.RelayOptions{Name: "t", PollInterval: 50 * time.Millisecond, BatchSize: 7})
	}
	var want []string
	for i := range 200 {
		s := fmt.Sprintf("s%03d", i)
		want = append(want, s)
		write(t, f.pool, s)
	}
	got := streamSubjects(t, f.redis, len(want))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("two relays: got %d entries %v, want %v", len(got), got, want)
	}
}

// A row whose transaction commits after a later row's must not be skipped.
func TestRelayDoesNotSkipLateCommits(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	startRelay(t, f.pool, f.redis, outbox.RelayOptions{Name: "t", PollInterval: 50 * time.Millisecond})
	ctx := context.Background()
	slow, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.Write(ctx, slow, outbox.Event{Stream: "events.test", Type: "x", Source: "test", Subject: "late", Data: 1}); err != nil {
		t.Fatal(err)
	}
	write(t, f.pool, "early") // takes a later seq, commits first
	streamSubjects(t, f.redis, 1)
	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := streamSubjects(t, f.redis, 2); fmt.Sprint(got) != "[early late]" {
		t.Fatalf("got %v", got)
	}
}

func TestRelayWaitsOutRedisOutage(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	u, _ := url.Parse(f.url)
	proxy, err := tcpproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	u.Host = proxy.Addr()
	viaProxy, err := redisclient.Open(u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer viaProxy.Close()
	proxy.Cut()
	startRelay(t, f.pool, viaProxy, outbox.RelayOptions{Name: "t", PollInterval: 50 * time.Millisecond})
	for i := range 5 {
		write(t, f.pool, fmt.Sprint(i))
	}
	if n := pending(t, f.pool); n != 5 {
		t.Fatalf("pending = %d during the outage, want 5", n)
	}
	proxy.Restore()
	if got := streamSubjects(t, f.redis, 5); fmt.Sprint(got) != "[0 1 2 3 4]" {
		t.Fatalf("after the outage: %v", got)
	}
}

func TestRepublishSendsARangeAgain(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	startRelay(t, f.pool, f.redis, outbox.RelayOptions{Name: "t", PollInterval: 50 * time.Millisecond})
	write(t, f.pool, "a")
	write(t, f.pool, "b")
	streamSubjects(t, f.redis, 2)
	for deadline := time.Now().Add(10 * time.Second); pending(t, f.pool) != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("rows not marked published")
		}
	}
	n, err := outbox.Republish(context.Background(), f.pool, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatalf("Republish: %v", err)
	}
	if n != 2 {
		t.Fatalf("Republish = %d, want 2", n)
	}
	if got := streamSubjects(t, f.redis, 4); fmt.Sprint(got) != "[a b a b]" {
		t.Fatalf("got %v", got)
	}
}
