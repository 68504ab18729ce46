package ratelimit

import (
	"testing"
	"time"
)

func TestLocalLimiterIsGCRA(t *testing.T) {
	t.Parallel()
	if newLocal(0, 10, time.Second) != nil {
		t.Fatal("a zero rate must turn the limit off: newLocal gave a limiter, want nil")
	}
	if newLocal(10, 0, time.Second) != nil {
		t.Fatal("a zero burst must turn the limit off: newLocal gave a limiter, want nil")
	}
	l := newLocal(10, 3, time.Second) // one every 100ms, bursts of 3
	now := time.Unix(1_700_000_000, 0)

	for i := range 3 {
		o := l.allow([]byte("a"), now)
		if o.refused {
			t.Fatalf("request %d of the burst: refused %+v, want let through", i+1, o)
		}
		if o.remaining != 2-i {
			t.Fatalf("request %d of the burst: %d remaining, want %d", i+1, o.remaining, 2-i)
		}
		if o.burst != 3 {
			t.Fatalf("request %d of the burst: burst %d, want 3", i+1, o.burst)
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
	if o := l.allow([]byte("a"), now); o.refused {
		t.Fatalf("after one interval: refused %+v, want let through", o)
	} else if o.remaining != 0 {
		t.Fatalf("after one interval: %d remaining, want 0", o.remaining)
	}
	if o := l.allow([]byte("a"), now); !o.refused {
		t.Fatalf("a second one in the same interval: %+v", o)
	}

	// Keys whose requests have all been paid back are forgotten.
	now = now.Add(time.Second)
	if o := l.allow([]byte("c"), now); o.refused {
		t.Fatalf("a new key: refused %+v, want let through", o)
	} else if o.remaining != 2 {
		t.Fatalf("a new key: %d remaining, want 2", o.remaining)
	}
	if n := l.size(); n != 1 {
		t.Fatalf("%d keys held after a quiet second, want 1 (c)", n)
	}
	if o := l.allow([]byte("a"), now); o.refused {
		t.Fatalf("a key that was quiet for a second: refused %+v, want let through", o)
	} else if o.remaining != 2 {
		t.Fatalf("a key that was quiet for a second: %d remaining, want 2, a full burst again", o.remaining)
	}
}
