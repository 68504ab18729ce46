package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The kinds of errors a Summary counts (Summary.Errors) and of orders that were never
// created (Outcomes.Failed).
const (
	ErrRateLimited    = "429"             // still 429 after MaxRateLimitWaits waits
	ErrServer         = "5xx"             // a 5xx answer
	ErrClient         = "4xx"             // a 4xx answer the shopper did not expect
	ErrTimeout        = "timeout"         // no answer within RequestTimeout
	ErrNetwork        = "network"         // refused, reset, closed early
	ErrProtocol       = "protocol"        // an answer that is not what the API documents
	ErrReplayMismatch = "replay_mismatch" // an idempotent replay that named another order or status
	ErrAuth           = "auth"            // the account could not sign in
	ErrNoProducts     = "no_products"     // nothing to order
	// ErrInterrupted is a request cut short because the run was stopped (its context
	// ended). It is an outcome kind, never counted among Summary.Errors.
	ErrInterrupted = "interrupted"
)

// maxRetryAfter caps a Retry-After wait; the gateway's are seconds.
const maxRetryAfter = time.Minute

// requestError is a request that failed, with the kind it is counted under.
type requestError struct {
	kind   string
	status int // the HTTP status, when there was an answer
	err    error
}

func (e *requestError) Error() string { return e.err.Error() }
func (e *requestError) Unwrap() error { return e.err }

// kindOf is the kind of err: a requestError's, else ErrInterrupted for a context's end
// and ErrNetwork for anything else.
func kindOf(err error) string {
	var re *requestError
	switch {
	case errors.As(err, &re):
		return re.kind
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ErrInterrupted
	}
	return ErrNetwork
}

// transient reports whether the failure may go away by itself (and the request be sent
// again): a time-out, a network error, a 5xx or a 429 the shopper gave up waiting on.
func transient(err error) bool {
	switch kindOf(err) {
	case ErrTimeout, ErrNetwork, ErrServer, ErrRateLimited:
		return true
	}
	return false
}

// call is one request to the gateway.
type call struct {
	endpoint string // what it is counted as: "create_order", "login", ...
	method   string
	path     string            // under the base URL, query included
	body     any               // sent as JSON when not nil
	token    string            // a bearer token, if any
	header   map[string]string // more headers
}

// answer is a response with its body read.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// decode reads a's JSON body into v; a body that is not what was expected is a
// protocol error.
func (a answer) decode(c call, v any) error {
	if err := json.Unmarshal(a.body, v); err != nil {
		return &requestError{ErrProtocol, a.status, fmt.Errorf("%s %s → %d: decoding %.200q: %w", c.method, c.path, a.status, a.body, err)}
	}
	return nil
}

// unexpected is the error for an answer the caller did not expect; it is counted.
func (a answer) unexpected(s *stats, c call) error {
	kind := ErrClient
	switch {
	case a.status >= 500:
		kind = ErrServer
	case a.status < 400:
		kind = ErrProtocol
	}
	s.error(kind)
	return &requestError{kind, a.status, fmt.Errorf("%s %s → %d: %.300s", c.method, c.path, a.status, bytes.TrimSpace(a.body))}
}

// client sends requests to the gateway, waiting out 429s as Retry-After says, and
// counts every request, 429 and failure in stats.
type client struct {
	hc       *http.Client
	base     string
	timeout  time.Duration // per attempt; 0: none
	clock    clock
	maxWaits int // 429s waited out per request
	stats    *stats
}

// do sends c and reads the answer. 429s are waited out (Retry-After) and sent again up
// to maxWaits times. It returns an error for what did not give an answer (time-out,
// network, the run stopping), for a 5xx and for a 429 it gave up on; any other status
// is the caller's to judge. Failures other than the run stopping are counted.
func (cl *client) do(ctx context.Context, c call) (answer, error) {
	for waits := 0; ; waits++ {
		a, err := cl.attempt(ctx, c)
		if err != nil {
			return a, cl.failed(ctx, c, err)
		}
		if a.status == http.StatusTooManyRequests {
			if waits >= cl.maxWaits {
				cl.stats.error(ErrRateLimited)
				return a, &requestError{ErrRateLimited, a.status, fmt.Errorf("%s %s: still rate limited after %d waits", c.method, c.path, waits)}
			}
			cl.stats.rateLimited(c.endpoint)
			if err := cl.clock.Sleep(ctx, retryAfter(a.header, cl.clock.Now())); err != nil {
				return a, err
			}
			continue
		}
		if a.status >= 500 {
			return a, a.unexpected(cl.stats, c)
		}
		return a, nil
	}
}

