package events

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// dlqPrefix marks the fields the DLQ adds to an entry's own.
const dlqPrefix = "dlq_"

// DeadLetter is an entry in the DLQ.
type DeadLetter struct {
	ID         string // the DLQ entry's id
	Stream     string // where it came from
	EntryID    string // its id there
	Group      string // the group that gave up on it
	Error      string
	Deliveries int64
	Time       time.Time
	Type       string // the event type, when it had one
	EventID    string
}

// ListDLQ returns up to count DLQ entries, oldest first.
func ListDLQ(ctx context.Context, rdb *redis.Client, count int64) ([]DeadLetter, error) {
	msgs, err := rdb.XRangeN(ctx, DLQStream, "-", "+", count).Result()
	if err != nil {
		return nil, err
	}
	out := make([]DeadLetter, 0, len(msgs))
	for _, m := range msgs {
		str := func(k string) string { s, _ := m.Values[k].(string); return s }
		d := DeadLetter{ID: m.ID, Stream: str(dlqPrefix + "stream"), EntryID: str(dlqPrefix + "entry_id"),
			Group: str(dlqPrefix + "group"), Error: str(dlqPrefix + "error"), Type: str("type"), EventID: str("id")}
		d.Deliveries, _ = strconv.ParseInt(str(dlqPrefix+"deliveries"), 10, 64)
		d.Time, _ = time.Parse(time.RFC3339Nano, str(dlqPrefix+"time"))
		out = append(out, d)
	}
	return out, nil
}

// Replay puts a DLQ entry back on its stream, as it was, and removes it from the DLQ,
// in one MULTI. Every group on that stream sees it again; groups that had handled it
// find it in their inbox and skip it.
func Replay(ctx context.Context, rdb *redis.Client, id string) error {
	msgs, err := rdb.XRange(ctx, DLQStream, id, id).Result()
	if err != nil {
		return err
	}
	if len(msgs) == 0 {
		return fmt.Errorf("no DLQ entry %s", id)
	}
	original := map[string]any{}
	stream := ""
	for k, v := range msgs[0].Values {
		if k == dlqPrefix+"stream" {
			stream, _ = v.(string)
		}
		if !strings.HasPrefix(k, dlqPrefix) {
			original[k] = v
		}
	}
	if stream == "" || len(original) == 0 {
		return fmt.Errorf("DLQ entry %s does not say where it came from", id)
	}
	_, err = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: original})
		p.XDel(ctx, DLQStream, id)
		return nil
	})
	return err
}
