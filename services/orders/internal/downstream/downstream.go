// Package downstream is the HTTP JSON caller the orders service's clients of other
// services (inventory, payments) are built on: each attempt has a time limit and goes
// to an instance of the service that its balancer picks (pkg/balancer: power of two
// choices, an instance ejected after failures in a row and re-admitted once its
// /readyz answers, one breaker per service), and a call is retried with exponential
// backoff and jitter (cenkalti/backoff) for transient failures only, each retry on
// another instance when there is one.
//
// Transient means the answer may differ on a retry: a time-out, a refused or dropped
// connection, a 5xx (or 429) answer, or no instance to call (the breaker open, or
// every instance out). Those count as failures of the service, for its breaker, and
// are retried, at most Attempts times per call, so that a retry storm cannot form.
// Only the ones the instance did not answer count toward ejecting it: one that
// answers 503 is up, and its error most likely the service's as a whole (its
// database, payments' processor), which another instance shares. Business answers (409 out of stock, 402 declined, 422, 404, any other 4xx)
// are final: never retried, and counted as successes, since the service is working
// fine when it says "no".
//
// Errors come back as *apperr.Error values, so that callers branch with errors.Is and
// apperr.ReasonOf, never on status numbers: a business answer keeps the code and
// reason of the service's problem document (problem.FromResponse). A transient failure
// that persists is apperr.Unavailable when no attempt reached the service or it
// answered 503 (every connection refused, the breaker open), and apperr.Timeout
// otherwise: some attempt reached the service and its outcome is unknown (sent and
// timed out, the connection dropped after sending, a 500), whatever instance the
// attempts after it went to, or found none. A 503 can still come after
// the work was done (payments' processor took the money, then its answer was lost), so
// the saga treats every failed charge as unknown whatever the code.
package downstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/balancer"
	"github.com/bazaar-shop/bazaar/pkg/httpserver"
	"github.com/bazaar-shop/bazaar/pkg/logging"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// Config describes one downstream service. Name and BaseURL are required.
type Config struct {
	// Name names the service in errors, logs and metrics ("payments").
	Name string
	// BaseURL is where it listens (PAYMENTS_URL): the base URL of its internal
	// listener, or several, comma-separated, one per instance, or a host name that
	// resolves to several (pkg/balancer). Each instance's /readyz is asked on its own
	// base URL.
	BaseURL string
	// Timeout bounds one attempt; default 2s.
	Timeout time.Duration
	// Attempts bounds the attempts of one call; default 3.
	Attempts int
	// BackoffInitial and BackoffMax shape the waits between attempts, randomised by
	// ±50%: default 100ms, doubling, at most 1s.
	BackoffInitial, BackoffMax time.Duration
	// Balancing tunes the balancer over the instances: ejection (EjectAfter, 3
	// failures in a row; EjectBackoff 1s, doubling, at most EjectBackoffMax 30s),
	// ResolveEvery, and the service's breaker (BreakerFailures 5 transient failures
	// in a row; BreakerCooldown 5s open before a trial call).
	Balancing balancer.Settings
	// Log receives the breaker's state changes, ejections and re-admissions.
	Log *slog.Logger
	// Registerer receives the metrics; nil records none.
	Registerer prometheus.Registerer
	// Tracing, when set, makes a client span per attempt; the W3C trace context is
	// forwarded either way.
	Tracing *telemetry.Tracing
	// Credentials prove to the service that orders is calling (required). The
	// shopper's own access token is never sent: on an internal route it grants
	// nothing, and forwarding it would hand it to one more service for no purpose.
	Credentials Credentials
}

// Credentials mint the credential a call to a service carries: a service token for
// that audience (svcauth.Signer).
type Credentials interface {
	Token(audience string) (string, error)
}

// Client calls one downstream service. It is safe for concurrent use.
type Client struct {
	cfg     Config
	http    *http.Client
	up      *balancer.Balancer
	metrics *clientMetrics
}

