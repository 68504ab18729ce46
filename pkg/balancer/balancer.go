// Package balancer spreads the calls to one upstream service over its instances and
// keeps them away from the instances that fail.
//
// # Instances
//
// An upstream is a list of base URLs (SplitURLs reads INVENTORY_URL and the like). A
// URL whose host is an IP address is one instance. A plain-HTTP URL whose host is a
// name is as many instances as the name has addresses: it is resolved when the
// balancer is made and again every ResolveEvery, so that `docker compose up --scale
// inventory=3` or a headless Kubernetes Service is followed as instances come and go.
// An instance whose address stays keeps its state across resolutions; when a
// resolution fails, the name keeps the instances it had. Calls to such an instance
// carry the name in their Host header. An https URL is always one instance: its
// certificate names the host, not an address.
//
// Each instance has a readiness URL, its /readyz. By default it is the instance's own
// base URL with /readyz appended; when the probes are on another listener (the
// services' internal one), ReadyURLs gives one base URL per URL, in the same order. A
// name is paired with the same name (the port may differ), and each of its addresses
// is asked on the paired URL's port.
//
// # Choosing an instance
//
// Pick takes two instances in service at random and gives the call to the one with
// fewer calls outstanding (power of two choices over least outstanding requests): a
// slow instance, with calls piling up, gets fewer new ones, and no instance is
// flooded the way always picking the global least would flood one that fails fast.
//
// # Each instance's breaker: ejection, backoff, re-admission
//
// The caller says how each call went (Call.Done): a Failure is a call the instance
// did not answer (a refused or dropped connection, a time-out), which the caller
// tells apart from an error it answered (ServiceError: a 5xx, which may well be the
// service's as a whole, such as its database down, and shows the instance up). After
// EjectAfter failures in a row an instance is ejected: it gets no calls
// for EjectBackoff, doubled for each ejection in a row up to EjectBackoffMax (an
// instance that stayed in service for EjectBackoffMax starts again at EjectBackoff).
// Once that time is up its /readyz is asked (an active check), and again every
// EjectBackoff while it does not answer 200; the answer 200 puts it back in service.
// So an instance that died stays out however long it is dead, without a call being
// spent on it, and one that comes back gets calls again within about EjectBackoff,
// whether calls come meanwhile or not. The checks are run by a goroutine of the
// balancer's that runs while some instance is ejected, and ends when none is, or when
// the balancer is closed (Close).
//
// # The upstream's breaker
//
// The upstream as a whole has a circuit breaker too (sony/gobreaker). It opens after
// BreakerFailures failures or service errors in a row that took in every instance in
// service (so one bad instance among good ones never opens it), or calls that found
// no instance in service. While open, Pick fails at once; after
// BreakerCooldown one trial call goes through, and closes it if it succeeds.
//
// Pick fails with an *apperr.Error of code Unavailable, whose message names the
// service and no address, wrapping ErrOpen or ErrNoInstance: when every instance is
// out, callers answer 503 at once rather than wait for one.
package balancer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

// Errors wrapped by Pick's *apperr.Error.
var (
	// ErrOpen is the upstream's breaker refusing the call: it is open, or half-open
	// with its trial call under way.
	ErrOpen = errors.New("circuit breaker open")
	// ErrNoInstance is every instance being out of service (or a name that has not
	// resolved yet).
	ErrNoInstance = errors.New("no instance in service")
)

// errFailed, errAbandoned and errNoInstance are what the upstream's breaker is told.
var (
	errFailed    = errors.New("the call failed")
	errAbandoned = errors.New("the caller gave up")
)

// Settings tune a balancer; zero values take the defaults noted.
type Settings struct {
	// EjectAfter is how many failures in a row eject an instance (EJECT_AFTER);
	// default 3.
	EjectAfter int
	// EjectBackoff is how long a first ejection lasts, doubled for each further one in
	// a row, and how often an ejected instance's /readyz is asked once its time is up
	// (EJECT_BACKOFF); default 1s.
	EjectBackoff time.Duration
	// EjectBackoffMax caps an ejection (EJECT_BACKOFF_MAX); default 30s.
	EjectBackoffMax time.Duration
	// ResolveEvery is how often host names are resolved again (RESOLVE_EVERY);
	// default 5s.
	ResolveEvery time.Duration
	// BreakerFailures is how many failures in a row, across every instance in
	// service, open the upstream's breaker; default 5.
	BreakerFailures uint32
	// BreakerCooldown is how long the open breaker fails calls at once before a
	// trial call (BREAKER_COOLDOWN); default 5s.
	BreakerCooldown time.Duration
	// CheckTimeout bounds a readiness check and a name's resolution; default 2s.
	CheckTimeout time.Duration
}

