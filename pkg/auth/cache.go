package auth

import (
	"sync/atomic"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/tokencache"
)

// CacheMaxAge is the longest a verified token is taken from a Verifier's cache before
// it is verified again from scratch, however long it still has to live. It bounds
// how long a key withdrawn from the key set (JWKS) keeps its cached tokens working
// after the key set has been fetched again: without it, until they expire.
const CacheMaxAge = time.Minute

// tokenCache remembers tokens that passed every check of Verify: their signature,
// header and claims (pkg/tokencache: by the whole token, bounded). An entry lives
// until the token's exp (no leeway: the cache never extends a token's life) and at
// most CacheMaxAge. What a token cannot prove by itself, that its session has not
// ended, is asked of the revocation list again once the entry's verdict is older than
// recheck.
type tokenCache struct {
	recheck time.Duration
	tokens  *tokencache.Cache[*cachedToken]
}

// cachedToken is one verified token.
type cachedToken struct {
	principal *Principal // shared by every request with this token; never changed
	// checked is when the revocation list last gave its verdict on the session
	// (unix nanoseconds), or was found unreadable; revoked is that verdict. A
	// session once ended never comes back, so revoked is never cleared.
	checked atomic.Int64
	revoked atomic.Bool
}

func newTokenCache(size int, recheck time.Duration) *tokenCache {
	return &tokenCache{recheck: recheck, tokens: tokencache.New[*cachedToken](size)}
}

// get is the entry for token when it is still valid at now.
func (c *tokenCache) get(token string, now time.Time) *cachedToken {
	e, _ := c.tokens.Get(token, now)
	return e
}

// put remembers p, verified at now from token, until until; revoked is the
// revocation list's verdict, given at now.
func (c *tokenCache) put(token string, p *Principal, now, until time.Time, revoked bool) {
	e := &cachedToken{principal: p}
	e.checked.Store(now.UnixNano())
	e.revoked.Store(revoked)
	c.tokens.Put(token, e, until, now)
}

// len is how many tokens the cache holds.
func (c *tokenCache) len() int { return c.tokens.Len() }
