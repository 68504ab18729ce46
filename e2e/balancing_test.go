package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/internal/devstack"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/syncbuf"
)

// Discovery and balancing under faults: each test runs a stack of its own with two
// inventory instances ("inventory" and "inventory-2") behind the gateway and orders,
// and kills them under load. The load's reads ask for products that do not exist, so
// that each reaches an instance (the gateway's product cache keeps and shares only
// found products) and its 404 proves an instance answered.

// readUnknown is a read of a product nobody has: inventory's 404.
func readUnknown(base string) request {
	return request{Base: base, Method: "GET", Path: "/api/v1/products/" + uuid.NewString()}
}

// startBalancedStack starts a fault stack (see startStack) with instances of each
// service as given, and programEnv on top of the suite's variables.
func startBalancedStack(t *testing.T, instances map[string]int, programEnv map[string]map[string]string) faultStack {
	t.Helper()
	if os.Getenv("E2E_BASE_URL") != "" {
		t.Skip("fault tests start a stack of their own; E2E_BASE_URL targets another")
	}
	root, err := devstack.FindRepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	opts := stackOptions(root, redistest.New(t), logs)
	opts.Instances = instances
	for program, env := range programEnv {
		for k, v := range env {
			if opts.ProgramEnv[program] == nil {
				opts.ProgramEnv[program] = map[string]string{}
			}
			opts.ProgramEnv[program][k] = v
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stack, err := devstack.Start(ctx, opts)
	if err != nil {
		t.Fatalf("the stack did not start: %v\n%s", err, logs)
	}
	t.Cleanup(func() {
		if err := stack.Err(); err != nil {
			t.Errorf("the stack failed: %v", err)
		}
		if err := stack.Stop(context.Background()); err != nil {
			t.Errorf("stopping the stack: %v", err)
		}
		if t.Failed() {
			t.Logf("the stack's output:\n%s", logs)
		}
	})
	return faultStack{Stack: stack, logs: logs}
}

// answer is one request of the load and how it went.
type answer struct {
	what   string // "read", "order"
	at     time.Time
	took   time.Duration
	status int // 0: no answer (err)
	err    error
	body   string
	retry  string // Retry-After
}

func (a answer) String() string {
	if a.err != nil {
		return fmt.Sprintf("%s at %s: %v", a.what, a.at.Format("15:04:05.000"), a.err)
	}
	return fmt.Sprintf("%s at %s: %d after %s: %.200s", a.what, a.at.Format("15:04:05.000"), a.status, a.took.Round(time.Millisecond), a.body)
}

// loadRun is steady traffic: workers each send a request made by next, one after the
// other with a short pause, and every answer is kept.
type loadRun struct {
	stop func()
	wg   sync.WaitGroup
	mu   sync.Mutex
	all  []answer
}

func startLoad(ctx context.Context, workers map[string]int, next map[string]func() request, pause time.Duration) *loadRun {
	ctx, stop := context.WithCancel(ctx)
	l := &loadRun{stop: stop}
	for what, n := range workers {
		for range n {
			l.wg.Go(func() {
				for ctx.Err() == nil {
					a := answer{what: what, at: time.Now()}
					resp, err := send(ctx, next[what]())
					a.took = time.Since(a.at)
					if ctx.Err() != nil {
						return // cut off by the end of the run, not by the stack
					}
					if a.err = err; err == nil {
						a.status, a.body, a.retry = resp.StatusCode, string(resp.Body), resp.Header.Get("Retry-After")
					}
					l.mu.Lock()
					l.all = append(l.all, a)
					l.mu.Unlock()
					select {
					case <-ctx.Done():
					case <-time.After(pause):
					}
				}
			})
		}
	}
	return l
}

// end stops the load and returns every answer.
func (l *loadRun) end() []answer {
	l.stop()
	l.wg.Wait()
	return l.answers()
}

func (l *loadRun) answers() []answer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]answer(nil), l.all...)
}

