// Package order is the orders service's domain: an order with its lines and status,
// the parsing of a create request into typed values, and the create-order saga that
// takes an order from pending to confirmed or cancelled across inventory and payments
// (saga.go). It declares the small interfaces it needs at its seams: the Store, the
// Inventory and Payments services, the Notifier of status changes. The time comes
// from a func() time.Time, as in the other services' domains, so tests can move it.
package order

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

// The errors of the domain. Each is an *apperr.Error, so it renders as the right
// problem response and callers match it with errors.Is.
var (
	// ErrNotFound means there is no such order, or it is not the caller's: the two
	// are one answer so that order ids cannot be probed.
	ErrNotFound = apperr.E(apperr.NotFound, "no such order")
	// ErrNotCancellable means the order is not confirmed (still in progress, or
	// cancelled for another reason), so a customer cannot cancel it.
	ErrNotCancellable = apperr.R(apperr.Conflict, "not_cancellable", "only a confirmed order can be cancelled")
	// ErrSagaBusy means another worker holds the saga's lease.
	ErrSagaBusy = apperr.E(apperr.Conflict, "the order's saga is being driven elsewhere")
	// ErrSagaDone means the saga has nothing left to do.
	ErrSagaDone = apperr.E(apperr.Conflict, "the order's saga has finished")
	// ErrLeaseLost means the saga's lease expired and another worker took it; the
	// holder of the stale lease must stop.
	ErrLeaseLost = apperr.E(apperr.Conflict, "the saga's lease was lost")
)

// Limits of an order.
const (
	MinLines    = 1
	MaxLines    = 50
	MinQuantity = 1
	MaxQuantity = 100
)

// Status is where an order is in its life.
type Status string

// The statuses. pending → reserved → paid → confirmed is the happy path; any of them
// can turn to cancelling (stock being released and money given back), which ends in
// cancelled.
const (
	StatusPending    Status = "pending"    // created; stock not yet reserved
	StatusReserved   Status = "reserved"   // stock reserved; not yet paid
	StatusPaid       Status = "paid"       // payment captured; stock not yet committed
	StatusConfirmed  Status = "confirmed"  // paid and stock committed
	StatusCancelling Status = "cancelling" // being undone; the cancel reason follows
	StatusCancelled  Status = "cancelled"  // ended without a sale; see CancelReason
)

// Terminal reports whether s ends the create saga (a confirmed order can still be
// cancelled by its customer, but nothing more happens to it by itself).
func (s Status) Terminal() bool { return s == StatusConfirmed || s == StatusCancelled }

// Rank orders statuses along the saga, so that a stream of status changes received
// out of order can drop the stale ones: every transition goes to a higher rank.
func (s Status) Rank() int {
	switch s {
	case StatusPending:
		return 0
	case StatusReserved:
		return 1
	case StatusPaid:
		return 2
	case StatusConfirmed:
		return 3
	case StatusCancelling:
		return 4
	case StatusCancelled:
		return 5
	}
	return -1
}

// ParseStatus reads a stored status.
func ParseStatus(s string) (Status, error) {
	if st := Status(s); st.Rank() >= 0 {
		return st, nil
	}
	return "", fmt.Errorf("unknown order status %q", s)
}

// CancelReason says why an order was cancelled.
type CancelReason string

// The reasons an order is cancelled.
const (
	ReasonNone              CancelReason = ""
	ReasonOutOfStock        CancelReason = "out_of_stock"
	ReasonPaymentDeclined   CancelReason = "payment_declined"
	ReasonInsufficientFunds CancelReason = "insufficient_funds"
	ReasonCustomerRequest   CancelReason = "customer_request"
	ReasonTimeout           CancelReason = "timeout"
	// ReasonPriceChanged: the reservation's prices are not the ones the order was
	// quoted at (a price changed in between), so the quoted total is not charged.
	ReasonPriceChanged CancelReason = "price_changed"
)

// ParseCancelReason reads a stored reason; "" is ReasonNone.
func ParseCancelReason(s string) (CancelReason, error) {
	switch r := CancelReason(s); r {
	case ReasonNone, ReasonOutOfStock, ReasonPaymentDeclined, ReasonInsufficientFunds, ReasonCustomerRequest, ReasonTimeout,
		ReasonPriceChanged:
		return r, nil
	}
	return "", fmt.Errorf("unknown cancel reason %q", s)
}

