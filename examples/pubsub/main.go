// Command pubsub shows that Redis Pub/Sub is fire and forget: a message reaches the
// subscribers connected when it is published, and nobody else, ever.
// It talks to the Redis in REDIS_URL (default redis://127.0.0.1:6379/0), on a channel
// examples:pubsub:prices:<random> and the stream examples:pubsub:stream, which it
// deletes when done.
// README.md explains it.
package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
)

func main() {
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	if err := run(context.Background(), url, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pubsub:", err)
		os.Exit(1)
	}
}

// subscribe subscribes to channel and waits for Redis to confirm it. SUBSCRIBE is sent
// asynchronously; a message published before the confirmation may not reach us.
func subscribe(ctx context.Context, rdb *redis.Client, channel string) (*redis.PubSub, error) {
	ps := rdb.Subscribe(ctx, channel)
	if _, err := ps.Receive(ctx); err != nil {
		ps.Close()
		return nil, fmt.Errorf("subscribe %s: %w", channel, err)
	}
	return ps, nil
}

// next is the next message ps receives, waiting at most timeout.
func next(ctx context.Context, ps *redis.PubSub, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m, err := ps.ReceiveMessage(ctx)
	if err != nil {
		return "", err
	}
	return m.Payload, nil
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
	// Channels belong to the whole server, not to the database in the URL, so a
	// random suffix keeps two runs from hearing each other.
	channel := "examples:pubsub:prices:" + rand.Text()
	const stream = "examples:pubsub:stream"
	if err := rdb.Del(ctx, stream).Err(); err != nil {
		return err
	}
	defer rdb.Del(context.WithoutCancel(ctx), stream)

	say("1. Subscriber A connects; subscriber B is not running yet.")
	a, err := subscribe(ctx, rdb, channel)
	if err != nil {
		return err
	}
	defer a.Close()
	n, err := rdb.Publish(ctx, channel, "price of lamp: 30").Result()
	if err != nil {
		return err
	}
	say("   PUBLISH %q → Redis says %d subscriber received it.", "price of lamp: 30", n)

	say("\n2. Subscriber B connects, then a second message is published.")
	b, err := subscribe(ctx, rdb, channel)
	if err != nil {
		return err
	}
	defer b.Close()
	if n, err = rdb.Publish(ctx, channel, "price of lamp: 25").Result(); err != nil {
		return err
	}
	say("   PUBLISH %q → %d subscribers received it.", "price of lamp: 25", n)

	for _, s := range []struct {
		name string
		ps   *redis.PubSub
		want int
	}{{"A", a, 2}, {"B", b, 1}} {
		for range s.want {
			m, err := next(ctx, s.ps, 2*time.Second)
			if err != nil {
				return err
			}
			say("   subscriber %s got %q", s.name, m)
		}
	}
	say("   B never gets the first price: Redis kept no copy of it. Messages reach one")
	say("   connection in the order published, so B's first one being the second price")
	say("   proves it.")

	say("\n3. The same with a stream: XADD before any reader exists.")
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"price", "lamp: 30"}}).Err(); err != nil {
		return err
	}
	entries, err := rdb.XRange(ctx, stream, "-", "+").Result()
	if err != nil {
		return err
	}
	say("   a reader that comes later still finds it: XRANGE → %d entry, price %v", len(entries), entries[0].Values["price"])
	say("\nBazaar's events go to streams; Pub/Sub carries only hints (README.md).")
	return nil
}
