package loadgen

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// stats collects what a run does, from every shopper at once.
type stats struct {
	mu            sync.Mutex
	requests      map[string]int
	rateLimitedBy map[string]int
	errors        map[string]int
	outcomes      Outcomes
	orders        int
	inFlight      int
	pendingNow    int // created unfinished (202) and being followed
	dropped       int
	ids           []string
	unsettled     []string
	latencies     []time.Duration
	settles       []time.Duration
	replays       int
	mismatches    []string
	streams       int
	polls         int
	browseSkipped int

	createdAtTick int // created at the last progress tick, for the rate
}

func newStats() *stats {
	return &stats{
		requests:      map[string]int{},
		rateLimitedBy: map[string]int{},
		errors:        map[string]int{},
		outcomes:      Outcomes{Cancelled: map[string]int{}, Failed: map[string]int{}},
	}
}

func (s *stats) locked(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

func (s *stats) request(endpoint string)     { s.locked(func() { s.requests[endpoint]++ }) }
func (s *stats) rateLimited(endpoint string) { s.locked(func() { s.rateLimitedBy[endpoint]++ }) }
func (s *stats) dropArrival()                { s.locked(func() { s.dropped++ }) }
func (s *stats) stream()                     { s.locked(func() { s.streams++ }) }
func (s *stats) poll()                       { s.locked(func() { s.polls++ }) }
func (s *stats) skipBrowse()                 { s.locked(func() { s.browseSkipped++ }) }
func (s *stats) following(d int)             { s.locked(func() { s.pendingNow += d }) }

// error counts a failed request; a run stopping is not a failure.
func (s *stats) error(kind string) {
	if kind == ErrInterrupted {
		return
	}
	s.locked(func() { s.errors[kind]++ })
}

// replay counts a checked replay; mismatch describes how it differed, if it did.
func (s *stats) replay(mismatch string) {
	s.locked(func() {
		s.replays++
		if mismatch != "" {
			s.mismatches = append(s.mismatches, mismatch)
			s.errors[ErrReplayMismatch]++
		}
	})
}

// begin counts an order a shopper sets out to place; each begin has one end.
func (s *stats) begin() {
	s.locked(func() {
		s.orders++
		s.inFlight++
	})
}

// created records an order the API created and how long its POST took.
func (s *stats) created(id string, latency time.Duration) {
	s.locked(func() {
		s.ids = append(s.ids, id)
		s.latencies = append(s.latencies, latency)
	})
}

// settled records how long an order took to reach its first terminal status.
func (s *stats) settled(d time.Duration) { s.locked(func() { s.settles = append(s.settles, d) }) }

// outcome is how an order ended.
type outcome struct {
	status string // "confirmed", "cancelled", "pending" or "failed"
	reason string // the cancel reason, or the failure's kind
	id     string // the order, when it was created
}

// end records the outcome of an order begun.
func (s *stats) end(o outcome) {
	s.locked(func() {
		s.inFlight--
		switch o.status {
		case "confirmed":
			s.outcomes.Confirmed++
		case "cancelled":
			s.outcomes.Cancelled[or(o.reason, "unknown")]++
		case "pending":
			s.outcomes.Pending++
			s.unsettled = append(s.unsettled, o.id)
		default:
			s.outcomes.Failed[or(o.reason, "unknown")]++
		}
	})
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (o Outcomes) clone() Outcomes {
	o.Cancelled = maps.Clone(o.Cancelled)
	o.Failed = maps.Clone(o.Failed)
	return o
}

// progress is the state now; period is the time since the last call, for the rate.
func (s *stats) progress(elapsed, period time.Duration) Progress {
	s.mu.Lock()
	created := len(s.ids)
	p := Progress{
		Elapsed:     elapsed,
		Orders:      s.orders,
		Created:     created,
		InFlight:    s.inFlight,
		PendingNow:  s.pendingNow,
		Dropped:     s.dropped,
		Outcomes:    s.outcomes.clone(),
		Errors:      maps.Clone(s.errors),
		RateLimited: sum(s.rateLimitedBy),
	}
	if period > 0 {
		p.Rate = float64(created-s.createdAtTick) / period.Seconds()
	}
	s.createdAtTick = created
	samples := slices.Clone(s.latencies)
	s.mu.Unlock()
	lat := summarise(samples) // sorting outside the lock
	p.P50, p.P99 = lat.P50, lat.P99
	return p
}

// summary is the final account; the caller fills in the run's settings and times.
func (s *stats) summary() Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Summary{
		Orders:           s.orders,
		Created:          len(s.ids),
		OrderIDs:         append([]string{}, s.ids...),
		Dropped:          s.dropped,
		Outcomes:         s.outcomes.clone(),
		Unsettled:        append([]string{}, s.unsettled...),
		Latency:          latencyOf(s.latencies),
		Settle:           latencyOf(s.settles),
		Errors:           maps.Clone(s.errors),
		RateLimited:      sum(s.rateLimitedBy),
		RateLimitedBy:    maps.Clone(s.rateLimitedBy),
		Requests:         maps.Clone(s.requests),
		Replays:          s.replays,
		ReplayMismatches: append([]string{}, s.mismatches...),
		Streams:          s.streams,
		Polls:            s.polls,
		BrowseSkipped:    s.browseSkipped,
	}
}
