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
	if err != nil || r.Limit != 5 || r.After == nil || !r.After.Time.Equal(c.Time) || r.After.ID != c.ID {
		t.Fatalf("Parse = %+v, %v", r, err)
	}
	if r, err := Parse(url.Values{}); err != nil || r.Limit != Default || r.After != nil {
		t.Fatalf("defaults = %+v, %v", r, err)
	}
	for _, bad := range []url.Values{{"limit": {"0"}}, {"limit": {"101"}}, {"limit": {"x"}}, {"cursor": {"!!"}}, {"cursor": {"e30"}}} {
		_, err := Parse(bad)
		var ae *apperr.Error
		if !errors.As(err, &ae) || ae.Code != apperr.Invalid || len(ae.Fields) != 1 {
			t.Errorf("Parse(%v) = %v, want one field error", bad, err)
		}
	}
}

func TestNext(t *testing.T) {
	t.Parallel()
	key := func(n int) Cursor { return Cursor{Time: time.Unix(int64(n), 0), ID: uuid.New()} }
	items, next := Next([]int{1, 2, 3}, 3, key)
	if len(items) != 3 || next != nil {
		t.Fatalf("last page: %v %v", items, next)
	}
	items, next = Next([]int{1, 2, 3, 4}, 3, key)
	if len(items) != 3 || next == nil {
		t.Fatalf("more: %v %v", items, next)
	}
	if c, _ := Decode(*next); c.Time.Unix() != 3 {
		t.Fatalf("cursor points at %v", c.Time)
	}
}
