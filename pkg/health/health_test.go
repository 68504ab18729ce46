package health

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"
)

func TestReadiness(t *testing.T) {
	t.Parallel()
	ok := func(context.Context) error { return nil }
	bad := func(context.Context) error { return errors.New("down") }
	slow := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	cases := []struct {
		name       string
		setup      func(*Checker)
		want       Status
		wantStatus int
	}{
		{"all well", func(c *Checker) { c.Critical("postgres", ok); c.Optional("redis", ok) }, Healthy, 200},
		{"optional down", func(c *Checker) { c.Critical("postgres", ok); c.Optional("redis", bad) }, Degraded, 200},
		{"critical down", func(c *Checker) { c.Critical("postgres", bad); c.Optional("redis", bad) }, Unhealthy, 503},
		{"critical hangs", func(c *Checker) { c.Critical("postgres", slow); c.Optional("redis", ok) }, Unhealthy, 503},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := NewChecker(slog.New(slog.NewTextHandler(io.Discard, nil)), 50*time.Millisecond)
			tc.setup(c)
			rec := httptest.NewRecorder()
			c.Ready().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
			var rep Report
			if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tc.wantStatus {
				t.Errorf("status %d, want %d", rec.Code, tc.wantStatus)
			}
			if rep.Status != tc.want {
				t.Errorf("report status %q, want %q", rep.Status, tc.want)
			}
			if len(rep.Checks) != 2 {
				t.Errorf("checks %v, want 2", rep.Checks)
			}
			if got := rep.Checks["postgres"]; got == Degraded {
				t.Errorf("postgres check %q, want a critical check never %q", got, Degraded)
			}
		})
	}
}

func TestWorse(t *testing.T) {
	t.Parallel()
	if got := Worse(Healthy, Degraded); got != Degraded {
		t.Errorf("Worse(Healthy, Degraded) = %q, want %q", got, Degraded)
	}
	if got := Worse(Unhealthy, Degraded); got != Unhealthy {
		t.Errorf("Worse(Unhealthy, Degraded) = %q, want %q", got, Unhealthy)
	}
	if got := Worse(Healthy, Healthy); got != Healthy {
		t.Errorf("Worse(Healthy, Healthy) = %q, want %q", got, Healthy)
	}
}
