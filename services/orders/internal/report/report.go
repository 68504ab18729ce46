// Package report is the sales report: how many orders were placed in a time range,
// how many were confirmed or cancelled, the revenue they brought, and the best-selling
// products. Admins ask for one (POST /admin/reports/sales, run as a task whose result
// they read back), and the daily-sales task writes yesterday's as an event that
// notifications e-mails to the admin.
package report

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

// MaxSpan bounds a report's range, so that one request cannot make the database scan
// everything ever sold.
const MaxSpan = 366 * 24 * time.Hour

// TopN is how many best-selling products a report lists.
const TopN = 10

// Range is a half-open time range [From, To).
type Range struct {
	From, To time.Time
}

// ParseRange reads from and to, each RFC 3339 or a date YYYY-MM-DD (a whole UTC day:
// from starts at the day's midnight, to includes the whole day, so from=2025-03-01&
// to=2025-03-31 is March). It returns an apperr.Invalid error naming every bad field:
// missing, unreadable, to not after from, or a span over MaxSpan.
func ParseRange(from, to string) (Range, error) {
	var f apperr.Fields
	r := Range{From: parseTime(&f, "from", from, false), To: parseTime(&f, "to", to, true)}
	if len(f) == 0 {
		switch {
		case !r.To.After(r.From):
			f.Add("to", "must be after from")
		case r.To.Sub(r.From) > MaxSpan:
			f.Add("to", "must be at most 366 days after from")
		}
	}
	if err := f.Err(); err != nil {
		return Range{}, err
	}
	return r, nil
}

func parseTime(f *apperr.Fields, field, s string, end bool) time.Time {
	if s == "" {
		f.Add(field, "is required (RFC 3339 or YYYY-MM-DD)")
		return time.Time{}
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC()
	}
	if d, err := time.Parse(time.DateOnly, s); err == nil {
		if end {
			d = d.AddDate(0, 0, 1)
		}
		return d
	}
	f.Add(field, "must be a time in RFC 3339 (2025-03-01T00:00:00Z) or a date (2025-03-01)")
	return time.Time{}
}

// Day is the range of the UTC day before the one t falls in: what the daily report
// covers when it runs at t.
func Day(t time.Time) Range {
	y, m, d := t.UTC().Date()
	today := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	return Range{From: today.AddDate(0, 0, -1), To: today}
}

// Money is an amount in one currency.
type Money struct {
	Currency    string
	AmountCents int64
}

// ProductSales is how much of one product confirmed orders bought.
type ProductSales struct {
	ProductID    uuid.UUID
	Quantity     int64
	RevenueCents int64
	Currency     string
}

// Sales is the report of a range: orders created in it, by what became of them.
type Sales struct {
	Range     Range
	Orders    int64 // every order placed
	Confirmed int64
	Cancelled int64
	// Revenue sums confirmed orders, per currency (the catalogue has one, but
	// nothing stops an admin adding another).
	Revenue     []Money
	TopProducts []ProductSales // at most TopN, best-selling first
}

// Store computes reports and records the daily one.
type Store interface {
	// SalesReport computes the report of r.
	SalesReport(ctx context.Context, r Range) (Sales, error)
	// WriteDailySales writes the report.daily_sales event of s to the outbox, once:
	// writing the same day's report again does nothing.
	WriteDailySales(ctx context.Context, s Sales) error
}
