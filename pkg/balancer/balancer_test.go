package balancer_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/balancer"
	"github.com/bazaar-shop/bazaar/pkg/logging"
)

// readiness is an instance's /readyz: it answers status, and records when it was
// asked.
type readiness struct {
	url    string
	status atomic.Int32
	mu     sync.Mutex
	asked  []time.Time
}

func newReadiness(t *testing.T, status int) *readiness {
	t.Helper()
	r := &readiness{}
	r.status.Store(int32(status))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/readyz" {
			http.NotFound(w, req)
			return
		}
		r.mu.Lock()
		r.asked = append(r.asked, time.Now())
		r.mu.Unlock()
		w.WriteHeader(int(r.status.Load()))
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func (r *readiness) firstAskedAfter(t0 time.Time) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, at := range r.asked {
		if !at.Before(t0) {
			return at, true
		}
	}
	return time.Time{}, false
}

func newBalancer(t *testing.T, opts balancer.Options) *balancer.Balancer {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "inventory"
	}
	log, err := logging.New(t.Output(), "debug", "test")
	if err != nil {
		t.Fatal(err)
	}
	opts.Log = log.With("upstream", opts.Name)
	b, err := balancer.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func pick(t *testing.T, b *balancer.Balancer) *balancer.Call {
	t.Helper()
	c, err := b.Pick(context.Background(), nil)
	if err != nil {
		t.Fatalf("Pick: %v", err)
	}
	return c
}

// pickOn picks until the call goes to the instance at base (abandoning the others),
// for tests that must fail one instance in particular.
func pickOn(t *testing.T, b *balancer.Balancer, base string) *balancer.Call {
	t.Helper()
	for range 1000 {
		c := pick(t, b)
		if c.Instance().URL().String() == base {
			return c
		}
		c.Done(balancer.Abandoned)
	}
	t.Fatalf("no call went to %s", base)
	return nil
}

func fail(t *testing.T, b *balancer.Balancer, base string, n int) {
	t.Helper()
	for range n {
		pickOn(t, b, base).Done(balancer.Failure)
	}
}

// picked counts the instances n calls go to, each ended at once.
func picked(t *testing.T, b *balancer.Balancer, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		c := pick(t, b)
		got[c.Instance().URL().String()]++
		c.Done(balancer.Success)
	}
	return got
}

// until polls cond every few milliseconds until it holds, failing after a deadline.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

func inService(b *balancer.Balancer, base string) bool {
	for _, in := range b.Instances(context.Background()) {
		if in.URL == base {
			return in.InService
		}
	}
	return false
}

func TestCallsGoToTheLessLoadedOfTwoRandomInstances(t *testing.T) {
	t.Parallel()
	a, bb, c := "http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"
	b := newBalancer(t, balancer.Options{URLs: []string{a, bb, c}})

	// Idle alike, the calls spread over all three.
	got := picked(t, b, 3000)
	for _, u := range []string{a, bb, c} {
		if got[u] < 700 {
			t.Errorf("%s got %d of 3000 calls to idle instances; want about a third: %v", u, got[u], got)
		}
	}

	// With a call outstanding on one, the two choices always include a less loaded
	// one, so it gets nothing new until the call ends.
	held := pickOn(t, b, a)
	got = picked(t, b, 1000)
	if got[a] != 0 {
		t.Errorf("with a call outstanding on %s: it got %d of 1000 calls, want none: %v", a, got[a], got)
	}
	for _, u := range []string{bb, c} {
		if got[u] < 300 {
			t.Errorf("with a call outstanding on another instance: %s got %d of 1000 calls, want at least 300 (the rest shared): %v", u, got[u], got)
		}
	}
	held.Done(balancer.Success)
	if got := picked(t, b, 3000); got[a] < 700 {
		t.Errorf("once its calls ended the instance got %d of 3000", got[a])
	}
	for _, in := range b.Instances(context.Background()) {
		if in.Outstanding != 0 {
			t.Errorf("%s has %d calls outstanding after all ended", in.URL, in.Outstanding)
		}
	}
}

