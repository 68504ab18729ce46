package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/bazaar-shop/bazaar/deploy/observability"
	"github.com/bazaar-shop/bazaar/internal/devstack"
	"github.com/bazaar-shop/bazaar/internal/programs"
	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/syncbuf"
	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
)

// againstMakeRun are the e2e tests run against a stack like make run's. Between them
// they meet every limit the gateway has by default: sign-ups and log-ins (fresh users,
// the seeded logins, the admin and the shopper pool), anonymous reads per client IP
// (the catalogue and its cache), a user's requests (twenty orders at once), and they
// read Mailpit through E2E_MAILPIT_URL. The rest of the suite runs on the e2e
// package's own stack, limits off; here each sign-in costs up to 6 s of the limit's
// 10 a minute, so the tests that sign in most (bad registrations, refresh, login
// failures: a dozen and more) are left out to keep make test short. The fault tests
// and the benchmark skip against a stack they did not start.
var againstMakeRun = []string{
	"TestHealthShowsAllSixProgramsHealthy",
	"TestSeededAccountsCanLogIn",
	"TestRegisterLogInAndReadMe",
	"TestBadTokensAreRejectedAtTheGateway",
	"TestWelcomeEmailArrivesAndIsListedAsSent",
	"TestBrowsingTheCatalogueIsPagedAndCached",
	"TestAnOrderIsConfirmedEmailedAndCancelledByItsCustomer",
	"TestTwentyConcurrentOrdersForFiveInStockSellFive",
}

