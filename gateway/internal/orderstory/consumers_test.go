package orderstory

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/pkg/events"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
)

// openRedis is a client of a Redis database of the test's own.
func openRedis(t *testing.T) *redis.Client {
	t.Helper()
	rdb, err := redisclient.Open(redistest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// publish adds an event to stream as the outbox relay does, and returns it with its
// entry id.
func publish(t *testing.T, rdb *redis.Client, stream, typ string) (events.Envelope, string) {
	t.Helper()
	e := events.Envelope{ID: uuid.New(), Type: typ, Source: "test", Subject: uuid.NewString(), Time: time.Now().UTC(), Data: []byte(`{}`)}
	entry, err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: e.Fields()}).Result()
	if err != nil {
		t.Fatal(err)
	}
	return e, entry
}

// published is e as the story has it once the relay published it, at.
func published(e events.Envelope, stream string, at time.Time) Event {
	return Event{ID: e.ID, Stream: stream, Type: e.Type, Subject: e.Subject, Time: e.Time, PublishedAt: &at, Consumers: []Consumer{}}
}

// A stream with two groups: "mailer" has read both entries and acknowledged the
// first, so the second is pending with it; "cache" has read and acknowledged the
// first only, so the second is not delivered to it.
func TestConsumersAreReadFromTheGroupsOnTheStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := openRedis(t)
	const stream = "events.test"
	for _, g := range []string{"mailer", "cache"} {
		if err := rdb.XGroupCreateMkStream(ctx, stream, g, "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	acked, ackedEntry := publish(t, rdb, stream, "thing.done")
	held, heldEntry := publish(t, rdb, stream, "thing.redone")
	read := func(group, consumer string, n int64) {
		t.Helper()
		got, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: consumer, Streams: []string{stream, ">"}, Count: n}).Result()
		if err != nil {
			t.Fatalf("XREADGROUP %s: %v", group, err)
		}
		if len(got[0].Messages) != int(n) {
			t.Fatalf("XREADGROUP %s: %v; want %d messages", group, got, n)
		}
	}
	read("mailer", "mailer-1", 2)
	read("cache", "cache-1", 1)
	for _, g := range []string{"mailer", "cache"} {
		if err := rdb.XAck(ctx, stream, g, ackedEntry).Err(); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC()
	unpublished := Event{ID: uuid.New(), Stream: stream, Type: "thing.waiting", Time: now, Consumers: []Consumer{}}
	elsewhere := Event{ID: uuid.New(), Stream: "events.none", Type: "thing.lost", Time: now, PublishedAt: &now, Consumers: []Consumer{}}
	evs := []Event{published(acked, stream, now), published(held, stream, now), unpublished, elsewhere}

	if err := fillConsumers(ctx, rdb, evs); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		entry     string
		consumers []Consumer
	}{
		{ackedEntry, []Consumer{{Group: "mailer", State: Consumed}, {Group: "cache", State: Consumed}}},
		{heldEntry, []Consumer{{Group: "mailer", State: Pending, Consumer: "mailer-1", Deliveries: 1}, {Group: "cache", State: NotDelivered}}},
	}
	for i, w := range want {
		ev := evs[i]
		if ev.EntryID == nil {
			t.Errorf("%s: no entry; want %s", ev.Type, w.entry)
		} else if *ev.EntryID != w.entry {
			t.Errorf("%s: entry %s; want %s", ev.Type, *ev.EntryID, w.entry)
		}
		got := map[string]Consumer{}
		for _, c := range ev.Consumers {
			got[c.Group] = c
		}
		if len(ev.Consumers) != len(w.consumers) {
			t.Errorf("%s: consumers %+v; want %+v", ev.Type, ev.Consumers, w.consumers)
		}
		for _, c := range w.consumers {
			if got[c.Group] != c {
				t.Errorf("%s in %s: %+v; want %+v", ev.Type, c.Group, got[c.Group], c)
			}
		}
	}
	// Not published yet, or on a stream that is not there: no entry, no consumers.
	for _, ev := range evs[2:] {
		if ev.EntryID != nil || len(ev.Consumers) != 0 {
			t.Errorf("%s: entry %v, consumers %+v; want neither", ev.Type, ev.EntryID, ev.Consumers)
		}
	}

	t.Run("the entry is looked for between the event's time and its publication", func(t *testing.T) {
		// Published an hour before what its row says: outside the window, not found.
		early := time.Now().Add(time.Hour)
		late := published(acked, stream, early)
		late.Time = early
		evs := []Event{late}
		if err := fillConsumers(ctx, rdb, evs); err != nil {
			t.Errorf("fillConsumers: %v", err)
		} else if id := evs[0].EntryID; id != nil {
			t.Errorf("entry %s; want none outside the window", *id)
		}
	})

	t.Run("the window is read a page at a time, newest first", func(t *testing.T) {
		// The event's entry is the oldest of more than a page of entries in its window.
		const busy = "events.busy"
		first, firstEntry := publish(t, rdb, busy, "thing.first")
		for range entryPage + 10 {
			publish(t, rdb, busy, "thing.noise")
		}
		entry, found, err := findEntry(ctx, rdb, busy, first.ID, first.Time.Add(-entrySlack), time.Now().Add(entrySlack))
		if err != nil || !found || entry != firstEntry {
			t.Errorf("findEntry = %q, %t, %v; want %s", entry, found, err, firstEntry)
		}
	})
}

func TestEntryIDsCompareAsNumbers(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"5-0", "5-0", true},
		{"5-1", "5-10", true},
		{"5-10", "5-9", false},
		{"10-0", "9-99", false},
		{"9-99", "10-0", true},
		{"1-0", "0-0", false},
	} {
		if got, err := entryAtOrBefore(c.a, c.b); err != nil || got != c.want {
			t.Errorf("%s at or before %s = %t, %v; want %t", c.a, c.b, got, err, c.want)
		}
	}
	if _, err := entryAtOrBefore("5", "5-0"); err == nil {
		t.Error("a malformed id compared")
	}
}