func TestAFailingInstanceIsEjectedAndReadmittedWithBackoffOnceItsReadyzAnswers(t *testing.T) {
	t.Parallel()
	sick, good := newReadiness(t, http.StatusServiceUnavailable), newReadiness(t, http.StatusOK)
	const backoff = 200 * time.Millisecond
	b := newBalancer(t, balancer.Options{URLs: []string{sick.url, good.url},
		Settings: balancer.Settings{EjectAfter: 3, EjectBackoff: backoff, EjectBackoffMax: 10 * backoff}})

	// Failures not in a row do not eject: a success in between starts the count again.
	fail(t, b, sick.url, 2)
	pickOn(t, b, sick.url).Done(balancer.Success)
	fail(t, b, sick.url, 2)
	if !inService(b, sick.url) {
		t.Fatal("ejected after two failures in a row")
	}
	// The third in a row ejects it: every call goes to the other.
	fail(t, b, sick.url, 1)
	ejectedAt := time.Now()
	if inService(b, sick.url) {
		t.Fatal("still in service after three failures in a row")
	}
	if got := picked(t, b, 200); got[sick.url] != 0 {
		t.Fatalf("an ejected instance got calls: %v", got)
	}

	// Its /readyz is asked once the backoff is over, not before, and while it
	// answers 503 it stays out, asked again and again.
	until(t, "the ejected instance's /readyz is asked twice", func() bool {
		picked(t, b, 1) // the other instance takes the calls meanwhile
		first, ok := sick.firstAskedAfter(ejectedAt)
		if !ok {
			return false
		}
		_, again := sick.firstAskedAfter(first.Add(time.Millisecond))
		return again
	})
	if first, _ := sick.firstAskedAfter(ejectedAt); first.Sub(ejectedAt) < backoff {
		t.Errorf("readiness asked %s after the ejection; want no sooner than the backoff %s", first.Sub(ejectedAt), backoff)
	}
	if inService(b, sick.url) {
		t.Fatal("re-admitted while its /readyz answers 503")
	}

	// Ready again: back in service, and calls reach it.
	sick.status.Store(http.StatusOK)
	until(t, "the instance is back in service", func() bool {
		picked(t, b, 1)
		return inService(b, sick.url)
	})
	if got := picked(t, b, 400); got[sick.url] < 100 {
		t.Errorf("back in service, it got %d of 400 calls", got[sick.url])
	}

	// Failing again at once: the second ejection in a row lasts twice as long.
	fail(t, b, sick.url, 3)
	ejectedAt = time.Now()
	until(t, "the instance is back in service after its second ejection", func() bool {
		picked(t, b, 1)
		return inService(b, sick.url)
	})
	if first, _ := sick.firstAskedAfter(ejectedAt); first.Sub(ejectedAt) < 2*backoff {
		t.Errorf("second ejection: readiness asked %s after it; want no sooner than %s", first.Sub(ejectedAt), 2*backoff)
	}
}

// The checks run whether calls come or not: an instance that is ready again is back
// in service before the next call, which finds it there.
func TestAnEjectedInstanceIsCheckedWithoutCallsComing(t *testing.T) {
	t.Parallel()
	only := newReadiness(t, http.StatusServiceUnavailable)
	b := newBalancer(t, balancer.Options{URLs: []string{only.url},
		Settings: balancer.Settings{EjectAfter: 1, EjectBackoff: 20 * time.Millisecond}})
	fail(t, b, only.url, 1)
	ejectedAt := time.Now()
	until(t, "the ejected instance is asked twice with no call made", func() bool {
		first, ok := only.firstAskedAfter(ejectedAt)
		if !ok {
			return false
		}
		_, again := only.firstAskedAfter(first.Add(time.Millisecond))
		return again
	})
	only.status.Store(http.StatusOK)
	until(t, "the instance is back in service with no call made", func() bool { return inService(b, only.url) })
	if c, err := b.Pick(context.Background(), nil); err != nil {
		t.Errorf("the first call after it came back: %v", err)
	} else {
		c.Done(balancer.Success)
	}
}

