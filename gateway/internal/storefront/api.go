package storefront

import (
	"net/http"
	"strconv"
	"time"

	"github.com/bazaar-shop/bazaar/gateway/internal/inproc"
)

// api calls the public API the way any client does, but in the process (package
// inproc): each call is a request served by the gateway's own router, so it is
// authenticated, rate limited (per the browser's address and per user), cached,
// logged and traced exactly like a request from outside, and the pages can do
// nothing a script with the same token could not. Nothing here reaches a service but
// through the gateway's routes.
type api struct {
	client inproc.Client
}

// call is one API request.
type call = inproc.Request

// do makes c on behalf of from (the browser's request: its address, request id and
// trace go along) and decodes a 2xx body into out (when not nil). Any other status
// is the *apperr.Error its problem document describes, with the Retry-After it
// carried kept (retryAfter). The browser's cookies stay behind: the API knows
// nothing of them, and the services must never see them.
func (a api) do(from *http.Request, c call, out any) error {
	h, err := a.client.Do(inproc.WithCaller(from.Context(), from), c, out)
	if err != nil {
		return withRetryAfter(err, h)
	}
	return nil
}

// stream forwards the API's answer to c straight to w as it is written: for the order
// status stream (server-sent events), which lasts.
func (a api) stream(w http.ResponseWriter, from *http.Request, c call) {
	a.client.Stream(inproc.WithCaller(from.Context(), from), w, c)
}

// retryAfterError is an API refusal that said how long to wait.
type retryAfterError struct {
	error
	wait time.Duration
}

func (e retryAfterError) Unwrap() error { return e.error }

func withRetryAfter(err error, h http.Header) error {
	if s, e := strconv.Atoi(h.Get("Retry-After")); e == nil && s > 0 {
		return retryAfterError{err, time.Duration(s) * time.Second}
	}
	return err
}
