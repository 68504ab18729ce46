package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
)

// newClient is a client of a fresh logical database of its own, flushed when t ends.
func newClient(t *testing.T) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(redistest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func TestNaiveQueueLosesTheItemOfAWorkerThatCrashes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := newClient(t)
	if err := push(ctx, rdb, "jobs", "order-1"); err != nil {
		t.Fatal(err)
	}

	item, err := takeNaive(ctx, rdb, "jobs", time.Second)
	if err != nil || item != "order-1" {
		t.Fatalf("take = %q, %v; want order-1", item, err)
	}
	// The worker crashes here: it returns without processing item, and its memory,
	// the only place the item still was, is gone.

	// Nothing is left for another worker or a recovery step to find: the database
	// (this test's own) is empty. A reliable take would have left the item in a list.
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Fatalf("keys after the crash = %v; want none: the naive queue should have lost the item", keys)
	}
}

func TestReliableQueueGivesACrashedWorkersItemToAnotherAfterRecovery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := newClient(t)
	if err := push(ctx, rdb, "jobs", "order-1"); err != nil {
		t.Fatal(err)
	}

	item, err := take(ctx, rdb, "jobs", "worker-a", time.Second)
	if err != nil || item != "order-1" {
		t.Fatalf("worker-a's take = %q, %v; want order-1", item, err)
	}
	// worker-a crashes here, before ack. Until someone recovers it, the item is in
	// worker-a's processing list and not on the queue, so worker-b cannot take it.
	if held := lrange(t, rdb, processing("jobs", "worker-a")); !slices.Equal(held, []string{"order-1"}) {
		t.Fatalf("worker-a's processing list = %v; want [order-1]", held)
	}
	if queued := lrange(t, rdb, "jobs"); len(queued) != 0 {
		t.Fatalf("queue = %v; want it empty while worker-a holds the item", queued)
	}

	moved, err := recoverWorker(ctx, rdb, "jobs", "worker-a")
	if err != nil || moved != 1 {
		t.Fatalf("recoverWorker = %d, %v; want 1 item moved", moved, err)
	}

	var processed []string
	if err := work(ctx, rdb, "jobs", "worker-b", time.Second, func(item string) {
		processed = append(processed, item)
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(processed, []string{"order-1"}) {
		t.Fatalf("worker-b processed %v; want [order-1]", processed)
	}
	// Acknowledged: no list holds it any more.
	if keys, _ := rdb.Keys(ctx, "*").Result(); len(keys) != 0 {
		t.Fatalf("keys after worker-b = %v; want none", keys)
	}
}

func TestReliableQueueProcessesEachItemOnceInTheNormalPath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := newClient(t)
	const items = 200
	for i := range items {
		if err := push(ctx, rdb, "jobs", fmt.Sprintf("order-%d", i)); err != nil {
			t.Fatal(err)
		}
	}

	// Three workers race for the same items; each stops once the queue has been empty
	// for a second.
	var mu sync.Mutex
	count := map[string]int{}
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			err := work(ctx, rdb, "jobs", fmt.Sprintf("worker-%d", w), time.Second, func(item string) {
				mu.Lock()
				defer mu.Unlock()
				count[item]++
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	if len(count) != items {
		t.Errorf("%d distinct items processed; want %d", len(count), items)
	}
	for item, n := range count {
		if n != 1 {
			t.Errorf("%s processed %d times; want once", item, n)
		}
	}
	if keys, _ := rdb.Keys(ctx, "*").Result(); len(keys) != 0 {
		t.Errorf("keys left = %v; want none: every item acknowledged", keys)
	}
}

func TestRunTellsTheStory(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), redistest.New(t), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"order-1 is gone", "holds [order-2]", "worker-b: took order-2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func lrange(t *testing.T, rdb *redis.Client, key string) []string {
	t.Helper()
	v, err := rdb.LRange(context.Background(), key, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return v
}