func TestWhenEveryInstanceIsOutCallsFailAtOnceNamingTheServiceAndRecoverByThemselves(t *testing.T) {
	t.Parallel()
	one, two := newReadiness(t, http.StatusServiceUnavailable), newReadiness(t, http.StatusServiceUnavailable)
	b := newBalancer(t, balancer.Options{Name: "payments", URLs: []string{one.url, two.url},
		Settings: balancer.Settings{EjectAfter: 2, EjectBackoff: 50 * time.Millisecond, BreakerFailures: 5, BreakerCooldown: 300 * time.Millisecond}})
	fail(t, b, one.url, 2)
	fail(t, b, two.url, 2)

	start := time.Now()
	_, err := b.Pick(context.Background(), nil)
	var ae *apperr.Error
	if !errors.As(err, &ae) {
		t.Fatalf("Pick with every instance out = %v; want an *apperr.Error", err)
	}
	if ae.Code != apperr.Unavailable {
		t.Errorf("Pick with every instance out: code %s, want %s", ae.Code, apperr.Unavailable)
	}
	if !errors.Is(err, balancer.ErrNoInstance) {
		t.Errorf("Pick with every instance out = %v; want it wrapping ErrNoInstance", err)
	}
	if ae.Message != "the payments service is unavailable" || strings.Contains(ae.Message, "127.0.0.1") {
		t.Errorf("message %q; want it to name the service and no address", ae.Message)
	}
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Errorf("refusing took %s; want at once", took)
	}
	// The calls that found no instance open the upstream's breaker: 4 failures on
	// instances and this one make 5 in a row.
	if s := b.BreakerState(); s != "open" {
		t.Errorf("breaker %s after 5 failures in a row; want open", s)
	}
	_, err = b.Pick(context.Background(), nil)
	if !errors.Is(err, balancer.ErrOpen) {
		t.Errorf("Pick with the breaker open = %v; want it wrapping ErrOpen", err)
	}
	if code := apperr.CodeOf(err); code != apperr.Unavailable {
		t.Errorf("Pick with the breaker open: code %s, want %s", code, apperr.Unavailable)
	}

	// Both come back: their checks (which go on while the breaker is open) put them
	// back in service, and after the cool-down the trial call closes the breaker.
	one.status.Store(http.StatusOK)
	two.status.Store(http.StatusOK)
	until(t, "calls go through again", func() bool {
		c, err := b.Pick(context.Background(), nil)
		if err != nil {
			return false
		}
		c.Done(balancer.Success)
		return true
	})
	if s := b.BreakerState(); s != "closed" {
		t.Errorf("breaker %s after a good trial call", s)
	}
	got := picked(t, b, 200)
	for _, u := range []string{one.url, two.url} {
		if got[u] < 50 {
			t.Errorf("after recovery: %s got %d of 200 calls, want at least 50 (both in use): %v", u, got[u], got)
		}
	}
}

func TestOneBadInstanceAmongGoodOnesNeverOpensTheUpstreamsBreaker(t *testing.T) {
	t.Parallel()
	bad, good := "http://127.0.0.1:1", "http://127.0.0.1:2"
	// Never ejected, so that its failures keep coming between the good one's answers.
	b := newBalancer(t, balancer.Options{URLs: []string{bad, good},
		Settings: balancer.Settings{EjectAfter: 1000, BreakerFailures: 3}})
	for range 100 {
		c := pick(t, b)
		if c.Instance().URL().String() == bad {
			c.Done(balancer.Failure)
		} else {
			c.Done(balancer.Success)
		}
	}
	if s := b.BreakerState(); s != "closed" {
		t.Fatalf("breaker %s; want closed while one instance answers", s)
	}
	// When every instance fails, the failures in a row open it.
	pickOn(t, b, good).Done(balancer.Success)
	fail(t, b, bad, 1)
	fail(t, b, good, 1)
	if s := b.BreakerState(); s != "closed" {
		t.Fatalf("breaker %s after 2 failures; want closed", s)
	}
	fail(t, b, bad, 1)
	if s := b.BreakerState(); s != "open" {
		t.Errorf("breaker %s after both instances failed 3 times in a row; want open", s)
	}
}

// An error the instance answered shows it up: it is not ejected for it, but the
// upstream's breaker counts it.
func TestServiceErrorsCountForTheBreakerNotForEjection(t *testing.T) {
	t.Parallel()
	a, c := "http://127.0.0.1:1", "http://127.0.0.1:2"
	b := newBalancer(t, balancer.Options{URLs: []string{a, c},
		Settings: balancer.Settings{EjectAfter: 2, BreakerFailures: 7}})
	fail(t, b, a, 1)
	for range 3 {
		pickOn(t, b, a).Done(balancer.ServiceError)
		pickOn(t, b, c).Done(balancer.ServiceError)
	}
	for _, in := range b.Instances(context.Background()) {
		if !in.InService || in.Failures != 0 {
			t.Errorf("%+v after service errors; want in service, no failures in a row", in)
		}
	}
	if s := b.BreakerState(); s != "open" {
		t.Errorf("breaker %s after 7 failures and errors in a row from every instance; want open", s)
	}
}

