// Package tokencache remembers tokens that were verified, so that the same token is
// not verified again on every request: the signature check of a token a caller sends
// over and over is what a busy verifier spends its time on.
//
// A token is the key, whole (header, claims and signature), so a token that differs
// in a single byte is not in the cache. Each entry lives until a time its owner gives
// (the token's exp, or sooner); the cache never extends a token's life. It holds at
// most a fixed number of entries: when full, expired entries are dropped, and if that
// is not enough about a tenth of the rest (a map's order). An evicted token costs one
// more verification, nothing else. A Cache is safe for concurrent use.
package tokencache

import (
	"sync"
	"time"
)

// Cache maps tokens to what their verification found, V.
type Cache[V any] struct {
	size int

	mu      sync.RWMutex
	entries map[string]entry[V]
}

type entry[V any] struct {
	v     V
	until time.Time
}

// New is a cache of at most size tokens (at least 1).
func New[V any](size int) *Cache[V] {
	size = max(size, 1)
	return &Cache[V]{size: size, entries: make(map[string]entry[V], size)}
}

// Get is what was kept for token, if it is still there at now.
func (c *Cache[V]) Get(token string, now time.Time) (V, bool) {
	c.mu.RLock()
	e, ok := c.entries[token]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// Put keeps v for token until until; now is the time, for evicting expired entries.
func (c *Cache[V]) Put(token string, v V, until, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.size {
		c.evict(now)
	}
	// A copy of the key, so that the entry does not keep the request that brought
	// the token (its whole header block) alive.
	c.entries[string([]byte(token))] = entry[V]{v: v, until: until}
}

// Delete forgets token.
func (c *Cache[V]) Delete(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, token)
}

// Len is how many tokens the cache holds.
func (c *Cache[V]) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// evict makes room for at least one entry: the expired ones go first, then about a
// tenth of the cache, whichever entries come first.
func (c *Cache[V]) evict(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.until) {
			delete(c.entries, k)
		}
	}
	for k := range c.entries {
		if len(c.entries) < c.size-c.size/10 {
			break
		}
		delete(c.entries, k)
	}
}
