package devstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/bazaar-shop/bazaar/internal/programs"
	"github.com/bazaar-shop/bazaar/internal/testkit/closedport"
	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/syncbuf"
	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
)

// The test binary doubles as a fake program for the process tests: started with
// DEVSTACK_FAKE set, it behaves as that mode says instead of running the tests.
func TestMain(m *testing.M) {
	if mode := os.Getenv("DEVSTACK_FAKE"); mode != "" {
		fakeProgram(mode, os.Getenv("HTTP_ADDR"))
		return
	}
	// The stack starts Mailpit with no environment at all; the fake knows it by its
	// first argument.
	if len(os.Args) > 2 && os.Args[1] == "--listen" {
		fakeProgram("mailpit", os.Args[2])
		return
	}
	os.Exit(m.Run())
}

// fakeProgram is a program in miniature: it listens on addr (HTTP_ADDR; any free port
// when empty), logs the "listening" line the real ones do and serves /readyz, GET /env
// (its environment, as a JSON object) and the two calls the stack's seeding makes.
// "stubborn" ignores SIGTERM, to be killed; "mailpit" logs no listening line, as
// Mailpit does not.
func fakeProgram(mode, addr string) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/env":
			env := map[string]string{}
			for _, kv := range os.Environ() {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
			_ = json.NewEncoder(w).Encode(env)
		case "/api/v1/auth/register":
			w.WriteHeader(http.StatusCreated)
			fmt.Fprint(w, `{}`)
		default:
			fmt.Fprint(w, `{"status":"healthy","checks":{}}`)
		}
	})
	go http.Serve(ln, handler)
	if mode != "mailpit" {
		fmt.Printf(`{"level":"INFO","msg":"listening","addr":%q}`+"\n", ln.Addr().String())
	}
	// A service's internal listener, or the gateway's operations listener, as the
	// real ones log them.
	for _, l := range []struct{ env, msg string }{{"INTERNAL_ADDR", "internal listening"}, {"OPS_ADDR", "ops listening"}} {
		in := os.Getenv(l.env)
		if in == "" {
			continue
		}
		iln, err := net.Listen("tcp", in)
		if err != nil {
			fmt.Println(err)
			os.Exit(2)
		}
		go http.Serve(iln, handler)
		fmt.Printf(`{"level":"INFO","msg":%q,"addr":%q}`+"\n", l.msg, iln.Addr().String())
	}
	fmt.Fprint(os.Stderr, "a line on stderr\npartial line without newline")
	for range sigs {
		if mode != "stubborn" {
			fmt.Println("stopping")
			os.Exit(0)
		}
	}
}

func startFake(t *testing.T, name, mode string, out *sink) *process {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := startProcess(name, self, nil, []string{"DEVSTACK_FAKE=" + mode}, out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop(time.Second) })
	return p
}

func waitListening(t *testing.T, p *process) string {
	t.Helper()
	select {
	case addr := <-p.listen:
		return addr
	case <-p.done:
		t.Fatalf("%s exited before listening:\n%s", p.name, p.tail.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not listen within 30s:\n%s", p.name, p.tail.String())
	}
	return ""
}

func TestProcessReportsItsAddressPrefixesItsOutputAndStopsCleanly(t *testing.T) {
	t.Parallel()
	out := &syncbuf.Buffer{}
	p := startFake(t, "fake", "serve", &sink{w: out})

	addr := waitListening(t, p)
	resp, err := testhttp.Client.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /readyz: %s", resp.Status)
	}

	p.stop(10 * time.Second)
	if desc, clean := p.exitStatus(); !clean || desc != "exit code 0" {
		t.Errorf("exit status = %q, clean %v; want exit code 0, clean", desc, clean)
	}
	logs := out.String()
	for _, want := range []string{
		fmt.Sprintf("%-*s | a line on stderr\n", nameWidth, "fake"),
		fmt.Sprintf("%-*s | stopping\n", nameWidth, "fake"),
		// A last line without a newline is still shown once the program exits.
		fmt.Sprintf("%-*s | partial line without newline\n", nameWidth, "fake"),
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("output lacks %q; got:\n%s", want, logs)
		}
	}
}