// The README says E2E_BASE_URL points the e2e suite at a running stack, such as make
// run's, whose gateway keeps its default rate limits. This starts a stack from make
// run's own options (stackOptions), moved to free ports, databases of its own and a
// Redis logical database of its own so that it collides with nothing, runs part of
// the e2e suite against it in a `go test` of its own with E2E_BASE_URL set, and then
// checks that the limits were really on.
func TestE2ESuitePassesAgainstAStackStartedAsMakeRunDoes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack; skipped by -short (make test-unit)")
	}
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH")
	}
	root, err := devstack.FindRepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"BAZAAR_ADMIN_DATABASE_URL": pgtest.AdminURL(),
		"REDIS_URL":                 redistest.New(t),
		"LOG_LEVEL":                 "info",
	}
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	opts := stackOptions(cfg, root, logs)
	// Where it runs is all that differs from make run: its ports, and keys of its own
	// (a temporary directory), so that a make run's keys are never touched.
	opts.Ports = devstack.Ports{}
	opts.KeysDir = ""
	var b [4]byte
	_, _ = rand.Read(b[:])
	opts.DatabasePrefix = "bazaar_makerun_" + hex.EncodeToString(b[:]) + "_"
	opts.DropDatabases = true
	// Binaries of its own, so that the build never races the e2e package's (which runs
	// at the same time under make test) nor replaces a running make run's; Mailpit is
	// make run's, which nothing rebuilds.
	opts.BinDir = filepath.Join(root, "bin", "makerun-e2e")
	opts.MailpitBin = devstack.DefaultMailpitBin(filepath.Join(root, "bin"))
	opts.AdminDatabaseURLVar, opts.RedisURLVar = "TEST_DATABASE_URL", "TEST_REDIS_URL"
	opts.ReadyTimeout = 3 * time.Minute
	if len(opts.ProgramEnv) != 0 {
		t.Fatalf("make run's options set program variables %v; this test assumes the programs' defaults", opts.ProgramEnv)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if dl, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-30*time.Second))
		defer cancel()
	}
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
	u := stack.URLs()

	// The pages a person is sent to, in a real browser (e2e/browser, playwright-core
	// driving Debian's chromium): the storefront clicked through by a shopper and the
	// admin (shop.test.mjs), Mailpit's inbox listing the seeded shopper's welcome
	// e-mail, and the task monitor its queues once the admin signs in
	// (inboxes.test.mjs). Before the suite, whose sign-ins would leave the admin's
	// limit spent. Each test leaves a screenshot in e2e/browser/screenshots.
	t.Run("in a browser", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(root, "e2e", "browser", "node_modules", "playwright-core")); err != nil {
			t.Fatal("playwright-core is not installed: run scripts/ensure-browser.sh (make test does)")
		}
		if _, err := exec.LookPath("chromium"); err != nil {
			t.Fatal("chromium is not installed: run scripts/ensure-browser.sh (make test does)")
		}
		// A test that hangs fails on its own after 3 minutes, not at the suite's deadline.
		cmd := exec.CommandContext(ctx, "node", "--test", "--test-reporter=spec", "--test-timeout=180000", ".")
		cmd.Dir = filepath.Join(root, "e2e", "browser")
		cmd.Env = append(os.Environ(), "BAZAAR_URL="+u.Gateway, "MAILPIT_URL="+u.Mailpit,
			"BAZAAR_ADMIN_EMAIL="+u.Admin.Email, "BAZAAR_ADMIN_PASSWORD="+u.Admin.Password,
			"EXPECT_SUBJECT=Welcome to Bazaar")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the browser tests failed: %v\n%s", err, out)
		}
		// Every test ran and passed: node's summary counts them.
		tests, pass := summaryCount(out, "tests"), summaryCount(out, "pass")
		if tests < browserTests || pass != tests {
			t.Errorf("want all of at least %d browser tests to pass, %d of %d did:\n%s", browserTests, pass, tests, out)
		}
	})

	args := []string{"test", "-count=1", "-v", "-run", "^(" + strings.Join(againstMakeRun, "|") + ")$"}
	if raceEnabled {
		args = append(args, "-race") // as this test was built, so that the build cache serves it
	}
	if dl, ok := ctx.Deadline(); ok {
		args = append(args, "-timeout", time.Until(dl).Round(time.Second).String())
	}
	cmd := exec.CommandContext(ctx, goBin, append(args, "./e2e/")...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"E2E_BASE_URL="+u.Gateway,
		"E2E_MAILPIT_URL="+u.Mailpit,
		"BAZAAR_ADMIN_EMAIL="+u.Admin.Email, "BAZAAR_ADMIN_PASSWORD="+u.Admin.Password,
		"BAZAAR_SHOPPER_EMAIL="+u.Shopper.Email, "BAZAAR_SHOPPER_PASSWORD="+u.Shopper.Password,
	)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("go %s (%s):\n%s", strings.Join(args, " "), time.Since(start).Round(time.Second), summary(out))
	if err != nil {
		t.Fatalf("the e2e tests failed against the stack: %v\n%s", err, out)
	}
	// Every test named ran and passed: none was skipped, none is missing (a renamed
	// test would otherwise match nothing and pass silently).
	for _, name := range againstMakeRun {
		if !regexp.MustCompile(`(?m)^--- PASS: ` + name + ` `).Match(out) {
			t.Errorf("%s did not pass (renamed? then update againstMakeRun)", name)
		}
	}
	if bytes.Contains(out, []byte("--- SKIP")) {
		t.Errorf("some tests skipped against a stack like make run's:\n%s", summary(out))
	}

	// Finding: make run's Mailpit inbox was a blank page, its web UI never built
	// (/dist/app.js answered 404): the module carries the UI's sources, not the bundle.
	t.Run("mailpit's web inbox", func(t *testing.T) {
		page := get(t, u.Mailpit+"/")
		if !bytes.Contains(page, []byte("dist/app.js")) {
			t.Fatalf("Mailpit's page does not load its app:\n%.500s", page)
		}
		for _, asset := range []string{"/dist/app.js", "/dist/app.css"} {
			if b := get(t, u.Mailpit+asset); len(b) < 10_000 {
				t.Errorf("%s is %d bytes: not the built UI", asset, len(b))
			}
		}
	})

	// The stack has now served orders (confirmed, cancelled, out of stock), sign-ups,
	// e-mails and catalogue reads, so the labelled series exist.
	t.Run("metrics", func(t *testing.T) {
		listeners := map[string]string{"gateway": u.GatewayOps}
		for _, name := range programs.Services() {
			listeners[name] = u.Internal[name]
		}
		checkDashboardsAndAlertsNameExportedMetrics(t, listeners)
	})

	// The limits were make run's: the sign-in limit (10 a minute per client IP) refuses
	// the 11th log-in within a minute at the latest, with a Retry-After. Different
	// e-mail addresses, so that the per-address limit is not the one met.
	client := &http.Client{Transport: testhttp.Transport, Timeout: 10 * time.Second}
	for i := range 11 {
		email := fmt.Sprintf("limit-probe-%s-%d@e2e.bazaar.test", hex.EncodeToString(b[:]), i)
		body, _ := json.Marshal(map[string]string{"email": email, "password": "not the password"})
		resp, err := client.Post(u.Gateway+"/api/v1/auth/login", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			if resp.Header.Get("Retry-After") == "" {
				t.Error("a 429 without Retry-After")
			}
			return
		}
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("log-in probe %d: %s; want 401 or 429", i, resp.Status)
		}
	}
	t.Error("11 log-ins in a row were all let through: the stack does not have make run's sign-in limit, so the e2e tests above did not run against it")
}

