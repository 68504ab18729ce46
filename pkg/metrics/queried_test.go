package metrics_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bazaar-shop/bazaar/pkg/metrics"
)

// A gauge read at each scrape reports what its source says, -1 when the source fails,
// and does not wait for a source that hangs past ScrapeTimeout.
func TestQueriedGaugeReportsTheCountOrUnanswered(t *testing.T) {
	t.Parallel()
	opts := prometheus.GaugeOpts{Name: "things", Help: "things"}
	ok := metrics.QueriedGauge(opts, func(context.Context) (int64, error) { return 7, nil })
	if got := testutil.ToFloat64(ok); got != 7 {
		t.Errorf("answered: %v, want 7", got)
	}
	failed := metrics.QueriedGauge(opts, func(context.Context) (int64, error) { return 0, errors.New("down") })
	if got := testutil.ToFloat64(failed); got != metrics.Unanswered {
		t.Errorf("failed: %v, want %d", got, metrics.Unanswered)
	}
	hung := metrics.QueriedGauge(opts, func(ctx context.Context) (int64, error) { <-ctx.Done(); return 0, ctx.Err() })
	start := time.Now()
	if got := testutil.ToFloat64(hung); got != metrics.Unanswered {
		t.Errorf("hung: %v, want %d", got, metrics.Unanswered)
	}
	if took := time.Since(start); took > metrics.ScrapeTimeout+2*time.Second {
		t.Errorf("a hung source held the scrape %s", took)
	}
}
