package loadgen

import (
	"context"
	"sync"
	"time"
)

// clock is time as the run sees it; tests give a fake one so that pacing and waits
// are checked without sleeping.
type clock interface {
	Now() time.Time
	// Sleep waits d (not at all when d ≤ 0) or until ctx ends, and returns ctx.Err()
	// in that case.
	Sleep(ctx context.Context, d time.Duration) error
	// AfterFunc calls f in its own goroutine once d has passed, unless stop is called
	// first; stop reports whether it stopped f.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (realClock) AfterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

// bucket is a token bucket: rate tokens a second, at most burst saved up. It paces the
// requests the gateway limits per client IP, so that the run stays under those limits
// instead of collecting 429s. A rate ≤ 0 never makes anyone wait.
type bucket struct {
	clock clock
	rate  float64 // tokens a second
	burst float64

	mu     sync.Mutex
	tokens float64 // may go below zero: tokens promised to waiters
	last   time.Time
}

func newBucket(c clock, rate, burst float64) *bucket {
	if burst < 1 {
		burst = 1
	}
	return &bucket{clock: c, rate: rate, burst: burst, tokens: burst, last: c.Now()}
}

func (b *bucket) refill() {
	now := b.clock.Now()
	if now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
}

// reserve takes a token and says how long to wait before using it.
func (b *bucket) reserve() time.Duration {
	if b.rate <= 0 {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// wait takes a token, waiting for it if need be.
func (b *bucket) wait(ctx context.Context) error {
	return b.clock.Sleep(ctx, b.reserve())
}

// try takes a token if one is there now.
func (b *bucket) try() bool {
	if b.rate <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
