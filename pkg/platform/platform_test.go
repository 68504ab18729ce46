package platform_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/programtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/syncbuf"
	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/config"
	"github.com/bazaar-shop/bazaar/pkg/health"
	"github.com/bazaar-shop/bazaar/pkg/platform"
	"github.com/bazaar-shop/bazaar/pkg/tcpproxy"
)

var schema = fstest.MapFS{"00001_t.sql": {Data: []byte("-- +goose Up\nCREATE TABLE t (id int);\n-- +goose Down\nDROP TABLE t;\n")}}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	env := config.New(getenv)
	cfg := platform.LoadConfig(env, "demo", ":0", ":0")
	if err := env.Err(); err != nil {
		return err
	}
	if platform.Probing(args) {
		return platform.Probe(ctx, cfg.InternalAddr)
	}
	p, err := platform.Start(ctx, cfg, schema, stdout)
	if err != nil {
		return err
	}
	defer p.Close()
	return p.Serve(ctx, p.Router(), p.InternalRouter())
}

func proxied(t *testing.T, rawURL string) (*tcpproxy.Proxy, string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tcpproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	u.Host = p.Addr()
	return p, u.String()
}

func readiness(t *testing.T, base string) (int, health.Report) {
	t.Helper()
	resp, err := testhttp.Client.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep health.Report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, rep
}

// eventually polls readiness until it reports want, or fails after a deadline.
func eventually(t *testing.T, base string, want health.Status, wantCode int) health.Report {
	t.Helper()
	var rep health.Report
	var code int
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if code, rep = readiness(t, base); rep.Status == want && code == wantCode {
			return rep
		}
	}
	t.Fatalf("readiness never became %s/%d; last %d %+v", want, wantCode, code, rep)
	return rep
}

func TestReadinessFollowsDependencies(t *testing.T) {
	t.Parallel()
	pg, dbURL := proxied(t, pgtest.NewDatabase(t))
	rd, redisURL := proxied(t, redistest.New(t))
	prog := programtest.Start(t, run, map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redisURL})
	internal := prog.InternalURL()

	rep := eventually(t, internal, health.Healthy, 200)
	for _, c := range []string{"postgres", "migrations", "redis"} {
		if rep.Checks[c] != health.Healthy {
			t.Errorf("check %s = %s", c, rep.Checks[c])
		}
	}

	rd.Cut()
	rep = eventually(t, internal, health.Degraded, 200)
	if rep.Checks["redis"] != health.Unhealthy || rep.Checks["postgres"] != health.Healthy {
		t.Errorf("with Redis cut: %+v", rep)
	}
	rd.Restore()
	eventually(t, internal, health.Healthy, 200)

	pg.Cut()
	rep = eventually(t, internal, health.Unhealthy, 503)
	if rep.Checks["postgres"] != health.Unhealthy {
		t.Errorf("with Postgres cut: %+v", rep)
	}
	// The container's healthcheck says so too.
	if err := prog.Probe(); err == nil {
		t.Error("the probe passed while Postgres is cut")
	}
	// Liveness does not depend on Postgres: the process is fine, only not ready.
	if resp, err := testhttp.Client.Get(internal + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz while Postgres is cut: %v %v", resp, err)
	}
	pg.Restore()
	eventually(t, internal, health.Healthy, 200)
	if err := prog.Probe(); err != nil {
		t.Errorf("the probe after Postgres came back: %v", err)
	}
}

func TestProbesAndMetricsAreOnTheInternalListenerOnly(t *testing.T) {
	t.Parallel()
	prog := programtest.Start(t, run, map[string]string{"DATABASE_URL": pgtest.NewDatabase(t), "REDIS_URL": redistest.New(t)})
	programtest.AssertOperational(t, prog, "postgres", "migrations", "redis")
}

