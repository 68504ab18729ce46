package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/pkg/events"
	"github.com/bazaar-shop/bazaar/pkg/pgdb"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
	"github.com/bazaar-shop/bazaar/pkg/tcpproxy"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// effects records what the test handler did, in the handler's transaction.
var schema = fstest.MapFS{"00001_inbox.sql": {Data: []byte(`-- +goose Up
CREATE TABLE inbox (event_id uuid PRIMARY KEY, stream text NOT NULL, type text NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE effects (event_id uuid NOT NULL, subject text NOT NULL);
-- +goose Down
DROP TABLE effects; DROP TABLE inbox;
`)}}

const stream = "events.test"

type fixture struct {
	pool  *pgxpool.Pool
	redis *redis.Client
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	rdb, err := redisclient.Open(redistest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return fixture{pool: pgtest.New(t, schema), redis: rdb}
}

// record is a handler that writes one effect row per event.
func record(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
	_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, subject) VALUES ($1, $2)`, e.ID, e.Subject)
	return err
}

func (f fixture) start(t *testing.T, h events.Handler, opts events.ConsumerOptions) (stop func()) {
	t.Helper()
	if opts.Group == "" {
		opts.Group = "tests"
	}
	opts.Streams = []string{stream}
	if opts.Block == 0 {
		opts.Block = 100 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- events.NewConsumer(f.pool, f.redis, quiet, h, opts).Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("consumer Run = %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func (f fixture) publish(t *testing.T, e events.Envelope) string {
	t.Helper()
	if e.ID == uuid.Nil {
		e.ID = uuid.New()
	}
	e.Type, e.Source, e.Time = "thing.happened", "test", time.Now()
	if e.Data == nil {
		e.Data = json.RawMessage(`{}`)
	}
	id, err := f.redis.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: e.Fields()}).Result()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (f fixture) effects(t *testing.T, subject string) int {
	t.Helper()
	var n int
	if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM effects WHERE subject = $1`, subject).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (f fixture) pendingCount(t *testing.T) int64 {
	t.Helper()
	p, err := f.redis.XPending(context.Background(), stream, "tests").Result()
	if err != nil {
		return -1
	}
	return p.Count
}

func TestEachEventTakesEffectOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	dup := uuid.New()
	f.publish(t, events.Envelope{ID: dup, Subject: "dup"})
	f.publish(t, events.Envelope{ID: dup, Subject: "dup"}) // the relay published it twice
	for i := range 20 {
		f.publish(t, events.Envelope{Subject: fmt.Sprint("s", i)})
	}
	// Two replicas share the group.
	f.start(t, record, events.ConsumerOptions{Name: "a"})
	f.start(t, record, events.ConsumerOptions{Name: "b"})
	eventually(t, "every event handled", func() bool { return f.effects(t, "s19") == 1 && f.effects(t, "dup") == 1 })
	eventually(t, "everything acknowledged", func() bool { return f.pendingCount(t) == 0 })
	var total int
	f.pool.QueryRow(context.Background(), `SELECT count(*) FROM effects`).Scan(&total)
	if total != 21 {
		t.Fatalf("%d effects, want 21 (20 events + 1 deduplicated)", total)
	}
}

