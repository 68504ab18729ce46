// Package problem renders errors as RFC 9457 application/problem+json responses and
// reads them back: servers call Write with any error, clients call FromResponse to get
// an *apperr.Error with the same code again.
package problem

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/logging"
)

// ContentType is the media type of a problem document.
const ContentType = "application/problem+json"

// TypePrefix begins each problem's type URI; the code follows it.
const TypePrefix = "urn:bazaar:problem:"

// Details is the problem document.
type Details struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	Instance  string       `json:"instance,omitempty"`
	RequestID string       `json:"request_id,omitempty"`
	Errors    []FieldError `json:"errors,omitempty"`
}

// FieldError is one invalid field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Write renders err. An *apperr.Error shows its code, message and fields; anything
// else is logged with its text and shown as a bare 500, so internal detail never
// reaches a client. Internal, bad-gateway and unavailable errors are logged too.
func Write(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var ae *apperr.Error
	if !errors.As(err, &ae) {
		ae = apperr.Wrap(err, apperr.Internal, "an unexpected error occurred")
	}
	status := ae.Code.Status()
	if status >= 500 && log != nil {
		log.ErrorContext(r.Context(), "request failed", "err", err, "code", ae.Code, "path", r.URL.Path)
	}
	kind := string(ae.Code)
	if ae.Reason != "" {
		kind = ae.Reason
	}
	d := Details{
		Type:      TypePrefix + kind,
		Title:     http.StatusText(status),
		Status:    status,
		Detail:    ae.Message,
		Instance:  r.URL.Path,
		RequestID: logging.RequestID(r.Context()),
	}
	for _, f := range ae.Fields {
		d.Errors = append(d.Errors, FieldError(f))
	}
	if ae.Code == apperr.RateLimited && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(d)
}

// Handler answers every request with err; used for the router's 404 and 405.
func Handler(log *slog.Logger, err error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { Write(w, r, log, err) })
}

// FromResponse turns a non-2xx response into an *apperr.Error with the code of its
// status and the detail and field errors of its problem document, when it has one.
// It reads (at most 1 MiB of) the body but does not close it.
func FromResponse(resp *http.Response) error {
	code := apperr.FromStatus(resp.StatusCode)
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var d Details
	e := &apperr.Error{Code: code, Message: http.StatusText(resp.StatusCode)}
	if json.Unmarshal(body, &d) == nil && d.Status != 0 {
		if d.Detail != "" {
			e.Message = d.Detail
		}
		if kind, ok := strings.CutPrefix(d.Type, TypePrefix); ok && kind != string(code) {
			e.Reason = kind
		}
		for _, f := range d.Errors {
			e.Fields = append(e.Fields, apperr.FieldError(f))
		}
	}
	e.Err = fmt.Errorf("upstream answered %s", strconv.Itoa(resp.StatusCode))
	return e
}