// New makes a client of the service cfg describes. It fails on a bad base URL (the
// error gives its position in the list, not its value), or metrics that clash with
// ones already registered.
func New(cfg Config) (*Client, error) {
	if cfg.Name == "" {
		return nil, errors.New("downstream: a name is needed")
	}
	urls, err := balancer.SplitURLs(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("downstream %s: %w", cfg.Name, err)
	}
	if cfg.Credentials == nil {
		return nil, fmt.Errorf("downstream %s: credentials are needed: every internal call proves who is calling", cfg.Name)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 3
	}
	if cfg.BackoffInitial <= 0 {
		cfg.BackoffInitial = 100 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	up, err := balancer.New(balancer.Options{Name: cfg.Name, URLs: urls, Settings: cfg.Balancing,
		Log: cfg.Log.With("downstream", cfg.Name)})
	if err != nil {
		return nil, err
	}
	var transport http.RoundTripper = &http.Transport{
		// Proxy stays nil: internal calls never go through an HTTP_PROXY.
		DialContext:         (&net.Dialer{Timeout: min(cfg.Timeout, 2*time.Second)}).DialContext,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     90 * time.Second,
	}
	transport = cfg.Tracing.Transport(transport)
	c := &Client{
		cfg: cfg,
		up:  up,
		http: &http.Client{
			Transport: transport,
			// Internal endpoints never redirect; following one could resend a charge
			// somewhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	m, err := newClientMetrics(cfg.Registerer, cfg.Name, c.breakerState)
	if err != nil {
		return nil, err
	}
	c.metrics = m
	return c, nil
}

// Name is the service's name.
func (c *Client) Name() string { return c.cfg.Name }

// Close stops the balancer's background work (the readiness checks of ejected
// instances, re-resolving names); call it when done with the client.
func (c *Client) Close() { c.up.Close() }

// BreakerState is the service's breaker's state: "closed", "half-open" or "open".
func (c *Client) BreakerState() string { return c.up.BreakerState() }

// Instances are the service's instances as the balancer sees them.
func (c *Client) Instances(ctx context.Context) []balancer.InstanceState { return c.up.Instances(ctx) }

func (c *Client) breakerState() float64 {
	switch c.up.BreakerState() {
	case "half-open":
		return 1
	case "open":
		return 2
	}
	return 0
}

// Call is one request to the service.
type Call struct {
	Method string
	Path   string      // e.g. /internal/charges
	Body   any         // marshalled to JSON; nil sends no body
	Header http.Header // added to the request (Idempotency-Key)
}

// Do makes call, retrying transient failures, and decodes a 2xx answer's JSON body
// into out (unless out is nil). See the package doc for the errors.
func (c *Client) Do(ctx context.Context, call Call, out any) error {
	var body []byte
	if call.Body != nil {
		var err error
		if body, err = json.Marshal(call.Body); err != nil {
			return fmt.Errorf("downstream %s: encode %s %s: %w", c.cfg.Name, call.Method, call.Path, err)
		}
	}
	var last *transientError     // the last transient failure
	var answer error             // a final (business) answer
	sent := false                // some attempt may have reached the service
	var avoid *balancer.Instance // where the last attempt failed
	op := func() (struct{}, error) {
		pick, err := c.up.Pick(ctx, avoid)
		if err != nil {
			// The breaker is open or no instance is in service: nothing was sent.
			c.metrics.count("rejected")
			last = &transientError{code: apperr.Unavailable, err: errors.Unwrap(err)}
			return struct{}{}, last
		}
		err = c.once(ctx, pick.Instance(), call, body, out)
		var t *transientError
		switch {
		case err == nil:
			pick.Done(balancer.Success)
			c.metrics.count("ok")
			return struct{}{}, nil
		case errors.As(err, &t):
			switch {
			case t.callerGone:
				pick.Done(balancer.Abandoned) // our impatience says nothing about the instance
			case t.answered:
				pick.Done(balancer.ServiceError)
			default:
				pick.Done(balancer.Failure)
			}
			c.metrics.count("transient")
		default:
			pick.Done(balancer.Success) // the service is working when it says "no"
			c.metrics.count("business")
			answer = err
			return struct{}{}, backoff.Permanent(err)
		}
		sent = sent || t.sent
		last, avoid = t, pick.Instance()
		return struct{}{}, t
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.RandomizationFactor, b.Multiplier = c.cfg.BackoffInitial, c.cfg.BackoffMax, 0.5, 2
	_, err := backoff.Retry(ctx, op, backoff.WithBackOff(b), backoff.WithMaxTries(uint(c.cfg.Attempts)))
	switch {
	case err == nil:
		return nil
	case answer != nil:
		return answer // the service's answer, even if earlier attempts failed
	case last == nil:
		return err // the caller gone before any attempt
	}
	// When the caller's context ends between attempts Retry reports just that; the
	// last attempt's failure says more.
	if sent {
		return apperr.Wrap(last, apperr.Timeout, fmt.Sprintf("the %s service did not answer in time", c.cfg.Name))
	}
	return apperr.Wrap(last, apperr.Unavailable, fmt.Sprintf("the %s service is unavailable", c.cfg.Name))
}

// once makes one attempt, at the instance in.
func (c *Client) once(ctx context.Context, in *balancer.Instance, call Call, body []byte, out any) error {
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	// Once any of the request is written the service may act on it; until then a
	// failure certainly had no effect.
	var wrote atomic.Bool
	actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
		WroteHeaders: func() { wrote.Store(true) },
	})
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, call.Method, in.URL().String()+call.Path, rd)
	if err != nil {
		return fmt.Errorf("downstream %s: %w", c.cfg.Name, err)
	}
	req.Host = in.Host()
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	for k, vs := range call.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	// So that the service logs the call under the request that caused it.
	if id := logging.RequestID(ctx); id != "" {
		req.Header.Set(httpserver.RequestIDHeader, id)
	}
	token, err := c.cfg.Credentials.Token(c.cfg.Name)
	if err != nil {
		return fmt.Errorf("downstream %s: %w", c.cfg.Name, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if c.cfg.Tracing == nil {
		propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t := &transientError{sent: wrote.Load(), callerGone: ctx.Err() != nil, err: err}
		switch {
		case errors.Is(actx.Err(), context.DeadlineExceeded) || ctx.Err() != nil:
			t.code = apperr.Timeout
		case t.sent:
			t.code = apperr.BadGateway
		default:
			t.code = apperr.Unavailable
		}
		return t
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		err := problem.FromResponse(resp)
		code := apperr.CodeOf(err)
		return &transientError{code: code, sent: code != apperr.Unavailable && code != apperr.RateLimited, answered: true, err: err}
	case resp.StatusCode >= 300:
		return problem.FromResponse(resp)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswerBytes))
		return nil
	}
	// An empty body leaves out as it is: a 200 with nothing to say ("nothing to
	// refund") is still a success.
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswerBytes)).Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return apperr.Wrap(fmt.Errorf("%s %s: decode answer: %w", call.Method, call.Path, err),
			apperr.BadGateway, fmt.Sprintf("the %s service gave an answer that could not be read", c.cfg.Name))
	}
	return nil
}

