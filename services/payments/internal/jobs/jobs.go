// Package jobs is the payments service's background work:
//
//   - the sweep of payments left pending, every SweepEvery (a minute) and once at
//     start, in process (see RunSweep for why not on the task queue).
package jobs

import (
	"context"
	"log/slog"
	"time"
)

// The sweep's schedule: every minute it settles the payments pending for longer than
// a minute. A charge asks the processor within seconds of recording its pending row
// (PROCESSOR_TIMEOUT), so a payment pending for a minute has nobody settling it.
const (
	SweepEvery = time.Minute
	SweepAge   = time.Minute
)

// Settler settles the payments pending for longer than age and says how many it
// settled (*payment.Service is one).
type Settler interface {
	SettlePending(ctx context.Context, age time.Duration) (int, error)
}

// RunSweep settles the payments left pending: once at once, for what a previous run
// of the service left behind, then every SweepEvery, until ctx ends; it returns nil.
// A pass is cut off when the next is due, and a failed pass is only logged: the next
// one does the same work.
//
// It runs in process on a ticker, not as a periodic task on the queue (asynq, in
// Redis), on purpose: payments keeps charging while Redis is down (its events wait in
// the outbox), so the sweep that finishes interrupted charges must not depend on Redis
// either. The price is that every replica sweeps, not one per minute across them; that
// is safe because a sweep only does what any look-up does (the processor is asked
// with the payment's own key, and the outcome is recorded only if the payment is
// still pending), and cheap because payments are rarely left pending.
func RunSweep(ctx context.Context, s Settler, log *slog.Logger) error {
	ticker := time.NewTicker(SweepEvery)
	defer ticker.Stop()
	for {
		sweep(ctx, s, log)
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// sweep runs one pass and logs what it did.
func sweep(ctx context.Context, s Settler, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, SweepEvery)
	defer cancel()
	n, err := s.SettlePending(ctx, SweepAge)
	switch {
	case err != nil && ctx.Err() == nil:
		log.WarnContext(ctx, "pending payments sweep failed; the next one tries again", "settled", n, "err", err)
	case n > 0:
		log.InfoContext(ctx, "pending payments settled", "settled", n)
	default:
		log.DebugContext(ctx, "pending payments sweep", "settled", n)
	}
}