func (s *Settings) setDefaults() {
	if s.EjectAfter <= 0 {
		s.EjectAfter = 3
	}
	if s.EjectBackoff <= 0 {
		s.EjectBackoff = time.Second
	}
	if s.EjectBackoffMax < s.EjectBackoff {
		s.EjectBackoffMax = max(30*time.Second, s.EjectBackoff)
	}
	if s.ResolveEvery <= 0 {
		s.ResolveEvery = 5 * time.Second
	}
	if s.BreakerFailures == 0 {
		s.BreakerFailures = 5
	}
	if s.BreakerCooldown <= 0 {
		s.BreakerCooldown = 5 * time.Second
	}
	if s.CheckTimeout <= 0 {
		s.CheckTimeout = 2 * time.Second
	}
}

// Resolver finds a host name's addresses (*net.Resolver is one).
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Options describe one upstream.
type Options struct {
	// Name names the service in errors ("the inventory service is unavailable").
	Name string
	// URLs are the base URLs of its instances (scheme, host and port; see SplitURLs).
	URLs []string
	// ReadyURLs, when set, are the base URLs to ask /readyz on, one per URL in the
	// same order (see the package doc); nil asks each instance on its own URL.
	ReadyURLs []string
	Settings
	// Resolver resolves host names; nil is net.DefaultResolver.
	Resolver Resolver
	// Client asks the readiness checks; nil is a client of the balancer's own.
	Client *http.Client
	// Log receives ejections, re-admissions, changes of the instance set and of the
	// breaker's state. The caller names the upstream in it (log.With); nil logs
	// nothing.
	Log *slog.Logger
}

// Balancer holds the instances of one upstream and picks one for each call. It is
// safe for concurrent use.
type Balancer struct {
	name    string
	s       Settings
	targets []target
	dynamic bool // some target is a name to resolve
	res     Resolver
	client  *http.Client
	log     *slog.Logger
	breaker *gobreaker.TwoStepCircuitBreaker[struct{}]

	// instances is the current set, replaced whole (under mu) when it changes, so
	// that Pick reads it without a lock.
	instances atomic.Pointer[[]*Instance]
	// runFailed says some instance has failed since the last success anywhere (see
	// everyInServiceFailed).
	runFailed atomic.Bool

	wake chan struct{} // tells the watcher of a new ejection
	// life ends with Close: it bounds the checks and resolutions, which bg counts.
	life context.Context
	end  context.CancelFunc
	bg   sync.WaitGroup

	mu          sync.Mutex
	closed      bool
	watching    bool          // the watcher runs
	byTarget    [][]*Instance // each target's instances
	resolving   chan struct{} // closed when the running resolution ends; nil if none
	nextResolve time.Time
	resolved    bool // the first resolution has ended
}

// target is one configured URL.
type target struct {
	base  *url.URL // as configured
	ready *url.URL // where its /readyz is (base when not given apart)
	name  bool     // the host is a name to resolve into instances
}

// Instance is one instance of the upstream.
type Instance struct {
	url   *url.URL // where calls go
	host  string   // the Host header they carry
	ready string   // its /readyz

	outstanding atomic.Int64
	failures    atomic.Int32 // in a row
	ejected     atomic.Bool
	until       atomic.Int64 // unix nanoseconds: no check before
	failedInRun atomic.Bool  // failed since the last success anywhere

	// Guarded by the balancer's mu.
	ejections  int // in a row
	admittedAt time.Time
}

// URL is where calls to the instance go: its base URL, an address in place of a name.
func (in *Instance) URL() *url.URL { return in.url }

// Host is what the calls' Host header should say: the configured host, a name where
// there is one.
func (in *Instance) Host() string { return in.host }

