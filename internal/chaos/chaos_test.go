package chaos_test

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/chaos"
	"github.com/bazaar-shop/bazaar/internal/devstack"
)

// The short chaos run of make test: about two minutes of orders at 12 a second
// through every fault of the plan once, then the stack is judged. It fails on any
// violation, on a program that died on its own, on a fault not carried out, on a stack
// that did not come to rest within the (generous) settle time, and on a run too small
// to mean much.
func TestAShortChaosRunLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own Postgres, Redis and stack and runs for minutes; skipped by -short")
	}
	root, err := devstack.FindRepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	stackLog, err := os.Create(filepath.Join(t.TempDir(), "stack.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer stackLog.Close()

	const budget = 10 * time.Second
	res, err := chaos.Run(t.Context(), chaos.Config{
		RepoDir:      root,
		Load:         130 * time.Second,
		Rate:         12,
		ChargeBudget: budget,
		Log:          slog.New(slog.NewTextHandler(t.Output(), nil)),
		StackOutput:  stackLog,
	})
	if err != nil {
		keepLog(t, stackLog)
		t.Fatal(err)
	}
	var table bytes.Buffer
	_ = res.WriteTable(&table, 50)
	t.Logf("\n%s", table.String())

	if res.Report.Orders < 1000 {
		t.Errorf("the run made %d orders; want at least 1 000", res.Report.Orders)
	}
	seen := map[chaos.Kind]int{}
	for _, f := range res.Faults {
		if !f.Skipped && f.Err == "" {
			seen[f.Kind]++
		}
		if f.Kind == chaos.KindDown && f.For <= budget {
			t.Errorf("%s lasted %s, not longer than CHARGE_BUDGET %s", f.Fault, f.For, budget)
		}
	}
	for _, k := range []chaos.Kind{chaos.KindKill, chaos.KindDown, chaos.KindRedisRestart, chaos.KindPostgresRestart,
		chaos.KindCut, chaos.KindSlow, chaos.KindSMTPDown, chaos.KindPoison} {
		if seen[k] == 0 {
			t.Errorf("no %s fault was carried out", k)
		}
	}
	killed := map[string]bool{}
	for _, f := range res.Faults {
		if f.Kind == chaos.KindKill && f.Err == "" && !f.Skipped {
			killed[f.Target] = true
		}
	}
	for _, p := range []string{"users", "inventory", "payments", "orders", "notifications", "gateway"} {
		if !killed[p] {
			t.Errorf("%s was never killed and restarted", p)
		}
	}
	for _, p := range res.Problems() {
		t.Error(p)
	}
	if t.Failed() {
		keepLog(t, stackLog)
	}
}

// keepLog copies the stack's output out of the test's temporary directory, which is
// removed, and says where it is and how it ends.
func keepLog(t *testing.T, f *os.File) {
	t.Helper()
	kept := filepath.Join(os.TempDir(), "chaos-test-"+time.Now().Format("20060102-150405")+".log")
	src, err := os.Open(f.Name())
	if err != nil {
		t.Logf("the stack's output is lost: %v", err)
		return
	}
	defer src.Close()
	dst, err := os.Create(kept)
	if err != nil {
		t.Logf("the stack's output is lost: %v", err)
		return
	}
	defer dst.Close()
	if _, err := io.Copy(dst, src); err != nil {
		t.Logf("copying the stack's output: %v", err)
	}
	b, _ := os.ReadFile(kept)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	t.Logf("the stack's output is in %s; its last lines:\n%s", kept, strings.Join(lines[max(0, len(lines)-40):], "\n"))
}
