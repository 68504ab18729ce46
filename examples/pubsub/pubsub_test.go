package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
)

// setup is a client of a fresh database and a channel no one else uses. Pub/Sub
// channels are server-wide whatever the database, hence the random name.
func setup(t *testing.T) (*redis.Client, string) {
	t.Helper()
	opt, err := redis.ParseURL(redistest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb, "examples:pubsub:test:" + rand.Text()
}

func mustSubscribe(t *testing.T, rdb *redis.Client, channel string) *redis.PubSub {
	t.Helper()
	ps, err := subscribe(context.Background(), rdb, channel)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	return ps
}

func mustPublish(t *testing.T, rdb *redis.Client, channel, msg string, wantReceivers int64) {
	t.Helper()
	n, err := rdb.Publish(context.Background(), channel, msg).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n != wantReceivers {
		t.Fatalf("PUBLISH %q reached %d subscribers; want %d", msg, n, wantReceivers)
	}
}

// waitForSubscribers polls PUBSUB NUMSUB until channel has n subscribers, or fails
// after a deadline.
func waitForSubscribers(t *testing.T, rdb *redis.Client, channel string, n int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		counts, err := rdb.PubSubNumSub(context.Background(), channel).Result()
		if err != nil {
			t.Fatal(err)
		}
		if counts[channel] == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still has %d subscribers after 10s; want %d", channel, counts[channel], n)
		}
	}
}

// mustReceive checks the next messages ps receives. Redis delivers a connection's
// messages in the order they were published, so if a subscriber's first message is
// the second one published, it never got the first: no waiting for "nothing" needed.
func mustReceive(t *testing.T, ps *redis.PubSub, who string, want ...string) {
	t.Helper()
	for _, w := range want {
		got, err := next(context.Background(), ps, 2*time.Second)
		if err != nil {
			t.Fatalf("%s: receive: %v (want %q)", who, err, w)
		}
		if got != w {
			t.Fatalf("%s received %q; want %q", who, got, w)
		}
	}
}

func TestASubscriberNotConnectedWhenAMessageIsPublishedNeverGetsIt(t *testing.T) {
	t.Parallel()
	rdb, channel := setup(t)

	early := mustSubscribe(t, rdb, channel)
	mustPublish(t, rdb, channel, "first", 1) // only early is listening
	late := mustSubscribe(t, rdb, channel)
	mustPublish(t, rdb, channel, "second", 2)

	mustReceive(t, early, "the connected subscriber", "first", "second")
	mustReceive(t, late, "the late subscriber", "second") // "first" was never kept for it
}

func TestASubscriberThatReconnectsMissesWhatWasPublishedWhileAway(t *testing.T) {
	t.Parallel()
	rdb, channel := setup(t)

	sub := mustSubscribe(t, rdb, channel)
	mustPublish(t, rdb, channel, "before", 1)
	mustReceive(t, sub, "the subscriber", "before")

	// The subscriber's process restarts. Redis forgets a subscription with its
	// connection: there is no durable subscriber to come back to.
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	// Close returns once the client has hung up, which Redis notices a moment later.
	waitForSubscribers(t, rdb, channel, 0)
	mustPublish(t, rdb, channel, "while away", 0) // delivered to nobody, and dropped

	again := mustSubscribe(t, rdb, channel)
	mustPublish(t, rdb, channel, "after", 1)
	mustReceive(t, again, "the resubscribed subscriber", "after")
}

func TestAStreamKeepsWhatWasAddedBeforeAnyReader(t *testing.T) {
	t.Parallel()
	rdb, _ := setup(t)
	ctx := context.Background()

	// The contrast: XADD stores the entry. A reader that starts later, from the
	// beginning ("0"), gets it.
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: "prices", Values: []string{"msg", "first"}}).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{"prices", "0"}, Count: 10, Block: -1}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[0].Messages) != 1 || got[0].Messages[0].Values["msg"] != "first" {
		t.Fatalf("XREAD from 0 = %v; want the one entry added before", got)
	}
}

func TestRunTellsTheStory(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), redistest.New(t), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`subscriber A got "price of lamp: 30"`,
		`subscriber B got "price of lamp: 25"`,
		"XRANGE → 1 entry",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
