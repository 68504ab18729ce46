package productcache

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/pkg/events"
	"github.com/bazaar-shop/bazaar/services/inventory/inventoryevents"
)

// Stream is the inventory service's event stream, and Group the gateway's consumer
// group on it.
const (
	Stream = inventoryevents.Stream
	Group  = "gateway"
)

// InvalidatorOptions tune an Invalidator; zero values take the defaults.
type InvalidatorOptions struct {
	// Name is this gateway replica within the group. It should stay the same across
	// restarts, so that a restarted replica takes back at once the entries it had
	// read and not acknowledged.
	Name string
	// Block is how long one XREADGROUP waits for entries (default 2s); it bounds how
	// long a stop takes.
	Block time.Duration
	// ClaimIdle is how long another replica's entry must sit unacknowledged before
	// this one takes it over (default 30s): a replica that went away for good leaves
	// its entries behind.
	ClaimIdle time.Duration
	// Log is required.
	Log *slog.Logger
}

// Invalidator reads the inventory service's events and drops from the cache what each
// makes stale: for product.* the product it is about (its subject) and every list
// page; for stock.* the products in its data's items (its subject is an order) and
// every list page.
//
// It is pkg/events' consumer in a group of its own, "gateway", so it sees every event
// whatever the services' consumers do, created at the end of the stream (what
// happened before the gateway first ran cannot be in its cache). Dropping is
// idempotent, so an entry handled twice costs nothing and there is no inbox, nor a
// database: an entry is acknowledged once its drops are done. One whose drops failed
// stays pending and is tried again, with backoff, for as long as it takes (a copy
// left behind would be served until its TTL). An entry that is not an event, or
// whose data does not say which products, goes to the DLQ at once.
type Invalidator struct {
	consumer *events.Consumer
	log      *slog.Logger
}

// forever is MaxDeliveries for drops: never give one up while Redis can be reached.
const forever = math.MaxInt64

// NewInvalidator reads events with rdb (a client without a short time limit: its
// reads block) and drops entries from c.
func NewInvalidator(c *Cache, rdb *redis.Client, opts InvalidatorOptions) *Invalidator {
	if opts.Name == "" {
		opts.Name = "gateway"
	}
	log := opts.Log.With("stream", Stream, "group", Group, "consumer", opts.Name)
	drop := func(ctx context.Context, _ pgx.Tx, e events.Envelope) error {
		ids, err := affected(e)
		if err != nil {
			return err
		}
		if err := c.Forget(ctx, ids...); err != nil {
			return fmt.Errorf("drop %s %s: %w", e.Type, e.Subject, err)
		}
		log.DebugContext(ctx, "product cache entries dropped", "type", e.Type, "products", ids)
		return nil
	}
	return &Invalidator{log: log, consumer: events.NewConsumer(nil, rdb, opts.Log, drop, events.ConsumerOptions{
		Group: Group, Name: opts.Name, Streams: []string{Stream}, StartAtEnd: true,
		Block: opts.Block, ClaimIdle: opts.ClaimIdle, MaxDeliveries: forever,
	})}
}

// Run reads and handles events until ctx ends, finishing the entry in hand, then
// returns nil. Redis outages are waited out; while Redis is down there is no cache to
// serve stale copies from either.
func (i *Invalidator) Run(ctx context.Context) error {
	i.log.Info("dropping product cache entries on inventory events")
	return i.consumer.Run(ctx)
}

// affected are the products whose copies e makes stale; the list pages always are.
// An event that cannot say which products is ErrMalformed.
//
// It goes by the type's family, not its exact name, because inventoryevents promises
// that of every product.* and stock.* type, present or future: a new type (a v2) still
// drops what it should before the gateway learns its name. Every stock.* data is read
// as stock.reserved's, whose items all stock events have.
func affected(e events.Envelope) ([]uuid.UUID, error) {
	switch {
	case strings.HasPrefix(e.Type, "product."):
		id, err := uuid.Parse(e.Subject)
		if err != nil {
			return nil, fmt.Errorf("%w: %s subject %q is not a product id", events.ErrMalformed, e.Type, e.Subject)
		}
		return []uuid.UUID{id}, nil
	case strings.HasPrefix(e.Type, "stock."):
		var d inventoryevents.StockReserved
		if err := e.Decode(&d); err != nil {
			return nil, err
		}
		if len(d.Items) == 0 {
			return nil, fmt.Errorf("%w: %s has no items", events.ErrMalformed, e.Type)
		}
		ids := make([]uuid.UUID, len(d.Items))
		for n, it := range d.Items {
			ids[n] = it.ProductID
		}
		return ids, nil
	}
	// Another kind of inventory event: whatever it changed, list pages may show it.
	return nil, nil
}
