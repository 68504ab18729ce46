package loadgen

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is time that passes only when someone sleeps: Sleep moves it on at once by
// d (plus late, to play a scheduler that wakes up late) and records d. before, when
// set, runs at the start of every Sleep.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	late   time.Duration
	slept  []time.Duration
	before func()
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
	fired   bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if c.before != nil {
		c.before()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		c.slept = append(c.slept, d)
		c.now = c.now.Add(d + c.late)
	}
	return nil
}

// AfterFunc's f runs when advance moves the clock past its time (Sleep does not fire
// timers: only the tests that use them advance).
func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if t.fired || t.stopped {
			return false
		}
		t.stopped = true
		return true
	}
}

// advance moves the clock on by d and runs the timers that are due.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []func()
	for _, t := range c.timers {
		if !t.fired && !t.stopped && !t.at.After(c.now) {
			t.fired = true
			due = append(due, t.f)
		}
	}
	c.mu.Unlock()
	for _, f := range due {
		f()
	}
}

func (c *fakeClock) sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.slept)
}

func noDrops(t *testing.T) func() {
	return func() { t.Error("an arrival was dropped") }
}

func TestOpenLoopSpacesArrivalsEvenlyForTheDuration(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	var n atomic.Int64
	s := schedule{clock: clk, rate: 10, maxInFlight: 100, duration: 2 * time.Second}
	started, load := s.run(t.Context(), func(int) { n.Add(1) }, noDrops(t))
	if started != 20 || n.Load() != 20 {
		t.Errorf("started %d (ran %d); want 20 at 10/s for 2s", started, n.Load())
	}
	if load != 2*time.Second {
		t.Errorf("load phase %s; want 2s", load)
	}
	// The first arrival is at once, then one every 100 ms, then the wait for the end.
	want := slices.Repeat([]time.Duration{100 * time.Millisecond}, 20)
	if got := clk.sleeps(); !slices.Equal(got, want) {
		t.Errorf("slept %v; want 20 × 100ms", got)
	}
	if got := clk.Now().Sub(newFakeClock().Now()); got != 2*time.Second {
		t.Errorf("returned after %s; want at the end of the 2s", got)
	}
}

func TestOpenLoopStopsAfterTheOrders(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	var seen sync.Map
	s := schedule{clock: clk, rate: 4, maxInFlight: 100, orders: 6, duration: time.Hour}
	started, load := s.run(t.Context(), func(i int) { seen.Store(i, true) }, noDrops(t))
	if started != 6 {
		t.Errorf("started %d; want 6", started)
	}
	for i := range 6 {
		if _, ok := seen.Load(i); !ok {
			t.Errorf("order %d did not run", i)
		}
	}
	// Six arrivals at 4/s take 1.5 s: the phase ends when the seventh would be due.
	if load != 1500*time.Millisecond {
		t.Errorf("load phase %s; want 1.5s", load)
	}
}

func TestOpenLoopCatchesUpInsteadOfShiftingTheSchedule(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	clk.late = 250 * time.Millisecond // every wake-up is 250 ms late
	s := schedule{clock: clk, rate: 10, maxInFlight: 100, duration: 2 * time.Second}
	started, _ := s.run(t.Context(), func(int) {}, noDrops(t))
	if started != 20 {
		t.Errorf("started %d; want all 20 arrivals despite late wake-ups", started)
	}
}

func TestOpenLoopDropsArrivalsBeyondMaxInFlight(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	release := make(chan struct{})
	var ran atomic.Int64
	dropped := 0
	s := schedule{clock: clk, rate: 10, maxInFlight: 5, duration: 2 * time.Second}
	started, _ := s.run(t.Context(), func(int) {
		<-release // every shopper stays busy until all 20 arrivals are through
		ran.Add(1)
	}, func() {
		dropped++
		if dropped == 15 {
			close(release)
		}
	})
	if started != 5 || ran.Load() != 5 || dropped != 15 {
		t.Errorf("started %d, ran %d, dropped %d; want 5, 5, 15", started, ran.Load(), dropped)
	}
}