// Go's profiler is on the internal listener only when PPROF asks for it, and never
// on the public one.
func TestTheProfilerIsServedOnlyWhenAskedForAndOnlyInternally(t *testing.T) {
	t.Parallel()
	// One program at a time (subtests in turn), so that the test holds one of the
	// shared Redis's few logical databases, not two.
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprintf("PPROF=%t", on), func(t *testing.T) {
			env := map[string]string{"DATABASE_URL": pgtest.NewDatabase(t), "REDIS_URL": redistest.New(t)}
			if on {
				env["PPROF"] = "true"
			}
			prog := programtest.Start(t, run, env)
			want := http.StatusNotFound
			if on {
				want = http.StatusOK
			}
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/profile?seconds=1"} {
				if r := programtest.Call(t, http.MethodGet, prog.InternalURL()+path, ""); r.Status != want {
					t.Errorf("internal %s answered %d, want %d", path, r.Status, want)
				}
				if r := programtest.Call(t, http.MethodGet, prog.URL+path, ""); r.Status != http.StatusNotFound {
					t.Errorf("public %s answered %d, want 404", path, r.Status)
				}
			}
		})
	}
}

func TestServiceCredentialsNeedTheirFiles(t *testing.T) {
	t.Parallel()
	// The map is made once: a getenv that leased a database on each look-up would
	// take one for every variable the configuration reads.
	vars := map[string]string{"DATABASE_URL": pgtest.NewDatabase(t), "REDIS_URL": redistest.New(t)}
	env := config.New(func(k string) string { return vars[k] })
	p, err := platform.Start(context.Background(), platform.LoadConfig(env, "demo", ":0", ":0"), schema, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.ServiceVerifier(); err == nil || !strings.Contains(err.Error(), "SERVICE_TRUST_DIR") {
		t.Errorf("ServiceVerifier without SERVICE_TRUST_DIR = %v; want an error naming it", err)
	}
	if _, err := p.ServiceSigner(); err == nil || !strings.Contains(err.Error(), "SERVICE_KEY_FILE") {
		t.Errorf("ServiceSigner without SERVICE_KEY_FILE = %v; want an error naming it", err)
	}
}

func TestBadConfigNamesTheVariable(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), nil, func(k string) string {
		return map[string]string{"DATABASE_URL": "mysql://x/y", "HTTP_ADDR": "nope"}[k]
	}, io.Discard)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, name := range []string{"DATABASE_URL", "HTTP_ADDR"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
}

func TestServeStopsWhenABackgroundLoopFails(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"DATABASE_URL": pgtest.NewDatabase(t), "REDIS_URL": redistest.New(t), "HTTP_ADDR": "127.0.0.1:0", "INTERNAL_ADDR": "127.0.0.1:0"}
	env := config.New(func(k string) string { return vars[k] })
	p, err := platform.Start(context.Background(), platform.LoadConfig(env, "demo", ":0", ":0"), schema, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	stopped := make(chan struct{})
	p.Background("steady", func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil })
	p.Background("broken", func(context.Context) error { return errors.New("lost the plot") })
	err = p.Serve(context.Background(), p.Router(), p.InternalRouter())
	if err == nil || !strings.Contains(err.Error(), "broken: lost the plot") {
		t.Fatalf("Serve = %v", err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("the other loop was not stopped")
	}
}

