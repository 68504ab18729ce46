package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ScrapeTimeout bounds a value read from a database at each scrape: a database that
// does not answer must not hold the scrape (and every other metric with it) until
// Prometheus gives up.
const ScrapeTimeout = time.Second

// Unanswered is what a gauge read at scrape time reports when its source did not
// answer within ScrapeTimeout: not a stale value passed off as current, and a value no
// count takes, which dashboards show and alerts test for.
const Unanswered = -1

// ScrapeContext is the context of one scrape's read, bounded by ScrapeTimeout.
func ScrapeContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), ScrapeTimeout)
}

// QueriedGauge is a gauge whose value read returns at each scrape, within
// ScrapeTimeout, and Unanswered when read fails: a count kept by the database (the
// outbox's unpublished rows, the e-mail backlog) rather than by the process.
func QueriedGauge(opts prometheus.GaugeOpts, read func(context.Context) (int64, error)) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(opts, func() float64 {
		ctx, cancel := ScrapeContext()
		defer cancel()
		n, err := read(ctx)
		if err != nil {
			return Unanswered
		}
		return float64(n)
	})
}
