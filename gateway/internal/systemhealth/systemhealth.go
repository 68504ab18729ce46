// Package systemhealth answers the gateway's GET /health: the readiness of every
// service at once. It asks each service's /readyz concurrently, each under a short
// timeout, adds the gateway's own readiness, and sums them up the way each program sums
// up its checks: the worst status wins, and an unhealthy one makes the answer a 503.
//
// A service that gives no readiness report of its own is unhealthy, with one check
// that says why: CheckReachable (no connection), CheckResponsive (no answer within the
// timeout) or CheckReport (an answer that is not a readiness report).
//
// A service may have several instances (pkg/balancer holds them): each is asked on its
// own readiness URL, and the report shows each one under "upstreams", numbered in the
// order of the service's URLs (addresses stay out of this public report; the
// gateway's log names them), with whether the gateway sends it calls, beside the
// service's breaker. The service's own entry sums its instances up: healthy when all
// are, unhealthy when none answers ready, degraded in between (it still serves, on
// fewer instances); its checks are each check's worst across the instances. A service
// of one instance is reported as that instance.
//
// GET /health is public, and each call would otherwise fan out to every service: the
// answer is shared (CacheFor). Callers that come while a check runs wait for it rather
// than start another, and its report is given again until it is older than the cache's
// time, so that however many ask, each service is asked at most about once per period.
package systemhealth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/balancer"
	"github.com/bazaar-shop/bazaar/pkg/health"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
	"github.com/bazaar-shop/bazaar/pkg/httpserver"
	"github.com/bazaar-shop/bazaar/pkg/logging"
)

// The checks reported for a service that gave no readiness report.
const (
	CheckReachable  = "reachable"        // the connection failed
	CheckResponsive = "responsive"       // no answer within the timeout
	CheckReport     = "readiness_report" // the answer was not a readiness report
	// CheckInstances is reported for a service with no instance known: a name that
	// does not resolve.
	CheckInstances = "instances"
)

// Self is the name under which the gateway reports its own readiness.
const Self = "gateway"

// maxReportBytes bounds how much of a readiness answer is read.
const maxReportBytes = 64 << 10

// Service is a program whose readiness /health reports.
type Service struct {
	Name string
	// Upstream holds its instances and where each answers /readyz.
	Upstream *balancer.Balancer
}

// Report is the /health document.
type Report struct {
	Status   health.Status            `json:"status"`
	Services map[string]health.Report `json:"services"`
	// Upstreams shows each service's instances, by service name.
	Upstreams map[string]Upstream `json:"upstreams"`
}

// Upstream is one service's instances as /health shows them.
type Upstream struct {
	Breaker   string     `json:"breaker"` // its breaker: closed, half-open or open
	Instances []Instance `json:"instances"`
}

// Instance is one instance's readiness report, with the gateway's view of it.
type Instance struct {
	Instance int `json:"instance"` // its number, from 1, in the order of the service's URLs
	health.Report
	InService bool `json:"in_service"` // false while ejected: the gateway sends it no calls
	Failures  int  `json:"failures"`   // calls that failed on it in a row
}

// Aggregator asks every service for its readiness.
type Aggregator struct {
	services []Service
	self     func(context.Context) health.Report
	timeout  time.Duration
	client   *http.Client
	log      *slog.Logger
	ttl      time.Duration // how long a report is shared; 0: every call checks

	mu     sync.Mutex
	latest *flight // the latest shared check, running or done; nil before the first
}

// flight is one shared check.
type flight struct {
	done chan struct{} // closed once rep and at are set
	rep  Report
	at   time.Time // when it finished
}

