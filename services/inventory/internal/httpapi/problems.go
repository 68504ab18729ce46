package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/logging"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/reservation"
)

// The business codes of docs/internal-api.md: the saga branches on them, so each has a
// problem type of its own (urn:bazaar:problem:<code>) instead of the generic
// urn:bazaar:problem:conflict of its status.
const (
	CodeOutOfStock          = "out_of_stock"
	CodeReservationReleased = "reservation_released"
)

// reasons maps the domain errors that carry a business code to it.
var reasons = []struct {
	err  *apperr.Error
	code string
}{
	{reservation.ErrOutOfStock, CodeOutOfStock},
	{reservation.ErrReleased, CodeReservationReleased},
}

// writeError renders err as a problem: a business error with its own code, anything
// else as problem.Write does.
//
// pkg/apperr has no place for a business code yet; until it does (a Reason on
// apperr.Error that problem.Write puts in the type), this writes the same document
// problem.Write would, with the code's type.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	for _, rc := range reasons {
		if errors.Is(err, rc.err) {
			status := rc.err.Code.Status()
			w.Header().Set("Content-Type", problem.ContentType)
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(problem.Details{
				Type:      problem.TypePrefix + rc.code,
				Title:     http.StatusText(status),
				Status:    status,
				Detail:    rc.err.Message,
				Instance:  r.URL.Path,
				RequestID: logging.RequestID(r.Context()),
			})
			return
		}
	}
	problem.Write(w, r, log, err)
}

// parse runs a domain parser on one field, recording its message under the field's
// JSON name when it fails.
func parse[In, Out any](f *apperr.Fields, field string, value In, parser func(In) (Out, error)) Out {
	v, err := parser(value)
	if err != nil {
		msg := "is invalid"
		var ae *apperr.Error
		if errors.As(err, &ae) {
			msg = ae.Message
		}
		f.Add(field, msg)
	}
	return v
}

// parseID reads a UUID in a request body; a bad one is a field error.
func parseID(f *apperr.Fields, field, s string) uuid.UUID {
	if s == "" {
		f.Add(field, "is required")
		return uuid.Nil
	}
	id, err := uuid.Parse(s)
	if err != nil {
		f.Add(field, "must be a UUID")
	}
	return id
}

// pathID reads the UUID in a path segment. A malformed id names nothing that exists,
// so it is notFound, the same answer as an unknown one (DESIGN.md).
func pathID(s string, notFound error) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("malformed id %q: %w", s, notFound)
	}
	return id, nil
}
