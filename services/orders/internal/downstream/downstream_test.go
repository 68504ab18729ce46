package downstream_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/bazaar-shop/bazaar/internal/testkit/closedport"
	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/balancer"
	"github.com/bazaar-shop/bazaar/pkg/logging"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/services/orders/internal/downstream"
)

// server answers every call with h and counts the calls; its /readyz (asked by the
// balancer about an ejected instance) answers 200 and is not counted.
func server(t *testing.T, h http.HandlerFunc) (string, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			return
		}
		n.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &n
}

func answer(err error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { problem.Write(w, r, nil, err) }
}

// audienceTokens are credentials that name their audience, so that a test can see
// which one a call carried.
type audienceTokens struct{}

func (audienceTokens) Token(audience string) (string, error) {
	return "service-token-for-" + audience, nil
}

func client(t *testing.T, url string, edit func(*downstream.Config)) *downstream.Client {
	t.Helper()
	cfg := downstream.Config{Name: "payments", BaseURL: url, Timeout: 200 * time.Millisecond,
		BackoffInitial: time.Millisecond, BackoffMax: 5 * time.Millisecond,
		Balancing: balancer.Settings{BreakerCooldown: time.Hour}, Credentials: audienceTokens{}}
	if edit != nil {
		edit(&cfg)
	}
	c, err := downstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

var post = downstream.Call{Method: http.MethodPost, Path: "/internal/charges", Body: map[string]int{"amount_cents": 1}}

func TestTransientFailuresAreRetriedAtMostThreeTimes(t *testing.T) {
	t.Parallel()
	for _, status := range []apperr.Code{apperr.Unavailable, apperr.Internal, apperr.BadGateway, apperr.Timeout, apperr.RateLimited} {
		t.Run(string(status), func(t *testing.T) {
			t.Parallel()
			url, calls := server(t, answer(apperr.E(status, "broken")))
			err := client(t, url, nil).Do(context.Background(), post, nil)
			if calls.Load() != 3 {
				t.Errorf("%d attempts, want 3", calls.Load())
			}
			if c := apperr.CodeOf(err); c != apperr.Unavailable && c != apperr.Timeout {
				t.Errorf("err = %v: code %s, want %s or %s", err, c, apperr.Unavailable, apperr.Timeout)
			}
			if err == nil || !strings.Contains(err.Error(), "payments") {
				t.Errorf("err = %v, want it to name payments", err)
			}
		})
	}
}

func TestBusinessAnswersAreNeitherRetriedNorBreakerFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  *apperr.Error
	}{
		{"409 out_of_stock", apperr.R(apperr.Conflict, "out_of_stock", "not enough stock")},
		{"409 reservation_released", apperr.R(apperr.Conflict, "reservation_released", "expired")},
		{"402 insufficient_funds", apperr.R(apperr.PaymentRequired, "insufficient_funds", "declined")},
		{"422", &apperr.Error{Code: apperr.Invalid, Message: "bad", Fields: []apperr.FieldError{{Field: "items[0].product_id", Message: "no such product"}}}},
		{"404", apperr.E(apperr.NotFound, "none")},
		{"400", apperr.E(apperr.Malformed, "bad json")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			url, calls := server(t, answer(c.err))
			cl := client(t, url, func(cfg *downstream.Config) { cfg.Balancing.BreakerFailures, cfg.Balancing.EjectAfter = 2, 2 })
			for range 5 {
				err := cl.Do(context.Background(), post, nil)
				// The service's code, reason and field errors come back.
				if !errors.Is(err, apperr.R(c.err.Code, c.err.Reason, "")) || apperr.ReasonOf(err) != c.err.Reason {
					t.Fatalf("err = %v (reason %q), want %s/%s", err, apperr.ReasonOf(err), c.err.Code, c.err.Reason)
				}
				var ae *apperr.Error
				if errors.As(err, &ae); len(ae.Fields) != len(c.err.Fields) {
					t.Errorf("fields %v, want %v", ae.Fields, c.err.Fields)
				}
			}
			if n := calls.Load(); n != 5 {
				t.Errorf("%d calls for 5, want 5 (no retries)", n)
			}
			if st := cl.BreakerState(); st != "closed" {
				t.Errorf("breaker %s, want closed", st)
			}
		})
	}
}

