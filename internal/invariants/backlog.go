package invariants

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// Backlog is the work a stack still has in hand. The rules hold for a stack at
// rest: poll ReadBacklog until it is Zero (and stays so a moment) before judging.
type Backlog struct {
	Unsettled   int // orders not confirmed or cancelled, or whose saga is not done
	Unpublished int // outbox rows not yet published, over the four outboxes
	Unhandled   int // stream entries the groups have not acknowledged or not yet been delivered
	Queued      int // notifications neither sent nor failed
	Charging    int // payments pending: charges interrupted that payments has yet to settle
}

// Zero reports whether nothing is in hand.
func (b Backlog) Zero() bool { return b == Backlog{} }

func (b Backlog) String() string {
	return fmt.Sprintf("%d orders unsettled, %d payments pending, %d outbox rows unpublished, %d stream entries unhandled, %d e-mails queued",
		b.Unsettled, b.Charging, b.Unpublished, b.Unhandled, b.Queued)
}

// ReadBacklog counts what the stack at dbs (all five databases) and redisURL still
// has to do. It fails when a server cannot be read.
func ReadBacklog(ctx context.Context, dbs Databases, redisURL string) (Backlog, error) {
	var b Backlog
	count := func(url, sql string, n *int) error {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		var k int
		if err := conn.QueryRow(ctx, sql).Scan(&k); err != nil {
			return err
		}
		*n += k
		return nil
	}
	if err := count(dbs.Orders, `SELECT count(*) FROM orders o LEFT JOIN sagas s ON s.order_id = o.id
		WHERE o.status NOT IN ('confirmed', 'cancelled') OR s.state IS DISTINCT FROM 'done'`, &b.Unsettled); err != nil {
		return b, fmt.Errorf("orders database: %w", err)
	}
	if dbs.Payments != "" {
		if err := count(dbs.Payments, `SELECT count(*) FROM payments WHERE status = 'pending'`, &b.Charging); err != nil {
			return b, fmt.Errorf("payments database: %w", err)
		}
	}
	for _, db := range []struct{ name, url string }{
		{"users", dbs.Users}, {"inventory", dbs.Inventory}, {"payments", dbs.Payments}, {"orders", dbs.Orders},
	} {
		if db.url == "" {
			continue
		}
		if err := count(db.url, `SELECT count(*) FROM outbox WHERE published_at IS NULL`, &b.Unpublished); err != nil {
			return b, fmt.Errorf("%s database: %w", db.name, err)
		}
	}
	if dbs.Notifications != "" {
		if err := count(dbs.Notifications, `SELECT count(*) FROM notifications WHERE status = 'queued'`, &b.Queued); err != nil {
			return b, fmt.Errorf("notifications database: %w", err)
		}
	}
	if redisURL == "" {
		return b, nil
	}
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return b, err
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	for _, g := range Groups {
		for _, s := range g.Streams {
			st, err := groupState(ctx, rdb, s, g.Name)
			if err != nil {
				return b, err
			}
			b.Unhandled += int(st.pending)
			if !st.exists || compareIDs(st.lastDelivered, st.lastEntry) < 0 {
				b.Unhandled += max(int(st.lag), 1)
			}
		}
	}
	return b, nil
}
