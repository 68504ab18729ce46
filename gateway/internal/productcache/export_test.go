package productcache

// OnLookupWait makes c call f whenever a request begins to wait for a shared lookup.
func OnLookupWait(c *Cache, f func()) { c.waiting = f }

// Affected are the products whose cached copies e makes stale.
var Affected = affected