func TestProcessThatIgnoresSIGTERMIsKilled(t *testing.T) {
	t.Parallel()
	p := startFake(t, "stubborn", "stubborn", &sink{w: &syncbuf.Buffer{}})
	waitListening(t, p) // its SIGTERM handler is installed by now

	p.stop(300 * time.Millisecond)
	desc, clean := p.exitStatus()
	if clean || !strings.Contains(desc, "killed") {
		t.Errorf("exit status = %q, clean %v; want killed, not clean", desc, clean)
	}
}

func TestStackStopsTheRestWhenAProgramDies(t *testing.T) {
	t.Parallel()
	out := &syncbuf.Buffer{}
	s := &Stack{out: &sink{w: out}, failed: make(chan struct{}), opts: Options{StopTimeout: 10 * time.Second}}
	victim := startFake(t, "victim", "serve", s.out)
	survivor := startFake(t, "survivor", "serve", s.out)
	s.track(victim)
	s.track(survivor)
	waitListening(t, victim)
	waitListening(t, survivor)

	if err := syscall.Kill(victim.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the stack did not notice that a program died")
	}
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "victim exited unexpectedly") {
		t.Errorf("Err() = %v; want it to name the program that died", err)
	}
	select {
	case <-survivor.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the surviving program was not stopped")
	}
	if desc, clean := survivor.exitStatus(); !clean {
		t.Errorf("survivor: %s; want a clean stop", desc)
	}
}

