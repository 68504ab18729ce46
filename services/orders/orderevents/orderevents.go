// Package orderevents is the orders service's published event contract: the stream it
// writes, the event types on it and each type's data, exactly as they travel in an
// envelope's data field. The orders service writes these types; any other service may
// import this package to read them, instead of declaring the shapes again.
//
// Evolving a payload (docs/events.md, "Evolving a payload"): a payload only ever gains
// fields, which consumers ignore until they need them; no field is removed, renamed or
// retyped. Any other change is a new event type, named "<type>.v<N>" (order.confirmed.v2)
// with its own payload struct and version, published alongside the old one until
// every consumer reads the new. The version is not on the wire: the type name says it.
package orderevents

import (
	"time"

	"github.com/google/uuid"
)

// Stream is the Redis stream the orders service publishes to, and Source the
// envelope's source on its events.
const (
	Stream = "events.orders"
	Source = "orders"
)

// Type is an event type on Stream: an envelope's type.
type Type string

// The event types on Stream.
const (
	// TypeCreated is a new order, before its saga runs; the subject is its id.
	TypeCreated Type = "order.created"
	// TypeConfirmed is an order whose saga succeeded; the subject is its id.
	TypeConfirmed Type = "order.confirmed"
	// TypeCancelled is an order whose saga gave up or that was cancelled; the subject
	// is its id.
	TypeCancelled Type = "order.cancelled"
	// TypeDailySales is the sales report of one UTC day; the subject is the day
	// (YYYY-MM-DD), and the event id is derived from it, so a day is reported once.
	TypeDailySales Type = "report.daily_sales"
)

// The versions of the payloads: 1 for each, the bare type names. A breaking change
// would be a new type such as order.confirmed.v2, with a payload of its own.
const (
	CreatedVersion    = 1
	ConfirmedVersion  = 1
	CancelledVersion  = 1
	DailySalesVersion = 1
)

// Created is the data of order.created: the order and its lines.
type Created struct {
	OrderID    uuid.UUID `json:"order_id"`
	UserID     uuid.UUID `json:"user_id"`
	TotalCents int64     `json:"total_cents"`
	Currency   string    `json:"currency"`
	Items      []Line    `json:"items"`
}

// Confirmed is the data of order.confirmed. It has order.created's fields today, but
// is its own type so that a consumer says which event it reads and each can gain
// fields on its own.
type Confirmed Created

// Line is one line of an order; its unit price is in the order's currency.
type Line struct {
	ProductID      uuid.UUID `json:"product_id"`
	Quantity       int       `json:"quantity"`
	UnitPriceCents int64     `json:"unit_price_cents"`
}

// Cancelled is the data of order.cancelled. Reason is the order's cancel_reason; a
// consumer must expect reasons it does not know yet, since adding one is additive.
type Cancelled struct {
	OrderID    uuid.UUID `json:"order_id"`
	UserID     uuid.UUID `json:"user_id"`
	Reason     string    `json:"reason"`
	TotalCents int64     `json:"total_cents"`
	Currency   string    `json:"currency"`
}

// DailySales is the data of report.daily_sales: the report of one UTC day.
type DailySales struct {
	Day string `json:"day"` // YYYY-MM-DD
	Report
}

// Report is a sales report over [From, To): the orders created in it, by what became
// of them, revenue per currency from the confirmed ones, and the best-selling products
// (at most 10, best first). It is also the result of the report:sales task.
type Report struct {
	From        time.Time      `json:"from"`
	To          time.Time      `json:"to"`
	Orders      int64          `json:"orders"`
	Confirmed   int64          `json:"confirmed"`
	Cancelled   int64          `json:"cancelled"`
	Revenue     []Money        `json:"revenue"`
	TopProducts []ProductSales `json:"top_products"`
}

// Money is an amount in one currency.
type Money struct {
	Currency    string `json:"currency"`
	AmountCents int64  `json:"amount_cents"`
}

// ProductSales is one best-selling product: how many confirmed orders bought and for
// how much, in one currency.
type ProductSales struct {
	ProductID    uuid.UUID `json:"product_id"`
	Quantity     int64     `json:"quantity"`
	RevenueCents int64     `json:"revenue_cents"`
	Currency     string    `json:"currency"`
}
