// Package paymentmetrics exports the payments left pending as Prometheus metrics,
// read from the store at each scrape.
//
// A payment is pending from the moment its row is written until the processor's
// outcome is recorded, which takes seconds (PROCESSOR_TIMEOUT). One still pending
// after a minute was left by a charge that died half-way, and the sweep (package jobs)
// settles it within the next minute; one pending for several minutes means the sweep
// cannot settle it (the processor is unreachable) or is not running, while the order
// behind it waits.
package paymentmetrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bazaar-shop/bazaar/pkg/metrics"
)

// ScrapeTimeout bounds the database's answer to one scrape (metrics.ScrapeTimeout).
const ScrapeTimeout = metrics.ScrapeTimeout

// Store summarises the pending payments (*postgres.Store is one): how many, and when
// the oldest was created (zero when there is none).
type Store interface {
	PendingSummary(ctx context.Context) (n int64, oldest time.Time, err error)
}

// Register registers with reg, both read from store in one query at each scrape:
//
//	payments_pending                     payments whose processor outcome is not recorded
//	payments_pending_oldest_age_seconds  how long the oldest of them has been pending (0 with none)
//
// Both are -1 when the store did not answer within ScrapeTimeout, as the service's
// other gauges read from its database (outbox_pending_rows) are. now is the clock the
// payments' creation times were stamped with. It fails when they clash with metrics
// already registered.
func Register(reg prometheus.Registerer, store Store, now func() time.Time) error {
	return reg.Register(&collector{store: store, now: now})
}

var (
	pendingDesc = prometheus.NewDesc("payments_pending",
		"Payments whose processor outcome is not recorded yet; -1 when the database did not answer the scrape.", nil, nil)
	oldestDesc = prometheus.NewDesc("payments_pending_oldest_age_seconds",
		"How long the oldest pending payment has been pending (0 when none is); the sweep settles those over a minute old every minute, so minutes here mean it cannot. -1 when the database did not answer the scrape.", nil, nil)
)

// collector reads both gauges in one query, which a pair of GaugeFuncs would make
// twice.
type collector struct {
	store Store
	now   func() time.Time
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- oldestDesc
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := metrics.ScrapeContext()
	defer cancel()
	pending, age := float64(metrics.Unanswered), float64(metrics.Unanswered)
	if n, oldest, err := c.store.PendingSummary(ctx); err == nil {
		pending, age = float64(n), 0
		if n > 0 && !oldest.IsZero() {
			age = max(0, c.now().Sub(oldest).Seconds())
		}
	}
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, pending)
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age)
}