func TestLineWriterKeepsLinesWhole(t *testing.T) {
	t.Parallel()
	out := &syncbuf.Buffer{}
	var seen []string
	w := &lineWriter{sink: &sink{w: out, color: true}, name: "users", onLine: func(l string) { seen = append(seen, l) }}
	for _, chunk := range []string{"one\r\ntw", "o\n", "", "thr", "ee"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	w.flush()
	if got := strings.Join(seen, "|"); got != "one|two|three" {
		t.Errorf("lines = %q; want one|two|three", got)
	}
	prefix := "\x1b[32m" + fmt.Sprintf("%-*s |", nameWidth, "users") + "\x1b[0m "
	want := prefix + "one\n" + prefix + "two\n" + prefix + "three\n"
	if out.String() != want {
		t.Errorf("output = %q; want %q", out.String(), want)
	}
}

func TestCheckServersSaysWhichIsDownAndHowToStartIt(t *testing.T) {
	t.Parallel()
	closed := closedPort(t)
	err := CheckServers(context.Background(),
		"postgres://postgres@"+closed+"/postgres?sslmode=disable", "BAZAAR_ADMIN_DATABASE_URL",
		"redis://"+closed+"/0", "REDIS_URL")
	var unreachable *UnreachableError
	if !errors.As(err, &unreachable) {
		t.Fatalf("err = %v; want an *UnreachableError", err)
	}
	for _, want := range []string{
		"Postgres is not reachable at postgres://postgres@" + closed,
		"pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
		"BAZAAR_ADMIN_DATABASE_URL",
		"Redis is not reachable at redis://" + closed,
		"redis-server --daemonize yes",
		"REDIS_URL",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestCheckServersPassesWhenBothAreUp(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres and Redis")
	}
	t.Parallel()
	err := CheckServers(context.Background(), pgtest.AdminURL(), "TEST_DATABASE_URL", redisURL(), "TEST_REDIS_URL")
	if err != nil {
		t.Fatal(err)
	}
}

func redisURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	return closedport.Addr(t)
}

func TestDatabasesRejectsABadPrefix(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{"", "Bazaar_", "bazaar-", "1bazaar_", `x"; DROP DATABASE postgres; --`, strings.Repeat("a", 42)} {
		if _, err := Databases("postgres://postgres@127.0.0.1:5432/postgres", prefix); err == nil {
			t.Errorf("prefix %q accepted", prefix)
		}
	}
	dbs, err := Databases("postgres://postgres@db.example:5433/postgres?sslmode=disable", "bazaar_")
	if err != nil {
		t.Fatal(err)
	}
	want := "postgres://bazaar_orders:bazaar_orders@db.example:5433/bazaar_orders?sslmode=disable"
	if got := dbs[3].URL; dbs[3].Service != "orders" || got != want {
		t.Errorf("orders URL = %q; want %q", got, want)
	}
}

func TestEnsureDatabasesIsIdempotentAndIsolatesTheRoles(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	t.Parallel()
	ctx := context.Background()
	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix := "bazaar_dstest_" + hex.EncodeToString(b[:]) + "_"
	admin := pgtest.AdminURL()
	t.Cleanup(func() {
		if err := DropDatabases(ctx, admin, prefix); err != nil {
			t.Errorf("drop: %v", err)
		}
		if n := countObjects(t, admin, prefix); n != 0 {
			t.Errorf("%d databases and roles %s* left after DropDatabases", n, prefix)
		}
	})

	dbs, err := EnsureDatabases(ctx, admin, prefix)
	if err != nil {
		t.Fatal(err)
	}
	// Again, twice at once: a second `make run`, or two racing.
	errs := make(chan error, 2)
	for range 2 {
		go func() { _, err := EnsureDatabases(ctx, admin, prefix); errs <- err }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("EnsureDatabases again: %v", err)
		}
	}
	if n := countObjects(t, admin, prefix); n != 2*len(Services) {
		t.Fatalf("%d databases and roles; want %d", n, 2*len(Services))
	}

	// Each role owns its database: it may create tables there.
	users := dbs[0]
	conn, err := pgx.Connect(ctx, users.URL)
	if err != nil {
		t.Fatalf("users role to its own database: %v", err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE t (id int)"); err != nil {
		t.Errorf("users role cannot create a table in its database: %v", err)
	}
	conn.Close(ctx)

	// ...and cannot reach another service's.
	other := mustParse(t, dbs[1].URL) // inventory's role...
	other.Database = users.Name       // ...to the users database
	conn, err = pgx.ConnectConfig(ctx, other)
	var pgErr *pgconn.PgError
	if err == nil {
		conn.Close(ctx)
		t.Fatal("the inventory role reached the users database")
	} else if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Errorf("inventory role to users database: %v; want permission denied (42501)", err)
	}
}

