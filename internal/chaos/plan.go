package chaos

import (
	"fmt"
	"slices"
	"time"
)

// Kind is a kind of fault.
type Kind string

// The kinds of fault (see the package doc).
const (
	KindKill            Kind = "kill"
	KindDown            Kind = "down"
	KindRedisRestart    Kind = "redis-restart"
	KindPostgresRestart Kind = "postgres-restart"
	KindCut             Kind = "cut"
	KindSlow            Kind = "slow"
	KindSMTPDown        Kind = "smtp-down"
	KindPoison          Kind = "poison"
	// KindReprice is an admin's price change (PATCH price_cents) of a product that
	// shoppers are ordering; it is no fault of the system's, but it is timed like
	// one (during a slow inventory, so that some orders are quoted before it and
	// reserved after it: price_changed).
	KindReprice Kind = "reprice"
)

// Fault is one fault of a Plan, at a time from the start of the load.
type Fault struct {
	Kind   Kind
	Target string        // the program (kill, down); "orders→payments" (cut); "orders→inventory" (slow)
	At     time.Duration // when it starts, from the start of the load
	// For is how long it lasts: the time a killed or stopped program or server stays
	// down before it is started again, a cut or a delay lasts, the mail server is
	// unreachable. Zero for a poison or a reprice.
	For time.Duration
	// Delay is the delay of a slow fault, on every chunk forwarded either way.
	Delay time.Duration
	// Crash makes a redis-restart a SIGKILL (the append-only file keeps what Redis
	// acknowledged) and a postgres-restart an immediate shutdown (recovery from the
	// WAL at start), rather than a graceful stop.
	Crash bool
	// Wipe makes a redis-restart lose everything: Redis is SIGKILLed, its files
	// deleted, and it comes back empty (no streams, groups or task queues), as a Redis
	// without persistence does after any restart. Not in the default plan: see
	// docs/reliability.md for what it costs.
	Wipe bool
	// MidSaga makes a kill or down of orders wait (up to 10 s) until sagas are in
	// flight, so that it interrupts some.
	MidSaga bool
}

// String says what the fault does, in a few words.
func (f Fault) String() string {
	switch f.Kind {
	case KindKill:
		s := "SIGKILL " + f.Target
		if f.MidSaga {
			s += " mid-saga"
		}
		return fmt.Sprintf("%s, restart after %s", s, f.For)
	case KindDown:
		s := "SIGKILL " + f.Target
		if f.MidSaga {
			s += " mid-saga"
		}
		return fmt.Sprintf("%s, down %s (> CHARGE_BUDGET)", s, f.For)
	case KindRedisRestart:
		if f.Wipe {
			return fmt.Sprintf("Redis restarted EMPTY (SIGKILL, files deleted), down %s", f.For)
		}
		how := "SIGTERM"
		if f.Crash {
			how = "SIGKILL"
		}
		return fmt.Sprintf("Redis restarted (%s, AOF kept), down %s", how, f.For)
	case KindPostgresRestart:
		how := "fast shutdown"
		if f.Crash {
			how = "immediate shutdown: crash recovery"
		}
		return fmt.Sprintf("Postgres restarted (%s), down %s", how, f.For)
	case KindCut:
		return fmt.Sprintf("%s cut, healed after %s", f.Target, f.For)
	case KindSlow:
		return fmt.Sprintf("%s slowed by %s a chunk for %s", f.Target, f.Delay, f.For)
	case KindSMTPDown:
		return fmt.Sprintf("SMTP unreachable for %s", f.For)
	case KindPoison:
		return "poison entry (data not JSON) XADDed to events.orders"
	case KindReprice:
		return "admin changes a product's price"
	}
	return string(f.Kind)
}

// Plan is the fault schedule of a run whose load lasts load, on a stack whose orders
// have budget as CHARGE_BUDGET. It is a cycle, repeated for as long as it fits:
//
//	kill users · slow inventory 15 s (two reprices, and orders killed mid-saga, inside
//	it) · poison · kill payments · payments down budget+8 s · orders→payments cut 6 s ·
//	orders down budget+8 s (mid-saga) · Redis restarted · Postgres restarted · kill
//	inventory · kill notifications · kill gateway
//
// with 2 s between faults, later cycles crashing Redis and Postgres where the first
// stops them gracefully; and beside it, the mail server unreachable from 20 s on for
// half the load (30 s to 3 min), again every 10 minutes. It fails when one cycle does
// not fit in load: the run would not see every fault.
func Plan(load, budget time.Duration) ([]Fault, error) {
	const gap = 2 * time.Second
	const start = 5 * time.Second
	const restart = 3 * time.Second // allowed for a program or server to come back
	down := budget + 8*time.Second
	cycle := func(i int) []Fault {
		crash := i%2 == 1
		return []Fault{
			{Kind: KindKill, Target: "users", For: time.Second},
			{Kind: KindSlow, Target: "orders→inventory", For: 15 * time.Second, Delay: 300 * time.Millisecond},
			{Kind: KindReprice, At: 3 * time.Second}, // inside the slow window
			{Kind: KindReprice, At: 6 * time.Second}, // inside the slow window
			{Kind: KindKill, Target: "orders", For: time.Second, At: 8 * time.Second, MidSaga: true},
			{Kind: KindPoison},
			{Kind: KindKill, Target: "payments", For: time.Second},
			{Kind: KindDown, Target: "payments", For: down},
			{Kind: KindCut, Target: "orders→payments", For: 6 * time.Second},
			{Kind: KindDown, Target: "orders", For: down, MidSaga: true},
			{Kind: KindRedisRestart, For: 2 * time.Second, Crash: crash},
			{Kind: KindPostgresRestart, For: 2 * time.Second, Crash: crash},
			{Kind: KindKill, Target: "inventory", For: time.Second},
			{Kind: KindKill, Target: "notifications", For: time.Second},
			{Kind: KindKill, Target: "gateway", For: time.Second},
		}
	}
	// span is how much of the timeline a fault takes; a fault with At set is placed
	// inside the one before it (its At is an offset into it) and takes none.
	span := func(f Fault) time.Duration {
		switch f.Kind {
		case KindKill, KindDown, KindRedisRestart, KindPostgresRestart:
			return f.For + restart
		case KindPoison:
			return time.Second
		}
		return f.For
	}
	end := load - 5*time.Second
	var plan []Fault
	t := start
	for i := 0; ; i++ {
		var this []Fault
		var outer time.Duration // the start of the fault the nested ones sit in
		fits := true
		for _, f := range cycle(i) {
			if f.At > 0 {
				f.At += outer
				this = append(this, f)
				continue
			}
			if t+span(f) > end {
				fits = false
				break
			}
			f.At, outer = t, t
			this = append(this, f)
			t += span(f) + gap
		}
		if i == 0 && !fits {
			return nil, fmt.Errorf("a load of %s is too short for every fault once (with CHARGE_BUDGET %s): give it about %s",
				load, budget, (t + 3*down).Round(10*time.Second))
		}
		plan = append(plan, this...)
		if !fits {
			break
		}
	}
	smtp := min(max(load/2, 30*time.Second), 3*time.Minute)
	for at := 20 * time.Second; at+smtp <= end; at += 10 * time.Minute {
		plan = append(plan, Fault{Kind: KindSMTPDown, At: at, For: smtp})
	}
	slices.SortStableFunc(plan, func(a, b Fault) int { return int(a.At - b.At) })
	return plan, nil
}
