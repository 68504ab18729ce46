package observability

import (
	"slices"
	"strings"
	"testing"
)

// The names are PromQL's selectors, wherever they are in an expression, and nothing
// else: not functions, label names, durations or strings.
func TestMetricNamesAreTheSelectorsOfAnExpression(t *testing.T) {
	t.Parallel()
	for expr, want := range map[string][]string{
		`up == 0`: {"up"},
		`sum by (job) (rate(http_requests_total{code=~"5.."}[$__rate_interval])) / sum by (job) (rate(http_requests_total[5m])) > 0.05`: {"http_requests_total"},
		`histogram_quantile(0.95, sum by (le) (rate(saga_duration_seconds_bucket{job="orders"}[5m])))`:                                  {"saga_duration_seconds_bucket"},
		`max(min_over_time(circuit_breaker_state[2m:15s])) > 0 or on() vector(0) * absent(sagas_unattended)`:                            {"circuit_breaker_state", "sagas_unattended"},
		`{__name__="payments_pending", job="payments"} offset 5m`:                                                                       {"payments_pending"},
		`label_replace(outbox_pending_rows, "x", "$1", "job", "(.*)")`:                                                                  {"outbox_pending_rows"},
	} {
		got, err := MetricNames(expr)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("MetricNames(%s) = %v, %v; want %v", expr, got, err, want)
		}
	}
	for _, expr := range []string{`{__name__=~"outbox_.*"}`, `rate(x[`, `sum(x) by`} {
		if got, err := MetricNames(expr); err == nil {
			t.Errorf("MetricNames(%s) = %v; want an error", expr, got)
		}
	}
}

func TestEveryDashboardAndAlertHasQueriesThatParse(t *testing.T) {
	t.Parallel()
	qs, err := Queries()
	if err != nil {
		t.Fatal(err)
	}
	where := map[string]int{}
	for _, q := range qs {
		names, err := MetricNames(q.Expr)
		if err != nil {
			t.Errorf("%s: %q: %v", q.Where, q.Expr, err)
		} else if len(names) == 0 {
			t.Errorf("%s: %q: no metric names, want some", q.Where, q.Expr)
		}
		file, _, _ := strings.Cut(q.Where, ":")
		where[file]++
	}
	for _, file := range []string{"grafana/dashboards/traffic.json", "grafana/dashboards/saga.json", "grafana/dashboards/events.json", "grafana/dashboards/tasks.json", AlertsFile} {
		if where[file] == 0 {
			t.Errorf("no query read from %s (read: %v)", file, where)
		}
	}
}
