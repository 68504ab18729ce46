package loadgen

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

func millis(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

func TestQuantilesAreNearestRank(t *testing.T) {
	t.Parallel()
	var samples []time.Duration
	for i := 100; i >= 1; i-- { // 1..100 ms, given in reverse
		samples = append(samples, millis(float64(i)))
	}
	l := latencyOf(samples)
	want := Latency{Count: 100, Mean: millis(50.5), P50: millis(50), P90: millis(90), P99: millis(99), Max: millis(100)}
	if l != want {
		t.Errorf("latencyOf(1..100ms) = %+v; want %+v", l, want)
	}
	if samples[0] != millis(100) {
		t.Error("latencyOf sorted its argument")
	}
	one := latencyOf([]time.Duration{millis(7)})
	if one.P50 != millis(7) {
		t.Errorf("one sample: p50 %s, want 7ms", one.P50)
	}
	if one.P99 != millis(7) {
		t.Errorf("one sample: p99 %s, want 7ms", one.P99)
	}
	if one.Max != millis(7) {
		t.Errorf("one sample: max %s, want 7ms", one.Max)
	}
	if latencyOf(nil) != (Latency{}) {
		t.Error("no samples should be the zero Latency")
	}
	// Four samples: p50 is the 2nd, p90 and p99 the 4th.
	four := latencyOf([]time.Duration{millis(4), millis(1), millis(3), millis(2)})
	if four.P50 != millis(2) {
		t.Errorf("four samples: p50 %s, want the 2nd, 2ms", four.P50)
	}
	if four.P90 != millis(4) {
		t.Errorf("four samples: p90 %s, want the 4th, 4ms", four.P90)
	}
	if four.P99 != millis(4) {
		t.Errorf("four samples: p99 %s, want the 4th, 4ms", four.P99)
	}
}

// recorded is the summary of a few orders recorded as shoppers record them.
func recorded() Summary {
	s := newStats()
	end := func(id string, lat time.Duration, o outcome) {
		s.begin()
		if id != "" {
			s.created(id, lat)
			if o.status != "pending" {
				s.settled(lat)
			}
		}
		o.id = id
		s.end(o)
	}
	end("a", millis(10), outcome{status: "confirmed"})
	end("b", millis(20), outcome{status: "confirmed"})
	end("c", millis(30), outcome{status: "cancelled", reason: "payment_declined"})
	end("d", millis(40), outcome{status: "cancelled", reason: "customer_request"})
	end("e", millis(50), outcome{status: "pending"})
	end("", 0, outcome{status: "failed", reason: ErrTimeout})
	s.error(ErrTimeout)
	s.error(ErrServer)
	s.error(ErrInterrupted) // not an error
	s.rateLimited("create_order")
	s.request("create_order")
	s.replay("")
	s.replay("order b: status 202, first 201")
	s.dropArrival()
	sum := s.summary()
	sum.Mode, sum.Rate, sum.BaseURL, sum.Accounts, sum.Seed = "open", 5, "http://localhost:8080", 3, 7
	sum.Elapsed, sum.LoadTime, sum.Throughput = 2500*time.Millisecond, 2*time.Second, 2.5
	sum.Started = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return sum
}

func TestSummaryCountsAddUp(t *testing.T) {
	t.Parallel()
	s := recorded()
	if err := s.Consistent(); err != nil {
		t.Fatal(err)
	}
	o := s.Outcomes
	if s.Orders != 6 {
		t.Errorf("%d orders, want 6", s.Orders)
	}
	if s.Created != 5 {
		t.Errorf("%d created, want 5", s.Created)
	}
	if o.Confirmed != 2 {
		t.Errorf("%d confirmed, want 2", o.Confirmed)
	}
	if n := o.CancelledTotal(); n != 2 {
		t.Errorf("%d cancelled, want 2: %v", n, o.Cancelled)
	}
	if o.Pending != 1 {
		t.Errorf("%d pending, want 1", o.Pending)
	}
	if n := o.FailedTotal(); n != 1 {
		t.Errorf("%d failed, want 1: %v", n, o.Failed)
	}
	for _, reason := range []string{"payment_declined", "customer_request"} {
		if n := o.Cancelled[reason]; n != 1 {
			t.Errorf("%d cancelled for %s, want 1: %v", n, reason, o.Cancelled)
		}
	}
	if n := o.Failed[ErrTimeout]; n != 1 {
		t.Errorf("%d failed for %s, want 1: %v", n, ErrTimeout, o.Failed)
	}
	if want := map[string]int{ErrTimeout: 1, ErrServer: 1, ErrReplayMismatch: 1}; !mapsEqual(s.Errors, want) {
		t.Errorf("errors %v; want %v", s.Errors, want)
	}
	if s.Replays != 2 {
		t.Errorf("%d replays, want 2", s.Replays)
	}
	if len(s.ReplayMismatches) != 1 {
		t.Errorf("replay mismatches %q, want 1", s.ReplayMismatches)
	}
	if s.RateLimited != 1 {
		t.Errorf("rate limited %d, want 1", s.RateLimited)
	}
	if s.Dropped != 1 {
		t.Errorf("dropped %d, want 1", s.Dropped)
	}
	if s.Latency.Count != 5 {
		t.Errorf("latency count %d, want 5", s.Latency.Count)
	}
	if s.Settle.Count != 4 {
		t.Errorf("settle count %d, want 4", s.Settle.Count)
	}
	if s.Latency.P50 != millis(30) {
		t.Errorf("latency p50 %s, want 30ms", s.Latency.P50)
	}
	if len(s.Unsettled) != 1 || s.Unsettled[0] != "e" {
		t.Errorf("unsettled %v; want [e]", s.Unsettled)
	}

	broken := s
	broken.Outcomes = s.Outcomes.clone()
	broken.Outcomes.Confirmed++
	broken.OrderIDs = append(broken.OrderIDs, "a")
	err := broken.Consistent()
	if err == nil {
		t.Fatal("Consistent passed a summary with an outcome too many")
	}
	for _, want := range []string{"6 orders but 7 outcomes", "6 order ids for 5 created", "listed twice"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Consistent: %v; want it to say %q", err, want)
		}
	}
}

