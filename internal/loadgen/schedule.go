package loadgen

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// schedule decides when orders start: an open loop at a rate, or a closed loop of a
// fixed number of shoppers, until a duration has passed or a number of orders has
// started, whichever comes first (zero: no such bound; the caller sees that one is
// set).
type schedule struct {
	clock clock

	rate        float64 // open loop: arrivals a second
	poisson     bool    // exponential gaps instead of even ones
	seed        uint64  // for the Poisson gaps
	maxInFlight int     // open loop: arrivals beyond this many at once are dropped

	workers int // closed loop: shoppers

	orders   int
	duration time.Duration
}

// run starts work(i) for each order i = 0, 1, ..., and returns once no more will start
// and every one started has returned. dropped is called for each open-loop arrival
// that found maxInFlight already busy (not started, not numbered). ctx ending stops
// the starts; work is expected to watch ctx itself. It returns how many started and
// the length of the load phase: up to when the next order would have started, or the
// end of the duration (open loop), or until the last shopper stopped (closed loop).
func (s schedule) run(ctx context.Context, work func(i int), dropped func()) (started int, load time.Duration) {
	if s.rate > 0 {
		return s.open(ctx, work, dropped)
	}
	return s.closed(ctx, work)
}

func (s schedule) open(ctx context.Context, work func(i int), dropped func()) (int, time.Duration) {
	rng := rand.New(rand.NewPCG(s.seed, 0x5ced))
	start := s.clock.Now()
	var end time.Time
	if s.duration > 0 {
		end = start.Add(s.duration)
	}
	// due is when arrival a (dropped ones counted) is due: evenly spaced ones are
	// computed from the start, so that rounding does not drift; Poisson ones add an
	// exponential gap to the one before. Either way an arrival is due when it is due,
	// whatever the ones before took: a late one starts at once, the schedule is never
	// shifted (no coordinated omission).
	mean := float64(time.Second) / s.rate
	due := func(a int, prev time.Time) time.Time {
		if s.poisson {
			return prev.Add(time.Duration(rng.ExpFloat64() * mean))
		}
		return start.Add(time.Duration(float64(a) * mean))
	}
	slots := make(chan struct{}, max(1, s.maxInFlight))
	var wg sync.WaitGroup
	next, started := start, 0
	for a := 1; ; a++ {
		if s.orders > 0 && started >= s.orders {
			break
		}
		if !end.IsZero() && !next.Before(end) {
			// No arrival is due before the end: wait for it, so that the phase lasts
			// the duration (and the last second is reported like the others).
			if s.clock.Sleep(ctx, end.Sub(s.clock.Now())) != nil {
				end = s.clock.Now()
			}
			next = end
			break
		}
		if err := s.clock.Sleep(ctx, next.Sub(s.clock.Now())); err != nil {
			next = s.clock.Now()
			break
		}
		select {
		case slots <- struct{}{}:
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				defer func() { <-slots }()
				work(i)
			}(started)
			started++
		default:
			dropped()
		}
		next = due(a, next)
	}
	load := next.Sub(start)
	wg.Wait()
	return started, load
}

func (s schedule) closed(ctx context.Context, work func(i int)) (int, time.Duration) {
	start := s.clock.Now()
	var end time.Time
	if s.duration > 0 {
		end = start.Add(s.duration)
	}
	var mu sync.Mutex
	started := 0
	claim := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil || (s.orders > 0 && started >= s.orders) || (!end.IsZero() && !s.clock.Now().Before(end)) {
			return 0, false
		}
		started++
		return started - 1, true
	}
	var wg sync.WaitGroup
	for range max(1, s.workers) {
		wg.Go(func() {
			for {
				i, ok := claim()
				if !ok {
					return
				}
				work(i)
			}
		})
	}
	wg.Wait()
	return started, s.clock.Now().Sub(start)
}