func mustParse(t *testing.T, url string) *pgx.ConnConfig {
	t.Helper()
	c, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func countObjects(t *testing.T, adminURL, prefix string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_database WHERE starts_with(datname, $1))
		+ (SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1))`, prefix).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// fakeStack runs the stack's real start (order, environment, readiness, seeding) with
// every program and Mailpit played by this test binary in fake mode: no build, no
// Postgres, no Redis.
func fakeStack(t *testing.T, o Options) *Stack {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	for _, p := range Programs {
		if err := os.Symlink(self, filepath.Join(bin, p.Name)); err != nil {
			t.Fatal(err)
		}
	}
	o.RepoDir, o.BinDir, o.MailpitBin = bin, bin, self
	if o.Env == nil {
		o.Env = map[string]string{}
	}
	o.Env["DEVSTACK_FAKE"] = "serve"
	out := &syncbuf.Buffer{}
	o.Output = out
	o.StopTimeout = 10 * time.Second
	o.ReadyTimeout = 30 * time.Second
	o.setDefaults()
	s := &Stack{opts: o, out: &sink{w: out}, failed: make(chan struct{})}
	s.urls.Programs = map[string]string{}
	s.urls.Internal = map[string]string{}
	if err := s.ensureKeys(); err != nil {
		t.Fatal(err)
	}
	s.urls.Databases, err = Databases("postgres://postgres@127.0.0.1:1/postgres", "fake_")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if t.Failed() {
			t.Logf("the stack's output:\n%s", out)
		}
	})
	if err := s.reservePorts(); err != nil {
		t.Fatal(err)
	}
	if err := s.start(t.Context()); err != nil {
		t.Fatalf("start: %v\n%s", err, out)
	}
	return s
}

// envOf asks a fake program for its environment.
func envOf(t *testing.T, s *Stack, program string) map[string]string {
	t.Helper()
	resp, err := testhttp.Client.Get(s.URLs().Programs[program] + "/env")
	if err != nil {
		t.Fatalf("%s: %v", program, err)
	}
	defer resp.Body.Close()
	var env map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatal(err)
	}
	return env
}

func TestStackStartsOrdersWithTheAddressesOfWhatItCalls(t *testing.T) {
	t.Parallel()
	ports, release, err := HoldPorts(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	s := fakeStack(t, Options{
		Ports:    Ports{Payments: ports[0]},
		LogLevel: "warn",
		Env:      map[string]string{"LOG_LEVEL": "debug", "SHARED": "all"},
		ProgramEnv: map[string]map[string]string{
			"orders":  {"PAYMENTS_URL": "http://127.0.0.1:9/proxy", "SAGA_INLINE_TIMEOUT": "1s"},
			"gateway": {"SHARED": "mine"},
		},
	})
	u := s.URLs()
	if want := fmt.Sprintf("http://127.0.0.1:%d", ports[0]); u.Programs["payments"] != want {
		t.Errorf("payments at %s; want the port chosen up front, %s", u.Programs["payments"], want)
	}

	orders := envOf(t, s, "orders")
	for k, want := range map[string]string{
		"INVENTORY_URL":       u.Internal["inventory"], // known only once inventory listened
		"SERVICE_KEY_FILE":    filepath.Join(u.KeysDir, "orders", "service.key"),
		"SERVICE_TRUST_DIR":   filepath.Join(u.KeysDir, "public"),
		"PAYMENTS_URL":        "http://127.0.0.1:9/proxy",
		"SAGA_INLINE_TIMEOUT": "1s",
		"LOG_LEVEL":           "warn", // the stack's own win over Options.Env
		"SHARED":              "all",
		"DATABASE_URL":        u.Databases[3].URL,
	} {
		if orders[k] != want {
			t.Errorf("orders has %s=%q; want %q", k, orders[k], want)
		}
	}
	gw := envOf(t, s, "gateway")
	if gw["PAYMENTS_INTERNAL_URL"] != u.Internal["payments"] || gw["ORDERS_INTERNAL_URL"] != u.Internal["orders"] {
		t.Errorf("gateway has PAYMENTS_INTERNAL_URL=%q ORDERS_INTERNAL_URL=%q; want the internal listeners %v",
			gw["PAYMENTS_INTERNAL_URL"], gw["ORDERS_INTERNAL_URL"], u.Internal)
	}
	if gw["ORDERS_URL"] != u.Programs["orders"] || gw["PAYMENTS_URL"] != u.Programs["payments"] || gw["SHARED"] != "mine" {
		t.Errorf("gateway has ORDERS_URL=%q PAYMENTS_URL=%q SHARED=%q; want the real addresses and its own SHARED",
			gw["ORDERS_URL"], gw["PAYMENTS_URL"], gw["SHARED"])
	}
	if inv := envOf(t, s, "inventory"); inv["SAGA_INLINE_TIMEOUT"] != "" || inv["SEED_CATALOGUE"] != "true" {
		t.Errorf("inventory has SAGA_INLINE_TIMEOUT=%q SEED_CATALOGUE=%q; want orders' variables kept to orders",
			inv["SAGA_INLINE_TIMEOUT"], inv["SEED_CATALOGUE"])
	}
}

func TestKilledAndStoppedProgramsRestartWhereTheyWereWithoutFailingTheStack(t *testing.T) {
	t.Parallel()
	s := fakeStack(t, Options{ProgramEnv: map[string]map[string]string{"payments": {"MARK": "kept"}}})
	u := s.URLs()
	before := envOf(t, s, "payments")

	killed, _ := s.current("payments")
	if err := s.KillProgram("payments"); err != nil {
		t.Fatal(err)
	}
	<-killed.watched // the watchdog has seen the exit
	if err := s.Err(); err != nil {
		t.Fatalf("a program killed on request failed the stack: %v", err)
	}
	if _, err := testhttp.Client.Get(u.Programs["payments"] + "/readyz"); err == nil {
		t.Fatal("payments still answers after KillProgram")
	}

	if err := s.RestartProgram(t.Context(), "payments"); err != nil {
		t.Fatal(err)
	}
	after := envOf(t, s, "payments") // at the same URL
	if after["MARK"] != "kept" || after["DATABASE_URL"] != before["DATABASE_URL"] || after["HTTP_ADDR"] != strings.TrimPrefix(u.Programs["payments"], "http://") {
		t.Errorf("restarted with MARK=%q DATABASE_URL=%q HTTP_ADDR=%q; want its first environment on its first address",
			after["MARK"], after["DATABASE_URL"], after["HTTP_ADDR"])
	}

	stopped, _ := s.current("orders")
	if err := s.StopProgram(t.Context(), "orders"); err != nil {
		t.Fatal(err)
	}
	<-stopped.watched
	if desc, clean := stopped.exitStatus(); !clean {
		t.Errorf("orders stopped with %s; want a clean exit", desc)
	}
	// Restart stops a running program first.
	if err := s.RestartProgram(t.Context(), "mailpit"); err != nil {
		t.Fatal(err)
	}
	if err := s.RestartProgram(t.Context(), "orders"); err != nil {
		t.Fatal(err)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("the stack failed: %v", err)
	}
	select {
	case <-s.Done():
		t.Fatal("Done closed after intended stops")
	default:
	}
	if err := s.KillProgram("no-such-program"); err == nil {
		t.Error("KillProgram of an unknown program succeeded")
	}
}

// A stack on free ports puts the gateway's operations listener (its metrics) on a
// free port too, held like the others (see portHolds), and says which. A restart
// brings it back to the same address, not to its default 9080.
func TestTheGatewaysOperationsListenerIsReportedAndKeptOnRestart(t *testing.T) {
	t.Parallel()
	s := fakeStack(t, Options{})
	ops := s.URLs().GatewayOps
	if ops == "" || ops == s.URLs().Gateway {
		t.Fatalf("GatewayOps = %q (the gateway is at %s); want its own listener", ops, s.URLs().Gateway)
	}
	if resp, err := testhttp.Client.Get(ops + "/readyz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/readyz: %v %v", ops, resp, err)
	}
	if err := s.RestartProgram(t.Context(), "gateway"); err != nil {
		t.Fatal(err)
	}
	if got := envOf(t, s, "gateway")["OPS_ADDR"]; got != strings.TrimPrefix(ops, "http://") {
		t.Errorf("the gateway restarted with OPS_ADDR=%q; want its first address %s", got, ops)
	}
	if s.URLs().GatewayOps != ops {
		t.Errorf("GatewayOps after a restart = %q; want %q", s.URLs().GatewayOps, ops)
	}
}

func TestARestartedProgramIsWatchedToo(t *testing.T) {
	t.Parallel()
	s := fakeStack(t, Options{})
	if err := s.RestartProgram(t.Context(), "notifications"); err != nil {
		t.Fatal(err)
	}
	p, _ := s.current("notifications")
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the stack did not notice that the restarted program died")
	}
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "notifications exited unexpectedly") {
		t.Errorf("Err() = %v; want it to name notifications", err)
	}
	if err := s.RestartProgram(t.Context(), "notifications"); !errors.Is(err, ErrStopping) {
		t.Errorf("RestartProgram on a stopped stack = %v; want ErrStopping", err)
	}
}

func TestProgramEnvMustNameAProgram(t *testing.T) {
	t.Parallel()
	_, err := Start(t.Context(), Options{RepoDir: t.TempDir(), ProgramEnv: map[string]map[string]string{"order": {"X": "1"}}})
	if err == nil || !strings.Contains(err.Error(), `"order"`) {
		t.Fatalf("Start = %v; want an error naming the unknown program", err)
	}
}

func TestProgramEnvLayersWinInOrder(t *testing.T) {
	t.Parallel()
	o := Options{
		Env:        map[string]string{"A": "options", "B": "options", "C": "options"},
		ProgramEnv: map[string]map[string]string{"orders": {"C": "program"}, "users": {"A": "other"}},
	}
	got := programEnv(o, "orders", map[string]string{"B": "stack", "C": "stack"})
	if want := []string{"A=options", "B=stack", "C=program"}; !slices.Equal(got, want) {
		t.Errorf("env = %v; want %v", got, want)
	}
}

func TestParseInstances(t *testing.T) {
	t.Parallel()
	got, err := ParseInstances(" inventory=2, payments=3 ")
	if err != nil || !maps.Equal(got, map[string]int{"inventory": 2, "payments": 3}) {
		t.Errorf("ParseInstances = %v, %v", got, err)
	}
	if got, err := ParseInstances(""); err != nil || len(got) != 0 {
		t.Errorf("ParseInstances(\"\") = %v, %v; want one of each", got, err)
	}
	_, err = ParseInstances("inventory=0,gateway=2,orders,payments=10,users=x")
	for _, want := range []string{`"inventory=0"`, `"gateway=2"`, `"orders"`, `"payments=10"`, `"users=x"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

