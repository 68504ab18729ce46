package chaos

import (
	"strings"
	"testing"
	"time"
)

func TestThePlanHasEveryFaultOnceAndFitsTheLoad(t *testing.T) {
	for _, c := range []struct {
		load, budget time.Duration
		cycles       int
	}{
		{130 * time.Second, 10 * time.Second, 1},
		{15 * time.Minute, 30 * time.Second, 5},
	} {
		plan, err := Plan(c.load, c.budget)
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[Kind]int{}
		killed := map[string]int{}
		var last time.Duration
		for i, f := range plan {
			kinds[f.Kind]++
			if f.Kind == KindKill {
				killed[f.Target]++
			}
			if f.Kind == KindDown && f.For <= c.budget {
				t.Errorf("load %s: %s is not longer than the budget %s", c.load, f, c.budget)
			}
			if end := f.At + f.For; end > c.load {
				t.Errorf("load %s: %s ends at %s, after the load", c.load, f, end)
			}
			if f.At < last {
				t.Errorf("load %s: fault %d (%s) at %s comes before the one before it (%s)", c.load, i, f, f.At, last)
			}
			last = f.At
		}
		for _, k := range []Kind{KindKill, KindDown, KindRedisRestart, KindPostgresRestart, KindCut, KindSlow, KindSMTPDown, KindPoison, KindReprice} {
			if kinds[k] == 0 {
				t.Errorf("load %s: no %s fault", c.load, k)
			}
		}
		for _, p := range []string{"users", "inventory", "payments", "orders", "notifications", "gateway"} {
			if killed[p] < c.cycles {
				t.Errorf("load %s: %s killed %d times; want at least %d", c.load, p, killed[p], c.cycles)
			}
		}
		if kinds[KindDown] < 2*c.cycles {
			t.Errorf("load %s: %d down faults; want payments and orders each cycle", c.load, kinds[KindDown])
		}
	}
}

func TestAPlanThatCannotFitSaysSo(t *testing.T) {
	_, err := Plan(time.Minute, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "too short") {
		t.Errorf("Plan(1m) = %v; want a load too short", err)
	}
}

func TestFaultClock(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                      "0:00.0",
		5*time.Second + 49e6:   "0:05.0",
		90 * time.Second:       "1:30.0",
		12*time.Minute + 3.5e9: "12:03.5",
	} {
		if got := clock(d); got != want {
			t.Errorf("clock(%s) = %q; want %q", d, got, want)
		}
	}
}
