package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/auth"
)

// A saga whose step keeps failing for SAGA_ALARM_AFTER is counted in
// sagas_unfinished{state="stuck"} while it is stuck, and no longer once it goes on:
// the gauge an alert on stuck sagas reads, where saga_outcomes_total only counts
// that one got stuck.
func TestStuckSagasAreScrapedWhileTheyAreStuck(t *testing.T) {
	t.Parallel()
	s := startOrders(t, map[string]string{"SAGA_ALARM_AFTER": "1s"})
	gauge := func(t *testing.T, series string) string {
		t.Helper()
		r := call(t, http.MethodGet, s.internal+"/metrics", "", "")
		for line := range strings.Lines(string(r.Body)) {
			if v, ok := strings.CutPrefix(line, series+" "); ok {
				return strings.TrimSpace(v)
			}
		}
		t.Fatalf("/metrics lacks %s:\n%s", series, r.Body)
		return ""
	}
	waitGauge := func(t *testing.T, series, want string) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); gauge(t, series) != want; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s = %s after 20s, want %s", series, gauge(t, series), want)
			}
		}
	}
	for _, st := range []string{"running", "stuck", "compensating", "compensation_failed"} {
		if v := gauge(t, `sagas_unfinished{state="`+st+`"}`); v != "0" {
			t.Errorf(`sagas_unfinished{state=%q} = %s at start, want 0`, st, v)
		}
	}
	if v := gauge(t, "sagas_unattended"); v != "0" {
		t.Errorf("sagas_unattended = %s at start, want 0", v)
	}

	apple := s.inv.AddProduct(100, 10)
	ann, _ := s.token(t, auth.RoleCustomer)
	s.inv.SetFailing("reserve", true)
	r := call(t, http.MethodPost, s.url+"/api/v1/orders", ann, orderJSON("pm_card_visa", apple, 1))
	var o orderBody
	r.JSON(t, &o)
	if r.Status != http.StatusAccepted {
		t.Fatalf("create with inventory failing: %d %s", r.Status, r.Body)
	}
	waitGauge(t, `sagas_unfinished{state="stuck"}`, "1")

	s.inv.SetFailing("reserve", false)
	s.waitFor(t, ann, o.ID, func(o orderBody) bool { return o.Status == "confirmed" })
	waitGauge(t, `sagas_unfinished{state="stuck"}`, "0")
	if v := gauge(t, `sagas_unfinished{state="running"}`); v != "0" {
		t.Errorf(`sagas_unfinished{state="running"} = %s once the order is confirmed, want 0`, v)
	}
}