// count is how many answers of kind what came to requests sent after since.
func (l *loadRun) count(what string, since time.Time) int {
	n := 0
	for _, a := range l.answers() {
		if a.what == what && !a.at.Before(since) {
			n++
		}
	}
	return n
}

// eventually polls cond until it holds, failing after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what)
		}
	}
}

// served is how many requests an instance answered on routes whose pattern starts
// with prefix, from the metrics on its internal listener (counted since it started);
// -1 when it cannot be asked.
func served(internalURL, prefix string) int {
	resp, err := client.Get(internalURL + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "http_requests_total{") || !strings.Contains(line, `route="`+prefix) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			n += int(v)
		}
	}
	return n
}

// healthDoc is what the balancing tests read of GET /health.
type healthDoc struct {
	Upstreams map[string]struct {
		Breaker   string `json:"breaker"`
		Instances []struct {
			Instance  int    `json:"instance"`
			Status    string `json:"status"`
			InService bool   `json:"in_service"`
		} `json:"instances"`
	} `json:"upstreams"`
}

// inventoryInService is whether each inventory instance is in service as the
// gateway's GET /health shows it, and its breaker's state.
func inventoryInService(base string) ([]bool, string) {
	resp, err := client.Get(base + "/health")
	if err != nil {
		return nil, ""
	}
	defer resp.Body.Close()
	var doc healthDoc
	if json.NewDecoder(resp.Body).Decode(&doc) != nil {
		return nil, ""
	}
	inv := doc.Upstreams["inventory"]
	var in []bool
	for _, i := range inv.Instances {
		in = append(in, i.InService)
	}
	return in, inv.Breaker
}

