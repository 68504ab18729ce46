package httpapi

import (
	"fmt"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

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
// so it is notFound, the same answer as an unknown one (docs/contract.md).
func pathID(s string, notFound error) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("malformed id %q: %w", s, notFound)
	}
	return id, nil
}
