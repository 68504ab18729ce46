// Package health answers liveness (/healthz) and readiness (/readyz). Readiness runs
// every registered check at once, each under a timeout; a failed critical check makes
// the program unhealthy (503), a failed optional one degraded (still 200: the program
// serves, with less).
package health

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/httpjson"
)

// Status is a program's or a check's condition.
type Status string

// The statuses, worst last.
const (
	Healthy   Status = "healthy"
	Degraded  Status = "degraded"
	Unhealthy Status = "unhealthy"
)

// Worse is the worse of two statuses.
func Worse(a, b Status) Status {
	rank := map[Status]int{Healthy: 0, Degraded: 1, Unhealthy: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// Report is the readiness document.
type Report struct {
	Status Status            `json:"status"`
	Checks map[string]Status `json:"checks"`
}

type check struct {
	name     string
	critical bool
	probe    func(context.Context) error
}

// Checker holds a program's readiness checks.
type Checker struct {
	log     *slog.Logger
	timeout time.Duration
	checks  []check
}

// NewChecker runs each check under timeout.
func NewChecker(log *slog.Logger, timeout time.Duration) *Checker {
	return &Checker{log: log, timeout: timeout}
}

// Critical adds a check whose failure makes the program unhealthy.
func (c *Checker) Critical(name string, probe func(context.Context) error) {
	c.checks = append(c.checks, check{name, true, probe})
}

// Optional adds a check whose failure makes the program degraded.
func (c *Checker) Optional(name string, probe func(context.Context) error) {
	c.checks = append(c.checks, check{name, false, probe})
}

// Check runs every check concurrently and sums them up.
func (c *Checker) Check(ctx context.Context) Report {
	rep := Report{Status: Healthy, Checks: make(map[string]Status, len(c.checks))}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, ch := range c.checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			// The check itself is down; what that does to the program depends on
			// whether the program can serve without it.
			st, effect := Healthy, Healthy
			if err := ch.probe(cctx); err != nil {
				st, effect = Unhealthy, Degraded
				if ch.critical {
					effect = Unhealthy
				}
				c.log.WarnContext(ctx, "readiness check failed", "check", ch.name, "err", err)
			}
			mu.Lock()
			rep.Checks[ch.name] = st
			rep.Status = Worse(rep.Status, effect)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return rep
}

// Live answers 200 while the process runs: it checks nothing else, so that an
// orchestrator restarts the process only when it is truly stuck.
func Live() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpjson.Write(w, http.StatusOK, map[string]Status{"status": Healthy})
	})
}

// Ready answers the readiness report: 200 when healthy or degraded, 503 when unhealthy.
func (c *Checker) Ready() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := c.Check(r.Context())
		status := http.StatusOK
		if rep.Status == Unhealthy {
			status = http.StatusServiceUnavailable
		}
		w.Header().Set("Cache-Control", "no-store")
		httpjson.Write(w, status, rep)
	})
}