// Two inventory instances behind the gateway and orders, one killed under load:
// once the gateway has taken it out of service no request fails (product reads
// through the gateway, orders, whose calls to inventory orders' own balancer spreads);
// restarted, it takes both kinds of traffic again; and the orders all settle.
func TestBalancingOneOfTwoInventoriesKilledUnderLoadFailsNothingOnceEjectedAndTakesTrafficWhenBack(t *testing.T) {
	setup(t)
	s := startBalancedStack(t, map[string]int{"inventory": 2}, map[string]map[string]string{
		"orders": {"RECOVER_EVERY": "1s"},
	})
	sh := s.shop()
	u := s.URLs()
	var ids []string
	for range 3 {
		ids = append(ids, sh.createProduct(t, 100_000, 250).ID)
	}
	c := sh.newCustomer(t)
	load := startLoad(t.Context(), map[string]int{"read": 4, "order": 1}, map[string]func() request{
		"read": func() request { return readUnknown(sh.base) },
		"order": func() request {
			return sh.order(c.Token, orderRequest{Items: []item{{ids[rand.IntN(len(ids))], 1}}, PaymentMethod: visa}, "")
		},
	}, 10*time.Millisecond)
	defer load.stop()

	// Both instances take both kinds of traffic: the gateway's reads and orders' calls.
	eventually(t, time.Minute, "both inventory instances answer product reads and orders' calls", func() bool {
		for _, name := range []string{"inventory", "inventory-2"} {
			if served(u.Internal[name], "/api/v1/products") < 1 || served(u.Internal[name], "/internal/") < 1 {
				return false
			}
		}
		return true
	})

	killedAt := time.Now()
	if err := s.KillProgram("inventory-2"); err != nil {
		t.Fatal(err)
	}
	// The ejection window: until the gateway has taken the dead instance out.
	eventually(t, 30*time.Second, "GET /health shows inventory's second instance out of service", func() bool {
		in, _ := inventoryInService(sh.base)
		return len(in) == 2 && in[0] && !in[1]
	})
	ejectedAt := time.Now()
	eventually(t, time.Minute, "traffic goes on with one instance", func() bool {
		return load.count("read", ejectedAt) >= 200 && load.count("order", ejectedAt) >= 5
	})

	restartedAt := time.Now()
	if err := s.RestartProgram(t.Context(), "inventory-2"); err != nil {
		t.Fatal(err)
	}
	// Restarted (its counters from zero), it takes product reads and orders' calls again.
	eventually(t, time.Minute, "the restarted instance answers product reads and orders' calls", func() bool {
		return served(u.Internal["inventory-2"], "/api/v1/products") > 0 && served(u.Internal["inventory-2"], "/internal/") > 0
	})
	eventually(t, 30*time.Second, "GET /health shows both inventory instances in service", func() bool {
		in, _ := inventoryInService(sh.base)
		return len(in) == 2 && in[0] && in[1]
	})
	all := load.end()

	var inWindow, after []answer
	bad := 0
	for _, a := range all {
		switch {
		case a.at.Before(killedAt):
		case a.at.Before(ejectedAt):
			inWindow = append(inWindow, a)
		default:
			after = append(after, a)
			if a.err != nil || a.status >= 500 {
				bad++
				if bad <= 10 {
					t.Errorf("after the ejection window: %s", a)
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d requests sent after the ejection window failed", bad, len(after))
	}
	for _, a := range all {
		if a.err != nil || a.status >= 500 {
			continue // judged above
		}
		if a.what == "read" && a.status != http.StatusNotFound ||
			a.what == "order" && a.status != http.StatusCreated && a.status != http.StatusAccepted {
			t.Errorf("not inventory's 404 for a read, nor an order placed: %s", a)
		}
	}
	windowFailed := 0
	for _, a := range inWindow {
		if a.err != nil || a.status >= 500 {
			windowFailed++
		}
	}
	t.Logf("ejection window %s (%d requests in it, %d failed); %d requests after it, %d of them after the restart",
		ejectedAt.Sub(killedAt).Round(time.Millisecond), len(inWindow), windowFailed, len(after), load.count("read", restartedAt)+load.count("order", restartedAt))
	if w := ejectedAt.Sub(killedAt); w > 10*time.Second {
		t.Errorf("the ejection window lasted %s", w)
	}
	sh.checkInvariants(t, ids...)
}

// Every inventory instance down: product reads get, within the breaker window, a 503
// that names inventory, at once and with Retry-After; no request waits past the
// gateway's timeout; the other services answer as before; and once the instances are
// back inventory answers the reads again without anything else done.
func TestBalancingEveryInventoryDownIsAnImmediate503NamingItAndRecoversByItself(t *testing.T) {
	setup(t)
	const timeout = 3 * time.Second
	s := startBalancedStack(t, map[string]int{"inventory": 2}, map[string]map[string]string{
		"gateway": {"UPSTREAM_TIMEOUT": timeout.String(), "BREAKER_COOLDOWN": "1s"},
	})
	sh := s.shop()
	c := sh.newCustomer(t)
	load := startLoad(t.Context(), map[string]int{"read": 3, "me": 1}, map[string]func() request{
		"read": func() request { return readUnknown(sh.base) },
		"me":   func() request { return request{Base: sh.base, Method: "GET", Path: "/api/v1/users/me", Token: c.Token} },
	}, 20*time.Millisecond)
	defer load.stop()
	eventually(t, time.Minute, "reads are answered", func() bool {
		ok := 0
		for _, a := range load.answers() {
			if a.what == "read" && a.status == http.StatusNotFound {
				ok++
			}
		}
		return ok > 10
	})

	killing := time.Now()
	for _, name := range []string{"inventory", "inventory-2"} {
		if err := s.KillProgram(name); err != nil {
			t.Fatal(err)
		}
	}
	killedAt := time.Now() // both
	// The breaker window: until reads are refused at once. Once the first refusal has
	// come, every read sent after it is refused until the instances are back.
	var first503 time.Time
	eventually(t, 30*time.Second, "a read is answered 503", func() bool {
		for _, a := range load.answers() {
			if a.what == "read" && !a.at.Before(killedAt) && a.status == http.StatusServiceUnavailable {
				first503 = a.at.Add(a.took)
				return true
			}
		}
		return false
	})
	eventually(t, time.Minute, "reads go on while inventory is down", func() bool { return load.count("read", first503) >= 100 })
	inService, breaker := inventoryInService(sh.base)

	restartedAt := time.Now()
	for _, name := range []string{"inventory", "inventory-2"} {
		if err := s.RestartProgram(t.Context(), name); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing else is done: the gateway finds the instances back by itself.
	var recovered time.Time
	eventually(t, time.Minute, "reads are answered again", func() bool {
		for _, a := range load.answers() {
			if a.what == "read" && a.at.After(restartedAt) && a.status == http.StatusNotFound {
				// Once its answer is in, the breaker has closed: reads sent later are
				// answered (while its trial runs, the others are still refused).
				recovered = a.at.Add(a.took)
				return true
			}
		}
		return false
	})
	eventually(t, time.Minute, "reads go on being answered", func() bool { return load.count("read", recovered) >= 20 })
	all := load.end()

	// The breaker is open (or half-open for the moment between its cool-down's end
	// and the next read's trial, which fails and opens it again). It may have opened
	// before the failures took both instances out; its trials take out the rest.
	if len(inService) != 2 {
		t.Errorf("with every instance down /health showed in service %v; want both instances shown", inService)
	}
	if breaker == "closed" {
		t.Errorf("with every instance down /health showed the breaker %q; want it not closed", breaker)
	}
	before503, refused := 0, 0
	var slowest time.Duration
	for _, a := range all {
		if a.took > timeout+time.Second {
			t.Errorf("a request hung past the gateway's timeout (%s): %s", timeout, a)
		}
		switch {
		case a.what == "me":
			if a.err != nil || a.status != http.StatusOK {
				t.Errorf("another service's route failed while inventory was down: %s", a)
			}
		case a.at.Add(a.took).Before(killing):
			if a.err != nil || a.status != http.StatusNotFound {
				t.Errorf("before the kill: %s; want inventory's 404", a)
			}
		case a.at.Before(killedAt): // under way while the instances were killed: any
		case a.at.Before(first503):
			switch {
			case a.err == nil && a.status == http.StatusServiceUnavailable:
			case a.err == nil && (a.status == http.StatusBadGateway || a.status == http.StatusGatewayTimeout):
				before503++
			default:
				t.Errorf("before the first 503: %s; want 502, 503 or 504", a)
			}
		case a.at.Before(restartedAt):
			refused++
			slowest = max(slowest, a.took)
			var d problemDoc
			if a.err != nil || a.status != http.StatusServiceUnavailable || json.Unmarshal([]byte(a.body), &d) != nil ||
				d.Type != "urn:bazaar:problem:unavailable" || !strings.Contains(d.Detail, "inventory") || a.retry == "" {
				t.Errorf("with every instance out: %s (Retry-After %q); want a 503 unavailable problem naming inventory, with Retry-After", a, a.retry)
			}
		case a.at.After(recovered):
			if a.err != nil || a.status != http.StatusNotFound {
				t.Errorf("after recovery: %s; want inventory's 404", a)
			}
		}
	}
	// Each of the first reads spends two failures (a refused connection, then the
	// other instance's), and three in a row take an instance out.
	if before503 > 10 {
		t.Errorf("%d reads failed before the 503s began; want only the few that take the instances out", before503)
	}
	if slowest > time.Second {
		t.Errorf("a refusal took %s; want it at once", slowest)
	}
	t.Logf("503s %s after the kill (%d reads failed before); %d refused, the slowest in %s; reads succeeded again %s after the restart began",
		first503.Sub(killedAt).Round(time.Millisecond), before503, refused, slowest.Round(time.Millisecond), recovered.Sub(restartedAt).Round(time.Millisecond))
	eventually(t, 30*time.Second, "GET /health shows both inventory instances in service, the breaker closed", func() bool {
		in, b := inventoryInService(sh.base)
		return len(in) == 2 && in[0] && in[1] && b == "closed"
	})
}
