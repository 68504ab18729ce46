package page

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

func TestParse(t *testing.T) {
	t.Parallel()
	c := Cursor{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), ID: uuid.New()}
	r, err := Parse(url.Values{"limit": {"5"}, "cursor": {Encode(c)}})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if r.Limit != 5 {
		t.Errorf("Parse: limit %d, want 5", r.Limit)
	}
	if r.After == nil {
		t.Fatalf("Parse: no cursor, want %+v", c)
	}
	if !r.After.Time.Equal(c.Time) {
		t.Errorf("Parse: cursor time %v, want %v", r.After.Time, c.Time)
	}
	if r.After.ID != c.ID {
		t.Errorf("Parse: cursor id %s, want %s", r.After.ID, c.ID)
	}
	r, err = Parse(url.Values{})
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if r.Limit != Default {
		t.Errorf("defaults: limit %d, want %d", r.Limit, Default)
	}
	if r.After != nil {
		t.Errorf("defaults: cursor %+v, want none", *r.After)
	}
	for _, bad := range []url.Values{{"limit": {"0"}}, {"limit": {"101"}}, {"limit": {"x"}}, {"cursor": {"!!"}}, {"cursor": {"e30"}}} {
		_, err := Parse(bad)
		var ae *apperr.Error
		if !errors.As(err, &ae) {
			t.Errorf("Parse(%v) = %v, want an *apperr.Error", bad, err)
			continue
		}
		if ae.Code != apperr.Invalid {
			t.Errorf("Parse(%v): code %s, want %s", bad, ae.Code, apperr.Invalid)
		}
		if len(ae.Fields) != 1 {
			t.Errorf("Parse(%v): fields %+v, want one field error", bad, ae.Fields)
		}
	}
}

func TestNext(t *testing.T) {
	t.Parallel()
	key := func(n int) Cursor { return Cursor{Time: time.Unix(int64(n), 0), ID: uuid.New()} }
	items, next := Next([]int{1, 2, 3}, 3, key)
	if len(items) != 3 {
		t.Fatalf("last page: items %v, want 3", items)
	}
	if next != nil {
		t.Fatalf("last page: next %v, want none", *next)
	}
	items, next = Next([]int{1, 2, 3, 4}, 3, key)
	if len(items) != 3 {
		t.Fatalf("more: items %v, want 3", items)
	}
	if next == nil {
		t.Fatal("more: no next cursor, want one")
	}
	if c, _ := Decode(*next); c.Time.Unix() != 3 {
		t.Fatalf("cursor points at %v", c.Time)
	}
}
