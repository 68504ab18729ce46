package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bazaar-shop/bazaar/internal/devstack"
	"github.com/bazaar-shop/bazaar/internal/invariants"
	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/syncbuf"
)

// TestLoadOnARealStack starts the whole system (as the e2e suite does: free ports, its
// own databases and Redis database) with the gateway's default rate limits, runs 50
// orders through it, and checks the summary against the orders database and the
// saga's invariants.
func TestLoadOnARealStack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack; skipped by -short")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	redisURL := redistest.New(t)
	root, err := devstack.FindRepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	logs := &syncbuf.Buffer{}
	stack, err := devstack.Start(ctx, devstack.Options{
		RepoDir:             root,
		BinDir:              filepath.Join(root, "bin", "loadgen-test"),
		MailpitBin:          devstack.DefaultMailpitBin(filepath.Join(root, "bin")),
		AdminDatabaseURL:    pgtest.AdminURL(),
		AdminDatabaseURLVar: "TEST_DATABASE_URL",
		RedisURL:            redisURL,
		RedisURLVar:         "TEST_REDIS_URL",
		DatabasePrefix:      "bazaar_loadgen_" + hex.EncodeToString(suffix) + "_",
		DropDatabases:       true,
		Output:              logs,
		ReadyTimeout:        3 * time.Minute,
		// The gateway keeps its default rate limits: the run must live with them. A
		// saga left pending by a busy machine is finished within a second or so.
		ProgramEnv: map[string]map[string]string{"orders": {"RECOVER_EVERY": "1s"}},
	})
	if err != nil {
		t.Fatalf("the stack did not start: %v\n\nits output:\n%s", err, logs)
	}
	t.Cleanup(func() {
		if err := stack.Stop(context.Background()); err != nil {
			t.Errorf("stopping the stack: %v", err)
		}
		if t.Failed() {
			t.Logf("the stack's output:\n%s", logs)
		}
	})

	if a := stack.URLs().Admin; a.Email != DefaultAdminEmail || a.Password != DefaultAdminPassword {
		t.Errorf("the stack's admin is %s / %s; DefaultAdminEmail and DefaultAdminPassword want updating", a.Email, a.Password)
	}
	cfg := DefaultConfig()
	cfg.BaseURL = stack.URLs().Gateway
	cfg.Rate, cfg.Orders, cfg.Duration = 10, 50, 0
	cfg.Accounts = 3
	cfg.TokenCache = filepath.Join(t.TempDir(), "tokens.json")
	cfg.Replay, cfg.Cancel, cfg.Stream = 0.2, 0.2, 0.3
	cfg.Payments = PaymentMix{{PaymentVisa, 70}, {PaymentDeclined, 15}, {PaymentInsufficient, 15}}
	cfg.SettleTimeout = 2 * time.Minute
	s, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	_ = WriteTable(&table, s)
	t.Logf("summary:\n%s", table.String())
	if err := stack.Err(); err != nil {
		t.Fatalf("the stack failed during the run: %v", err)
	}

	if err := s.Consistent(); err != nil {
		t.Fatal(err)
	}
	o := s.Outcomes
	if s.Orders != 50 || s.Created != 50 || o.Terminal() != 50 || o.Pending != 0 || o.FailedTotal() != 0 {
		t.Fatalf("orders %d, created %d, outcomes %+v; want all 50 created and confirmed or cancelled", s.Orders, s.Created, o)
	}
	if len(s.ReplayMismatches) != 0 {
		t.Errorf("replays that were not: %v", s.ReplayMismatches)
	}
	if s.Errors[ErrServer]+s.Errors[ErrTimeout]+s.Errors[ErrNetwork]+s.Errors[ErrProtocol]+s.Errors[ErrRateLimited] != 0 {
		t.Errorf("errors %v on a healthy stack", s.Errors)
	}

	// The orders database agrees, order by order, and the saga's invariants hold.
	dbs := invariants.FromStack(stack.URLs().Databases)
	invariants.WaitSettled(t, dbs, time.Minute)
	confirmed, cancelled, ids := ordersInDatabase(ctx, t, dbs.Orders)
	if !slices.Equal(ids, slices.Sorted(slices.Values(s.OrderIDs))) {
		t.Errorf("the database's orders %v\n are not the summary's %v", ids, s.OrderIDs)
	}
	if confirmed != o.Confirmed || !mapsEqual(cancelled, o.Cancelled) {
		t.Errorf("the database: %d confirmed, cancelled %v; the summary: %d, %v", confirmed, cancelled, o.Confirmed, o.Cancelled)
	}
	invariants.Check(t, dbs)
}

func ordersInDatabase(ctx context.Context, t *testing.T, url string) (confirmed int, cancelled map[string]int, ids []string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT id::text, status, COALESCE(cancel_reason, '') FROM orders ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	cancelled = map[string]int{}
	var id, status, reason string
	_, err = pgx.ForEachRow(rows, []any{&id, &status, &reason}, func() error {
		ids = append(ids, id)
		switch status {
		case "confirmed":
			confirmed++
		case "cancelled":
			cancelled[reason]++
		default:
			t.Errorf("order %s is %s", id, status)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return confirmed, cancelled, ids
}