func TestCallsTheirCallersAbandonedCountForNothing(t *testing.T) {
	t.Parallel()
	b := newBalancer(t, balancer.Options{URLs: []string{"http://127.0.0.1:1"},
		Settings: balancer.Settings{EjectAfter: 2, BreakerFailures: 2}})
	for range 10 {
		pick(t, b).Done(balancer.Abandoned)
	}
	c := pick(t, b)
	c.Done(balancer.Failure)
	c.Done(balancer.Failure) // a second Done is ignored
	in := b.Instances(context.Background())[0]
	if !in.InService {
		t.Errorf("after 10 abandoned calls and one failure: %+v out of service, want in service", in)
	}
	if in.Failures != 1 {
		t.Errorf("after 10 abandoned calls and one failure: %d failures in a row, want 1", in.Failures)
	}
	if in.Outstanding != 0 {
		t.Errorf("after 10 abandoned calls and one failure: %d calls outstanding, want 0", in.Outstanding)
	}
	if s := b.BreakerState(); s != "closed" {
		t.Errorf("after 10 abandoned calls and one failure: breaker %s, want closed", s)
	}
}

func TestARetryAvoidsTheInstanceItsLastAttemptFailedOn(t *testing.T) {
	t.Parallel()
	a, other := "http://127.0.0.1:1", "http://127.0.0.1:2"
	b := newBalancer(t, balancer.Options{URLs: []string{a, other}})
	first := pickOn(t, b, a)
	first.Done(balancer.Failure)
	for range 100 {
		c, err := b.Pick(context.Background(), first.Instance())
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Instance().URL().String(); got != other {
			t.Fatalf("a retry avoiding %s went to %s", a, got)
		}
		c.Done(balancer.Success)
	}
	// With no other instance, it gets the avoided one rather than nothing.
	single := newBalancer(t, balancer.Options{URLs: []string{a}})
	c := pick(t, single)
	c.Done(balancer.Failure)
	again, err := single.Pick(context.Background(), c.Instance())
	if err != nil {
		t.Fatalf("the only instance, avoided: %v", err)
	}
	if again.Instance() != c.Instance() {
		t.Errorf("the only instance, avoided: picked %s, want it, %s", again.Instance().URL(), c.Instance().URL())
	}
}

// fakeResolver answers each name with the addresses set for it, or an error.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][]string
	err     error
	asked   atomic.Int32
}

func (f *fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	f.asked.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	if a, ok := f.answers[host]; ok {
		return slices.Clone(a), nil
	}
	return nil, fmt.Errorf("no such host %s", host)
}

func (f *fakeResolver) set(host string, addrs []string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[host], f.err = addrs, err
}

