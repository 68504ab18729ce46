package ratelimit

import (
	"testing"
	"time"
)

func TestLocalLimiterIsGCRA(t *testing.T) {
	t.Parallel()
	if newLocal(0, 10, time.Second) != nil || newLocal(10, 0, time.Second) != nil {
		t.Fatal("a zero rate or burst must turn the limit off")
	}
	l := newLocal(10, 3, time.Second) // one every 100ms, bursts of 3
	now := time.Unix(1_700_000_000, 0)

	for i := range 3 {
		o := l.allow([]byte("a"), now)
		if o.refused || o.remaining != 2-i || o.burst != 3 {
			t.Fatalf("request %d of the burst: %+v", i+1, o)
		}
	}
	o := l.allow([]byte("a"), now)
	if !o.refused || o.retryAfter != 100*time.Millisecond {
		t.Fatalf("past the burst: %+v, want refused, retry after 100ms", o)
	}
	if o := l.allow([]byte("b"), now); o.refused {
		t.Fatalf("another key: %+v", o)
	}
	// A refused request uses nothing up: one emission later exactly one more fits.
	now = now.Add(100 * time.Millisecond)
	if o := l.allow([]byte("a"), now); o.refused || o.remaining != 0 {
		t.Fatalf("after one interval: %+v", o)
	}
	if o := l.allow([]byte("a"), now); !o.refused {
		t.Fatalf("a second one in the same interval: %+v", o)
	}

	// Keys whose requests have all been paid back are forgotten.
	now = now.Add(time.Second)
	if o := l.allow([]byte("c"), now); o.refused || o.remaining != 2 {
		t.Fatalf("a new key: %+v", o)
	}
	if n := l.size(); n != 1 {
		t.Fatalf("%d keys held after a quiet second, want 1 (c)", n)
	}
	if o := l.allow([]byte("a"), now); o.refused || o.remaining != 2 {
		t.Fatalf("a key that was quiet for a second: %+v, want a full burst again", o)
	}
}
