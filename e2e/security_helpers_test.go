package e2e

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bazaar-shop/bazaar/internal/devstack"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/syncbuf"
	"github.com/bazaar-shop/bazaar/pkg/auth"
)

// The security suite's helpers: clients that come from an address of their own, a
// second gateway with the edge limit on, and the signing key as a thief would have it.

// needOwnStack skips t unless the shared stack is this run's: the tests that go round
// the gateway (to a service, its Redis or its database) need to know where those are.
func needOwnStack(t *testing.T) {
	t.Helper()
	if stackURLs.Gateway == "" {
		t.Skip("needs the stack's programs, Redis and databases: the stack at E2E_BASE_URL is not this run's")
	}
}

// origin is a client whose connections all come from one loopback address of its
// own (127.x.y.z; Linux answers the whole 127.0.0.0/8 on lo), so that the gateway's
// and users' per-address counts see it as a machine apart, as an attacker is. The
// rest of the suite comes from 127.0.0.1, and an origin exhausting its own address's
// limits leaves theirs alone.
type origin struct {
	addr netip.Addr
	hc   *http.Client
}

// newOrigin is an origin at a random loopback address, closed when t ends. It skips
// t when the gateway is not on loopback (an E2E_BASE_URL elsewhere): no address of
// this machine's choosing reaches it.
func newOrigin(t *testing.T) origin {
	t.Helper()
	u, err := url.Parse(baseURL)
	if err != nil {
		t.Fatal(err)
	}
	if host := u.Hostname(); host != "localhost" {
		if a, err := netip.ParseAddr(host); err != nil || !a.IsLoopback() {
			t.Skipf("the gateway %s is not on loopback: the test cannot come from addresses of its own", baseURL)
		}
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	// 127.1.0.0 to 127.254.255.254: never 127.0.0.1, the rest of the suite's.
	addr := netip.AddrFrom4([4]byte{127, 1 + b[0]%254, b[1], 1 + b[2]%254})
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: addr.AsSlice()}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return origin{addr: addr, hc: &http.Client{Timeout: 30 * time.Second, Transport: tr,
		// A sign-in's 303 is the answer under test, not a page to go to.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends r from the origin once, as the suite's do does (the gateway's base unless
// r.Base says otherwise, a JSON Content-Type with a body, the bearer token), but never
// sends it again after a 429: the 429 is what these tests look for.
func (o origin) do(t *testing.T, r request) response {
	t.Helper()
	req, err := newHTTPRequest(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	return o.send(t, req)
}

// send sends req from the origin as it is, and checks the X-Request-ID every answer has
// and agreement with docs/openapi.yaml (contract_test.go).
func (o origin) send(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := o.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL.Path, err)
	}
	if resp.Header.Get("X-Request-ID") == "" {
		t.Errorf("%s %s → %s has no X-Request-ID", req.Method, req.URL.Path, resp.Status)
	}
	if err := checkContract(req, resp, body); err != nil {
		t.Error(err)
	}
	return response{Response: resp, Body: body}
}

// newHTTPRequest is r as sendOnce makes it.
func newHTTPRequest(ctx context.Context, r request) (*http.Request, error) {
	base := r.Base
	if base == "" {
		base = baseURL
	}
	var body io.Reader
	switch b := r.Body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, base+r.Path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	return req, nil
}

// opsLogin is the sign-in form of the operations pages posted as a browser posts it
// (no Origin: a same-origin form post from an old browser, or a script).
func opsLogin(base, email, password string) request {
	return request{Base: base, Method: "POST", Path: "/ops/login",
		Body:   url.Values{"email": {email}, "password": {password}}.Encode(),
		Header: map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"}}
}

// opsPage checks that r is the operations sign-in page with status: HTML, no-store,
// its own Content-Security-Policy that lets nobody frame it. The sign-in form answers
// a browser, so its refusals are this page and not problem+json (opsauth.Login).
func opsPage(t *testing.T, r response, status int) {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("%s %s → %d; want %d; body: %.300s", r.Request.Method, r.Request.URL.Path, r.StatusCode, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("the sign-in page's Content-Type = %q; want text/html", ct)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("the sign-in page's Cache-Control = %q; want no-store", cc)
	}
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("the sign-in page's Content-Security-Policy = %q; want frame-ancestors 'none'", csp)
	}
	if !bytes.Contains(r.Body, []byte(`<form method="post" action="/ops/login">`)) {
		t.Errorf("the answer is not the sign-in form: %.300s", r.Body)
	}
}

// rateLimitedProblem checks that r is a 429 problem with a Retry-After of at least a
// second, and returns the wait.
func rateLimitedProblem(t *testing.T, r response) time.Duration {
	t.Helper()
	problem(t, r, http.StatusTooManyRequests)
	return positiveRetryAfter(t, r)
}

// positiveRetryAfter is r's Retry-After, which must be whole seconds, at least one.
func positiveRetryAfter(t *testing.T, r response) time.Duration {
	t.Helper()
	d, ok := retryAfter(r)
	if !ok || d < time.Second {
		t.Fatalf("%s %s → 429 with Retry-After %q; want whole seconds, at least 1",
			r.Request.Method, r.Request.URL.Path, r.Header.Get("Retry-After"))
	}
	return d
}

// surface is a route that takes a customer's access token and answers 200 for it.
type surface struct{ name, base, path string }

// tokenSurfaces are where a customer's access token is verified: the gateway, and,
// when the stack is this run's, each service's public port called directly round
// the gateway (each verifies again).
func tokenSurfaces() []surface {
	s := []surface{{"gateway", baseURL, "/api/v1/users/me"}}
	if stackURLs.Gateway != "" {
		s = append(s,
			surface{"users", stackURLs.Programs["users"], "/api/v1/users/me"},
			surface{"orders", stackURLs.Programs["orders"], "/api/v1/orders"},
			surface{"notifications", stackURLs.Programs["notifications"], "/api/v1/notifications"})
	}
	return s
}

// refusedWithin polls GET path with token at base until it is refused with 401, and
// fails t if that takes longer than within. A session's end reaches the verifiers
// through Redis, "within seconds" (docs/contract.md, "Authentication").
func refusedWithin(t *testing.T, base, path, token string, within time.Duration) {
	t.Helper()
	var last response
	for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
		last = do(t, request{Base: base, Method: "GET", Path: path, Token: token})
		if last.StatusCode == http.StatusUnauthorized {
			problem(t, last, http.StatusUnauthorized)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s%s with the ended session's access token → %d for %s; want 401", base, path, last.StatusCode, within)
		}
	}
}

// edgeGateway is a second gateway of the test's own, in front of the shared stack's
// services. The shared one runs with the edge limit off (the suite signs dozens of
// users in from 127.0.0.1); this one keeps the defaults but for what the test sets.
type edgeGateway struct {
	base string // its public port
	ops  string // its operations listener (OPS_ADDR)
}

// startEdgeGateway starts the gateway program the suite built, on free ports, with
// the shared stack's services and a Redis logical database of its own (so that its
// rate-limit counters, product cache and consumer group touch nothing of the shared
// stack's), and env on top. It is stopped when t ends and its output logged if t
// failed. Starting takes about a second: no second stack is needed.
func startEdgeGateway(t *testing.T, env map[string]string) edgeGateway {
	t.Helper()
	needOwnStack(t)
	root, err := devstack.FindRepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(stackOptions(root, "", nil).BinDir, "gateway")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the gateway the suite built: %v", err)
	}
	ports, release, err := devstack.HoldPorts(2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	g := edgeGateway{base: "http://127.0.0.1:" + strconv.Itoa(ports[0]), ops: "http://127.0.0.1:" + strconv.Itoa(ports[1])}
	users := stackURLs.Programs["users"]
	vars := map[string]string{
		"HTTP_ADDR":         "127.0.0.1:" + strconv.Itoa(ports[0]),
		"OPS_ADDR":          "127.0.0.1:" + strconv.Itoa(ports[1]),
		"REDIS_URL":         redistest.New(t),
		"USERS_URL":         users,
		"INVENTORY_URL":     stackURLs.Programs["inventory"],
		"PAYMENTS_URL":      stackURLs.Programs["payments"],
		"ORDERS_URL":        stackURLs.Programs["orders"],
		"NOTIFICATIONS_URL": stackURLs.Programs["notifications"],
		"JWKS_URL":          users + "/.well-known/jwks.json",
		"LOG_LEVEL":         "info",
		"CONSUMER_NAME":     "gateway-e2e-security-" + randomHex(4),
	}
	// The services' internal listeners, where the gateway's /health asks each for
	// its readiness.
	for name, u := range stackURLs.Internal {
		vars[strings.ToUpper(name)+"_INTERNAL_URL"] = u
	}
	for k, v := range env {
		vars[k] = v
	}
	var envList []string
	for k, v := range vars {
		envList = append(envList, k+"="+v)
	}
	logs := &syncbuf.Buffer{}
	cmd := exec.Command(bin)
	cmd.Env = envList
	cmd.Stdout, cmd.Stderr = logs, logs
	// Killed with this process should it die: Pdeathsig follows the thread that
	// forked, so that thread stays locked until the gateway has exited.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started, exited := make(chan error, 1), make(chan struct{})
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		t.Fatalf("starting the gateway: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("the edge gateway did not stop within 15s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("the edge gateway's output:\n%s", logs)
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		select {
		case <-exited:
			t.Fatalf("the edge gateway exited at start:\n%s", logs)
		default:
		}
		if resp, err := client.Get(g.base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return g
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the edge gateway was not ready within 30s:\n%s", logs)
		}
	}
}

// devstackKEK is the key-encryption key internal/devstack gives users as SIGNING_KEK
// (a fixed, local value: it is in the repository). If devstack's changes, unsealing
// below fails and says so.
const devstackKEK = "YmF6YWFyLWxvY2FsLWRldi1zaWduaW5nLWtlay0zMmI="

// stolenSigningKey is the users service's current token-signing key, taken the way an
// attacker who has stolen both a copy of the users database and the KEK would take
// it: it reads the newest row of signing_keys and opens its sealed seed. The
// unsealing re-implements services/users/internal/signing's KEK.Open (which e2e
// cannot import: Go's internal rule): byte 0 the format (1), then a 12-byte nonce,
// then AES-256-GCM ciphertext and tag, with "bazaar/users/signing-key/v1:" + kid as
// associated data. The kid must be the key's RFC 7638 thumbprint, or this is not the
// key (and the test would prove nothing).
func stolenSigningKey(t *testing.T) (kid string, key ed25519.PrivateKey) {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, sharedDBs.Users)
	if err != nil {
		t.Fatalf("connecting to the users database: %v", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var seed, sealed []byte
	err = conn.QueryRow(ctx, `SELECT kid, seed, sealed_seed FROM signing_keys ORDER BY created_at DESC, kid LIMIT 1`).
		Scan(&kid, &seed, &sealed)
	if err != nil {
		t.Fatalf("reading the signing key: %v", err)
	}
	if seed != nil {
		t.Errorf("signing key %s is stored in plain; the stack's users should seal it under SIGNING_KEK", kid)
	} else {
		if seed, err = unseal(devstackKEK, kid, sealed); err != nil {
			t.Fatalf("unsealing signing key %s with devstack's KEK: %v", kid, err)
		}
	}
	if len(seed) != ed25519.SeedSize {
		t.Fatalf("signing key %s: a seed of %d bytes", kid, len(seed))
	}
	key = ed25519.NewKeyFromSeed(seed)
	if got := auth.Thumbprint(key.Public().(ed25519.PublicKey)); got != kid {
		t.Fatalf("the unsealed key's thumbprint is %s; want its kid %s", got, kid)
	}
	return kid, key
}

// unseal opens a seed sealed by users' KEK.Seal (see stolenSigningKey).
func unseal(kekBase64, kid string, sealed []byte) ([]byte, error) {
	kek, err := base64.StdEncoding.DecodeString(kekBase64)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	n := gcm.NonceSize()
	if len(sealed) < 1+n+gcm.Overhead() || sealed[0] != 1 {
		return nil, errors.New("not a sealed seed of format 1")
	}
	return gcm.Open(nil, sealed[1:1+n], sealed[1+n:], []byte("bazaar/users/signing-key/v1:"+kid))
}

// jws signs header and claims as a compact JWS with EdDSA, whatever they say: the
// forger's tool. The header's alg is set to EdDSA.
func jws(key ed25519.PrivateKey, header, claims map[string]any) string {
	header["alg"] = "EdDSA"
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	b64 := base64.RawURLEncoding.EncodeToString
	input := b64(h) + "." + b64(c)
	return input + "." + b64(ed25519.Sign(key, []byte(input)))
}

// accessClaims are the claims of an access token as users issues them, for user id with
// role, issued at iat and expiring at exp (seconds since the epoch, as JWT has them).
func accessClaims(id, role string, iat, exp time.Time) map[string]any {
	jti, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	return map[string]any{
		"iss": auth.Issuer, "aud": []string{auth.Audience}, "sub": id, "role": role,
		"iat": iat.Unix(), "exp": exp.Unix(), "jti": fmt.Sprintf("%x", jti),
	}
}
