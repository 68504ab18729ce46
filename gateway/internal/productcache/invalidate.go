package productcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
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
// It is a consumer group of its own, "gateway", so it sees every event whatever the
// services' consumers do. Dropping is idempotent, so an entry handled twice costs
// nothing and there is no inbox: an entry is acknowledged once its drops are done,
// and one whose drops failed stays pending and is tried again. Entries that are not
// events, or whose data does not say which products, are logged and acknowledged: the
// TTL bounds what they leave stale.
type Invalidator struct {
	cache *Cache
	rdb   *redis.Client
	opts  InvalidatorOptions
	log   *slog.Logger
}

// NewInvalidator reads events with rdb (a client without a short time limit: its
// reads block) and drops entries from c.
func NewInvalidator(c *Cache, rdb *redis.Client, opts InvalidatorOptions) *Invalidator {
	if opts.Name == "" {
		opts.Name = "gateway"
	}
	if opts.Block <= 0 {
		opts.Block = 2 * time.Second
	}
	if opts.ClaimIdle <= 0 {
		opts.ClaimIdle = 30 * time.Second
	}
	return &Invalidator{cache: c, rdb: rdb, opts: opts, log: opts.Log.With("stream", Stream, "group", Group, "consumer", opts.Name)}
}

// Run reads and handles events until ctx ends, finishing the entry in hand, then
// returns nil. Redis outages are waited out; while Redis is down there is no cache to
// serve stale copies from either.
func (i *Invalidator) Run(ctx context.Context) error {
	i.log.Info("dropping product cache entries on inventory events")
	wait := 100 * time.Millisecond
	// backlog: this consumer may hold entries it read and never acknowledged, from
	// before a restart or from a failed round; they are handled before new ones.
	backlog := true
	var lastClaim time.Time
	for ctx.Err() == nil {
		err := i.ensureGroup(ctx)
		if err == nil && backlog {
			backlog, err = i.readPending(ctx)
		}
		if err == nil && time.Since(lastClaim) >= i.opts.ClaimIdle {
			err = i.claimAbandoned(ctx)
			lastClaim = time.Now()
		}
		if err == nil {
			err = i.readNew(ctx)
		}
		if err == nil || ctx.Err() != nil {
			wait = 100 * time.Millisecond
			continue
		}
		backlog = true
		i.log.Warn("reading inventory events failed; retrying", "err", err, "in", wait.String())
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
	return nil
}

// ensureGroup creates the group if it is missing, at the end of the stream: what
// happened before the gateway first ran cannot be in its cache. It runs every round
// because a Redis that restarted without its data has lost the group.
func (i *Invalidator) ensureGroup(ctx context.Context) error {
	err := i.rdb.XGroupCreateMkStream(ctx, Stream, Group, "$").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create group %s on %s: %w", Group, Stream, err)
	}
	return nil
}

// readPending handles a batch of this consumer's own unacknowledged entries and
// reports whether more may remain.
func (i *Invalidator) readPending(ctx context.Context) (more bool, err error) {
	res, err := i.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: Group, Consumer: i.opts.Name, Streams: []string{Stream, "0"}, Count: 100,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("xreadgroup pending: %w", err)
	}
	n := 0
	for _, s := range res {
		for _, m := range s.Messages {
			n++
			if err := i.handle(ctx, m); err != nil {
				return true, err
			}
		}
	}
	return n > 0, nil
}

// claimAbandoned takes over and handles entries another replica read long ago and
// never acknowledged.
func (i *Invalidator) claimAbandoned(ctx context.Context) error {
	msgs, _, err := i.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: Stream, Group: Group, Consumer: i.opts.Name, MinIdle: i.opts.ClaimIdle, Start: "0-0", Count: 100,
	}).Result()
	if err != nil {
		return fmt.Errorf("xautoclaim: %w", err)
	}
	for _, m := range msgs {
		if err := i.handle(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func (i *Invalidator) readNew(ctx context.Context) error {
	res, err := i.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: Group, Consumer: i.opts.Name, Streams: []string{Stream, ">"}, Count: 100, Block: i.opts.Block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("xreadgroup: %w", err)
	}
	for _, s := range res {
		for _, m := range s.Messages {
			if err := i.handle(ctx, m); err != nil {
				return err
			}
		}
	}
	return nil
}

// handle drops what entry m makes stale and acknowledges it. It runs to the end even
// when ctx is cancelled (a stop finishes the entry in hand), within a time limit.
func (i *Invalidator) handle(ctx context.Context, m redis.XMessage) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	log := i.log.With("entry", m.ID)
	e, err := events.Parse(m.Values)
	if err == nil {
		var ids []uuid.UUID
		if ids, err = affected(e); err == nil {
			if err := i.cache.Forget(ctx, ids...); err != nil {
				return fmt.Errorf("drop %s %s: %w", e.Type, e.Subject, err)
			}
			log.Debug("product cache entries dropped", "type", e.Type, "products", ids)
		}
	}
	if err != nil {
		// Retrying cannot fix it; the TTL bounds what it leaves stale.
		log.Warn("inventory event skipped", "err", err)
	}
	if err := i.rdb.XAck(ctx, Stream, Group, m.ID).Err(); err != nil {
		return fmt.Errorf("xack: %w", err)
	}
	return nil
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