// New reports on services and, as Self, on the gateway, whose readiness self returns.
// Each service must answer within timeout.
func New(services []Service, self func(context.Context) health.Report, timeout time.Duration, log *slog.Logger) *Aggregator {
	return &Aggregator{
		services: services,
		self:     self,
		timeout:  timeout,
		log:      log,
		client: &http.Client{
			// Proxy stays nil: never an HTTP_PROXY from the environment.
			Transport: &http.Transport{
				DialContext:     (&net.Dialer{Timeout: timeout}).DialContext,
				MaxIdleConns:    2 * len(services),
				IdleConnTimeout: 90 * time.Second,
			},
			// A readiness endpoint does not redirect; following one would report on
			// something else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// CacheFor makes Shared, and so ServeHTTP, give a report again to callers for ttl
// after its check finished; it returns a. Callers during a check share it whatever
// the ttl. Call it before the aggregator is used.
func (a *Aggregator) CacheFor(ttl time.Duration) *Aggregator {
	a.ttl = ttl
	return a
}

// Shared is the report of a check shared with other callers: the latest one if it
// finished less than the cache's time ago, else the one running now, else a new one
// that the caller runs and later callers wait for. The check runs apart from the
// caller's cancellation (others may be waiting for it; it is bounded by the timeout),
// but with its values, so its probes carry the request id of the caller that started
// it. It reports false, at once, when ctx ends while the caller waits.
func (a *Aggregator) Shared(ctx context.Context) (Report, bool) {
	a.mu.Lock()
	f := a.latest
	if f == nil || a.stale(f) {
		f = &flight{done: make(chan struct{})}
		a.latest = f
		a.mu.Unlock()
		rep := a.Check(context.WithoutCancel(ctx))
		a.mu.Lock()
		f.rep, f.at = rep, time.Now()
		a.mu.Unlock()
		close(f.done)
		return rep, ctx.Err() == nil
	}
	a.mu.Unlock()
	select {
	case <-f.done:
		return f.rep, true
	case <-ctx.Done():
		return Report{}, false
	}
}

// stale reports whether f is a finished check too old to give again. a.mu is held.
func (a *Aggregator) stale(f *flight) bool {
	select {
	case <-f.done:
		return time.Since(f.at) >= a.ttl
	default:
		return false // running: join it
	}
}

// Check asks every service at once and sums up their answers. It takes at most about
// the timeout, however many services are down.
func (a *Aggregator) Check(ctx context.Context) Report {
	rep := Report{Status: health.Healthy, Services: make(map[string]health.Report, len(a.services)+1),
		Upstreams: make(map[string]Upstream, len(a.services))}
	var mu sync.Mutex
	add := func(name string, r health.Report) {
		mu.Lock()
		defer mu.Unlock()
		rep.Services[name] = r
		rep.Status = health.Worse(rep.Status, r.Status)
	}
	var wg sync.WaitGroup
	for _, s := range a.services {
		wg.Go(func() {
			up := a.probeAll(ctx, s)
			add(s.Name, summary(up.Instances))
			mu.Lock()
			rep.Upstreams[s.Name] = up
			mu.Unlock()
		})
	}
	wg.Go(func() { add(Self, a.self(ctx)) })
	wg.Wait()
	return rep
}

// probeAll asks each of a service's instances at once.
func (a *Aggregator) probeAll(ctx context.Context, s Service) Upstream {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	known := s.Upstream.Instances(ctx)
	up := Upstream{Breaker: s.Upstream.BreakerState(), Instances: make([]Instance, len(known))}
	var wg sync.WaitGroup
	for i, in := range known {
		wg.Go(func() {
			up.Instances[i] = Instance{Instance: i + 1, Report: a.probe(ctx, s.Name, i+1, in.ReadyURL),
				InService: in.InService, Failures: in.Failures}
		})
	}
	wg.Wait()
	return up
}

// summary is a service's report from its instances' (see the package doc).
func summary(instances []Instance) health.Report {
	switch len(instances) {
	case 0:
		return health.Report{Status: health.Unhealthy, Checks: map[string]health.Status{CheckInstances: health.Unhealthy}}
	case 1:
		return instances[0].Report
	}
	rep := health.Report{Checks: map[string]health.Status{}}
	healthy, unhealthy := 0, 0
	for _, in := range instances {
		switch in.Status {
		case health.Healthy:
			healthy++
		case health.Unhealthy:
			unhealthy++
		}
		for check, st := range in.Checks {
			if prev, ok := rep.Checks[check]; ok {
				st = health.Worse(prev, st)
			}
			rep.Checks[check] = st
		}
	}
	switch {
	case healthy == len(instances):
		rep.Status = health.Healthy
	case unhealthy == len(instances):
		rep.Status = health.Unhealthy
	default:
		rep.Status = health.Degraded
	}
	return rep
}

// ServeHTTP answers the shared report (Shared): 200 when every program is healthy or
// degraded, 503 when any is unhealthy. A client that leaves while it waits gets
// nothing.
func (a *Aggregator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rep, ok := a.Shared(r.Context())
	if !ok {
		return
	}
	status := http.StatusOK
	if rep.Status == health.Unhealthy {
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	httpjson.Write(w, status, rep)
}

// probe asks one instance of a service for its readiness report at readyURL, within
// ctx's deadline.
func (a *Aggregator) probe(ctx context.Context, service string, instance int, readyURL string) health.Report {
	rep, check, err := a.fetch(ctx, readyURL)
	if err != nil {
		if ctx.Err() != nil {
			check = CheckResponsive
		}
		a.log.WarnContext(ctx, "service readiness unknown", "service", service, "instance", instance, "check", check, "err", err)
		return health.Report{Status: health.Unhealthy, Checks: map[string]health.Status{check: health.Unhealthy}}
	}
	return rep
}

// fetch gets an instance's report; on failure it names the check that failed.
func (a *Aggregator) fetch(ctx context.Context, readyURL string) (health.Report, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, readyURL, nil)
	if err != nil {
		return health.Report{}, CheckReachable, err
	}
	// So that the service's log lines for this probe carry the /health request's id.
	if id := logging.RequestID(ctx); id != "" {
		req.Header.Set(httpserver.RequestIDHeader, id)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return health.Report{}, CheckReachable, err
	}
	defer resp.Body.Close()
	// /readyz answers its report with 200 (healthy, degraded) or 503 (unhealthy).
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return health.Report{}, CheckReport, fmt.Errorf("readyz answered status %d", resp.StatusCode)
	}
	var rep health.Report
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxReportBytes)).Decode(&rep); err != nil {
		return health.Report{}, CheckReport, fmt.Errorf("decode readyz: %w", err)
	}
	switch rep.Status {
	case health.Healthy, health.Degraded, health.Unhealthy:
	default:
		return health.Report{}, CheckReport, fmt.Errorf("readyz reported status %q", rep.Status)
	}
	if rep.Checks == nil {
		rep.Checks = map[string]health.Status{}
	}
	return rep, "", nil
}
