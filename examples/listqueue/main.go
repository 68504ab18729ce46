// Command listqueue shows a work queue on a Redis list: first the naive one, which
// loses the item of a worker that crashes, then the reliable one, which does not.
// It talks to the Redis in REDIS_URL (default redis://127.0.0.1:6379/0), under keys
// examples:listqueue:*, which it deletes when done. README.md explains it.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

func main() {
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	if err := run(context.Background(), url, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "listqueue:", err)
		os.Exit(1)
	}
}

// run tells the story step by step on out.
func run(ctx context.Context, redisURL string, out io.Writer) error {
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }

	const queue = "examples:listqueue:jobs"
	keys := []string{queue, processing(queue, "worker-a"), processing(queue, "worker-b")}
	// A run that was interrupted may have left items behind.
	if err := rdb.Del(ctx, keys...).Err(); err != nil {
		return err
	}
	defer rdb.Del(context.WithoutCancel(ctx), keys...)

	say("1. The naive queue: LPUSH to produce, BRPOP to take.")
	if err := push(ctx, rdb, queue, "order-1"); err != nil {
		return err
	}
	say("   producer: LPUSH %s order-1", queue)
	item, err := takeNaive(ctx, rdb, queue, time.Second)
	if err != nil {
		return err
	}
	say("   worker-a: BRPOP took %s, then crashed before processing it.", item)
	n, err := rdb.Exists(ctx, keys...).Result()
	if err != nil {
		return err
	}
	say("   Redis now holds %d keys of this queue: %s is gone, and nobody will ever process it.", n, item)

	say("\n2. The reliable queue: BLMOVE into a processing list, LREM to acknowledge.")
	if err := push(ctx, rdb, queue, "order-2"); err != nil {
		return err
	}
	say("   producer: LPUSH %s order-2", queue)
	if item, err = take(ctx, rdb, queue, "worker-a", time.Second); err != nil {
		return err
	}
	say("   worker-a: BLMOVE moved %s into %s, then crashed before processing it.", item, processing(queue, "worker-a"))
	held, err := rdb.LRange(ctx, processing(queue, "worker-a"), 0, -1).Result()
	if err != nil {
		return err
	}
	say("   %s holds %v: the item is stuck, but not lost.", processing(queue, "worker-a"), held)
	moved, err := recoverWorker(ctx, rdb, queue, "worker-a")
	if err != nil {
		return err
	}
	say("   recovery: worker-a is known to be dead, so its %d item(s) go back onto the queue (LMOVE).", moved)
	if item, err = take(ctx, rdb, queue, "worker-b", time.Second); err != nil {
		return err
	}
	say("   worker-b: took %s and processed it.", item)
	if err := ack(ctx, rdb, queue, "worker-b", item); err != nil {
		return err
	}
	say("   worker-b: LREM acknowledged %s; nothing is left in any list.", item)

	say("\n3. The normal path: two workers share six orders; each is processed once.")
	for i := 3; i <= 8; i++ {
		if err := push(ctx, rdb, queue, fmt.Sprintf("order-%d", i)); err != nil {
			return err
		}
	}
	var mu sync.Mutex
	done := map[string][]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, w := range []string{"worker-a", "worker-b"} {
		wg.Go(func() {
			// Each worker stops once the queue has been empty for a second.
			errs <- work(ctx, rdb, queue, w, time.Second, func(item string) {
				mu.Lock()
				defer mu.Unlock()
				done[w] = append(done[w], item)
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	for _, w := range []string{"worker-a", "worker-b"} {
		slices.Sort(done[w])
		say("   %s processed [%s]", w, strings.Join(done[w], " "))
	}
	say("   (The work takes no time here, so whichever worker is free takes the next order;")
	say("   one may get them all.)")

	say("\nWho decides that worker-a is dead? Nothing in a list says. Bazaar's events")
	say("use Redis Streams with consumer groups instead: examples/listqueue/README.md.")
	return nil
}