// checkDashboardsAndAlertsNameExportedMetrics scrapes every program's metrics
// listener (listeners: its base URL by program name) and checks that each metric the
// Grafana dashboards query and the alerts evaluate (deploy/observability) is exported
// by at least one of them, so that no panel stays empty and no alert waits on a series
// that never comes because of a misspelt or renamed metric. A histogram is exported
// as its _bucket, _sum and _count series, as queries name it.
func checkDashboardsAndAlertsNameExportedMetrics(t *testing.T, listeners map[string]string) {
	t.Helper()
	// Series Prometheus makes itself, one per scrape target: no program exports them.
	exported := map[string][]string{"up": {"prometheus"}}
	client := &http.Client{Transport: testhttp.Transport, Timeout: 10 * time.Second}
	for _, prog := range programs.All {
		base, ok := listeners[prog.Name]
		if !ok {
			t.Fatalf("no metrics listener for %s", prog.Name)
		}
		req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
		req.Header.Set("Accept", "text/plain")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("scrape %s: %v", prog.Name, err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("scrape %s at %s: %s, want 200 OK", prog.Name, base, resp.Status)
		}
		if err != nil {
			t.Fatalf("scrape %s at %s: %v", prog.Name, base, err)
		}
		for name, f := range families {
			names := []string{name}
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				names = []string{name + "_bucket", name + "_sum", name + "_count"}
			case dto.MetricType_SUMMARY:
				names = append(names, name+"_sum", name+"_count")
			}
			for _, n := range names {
				exported[n] = append(exported[n], prog.Name)
			}
		}
	}
	queries, err := observability.Queries()
	if err != nil {
		t.Fatal(err)
	}
	checked := map[string]bool{}
	for _, q := range queries {
		names, err := observability.MetricNames(q.Expr)
		if err != nil {
			t.Errorf("%s: %v", q.Where, err)
			continue
		}
		for _, name := range names {
			checked[name] = true
			if len(exported[name]) == 0 {
				t.Errorf("%s names %s, which no program of the running stack exports", q.Where, name)
			}
		}
	}
	if len(checked) < 20 {
		t.Errorf("only %d metric names found in the dashboards and alerts: %v", len(checked), checked)
	}
	t.Logf("%d metric names of %d dashboard queries and alerts, all exported", len(checked), len(queries))
}

// summary is the lines of go test -v output that say how each test ended, and the
// suite's own lines ("e2e: ..."), without the tests' logs.
func summary(out []byte) string {
	var b strings.Builder
	for line := range strings.Lines(string(out)) {
		trimmed := strings.TrimLeft(line, " ")
		if strings.HasPrefix(trimmed, "--- ") || strings.HasPrefix(line, "e2e:") || strings.HasPrefix(line, "ok ") ||
			strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "PASS") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// get is the body of a GET of url, failing the test unless it answers 200.
func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := testhttp.Client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d, want 200; body %s", url, resp.StatusCode, b)
	}
	return b
}

// browserTests is how many tests e2e/browser holds: a test file that stops being
// found (renamed, a syntax error node reports as one failure) shows as fewer.
const browserTests = 12

// summaryCount reads a count from node --test's summary ("ℹ pass 11").
func summaryCount(out []byte, name string) int {
	m := regexp.MustCompile(`(?m)^ℹ ` + name + ` (\d+)$`).FindSubmatch(out)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}
