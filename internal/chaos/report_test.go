package chaos

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/invariants"
)

func TestTheTableShowsOutcomesFaultsAndEveryRule(t *testing.T) {
	r := &Result{
		Config:   Config{Load: time.Minute, Rate: 5, ChargeBudget: 10 * time.Second, RestockEvery: 15 * time.Second},
		Seed:     7,
		Outcomes: []Outcome{{"confirmed", "", 90}, {"cancelled", "timeout", 10}},
		Faults: []FaultRecord{
			{Fault: Fault{Kind: KindKill, Target: "orders", For: time.Second, MidSaga: true}, Start: 5 * time.Second, End: 6500 * time.Millisecond, Detail: "3 sagas in flight when killed"},
			{Fault: Fault{Kind: KindSMTPDown, For: 30 * time.Second}, Start: 20 * time.Second, End: 50 * time.Second},
		},
		Report: invariants.Report{Orders: 100, Rules: []string{invariants.RuleUnsettled, invariants.RuleEmailOnce}},
	}
	var b bytes.Buffer
	if err := r.WriteTable(&b, 10); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"seed 7", "confirmed", "cancelled · timeout", "total", "100",
		"0:05.0", "0:06.5", "SIGKILL orders mid-saga", "3 sagas in flight", "SMTP unreachable for 30s",
		"unsettled", "email-once", "Result: PASS"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, b.String())
		}
	}
	if !r.OK() {
		t.Errorf("problems %v in a clean run", r.Problems())
	}

	r.Violations = []invariants.Violation{{Rule: invariants.RuleEmailOnce, OrderID: "o1", Detail: "2 e-mails"}}
	r.Faults[1].Err = "proxy gone"
	r.Evidence = []OrderEvidence{{OrderID: "o1", Status: "confirmed", SagaState: "done", Steps: []Step{{Step: "reserve", Attempt: 1, Outcome: "ok"}}}}
	b.Reset()
	_ = r.WriteTable(&b, 10)
	for _, want := range []string{"email-once  1", "FAILED: proxy gone", "Order o1: confirmed", "reserve #1 ok", "Result: FAIL", "1 invariant violations"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, b.String())
		}
	}
	if r.OK() {
		t.Error("a run with a violation and a failed fault is OK")
	}
}
