package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/gateway/internal/httpload"
	"github.com/bazaar-shop/bazaar/internal/benchdoc"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
)

// The benchmark's servers run in processes of their own, as they would in production
// and as nginx does: the test binary is started again with benchRoleEnv naming the
// part it plays, and TestMain plays it instead of running tests.
const (
	benchRoleEnv    = "GATEWAY_BENCH_ROLE" // "upstream", "bare-proxy" or "gateway"
	benchAddrEnv    = "GATEWAY_BENCH_ADDR" // where the upstream and the bare proxy listen
	benchProfileEnv = "GATEWAY_BENCH_PROFILE"
)

func TestMain(m *testing.M) {
	switch os.Getenv(benchRoleEnv) {
	case "upstream":
		serveBenchUpstream()
	case "gateway":
		os.Exit(runBenchGateway())
	case "bare-proxy":
		serveBareProxy()
	default:
		os.Exit(m.Run())
	}
}

// benchBody is the static upstream's answer: about 200 bytes of JSON, like a small
// resource of the API.
var benchBody = []byte(`{"id":"7d0f8c52-3f0e-4b7e-9a8e-2b1f6c3d4e5f","status":"confirmed",` +
	`"total":{"amount":4999,"currency":"EUR"},"items":[{"product_id":"a1b2c3d4","quantity":1}],` +
	`"created_at":"2026-12-01T10:00:00Z","updated_at":"2026-12-01T10:00:01Z"}` + "\n")

// serveBenchUpstream answers benchBody to every request on GATEWAY_BENCH_ADDR until
// killed.
func serveBenchUpstream() {
	ln, err := net.Listen("tcp", os.Getenv(benchAddrEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	length := strconv.Itoa(len(benchBody))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{length}
		_, _ = w.Write(benchBody)
	})}
	_ = srv.Serve(ln)
}

// serveBareProxy is Go's reverse proxy and nothing else, on GATEWAY_BENCH_ADDR in
// front of the upstream at GATEWAY_BENCH_UPSTREAM: the floor under any gateway built on net/http, for the
// table to show how much of the gateway's cost is the gateway's own. It reuses its
// copy buffers and keeps connections to the upstream alive, as a tuned proxy would.
func serveBareProxy() {
	target, err := url.Parse("http://" + os.Getenv("GATEWAY_BENCH_UPSTREAM"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", os.Getenv(benchAddrEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rp := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport:  &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 128, IdleConnTimeout: 90 * time.Second},
		BufferPool: bufferPool{},
	}
	_ = (&http.Server{Handler: rp}).Serve(ln)
}

// bufferPool lends ReverseProxy its copy buffers.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { return make([]byte, 32<<10) }}

func (bufferPool) Get() []byte  { return buffers.Get().([]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(b) } //nolint:staticcheck // a slice header is small; the array is what is reused

// runBenchGateway runs the gateway as main does, and with GATEWAY_BENCH_PROFILE set
// writes a CPU profile of its whole life and an allocation profile at its end there.
func runBenchGateway() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir := os.Getenv(benchProfileEnv)
	if dir != "" {
		f, err := os.Create(filepath.Join(dir, "cpu.pprof"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
			if a, err := os.Create(filepath.Join(dir, "allocs.pprof")); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(a, 0)
				a.Close()
			}
		}()
	}
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "gateway: %v\n", err)
		return 1
	}
	return 0
}

// benchSettings are the benchmark's knobs, from the environment so that `make bench`
// needs none: GATEWAY_BENCH_CONNS (64), GATEWAY_BENCH_DURATION (5s measured per run),
// GATEWAY_BENCH_WARMUP (1s), GATEWAY_BENCH_ROUNDS (3: each target measured that many
// times, interleaved, the median run reported), GATEWAY_BENCH_DOC (the file whose
// marked section gets the table; "off" for none), GATEWAY_BENCH_PROFILE (a directory
// for the gateway's CPU and allocation profiles), GATEWAY_BENCH_VARIANTS (more
// gateways to measure beside the default one, each with settings of its own: a
// semicolon-separated list of space-separated NAME=value, such as "GOGC=400;GOGC=800"
// for a GC setting measured side by side with the default on the same load).
type benchSettings struct {
	conns            int
	duration, warmup time.Duration
	rounds           int
	doc, profile     string
	variants         [][]string
}