func TestBreakerOpensAfterConsecutiveTransientFailuresAndFailsFast(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	down.Store(true)
	url, calls := server(t, func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			problem.Write(w, r, nil, apperr.E(apperr.Unavailable, "down"))
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{}`))
	})
	reg := prometheus.NewRegistry()
	cl := client(t, url, func(cfg *downstream.Config) {
		// Never ejected: this is the service's breaker alone.
		cfg.Balancing = balancer.Settings{EjectAfter: 1000, BreakerFailures: 5, BreakerCooldown: 300 * time.Millisecond}
		cfg.Registerer = reg
	})
	gauge := func() float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "circuit_breaker_state" {
				if len(mf.GetMetric()) != 1 {
					t.Fatalf("%d circuit_breaker_state series", len(mf.GetMetric()))
				}
				m := mf.GetMetric()[0]
				if l := m.GetLabel(); len(l) != 1 {
					t.Errorf("labels %v, want one", l)
				} else if l[0].GetValue() != "payments" {
					t.Errorf("label %s=%q, want payments", l[0].GetName(), l[0].GetValue())
				}
				return m.GetGauge().GetValue()
			}
		}
		return -1
	}
	if gauge() != 0 {
		t.Error("a new breaker is not closed")
	}
	_ = cl.Do(context.Background(), post, nil) // 3 attempts
	_ = cl.Do(context.Background(), post, nil) // 2 more: 5 in a row, open
	if n := calls.Load(); n != 5 {
		t.Fatalf("%d calls, want 5", n)
	}
	if st := cl.BreakerState(); st != "open" {
		t.Fatalf("breaker %s, want open", st)
	}
	if g := gauge(); g != 2 {
		t.Fatalf("circuit_breaker_state %v, want 2 (open)", g)
	}
	start := time.Now()
	err := cl.Do(context.Background(), post, nil)
	if n := calls.Load(); n != 5 {
		t.Errorf("with the breaker open: %d calls in all, want still 5 (no call)", n)
	}
	if code := apperr.CodeOf(err); code != apperr.Unavailable {
		t.Errorf("with the breaker open: %v with code %s, want %s", err, code, apperr.Unavailable)
	}
	if took := time.Since(start); took > 150*time.Millisecond {
		t.Errorf("with the breaker open: the call took %s, want at most 150ms", took)
	}
	if !strings.Contains(err.Error(), "circuit breaker") {
		t.Errorf("err %v does not say the breaker is open", err)
	}
	// After the cool-down one trial call goes through; it succeeds and closes it.
	down.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for cl.BreakerState() != "half-open" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := cl.Do(context.Background(), post, nil); err != nil {
		t.Fatalf("trial call: %v", err)
	}
	if st := cl.BreakerState(); st != "closed" {
		t.Errorf("after a good trial call the breaker is %s, want closed", st)
	}
	if g := gauge(); g != 0 {
		t.Errorf("after a good trial call circuit_breaker_state is %v, want 0 (closed)", g)
	}
}

func TestRefusedConnectionIsUnavailableAndATimeoutIsTimeout(t *testing.T) {
	t.Parallel()
	dead := closedport.URL(t)
	err := client(t, dead, nil).Do(context.Background(), post, nil)
	if code := apperr.CodeOf(err); code != apperr.Unavailable {
		t.Errorf("refused: %v with code %s, want %s (nothing was sent)", err, code, apperr.Unavailable)
	}
	if err == nil || !strings.Contains(err.Error(), "payments service is unavailable") {
		t.Errorf("refused: %v, want it to say the payments service is unavailable", err)
	}

	slow, calls := server(t, func(w http.ResponseWriter, r *http.Request) {
		// Read the body, so that the server notices the client leave.
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	})
	start := time.Now()
	err = client(t, slow, nil).Do(context.Background(), post, nil)
	if apperr.CodeOf(err) != apperr.Timeout || calls.Load() != 3 {
		t.Errorf("slow: %v after %d attempts, want Timeout (sent, outcome unknown) after 3", err, calls.Load())
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("three 200ms attempts took %s", took)
	}
}

func TestADroppedConnectionAfterSendingIsAnUnknownOutcome(t *testing.T) {
	t.Parallel()
	url, calls := server(t, func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	err := client(t, url, nil).Do(context.Background(), post, nil)
	if apperr.CodeOf(err) != apperr.Timeout || calls.Load() != 3 {
		t.Errorf("dropped: %v after %d attempts; want Timeout after 3", err, calls.Load())
	}
}

func TestTheCallerGivingUpEndsTheRetries(t *testing.T) {
	t.Parallel()
	url, calls := server(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	})
	cl := client(t, url, func(cfg *downstream.Config) { cfg.Timeout, cfg.Balancing.BreakerFailures = time.Second, 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := cl.Do(ctx, post, nil)
	if calls.Load() != 1 || apperr.CodeOf(err) != apperr.Timeout {
		t.Errorf("%d attempts, %v; want 1 and Timeout", calls.Load(), err)
	}
	// Our own impatience says nothing about the service: the breaker stays closed,
	// the instance in service.
	if st := cl.BreakerState(); st != "closed" {
		t.Errorf("breaker %s after a call its caller abandoned, want closed", st)
	}
	in := cl.Instances(context.Background())[0]
	if !in.InService {
		t.Errorf("instance %+v out of service after a call its caller abandoned, want in service", in)
	}
	if in.Failures != 0 {
		t.Errorf("instance %+v with %d failures after a call its caller abandoned, want 0", in, in.Failures)
	}
}

// A client cannot be made without credentials: every internal call proves who is
// calling.
func TestAClientNeedsCredentials(t *testing.T) {
	t.Parallel()
	if _, err := downstream.New(downstream.Config{Name: "payments", BaseURL: "http://127.0.0.1:1"}); err == nil {
		t.Fatal("a client without credentials was made")
	}
}

// Calls carry the request id, the trace context, the service token for the service
// called (never the shopper's token) and the call's own headers.
func TestCallsCarryTheRequestIDTraceContextTokenAndHeaders(t *testing.T) {
	t.Parallel()
	type seen struct{ requestID, traceparent, auth, key, contentType, body string }
	got := make(chan seen, 1)
	url, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 100)
		n, _ := r.Body.Read(b)
		got <- seen{r.Header.Get("X-Request-ID"), r.Header.Get("traceparent"), r.Header.Get("Authorization"),
			r.Header.Get("Idempotency-Key"), r.Header.Get("Content-Type"), string(b[:n])}
		_, _ = w.Write([]byte(`{"id":"x"}`))
	})
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled}))
	ctx = logging.WithRequestID(ctx, "req-123")
	call := post
	call.Header = http.Header{"Idempotency-Key": {"order-1"}}
	var out struct{ ID string }
	if err := client(t, url, nil).Do(ctx, call, &out); err != nil {
		t.Fatalf("Do: %v, want no error", err)
	}
	if out.ID != "x" {
		t.Fatalf("Do decoded id %q, want x", out.ID)
	}
	s := <-got
	if s.requestID != "req-123" {
		t.Errorf("the service saw X-Request-ID %q, want req-123", s.requestID)
	}
	if !strings.Contains(s.traceparent, "4bf92f3577b34da6a3ce929d0e0e4736") {
		t.Errorf("the service saw traceparent %q, want the trace 4bf92f3577b34da6a3ce929d0e0e4736 in it", s.traceparent)
	}
	if s.auth != "Bearer service-token-for-payments" {
		t.Errorf("the service saw Authorization %q, want Bearer service-token-for-payments", s.auth)
	}
	if s.key != "order-1" {
		t.Errorf("the service saw Idempotency-Key %q, want order-1", s.key)
	}
	if s.contentType != "application/json" {
		t.Errorf("the service saw Content-Type %q, want application/json", s.contentType)
	}
	if s.body != `{"amount_cents":1}` {
		t.Errorf("the service saw the body %s, want {\"amount_cents\":1}", s.body)
	}
}

func TestAnUnreadableAnswerIsABadGatewayNotRetried(t *testing.T) {
	t.Parallel()
	url, calls := server(t, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`not json`)) })
	var out struct{}
	err := client(t, url, nil).Do(context.Background(), post, &out)
	if code := apperr.CodeOf(err); code != apperr.BadGateway {
		t.Errorf("%v: code %s, want %s", err, code, apperr.BadGateway)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d calls, want 1 (not retried)", n)
	}
}

func TestABusinessAnswerAfterATransientFailureIsReturnedAsIs(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	url, calls := server(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			problem.Write(w, r, nil, apperr.E(apperr.Unavailable, "blip"))
			return
		}
		problem.Write(w, r, nil, apperr.R(apperr.PaymentRequired, "insufficient_funds", "declined"))
	})
	err := client(t, url, nil).Do(context.Background(), post, nil)
	if !errors.Is(err, apperr.R(apperr.PaymentRequired, "insufficient_funds", "")) || calls.Load() != 2 {
		t.Errorf("%v after %d calls; want the 402 after 2", err, calls.Load())
	}
}

// instance is one instance of a service for the balancing tests: while up it answers
// 201 and its /readyz 200; while down its /readyz answers 503 and each call 503, or,
// when it drops calls, nothing (the connection closed).
type instance struct {
	url   string
	up    atomic.Bool
	drops bool
	calls atomic.Int32 // /readyz not counted
}

func newInstance(t *testing.T, up, drops bool) *instance {
	t.Helper()
	in := &instance{drops: drops}
	in.up.Store(up)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			in.calls.Add(1)
			if !in.up.Load() && in.drops {
				if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
					conn.Close()
				}
				return
			}
		}
		if !in.up.Load() {
			problem.Write(w, r, nil, apperr.E(apperr.Unavailable, "down"))
			return
		}
		if r.URL.Path == "/readyz" {
			return // 200
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{}`))
	}))
	t.Cleanup(srv.Close)
	in.url = srv.URL
	return in
}