func TestANameIsResolvedIntoInstancesAndFollowedAsItsAddressesChange(t *testing.T) {
	t.Parallel()
	res := &fakeResolver{answers: map[string][]string{"inventory": {"10.0.0.2", "10.0.0.1"}}}
	b := newBalancer(t, balancer.Options{
		URLs:      []string{"http://inventory:8080", "http://192.0.2.9:8080"},
		ReadyURLs: []string{"http://inventory:9090", "http://192.0.2.9:9090"},
		Resolver:  res,
		Settings:  balancer.Settings{ResolveEvery: 50 * time.Millisecond, EjectAfter: 1, EjectBackoff: time.Hour},
	})
	state := func() []string {
		var out []string
		for _, in := range b.Instances(context.Background()) {
			out = append(out, fmt.Sprintf("%s %s %v", in.URL, in.ReadyURL, in.InService))
		}
		return out
	}
	// The first call waits for the name's first resolution; each address is an
	// instance, asked for readiness on the paired URL's port, in address order.
	want := []string{
		"http://10.0.0.1:8080 http://10.0.0.1:9090/readyz true",
		"http://10.0.0.2:8080 http://10.0.0.2:9090/readyz true",
		"http://192.0.2.9:8080 http://192.0.2.9:9090/readyz true",
	}
	if got := state(); !slices.Equal(got, want) {
		t.Fatalf("instances %q; want %q", got, want)
	}
	// Calls carry the name, not the address, in their Host header.
	c := pickOn(t, b, "http://10.0.0.1:8080")
	if c.Instance().Host() != "inventory:8080" {
		t.Errorf("Host %q; want inventory:8080", c.Instance().Host())
	}
	c.Done(balancer.Failure) // ejected for an hour

	// Scaled up: the new address joins in service, the known ones keep their state.
	res.set("inventory", []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, nil)
	want = []string{
		"http://10.0.0.1:8080 http://10.0.0.1:9090/readyz false",
		"http://10.0.0.2:8080 http://10.0.0.2:9090/readyz true",
		"http://10.0.0.3:8080 http://10.0.0.3:9090/readyz true",
		"http://192.0.2.9:8080 http://192.0.2.9:9090/readyz true",
	}
	until(t, "the third address is an instance", func() bool {
		picked(t, b, 1) // resolutions start as calls come
		return slices.Equal(state(), want)
	})

	// A failed resolution keeps what is known.
	res.set("inventory", nil, errors.New("SERVFAIL"))
	asked := res.asked.Load()
	until(t, "the name is asked again", func() bool {
		picked(t, b, 1)
		return res.asked.Load() > asked+1
	})
	if got := state(); !slices.Equal(got, want) {
		t.Fatalf("after a failed resolution: %q; want %q", got, want)
	}

	// Scaled down: the gone addresses leave.
	res.set("inventory", []string{"10.0.0.3"}, nil)
	want = []string{
		"http://10.0.0.3:8080 http://10.0.0.3:9090/readyz true",
		"http://192.0.2.9:8080 http://192.0.2.9:9090/readyz true",
	}
	until(t, "the gone addresses are no instances", func() bool {
		picked(t, b, 1)
		return slices.Equal(state(), want)
	})
}

func TestANameThatDoesNotResolveIsNoInstanceYet(t *testing.T) {
	t.Parallel()
	res := &fakeResolver{answers: map[string][]string{}}
	b := newBalancer(t, balancer.Options{URLs: []string{"http://inventory:8080"}, Resolver: res,
		Settings: balancer.Settings{ResolveEvery: 50 * time.Millisecond, BreakerCooldown: 50 * time.Millisecond}})
	if _, err := b.Pick(context.Background(), nil); !errors.Is(err, balancer.ErrNoInstance) {
		t.Fatalf("Pick before the name resolves = %v; want ErrNoInstance", err)
	}
	res.set("inventory", []string{"10.0.0.1"}, nil)
	until(t, "the name resolves", func() bool {
		c, err := b.Pick(context.Background(), nil)
		if err == nil {
			c.Done(balancer.Success)
		}
		return err == nil
	})
}

func TestNewRefusesBadURLsWithoutShowingThem(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string]balancer.Options{
		"no URL":          {Name: "users"},
		"a path":          {Name: "users", URLs: []string{"http://u:hunter2@users:8080/api"}},
		"not http":        {Name: "users", URLs: []string{"ftp://u:hunter2@users"}},
		"no host":         {Name: "users", URLs: []string{"http://u:hunter2@/x"}},
		"unpaired":        {Name: "users", URLs: []string{"http://a:1", "http://b:1"}, ReadyURLs: []string{"http://a:2"}},
		"name elsewhere":  {Name: "users", URLs: []string{"http://users:8080"}, ReadyURLs: []string{"http://other:9090"}},
		"bad ready URL":   {Name: "users", URLs: []string{"http://users:8080"}, ReadyURLs: []string{"users:9090"}},
		"a query string":  {Name: "users", URLs: []string{"http://users:8080?x=hunter2"}},
		"an empty member": {Name: "users", URLs: []string{""}},
	} {
		_, err := balancer.New(opts)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "users") {
			t.Errorf("%s: %v; want the upstream named and no value shown", name, err)
		}
	}
	if _, err := balancer.SplitURLs("http://a:1, http://u:hunter2@b:2/path"); err == nil ||
		!strings.Contains(err.Error(), "URL 2") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("SplitURLs = %v; want the position and no value", err)
	}
	got, err := balancer.SplitURLs(" http://a:1/ ,https://b ")
	if err != nil {
		t.Errorf("SplitURLs: %v", err)
	}
	if want := []string{"http://a:1", "https://b"}; !slices.Equal(got, want) {
		t.Errorf("SplitURLs = %q, want %q", got, want)
	}
}
