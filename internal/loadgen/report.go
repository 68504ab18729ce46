package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// FormatProgress renders p as one line (without a newline), such as
//
//	12s  9.9 orders/s  p50 41ms p99 180ms | confirmed 98  cancelled 14 (customer_request 7, payment_declined 7)  pending 1  failed 0 | errors: none | 429 waited 3 | in flight 4
//
// where pending counts the orders answered 202 and still followed, with those given up
// on after it.
func FormatProgress(p Progress) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%4.0fs  %.1f orders/s  p50 %s p99 %s | confirmed %d  cancelled %d",
		p.Elapsed.Seconds(), p.Rate, fmtDuration(p.P50), fmtDuration(p.P99), p.Outcomes.Confirmed, p.Outcomes.CancelledTotal())
	if len(p.Outcomes.Cancelled) > 0 {
		fmt.Fprintf(&b, " (%s)", counts(p.Outcomes.Cancelled))
	}
	fmt.Fprintf(&b, "  pending %d", p.PendingNow)
	if p.Outcomes.Pending > 0 {
		fmt.Fprintf(&b, " (+%d given up)", p.Outcomes.Pending)
	}
	fmt.Fprintf(&b, "  failed %d", p.Outcomes.FailedTotal())
	if len(p.Outcomes.Failed) > 0 {
		fmt.Fprintf(&b, " (%s)", counts(p.Outcomes.Failed))
	}
	b.WriteString(" | errors: ")
	if len(p.Errors) == 0 {
		b.WriteString("none")
	} else {
		b.WriteString(counts(p.Errors))
	}
	fmt.Fprintf(&b, " | 429 waited %d | in flight %d", p.RateLimited, p.InFlight)
	if p.Dropped > 0 {
		fmt.Fprintf(&b, " | dropped %d", p.Dropped)
	}
	return b.String()
}

// counts renders m as "a 1, b 2", in key order.
func counts(m map[string]int) string {
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// fmtDuration is a latency as people read it: 850µs, 4.2ms, 41ms, 1.25s.
func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// WriteJSON writes s as one indented JSON document (see Summary's MarshalJSON).
func WriteJSON(w io.Writer, s Summary) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// WriteTable writes s as a table for people.
func WriteTable(w io.Writer, s Summary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }

	mode := fmt.Sprintf("closed loop, %d shoppers", s.Concurrency)
	if s.Mode == "open" {
		mode = fmt.Sprintf("open loop, %g orders/s", s.Rate)
	}
	p("Load run against %s", s.BaseURL)
	p("  mode\t%s (%s, seed %d)", mode, plural(s.Accounts, "account"), s.Seed)
	p("  time\t%.1fs of new orders, %.1fs in all", s.LoadTime.Seconds(), s.Elapsed.Seconds())
	p("  orders\t%d started, %d created (%.1f/s), %d dropped", s.Orders, s.Created, s.Throughput, s.Dropped)
	p("")

	o := s.Outcomes
	p("  OUTCOME\tORDERS")
	p("  confirmed\t%d", o.Confirmed)
	p("  cancelled\t%d", o.CancelledTotal())
	for _, k := range sortedKeys(o.Cancelled) {
		p("    %s\t%d", k, o.Cancelled[k])
	}
	p("  pending\t%d", o.Pending)
	p("  failed\t%d", o.FailedTotal())
	for _, k := range sortedKeys(o.Failed) {
		p("    %s\t%d", k, o.Failed[k])
	}
	p("  total\t%d", o.Total())
	p("")

	p("  LATENCY\tCOUNT\tMEAN\tP50\tP90\tP99\tMAX")
	for _, l := range []struct {
		name string
		l    Latency
	}{{"POST /orders", s.Latency}, {"to terminal", s.Settle}} {
		p("  %s\t%d\t%s\t%s\t%s\t%s\t%s", l.name, l.l.Count, fmtDuration(l.l.Mean), fmtDuration(l.l.P50),
			fmtDuration(l.l.P90), fmtDuration(l.l.P99), fmtDuration(l.l.Max))
	}
	p("")

	p("  ERRORS\tREQUESTS (retried ones included)")
	if len(s.Errors) == 0 {
		p("  none\t")
	}
	for _, k := range sortedKeys(s.Errors) {
		p("  %s\t%d", k, s.Errors[k])
	}
	if s.RateLimited > 0 {
		p("  429 waited out\t%d (%s)", s.RateLimited, counts(s.RateLimitedBy))
	} else {
		p("  429 waited out\t0")
	}
	p("")

	p("  REQUESTS\tSENT")
	total := 0
	for _, k := range sortedKeys(s.Requests) {
		p("  %s\t%d", k, s.Requests[k])
		total += s.Requests[k]
	}
	p("  total\t%d", total)
	p("")
	p("  replays checked\t%d, %d mismatched", s.Replays, len(s.ReplayMismatches))
	p("  streams followed\t%d", s.Streams)
	p("  pending polls\t%d", s.Polls)
	p("  browsing skipped\t%d", s.BrowseSkipped)
	if err := tw.Flush(); err != nil {
		return err
	}
	var extra strings.Builder
	for _, m := range s.ReplayMismatches {
		fmt.Fprintf(&extra, "replay mismatch: %s\n", m)
	}
	if n := len(s.Unsettled); n > 0 {
		fmt.Fprintf(&extra, "not settled (%d): %s\n", n, strings.Join(s.Unsettled[:min(n, 20)], " "))
	}
	if out := s.Outcomes.Cancelled["out_of_stock"]; s.Restock == 0 && out > 0 && out*4 >= s.Orders {
		fmt.Fprintf(&extra, "hint: %d of %d orders found their products out of stock; -restock N (Config.Restock) has the admin top the stock up\n", out, s.Orders)
	}
	for _, m := range s.Warnings {
		fmt.Fprintf(&extra, "warning: %s\n", m)
	}
	_, err := io.WriteString(w, extra.String())
	return err
}

// plural is "1 account", "2 accounts".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
