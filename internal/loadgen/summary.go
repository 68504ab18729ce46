package loadgen

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// Summary is what a run did. Every order a shopper set out to place (Orders) has
// exactly one outcome (Outcomes); Consistent checks that the counts add up.
type Summary struct {
	BaseURL     string  `json:"base_url"`
	Mode        string  `json:"mode"` // "open" (Rate) or "closed" (Concurrency)
	Rate        float64 `json:"rate,omitempty"`
	Concurrency int     `json:"concurrency,omitempty"`
	Accounts    int     `json:"accounts"`
	Seed        uint64  `json:"seed"`
	Restock     int     `json:"restock,omitempty"` // Config.Restock

	Started time.Time `json:"started"`
	// Elapsed is from the first order to the end of the run, the last orders'
	// follow-up included; LoadTime is the part in which new orders started.
	Elapsed  time.Duration `json:"-"` // JSON: elapsed_s
	LoadTime time.Duration `json:"-"` // JSON: load_s

	// Orders is how many orders shoppers set out to place; Created how many of
	// them the API created (answered 201 or 202), whose ids are OrderIDs.
	Orders   int      `json:"orders"`
	Created  int      `json:"created"`
	OrderIDs []string `json:"order_ids"`
	// Throughput is Created per second of LoadTime.
	Throughput float64 `json:"throughput"`
	// Dropped counts open-loop arrivals that found MaxInFlight shoppers busy and were
	// not started (they are not among Orders).
	Dropped int `json:"dropped"`

	Outcomes Outcomes `json:"outcomes"`
	// Unsettled are the ids of the orders counted pending.
	Unsettled []string `json:"unsettled_order_ids"`

	// Latency is POST /api/v1/orders, from the first try to the 201 or 202 (retries
	// and 429 waits included); Settle is from the same start to the order's first
	// terminal status (confirmed or cancelled) as the shopper learnt it.
	Latency Latency `json:"latency"`
	Settle  Latency `json:"settle"`

	// Errors counts failed requests by kind (ErrServer, ErrTimeout, ...), retried
	// ones included, so it can exceed the failed orders.
	Errors map[string]int `json:"errors"`
	// RateLimited counts the 429s that were waited out and retried, by endpoint in
	// RateLimitedBy; a 429 given up on is in Errors as ErrRateLimited instead.
	RateLimited   int            `json:"rate_limited"`
	RateLimitedBy map[string]int `json:"rate_limited_by"`
	// Requests counts the HTTP requests sent, by endpoint (create_order, login, ...).
	Requests map[string]int `json:"requests"`

	// Replays counts orders sent again with the same Idempotency-Key whose answer was
	// checked; ReplayMismatches describes each replay that did not answer the same.
	Replays          int      `json:"replays"`
	ReplayMismatches []string `json:"replay_mismatches"`
	// Streams counts status streams followed; Polls the GETs of pending orders.
	Streams int `json:"streams"`
	Polls   int `json:"polls"`
	// BrowseSkipped counts shoppers who would have browsed but cut it short (or did
	// not start) to keep the catalogue requests under AnonymousPerSecond.
	BrowseSkipped int `json:"browse_skipped"`

	// Warnings are problems that did not stop the run (a token cache that could not
	// be written).
	Warnings []string `json:"warnings,omitempty"`
}

// Outcomes are the ends of the orders of a run, one each.
type Outcomes struct {
	Confirmed int `json:"confirmed"`
	// Cancelled counts cancelled orders by cancel_reason (payment_declined,
	// insufficient_funds, out_of_stock, timeout, customer_request).
	Cancelled map[string]int `json:"cancelled"`
	// Pending counts created orders that were not confirmed or cancelled (or whose
	// customer cancellation had not finished) when the shopper stopped following them.
	Pending int `json:"pending"`
	// Failed counts orders that were never created, by the kind of the last error
	// (ErrServer, ErrTimeout, ErrInterrupted, ...). A time-out may hide an order the
	// system did create.
	Failed map[string]int `json:"failed"`
}

// CancelledTotal is the number of cancelled orders.
func (o Outcomes) CancelledTotal() int { return sum(o.Cancelled) }

// FailedTotal is the number of orders never created.
func (o Outcomes) FailedTotal() int { return sum(o.Failed) }

// Terminal is the number of orders that ended confirmed or cancelled.
func (o Outcomes) Terminal() int { return o.Confirmed + o.CancelledTotal() }

