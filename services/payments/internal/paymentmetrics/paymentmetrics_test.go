package paymentmetrics_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/bazaar-shop/bazaar/services/payments/internal/paymentmetrics"
)

// store answers PendingSummary with what it holds, or waits for the context's end
// when hang is set, as a database that accepted the query and never answers does.
type store struct {
	n      int64
	oldest time.Time
	err    error
	hang   bool
}

func (s store) PendingSummary(ctx context.Context) (int64, time.Time, error) {
	if s.hang {
		<-ctx.Done()
		return 0, time.Time{}, ctx.Err()
	}
	return s.n, s.oldest, s.err
}

// scrape registers the metrics over st and reads them as Prometheus would.
func scrape(t *testing.T, st store, now time.Time) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := paymentmetrics.Register(reg, st, func() time.Time { return now }); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var body strings.Builder
	for _, mf := range families {
		if _, err := expfmt.MetricFamilyToText(&body, mf); err != nil {
			t.Fatal(err)
		}
	}
	return body.String()
}

func TestPendingPaymentsAndTheOldestsAgeAreScraped(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for name, c := range map[string]struct {
		st   store
		want []string
	}{
		"none":      {store{}, []string{"payments_pending 0\n", "payments_pending_oldest_age_seconds 0\n"}},
		"three":     {store{n: 3, oldest: now.Add(-90 * time.Second)}, []string{"payments_pending 3\n", "payments_pending_oldest_age_seconds 90\n"}},
		"db failed": {store{err: errors.New("connection refused")}, []string{"payments_pending -1\n", "payments_pending_oldest_age_seconds -1\n"}},
	} {
		body := scrape(t, c.st, now)
		for _, want := range c.want {
			if !strings.Contains(body, want) {
				t.Errorf("%s: the scrape lacks %q:\n%s", name, want, body)
			}
		}
	}
}

// A database that does not answer costs a scrape ScrapeTimeout, not the scraper's
// whole timeout, and says so with -1.
func TestAScrapeDoesNotWaitForADeadDatabase(t *testing.T) {
	t.Parallel()
	start := time.Now()
	body := scrape(t, store{hang: true}, start)
	if took := time.Since(start); took > paymentmetrics.ScrapeTimeout+2*time.Second {
		t.Errorf("the scrape took %s with the database hanging; want about %s", took, paymentmetrics.ScrapeTimeout)
	}
	if !strings.Contains(body, "payments_pending -1\n") {
		t.Errorf("the scrape lacks payments_pending -1:\n%s", body)
	}
}