// New makes the balancer of one upstream. It fails when there is no URL, a URL is not
// an absolute http(s) base URL, or ReadyURLs does not pair with URLs; the errors give
// positions, never the values (which may hold passwords).
func New(opts Options) (*Balancer, error) {
	if opts.Name == "" {
		return nil, errors.New("balancer: a name is needed")
	}
	if len(opts.URLs) == 0 {
		return nil, fmt.Errorf("upstream %s: no URL", opts.Name)
	}
	if opts.ReadyURLs != nil && len(opts.ReadyURLs) != len(opts.URLs) {
		return nil, fmt.Errorf("upstream %s: %d readiness URLs for %d URLs; give one for each, in the same order",
			opts.Name, len(opts.ReadyURLs), len(opts.URLs))
	}
	opts.setDefaults()
	b := &Balancer{name: opts.Name, s: opts.Settings, res: opts.Resolver, client: opts.Client, log: opts.Log,
		wake: make(chan struct{}, 1)}
	b.life, b.end = context.WithCancel(context.Background())
	if b.res == nil {
		b.res = net.DefaultResolver
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.client == nil {
		b.client = &http.Client{
			// Proxy stays nil: never an HTTP_PROXY from the environment. No kept-alive
			// connections: the instances asked are the ones that stopped answering.
			Transport:     &http.Transport{DialContext: (&net.Dialer{Timeout: b.s.CheckTimeout}).DialContext, DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	for i, raw := range opts.URLs {
		u, err := parseBase(raw)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: URL %d: %w", opts.Name, i+1, err)
		}
		t := target{base: u, ready: u, name: u.Scheme == "http" && !isIP(u.Hostname())}
		if opts.ReadyURLs != nil {
			if t.ready, err = parseBase(opts.ReadyURLs[i]); err != nil {
				return nil, fmt.Errorf("upstream %s: readiness URL %d: %w", opts.Name, i+1, err)
			}
			if t.name && t.ready.Hostname() != u.Hostname() {
				return nil, fmt.Errorf("upstream %s: URL %d names a host to resolve, so readiness URL %d must name the same host", opts.Name, i+1, i+1)
			}
		}
		b.dynamic = b.dynamic || t.name
		b.targets = append(b.targets, t)
	}
	b.byTarget = make([][]*Instance, len(b.targets))
	for i, t := range b.targets {
		if !t.name {
			b.byTarget[i] = []*Instance{newInstance(t.base, t.base.Host, joinReady(t.ready))}
		}
	}
	b.publish()
	b.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        b.name,
		MaxRequests: 1,
		Timeout:     b.s.BreakerCooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= b.s.BreakerFailures && b.everyInServiceFailed()
		},
		IsSuccessful: func(err error) bool { return err == nil },
		// A call its caller gave up on says nothing about the upstream.
		IsExcluded: func(err error) bool { return errors.Is(err, errAbandoned) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			level := slog.LevelWarn
			if to == gobreaker.StateClosed {
				level = slog.LevelInfo
			}
			b.log.Log(context.Background(), level, "circuit breaker state changed", "from", from.String(), "to", to.String())
		},
	})
	if b.dynamic {
		b.resolveIfDue(context.Background(), false) // under way before the first call
	}
	return b, nil
}

func newInstance(u *url.URL, host, ready string) *Instance {
	return &Instance{url: u, host: host, ready: ready, admittedAt: time.Now()}
}

// Name is the upstream's name.
func (b *Balancer) Name() string { return b.name }

// Close stops the balancer's background work (readiness checks, resolutions) and
// waits for it to end. Calls may still be picked afterwards, but an ejected instance
// stays out and names are not resolved again. Calling it again does nothing.
func (b *Balancer) Close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.end()
	b.bg.Wait()
}

// background runs f as background work, unless the balancer is closed. b.mu is held.
func (b *Balancer) background(f func()) bool {
	if b.closed {
		return false
	}
	b.bg.Go(f)
	return true
}

// BreakerState is the upstream breaker's state: "closed", "half-open" or "open".
func (b *Balancer) BreakerState() string { return b.breaker.State().String() }

// Pick chooses an instance for one call, which the caller must end with Done. avoid,
// when not nil, is an instance the caller would rather not get (the one its last
// attempt failed on); it gets it only when no other is in service. A name never
// resolved yet is resolved first, within ctx. It fails with an *apperr.Error, code
// Unavailable, wrapping ErrOpen or ErrNoInstance (see the package doc).
func (b *Balancer) Pick(ctx context.Context, avoid *Instance) (*Call, error) {
	b.resolveIfDue(ctx, true)
	done, err := b.breaker.Allow()
	if err != nil {
		return nil, b.unavailable(ErrOpen)
	}
	in := b.choose(*b.instances.Load(), avoid)
	if in == nil {
		done(ErrNoInstance)
		return nil, b.unavailable(ErrNoInstance)
	}
	in.outstanding.Add(1)
	return &Call{b: b, in: in, done: done}, nil
}

