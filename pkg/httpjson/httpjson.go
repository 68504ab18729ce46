// Package httpjson decodes JSON request bodies strictly and writes JSON responses.
// Decoding errors come back as *apperr.Error: malformed JSON or an unknown field is
// Malformed (400), a body over the server's limit is TooLarge (413).
package httpjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

// Decode reads exactly one JSON value from r's body into v, refusing unknown fields
// and trailing data.
func Decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return apperr.E(apperr.Malformed, "the body must be application/json")
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if tooLarge(err) {
			return decodeError(err)
		}
		return apperr.E(apperr.Malformed, "the body must hold a single JSON value")
	}
	return nil
}

func tooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

func decodeError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case tooLarge(err):
		return apperr.Wrap(err, apperr.TooLarge, "the body is too large")
	case errors.Is(err, io.EOF):
		return apperr.E(apperr.Malformed, "the body is empty; a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return apperr.E(apperr.Malformed, "the body is not valid JSON: it ends too soon")
	case errors.As(err, &syn):
		return apperr.E(apperr.Malformed, "the body is not valid JSON (at byte %d)", syn.Offset)
	case errors.As(err, &typ):
		return apperr.E(apperr.Malformed, "field %q must be a %s", typ.Field, typ.Type.String())
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return apperr.E(apperr.Malformed, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return apperr.Wrap(err, apperr.Malformed, fmt.Sprintf("the body could not be read: %v", err))
}

// Write sends v as JSON with the status.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
