package sagametrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bazaar-shop/bazaar/pkg/metrics"

	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
)

// ScrapeTimeout bounds the database's answer to one scrape (metrics.ScrapeTimeout).
const ScrapeTimeout = metrics.ScrapeTimeout

// Census counts the unfinished sagas (*postgres.Store is one): by state, and how many
// of them have not changed since unchangedSince.
type Census interface {
	UnfinishedSagas(ctx context.Context, unchangedSince time.Time) (byState map[order.SagaState]int64, unchanged int64, err error)
}

// unfinishedStates are the states a saga is in until it is done, each exported even
// when no saga is in it, so that an alert on stuck sagas has a series to compare.
var unfinishedStates = []order.SagaState{order.SagaRunning, order.SagaStuck, order.SagaCompensating, order.SagaCompensationFailed}

var (
	unfinishedDesc = prometheus.NewDesc("sagas_unfinished",
		"Create-order sagas not yet done, by state: running, stuck (its forward step kept failing for SAGA_ALARM_AFTER, or was refused 3 times), compensating, compensation_failed (the same for its compensation). Stuck and compensation_failed want an operator (GET /api/v1/admin/sagas?state=stuck). -1 when the database did not answer the scrape.",
		[]string{"state"}, nil)
	unattendedDesc = prometheus.NewDesc("sagas_unattended",
		"Unfinished sagas on which no step has been tried for SAGA_ALARM_AFTER: nothing is driving them (orders' recovery is not running, or cannot claim them), which marking them stuck cannot show. -1 when the database did not answer the scrape.",
		nil, nil)
)

// RegisterUnfinished registers with reg, both read from census in one query at each
// scrape, bounded by ScrapeTimeout:
//
//	sagas_unfinished{state="running|stuck|compensating|compensation_failed"}
//	sagas_unattended (not changed for alarmAfter, SAGA_ALARM_AFTER)
//
// These say how many sagas are in each state now, where saga_outcomes_total counts
// how often one entered stuck or compensation_failed: a stuck saga that recovered is
// no longer counted here. now is the clock the sagas' changes are stamped with. It
// fails when they clash with metrics already registered.
func RegisterUnfinished(reg prometheus.Registerer, census Census, alarmAfter time.Duration, now func() time.Time) error {
	return reg.Register(&unfinished{census: census, alarmAfter: alarmAfter, now: now})
}

type unfinished struct {
	census     Census
	alarmAfter time.Duration
	now        func() time.Time
}

func (u *unfinished) Describe(ch chan<- *prometheus.Desc) {
	ch <- unfinishedDesc
	ch <- unattendedDesc
}

func (u *unfinished) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := metrics.ScrapeContext()
	defer cancel()
	byState, unattended, err := u.census.UnfinishedSagas(ctx, u.now().Add(-u.alarmAfter))
	for _, st := range unfinishedStates {
		n := float64(byState[st])
		if err != nil {
			n = metrics.Unanswered
		}
		ch <- prometheus.MustNewConstMetric(unfinishedDesc, prometheus.GaugeValue, n, string(st))
	}
	if err != nil {
		unattended = metrics.Unanswered
	}
	ch <- prometheus.MustNewConstMetric(unattendedDesc, prometheus.GaugeValue, float64(unattended))
}