func (b *Balancer) unavailable(why error) error {
	return apperr.Wrap(why, apperr.Unavailable, fmt.Sprintf("the %s service is unavailable", b.name))
}

// choose is power of two choices among the instances in service, avoid left out
// unless it is the only one.
func (b *Balancer) choose(all []*Instance, avoid *Instance) *Instance {
	n, avoidable := 0, false
	for _, in := range all {
		switch {
		case in.ejected.Load():
		case in == avoid:
			avoidable = true
		default:
			n++
		}
	}
	if n == 0 {
		if avoidable {
			return avoid
		}
		return nil
	}
	i := rand.IntN(n)
	j := i
	if n > 1 {
		if j = rand.IntN(n - 1); j >= i {
			j++
		}
	}
	var first, second *Instance
	k := 0
	for _, in := range all {
		if in.ejected.Load() || in == avoid {
			continue
		}
		if k == i {
			first = in
		}
		if k == j {
			second = in
		}
		k++
	}
	// Between the two passes one may have been ejected, making fewer in service.
	switch {
	case first == nil && second == nil:
		return b.choose(all, avoid)
	case first == nil:
		return second
	case second == nil:
		return first
	case second.outstanding.Load() < first.outstanding.Load():
		return second
	}
	return first
}

// Outcome is how a call went, as its caller judges.
type Outcome int

// The outcomes of a call.
const (
	// Success: the instance answered. Its failures in a row start again from zero.
	Success Outcome = iota
	// Failure: the instance gave no answer. It counts toward ejecting the instance
	// and opening the upstream's breaker.
	Failure
	// ServiceError: the instance answered with an error that may be the service's as
	// a whole (a 5xx). It counts toward opening the upstream's breaker, not toward
	// ejecting the instance, whose failures in a row start again: it is up.
	ServiceError
	// Abandoned: the caller gave up before an answer; it says nothing about the
	// instance.
	Abandoned
)

// Call is one call given to an instance by Pick.
type Call struct {
	b    *Balancer
	in   *Instance
	done func(error)
	over atomic.Bool
}

// Instance is the instance the call goes to.
func (c *Call) Instance() *Instance { return c.in }

// Done says how the call went and ends it: it no longer counts as outstanding. Calls
// after the first do nothing.
func (c *Call) Done(o Outcome) {
	if !c.over.CompareAndSwap(false, true) {
		return
	}
	c.in.outstanding.Add(-1)
	switch o {
	case Success:
		c.b.succeeded(c.in)
		c.done(nil)
	case Failure:
		c.b.failed(c.in)
		c.done(errFailed)
	case ServiceError:
		c.b.erred(c.in)
		c.done(errFailed)
	default:
		c.done(errAbandoned)
	}
}

func (b *Balancer) succeeded(in *Instance) {
	if in.failures.Load() != 0 {
		in.failures.Store(0)
	}
	if b.runFailed.Load() {
		b.runFailed.Store(false)
		for _, other := range *b.instances.Load() {
			other.failedInRun.Store(false)
		}
	}
}

func (b *Balancer) erred(in *Instance) {
	in.failedInRun.Store(true)
	b.runFailed.Store(true)
	if in.failures.Load() != 0 {
		in.failures.Store(0)
	}
}