// open is do for a streaming answer: on 200 it returns the response with its body
// still to read (the caller closes it); any other status comes back as an error, read
// and counted like do's. The time-out applies until the answer's headers have come, not
// to the stream after them.
func (cl *client) open(ctx context.Context, c call) (*http.Response, error) {
	for waits := 0; ; waits++ {
		resp, err := cl.openOnce(ctx, c)
		if err != nil {
			return nil, cl.failed(ctx, c, err)
		}
		if resp.StatusCode == http.StatusOK {
			return resp, nil
		}
		a, err := readAnswer(resp)
		if err != nil {
			return nil, cl.failed(ctx, c, err)
		}
		if a.status == http.StatusTooManyRequests && waits < cl.maxWaits {
			cl.stats.rateLimited(c.endpoint)
			if err := cl.clock.Sleep(ctx, retryAfter(a.header, cl.clock.Now())); err != nil {
				return nil, err
			}
			continue
		}
		if a.status == http.StatusTooManyRequests {
			cl.stats.error(ErrRateLimited)
			return nil, &requestError{ErrRateLimited, a.status, fmt.Errorf("%s %s: still rate limited after %d waits", c.method, c.path, waits)}
		}
		return nil, a.unexpected(cl.stats, c)
	}
}

// openOnce sends c and returns once the headers are in, within the time-out; the
// body's Close ends the request.
func (cl *client) openOnce(ctx context.Context, c call) (*http.Response, error) {
	sctx, cancel := context.WithCancelCause(ctx)
	stopTimer := func() bool { return true }
	if cl.timeout > 0 {
		stopTimer = cl.clock.AfterFunc(cl.timeout, func() { cancel(context.DeadlineExceeded) })
	}
	resp, err := cl.send(sctx, c)
	if !stopTimer() && err == nil {
		// The time-out fired as the headers came: the stream is cut already.
		resp.Body.Close()
		err = context.DeadlineExceeded
	}
	if err != nil {
		if errors.Is(context.Cause(sctx), context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %s: %w", cl.timeout, context.DeadlineExceeded)
		}
		cancel(nil)
		return nil, err
	}
	resp.Body = cancelOnClose{resp.Body, func() { cancel(nil) }}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// attempt sends c once, under the per-request time-out, and reads the whole answer.
func (cl *client) attempt(ctx context.Context, c call) (answer, error) {
	actx, cancel := ctx, context.CancelFunc(func() {})
	if cl.timeout > 0 {
		actx, cancel = context.WithTimeout(ctx, cl.timeout)
	}
	defer cancel()
	resp, err := cl.send(actx, c)
	if err != nil {
		return answer{}, err
	}
	return readAnswer(resp)
}

func readAnswer(resp *http.Response) (answer, error) {
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return answer{}, fmt.Errorf("reading the answer: %w", err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// send makes one HTTP request; it counts it.
func (cl *client) send(ctx context.Context, c call) (*http.Response, error) {
	var body io.Reader
	if c.body != nil {
		b, err := json.Marshal(c.body)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, cl.base+c.path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	cl.stats.request(c.endpoint)
	return cl.hc.Do(req)
}

// failed classifies err, a request that got no answer: the run stopping (not counted),
// a time-out or a network error (counted).
func (cl *client) failed(ctx context.Context, c call, err error) error {
	if ctx.Err() != nil {
		return &requestError{ErrInterrupted, 0, fmt.Errorf("%s %s: %w", c.method, c.path, ctx.Err())}
	}
	kind := ErrNetwork
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		kind = ErrTimeout
	}
	cl.stats.error(kind)
	return &requestError{kind, 0, fmt.Errorf("%s %s: %w", c.method, c.path, err)}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// retryAfter is how long a 429 asks to wait: Retry-After in seconds or as an HTTP
// date, capped at maxRetryAfter; one second when it is missing or unreadable, and at
// least 100 ms so that a "0" does not spin.
func retryAfter(h http.Header, now time.Time) time.Duration {
	const floor = 100 * time.Millisecond
	v := strings.TrimSpace(h.Get("Retry-After"))
	d := time.Second
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, floor), maxRetryAfter)
}
