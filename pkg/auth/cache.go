package auth

import (
	"sync"
	"sync/atomic"
	"time"
)

// CacheMaxAge is the longest a verified token is taken from a Verifier's cache before
// it is verified again from scratch, however long it still has to live. It bounds
// how long a key withdrawn from the key set (JWKS) keeps its cached tokens working
// after the key set has been fetched again: without it, until they expire.
const CacheMaxAge = time.Minute

// tokenCache remembers tokens that passed every check of Verify: their signature,
// header and claims. A token is the key, whole (header, claims and signature), so a
// token that differs in a single byte is not in it. An entry lives until the token's
// exp (no leeway: the cache never extends a token's life) and at most CacheMaxAge.
// What a token cannot prove by itself, that its session has not ended, is asked of
// the revocation list again once the entry's verdict is older than recheck.
//
// The cache holds at most size tokens. When it is full, expired entries are dropped,
// and if that is not enough, arbitrary ones (a map's order): an evicted token costs
// one more verification, nothing else. It is safe for concurrent use.
type tokenCache struct {
	size    int
	recheck time.Duration

	mu      sync.RWMutex
	entries map[string]*cachedToken
}

// cachedToken is one verified token.
type cachedToken struct {
	principal *Principal // shared by every request with this token; never changed
	until     time.Time  // exp, or CacheMaxAge after verification if sooner
	// checked is when the revocation list last gave its verdict on the session
	// (unix nanoseconds), or was found unreadable; revoked is that verdict. A
	// session once ended never comes back, so revoked is never cleared.
	checked atomic.Int64
	revoked atomic.Bool
}

func newTokenCache(size int, recheck time.Duration) *tokenCache {
	return &tokenCache{size: size, recheck: recheck, entries: make(map[string]*cachedToken, size)}
}

// get is the entry for token when it is still valid at now.
func (c *tokenCache) get(token string, now time.Time) *cachedToken {
	c.mu.RLock()
	e := c.entries[token]
	c.mu.RUnlock()
	if e == nil || !now.Before(e.until) {
		return nil
	}
	return e
}

// put remembers p, verified at now from token, until until; revoked is the
// revocation list's verdict, given at now.
func (c *tokenCache) put(token string, p *Principal, now, until time.Time, revoked bool) {
	e := &cachedToken{principal: p, until: until}
	e.checked.Store(now.UnixNano())
	e.revoked.Store(revoked)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.size {
		c.evict(now)
	}
	// A copy of the key, so that the entry does not keep the request that brought
	// the token (its whole header block) alive.
	c.entries[string([]byte(token))] = e
}

// evict makes room for at least one entry: the expired ones go first, then about a
// tenth of the cache, whichever entries come first.
func (c *tokenCache) evict(now time.Time) {
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

// len is how many tokens the cache holds.
func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