func (b *Balancer) failed(in *Instance) {
	in.failedInRun.Store(true)
	b.runFailed.Store(true)
	n := in.failures.Add(1)
	if int(n) < b.s.EjectAfter || in.ejected.Load() {
		return
	}
	b.mu.Lock()
	if in.ejected.Load() { // ejected by a concurrent failure meanwhile
		b.mu.Unlock()
		return
	}
	now := time.Now()
	if now.Sub(in.admittedAt) >= b.s.EjectBackoffMax {
		in.ejections = 0 // it stayed in service long enough to start afresh
	}
	in.ejections++
	d := b.backoff(in.ejections)
	// until before ejected: Pick must never see it ejected with an old time.
	in.until.Store(now.Add(d).UnixNano())
	in.ejected.Store(true)
	if !b.watching {
		b.watching = b.background(b.watch)
	} else {
		select {
		case b.wake <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
	b.mu.Unlock()
	b.log.Warn("instance ejected", "instance", in.url.Redacted(), "failures", n, "for", d.String())
}

// backoff is the length of the n-th ejection in a row.
func (b *Balancer) backoff(n int) time.Duration {
	d := b.s.EjectBackoff
	for i := 1; i < n && d < b.s.EjectBackoffMax; i++ {
		d *= 2
	}
	return min(d, b.s.EjectBackoffMax)
}

// watch runs the readiness checks of the ejected instances, each once its time is up,
// and returns (watching cleared) once no instance is ejected.
func (b *Balancer) watch() {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
		case <-b.wake:
		case <-b.life.Done():
			return // closed: watching stays set, so that nothing starts it again
		}
		now := time.Now()
		var due []*Instance
		next := time.Duration(-1) // until the next check; -1: none
		b.mu.Lock()
		for _, in := range *b.instances.Load() {
			if !in.ejected.Load() {
				continue
			}
			switch wait := time.Unix(0, in.until.Load()).Sub(now); {
			case wait <= 0:
				due = append(due, in)
			case next < 0 || wait < next:
				next = wait
			}
		}
		if len(due) == 0 && next < 0 {
			b.watching = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		var wg sync.WaitGroup
		for _, in := range due {
			wg.Go(func() { b.check(in) })
		}
		wg.Wait()
		if len(due) > 0 {
			next = 0 // look again: the checks have moved their times on
		}
		timer.Reset(next)
	}
}

// check asks an ejected instance's /readyz, putting it back in service on a 200, and
// otherwise asking again after EjectBackoff.
func (b *Balancer) check(in *Instance) {
	ctx, cancel := context.WithTimeout(b.life, b.s.CheckTimeout)
	defer cancel()
	err := b.ready(ctx, in.ready)
	if b.life.Err() != nil {
		return // closed meanwhile: no verdict
	}
	b.mu.Lock()
	now := time.Now()
	if err != nil {
		in.until.Store(now.Add(b.s.EjectBackoff).UnixNano())
		b.mu.Unlock()
		b.log.Debug("ejected instance not ready", "instance", in.url.Redacted(), "err", err)
		return
	}
	in.failures.Store(0)
	in.failedInRun.Store(false)
	in.admittedAt = now
	in.ejected.Store(false)
	b.mu.Unlock()
	b.log.Info("instance back in service", "instance", in.url.Redacted())
}

// ready is nil when url answers 200 (a readiness report that is healthy or degraded).
func (b *Balancer) ready(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz answered %d", resp.StatusCode)
	}
	return nil
}

// everyInServiceFailed reports whether every instance in service has failed since the
// last success anywhere (true when none is in service). The upstream's breaker asks it
// while holding its own lock, so it takes none.
func (b *Balancer) everyInServiceFailed() bool {
	for _, in := range *b.instances.Load() {
		if !in.ejected.Load() && !in.failedInRun.Load() {
			return false
		}
	}
	return true
}

// resolveIfDue starts resolving the names again when ResolveEvery has passed since
// the last resolution (a second, after one that failed) and none is under way. With
// wait, while the first resolution is under way, it waits for it within ctx.
func (b *Balancer) resolveIfDue(ctx context.Context, wait bool) {
	if !b.dynamic {
		return
	}
	b.mu.Lock()
	running := b.resolving
	if running == nil && !time.Now().Before(b.nextResolve) {
		running = make(chan struct{})
		if b.background(func() { b.resolve(running) }) {
			b.resolving = running
		} else {
			running = nil
		}
	}
	wait = wait && running != nil && !b.resolved
	b.mu.Unlock()
	if wait {
		select {
		case <-running:
		case <-ctx.Done():
		}
	}
}

