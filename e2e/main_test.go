package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/devstack"
	"github.com/bazaar-shop/bazaar/internal/invariants"
	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/syncbuf"
)

// The stack under test, set by TestMain.
var (
	baseURL    string         // the gateway, without a trailing slash; "" when there is none (-short)
	mailpitURL string         // Mailpit's web and API address
	admin      devstack.Login // the seeded admin
	shopper    devstack.Login // the seeded shopper
	// sharedDBs are the stack's databases, for the invariant checks; zero when the
	// stack is not this run's (E2E_BASE_URL).
	sharedDBs invariants.Databases
	// stackURLs are the shared stack's addresses (every program's, its Redis, its
	// databases), for the security tests that go round the gateway; zero when the
	// stack is not this run's (E2E_BASE_URL).
	stackURLs devstack.URLs
)

func TestMain(m *testing.M) {
	flag.Parse() // for testing.Short
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	admin, shopper = devstack.DefaultAdmin, devstack.DefaultShopper
	if u := os.Getenv("E2E_BASE_URL"); u != "" {
		baseURL = strings.TrimRight(u, "/")
		mailpitURL = "http://localhost:8025"
		if m := os.Getenv("E2E_MAILPIT_URL"); m != "" {
			mailpitURL = strings.TrimRight(m, "/")
		}
		// A stack started by `make run` seeds the logins its environment names.
		override(&admin, "BAZAAR_ADMIN_EMAIL", "BAZAAR_ADMIN_PASSWORD")
		override(&shopper, "BAZAAR_SHOPPER_EMAIL", "BAZAAR_SHOPPER_PASSWORD")
		return run(m)
	}
	if testing.Short() {
		return m.Run() // every test skips: there is no stack
	}

	// Generous: on a cold cache the first run builds Mailpit (about a minute) beside
	// the unit tests of every other package.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	redisURL, release, err := redistest.Lease(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer release()
	root, err := devstack.FindRepoRoot(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	logs := &syncbuf.Buffer{}
	opts := stackOptions(root, redisURL, logs)
	// Anything the shared stack's sagas leave pending (a busy machine can push one
	// past the inline deadline) is finished quickly, so that tests waiting for it do
	// not wait for the default 15 s period.
	opts.ProgramEnv["orders"] = map[string]string{"RECOVER_EVERY": "1s"}
	stack, err := devstack.Start(ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: the stack did not start: %v\n\nits output:\n%s", err, logs)
		return 1
	}
	baseURL, mailpitURL = stack.URLs().Gateway, stack.URLs().Mailpit
	admin, shopper = stack.URLs().Admin, stack.URLs().Shopper
	sharedDBs = invariants.FromStack(stack.URLs().Databases)
	stackURLs = stack.URLs()

	code := run(m)

	if err := stack.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: the stack failed during the tests: %v\n", err)
		code = 1
	}
	if err := stack.Stop(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: stopping the stack: %v\n", err)
		code = 1
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "\ne2e: the stack's output:\n%s", logs)
	}
	return code
}

// run runs the tests, waiting out 429s until shortly before -timeout (retryUntil), and
// says how many there were: against a stack with its default rate limits there are
// some, and a run that takes long is then waiting on the limits rather than stuck.
func run(m *testing.M) int {
	// The -timeout alarm starts with m.Run, so this is its deadline give or take the
	// moment between here and there.
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, ok := f.Value.(flag.Getter).Get().(time.Duration); ok && d > 0 {
			retryUntil = time.Now().Add(d - min(30*time.Second, d/10))
		}
	}
	code := m.Run()
	if n := rateLimited.Load(); n > 0 {
		fmt.Printf("e2e: the gateway answered 429 Too Many Requests %d times; each request was sent again after its Retry-After\n", n)
	}
	return code
}

// stackOptions are the e2e suite's stacks: free ports, their own databases (dropped at
// the end) and Redis logical database, and the repository's build.
func stackOptions(root, redisURL string, logs *syncbuf.Buffer) devstack.Options {
	return devstack.Options{
		RepoDir: root,
		BinDir:  filepath.Join(root, "bin", "e2e"),
		// Mailpit does not change with the code under test: share make run's.
		MailpitBin:          devstack.DefaultMailpitBin(filepath.Join(root, "bin")),
		AdminDatabaseURL:    pgtest.AdminURL(),
		AdminDatabaseURLVar: "TEST_DATABASE_URL",
		RedisURL:            redisURL,
		RedisURLVar:         "TEST_REDIS_URL",
		DatabasePrefix:      "bazaar_e2e_" + randomHex(4) + "_",
		DropDatabases:       true,
		// Ports left zero: every program on a free port.
		LogLevel: "info",
		// Go's profiler on every service's internal listener, for BenchmarkPlaceOrder's
		// profiles (E2E_BENCH_PROFILE); the listeners are on loopback.
		Env:          map[string]string{"PPROF": "true"},
		Output:       logs,
		ReadyTimeout: 3 * time.Minute,
		// The suite signs dozens of users up and in from 127.0.0.1: the gateway's
		// sign-in and per-IP limits are off, and the per-user one too. The users
		// service's log-in throttle stays on; its Redis calls get more than their
		// 250ms, since on a loaded machine a call past it is counted in the process,
		// which knows none of the failures in Redis, and lets a guess through.
		ProgramEnv: map[string]map[string]string{
			"gateway": {
				"RATE_EDGE_IP":            "0",
				"RATE_AUTH_IP_PER_MIN":    "0",
				"RATE_AUTH_EMAIL_PER_MIN": "0",
				"RATE_IP":                 "0",
				"RATE_USER":               "0",
			},
			"users": {"LOGIN_REDIS_TIMEOUT": "5s"},
		},
	}
}

func override(l *devstack.Login, emailVar, passwordVar string) {
	if v := os.Getenv(emailVar); v != "" {
		l.Email = v
	}
	if v := os.Getenv(passwordVar); v != "" {
		l.Password = v
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