func loadBenchSettings(b *testing.B) benchSettings {
	s := benchSettings{conns: 64, duration: 5 * time.Second, warmup: time.Second, rounds: 3,
		doc: filepath.Join("..", "docs", "benchmarks.md"), profile: os.Getenv(benchProfileEnv),
	}
	for _, v := range strings.Split(os.Getenv("GATEWAY_BENCH_VARIANTS"), ";") {
		if f := strings.Fields(v); len(f) > 0 {
			s.variants = append(s.variants, f)
		}
	}
	if v := os.Getenv("GATEWAY_BENCH_CONNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("GATEWAY_BENCH_CONNS=%q", v)
		}
		s.conns = n
	}
	if v := os.Getenv("GATEWAY_BENCH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("GATEWAY_BENCH_ROUNDS=%q", v)
		}
		s.rounds = n
	}
	for name, d := range map[string]*time.Duration{"GATEWAY_BENCH_DURATION": &s.duration, "GATEWAY_BENCH_WARMUP": &s.warmup} {
		if v := os.Getenv(name); v != "" {
			p, err := time.ParseDuration(v)
			if err != nil || p < 0 {
				b.Fatalf("%s=%q", name, v)
			}
			*d = p
		}
	}
	if v := os.Getenv("GATEWAY_BENCH_DOC"); v != "" {
		s.doc = v
	}
	return s
}

// BenchmarkGatewayVsNginx measures, on one static upstream and at one concurrency,
// the upstream asked directly, nginx as a plain reverse proxy, and the gateway on an
// authenticated route with everything it does by default (request ids, tracing
// without an exporter, access log, metrics, the per-address limit, a JWT verified
// with the users service's key set, the per-user rate limit, the proxy). The limits
// are set high enough that nothing is refused: what is measured is their cost.
// It prints req/s, p50 and p99 of each and the ratios to nginx, and writes them to
// docs/benchmarks.md. It skips when nginx is not installed (make bench installs it).
func BenchmarkGatewayVsNginx(b *testing.B) {
	if testing.Short() {
		b.Skip("starts servers and loads them for a minute; skipped by -short")
	}
	nginxBin, err := findNginx()
	if err != nil {
		b.Skipf("nginx cannot be had (%v); `make bench` installs Debian's package with apt-get", err)
	}
	set := loadBenchSettings(b)
	redisURL := redistest.New(b)

	upstream, upstreamPID := startBenchChild(b, "upstream", benchAddrEnv, nil)
	nginxAddr, nginxPID := startNginx(b, nginxBin, upstream)
	bare, barePID := startBenchChild(b, "bare-proxy", benchAddrEnv, []string{"GATEWAY_BENCH_UPSTREAM=" + upstream})

	// The users service's part: a key set the gateway trusts, and tokens signed with
	// its key, one user per connection.
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	kid := auth.Thumbprint(pub)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpjson.Write(w, http.StatusOK, auth.KeySet{Keys: []auth.JWK{auth.PublicJWK(kid, pub)}})
	}))
	defer jwks.Close()
	signer := auth.NewSigner(kid, key, time.Hour)

	up := "http://" + upstream
	const high = "1000000"
	env := []string{
		"OPS_ADDR=127.0.0.1:0", "REDIS_URL=" + redisURL,
		"USERS_URL=" + up, "INVENTORY_URL=" + up, "PAYMENTS_URL=" + up, "ORDERS_URL=" + up, "NOTIFICATIONS_URL=" + up,
		"JWKS_URL=" + jwks.URL,
		"RATE_EDGE_IP=" + high, "RATE_EDGE_IP_BURST=" + high, "RATE_USER=" + high, "RATE_USER_BURST=" + high,
	}
	if set.profile != "" {
		if err := os.MkdirAll(set.profile, 0o755); err != nil {
			b.Fatal(err)
		}
		env = append(env, benchProfileEnv+"="+set.profile)
	}
	gateway, gatewayPID := startBenchChild(b, "gateway", "HTTP_ADDR", env)

	const path = "/api/v1/orders"
	reqs := make([][]byte, set.conns)
	for i := range reqs {
		tok, err := signer.Sign(auth.Principal{UserID: uuid.New(), Role: auth.RoleCustomer, SessionID: uuid.NewString()})
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = []byte("GET " + path + " HTTP/1.1\r\nHost: bench\r\nUser-Agent: httpload\r\nAccept: application/json\r\n" +
			"Authorization: Bearer " + tok + "\r\n\r\n")
	}

	targets := []struct {
		name, addr string
		pid        int // whose CPU time is measured: the server's (nginx's workers included)
	}{
		{"upstream direct", upstream, upstreamPID},
		{"nginx " + nginxVersion(nginxBin), nginxAddr, nginxPID},
		{"gateway", gateway, gatewayPID},
		{"Go's httputil.ReverseProxy alone (reference)", bare, barePID},
	}
	for _, v := range set.variants {
		venv := append(slices.DeleteFunc(slices.Clone(env), func(e string) bool { return strings.HasPrefix(e, benchProfileEnv+"=") }), v...)
		addr, pid := startBenchChild(b, "gateway", "HTTP_ADDR", venv)
		targets = append(targets, struct {
			name, addr string
			pid        int
		}{"gateway (" + strings.Join(v, " ") + ")", addr, pid})
	}
	runs := make([][]benchRow, len(targets))
	for range set.rounds {
		for i, t := range targets {
			cpu := cpuOf(t.pid)
			res, err := httpload.Run(context.Background(), httpload.Options{
				Addr: t.addr, Requests: reqs, Conns: set.conns, Warmup: set.warmup, Duration: set.duration,
			})
			if err != nil {
				b.Fatalf("%s: %v", t.name, err)
			}
			if res.OK() != res.Requests || res.Errors > 0 {
				b.Fatalf("%s: statuses %v, %d broken connections (first: %v); first answer:\n%s",
					t.name, res.Statuses, res.Errors, res.FirstErr, res.Sample)
			}
			cpu = cpuOf(t.pid) - cpu
			runs[i] = append(runs[i], benchRow{name: t.name, res: res, cpu: cpu / time.Duration(res.All)})
		}
	}

	rows := make([]benchRow, len(targets))
	for i, t := range targets {
		rows[i] = median(runs[i])
		rows[i].peakRSS = peakRSS(t.pid)
	}
	nginx, gw := rows[1].res, rows[2].res
	table := benchTable(rows, nginx)
	b.Logf("%d connections, %s measured after %s warm-up, median of %d rounds:\n%s", set.conns, set.duration, set.warmup, set.rounds, table)
	b.ReportMetric(gw.RPS(), "gateway-req/s")
	b.ReportMetric(nginx.RPS(), "nginx-req/s")
	b.ReportMetric(gw.RPS()/nginx.RPS(), "gateway/nginx")
	b.ReportMetric(float64(gw.P99)/float64(nginx.P99), "p99-gateway/nginx")
	b.ReportMetric(float64(rows[2].cpu.Microseconds()), "gateway-CPU-µs/req")
	b.ReportMetric(0, "ns/op") // one whole run, not a per-op time

	if set.doc != "off" {
		section := fmt.Sprintf("`BenchmarkGatewayVsNginx`, %s: %d connections with keep-alive, %s measured after %s of warm-up, "+
			"median of %d interleaved rounds; %s; %s.\n\n%s",
			time.Now().UTC().Format("2006-01-02 15:04 MST"), set.conns, set.duration, set.warmup, set.rounds,
			benchdoc.Machine()+", load generator and servers on the same cores over loopback", runtime.Version(), table)
		if err := benchdoc.WriteSection(set.doc, "BenchmarkGatewayVsNginx", section); err != nil {
			b.Errorf("writing %s: %v", set.doc, err)
		}
	}
}