// A consumer that died leaves entries delivered but unacknowledged: one whose
// transaction had committed (killed between commit and XACK) and one whose had not
// (killed before commit). The survivor takes both over and each ends with one effect.
func TestEntriesOfADeadConsumerAreTakenOverExactlyOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if err := f.redis.XGroupCreateMkStream(ctx, stream, "tests", "0").Err(); err != nil {
		t.Fatal(err)
	}
	committed, uncommitted := uuid.New(), uuid.New()
	f.publish(t, events.Envelope{ID: committed, Subject: "committed"})
	f.publish(t, events.Envelope{ID: uncommitted, Subject: "uncommitted"})
	// The dead consumer read both...
	if err := f.redis.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "tests", Consumer: "dead", Streams: []string{stream, ">"}}).Err(); err != nil {
		t.Fatal(err)
	}
	// ...and committed the first one's effects before dying.
	err := pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO inbox (event_id, stream, type) VALUES ($1, $2, 'thing.happened')`, committed, stream); err != nil {
			return err
		}
		return record(ctx, tx, events.Envelope{ID: committed, Subject: "committed"})
	})
	if err != nil {
		t.Fatal(err)
	}
	f.start(t, record, events.ConsumerOptions{Name: "survivor", ClaimIdle: 200 * time.Millisecond, RetryDelay: 50 * time.Millisecond})
	eventually(t, "both taken over and acknowledged", func() bool { return f.pendingCount(t) == 0 })
	if c, u := f.effects(t, "committed"), f.effects(t, "uncommitted"); c != 1 || u != 1 {
		t.Fatalf("effects: committed %d, uncommitted %d; want 1 and 1", c, u)
	}
}

// A consumer restarted under the same name takes back its own entries without waiting
// for ClaimIdle.
func TestRestartedConsumerRetakesItsOwnEntries(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.redis.XGroupCreateMkStream(ctx, stream, "tests", "0")
	f.publish(t, events.Envelope{Subject: "mine"})
	f.redis.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "tests", Consumer: "replica-1", Streams: []string{stream, ">"}})
	f.start(t, record, events.ConsumerOptions{Name: "replica-1", ClaimIdle: time.Hour, RetryDelay: 50 * time.Millisecond})
	eventually(t, "own entry handled", func() bool { return f.effects(t, "mine") == 1 && f.pendingCount(t) == 0 })
}

func TestFailingEventGoesToTheDLQAndReplays(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var broken atomic.Bool
	broken.Store(true)
	var tries atomic.Int32
	h := func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
		if e.Subject == "bad" && broken.Load() {
			tries.Add(1)
			return errors.New("the handler cannot cope")
		}
		return record(ctx, tx, e)
	}
	f.start(t, h, events.ConsumerOptions{RetryDelay: 20 * time.Millisecond})
	f.publish(t, events.Envelope{Subject: "before"})
	bad := uuid.New()
	f.publish(t, events.Envelope{ID: bad, Subject: "bad"})
	f.publish(t, events.Envelope{Subject: "after"})

	var dlq []events.DeadLetter
	eventually(t, "the bad event in the DLQ", func() bool {
		dlq, _ = events.ListDLQ(context.Background(), f.redis, 10)
		return len(dlq) == 1
	})
	d := dlq[0]
	if d.Stream != stream {
		t.Errorf("dead letter stream %q, want %q", d.Stream, stream)
	}
	if d.Group != "tests" {
		t.Errorf("dead letter group %q, want tests", d.Group)
	}
	if d.Deliveries != 5 {
		t.Errorf("dead letter after %d deliveries, want 5", d.Deliveries)
	}
	if d.EventID != bad.String() {
		t.Errorf("dead letter event %s, want %s", d.EventID, bad)
	}
	if d.Error != "the handler cannot cope" {
		t.Errorf("dead letter error %q, want %q", d.Error, "the handler cannot cope")
	}
	if d.Type != "thing.happened" {
		t.Errorf("dead letter type %q, want thing.happened", d.Type)
	}
	// Once per delivery, and perhaps once more inside the batch it first came in,
	// which its failure rolled back before the batch's entries were applied one by one.
	if n := tries.Load(); n != 5 && n != 6 {
		t.Fatalf("tried %d times, want 5 (6 if it came in a batch)", n)
	}
	for _, subject := range []string{"before", "after"} {
		if n := f.effects(t, subject); n != 1 {
			t.Fatalf("the other events did not flow: %d effects of %q, want 1", n, subject)
		}
	}
	eventually(t, "the bad entry acknowledged", func() bool { return f.pendingCount(t) == 0 })

	broken.Store(false) // the bug is fixed; replay
	if err := events.Replay(context.Background(), f.redis, d.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the replayed event handled", func() bool { return f.effects(t, "bad") == 1 })
	if dlq, _ := events.ListDLQ(context.Background(), f.redis, 10); len(dlq) != 0 {
		t.Fatalf("DLQ still has %v", dlq)
	}
}

func TestPoisonMessageGoesToTheDLQAtOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var calls atomic.Int32
	h := func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
		calls.Add(1)
		if e.Subject == "bad-data" {
			var v struct{ N int }
			return e.Decode(&v) // data is a JSON string, not an object
		}
		return record(ctx, tx, e)
	}
	f.start(t, h, events.ConsumerOptions{})
	ctx := context.Background()
	f.redis.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: map[string]any{"garbage": "yes"}})
	f.publish(t, events.Envelope{Subject: "bad-data", Data: json.RawMessage(`"a string"`)})
	f.publish(t, events.Envelope{Subject: "fine"})
	eventually(t, "the fine event handled", func() bool { return f.effects(t, "fine") == 1 })
	var dlq []events.DeadLetter
	eventually(t, "both poison entries in the DLQ", func() bool {
		dlq, _ = events.ListDLQ(ctx, f.redis, 10)
		return len(dlq) == 2
	})
	for _, d := range dlq {
		if d.Deliveries != 1 {
			t.Errorf("poison entry retried: %+v", d)
		}
	}
	// bad-data once and fine once; if they came in one batch, which bad-data's failure
	// rolled back, one of them once more before each was applied alone. Garbage never
	// reached the handler.
	if n := calls.Load(); n != 2 && n != 3 {
		t.Fatalf("handler called %d times", n)
	}
}

func TestStopFinishesTheEntryInHand(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	started, release := make(chan struct{}), make(chan struct{})
	h := func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
		close(started)
		<-release
		return record(ctx, tx, e)
	}
	stop := f.start(t, h, events.ConsumerOptions{})
	f.publish(t, events.Envelope{Subject: "slow"})
	<-started
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("the consumer stopped with an entry in hand")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	<-stopped
	if n := f.effects(t, "slow"); n != 1 {
		t.Errorf("the entry in hand was not finished: %d effects, want 1", n)
	}
	if n := f.pendingCount(t); n != 0 {
		t.Errorf("the entry in hand was not acknowledged: %d pending, want 0", n)
	}
}

// An outage of the consumer's own database is not the events' fault: it must not use
// up their deliveries and send them to the DLQ.
func TestDatabaseOutageDoesNotDeadLetter(t *testing.T) {
	t.Parallel()
	rdb, err := redisclient.Open(redistest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	direct, err := pgdb.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	if err := pgdb.Migrate(ctx, direct, schema, quiet); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(dbURL)
	proxy, err := tcpproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	u.Host = proxy.Addr()
	viaProxy, err := pgdb.Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer viaProxy.Close()

	f := fixture{pool: viaProxy, redis: rdb}
	f.start(t, record, events.ConsumerOptions{RetryDelay: 10 * time.Millisecond})
	proxy.Cut()
	f.publish(t, events.Envelope{Subject: "during-outage"})
	check := fixture{pool: direct, redis: rdb}
	eventually(t, "a delivery during the outage", func() bool {
		p, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: "tests", Start: "-", End: "+", Count: 1}).Result()
		return err == nil && len(p) == 1
	})
	// Far longer than five deliveries would take at this retry delay.
	time.Sleep(time.Second)
	proxy.Restore()
	eventually(t, "the event handled after the outage", func() bool { return check.effects(t, "during-outage") == 1 })
	if dlq, _ := events.ListDLQ(ctx, rdb, 10); len(dlq) != 0 {
		t.Fatalf("the outage sent %d entries to the DLQ: %+v", len(dlq), dlq)
	}
}

// The DLQ is trimmed as entries are added to it, to about its MAXLEN (10 000 by
// default), so that a flood of poison messages cannot fill Redis: a DLQ already past
// it is cut back at the next dead letter, oldest entries first.
func TestDLQIsTrimmedToItsMaxLen(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	const old = 12_000
	pipe := f.redis.Pipeline()
	for i := range old {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: events.DLQStream, Values: map[string]any{"old": i}})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	f.start(t, record, events.ConsumerOptions{})
	f.redis.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: map[string]any{"garbage": "yes"}})
	eventually(t, "the poison entry dead-lettered", func() bool {
		last, err := f.redis.XRevRangeN(ctx, events.DLQStream, "+", "-", 1).Result()
		return err == nil && len(last) == 1 && last[0].Values["garbage"] == "yes"
	})
	// Approximate trimming removes whole nodes of up to 100 entries, so it may keep
	// a node's worth more than asked.
	if n := f.redis.XLen(ctx, events.DLQStream).Val(); n < events.DefaultDLQMaxLen || n > events.DefaultDLQMaxLen+100 {
		t.Errorf("DLQ holds %d entries after a dead letter, want about 10 000", n)
	}
	first, err := f.redis.XRangeN(ctx, events.DLQStream, "-", "+", 1).Result()
	if err != nil {
		t.Fatalf("oldest DLQ entry: %v", err)
	}
	if len(first) != 1 {
		t.Fatalf("oldest DLQ entries %v, want 1", first)
	}
	if first[0].Values["old"] == "0" {
		t.Errorf("oldest DLQ entry %v, want the oldest ones (old=0) trimmed", first[0])
	}
}

func TestDLQMaxLenIsConfigurable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.start(t, record, events.ConsumerOptions{DLQMaxLen: 200})
	pipe := f.redis.Pipeline()
	for range 1_000 {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: map[string]any{"garbage": "yes"}})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every poison entry dead-lettered", func() bool { return f.pendingCount(t) == 0 && f.lag(t) == 0 })
	if n := f.redis.XLen(ctx, events.DLQStream).Val(); n < 200 || n > 300 {
		t.Errorf("DLQ holds %d entries after 1 000 dead letters, want about 200", n)
	}
}

// lag is how many entries of the stream the group has not been delivered yet.
func (f fixture) lag(t *testing.T) int64 {
	t.Helper()
	groups, err := f.redis.XInfoGroups(context.Background(), stream).Result()
	if err != nil || len(groups) != 1 {
		return -1
	}
	return groups[0].Lag
}

// publishAll XADDs the envelopes in one round trip, so that the consumer reads them
// as one batch.
func (f fixture) publishAll(t *testing.T, envs []events.Envelope) {
	t.Helper()
	pipe := f.redis.Pipeline()
	for _, e := range envs {
		if e.ID == uuid.Nil {
			e.ID = uuid.New()
		}
		e.Type, e.Source, e.Time = "thing.happened", "test", time.Now()
		if e.Data == nil {
			e.Data = json.RawMessage(`{}`)
		}
		pipe.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: e.Fields()})
	}
	if _, err := pipe.Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// transactions counts the transactions the handler ran in, by their Postgres ids.
type transactions struct {
	mu  sync.Mutex
	ids map[int64]bool
}

func (x *transactions) handler(next events.Handler) events.Handler {
	return func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
		var id int64
		if err := tx.QueryRow(ctx, `SELECT txid_current()`).Scan(&id); err != nil {
			return err
		}
		x.mu.Lock()
		if x.ids == nil {
			x.ids = map[int64]bool{}
		}
		x.ids[id] = true
		x.mu.Unlock()
		return next(ctx, tx, e)
	}
}

func (x *transactions) count() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.ids)
}

// Entries read together are applied in one transaction, each once: a commit per
// batch, not per event, is the consumer's throughput.
func TestABatchIsAppliedInOneTransactionEachEventOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if err := f.redis.XGroupCreateMkStream(ctx, stream, "tests", "0").Err(); err != nil {
		t.Fatal(err)
	}
	dup := uuid.New()
	envs := []events.Envelope{{ID: dup, Subject: "dup"}}
	for i := range 50 {
		envs = append(envs, events.Envelope{Subject: fmt.Sprint("s", i)})
	}
	envs = append(envs, events.Envelope{ID: dup, Subject: "dup"}) // published twice, in the same batch
	f.publishAll(t, envs)

	var txs transactions
	f.start(t, txs.handler(record), events.ConsumerOptions{})
	eventually(t, "everything acknowledged", func() bool { return f.pendingCount(t) == 0 && f.effects(t, "s49") == 1 })
	var total, inbox int
	f.pool.QueryRow(ctx, `SELECT count(*) FROM effects`).Scan(&total)
	f.pool.QueryRow(ctx, `SELECT count(*) FROM inbox`).Scan(&inbox)
	if total != 51 || inbox != 51 || f.effects(t, "dup") != 1 {
		t.Errorf("%d effects and %d inbox rows (dup %d); want 51 each, dup once", total, inbox, f.effects(t, "dup"))
	}
	if n := txs.count(); n != 1 {
		t.Errorf("52 entries read at once were applied in %d transactions, want 1", n)
	}
}

// One event that fails holds up none of the others in its batch: the batch is
// applied again entry by entry, the others commit, and the failing one alone is
// retried and dead-lettered; a malformed entry goes to the DLQ at once.
func TestAFailingEntryIsIsolatedFromItsBatch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if err := f.redis.XGroupCreateMkStream(ctx, stream, "tests", "0").Err(); err != nil {
		t.Fatal(err)
	}
	bad := uuid.New()
	var envs []events.Envelope
	for i := range 10 {
		envs = append(envs, events.Envelope{Subject: fmt.Sprint("s", i)})
		if i == 4 {
			envs = append(envs, events.Envelope{ID: bad, Subject: "bad"})
		}
	}
	f.publishAll(t, envs)
	if err := f.redis.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: map[string]any{"garbage": "yes"}}).Err(); err != nil {
		t.Fatal(err)
	}
	h := func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
		if e.Subject == "bad" {
			return errors.New("the handler cannot cope")
		}
		return record(ctx, tx, e)
	}
	f.start(t, h, events.ConsumerOptions{RetryDelay: 20 * time.Millisecond})

	var dlq []events.DeadLetter
	eventually(t, "the bad and the malformed entries in the DLQ", func() bool {
		dlq, _ = events.ListDLQ(ctx, f.redis, 10)
		return len(dlq) == 2
	})
	for i := range 10 {
		if n := f.effects(t, fmt.Sprint("s", i)); n != 1 {
			t.Errorf("s%d took effect %d times, want once", i, n)
		}
	}
	for _, d := range dlq {
		switch {
		case d.EventID == bad.String() && d.Deliveries == 5:
		case d.EventID == "" && d.Deliveries == 1: // the malformed one, at once
		default:
			t.Errorf("dead letter %+v", d)
		}
	}
	eventually(t, "everything acknowledged", func() bool { return f.pendingCount(t) == 0 })
}

// Without a database there is no inbox: each entry goes to the handler with a nil
// transaction and is acknowledged once it returns; a failure is retried and, at the
// end, dead-lettered, as with an inbox. A group started at the end of its stream
// skips what came before it.
func TestAConsumerWithoutADatabaseHandlesEachEntryAndStartsAtTheEnd(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.publish(t, events.Envelope{Subject: "before the group"})
	var mu sync.Mutex
	seen := map[string]int{}
	var txs atomic.Int32
	h := func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
		if tx != nil {
			txs.Add(1)
		}
		mu.Lock()
		seen[e.Subject]++
		mu.Unlock()
		if e.Subject == "bad" {
			return errors.New("the handler cannot cope")
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	c := events.NewConsumer(nil, f.redis, quiet, h, events.ConsumerOptions{Group: "tests", Streams: []string{stream},
		StartAtEnd: true, Block: 100 * time.Millisecond, RetryDelay: 20 * time.Millisecond})
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, "the group", func() bool {
		groups, _ := f.redis.XInfoGroups(context.Background(), stream).Result()
		return len(groups) == 1
	})
	f.publishAll(t, []events.Envelope{{Subject: "one"}, {Subject: "bad"}, {Subject: "two"}})

	eventually(t, "the bad event in the DLQ", func() bool {
		dlq, _ := events.ListDLQ(context.Background(), f.redis, 10)
		return len(dlq) == 1 && dlq[0].Deliveries == 5
	})
	eventually(t, "everything acknowledged", func() bool { return f.pendingCount(t) == 0 })
	mu.Lock()
	defer mu.Unlock()
	if seen["one"] != 1 || seen["two"] != 1 || seen["bad"] != 5 || seen["before the group"] != 0 {
		t.Errorf("handled %v; want one and two once, bad five times, nothing from before the group", seen)
	}
	if n := txs.Load(); n != 0 {
		t.Errorf("the handler was given a transaction %d times, without a database", n)
	}
}

// A replica gone for good (a container recreated under a new name) leaves its name in
// the group; once its entries are taken over and it has been idle for ForgetAfter,
// the survivors delete it. One with entries still pending is kept until they are
// taken, so nothing it held is lost.
func TestConsumersGoneForGoodAreForgotten(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if err := f.redis.XGroupCreateMkStream(ctx, stream, "tests", "0").Err(); err != nil {
		t.Fatal(err)
	}
	f.redis.XGroupCreateConsumer(ctx, stream, "tests", "gone-idle")
	f.publish(t, events.Envelope{Subject: "held"})
	if err := f.redis.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "tests", Consumer: "gone-holding", Streams: []string{stream, ">"}}).Err(); err != nil {
		t.Fatal(err)
	}
	names := func() []string {
		cs, err := f.redis.XInfoConsumers(ctx, stream, "tests").Result()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range cs {
			out = append(out, c.Name)
		}
		return out
	}
	f.start(t, record, events.ConsumerOptions{Name: "survivor", ClaimIdle: 300 * time.Millisecond,
		RetryDelay: 50 * time.Millisecond, ForgetAfter: 200 * time.Millisecond, Block: 50 * time.Millisecond})
	eventually(t, "the gone consumers forgotten and the held entry handled", func() bool {
		n := names()
		return len(n) == 1 && n[0] == "survivor" && f.effects(t, "held") == 1
	})
}
