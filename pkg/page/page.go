// Package page parses and builds Bazaar's list pagination: ?limit= (1..100, default
// 20) and an opaque ?cursor= that encodes the sort key of the last item returned
// (keyset pagination, stable under inserts, no OFFSET scans).
package page

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

// Default and Max bound ?limit=.
const (
	Default = 20
	Max     = 100
)

// Cursor is the position after the last item of a page in a list sorted by
// (time, id) — newest first or oldest first, as the list defines.
type Cursor struct {
	Time time.Time
	ID   uuid.UUID
}

// Request is a parsed page request.
type Request struct {
	Limit int
	After *Cursor // nil: the first page
}

type wire struct {
	T time.Time `json:"t"`
	I uuid.UUID `json:"i"`
}

// Parse reads limit and cursor from a query; a bad value is a 422 naming the field.
func Parse(q url.Values) (Request, error) {
	var f apperr.Fields
	r := Request{Limit: Default}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > Max {
			f.Add("limit", "must be a whole number from 1 to 100")
		} else {
			r.Limit = n
		}
	}
	if s := q.Get("cursor"); s != "" {
		c, err := Decode(s)
		if err != nil {
			f.Add("cursor", "is not a cursor this list returned")
		} else {
			r.After = &c
		}
	}
	return r, f.Err()
}

// Encode makes the opaque cursor for c.
func Encode(c Cursor) string {
	b, _ := json.Marshal(wire{c.Time, c.ID})
	return base64.RawURLEncoding.EncodeToString(b)
}

// Decode reads a cursor made by Encode.
func Decode(s string) (Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, err
	}
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return Cursor{}, err
	}
	if w.T.IsZero() || w.I == uuid.Nil {
		return Cursor{}, errors.New("incomplete cursor")
	}
	return Cursor{w.T, w.I}, nil
}

// Next is the next_cursor of a page: nil when the store returned no more than limit
// items (the caller asks the store for limit+1 to know), else the cursor of the last
// item kept. It returns the items trimmed to limit.
func Next[T any](items []T, limit int, key func(T) Cursor) ([]T, *string) {
	if len(items) <= limit {
		return items, nil
	}
	items = items[:limit]
	s := Encode(key(items[limit-1]))
	return items, &s
}