// benchRow is one run of one target.
type benchRow struct {
	name string
	res  httpload.Result
	cpu  time.Duration // the server's CPU time per request
	// peakRSS is the most memory the server's processes held at once (VmHWM), summed
	// over nginx's.
	peakRSS int64
}

// median is the run of median throughput.
func median(rs []benchRow) benchRow {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b benchRow) int { return a.res.Requests - b.res.Requests })
	return s[len(s)/2]
}

func benchTable(rows []benchRow, nginx httpload.Result) string {
	var sb strings.Builder
	sb.WriteString("| target | req/s | p50 | p99 | req/s ÷ nginx | p99 ÷ nginx | server CPU per request | server peak RSS |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&sb, "| %s | %.0f | %s | %s | %.2f | %.2f | %d µs | %d MiB |\n", r.name, r.res.RPS(),
			ms(r.res.P50), ms(r.res.P99), r.res.RPS()/nginx.RPS(), float64(r.res.P99)/float64(nginx.P99), r.cpu.Microseconds(), r.peakRSS>>20)
	}
	return sb.String()
}

// cpuOf is the CPU time (user and system) used so far by process pid and its
// children, which for nginx are its workers, read from /proc; 0 where there is none.
func cpuOf(pid int) time.Duration {
	total := procCPU(pid)
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if n, err := strconv.Atoi(d.Name()); err == nil && n != pid {
			if ppid, _ := procStat(n); ppid == pid {
				total += procCPU(n)
			}
		}
	}
	return total
}