func TestOpenLoopPoissonArrivalsKeepTheMeanRate(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	s := schedule{clock: clk, rate: 100, poisson: true, seed: 42, maxInFlight: 10000, orders: 10000}
	started, load := s.run(t.Context(), func(int) {}, noDrops(t))
	if started != 10000 {
		t.Fatalf("started %d; want 10000", started)
	}
	if rate := float64(started) / load.Seconds(); rate < 97 || rate > 103 {
		t.Errorf("mean rate %.1f/s; want about 100", rate)
	}
	gaps := clk.sleeps()
	if slices.Min(gaps) == slices.Max(gaps) {
		t.Error("Poisson gaps are all equal")
	}
}

func TestOpenLoopStopsWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	ctx, cancel := context.WithCancel(t.Context())
	sleeps := 0
	clk.before = func() {
		sleeps++
		if sleeps == 4 { // the wait for the fourth arrival (the first is a zero wait)
			cancel()
		}
	}
	s := schedule{clock: clk, rate: 10, maxInFlight: 100, duration: time.Hour}
	started, load := s.run(ctx, func(int) {}, noDrops(t))
	if started != 3 || load != 200*time.Millisecond {
		t.Errorf("started %d in %s; want 3 in 200ms", started, load)
	}
}

func TestClosedLoopRunsTheOrdersWithAtMostTheWorkers(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	var mu sync.Mutex
	busy, most := 0, 0
	var seen []int
	s := schedule{clock: clk, workers: 3, orders: 10}
	started, _ := s.run(t.Context(), func(i int) {
		mu.Lock()
		busy++
		most = max(most, busy)
		seen = append(seen, i)
		mu.Unlock()
		mu.Lock()
		busy--
		mu.Unlock()
	}, noDrops(t))
	slices.Sort(seen)
	if started != 10 || !slices.Equal(seen, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Errorf("started %d, ran %v; want orders 0..9 once each", started, seen)
	}
	if most > 3 {
		t.Errorf("%d shoppers at once; want at most 3", most)
	}
}

func TestClosedLoopStopsStartingAfterTheDuration(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	s := schedule{clock: clk, workers: 1, duration: 5 * time.Second}
	started, load := s.run(t.Context(), func(int) {
		clk.advance(time.Second) // each visit takes a second
	}, noDrops(t))
	if started != 5 || load != 5*time.Second {
		t.Errorf("started %d in %s; want 5 in 5s", started, load)
	}
}

func TestBucketPacesAndAllowsItsBurst(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	b := newBucket(clk, 2, 2) // two a second, two at once
	var waits []time.Duration
	for range 4 {
		waits = append(waits, b.reserve())
	}
	want := []time.Duration{0, 0, 500 * time.Millisecond, time.Second}
	if !slices.Equal(waits, want) {
		t.Errorf("waits %v; want %v", waits, want)
	}
	if b.try() {
		t.Error("try took a token from an empty bucket")
	}
	clk.advance(1500 * time.Millisecond) // pays back the two promised, then one more
	if !b.try() {
		t.Error("after 1.5 s no token, want exactly one")
	} else if b.try() {
		t.Error("after 1.5 s a second token, want exactly one")
	}
	clk.advance(time.Hour)
	if !b.try() {
		t.Error("after an hour no token, want the burst of 2")
	} else if !b.try() {
		t.Error("after an hour one token, want the burst of 2")
	} else if b.try() {
		t.Error("after an hour a third token, want the burst of 2, no more")
	}
	free := newBucket(clk, 0, 0)
	if d := free.reserve(); d != 0 {
		t.Errorf("a zero rate should never wait: reserve = %s, want 0", d)
	}
	if !free.try() {
		t.Error("a zero rate should never wait: try = false, want true")
	}
}

func TestBucketWaitSleepsTheReservedTime(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	b := newBucket(clk, 1, 1)
	for range 3 {
		if err := b.wait(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if got := clk.sleeps(); !slices.Equal(got, []time.Duration{time.Second, time.Second}) {
		t.Errorf("slept %v; want 1s twice", got)
	}
}