// maxAnswerBytes bounds how much of an answer is read.
const maxAnswerBytes = 1 << 20

// transientError is one attempt's transient failure.
type transientError struct {
	code       apperr.Code
	sent       bool // the request was written: it may have had an effect
	callerGone bool // the caller's context ended: no verdict on the service
	answered   bool // the instance answered (an error status): it is up
	err        error
}

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// clientMetrics are a client's call counter and breaker gauge; nil records nothing.
type clientMetrics struct {
	service string
	calls   *prometheus.CounterVec
}

func newClientMetrics(reg prometheus.Registerer, service string, state func() float64) (*clientMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	calls, err := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "downstream_attempts_total",
		Help: "Attempts at calls to other services, by service and result: ok, business (a final 4xx answer), transient (retried or failed) or rejected (breaker open).",
	}, []string{"service", "result"}))
	if err != nil {
		return nil, err
	}
	gauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "circuit_breaker_state",
		Help:        "State of the circuit breaker in front of a downstream service: 0 closed, 1 half-open, 2 open.",
		ConstLabels: prometheus.Labels{"service": service},
	}, state)
	if err := reg.Register(gauge); err != nil {
		return nil, fmt.Errorf("downstream %s: register metrics: %w", service, err)
	}
	return &clientMetrics{service: service, calls: calls}, nil
}

func (m *clientMetrics) count(result string) {
	if m != nil {
		m.calls.WithLabelValues(m.service, result).Inc()
	}
}

// register registers c, or returns the equal collector already registered, so that the
// clients of several services share one series family.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("downstream: register metrics: %w", err)
	}
	return c, nil
}