// peakRSS is the peak resident memory of process pid and its children, in bytes.
func peakRSS(pid int) int64 {
	total := vmHWM(pid)
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if n, err := strconv.Atoi(d.Name()); err == nil && n != pid {
			if ppid, _ := procStat(n); ppid == pid {
				total += vmHWM(n)
			}
		}
	}
	return total
}

func vmHWM(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func procCPU(pid int) time.Duration {
	_, cpu := procStat(pid)
	return cpu
}

// procStat reads a process's parent and CPU time from /proc/<pid>/stat, whose fields
// after the command's closing parenthesis are state, ppid, … utime (12th), stime
// (13th), in clock ticks of 1/100 s (USER_HZ on Linux).
func procStat(pid int) (ppid int, cpu time.Duration) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, 0
	}
	ppid, _ = strconv.Atoi(f[1])
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return ppid, time.Duration(utime+stime) * 10 * time.Millisecond
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// startBenchChild starts the test binary again as role with env, listening on a free
// port given in the variable addrVar, waits until the port answers and stops the
// child when the benchmark (or test) ends. It returns the address and the child's
// process id. Its output goes to a file, as a server's log would.
func startBenchChild(b testing.TB, role, addrVar string, env []string) (string, int) {
	b.Helper()
	out, err := os.CreateTemp(b.TempDir(), role+"-*.log")
	if err != nil {
		b.Fatal(err)
	}
	addr := freeAddr(b)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append([]string{benchRoleEnv + "=" + role, "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), addrVar + "=" + addr}, env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		out.Close()
	})
	waitListening(b, role, addr, exited, func() []byte { log, _ := os.ReadFile(out.Name()); return log }, b.Fatalf)
	return addr, cmd.Process.Pid
}

// freeAddr is a loopback address with a port nothing listens on. The server it is
// for binds it next; nothing else on the machine asks for that port meanwhile.
func freeAddr(b testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitListening polls addr until it accepts a connection, and calls fail (b.Fatalf,
// or b.Skipf) when the process exits first (with what log says) or 30 seconds pass.
func waitListening(b testing.TB, name, addr string, exited chan error, log func() []byte, fail func(string, ...any)) {
	b.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			fail("%s exited before listening: %v\n%s", name, err, log())
		case <-time.After(20 * time.Millisecond):
		}
	}
	fail("%s did not listen on %s within 30s:\n%s", name, addr, log())
}

// findNginx is the nginx binary on PATH or where Debian puts it.
func findNginx() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx", nil
	}
	return "", fmt.Errorf("no nginx on PATH or in /usr/sbin")
}

func nginxVersion(bin string) string {
	out, _ := exec.Command(bin, "-v").CombinedOutput()
	if _, v, ok := strings.Cut(strings.TrimSpace(string(out)), "nginx/"); ok {
		return v
	}
	return ""
}

// nginxConf is nginx as a plain reverse proxy, the way one would put it in front of a
// service: two workers (one per core), keep-alive both to clients and to the
// upstream, no access log, every path it writes under the run's directory.
const nginxConf = `{{user}}worker_processes 2;
daemon off;
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path {{dir}}/body;
    proxy_temp_path {{dir}}/proxy;
    fastcgi_temp_path {{dir}}/fastcgi;
    uwsgi_temp_path {{dir}}/uwsgi;
    scgi_temp_path {{dir}}/scgi;
    keepalive_requests 1000000;
    upstream app {
        server {{upstream}};
        keepalive 128;
    }
    server {
        listen {{listen}};
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`

// startNginx starts nginx in front of upstream on a free port, stopped when the
// benchmark ends, and returns its address and its master process's id.
func startNginx(b *testing.B, bin, upstream string) (string, int) {
	b.Helper()
	dir := b.TempDir()
	addr := freeAddr(b)
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n" // workers as root too, so that they can write to dir
	}
	conf := strings.NewReplacer("{{user}}", user, "{{dir}}", dir, "{{upstream}}", upstream, "{{listen}}", addr).Replace(nginxConf)
	confFile := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", confFile)
	out, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		b.Skipf("nginx cannot be started: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT) // nginx's graceful stop
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		out.Close()
	})
	// nginx that will not start is nginx that cannot be had here: a skip, like none.
	waitListening(b, "nginx", addr, exited, func() []byte { log, _ := os.ReadFile(filepath.Join(dir, "error.log")); return log }, b.Skipf)
	return addr, cmd.Process.Pid
}
