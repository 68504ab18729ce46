package ratelimit

import (
	"sync"
	"time"
)

// sweepEvery is how often a local limiter forgets the keys it no longer limits.
const sweepEvery = time.Second

// local is a GCRA limiter kept in this process's memory: the same algorithm as
// redis_rate's, so a limit means the same wherever it is kept. Each key has a
// theoretical arrival time (tat); a key whose tat has passed is as good as new, and
// is forgotten at the next sweep, so memory holds only the keys active within about
// burst/rate seconds. It is safe for concurrent use.
type local struct {
	emission  time.Duration // the time one request uses up: period / rate
	tolerance time.Duration // how far ahead of now a key's tat may run: emission × burst
	burst     int

	mu        sync.Mutex
	tat       map[string]*time.Time // a pointer, so that a known key is updated without allocating
	lastSweep time.Time
}

// newLocal allows rate requests per period per key, in bursts of up to burst; nil
// (no limit) when either is zero.
func newLocal(rate, burst int, period time.Duration) *local {
	if rate <= 0 || burst <= 0 {
		return nil
	}
	emission := period / time.Duration(rate)
	return &local{emission: emission, tolerance: emission * time.Duration(burst), burst: burst, tat: map[string]*time.Time{}}
}

// allow counts one request for key at now.
func (l *local) allow(key []byte, now time.Time) outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= sweepEvery {
		for k, t := range l.tat {
			if !t.After(now) {
				delete(l.tat, k)
			}
		}
		l.lastSweep = now
	}
	tat := l.tat[string(key)]
	var prev time.Time
	if tat != nil {
		prev = *tat
	}
	next, o := gcra(prev, now, l.emission, l.tolerance, l.burst)
	if !o.refused {
		if tat == nil {
			tat = new(time.Time)
			l.tat[string(key)] = tat
		}
		*tat = next
	}
	return o
}

// gcra judges a request at now for a key whose theoretical arrival time is tat: the
// outcome, and the key's tat if the request is let through.
func gcra(tat, now time.Time, emission, tolerance time.Duration, burst int) (time.Time, outcome) {
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(emission)
	// How far now is past the earliest moment this request may come; negative: too soon.
	diff := now.Sub(next.Add(-tolerance))
	if diff < 0 {
		return tat, outcome{burst: burst, resetAfter: tat.Sub(now), retryAfter: -diff, refused: true}
	}
	return next, outcome{burst: burst, remaining: int(diff / emission), resetAfter: next.Sub(now)}
}

// size is how many keys the limiter holds.
func (l *local) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.tat)
}
