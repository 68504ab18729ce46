package main

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// The queue is one Redis list. Producers push on its left and workers take from its
// right, so items come out in the order they went in.

// push adds item to the queue. Items should be unique (an id): ack removes by value.
func push(ctx context.Context, rdb *redis.Client, queue, item string) error {
	return rdb.LPush(ctx, queue, item).Err()
}

// --- The naive worker ---

// takeNaive is the naive worker's take. BRPOP removes the item from Redis as it hands
// it over, so from then on the item exists only in this worker's memory: if the worker
// dies before finishing, nothing anywhere says the item ever existed.
// It returns redis.Nil when nothing arrived within timeout (go-redis sends whole
// seconds, at least one).
func takeNaive(ctx context.Context, rdb *redis.Client, queue string, timeout time.Duration) (string, error) {
	kv, err := rdb.BRPop(ctx, timeout, queue).Result()
	if err != nil {
		return "", err
	}
	return kv[1], nil // BRPOP answers [list, item]
}

// --- The reliable worker ---

// processing names the list of what worker has taken and not yet acknowledged.
func processing(queue, worker string) string { return queue + ":processing:" + worker }

// take is the reliable worker's take. BLMOVE moves the item from the queue into the
// worker's processing list in one atomic step, so the item is always in exactly one
// list in Redis: there is no moment at which a crash can lose it.
// It returns redis.Nil when nothing arrived within timeout, as takeNaive does.
func take(ctx context.Context, rdb *redis.Client, queue, worker string, timeout time.Duration) (string, error) {
	return rdb.BLMove(ctx, queue, processing(queue, worker), "RIGHT", "LEFT", timeout).Result()
}

// ack says item is done by removing it from the worker's processing list. It comes
// only after the work, so a crash anywhere before it leaves the item to recoverWorker.
func ack(ctx context.Context, rdb *redis.Client, queue, worker, item string) error {
	return rdb.LRem(ctx, processing(queue, worker), 1, item).Err()
}

// recoverWorker puts everything worker took and never acknowledged back on the queue,
// at the end workers take from, so those items go next; it returns how many it moved.
// Each LMOVE is atomic, so a recovery that itself crashes halfway loses nothing.
// Moving from the processing list's newest end keeps the items' order.
//
// Call it only for a worker known to be dead: a worker that is merely slow would
// finish its item and another worker would do it again. The list cannot tell dead
// from slow; that is one thing Redis Streams do for us (README.md).
func recoverWorker(ctx context.Context, rdb *redis.Client, queue, worker string) (int, error) {
	for n := 0; ; n++ {
		err := rdb.LMove(ctx, processing(queue, worker), queue, "LEFT", "RIGHT").Err()
		if errors.Is(err, redis.Nil) { // the processing list is empty
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// work is a reliable worker's loop: take an item, handle it, acknowledge it; it
// returns nil once the queue has stayed empty for idle.
func work(ctx context.Context, rdb *redis.Client, queue, worker string, idle time.Duration, handle func(item string)) error {
	for {
		item, err := take(ctx, rdb, queue, worker, idle)
		if errors.Is(err, redis.Nil) {
			return nil
		}
		if err != nil {
			return err
		}
		handle(item)
		if err := ack(ctx, rdb, queue, worker, item); err != nil {
			return err
		}
	}
}