func TestSummaryJSONRoundTrips(t *testing.T) {
	t.Parallel()
	s := recorded()
	var buf bytes.Buffer
	if err := WriteJSON(&buf, s); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"outcomes", "order_ids", "latency", "errors", "elapsed_s", "load_s", "rate_limited", "requests", "unsettled_order_ids"} {
		if _, ok := doc[key]; !ok {
			t.Errorf("JSON lacks %q:\n%s", key, buf.String())
		}
	}
	if doc["elapsed_s"] != 2.5 || doc["latency"].(map[string]any)["p50_ms"] != 30.0 {
		t.Errorf("elapsed_s %v, latency %v; want 2.5 and p50_ms 30", doc["elapsed_s"], doc["latency"])
	}
	if doc["outcomes"].(map[string]any)["cancelled"].(map[string]any)["payment_declined"] != 1.0 {
		t.Errorf("outcomes %v", doc["outcomes"])
	}
	var back Summary
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, s)
	}
}

func TestReportsShowTheCounts(t *testing.T) {
	t.Parallel()
	s := recorded()
	var buf bytes.Buffer
	if err := WriteTable(&buf, s); err != nil {
		t.Fatal(err)
	}
	table := buf.String()
	for _, want := range []string{
		"open loop, 5 orders/s", "6 started, 5 created (2.5/s), 1 dropped",
		"confirmed  ", "payment_declined", "customer_request", "pending", "timeout", "total",
		"POST /orders", "30ms", "429 waited out", "create_order", "2, 1 mismatched",
		"replay mismatch: order b: status 202, first 201", "not settled (1): e",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}

	line := FormatProgress(Progress{Elapsed: 12 * time.Second, Rate: 9.94, P50: millis(41), P99: millis(180),
		Outcomes: s.Outcomes, Errors: map[string]int{ErrServer: 2, ErrRateLimited: 1}, RateLimited: 3, InFlight: 4, PendingNow: 2})
	for _, want := range []string{"12s", "9.9 orders/s", "p50 41ms p99 180ms", "confirmed 2", "cancelled 2 (customer_request 1, payment_declined 1)",
		"pending 2 (+1 given up)", "failed 1 (timeout 1)", "errors: 429 1, 5xx 2", "429 waited 3", "in flight 4"} {
		if !strings.Contains(line, want) {
			t.Errorf("progress line lacks %q: %s", want, line)
		}
	}
	if strings.Contains(line, "\n") {
		t.Errorf("progress line has a newline: %q", line)
	}
}

func TestFmtDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0: "-", 850 * time.Microsecond: "850µs", millis(4.25): "4.2ms", millis(41): "41ms", 1250 * time.Millisecond: "1.25s",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%s) = %q; want %q", d, got, want)
		}
	}
}

func TestParsePaymentMix(t *testing.T) {
	t.Parallel()
	m, err := ParsePaymentMix("visa=90, declined=6,pm_card_chargeDeclinedInsufficientFunds=4")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, DefaultPaymentMix) {
		t.Errorf("mix %v; want %v", m, DefaultPaymentMix)
	}
	if again, err := ParsePaymentMix(m.String()); err != nil || !reflect.DeepEqual(again, m) {
		t.Errorf("String does not read back: %q → %v, %v", m.String(), again, err)
	}
	for _, bad := range []string{"", "visa", "visa=x", "visa=-1", "amex=1", "visa=0", "visa=1,visa=2"} {
		if _, err := ParsePaymentMix(bad); err == nil {
			t.Errorf("ParsePaymentMix(%q) passed", bad)
		}
	}
}

func TestPaymentMixPicksWithItsOdds(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	got := map[string]int{}
	for range 10000 {
		got[DefaultPaymentMix.pick(rng)]++
	}
	for method, want := range map[string]int{PaymentVisa: 9000, PaymentDeclined: 600, PaymentInsufficient: 400} {
		if d := got[method] - want; d < -want/8 || d > want/8 {
			t.Errorf("%s picked %d times in 10000; want about %d", method, got[method], want)
		}
	}
	only := PaymentMix{{PaymentVisa, 0}, {PaymentDeclined, 1}}
	for range 100 {
		if m := only.pick(rng); m != PaymentDeclined {
			t.Fatalf("a zero weight was picked: %s", m)
		}
	}
}

func TestConfigDefaultsAndChecks(t *testing.T) {
	t.Parallel()
	c, err := Config{Rate: 1}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if c.BaseURL != DefaultBaseURL {
		t.Errorf("default base URL %q, want %q", c.BaseURL, DefaultBaseURL)
	}
	if c.Duration != DefaultDuration {
		t.Errorf("default duration %s, want %s", c.Duration, DefaultDuration)
	}
	if c.Accounts != DefaultAccounts {
		t.Errorf("default accounts %d, want %d", c.Accounts, DefaultAccounts)
	}
	if c.Seed == 0 {
		t.Error("default seed 0, want one chosen")
	}
	if c.Password != DefaultPassword {
		t.Errorf("default password %q, want %q", c.Password, DefaultPassword)
	}
	if got := c.email(3); got != "loadgen-3@bazaar.test" {
		t.Errorf("email(3) = %q, want loadgen-3@bazaar.test", got)
	}
	if c.Browse != 0 {
		t.Errorf("default browse %v, want 0", c.Browse)
	}
	if c, _ := (Config{Concurrency: 2, Orders: 10, BaseURL: "http://h:1/"}).normalize(); c.Duration != 0 || c.BaseURL != "http://h:1" {
		t.Errorf("an order bound alone should not get a duration, nor the URL its slash: %s %s", c.Duration, c.BaseURL)
	}
	if _, err := DefaultConfig().normalize(); err != nil {
		t.Errorf("DefaultConfig: %v", err)
	}
	for name, c := range map[string]Config{
		"no loop":     {},
		"both loops":  {Rate: 1, Concurrency: 1},
		"bad url":     {Rate: 1, BaseURL: "localhost:8080"},
		"fraction":    {Rate: 1, Cancel: 1.5},
		"short pass":  {Rate: 1, Password: "short"},
		"lines":       {Rate: 1, MaxLines: 51},
		"prefix":      {Rate: 1, AccountPrefix: "a@b"},
		"payment mix": {Rate: 1, Payments: PaymentMix{{"pm_card_amex", 1}}},
	} {
		if _, err := c.normalize(); err == nil {
			t.Errorf("%s: normalize passed %+v", name, c)
		}
	}
}
