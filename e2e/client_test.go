package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
)

// client is what every test talks to the gateway with; no test reuses another's state.
// Its transport checks each answer from a gateway against docs/openapi.yaml
// (contractTransport), unless sendOnce does with the answer in hand.
var client = &http.Client{Timeout: 30 * time.Second, Transport: contractTransport{next: testhttp.Transport}}

// retryUntil bounds how long send waits out 429s: the test binary's deadline less a
// margin, so that a test still refused then fails with the 429 rather than panics
// with a time-out. Zero (no -timeout) is no bound. Set by TestMain.
var retryUntil time.Time

// rateLimited counts the answers that were 429 and were sent again.
var rateLimited atomic.Int64

// signInTurns holds one turn per gateway for log-ins and sign-ups, which the gateway
// limits hardest (make run's default: 10 a minute per client IP, 5 per e-mail).
// Taking turns paces them: one request at a time, and one that is refused waits out
// its Retry-After before the next is sent, instead of every waiting test trying at
// the same moment and all but one being refused again.
var signInTurns sync.Map // gateway base URL → chan struct{} (capacity 1)

func signInTurn(base string) chan struct{} {
	c, _ := signInTurns.LoadOrStore(base, make(chan struct{}, 1))
	return c.(chan struct{})
}

// isSignIn reports whether r is one of the requests the gateway's SignIn limit counts.
func isSignIn(r request) bool {
	return r.Method == http.MethodPost && (r.Path == "/api/v1/auth/login" || r.Path == "/api/v1/auth/register")
}

// setup marks t parallel and skips it when there is no stack (-short).
func setup(t *testing.T) {
	t.Helper()
	t.Parallel()
	if baseURL == "" {
		t.Skip("no stack: -short, and E2E_BASE_URL is not set")
	}
}

// response is an HTTP response with its body read.
type response struct {
	*http.Response
	Body []byte
}

// request is what do sends: Body is sent as is when it is a string or []byte, and as
// JSON otherwise.
type request struct {
	Method, Path string
	Body         any
	Token        string            // a bearer token
	Header       map[string]string // more headers
	Base         string            // the gateway to send it to; "" is the shared stack's
}

// do sends r to the gateway and checks what every response must have: an X-Request-ID,
// and agreement with docs/openapi.yaml (contract_test.go), whose breach fails t but
// still returns the answer.
func do(t *testing.T, r request) response {
	t.Helper()
	resp, err := send(t.Context(), r)
	if ce := (*contractError)(nil); errors.As(err, &ce) {
		t.Error(ce)
	} else if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("X-Request-ID") == "" {
		t.Errorf("%s %s → %s has no X-Request-ID", r.Method, r.Path, resp.Status)
	}
	return resp
}

// send is do for any goroutine: it returns what went wrong instead of failing a test.
// An answer that breaks docs/openapi.yaml is returned with a *contractError.
//
// A 429 is the gateway's rate limit, against a stack with its default limits (such as
// make run's): send waits as its Retry-After says and sends the request again, for as
// long as ctx and retryUntil allow; then it returns the last 429. Sending again is
// safe for every method: a 429 is answered before the request reaches a service.
func send(ctx context.Context, r request) (response, error) {
	base := r.Base
	if base == "" {
		base = baseURL
	}
	if isSignIn(r) {
		turn := signInTurn(base)
		select {
		case turn <- struct{}{}:
		case <-ctx.Done():
			return response{}, fmt.Errorf("%s %s: waiting for a turn to sign in: %w", r.Method, r.Path, ctx.Err())
		}
		defer func() { <-turn }()
	}
	for {
		resp, err := sendOnce(ctx, base, r)
		if err != nil || resp.StatusCode != http.StatusTooManyRequests {
			return resp, err
		}
		wait, ok := retryAfter(resp)
		if !ok || !mayWait(ctx, wait) {
			return resp, nil // the caller sees the 429 and says so
		}
		rateLimited.Add(1)
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return resp, nil
		}
	}
}

