// Package paymentevents is the payments service's published event contract: the
// stream it writes, the event types on it and each type's data, exactly as they travel
// in an envelope's data field. The payments service writes these types; any other
// service may import this package to read them, instead of declaring the shapes again.
//
// Evolving a payload (docs/events.md, "Evolving a payload"): a payload only ever gains
// fields, which consumers ignore until they need them; no field is removed, renamed or
// retyped. Any other change is a new event type, named "<type>.v<N>"
// (payment.refunded.v2) with its own payload struct and version, published alongside
// the old one until every consumer reads the new. The version is not on the wire: the
// type name says it.
package paymentevents

import "github.com/google/uuid"

// Stream is the Redis stream the payments service publishes to, and Source the
// envelope's source on its events.
const (
	Stream = "events.payments"
	Source = "payments"
)

// Type is an event type on Stream: an envelope's type. The subject of each is the
// payment's id.
type Type string

// The event types on Stream.
const (
	// TypeCaptured is a payment the processor accepted.
	TypeCaptured Type = "payment.captured"
	// TypeDeclined is a payment the processor refused.
	TypeDeclined Type = "payment.declined"
	// TypeRefunded is a captured payment given back (its order was cancelled).
	TypeRefunded Type = "payment.refunded"
)

// The versions of the payloads: 1 for each, the bare type names. A breaking change
// would be a new type such as payment.refunded.v2, with a payload of its own.
const (
	CapturedVersion = 1
	DeclinedVersion = 1
	RefundedVersion = 1
)

// Captured is the data of payment.captured. DeclineCode is always there and null: the
// field is shared with payment.declined, whose data has the same shape.
type Captured struct {
	PaymentID   uuid.UUID `json:"payment_id"`
	OrderID     uuid.UUID `json:"order_id"`
	UserID      uuid.UUID `json:"user_id"`
	AmountCents int64     `json:"amount_cents"`
	Currency    string    `json:"currency"`
	DeclineCode *string   `json:"decline_code"`
}

// Declined is the data of payment.declined: Captured's fields, with the processor's
// DeclineCode set. It is its own type so that a consumer says which event it reads and
// each can gain fields on its own.
type Declined Captured

// Refunded is the data of payment.refunded (notifications e-mails the refund from it).
type Refunded struct {
	PaymentID   uuid.UUID `json:"payment_id"`
	OrderID     uuid.UUID `json:"order_id"`
	UserID      uuid.UUID `json:"user_id"`
	AmountCents int64     `json:"amount_cents"`
	Currency    string    `json:"currency"`
}