// A retry goes to another instance: with one of two failing, every call succeeds.
// One that drops its calls is soon out of service; one that answers 503 stays in
// (it is up), and the retries go round it.
func TestARetryGoesToAnotherInstance(t *testing.T) {
	t.Parallel()
	for _, drops := range []bool{true, false} {
		bad, good := newInstance(t, false, drops), newInstance(t, true, false)
		cl := client(t, bad.url+","+good.url, func(cfg *downstream.Config) {
			cfg.Balancing = balancer.Settings{EjectAfter: 3, EjectBackoff: time.Hour}
		})
		for i := range 30 {
			if err := cl.Do(context.Background(), post, nil); err != nil {
				t.Fatalf("drops %v, call %d: %v", drops, i, err)
			}
		}
		if good.calls.Load() != 30 || (drops && bad.calls.Load() > 3) {
			t.Errorf("drops %v: the failing instance got %d calls, the good one %d of 30; want all for the good one (and at most 3 for one that drops them)",
				drops, bad.calls.Load(), good.calls.Load())
		}
		if in := cl.Instances(context.Background()); in[0].InService == drops {
			t.Errorf("drops %v: the failing instance %+v", drops, in[0])
		}
		if cl.BreakerState() != "closed" {
			t.Errorf("breaker %s while an instance answers", cl.BreakerState())
		}
	}
}

