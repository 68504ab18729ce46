package devstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/bazaar-shop/bazaar/pkg/pgtest"
)

// The test binary doubles as a fake program for the process tests: started with
// DEVSTACK_FAKE set, it behaves as that mode says instead of running the tests.
func TestMain(m *testing.M) {
	if mode := os.Getenv("DEVSTACK_FAKE"); mode != "" {
		fakeProgram(mode)
		return
	}
	os.Exit(m.Run())
}

// fakeProgram is a program in miniature: it logs the "listening" line the real ones
// do and serves /readyz. "stubborn" ignores SIGTERM, to be killed.
func fakeProgram(mode string) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"status":"healthy","checks":{}}`)
	}))
	fmt.Printf(`{"level":"INFO","msg":"listening","addr":%q}`+"\n", ln.Addr().String())
	fmt.Fprint(os.Stderr, "a line on stderr\npartial line without newline")
	for range sigs {
		if mode != "stubborn" {
			fmt.Println("stopping")
			os.Exit(0)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
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
	out := &syncBuffer{}
	p := startFake(t, "fake", "serve", &sink{w: out})

	addr := waitListening(t, p)
	resp, err := http.Get("http://" + addr + "/readyz")
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
	p := startFake(t, "stubborn", "stubborn", &sink{w: &syncBuffer{}})
	waitListening(t, p) // its SIGTERM handler is installed by now

	p.stop(300 * time.Millisecond)
	desc, clean := p.exitStatus()
	if clean || !strings.Contains(desc, "killed") {
		t.Errorf("exit status = %q, clean %v; want killed, not clean", desc, clean)
	}
}

func TestStackStopsTheRestWhenAProgramDies(t *testing.T) {
	t.Parallel()
	out := &syncBuffer{}
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
	out := &syncBuffer{}
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
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
