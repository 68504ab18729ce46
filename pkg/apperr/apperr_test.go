package apperr

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestStatusRoundTrip(t *testing.T) {
	t.Parallel()
	for code, status := range statuses {
		if got := code.Status(); got != status {
			t.Errorf("%s.Status() = %d, want %d", code, got, status)
		}
		if got := FromStatus(status); got != code {
			t.Errorf("FromStatus(%d) = %s, want %s", status, got, code)
		}
	}
	if got := Code("nonsense").Status(); got != http.StatusInternalServerError {
		t.Errorf("unknown code status = %d, want 500", got)
	}
	if got := FromStatus(418); got != Malformed {
		t.Errorf("FromStatus(418) = %s, want malformed", got)
	}
}

func TestIsMatchesCode(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("loading: %w", E(NotFound, "user not found"))
	if !errors.Is(err, E(NotFound, "")) {
		t.Error("errors.Is should match on code alone")
	}
	if errors.Is(err, E(Conflict, "")) {
		t.Error("errors.Is matched a different code")
	}
	if CodeOf(err) != NotFound {
		t.Errorf("CodeOf = %s", CodeOf(err))
	}
	if CodeOf(errors.New("boom")) != Internal {
		t.Error("plain errors are internal")
	}
}

func TestFields(t *testing.T) {
	t.Parallel()
	var f Fields
	if f.Err() != nil {
		t.Fatal("no fields should be no error")
	}
	f.Add("email", "must be an e-mail address")
	f.Add("password", "must be at least 8 characters")
	var e *Error
	if !errors.As(f.Err(), &e) {
		t.Fatalf("Err() = %#v, want an *Error", f.Err())
	}
	if e.Code != Invalid {
		t.Errorf("code %q, want %q", e.Code, Invalid)
	}
	if len(e.Fields) != 2 {
		t.Errorf("fields %+v, want 2", e.Fields)
	}
}

func TestParseCollectsFieldErrors(t *testing.T) {
	t.Parallel()
	positive := func(n int) (int, error) {
		if n <= 0 {
			return 0, E(Invalid, "must be positive")
		}
		return n, nil
	}
	var f Fields
	got := Parse(&f, "quantity", 3, positive)
	if got != 3 {
		t.Errorf("Parse(3) = %d, want 3", got)
	}
	if f.Err() != nil {
		t.Fatalf("Parse(3) recorded %v, want no field error", f.Err())
	}
	Parse(&f, "items[0].quantity", -1, positive)
	Parse(&f, "price", "x", func(string) (int, error) { return 0, errors.New("internal detail") })
	if len(f) != 2 {
		t.Fatalf("fields = %+v, want 2", f)
	}
	if want := (FieldError{"items[0].quantity", "must be positive"}); f[0] != want {
		t.Errorf("fields[0] = %+v, want %+v", f[0], want)
	}
	if want := (FieldError{"price", "is invalid"}); f[1] != want {
		t.Errorf("fields[1] = %+v, want %+v", f[1], want)
	}
}