// Two instances of inventory and of payments: each listens on its own ports and
// shares its service's database, key and variables; orders and the gateway get both,
// in order; and the second can be killed and restarted like any program.
func TestAServiceRunsAsSeveralInstancesBehindOrdersAndTheGateway(t *testing.T) {
	t.Parallel()
	s := fakeStack(t, Options{
		Instances:  map[string]int{"inventory": 2, "payments": 2},
		ProgramEnv: map[string]map[string]string{"inventory": {"MARK": "both"}},
	})
	u := s.URLs()
	if !slices.Equal(u.Instances["inventory"], []string{"inventory", "inventory-2"}) || !slices.Equal(u.Instances["users"], []string{"users"}) {
		t.Fatalf("instances %v", u.Instances)
	}
	first, second := envOf(t, s, "inventory"), envOf(t, s, "inventory-2")
	if u.Programs["inventory-2"] == u.Programs["inventory"] || u.Internal["inventory-2"] == u.Internal["inventory"] || u.Internal["inventory-2"] == "" {
		t.Errorf("the instances share an address: %v %v", u.Programs, u.Internal)
	}
	for _, k := range []string{"DATABASE_URL", "SERVICE_KEY_FILE", "SERVICE_TRUST_DIR", "JWKS_URL"} {
		if first[k] != second[k] || first[k] == "" {
			t.Errorf("%s: %q and %q; want the service's, shared", k, first[k], second[k])
		}
	}
	if second["MARK"] != "both" || second["SEED_CATALOGUE"] != "" || second["CONSUMER_NAME"] != "inventory-2" || first["CONSUMER_NAME"] != "" {
		t.Errorf("the second instance has MARK=%q SEED_CATALOGUE=%q CONSUMER_NAME=%q (the first %q); want the service's variables, no seeding, a consumer name of its own",
			second["MARK"], second["SEED_CATALOGUE"], second["CONSUMER_NAME"], first["CONSUMER_NAME"])
	}

	orders, gw := envOf(t, s, "orders"), envOf(t, s, "gateway")
	for _, c := range []struct{ got, want string }{
		{orders["INVENTORY_URL"], u.Internal["inventory"] + "," + u.Internal["inventory-2"]},
		{orders["PAYMENTS_URL"], u.Internal["payments"] + "," + u.Internal["payments-2"]},
		{gw["INVENTORY_URL"], u.Programs["inventory"] + "," + u.Programs["inventory-2"]},
		{gw["INVENTORY_INTERNAL_URL"], u.Internal["inventory"] + "," + u.Internal["inventory-2"]},
		{gw["USERS_URL"], u.Programs["users"]},
	} {
		if c.got != c.want {
			t.Errorf("got %q; want %q", c.got, c.want)
		}
	}

	if err := s.KillProgram("inventory-2"); err != nil {
		t.Fatal(err)
	}
	if err := s.RestartProgram(t.Context(), "inventory-2"); err != nil {
		t.Fatal(err)
	}
	if again, want := envOf(t, s, "inventory-2"), strings.TrimPrefix(u.Programs["inventory-2"], "http://"); again["HTTP_ADDR"] != want {
		t.Errorf("restarted on %s; want %s", again["HTTP_ADDR"], want)
	}
	if err := s.Err(); err != nil {
		t.Errorf("the stack failed: %v", err)
	}
}

