package tokencache_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/tokencache"
)

// An entry is found until its time and not after; Delete forgets it; the cache never
// holds more than its size, dropping what has expired first.
func TestEntriesLiveUntilTheirTimeInABoundedCache(t *testing.T) {
	t.Parallel()
	now := time.Now()
	c := tokencache.New[string](10)
	c.Put("a.b.c", "orders", now.Add(time.Minute), now)
	if v, ok := c.Get("a.b.c", now.Add(59*time.Second)); !ok {
		t.Error("Get before its time: not found, want orders")
	} else if v != "orders" {
		t.Errorf("Get before its time = %q, want orders", v)
	}
	if _, ok := c.Get("a.b.c", now.Add(time.Minute)); ok {
		t.Error("an entry was found at its time")
	}
	if _, ok := c.Get("a.b.x", now); ok {
		t.Error("a token differing in one byte was found")
	}
	c.Delete("a.b.c")
	if _, ok := c.Get("a.b.c", now); ok {
		t.Error("a deleted entry was found")
	}

	c.Put("old", "expired", now.Add(time.Second), now)
	for i := range 30 {
		c.Put(fmt.Sprint("t", i), "v", now.Add(time.Hour), now.Add(2*time.Second))
		if n := c.Len(); n > 10 {
			t.Fatalf("%d entries in a cache of 10", n)
		}
	}
	if _, ok := c.Get("t29", now.Add(2*time.Second)); !ok {
		t.Error("the newest entry was evicted")
	}
}
