// Package sagametrics records the create-order saga's outcomes and durations as
// Prometheus metrics, and exports how many sagas are unfinished in each state, read
// from the database at each scrape (unfinished.go). The breakers' states are recorded
// by package downstream.
package sagametrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
)

// Recorder implements order.Recorder.
type Recorder struct {
	outcomes *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

var _ order.Recorder = (*Recorder)(nil)

// New registers the saga metrics with reg:
//
//	saga_outcomes_total{result="confirmed|cancelled|compensation_failed|stuck",reason="...|"}
//	saga_duration_seconds{result="confirmed|cancelled"} (not customer cancellations)
//
// It fails when they clash with metrics already registered.
func New(reg prometheus.Registerer) (*Recorder, error) {
	r := &Recorder{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "saga_outcomes_total",
			Help: "Create-order sagas that ended, by result (confirmed, cancelled) and cancel reason; compensation_failed and stuck count sagas whose compensation or forward step kept failing (they are retried; GET /admin/sagas lists them).",
		}, []string{"result", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "saga_duration_seconds",
			Help:    "Time from an order's creation to the end of its saga, by result.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900},
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{r.outcomes, r.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// SagaEnded implements order.Recorder.
func (r *Recorder) SagaEnded(status order.Status, reason order.CancelReason, took time.Duration) {
	r.outcomes.WithLabelValues(string(status), string(reason)).Inc()
	if reason == order.ReasonCustomerRequest {
		// A customer's cancellation may come days after the order: counting that
		// span would drown the create saga's durations.
		return
	}
	r.duration.WithLabelValues(string(status)).Observe(took.Seconds())
}

// Alarmed implements order.Recorder.
func (r *Recorder) Alarmed(state order.SagaState) {
	r.outcomes.WithLabelValues(string(state), "").Inc()
}
