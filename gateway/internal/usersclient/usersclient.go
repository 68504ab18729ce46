// Package usersclient is the gateway's own client of the users service, for the one
// call the gateway makes on its own behalf rather than a client's: checking an
// administrator's credentials when they sign in to the operations pages. Everything
// else reaches users through the proxy.
//
// Answers come back as *apperr.Error values with the code of the users service's
// status, so callers ask errors.Is or apperr.CodeOf, never status numbers.
package usersclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/httpserver"
	"github.com/bazaar-shop/bazaar/pkg/logging"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// loginPath is the users service's log-in endpoint (docs/openapi.yaml).
const loginPath = "/api/v1/auth/login"

// maxAnswerBytes bounds how much of a token answer is read; a token pair is far
// smaller.
const maxAnswerBytes = 64 << 10

// Client calls the users service. It is safe for concurrent use.
type Client struct {
	base    string
	timeout time.Duration
	http    *http.Client
}

// New is a client of the users service at baseURL (USERS_URL), each call bounded by
// timeout and traced by tracing (nil: not traced).
func New(baseURL string, timeout time.Duration, tracing *telemetry.Tracing) *Client {
	return &Client{
		base:    strings.TrimRight(baseURL, "/"),
		timeout: timeout,
		http: &http.Client{
			// Proxy stays nil: never an HTTP_PROXY read from the environment.
			Transport: tracing.Transport(&http.Transport{
				DialContext:         (&net.Dialer{Timeout: min(timeout, 2*time.Second)}).DialContext,
				MaxIdleConnsPerHost: 4,
				IdleConnTimeout:     90 * time.Second,
			}),
			// The log-in endpoint does not redirect; following one would send the
			// password somewhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
}

// Login checks an e-mail address and password and returns the access token the users
// service issues for them. The refresh token that comes with it is dropped: the
// gateway keeps its own session and never acts as the user. client is the address
// of the browser signing in, sent as X-Forwarded-For the way the gateway's proxy
// sends it, so that users counts the attempt against the browser rather than the
// gateway (which would make one address of every operator); "" sends none.
//
// Errors: apperr.Unauthorized for wrong credentials, the users service's own code for
// any other refusal (apperr.Invalid, apperr.RateLimited with RetryAfter, ...),
// apperr.Timeout when it does not answer in time, apperr.Unavailable when it cannot
// be reached, and apperr.BadGateway when its answer is not a token.
func (c *Client) Login(ctx context.Context, email, password, client string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	body, err := json.Marshal(loginRequest{Email: email, Password: password})
	if err != nil {
		return "", fmt.Errorf("usersclient: encode login: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+loginPath, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("usersclient: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if client != "" {
		req.Header.Set("X-Forwarded-For", client)
	}
	// So that the users service logs the call under the sign-in request's id.
	if id := logging.RequestID(ctx); id != "" {
		req.Header.Set(httpserver.RequestIDHeader, id)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return "", apperr.Wrap(err, apperr.Timeout, fmt.Sprintf("the users service did not answer within %s", c.timeout))
		}
		return "", apperr.Wrap(err, apperr.Unavailable, "the users service cannot be reached")
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := problem.FromResponse(resp)
		if secs, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && secs > 0 {
			err = &waitError{error: err, wait: time.Duration(secs) * time.Second}
		}
		return "", err
	}
	var t tokenResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswerBytes)).Decode(&t); err != nil {
		return "", apperr.Wrap(err, apperr.BadGateway, "the users service did not give a valid answer")
	}
	if t.AccessToken == "" || !strings.EqualFold(t.TokenType, "Bearer") {
		return "", apperr.Wrap(fmt.Errorf("token_type %q, access token present: %t", t.TokenType, t.AccessToken != ""),
			apperr.BadGateway, "the users service did not give a valid answer")
	}
	return t.AccessToken, nil
}

// waitError is a refusal that said how long to wait before trying again.
type waitError struct {
	error
	wait time.Duration
}

func (e *waitError) Unwrap() error { return e.error }

// RetryAfter is how long the users service asked to wait before another attempt (its
// Retry-After), or 0 when err did not say.
func RetryAfter(err error) time.Duration {
	var w *waitError
	if errors.As(err, &w) {
		return w.wait
	}
	return 0
}