// PaymentMethod is one of the Stripe test payment methods the payments service
// processes (docs/contract.md).
type PaymentMethod string

// The payment methods accepted.
const (
	// PaymentVisa always succeeds.
	PaymentVisa PaymentMethod = "pm_card_visa"
	// PaymentDeclined is always declined (payment_declined).
	PaymentDeclined PaymentMethod = "pm_card_chargeDeclined"
	// PaymentInsufficientFunds is declined for insufficient funds.
	PaymentInsufficientFunds PaymentMethod = "pm_card_chargeDeclinedInsufficientFunds"
)

// PaymentMethods lists the accepted methods.
var PaymentMethods = []PaymentMethod{PaymentVisa, PaymentDeclined, PaymentInsufficientFunds}

// ParsePaymentMethod reads a payment method. It returns an apperr.Invalid error naming
// the accepted ones.
func ParsePaymentMethod(s string) (PaymentMethod, error) {
	if s == "" {
		return "", apperr.E(apperr.Invalid, "is required")
	}
	if m := PaymentMethod(s); slices.Contains(PaymentMethods, m) {
		return m, nil
	}
	names := make([]string, len(PaymentMethods))
	for i, m := range PaymentMethods {
		names[i] = string(m)
	}
	return "", apperr.E(apperr.Invalid, "must be one of %s", strings.Join(names, ", "))
}

// Quantity is how many units of a product a line orders, 1..100.
type Quantity int

// ParseQuantity reads a quantity. It returns an apperr.Invalid error when it is out of
// range.
func ParseQuantity(n int) (Quantity, error) {
	if n < MinQuantity || n > MaxQuantity {
		return 0, apperr.E(apperr.Invalid, "must be a whole number from %d to %d", MinQuantity, MaxQuantity)
	}
	return Quantity(n), nil
}

// ParseProductID reads a product id, which must be a UUID in its canonical form.
func ParseProductID(s string) (uuid.UUID, error) {
	if s == "" {
		return uuid.Nil, apperr.E(apperr.Invalid, "is required")
	}
	id, err := uuid.Parse(s)
	// uuid.Parse also takes the urn: and braced forms; one spelling per id keeps
	// Idempotency-Key comparisons and logs simple.
	if err != nil || len(s) != 36 || id == uuid.Nil {
		return uuid.Nil, apperr.E(apperr.Invalid, "must be a product id (a UUID)")
	}
	return id, nil
}

// Line is one product in an order, priced by inventory when the order was made.
type Line struct {
	ProductID      uuid.UUID
	Quantity       Quantity
	UnitPriceCents int64
}

// Amount is the line's total in minor units.
func (l Line) Amount() int64 { return l.UnitPriceCents * int64(l.Quantity) }

