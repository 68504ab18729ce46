// Package apperr is the one error type every Bazaar program uses: an error code that
// says what kind of failure it is, a message safe to show a client, and optional
// field errors. Handlers return these; pkg/problem renders them as RFC 9457 responses
// and HTTP clients turn responses back into them, so callers use errors.Is/As and never
// status numbers.
package apperr

import (
	"errors"
	"fmt"
	"net/http"
)

// Code names a kind of failure. Each code maps to exactly one HTTP status (Status).
type Code string

// The codes, each with the status it renders as.
const (
	Malformed       Code = "malformed"        // 400: the request cannot be parsed
	Unauthorized    Code = "unauthorized"     // 401: no or bad credentials
	PaymentRequired Code = "payment_required" // 402: a payment was refused
	Forbidden       Code = "forbidden"        // 403: authenticated, wrong role
	NotFound        Code = "not_found"        // 404: absent, or not the caller's
	NotAllowed      Code = "not_allowed"      // 405: the route has no such method
	Conflict        Code = "conflict"         // 409: clashes with the current state
	TooLarge        Code = "too_large"        // 413: body over the limit
	Invalid         Code = "invalid"          // 422: well-formed but invalid
	RateLimited     Code = "rate_limited"     // 429
	Internal        Code = "internal"         // 500: a bug or unexpected failure
	BadGateway      Code = "bad_gateway"      // 502: an upstream answered badly
	Unavailable     Code = "unavailable"      // 503: a dependency is down
	Timeout         Code = "timeout"          // 504: an upstream did not answer in time
	LoopDetected    Code = "loop_detected"    // 508: a request came back to the gateway that sent it
)

// UnsupportedMediaType (415) is a body of a type the endpoint does not take: a JSON
// endpoint given no Content-Type, or text/plain.
const UnsupportedMediaType Code = "unsupported_media_type"

var statuses = map[Code]int{
	Malformed:       http.StatusBadRequest,
	Unauthorized:    http.StatusUnauthorized,
	PaymentRequired: http.StatusPaymentRequired,
	Forbidden:       http.StatusForbidden,
	NotFound:        http.StatusNotFound,
	NotAllowed:      http.StatusMethodNotAllowed,
	Conflict:        http.StatusConflict,
	TooLarge:        http.StatusRequestEntityTooLarge,
	Invalid:         http.StatusUnprocessableEntity,
	RateLimited:     http.StatusTooManyRequests,
	Internal:        http.StatusInternalServerError,
	BadGateway:      http.StatusBadGateway,
	Unavailable:     http.StatusServiceUnavailable,
	Timeout:         http.StatusGatewayTimeout,
	LoopDetected:    http.StatusLoopDetected,

	UnsupportedMediaType: http.StatusUnsupportedMediaType,
}

// Status is the HTTP status for a code; an unknown code is a 500.
func (c Code) Status() int {
	if s, ok := statuses[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// FromStatus is the code for an HTTP status, the reverse of Status, used by clients
// of other services. A status with no code of its own becomes Internal.
func FromStatus(status int) Code {
	for c, s := range statuses {
		if s == status {
			return c
		}
	}
	if status >= 400 && status < 500 {
		return Malformed
	}
	return Internal
}

// FieldError is one invalid field of a request, named as the client sent it.
type FieldError struct {
	Field   string
	Message string
}

// Error is a failure with a code. Message is shown to clients, so it never carries
// internal detail; Err, when set, is the cause and is only logged. Reason, when set,
// is a business outcome finer than the code that callers branch on ("out_of_stock" is a
// Conflict, "insufficient_funds" a PaymentRequired); it becomes the problem's type.
type Error struct {
	Code    Code
	Reason  string
	Message string
	Fields  []FieldError
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Is lets errors.Is match on the code alone: errors.Is(err, apperr.E(apperr.NotFound, "")).
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t.Code == e.Code && (t.Reason == "" || t.Reason == e.Reason) && (t.Message == "" || t.Message == e.Message)
}

// R makes an error with a code, a business reason and a client-safe message; errors.Is
// with R(code, reason, "") matches any error of that code and reason.
func R(code Code, reason, message string) *Error {
	return &Error{Code: code, Reason: reason, Message: message}
}

// ReasonOf is the business reason of err, "" when it has none.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// E makes an error with a code and a client-safe message.
func E(code Code, format string, args ...any) *Error {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	return &Error{Code: code, Message: msg}
}

// Wrap makes an error with a code and message whose cause is err (logged, not shown).
func Wrap(err error, code Code, message string) *Error {
	return &Error{Code: code, Message: message, Err: err}
}

// CodeOf is the code of err, Internal when err is not an *Error.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// Fields collects field errors while a request is parsed, so every invalid field is
// reported at once.
type Fields []FieldError

// Add records that field is invalid.
func (f *Fields) Add(field, message string) { *f = append(*f, FieldError{field, message}) }

// Parse runs parser on one field's value; when it fails, the failure's client-safe
// message is recorded under field and the zero value returned, so that a request is
// parsed into typed values with every invalid field reported at once.
func Parse[In, Out any](f *Fields, field string, value In, parser func(In) (Out, error)) Out {
	v, err := parser(value)
	if err != nil {
		msg := "is invalid"
		var e *Error
		if errors.As(err, &e) && e.Message != "" {
			msg = e.Message
		}
		f.Add(field, msg)
	}
	return v
}

// Err is nil when no field was invalid, else an Invalid error listing them.
func (f Fields) Err() error {
	if len(f) == 0 {
		return nil
	}
	return &Error{Code: Invalid, Message: "the request has invalid fields", Fields: f}
}