// A Redis that accepts connections and never answers must not hold a service's token
// checks for go-redis's read timeout (3s): the revocation look-up gives up at its own
// bound and the token is judged on its signature (fail open, logged).
func TestRevocationChecksAreBoundedWhenRedisHangs(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	pub, priv, _ := ed25519.GenerateKey(nil)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(auth.KeySet{Keys: []auth.JWK{auth.PublicJWK("k", pub)}})
	}))
	t.Cleanup(jwks.Close)
	vars := map[string]string{"DATABASE_URL": pgtest.NewDatabase(t), "REDIS_URL": "redis://" + ln.Addr().String() + "/0",
		"JWKS_URL": jwks.URL}
	env := config.New(func(k string) string { return vars[k] })
	p, err := platform.Start(context.Background(), platform.LoadConfig(env, "demo", ":0", ":0"), schema, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tok, err := auth.NewSigner("k", priv, time.Minute).Sign(auth.Principal{UserID: uuid.New(), Role: auth.RoleCustomer, SessionID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	v := p.TokenVerifier()
	for i := range 2 {
		start := time.Now()
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatalf("verify %d: %v", i+1, err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("verify %d took %s with Redis hung; the revocation look-up is bounded at %s", i+1, took, auth.DefaultRevocationTimeout)
		}
	}
}

// A program with no database (the gateway) runs in the same shell: no pool, and
// readiness asks Redis alone, healthy with it and degraded without it.
func TestAProgramWithoutADatabase(t *testing.T) {
	t.Parallel()
	rd, redisURL := proxied(t, redistest.New(t))
	noDB := func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
		env := config.New(getenv)
		cfg := platform.Config{Name: "edge", HTTPAddr: env.Addr("HTTP_ADDR", ":0"), InternalAddr: env.Addr("INTERNAL_ADDR", ":0"),
			RedisURL: env.String("REDIS_URL", ""), LogLevel: "info"}
		if platform.Probing(args) {
			return platform.Probe(ctx, cfg.InternalAddr)
		}
		p, err := platform.Start(ctx, cfg, nil, stdout)
		if err != nil {
			return err
		}
		defer p.Close()
		if p.Pool != nil {
			return errors.New("a pool without migrations")
		}
		return p.Serve(ctx, p.Router(), p.InternalRouter())
	}
	prog := programtest.Start(t, noDB, map[string]string{"REDIS_URL": redisURL})
	rep := eventually(t, prog.InternalURL(), health.Healthy, http.StatusOK)
	if len(rep.Checks) != 1 {
		t.Errorf("checks %v, want redis alone", rep.Checks)
	}
	if rep.Checks["redis"] != health.Healthy {
		t.Errorf("redis check %q, want healthy", rep.Checks["redis"])
	}
	if strings.Contains(prog.Logs(), "database_url") {
		t.Errorf("a program without a database logged a database_url:\n%s", prog.Logs())
	}
	rd.Cut()
	eventually(t, prog.InternalURL(), health.Degraded, http.StatusOK)
	rd.Restore()
	eventually(t, prog.InternalURL(), health.Healthy, http.StatusOK)
}

// The outbox and inbox need the database a program without one lacks: a clear error,
// not a nil pool's panic.
func TestOutboxAndInboxNeedADatabase(t *testing.T) {
	t.Parallel()
	p, err := platform.Start(context.Background(), platform.Config{Name: "edge", RedisURL: redistest.New(t), LogLevel: "info"}, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.RelayOutbox(); err == nil || !strings.Contains(err.Error(), "needs a database") {
		t.Errorf("RelayOutbox = %v, want an error saying it needs a database", err)
	}
	if err := p.CleanInbox(time.Hour); err == nil || !strings.Contains(err.Error(), "needs a database") {
		t.Errorf("CleanInbox = %v, want an error saying it needs a database", err)
	}
}

// A program whose internal address is taken fails at once and never serves the
// public: both addresses are bound before either is served.
func TestATakenInternalAddressStopsTheProgramBeforeItServes(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	vars := map[string]string{"DATABASE_URL": pgtest.NewDatabase(t), "REDIS_URL": redistest.New(t),
		"HTTP_ADDR": "127.0.0.1:0", "INTERNAL_ADDR": taken.Addr().String()}
	var logs strings.Builder
	err = run(context.Background(), nil, func(k string) string { return vars[k] }, &logs)
	if err == nil {
		t.Fatal("run succeeded with its internal address taken")
	}
	if !strings.Contains(err.Error(), "internal listener") || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Errorf("err = %v; want it to name the internal listener and its address", err)
	}
	if strings.Contains(logs.String(), `"msg":"listening"`) {
		t.Errorf("the public listener served although the internal one could not:\n%s", logs.String())
	}
}

// With LogEvery, info lines wait in memory and a warning is written at once with
// everything before it; Close writes the rest, after every other line.
func TestBatchedLogsKeepTheirOrderAndAreAllWrittenByClose(t *testing.T) {
	t.Parallel()
	var out syncbuf.Buffer
	cfg := platform.Config{Name: "edge", RedisURL: redistest.New(t), LogLevel: "info", LogEvery: time.Hour}
	p, err := platform.Start(context.Background(), cfg, nil, &out)
	if err != nil {
		t.Fatal(err)
	}
	p.Log.Info("held")
	if got := out.String(); strings.Contains(got, `"msg":"held"`) {
		t.Fatalf("an info line was written before its time:\n%s", got)
	}
	p.Log.Warn("urgent")
	got := out.String()
	if i, j := strings.Index(got, `"msg":"held"`), strings.Index(got, `"msg":"urgent"`); i < 0 || j < i {
		t.Fatalf("after a warning the log is\n%s\nwant held, then urgent", got)
	}
	p.Log.Info("last")
	p.Close()
	if !strings.Contains(out.String(), `"msg":"last"`) {
		t.Errorf("Close left a line unwritten:\n%s", out.String())
	}
}