// Total is the number of orders with an outcome.
func (o Outcomes) Total() int { return o.Terminal() + o.Pending + o.FailedTotal() }

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// Consistent checks that the summary's counts add up: every order has one outcome,
// every created order is confirmed, cancelled or pending and has an id and a latency,
// and every pending one is listed as unsettled.
func (s Summary) Consistent() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	o := s.Outcomes
	check(o.Total() == s.Orders, "%d orders but %d outcomes", s.Orders, o.Total())
	check(s.Created+o.FailedTotal() == s.Orders, "%d created + %d failed != %d orders", s.Created, o.FailedTotal(), s.Orders)
	check(o.Terminal()+o.Pending == s.Created, "%d confirmed or cancelled + %d pending != %d created", o.Terminal(), o.Pending, s.Created)
	check(len(s.OrderIDs) == s.Created, "%d order ids for %d created", len(s.OrderIDs), s.Created)
	check(len(s.Unsettled) == o.Pending, "%d unsettled ids for %d pending", len(s.Unsettled), o.Pending)
	check(s.Latency.Count == s.Created, "%d latencies for %d created", s.Latency.Count, s.Created)
	check(s.Settle.Count <= s.Created, "%d settle times for %d created", s.Settle.Count, s.Created)
	check(len(slices.Compact(slices.Sorted(slices.Values(s.OrderIDs)))) == len(s.OrderIDs), "an order id is listed twice")
	return errors.Join(errs...)
}

type summaryAlias Summary // Summary without its methods

type summaryJSON struct {
	summaryAlias
	Elapsed  float64 `json:"elapsed_s"`
	LoadTime float64 `json:"load_s"`
}

// MarshalJSON writes the summary with its times in seconds (elapsed_s, load_s) and its
// latencies in milliseconds.
func (s Summary) MarshalJSON() ([]byte, error) {
	return json.Marshal(summaryJSON{summaryAlias(s), s.Elapsed.Seconds(), s.LoadTime.Seconds()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *Summary) UnmarshalJSON(b []byte) error {
	var j summaryJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = Summary(j.summaryAlias)
	s.Elapsed, s.LoadTime = seconds(j.Elapsed), seconds(j.LoadTime)
	return nil
}

func seconds(f float64) time.Duration { return time.Duration(math.Round(f * float64(time.Second))) }

// Latency is a distribution of durations.
type Latency struct {
	Count                    int
	Mean, P50, P90, P99, Max time.Duration
}

// latencyOf summarises samples (which it does not change). Quantiles are nearest-rank:
// the smallest sample with at least that fraction of the samples at or below it.
func latencyOf(samples []time.Duration) Latency {
	return summarise(slices.Clone(samples))
}

// summarise is latencyOf for samples it may sort in place.
func summarise(s []time.Duration) Latency {
	if len(s) == 0 {
		return Latency{}
	}
	slices.Sort(s)
	var total time.Duration
	for _, d := range s {
		total += d
	}
	return Latency{
		Count: len(s),
		Mean:  total / time.Duration(len(s)),
		P50:   quantile(s, 0.50),
		P90:   quantile(s, 0.90),
		P99:   quantile(s, 0.99),
		Max:   s[len(s)-1],
	}
}

// quantile is the nearest-rank q-quantile of sorted samples (0 < q ≤ 1).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q*float64(len(sorted)) - 1e-9))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

type latencyJSON struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func fromMS(f float64) time.Duration { return time.Duration(math.Round(f * 1e6)) }

// MarshalJSON writes the latency in milliseconds (to the microsecond).
func (l Latency) MarshalJSON() ([]byte, error) {
	return json.Marshal(latencyJSON{l.Count, ms(l.Mean), ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (l *Latency) UnmarshalJSON(b []byte) error {
	var j latencyJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*l = Latency{j.Count, fromMS(j.Mean), fromMS(j.P50), fromMS(j.P90), fromMS(j.P99), fromMS(j.Max)}
	return nil
}

// Progress is the state of a run while it goes, as Config.Progress gets it.
type Progress struct {
	Elapsed  time.Duration // since the first order
	Orders   int           // orders set out to place so far
	Created  int
	Rate     float64 // orders created per second over the last period
	InFlight int     // shoppers busy now
	// PendingNow counts the orders answered 202 whose shoppers are still following
	// them to their end (Outcomes.Pending counts those given up on).
	PendingNow int
	Dropped    int
	// P50 and P99 are of the POST latency of the orders created so far.
	P50, P99    time.Duration
	Outcomes    Outcomes
	Errors      map[string]int
	RateLimited int
	Final       bool // the last call, at the end of the run
}

// sortedKeys are m's keys in order, for stable output.
func sortedKeys(m map[string]int) []string { return slices.Sorted(maps.Keys(m)) }
