package chaos

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bazaar-shop/bazaar/internal/invariants"
	"github.com/bazaar-shop/bazaar/internal/loadgen"
)

// Result is what a run did and found.
type Result struct {
	Config      Config
	Seed        uint64
	Started     time.Time // when the run began (servers, build, stack)
	LoadStarted time.Time // the first order: the faults' zero
	Elapsed     time.Duration

	Load   loadgen.Summary // what the shoppers saw
	Faults []FaultRecord   // the plan as it happened
	Admin  AdminChanges

	// Settle is how long the stack took to come to rest after the load; Backlog is
	// what it still had in hand when it was judged (zero when it came to rest).
	Settle  time.Duration
	Backlog invariants.Backlog
	// StackErr says which program died on its own (the stack then stops): a failure.
	StackErr string

	Outcomes   []Outcome // the orders, from the orders database
	Violations []invariants.Violation
	Report     invariants.Report
	Evidence   []OrderEvidence // the saga logs of the first orders the violations name
}

// OK reports whether the run found nothing wrong: no violation, no program dead on
// its own, every fault carried out and healed, and the stack at rest when judged.
func (r *Result) OK() bool { return len(r.Problems()) == 0 }

// Problems lists what failed the run, one line each.
func (r *Result) Problems() []string {
	var out []string
	if r.StackErr != "" {
		out = append(out, "a program died on its own: "+firstLine(r.StackErr))
	}
	for _, f := range r.Faults {
		if f.Err != "" {
			out = append(out, fmt.Sprintf("fault %q at %s: %s", f.Fault.String(), clock(f.Start), f.Err))
		}
	}
	if !r.Backlog.Zero() {
		out = append(out, "not at rest when judged: "+r.Backlog.String())
	}
	if n := len(r.Violations); n > 0 {
		out = append(out, fmt.Sprintf("%d invariant violations", n))
	}
	return out
}

// Outcome is a number of orders that ended one way.
type Outcome struct {
	Status, Reason string
	Orders         int
}

// OrderEvidence is an order a violation names, with its saga and its step log.
type OrderEvidence struct {
	OrderID, Status, Reason      string
	SagaState, Charge, LastError string
	Reserved                     bool
	CreatedAt, UpdatedAt         time.Time
	Steps                        []Step
}

// Step is one row of the saga's step log (saga_steps).
type Step struct {
	At            time.Time
	Step, Outcome string
	Attempt       int
	Error         string
}

