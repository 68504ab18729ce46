package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
)

// BenchmarkPlaceOrder measures POST /api/v1/orders through the gateway on the shared
// stack: each order runs the whole saga inline (quote, reserve, charge, commit) and is
// answered 201 confirmed. At each concurrency, every worker is its own customer. Besides
// orders/s and latency it reports the commits the three saga databases made per second
// and per order (from pg_stat_database), to set beside BenchmarkPgbench on the same
// Postgres. Run with `-run '^$' -bench PlaceOrder -benchtime 400x`; with E2E_BENCH_PROFILE=dir
// (and -benchtime 1000x) it also writes a CPU profile of every service under the
// concurrency-16 load there.
func BenchmarkPlaceOrder(b *testing.B) {
	if baseURL == "" || sharedDBs.Orders == "" {
		b.Skip("needs the stack this run starts (not -short, not E2E_BASE_URL)")
	}
	ctx := context.Background()
	adminTok := benchLogin(b, admin.Email, admin.Password)
	var product productDoc
	benchDo(b, request{Method: "POST", Path: "/api/v1/products", Token: adminTok, Body: map[string]any{
		"sku": "BENCH-" + strings.ToUpper(randomHex(6)), "name": "Benchmark widget", "description": "",
		"price_cents": 199, "currency": "USD", "stock": 1_000_000_000}}, http.StatusCreated, &product)

	for _, workers := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("concurrency-%d", workers), func(b *testing.B) {
			tokens := make([]string, workers)
			for i := range tokens {
				email := "bench-" + randomHex(6) + "@e2e.bazaar.test"
				benchDo(b, request{Method: "POST", Path: "/api/v1/auth/register",
					Body: map[string]string{"email": email, "password": "correct horse battery", "name": "Bench"}}, http.StatusCreated, nil)
				tokens[i] = benchLogin(b, email, "correct horse battery")
			}
			body := map[string]any{"items": []map[string]any{{"product_id": product.ID, "quantity": 1}}, "payment_method": "pm_card_visa"}
			commitsBefore := sagaCommits(b)
			if dir := os.Getenv("E2E_BENCH_PROFILE"); dir != "" && workers == 16 {
				defer profileServices(b, dir, 10*time.Second)()
			}
			var next atomic.Int64
			lat := make([][]time.Duration, workers)
			var failed atomic.Value
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						t0 := time.Now()
						r, err := send(ctx, request{Method: "POST", Path: "/api/v1/orders", Token: tokens[w], Body: body})
						var o orderDoc
						if err == nil && r.StatusCode == http.StatusCreated {
							err = json.Unmarshal(r.Body, &o)
						}
						if err != nil || r.StatusCode != http.StatusCreated || o.Status != "confirmed" {
							failed.Store(fmt.Sprintf("order: %v %d %s", err, r.StatusCode, r.Body))
							return
						}
						lat[w] = append(lat[w], time.Since(t0))
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if f := failed.Load(); f != nil {
				b.Fatal(f)
			}
			// pg_stat_database is flushed by each backend at most once a second.
			time.Sleep(1500 * time.Millisecond)
			commits := sagaCommits(b) - commitsBefore
			all := slices.Concat(lat...)
			slices.Sort(all)
			q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
			b.ReportMetric(float64(len(all))/elapsed.Seconds(), "orders/s")
			b.ReportMetric(q(0.50), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			b.ReportMetric(float64(commits)/elapsed.Seconds(), "db-commits/s")
			b.ReportMetric(float64(commits)/float64(len(all)), "commits/order")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// profileServices takes a CPU profile of every service instance of the stack for d,
// from its internal listener's /debug/pprof/profile (PPROF is on in the stack), into
// dir/<instance>.cpu.pprof; the returned func waits for them. For the profiles to
// cover load alone, the phase must last at least d: -benchtime 1000x at about 100
// orders a second. The gateway's own benchmark profiles the gateway.
func profileServices(b *testing.B, dir string, d time.Duration) (wait func()) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for name, base := range stackURLs.Internal {
		wg.Go(func() {
			client := &http.Client{Transport: testhttp.Transport, Timeout: d + 10*time.Second}
			resp, err := client.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, int(d.Seconds())))
			if err != nil {
				b.Errorf("profile of %s: %v", name, err)
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				b.Errorf("profile of %s: %v", name, err)
				return
			}
			if resp.StatusCode != http.StatusOK {
				b.Errorf("profile of %s: %d; want 200", name, resp.StatusCode)
				return
			}
			if err := os.WriteFile(filepath.Join(dir, name+".cpu.pprof"), body, 0o644); err != nil {
				b.Error(err)
			}
		})
	}
	return wg.Wait
}

// BenchmarkPgbench is the yardstick: pgbench's TPC-B-like transaction (five statements,
// one commit) with 4 clients for 10 s on the same Postgres, in a scratch database.
func BenchmarkPgbench(b *testing.B) {
	if testing.Short() {
		b.Skip("needs Postgres")
	}
	if _, err := exec.LookPath("pgbench"); err != nil {
		b.Skip("pgbench is not installed")
	}
	dbURL := pgtest.NewDatabase(b)
	if out, err := exec.Command("pgbench", "-i", "-q", "-s", "4", dbURL).CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	// One pgbench run of fixed length, whatever b.N: -benchtime 400x, given for
	// BenchmarkPlaceOrder, would otherwise run it 400 times over.
	b.ResetTimer()
	out, err := exec.Command("pgbench", "-n", "-c", "4", "-j", "2", "-T", "10", "-M", "prepared", dbURL).CombinedOutput()
	if err != nil {
		b.Fatalf("pgbench: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`tps = ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		b.Fatalf("no tps in:\n%s", out)
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	b.ReportMetric(tps, "commits/s")
	b.ReportMetric(0, "ns/op")
}

// sagaCommits is the commit count of the orders, inventory and payments databases.
func sagaCommits(b *testing.B) int64 {
	b.Helper()
	var names []string
	for _, u := range []string{sharedDBs.Orders, sharedDBs.Inventory, sharedDBs.Payments} {
		p, err := url.Parse(u)
		if err != nil {
			b.Fatal(err)
		}
		names = append(names, strings.TrimPrefix(p.Path, "/"))
	}
	conn, err := pgx.Connect(context.Background(), pgtest.AdminURL())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int64
	if err := conn.QueryRow(context.Background(),
		`SELECT coalesce(sum(xact_commit), 0) FROM pg_stat_database WHERE datname = ANY($1)`, names).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

func benchDo(b *testing.B, r request, want int, v any) {
	b.Helper()
	resp, err := send(context.Background(), r)
	if err == nil && resp.StatusCode != want {
		err = errors.New(string(resp.Body))
	}
	if err == nil && v != nil {
		err = json.Unmarshal(resp.Body, v)
	}
	if err != nil {
		b.Fatalf("%s %s: %d %v", r.Method, r.Path, resp.StatusCode, err)
	}
}

func benchLogin(b *testing.B, email, password string) string {
	b.Helper()
	var tok tokensDoc
	benchDo(b, request{Method: "POST", Path: "/api/v1/auth/login", Body: map[string]string{"email": email, "password": password}}, http.StatusOK, &tok)
	return tok.AccessToken
}
