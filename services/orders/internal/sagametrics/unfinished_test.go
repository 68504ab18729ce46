package sagametrics_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
	"github.com/bazaar-shop/bazaar/services/orders/internal/sagametrics"
)

// census answers with what it holds and records the cut-off it was asked with, or
// waits for the context's end when hang is set, as a database that took the query
// and never answers does.
type census struct {
	byState   map[order.SagaState]int64
	unchanged int64
	err       error
	hang      bool
	asked     chan time.Time
}

func (c census) UnfinishedSagas(ctx context.Context, since time.Time) (map[order.SagaState]int64, int64, error) {
	if c.asked != nil {
		c.asked <- since
	}
	if c.hang {
		<-ctx.Done()
		return nil, 0, ctx.Err()
	}
	return c.byState, c.unchanged, c.err
}

func scrape(t *testing.T, c census, now time.Time) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := sagametrics.RegisterUnfinished(reg, c, 5*time.Minute, func() time.Time { return now }); err != nil {
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

func TestUnfinishedSagasAreScrapedByStateEveryStateAlways(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	asked := make(chan time.Time, 1)
	body := scrape(t, census{byState: map[order.SagaState]int64{order.SagaStuck: 2, order.SagaRunning: 7}, unchanged: 1, asked: asked}, now)
	for _, want := range []string{
		`sagas_unfinished{state="running"} 7`,
		`sagas_unfinished{state="stuck"} 2`,
		`sagas_unfinished{state="compensating"} 0`,
		`sagas_unfinished{state="compensation_failed"} 0`,
		`sagas_unattended 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("the scrape lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, `state="done"`) {
		t.Errorf("done sagas are exported: they grow for ever and say nothing an operator acts on")
	}
	// Unattended: not changed for SAGA_ALARM_AFTER, counted back from the clock.
	if since := <-asked; !since.Equal(now.Add(-5 * time.Minute)) {
		t.Errorf("asked for sagas unchanged since %s, want %s", since, now.Add(-5*time.Minute))
	}

	body = scrape(t, census{err: errors.New("connection refused")}, now)
	for _, want := range []string{`sagas_unfinished{state="stuck"} -1`, `sagas_unattended -1`} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("with the database failing, the scrape lacks %s:\n%s", want, body)
		}
	}
}

// A database that does not answer costs a scrape ScrapeTimeout, not the scraper's
// whole timeout.
func TestAScrapeDoesNotWaitForADeadDatabase(t *testing.T) {
	t.Parallel()
	start := time.Now()
	body := scrape(t, census{hang: true}, start)
	if took := time.Since(start); took > sagametrics.ScrapeTimeout+2*time.Second {
		t.Errorf("the scrape took %s with the database hanging; want about %s", took, sagametrics.ScrapeTimeout)
	}
	if !strings.Contains(body, `sagas_unfinished{state="stuck"} -1`) {
		t.Errorf("the scrape lacks -1 for a database that did not answer:\n%s", body)
	}
}
