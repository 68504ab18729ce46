package systemhealth_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/gateway/internal/systemhealth"
	"github.com/bazaar-shop/bazaar/internal/testkit/closedport"
	"github.com/bazaar-shop/bazaar/pkg/balancer"
	"github.com/bazaar-shop/bazaar/pkg/health"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
	"github.com/bazaar-shop/bazaar/pkg/httpserver"
	"github.com/bazaar-shop/bazaar/pkg/logging"
)

func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// reporting is a service whose /readyz answers rep the way pkg/health does.
func reporting(t *testing.T, rep health.Report) string {
	t.Helper()
	return serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		status := http.StatusOK
		if rep.Status == health.Unhealthy {
			status = http.StatusServiceUnavailable
		}
		httpjson.Write(w, status, rep)
	})
}

func closedURL(t *testing.T) string {
	t.Helper()
	return closedport.URL(t)
}

// one is the balancer of a service with one instance, asked for readiness at url.
func one(t *testing.T, url string) *balancer.Balancer {
	t.Helper()
	return instances(t, url)
}

// instances is the balancer of a service with an instance at each url.
func instances(t *testing.T, urls ...string) *balancer.Balancer {
	t.Helper()
	b, err := balancer.New(balancer.Options{Name: "svc", URLs: urls})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func selfReporting(rep health.Report) func(context.Context) health.Report {
	return func(context.Context) health.Report { return rep }
}

var healthy = health.Report{Status: health.Healthy, Checks: map[string]health.Status{"postgres": health.Healthy}}

func newAggregator(t *testing.T, services []systemhealth.Service, self health.Report, timeout time.Duration) *systemhealth.Aggregator {
	t.Helper()
	log, err := logging.New(t.Output(), "debug", "gateway")
	if err != nil {
		t.Fatal(err)
	}
	return systemhealth.New(services, selfReporting(self), timeout, log)
}

func TestEachServiceReportedWithWhyItFailed(t *testing.T) {
	t.Parallel()
	degraded := health.Report{Status: health.Degraded, Checks: map[string]health.Status{"postgres": health.Healthy, "redis": health.Unhealthy}}
	unhealthy := health.Report{Status: health.Unhealthy, Checks: map[string]health.Status{"postgres": health.Unhealthy}}
	hanging := serve(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	garbage := serve(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	notFound := serve(t, http.NotFound)
	bogusStatus := serve(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"status":"fine"}`) })

	agg := newAggregator(t, []systemhealth.Service{
		{Name: "healthy", Upstream: one(t, reporting(t, healthy)+"/")}, // a trailing slash is fine
		{Name: "degraded", Upstream: one(t, reporting(t, degraded))},
		{Name: "unhealthy", Upstream: one(t, reporting(t, unhealthy))},
		{Name: "down", Upstream: one(t, closedURL(t))},
		{Name: "hanging", Upstream: one(t, hanging)},
		{Name: "garbage", Upstream: one(t, garbage)},
		{Name: "notfound", Upstream: one(t, notFound)},
		{Name: "bogus", Upstream: one(t, bogusStatus)},
	}, healthy, 300*time.Millisecond)

	rep := agg.Check(context.Background())
	rep.Upstreams = nil // TestEachInstanceIsShown
	failed := func(check string) health.Report {
		return health.Report{Status: health.Unhealthy, Checks: map[string]health.Status{check: health.Unhealthy}}
	}
	want := systemhealth.Report{Status: health.Unhealthy, Services: map[string]health.Report{
		"healthy":   healthy,
		"degraded":  degraded,
		"unhealthy": unhealthy,
		"down":      failed(systemhealth.CheckReachable),
		"hanging":   failed(systemhealth.CheckResponsive),
		"garbage":   failed(systemhealth.CheckReport),
		"notfound":  failed(systemhealth.CheckReport),
		"bogus":     failed(systemhealth.CheckReport),
		"gateway":   healthy,
	}}
	if !reflect.DeepEqual(rep, want) {
		t.Errorf("got  %+v\nwant %+v", rep, want)
	}
}

func TestServicesAreAskedConcurrently(t *testing.T) {
	t.Parallel()
	// Each service answers only once all of them have been asked: asked one after
	// the other, the first would wait for the rest until its timeout.
	const n = 5
	var mu sync.Mutex
	asked := 0
	all := make(chan struct{})
	barrier := func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if asked++; asked == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
			httpjson.Write(w, http.StatusOK, healthy)
		case <-r.Context().Done():
		}
	}
	var services []systemhealth.Service
	for _, name := range []string{"users", "inventory", "payments", "orders", "notifications"} {
		services = append(services, systemhealth.Service{Name: name, Upstream: one(t, serve(t, barrier))})
	}
	rep := newAggregator(t, services, healthy, 5*time.Second).Check(context.Background())
	if rep.Status != health.Healthy || len(rep.Services) != n+1 {
		t.Errorf("got %+v, want all %d services and the gateway healthy", rep, n)
	}
}

func TestStatusCodeFollowsTheWorstProgram(t *testing.T) {
	t.Parallel()
	degraded := health.Report{Status: health.Degraded, Checks: map[string]health.Status{"redis": health.Unhealthy}}
	for _, tc := range []struct {
		name     string
		service  string // URL
		self     health.Report
		want     health.Status
		wantCode int
	}{
		{"all healthy", reporting(t, healthy), healthy, health.Healthy, http.StatusOK},
		{"service degraded", reporting(t, degraded), healthy, health.Degraded, http.StatusOK},
		{"gateway degraded", reporting(t, healthy), degraded, health.Degraded, http.StatusOK},
		{"service down", closedURL(t), degraded, health.Unhealthy, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			agg := newAggregator(t, []systemhealth.Service{{Name: "users", Upstream: one(t, tc.service)}}, tc.self, time.Second)
			rec := httptest.NewRecorder()
			agg.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
			var rep systemhealth.Report
			if err := json.NewDecoder(rec.Body).Decode(&rep); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tc.wantCode || rep.Status != tc.want {
				t.Errorf("got %d %s, want %d %s", rec.Code, rep.Status, tc.wantCode, tc.want)
			}
			if rep.Services["gateway"].Status != tc.self.Status {
				t.Errorf("gateway reported as %s, want %s", rep.Services["gateway"].Status, tc.self.Status)
			}
		})
	}
}

func TestProbesCarryTheRequestID(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	url := serve(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get(httpserver.RequestIDHeader)
		httpjson.Write(w, http.StatusOK, healthy)
	})
	agg := newAggregator(t, []systemhealth.Service{{Name: "users", Upstream: one(t, url)}}, healthy, time.Second)
	agg.Check(logging.WithRequestID(context.Background(), "health-1"))
	if id := <-got; id != "health-1" {
		t.Errorf("the service got request id %q, want health-1", id)
	}
}

// counting is a healthy service that counts the readiness checks it gets, and holds
// each until release is closed (nil: answers at once).
func counting(t *testing.T, asked *atomic.Int32, release <-chan struct{}) string {
	t.Helper()
	return serve(t, func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		if release != nil {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		httpjson.Write(w, http.StatusOK, healthy)
	})
}

func TestConcurrentCallersShareOneCheck(t *testing.T) {
	t.Parallel()
	var asked atomic.Int32
	release := make(chan struct{})
	// A cache that outlives the test: whoever comes while the check runs waits for
	// it, whoever comes after is given its report; nobody starts a second one.
	agg := newAggregator(t, []systemhealth.Service{{Name: "users", Upstream: one(t, counting(t, &asked, release))}}, healthy, 5*time.Second).
		CacheFor(time.Hour)

	const callers = 20
	reports := make([]int, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			rec := httptest.NewRecorder()
			agg.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
			reports[i] = rec.Code
		})
	}
	// The check is under way (the service has been asked) before it may finish.
	for deadline := time.Now().Add(5 * time.Second); asked.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the service was never asked")
		}
	}
	close(release)
	wg.Wait()
	if n := asked.Load(); n != 1 {
		t.Errorf("%d callers made the service answer %d checks, want 1", callers, n)
	}
	for i, code := range reports {
		if code != http.StatusOK {
			t.Errorf("caller %d got %d", i, code)
		}
	}
}

func TestTheSharedReportIsCheckedAgainOnceItIsOld(t *testing.T) {
	t.Parallel()
	var asked atomic.Int32
	agg := newAggregator(t, []systemhealth.Service{{Name: "users", Upstream: one(t, counting(t, &asked, nil))}}, healthy, 5*time.Second).
		CacheFor(20 * time.Millisecond)
	if _, ok := agg.Shared(context.Background()); !ok {
		t.Fatalf("first check: Shared gave no report, want one (asked %d)", asked.Load())
	}
	if n := asked.Load(); n != 1 {
		t.Fatalf("first check: asked %d, want 1", n)
	}
	for deadline := time.Now().Add(5 * time.Second); asked.Load() < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the report was never checked again")
		}
		agg.Shared(context.Background())
	}
	// Without a cache every call checks.
	agg = newAggregator(t, []systemhealth.Service{{Name: "users", Upstream: one(t, counting(t, &asked, nil))}}, healthy, 5*time.Second)
	before := asked.Load()
	agg.Shared(context.Background())
	agg.Shared(context.Background())
	if n := asked.Load() - before; n != 2 {
		t.Errorf("uncached: %d checks for 2 calls", n)
	}
}

func TestAWaitingCallerCanLeave(t *testing.T) {
	t.Parallel()
	var asked atomic.Int32
	release := make(chan struct{})
	url := counting(t, &asked, release)
	// Registered after the server's Close, so run before it: Close waits for the
	// held answer.
	t.Cleanup(func() { close(release) })
	agg := newAggregator(t, []systemhealth.Service{{Name: "users", Upstream: one(t, url)}}, healthy, 5*time.Second).
		CacheFor(time.Hour)
	go agg.Shared(context.Background()) // the check that hangs until the test ends
	for deadline := time.Now().Add(5 * time.Second); asked.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the service was never asked")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := agg.Shared(ctx); ok {
		t.Error("a caller that left got a report")
	}
}

func TestEachInstanceIsShown(t *testing.T) {
	t.Parallel()
	degraded := health.Report{Status: health.Degraded, Checks: map[string]health.Status{"postgres": health.Healthy, "redis": health.Unhealthy}}
	up, down := reporting(t, healthy), closedURL(t)
	half := instances(t, up, down)
	// The gateway's calls failed on the dead instance: it is out of service.
	for range 3 {
		for {
			c, err := half.Pick(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.Instance().URL().String() == down {
				c.Done(balancer.Failure)
				break
			}
			c.Done(balancer.Abandoned)
		}
	}
	agg := newAggregator(t, []systemhealth.Service{
		{Name: "inventory", Upstream: half},
		{Name: "payments", Upstream: instances(t, reporting(t, healthy), reporting(t, healthy))},
		{Name: "users", Upstream: instances(t, reporting(t, healthy), reporting(t, degraded))},
		{Name: "orders", Upstream: instances(t, closedURL(t), closedURL(t))},
	}, healthy, time.Second)

	rec := httptest.NewRecorder()
	agg.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
	body := rec.Body.String()
	var rep systemhealth.Report
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatal(err)
	}
	reachable := health.Report{Status: health.Unhealthy, Checks: map[string]health.Status{systemhealth.CheckReachable: health.Unhealthy}}
	wantServices := map[string]health.Report{
		// One of two ready: it still serves, on fewer instances.
		"inventory": {Status: health.Degraded, Checks: map[string]health.Status{"postgres": health.Healthy, systemhealth.CheckReachable: health.Unhealthy}},
		"payments":  healthy,
		"users":     {Status: health.Degraded, Checks: map[string]health.Status{"postgres": health.Healthy, "redis": health.Unhealthy}},
		"orders":    reachable,
		"gateway":   healthy,
	}
	if !reflect.DeepEqual(rep.Services, wantServices) || rep.Status != health.Unhealthy {
		t.Errorf("services %+v (%s)\nwant     %+v (unhealthy)", rep.Services, rep.Status, wantServices)
	}
	wantInventory := systemhealth.Upstream{Breaker: "closed", Instances: []systemhealth.Instance{
		{Instance: 1, Report: healthy, InService: true},
		{Instance: 2, Report: reachable, InService: false, Failures: 3},
	}}
	if got := rep.Upstreams["inventory"]; !reflect.DeepEqual(got, wantInventory) {
		t.Errorf("inventory's instances %+v\nwant %+v", got, wantInventory)
	}
	if n := len(rep.Upstreams["payments"].Instances); n != 2 {
		t.Errorf("payments' instances %+v; want 2", rep.Upstreams["payments"].Instances)
	}
	if n := len(rep.Upstreams); n != 4 {
		t.Errorf("upstreams %+v; want every service's, 4", rep.Upstreams)
	}
	// The public report shows no address.
	if strings.Contains(body, "127.0.0.1") {
		t.Errorf("the report shows addresses: %s", body)
	}
}