// An ejected instance gets calls again once its /readyz answers.
func TestAnEjectedInstanceComesBackOnceItIsReady(t *testing.T) {
	t.Parallel()
	flaky, steady := newInstance(t, false, true), newInstance(t, true, false)
	cl := client(t, flaky.url+","+steady.url, func(cfg *downstream.Config) {
		cfg.Balancing = balancer.Settings{EjectAfter: 2, EjectBackoff: 20 * time.Millisecond}
	})
	for flaky.calls.Load() < 2 {
		if err := cl.Do(context.Background(), post, nil); err != nil {
			t.Fatal(err)
		}
	}
	before := flaky.calls.Load()
	for range 20 {
		if err := cl.Do(context.Background(), post, nil); err != nil {
			t.Fatal(err)
		}
	}
	if flaky.calls.Load() != before {
		t.Fatalf("the ejected instance got %d calls while its /readyz answered 503", flaky.calls.Load()-before)
	}
	flaky.up.Store(true)
	for deadline := time.Now().Add(10 * time.Second); flaky.calls.Load() == before; time.Sleep(5 * time.Millisecond) {
		if err := cl.Do(context.Background(), post, nil); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the instance got no call after it was ready again")
		}
	}
}

// Every instance down: calls fail as not sent (Unavailable), at once once the
// instances are out, naming the service.
func TestEveryInstanceDownIsUnavailableAtOnce(t *testing.T) {
	t.Parallel()
	dead := func() string { return closedport.URL(t) }
	cl := client(t, dead()+","+dead(), func(cfg *downstream.Config) {
		cfg.Balancing = balancer.Settings{EjectAfter: 2, EjectBackoff: time.Hour, BreakerCooldown: time.Hour}
	})
	for range 3 {
		err := cl.Do(context.Background(), post, nil)
		if apperr.CodeOf(err) != apperr.Unavailable || !strings.Contains(err.Error(), "payments service is unavailable") {
			t.Fatalf("err = %v; want Unavailable naming the service", err)
		}
	}
	start := time.Now()
	err := cl.Do(context.Background(), post, nil)
	if code := apperr.CodeOf(err); code != apperr.Unavailable {
		t.Errorf("with every instance out: %v with code %s, want %s", err, code, apperr.Unavailable)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("with every instance out: the call took %s, want at most 100ms (at once)", took)
	}
	for _, in := range cl.Instances(context.Background()) {
		if in.InService {
			t.Errorf("%+v in service after its connections were refused", in)
		}
	}
}

// An attempt that was sent leaves the outcome unknown, whatever the retries after it
// find: here the only instance times out, is ejected, and the retries find none.
func TestASentAttemptKeepsTheOutcomeUnknownWhenTheRetriesFindNoInstance(t *testing.T) {
	t.Parallel()
	slow, calls := server(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	})
	cl := client(t, slow, func(cfg *downstream.Config) {
		cfg.Balancing = balancer.Settings{EjectAfter: 1, EjectBackoff: time.Hour}
	})
	err := cl.Do(context.Background(), post, nil)
	if apperr.CodeOf(err) != apperr.Timeout || calls.Load() != 1 {
		t.Errorf("%v after %d attempts reached the service; want Timeout (sent, unknown) after 1", err, calls.Load())
	}
}
