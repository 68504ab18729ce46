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
			if rec.Code != tc.wantStatus || rep.Status != tc.want || len(rep.Checks) != 2 || rep.Checks["postgres"] == Degraded {
				t.Fatalf("got %d %+v", rec.Code, rep)
			}
		})
	}
}

func TestWorse(t *testing.T) {
	t.Parallel()
	if Worse(Healthy, Degraded) != Degraded || Worse(Unhealthy, Degraded) != Unhealthy || Worse(Healthy, Healthy) != Healthy {
		t.Fatal("Worse ranks wrongly")
	}
}
