package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"
)

func TestHealthShowsAllSixProgramsHealthy(t *testing.T) {
	setup(t)
	type report struct {
		Status   string `json:"status"`
		Services map[string]struct {
			Status string            `json:"status"`
			Checks map[string]string `json:"checks"`
		} `json:"services"`
	}
	want := []string{"gateway", "inventory", "notifications", "orders", "payments", "users"}
	// Every program was ready when the stack came up; polling only rides out a probe
	// that timed out on a machine busy running the other packages' tests.
	var last response
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		last = do(t, request{Method: "GET", Path: "/health"})
		var r report
		if last.StatusCode != http.StatusOK || json.Unmarshal(last.Body, &r) != nil || r.Status != "healthy" {
			continue
		}
		var got []string
		for name, s := range r.Services {
			got = append(got, name)
			if s.Status != "healthy" || len(s.Checks) == 0 {
				t.Errorf("%s: status %q, checks %v; want healthy with its checks", name, s.Status, s.Checks)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("services = %v; want %v", got, want)
		}
		if ct := last.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q; want application/json", ct)
		}
		return
	}
	t.Fatalf("GET /health never reported healthy in 30s; last answer %d: %s", last.StatusCode, last.Body)
}