func outcomes(ctx context.Context, ordersDB string) ([]Outcome, error) {
	conn, err := pgx.Connect(ctx, ordersDB)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT status, COALESCE(cancel_reason, ''), count(*) FROM orders
		GROUP BY 1, 2 ORDER BY 1 DESC, 3 DESC, 2`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Outcome, error) {
		var o Outcome
		err := r.Scan(&o.Status, &o.Reason, &o.Orders)
		return o, err
	})
}

// evidence reads the saga and step log of the first n orders that vs name.
func evidence(ctx context.Context, ordersDB string, vs []invariants.Violation, n int) []OrderEvidence {
	var ids []string
	for _, v := range vs {
		if v.OrderID != "" && !slices.Contains(ids, v.OrderID) && len(ids) < n {
			ids = append(ids, v.OrderID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	conn, err := pgx.Connect(ctx, ordersDB)
	if err != nil {
		return []OrderEvidence{{OrderID: "(all)", LastError: "reading the orders database: " + err.Error()}}
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var out []OrderEvidence
	for _, id := range ids {
		e := OrderEvidence{OrderID: id}
		err := conn.QueryRow(ctx, `SELECT o.status, COALESCE(o.cancel_reason, ''), COALESCE(s.state, '(none)'), COALESCE(s.charge, ''),
				COALESCE(s.reserved, false), COALESCE(s.last_error, ''), o.created_at, o.updated_at
			FROM orders o LEFT JOIN sagas s ON s.order_id = o.id WHERE o.id::text = $1`, id).
			Scan(&e.Status, &e.Reason, &e.SagaState, &e.Charge, &e.Reserved, &e.LastError, &e.CreatedAt, &e.UpdatedAt)
		if err != nil {
			e.Status = "(not in the orders database: " + err.Error() + ")"
			out = append(out, e)
			continue
		}
		rows, err := conn.Query(ctx, `SELECT at, step, attempt, outcome, error FROM saga_steps WHERE order_id::text = $1 ORDER BY id`, id)
		if err == nil {
			e.Steps, _ = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Step, error) {
				var s Step
				err := r.Scan(&s.At, &s.Step, &s.Attempt, &s.Outcome, &s.Error)
				return s, err
			})
		}
		out = append(out, e)
	}
	return out
}

// WriteTable writes the result for people: the orders by outcome, each fault with
// its time window, each invariant with its count of violations, then the violations
// themselves (the first maxViolations) with the saga logs of the orders they name.
func (r *Result) WriteTable(w io.Writer, maxViolations int) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	c := r.Config

	p("Chaos run: %s of load at %g orders/s (seed %d), CHARGE_BUDGET %s, %d faults", c.Load, c.Rate, r.Seed, c.ChargeBudget, len(r.Faults))
	if r.Backlog.Zero() {
		p("The stack came to rest %s after the load; judged %s after the run began.", r.Settle.Round(time.Second), r.Elapsed.Round(time.Second))
	} else {
		p("The stack did NOT come to rest within %s: %s", r.Settle.Round(time.Second), r.Backlog)
	}
	if r.StackErr != "" {
		p("A PROGRAM DIED ON ITS OWN: %s", firstLine(r.StackErr))
	}

	p("")
	p("Orders by outcome (orders database)")
	p("  outcome\torders")
	total := 0
	for _, o := range r.Outcomes {
		name := o.Status
		if o.Reason != "" {
			name += " · " + o.Reason
		}
		p("  %s\t%d", name, o.Orders)
		total += o.Orders
	}
	p("  total\t%d", total)
	l := r.Load
	p("Load generator: %d orders set out, %d created (%.1f/s), %d not created (%s), %d dropped; POST p50 %s p99 %s; %d replays checked, %d mismatched",
		l.Orders, l.Created, l.Throughput, l.Outcomes.FailedTotal(), countsOf(l.Outcomes.Failed), l.Dropped,
		l.Latency.P50.Round(time.Millisecond), l.Latency.P99.Round(time.Millisecond), l.Replays, len(l.ReplayMismatches))
	tw.Flush()

	p("")
	p("Faults (times from the first order)")
	p("  #\tfrom\tto\tfault\tresult")
	for i, f := range r.Faults {
		result := "ok"
		switch {
		case f.Skipped:
			result = "skipped: the run ended first"
		case f.Err != "":
			result = "FAILED: " + firstLine(f.Err)
		case f.Detail != "":
			result = f.Detail
		}
		p("  %d\t%s\t%s\t%s\t%s", i+1, clock(f.Start), clock(f.End), f.Fault.String(), result)
	}
	a := r.Admin
	p("Admin, every %s: %d restocks (PATCH stock, +%d units meant), %d price changes (PATCH price_cents), %d calls failed and were tried again",
		c.RestockEvery, a.Restocks, a.Added, a.Reprices, a.Failures)
	tw.Flush()

	p("")
	p("Invariants (%d orders, %d products, %d admin stock changes accounted; %d outbox rows, %d inbox rows, %d notifications, %d e-mails, %d DLQ entries)",
		r.Report.Orders, r.Report.Products, r.Report.AdminChanges, r.Report.Delivery.OutboxRows, r.Report.Delivery.Inbox,
		r.Report.Delivery.Notifications, r.Report.Delivery.Emails, r.Report.Delivery.DeadLetters)
	p("  rule\tviolations")
	byRule := map[string]int{}
	for _, v := range r.Violations {
		byRule[v.Rule]++
	}
	for _, rule := range r.Report.Rules {
		p("  %s\t%d", rule, byRule[rule])
		delete(byRule, rule)
	}
	for _, rule := range slices.Sorted(maps.Keys(byRule)) {
		p("  %s\t%d", rule, byRule[rule])
	}
	p("  total\t%d", len(r.Violations))
	if n := r.Report.Delivery.EmailCopies; n > 0 {
		copied := r.Report.Delivery.CopiedEmails
		more := ""
		if len(copied) > 3 {
			copied, more = copied[:3], ", …"
		}
		p("  (%d e-mails were second copies of one Message-ID, which at-least-once e-mail allows: %s%s)", n, strings.Join(copied, ", "), more)
	}
	if len(r.Report.Skipped) > 0 {
		p("  (stock conservation not checked for %d products: %s)", len(r.Report.Skipped), strings.Join(r.Report.Skipped, "; "))
	}
	tw.Flush()

	if len(r.Violations) > 0 {
		p("")
		p("Violations (the first %d of %d)", min(maxViolations, len(r.Violations)), len(r.Violations))
		for _, v := range r.Violations[:min(maxViolations, len(r.Violations))] {
			p("  %s", v)
		}
	}
	for _, e := range r.Evidence {
		p("")
		p("Order %s: %s%s, created %s, last changed %s; saga %s, charge %s, reserved %v, last error %q",
			e.OrderID, e.Status, reasonSuffix(e.Reason), stamp(e.CreatedAt), stamp(e.UpdatedAt), e.SagaState, e.Charge, e.Reserved, e.LastError)
		for _, s := range e.Steps {
			line := fmt.Sprintf("    %s  %s #%d %s", stamp(s.At), s.Step, s.Attempt, s.Outcome)
			if s.Error != "" {
				line += ": " + s.Error
			}
			p("%s", line)
		}
	}
	tw.Flush()

	p("")
	if problems := r.Problems(); len(problems) > 0 {
		p("Result: FAIL: %s", strings.Join(problems, "; "))
	} else {
		p("Result: PASS: %d orders through %d faults, every invariant holds", total, len(r.Faults))
	}
	return tw.Flush()
}

// clock writes a time from the start of the load as m:ss.s.
func clock(d time.Duration) string {
	d = d.Round(100 * time.Millisecond)
	return fmt.Sprintf("%d:%04.1f", int(d.Minutes()), (d % time.Minute).Seconds())
}

func stamp(t time.Time) string { return t.UTC().Format("15:04:05.000") }

func reasonSuffix(reason string) string {
	if reason == "" {
		return ""
	}
	return " (" + reason + ")"
}

func countsOf(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func firstLine(s string) string { first, _, _ := strings.Cut(s, "\n"); return first }
