package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/devstack"
	"github.com/bazaar-shop/bazaar/internal/invariants"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/syncbuf"
	"github.com/bazaar-shop/bazaar/pkg/tcpproxy"
)

// faultStack is a stack of the test's own, for faults that would disturb the shared
// one.
type faultStack struct {
	*devstack.Stack
	// redis is a proxy between every program and Redis that the test can cut; nil
	// unless asked for (faultConfig.proxyRedis).
	redis *tcpproxy.Proxy
	logs  *syncbuf.Buffer
}

// faultConfig says what a fault stack needs besides the defaults.
type faultConfig struct {
	proxyRedis bool                         // reach Redis through a proxy (faultStack.redis)
	ports      devstack.Ports               // fixed ports, for programs a proxy must know the address of
	programEnv map[string]map[string]string // per-program overrides (devstack.Options.ProgramEnv)
}

// startFaultStack starts a stack whose programs reach Redis through a proxy the test
// can cut.
func startFaultStack(t *testing.T) faultStack {
	t.Helper()
	return startStack(t, faultConfig{proxyRedis: true})
}

// startStack starts a stack of the test's own as cfg says, stopped (and its
// databases dropped) when the test ends; its output is logged if the test failed.
func startStack(t *testing.T, cfg faultConfig) faultStack {
	t.Helper()
	if os.Getenv("E2E_BASE_URL") != "" {
		t.Skip("fault tests start a stack of their own; E2E_BASE_URL targets another")
	}
	redisURL := redistest.New(t)
	var proxy *tcpproxy.Proxy
	if cfg.proxyRedis {
		u, err := url.Parse(redisURL)
		if err != nil {
			t.Fatal(err)
		}
		proxy, err = tcpproxy.New(u.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { proxy.Close() })
		u.Host = proxy.Addr()
		redisURL = u.String()
	}
	root, err := devstack.FindRepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	opts := stackOptions(root, redisURL, logs)
	opts.Ports = cfg.ports
	for program, env := range cfg.programEnv { // on top of the suite's own (rate limits off)
		opts.ProgramEnv[program] = env
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stack, err := devstack.Start(ctx, opts)
	if err != nil {
		t.Fatalf("the fault stack did not start: %v\n%s", err, logs)
	}
	t.Cleanup(func() {
		if err := stack.Err(); err != nil {
			t.Errorf("the fault stack failed: %v", err)
		}
		if err := stack.Stop(context.Background()); err != nil {
			t.Errorf("stopping the fault stack: %v", err)
		}
		if t.Failed() {
			t.Logf("the fault stack's output:\n%s", logs)
		}
	})
	return faultStack{stack, proxy, logs}
}

// shop is the stack as the order tests use it.
func (s faultStack) shop() shop {
	u := s.URLs()
	return shop{base: u.Gateway, mailpit: u.Mailpit, dbs: invariants.FromStack(u.Databases), ours: true}
}

// health polls the stack's /health until check accepts the report.
func (s faultStack) health(t *testing.T, what string, check func(status string, services map[string]string) bool) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := client.Get(s.URLs().Gateway + "/health")
		if err != nil {
			continue
		}
		var doc struct {
			Status   string `json:"status"`
			Services map[string]struct {
				Status string `json:"status"`
			} `json:"services"`
		}
		err = json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		if err != nil {
			continue
		}
		services := map[string]string{}
		for name, svc := range doc.Services {
			services[name] = svc.Status
		}
		last = fmt.Sprint(doc.Status, services)
		if check(doc.Status, services) {
			return
		}
	}
	t.Fatalf("health never showed %s; last %s", what, last)
}

func (s faultStack) post(t *testing.T, path string, body any, want int) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := client.Post(s.URLs().Gateway+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("POST %s = %d, want %d", path, resp.StatusCode, want)
	}
}

// Redis down while users register: the registrations succeed, readiness says
// degraded, and every welcome e-mail arrives once Redis is back.
func TestRedisOutageLosesNoWelcomeEmail(t *testing.T) {
	setup(t)
	s := startFaultStack(t)

	s.redis.Cut()
	s.health(t, "users degraded", func(_ string, svc map[string]string) bool { return svc["users"] == "degraded" })

	var emails []string
	for range 5 {
		e := newEmail(t)
		emails = append(emails, e)
		s.post(t, "/api/v1/auth/register", map[string]string{"email": e, "password": "correct horse", "name": "Outage"}, http.StatusCreated)
	}

	s.redis.Restore()
	s.health(t, "every program healthy", func(status string, _ map[string]string) bool { return status == "healthy" })
	for _, e := range emails {
		if msgs := mailAt(t, s.URLs().Mailpit, e, 1); len(msgs) != 1 {
			t.Errorf("%d welcome e-mails to %s, want 1", len(msgs), e)
		}
	}
}