func TestExtraInstancesListenAHundredAboveTheFirst(t *testing.T) {
	t.Parallel()
	if got := portOf(8082, 2); got != 8182 {
		t.Errorf("inventory-2 at %d; want 8182", got)
	}
	if got := portOf(0, 3); got != 0 {
		t.Errorf("on free ports: %d; want 0", got)
	}
	if serviceOf("inventory-2") != "inventory" || serviceOf("inventory") != "inventory" || serviceOf("gateway-2") != "gateway-2" || serviceOf("mailpit") != "mailpit" {
		t.Error("serviceOf")
	}
	// A taken port of a second instance is found before anything starts.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().(*net.TCPAddr).Port
	s := &Stack{opts: Options{Ports: Ports{Inventory: taken - 100}, Instances: map[string]int{"inventory": 2}}}
	err = s.reservePorts()
	if err == nil || !strings.Contains(err.Error(), "inventory-2") {
		t.Errorf("reservePorts = %v; want inventory-2's port named", err)
	}
	if n := s.holds.held(); n != 0 {
		t.Errorf("a failed reservePorts still holds %d ports", n)
	}
}

// The stack's default ports are internal/programs' list, program by program: a
// program added there and not here would get port 0, any free one.
func TestDefaultPortsAreTheProgramsList(t *testing.T) {
	t.Parallel()
	for _, p := range programs.All {
		if got := DefaultPorts.of(p.Name); got != p.Port {
			t.Errorf("%s: DefaultPorts has %d, the list %d", p.Name, got, p.Port)
		}
		if got := DefaultPorts.internalOf(p.Name); got != p.InternalPort {
			t.Errorf("%s internal: DefaultPorts has %d, the list %d", p.Name, got, p.InternalPort)
		}
	}
}

// A stopped program's ports stay the stack's until it comes back. Released, the kernel
// may give one to any socket asking for port 0 or connecting out (another test's
// server, a client), and the restart then fails with "address already in use": it
// happened in CI. takenBy stands for such a socket: like the kernel's own picks, it
// does not ask to share the port (no SO_REUSEADDR).
func TestAStoppedProgramsPortsAreKeptForItsRestart(t *testing.T) {
	t.Parallel()
	s := fakeStack(t, Options{})
	if err := s.StopProgram(t.Context(), "notifications"); err != nil {
		t.Fatal(err)
	}
	addrs := []string{s.urls.Programs["notifications"], s.urls.Internal["notifications"]}
	for _, a := range addrs {
		if err := takenBy(strings.TrimPrefix(a, "http://")); err == nil {
			t.Errorf("while notifications was stopped another socket could take %s", a)
		}
	}
	if err := s.RestartProgram(t.Context(), "notifications"); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := s.holds.held(); n != 0 {
		t.Errorf("after Stop the stack still holds %d ports", n)
	}
}

// takenBy binds addr with a socket that does not share its port, and closes it.
func takenBy(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return err
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	return syscall.Bind(fd, &syscall.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())})
}