// retryAfter is a 429's Retry-After in seconds (the only form the gateway sends).
func retryAfter(r response) (time.Duration, bool) {
	n, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || n < 0 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// mayWait reports whether waiting d still leaves time to send again before ctx's
// deadline and retryUntil.
func mayWait(ctx context.Context, d time.Duration) bool {
	until := time.Now().Add(d)
	if dl, ok := ctx.Deadline(); ok && until.After(dl) {
		return false
	}
	return retryUntil.IsZero() || until.Before(retryUntil)
}

// sendOnce sends r to the gateway at base once.
func sendOnce(ctx context.Context, base string, r request) (response, error) {
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
			return response{}, err
		}
		body = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(checkedByCaller(ctx), r.Method, base+r.Path, body)
	if err != nil {
		return response{}, err
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
	resp, err := client.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", r.Method, r.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: reading the body: %w", r.Method, r.Path, err)
	}
	return response{Response: resp, Body: b}, checkContract(resp.Request, resp, b)
}

// decode reads r's JSON body into v after checking the status.
func decode(t *testing.T, r response, status int, v any) {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("%s %s → %d; want %d; body: %s", r.Request.Method, r.Request.URL.Path, r.StatusCode, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q; want application/json", ct)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.Body, err)
	}
}

// problemDoc is an RFC 9457 problem as the API renders it.
type problemDoc struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Instance  string `json:"instance"`
	RequestID string `json:"request_id"`
	Errors    []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
}

// fields lists the fields the problem names.
func (p problemDoc) fields() []string {
	var f []string
	for _, e := range p.Errors {
		f = append(f, e.Field)
	}
	return f
}

// problem checks that r is a problem+json with the given status, whose members agree
// with the request and the response headers, and returns it.
func problem(t *testing.T, r response, status int) problemDoc {
	t.Helper()
	path := r.Request.URL.Path
	if r.StatusCode != status {
		t.Fatalf("%s %s → %d; want %d; body: %.500s", r.Request.Method, path, r.StatusCode, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("%s %s: Content-Type = %q; want application/problem+json", r.Request.Method, path, ct)
	}
	var p problemDoc
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Fatalf("%s %s: problem %s: %v", r.Request.Method, path, r.Body, err)
	}
	if p.Type == "" || p.Title == "" || p.Status != status {
		t.Errorf("problem = %+v; want a type, a title and status %d", p, status)
	}
	if p.Instance != path {
		t.Errorf("problem instance = %q; want %q", p.Instance, path)
	}
	if id := r.Header.Get("X-Request-ID"); p.RequestID != id {
		t.Errorf("problem request_id = %q; want the X-Request-ID %q", p.RequestID, id)
	}
	return p
}

var nonWord = regexp.MustCompile(`[^a-z0-9]+`)

// newEmail is an address no other test (or earlier run against the same stack) uses.
func newEmail(t *testing.T) string {
	name := nonWord.ReplaceAllString(strings.ToLower(t.Name()), "-")
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	return strings.Trim(name, "-") + "-" + randomHex(4) + "@e2e.bazaar.test"
}

// userDoc is a user as /users/me and register return it.
type userDoc struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

// tokensDoc is the answer to login and refresh.
type tokensDoc struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

func register(t *testing.T, email, password, name string) userDoc {
	t.Helper()
	var u userDoc
	decode(t, do(t, request{Method: "POST", Path: "/api/v1/auth/register",
		Body: map[string]string{"email": email, "password": password, "name": name}}), http.StatusCreated, &u)
	return u
}

func login(t *testing.T, email, password string) tokensDoc {
	t.Helper()
	return loggedIn(t, do(t, loginRequest(email, password)))
}

func loginRequest(email, password string) request {
	return request{Method: "POST", Path: "/api/v1/auth/login", Body: map[string]string{"email": email, "password": password}}
}

// loggedIn checks that r is a successful log-in and returns its tokens.
func loggedIn(t *testing.T, r response) tokensDoc {
	t.Helper()
	var tok tokensDoc
	decode(t, r, http.StatusOK, &tok)
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.TokenType != "Bearer" || tok.ExpiresIn <= 0 {
		t.Fatalf("login answered %+v; want both tokens, type Bearer and a positive expires_in", tok)
	}
	return tok
}

func me(t *testing.T, token string) userDoc {
	t.Helper()
	var u userDoc
	decode(t, do(t, request{Method: "GET", Path: "/api/v1/users/me", Token: token}), http.StatusOK, &u)
	return u
}