// Order is a customer's order.
type Order struct {
	ID            uuid.UUID
	UserID        uuid.UUID
	Status        Status
	Lines         []Line
	TotalCents    int64
	Currency      string
	PaymentMethod PaymentMethod
	CancelReason  CancelReason // set only when Status is cancelled
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// RawLine is a line of a create request as the client sent it, before parsing.
type RawLine struct {
	ProductID string
	Quantity  int
}

// RawNewOrder is a create request as the client sent it, before parsing.
type RawNewOrder struct {
	Lines         []RawLine
	PaymentMethod string
}

// WantedLine is a parsed line of a create request: a product and a quantity, not yet
// priced.
type WantedLine struct {
	ProductID uuid.UUID
	Quantity  Quantity
}

// NewOrder is a parsed create request: what a customer wants to buy and how they pay.
// Prices are not part of it: they come from inventory, never from the client.
type NewOrder struct {
	Lines         []WantedLine
	PaymentMethod PaymentMethod
}

// ParseNewOrder turns a create request into a NewOrder, collecting every invalid
// field into one apperr.Invalid error. Fields are named as the client sends them
// (items, items[2].quantity, payment_method). A product on two lines is refused
// rather than merged: the client meant one of the two quantities, or their sum, and
// guessing which would charge for something the client did not ask for. The indices
// of the lines are kept as sent, so inventory's field errors (items[i].product_id for
// an unknown product) name the client's own lines.
func ParseNewOrder(raw RawNewOrder) (NewOrder, error) {
	var f apperr.Fields
	var n NewOrder
	switch {
	case len(raw.Lines) < MinLines:
		f.Add("items", fmt.Sprintf("must have from %d to %d lines", MinLines, MaxLines))
	case len(raw.Lines) > MaxLines:
		// The lines themselves are not checked: the error list stays short however
		// long the request.
		f.Add("items", fmt.Sprintf("must have from %d to %d lines; this has %d", MinLines, MaxLines, len(raw.Lines)))
	default:
		seen := make(map[uuid.UUID]int, len(raw.Lines))
		for i, l := range raw.Lines {
			field := fmt.Sprintf("items[%d]", i)
			pid, err := ParseProductID(l.ProductID)
			if err != nil {
				f.Add(field+".product_id", message(err))
			} else if first, dup := seen[pid]; dup {
				f.Add(field+".product_id", fmt.Sprintf("is already ordered on items[%d]; order each product on one line", first))
			} else {
				seen[pid] = i
			}
			q, err := ParseQuantity(l.Quantity)
			if err != nil {
				f.Add(field+".quantity", message(err))
			}
			n.Lines = append(n.Lines, WantedLine{ProductID: pid, Quantity: q})
		}
	}
	m, err := ParsePaymentMethod(raw.PaymentMethod)
	if err != nil {
		f.Add("payment_method", message(err))
	}
	n.PaymentMethod = m
	if err := f.Err(); err != nil {
		return NewOrder{}, err
	}
	return n, nil
}

// Request is the create request the order was made from: its lines and payment
// method, without prices.
func (o Order) Request() NewOrder {
	n := NewOrder{PaymentMethod: o.PaymentMethod, Lines: make([]WantedLine, len(o.Lines))}
	for i, l := range o.Lines {
		n.Lines[i] = WantedLine{ProductID: l.ProductID, Quantity: l.Quantity}
	}
	return n
}

// Fingerprint identifies what the request asks for, whatever the JSON spelling or the
// order of its lines: two requests with the same Idempotency-Key must have the same
// fingerprint to be the same request.
func (n NewOrder) Fingerprint() string {
	lines := slices.Clone(n.Lines)
	slices.SortFunc(lines, func(a, b WantedLine) int { return strings.Compare(a.ProductID.String(), b.ProductID.String()) })
	h := sha256.New()
	fmt.Fprintf(h, "payment_method=%s\n", n.PaymentMethod)
	for _, l := range lines {
		fmt.Fprintf(h, "%s=%d\n", l.ProductID, l.Quantity)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Quote is inventory's pricing of the wanted lines, in their order.
type Quote struct {
	Lines      []Line
	TotalCents int64
	Currency   string
}

// IdempotentID is the id of the order a user creates with an Idempotency-Key: the
// same user and key always name the same order, so a request that is repeated after
// its first attempt died half-way finds the order the first one made instead of making
// a second.
func IdempotentID(userID uuid.UUID, key string) uuid.UUID {
	return uuid.NewSHA1(idempotencyNamespace, []byte(userID.String()+"\x00"+key))
}

// idempotencyNamespace is the UUID namespace of IdempotentID (a random constant).
var idempotencyNamespace = uuid.MustParse("5b0f5b8e-1f0c-4d39-9a52-0c7f2d1e6a43")

// KeyClaimState is what claiming an Idempotency-Key found.
type KeyClaimState int

// The outcomes of claiming an Idempotency-Key.
const (
	// KeyClaimNew: the key is the caller's to run the request with (a first request,
	// or the take-over of one whose claim ran out without an answer).
	KeyClaimNew KeyClaimState = iota
	// KeyClaimReplay: the key has a stored answer to replay.
	KeyClaimReplay
	// KeyClaimMismatch: the key was used with a different request.
	KeyClaimMismatch
	// KeyClaimBusy: another request with the key is running; ask again shortly.
	KeyClaimBusy
)

// KeyClaim is the result of claiming an Idempotency-Key; Status, Body and Location
// (the stored answer) are set for KeyClaimReplay.
type KeyClaim struct {
	State    KeyClaimState
	Status   int
	Body     []byte
	Location string
}

// message is the client-facing text of a parser's error.
func message(err error) string {
	var e *apperr.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "is invalid"
}
