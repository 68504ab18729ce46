package notification

import (
	"time"

	"github.com/google/uuid"
)

// SalesReport is the orders service's sales report of one UTC day, as the admin
// receives it: the orders placed that day, by what became of them, the revenue of
// the confirmed ones and the best-selling products. Intake builds it from
// report.daily_sales and has checked it: counts not negative and adding up,
// amounts valid Money, products named and sold.
type SalesReport struct {
	Day       time.Time // the day reported, at midnight UTC
	From, To  time.Time // the half-open range [From, To) the report covers
	Orders    int64     // every order placed in the range
	Confirmed int64
	Cancelled int64
	// Revenue sums the confirmed orders, one amount per currency.
	Revenue []Money
	// TopProducts are the best-selling products, best first, as orders ranked them.
	TopProducts []ProductSales
}

// DayString is the day reported, as 2026-11-25.
func (r SalesReport) DayString() string { return r.Day.UTC().Format(time.DateOnly) }

// Open counts the orders placed in the range that were neither confirmed nor
// cancelled when the report was made (their saga was still running).
func (r SalesReport) Open() int64 { return r.Orders - r.Confirmed - r.Cancelled }

// ProductSales is how much of one product the confirmed orders bought.
type ProductSales struct {
	ProductID uuid.UUID
	Quantity  int64
	Revenue   Money
}
