package orderstory

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// How an event's entry is looked for on its stream. The relay adds it after marking
// the row published (in the same transaction), so the entry's id, Redis's clock in
// milliseconds, is at or after published_at, and after the event's time: entrySlack
// on both sides of [time, published_at] covers the clocks of Postgres, Redis and the
// service disagreeing a little. The window is read newest first, where the entry is
// (a republished event's latest copy, too), entryPage entries at a time, and no more
// than entryScanLimit of them: on a busy stream an event that waited long in the
// outbox has many entries in its window, and a story is not worth reading a stream
// whole.
const (
	entrySlack     = 5 * time.Second
	entryPage      = 200
	entryScanLimit = 20 * entryPage
)

// streamReader is what reading the consumers takes from Redis.
type streamReader interface {
	XInfoGroups(ctx context.Context, stream string) *redis.XInfoGroupsCmd
	XRevRangeN(ctx context.Context, stream, end, start string, count int64) *redis.XMessageSliceCmd
	XPendingExt(ctx context.Context, a *redis.XPendingExtArgs) *redis.XPendingExtCmd
}

// fillConsumers finds each published event's entry on its stream and what every
// consumer group there did with it, filling in EntryID and Consumers. It stops at the
// first Redis error, leaving the events it did not reach as they were.
func fillConsumers(ctx context.Context, rdb streamReader, events []Event) error {
	groups := map[string][]redis.XInfoGroup{}
	for i := range events {
		ev := &events[i]
		if ev.PublishedAt == nil {
			continue // still in the outbox: on no stream yet
		}
		gs, ok := groups[ev.Stream]
		if !ok {
			var err error
			if gs, err = groupsOf(ctx, rdb, ev.Stream); err != nil {
				return err
			}
			groups[ev.Stream] = gs
		}
		entry, found, err := findEntry(ctx, rdb, ev.Stream, ev.ID, ev.Time.Add(-entrySlack), ev.PublishedAt.Add(entrySlack))
		if err != nil {
			return err
		}
		if !found {
			continue
		}
		ev.EntryID = &entry
		for _, g := range gs {
			c, err := consumerOf(ctx, rdb, ev.Stream, g, entry)
			if err != nil {
				return err
			}
			ev.Consumers = append(ev.Consumers, c)
		}
	}
	return nil
}

// groupsOf lists the consumer groups on stream (XINFO GROUPS); none when the stream
// does not exist.
func groupsOf(ctx context.Context, rdb streamReader, stream string) ([]redis.XInfoGroup, error) {
	gs, err := rdb.XInfoGroups(ctx, stream).Result()
	if err != nil && strings.Contains(err.Error(), "no such key") {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("consumer groups of %s: %w", stream, err)
	}
	return gs, nil
}

// findEntry looks for the entry of event id on stream among those added between from
// and to (XREVRANGE, newest first), by its envelope's id field (events.Envelope), and
// returns its stream id.
func findEntry(ctx context.Context, rdb streamReader, stream string, id uuid.UUID, from, to time.Time) (string, bool, error) {
	want := id.String()
	// A bare millisecond is the whole millisecond: from its first sequence number
	// as the start, to its last as the end.
	end, start := strconv.FormatInt(to.UnixMilli(), 10), strconv.FormatInt(from.UnixMilli(), 10)
	for read := 0; read < entryScanLimit; read += entryPage {
		msgs, err := rdb.XRevRangeN(ctx, stream, end, start, entryPage).Result()
		if err != nil {
			return "", false, fmt.Errorf("entries of %s: %w", stream, err)
		}
		for _, m := range msgs {
			if v, _ := m.Values["id"].(string); v == want {
				return m.ID, true, nil
			}
		}
		if len(msgs) < entryPage {
			return "", false, nil
		}
		end = "(" + msgs[len(msgs)-1].ID // the next page: strictly older
	}
	return "", false, nil
}

// consumerOf says where entry is in group g: past the group's last delivered entry it
// is not delivered; at or before it, pending while the group's pending list has it
// (XPENDING for that one id: the replica holding it, and how often it was delivered),
// else consumed.
func consumerOf(ctx context.Context, rdb streamReader, stream string, g redis.XInfoGroup, entry string) (Consumer, error) {
	c := Consumer{Group: g.Name}
	delivered, err := entryAtOrBefore(entry, g.LastDeliveredID)
	if err != nil {
		return Consumer{}, err
	}
	if !delivered {
		c.State = NotDelivered
		return c, nil
	}
	pending, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: g.Name, Start: entry, End: entry, Count: 1}).Result()
	if err != nil {
		return Consumer{}, fmt.Errorf("pending entries of %s in %s: %w", stream, g.Name, err)
	}
	if len(pending) == 0 {
		c.State = Consumed
		return c, nil
	}
	c.State, c.Consumer, c.Deliveries = Pending, pending[0].Consumer, pending[0].RetryCount
	return c, nil
}

// entryAtOrBefore compares two stream ids, <milliseconds>-<sequence>, as numbers.
func entryAtOrBefore(a, b string) (bool, error) {
	am, as, err := parseEntryID(a)
	if err != nil {
		return false, err
	}
	bm, bs, err := parseEntryID(b)
	if err != nil {
		return false, err
	}
	return am < bm || (am == bm && as <= bs), nil
}

func parseEntryID(id string) (ms, seq uint64, err error) {
	m, s, ok := strings.Cut(id, "-")
	if ms, err = strconv.ParseUint(m, 10, 64); err == nil && ok {
		seq, err = strconv.ParseUint(s, 10, 64)
	}
	if err != nil || !ok {
		return 0, 0, fmt.Errorf("stream entry id %q: want <milliseconds>-<sequence>", id)
	}
	return ms, seq, nil
}