// resolve looks every name up and makes the instance set anew from the answers: an
// address still there keeps its instance (and its state), a new one joins in
// service, a gone one leaves. A name whose look-up fails keeps its instances.
func (b *Balancer) resolve(done chan struct{}) {
	defer close(done)
	ctx, cancel := context.WithTimeout(b.life, b.s.CheckTimeout)
	defer cancel()
	found := make([][]string, len(b.targets))
	var errs []error
	for i, t := range b.targets {
		if !t.name {
			continue
		}
		addrs, err := b.res.LookupHost(ctx, t.base.Hostname())
		if err != nil || len(addrs) == 0 {
			errs = append(errs, fmt.Errorf("%s: %w", t.base.Hostname(), err))
			continue
		}
		slices.Sort(addrs)
		found[i] = slices.Compact(addrs)
	}
	if b.life.Err() != nil {
		return // closed meanwhile
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	b.resolving, b.resolved = nil, true
	b.nextResolve = time.Now().Add(b.s.ResolveEvery)
	if len(errs) > 0 {
		b.nextResolve = time.Now().Add(min(time.Second, b.s.ResolveEvery))
		b.log.Warn("resolving instances failed; keeping the ones known", "err", errors.Join(errs...))
	}
	var added, removed []string
	for i, t := range b.targets {
		if found[i] == nil {
			continue
		}
		old := map[string]*Instance{}
		for _, in := range b.byTarget[i] {
			old[in.url.Host] = in
		}
		var next []*Instance
		for _, addr := range found[i] {
			host := net.JoinHostPort(addr, portOf(t.base))
			if in, ok := old[host]; ok {
				next = append(next, in)
				delete(old, host)
				continue
			}
			u := *t.base
			u.Host = host
			r := *t.ready
			r.Host = net.JoinHostPort(addr, portOf(t.ready))
			next = append(next, newInstance(&u, t.base.Host, joinReady(&r)))
			added = append(added, u.Redacted())
		}
		for _, in := range old {
			removed = append(removed, in.url.Redacted())
		}
		b.byTarget[i] = next
	}
	if len(added)+len(removed) > 0 {
		b.publish()
		b.log.Info("instances changed", "added", added, "removed", removed, "instances", len(*b.instances.Load()))
	}
}

// publish makes byTarget the set Pick reads, with no instance twice. b.mu is held
// (or b is not yet shared).
func (b *Balancer) publish() {
	seen := map[string]bool{}
	all := []*Instance{}
	for _, ins := range b.byTarget {
		for _, in := range ins {
			if !seen[in.url.String()] {
				seen[in.url.String()] = true
				all = append(all, in)
			}
		}
	}
	b.instances.Store(&all)
}

// InstanceState is one instance as the balancer sees it.
type InstanceState struct {
	URL      string // its base URL, password masked: for logs and operators, not for clients
	ReadyURL string // its /readyz
	// InService is false while it is ejected.
	InService   bool
	Failures    int // failures in a row
	Outstanding int // calls under way
}

// Instances are the upstream's instances now, in the order of the URLs (a name's in
// the order of their addresses). A name never resolved yet is resolved first, within
// ctx.
func (b *Balancer) Instances(ctx context.Context) []InstanceState {
	b.resolveIfDue(ctx, true)
	all := *b.instances.Load()
	out := make([]InstanceState, 0, len(all))
	for _, in := range all {
		out = append(out, InstanceState{
			URL:         in.url.Redacted(),
			ReadyURL:    in.ready,
			InService:   !in.ejected.Load(),
			Failures:    int(in.failures.Load()),
			Outstanding: int(in.outstanding.Load()),
		})
	}
	return out
}

// ValidURLs is SplitURLs's check alone, for config.Env.Valid: a *_URL variable's list
// is read with env.Valid(name, def, balancer.ValidURLs).
func ValidURLs(list string) error {
	_, err := SplitURLs(list)
	return err
}

// SplitURLs splits a comma-separated list of base URLs (INVENTORY_URL with several
// instances), spaces around each allowed. Each must be an absolute http or https URL
// with a host and no path (a lone "/" is dropped), query or fragment. Errors give the
// position, not the value, which may hold a password.
func SplitURLs(list string) ([]string, error) {
	var out []string
	for i, raw := range strings.Split(list, ",") {
		u, err := parseBase(strings.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("URL %d of the list: %w", i+1, err)
		}
		out = append(out, u.String())
	}
	return out, nil
}

// parseBase parses one base URL (see SplitURLs).
func parseBase(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || u.Hostname() == "":
		return nil, errors.New("want an http(s) URL with a host")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("want an http(s) URL with a host")
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return nil, errors.New("want a base URL: scheme, host and port, no path")
	}
	u.Path, u.RawPath = "", ""
	return u, nil
}

func isIP(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}

// portOf is u's port, or its scheme's.
func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

func joinReady(u *url.URL) string { return u.String() + "/readyz" }
