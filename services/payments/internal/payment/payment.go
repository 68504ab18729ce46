// Package payment is the payments service's domain: charging an order's amount with a
// payment method, once, and refunding it, once.
//
// A payment belongs to one order (the order id is the charge's idempotency key) and
// moves pending → captured | declined, and captured → refunded. Input is parsed into
// typed values (ChargeRequest, Money, Method) before it reaches the Service.
//
// # Charging exactly once
//
// The processor is the outside world: a call to it cannot be part of a database
// transaction, and it may take up to PROCESSOR_TIMEOUT to answer, so nothing of the
// database (a row lock, an open transaction, a pool connection) is held while it is
// asked. A charge is recorded in three steps:
//
//  1. a pending payment is inserted in its own short transaction, unless the order
//     already has one (the order id is unique), and read back;
//  2. while it is pending, the processor is called, with no transaction open, with
//     the payment's id as its idempotency key and the request stored with it;
//  3. the outcome and its event are written in one short transaction by a
//     conditional update (WHERE status = 'pending'). If that finds the payment moved
//     on already, another request recorded the outcome first: nothing is written and
//     the stored payment is the answer.
//
// Concurrent identical charges may all reach step 2; that is safe because a Processor
// must be idempotent on the key (as Stripe's Idempotency-Key is): every call answers
// the first outcome and money moves once. Step 3 stores one outcome and one event. A
// refund works the same way: it calls the processor with the key "refund_" + payment
// id while the payment is captured, then records it WHERE status = 'captured'.
//
// A process that dies during step 2 or before step 3 commits, or a processor that
// fails, leaves a pending row behind. Whoever touches that payment next — the saga
// retrying the same charge, looking it up, or refunding it — runs steps 2 and 3 again,
// and so does a sweep every minute for the payments pending for over a minute, in
// case nobody does (Service.SettlePending). So a look-up of a pending payment
// finishes the charge the saga asked for (the pending row records a valid request)
// rather than guessing its outcome, and a refund of one first learns whether money
// was taken. While the processor cannot be
// reached these answer 503 (504 past PROCESSOR_TIMEOUT) and the payment stays
// pending; nothing is lost.
//
// An order refunded before any charge arrived is voided: a charge for it arriving
// later is ErrVoided. The void and the first pending insert take the same per-order
// lock, so exactly one of them wins. A void is kept for a retention (VOID_RETENTION,
// 30 days; see Service.ForgetVoids), long past the moment any charge request sent
// before it could still arrive.
package payment

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

// Status is where a payment is in its life.
type Status string

// The statuses. Pending is internal: a charge whose processor outcome is not recorded
// yet; clients see the other three.
const (
	StatusPending  Status = "pending"
	StatusCaptured Status = "captured"
	StatusDeclined Status = "declined"
	StatusRefunded Status = "refunded"
)

// DeclineCode says why a charge was declined. Each is also the problem code of the
// 402 answer to the charge (urn:bazaar:problem:<code>), which the saga turns into the
// order's cancel_reason.
type DeclineCode string

// The decline codes.
const (
	DeclinePaymentDeclined   DeclineCode = "payment_declined"
	DeclineInsufficientFunds DeclineCode = "insufficient_funds"
)

// Err is the error a declined charge answers with: a 402 whose reason is the decline
// code, which the saga branches on.
func (c DeclineCode) Err() error {
	msg := "the card was declined"
	if c == DeclineInsufficientFunds {
		msg = "the card was declined: insufficient funds"
	}
	return apperr.R(apperr.PaymentRequired, string(c), msg)
}

// Valid reports whether c is one of the decline codes.
func (c DeclineCode) Valid() bool {
	return c == DeclinePaymentDeclined || c == DeclineInsufficientFunds
}

// The errors of the domain. Each is an *apperr.Error, so it renders as the right
// problem response and callers match it with errors.Is.
var (
	// ErrNotFound means the order has no payment.
	ErrNotFound = apperr.E(apperr.NotFound, "no payment for this order")
	// ErrVoided means the order was refunded before any charge arrived (the saga gave
	// up on it), so it can no longer be charged.
	ErrVoided = apperr.R(apperr.Conflict, "order_voided", "this order was cancelled before it was charged")
	// ErrKeyReused means a charge's Idempotency-Key was used before with another request.
	ErrKeyReused = &apperr.Error{
		Code:    apperr.Invalid,
		Message: "this Idempotency-Key was already used with a different request",
		Fields:  []apperr.FieldError{{Field: "Idempotency-Key", Message: "was already used with a different request"}},
	}
	// ErrBadTransition means a payment was asked to move where it cannot go (a bug:
	// the Service only asks for allowed moves).
	ErrBadTransition = apperr.E(apperr.Conflict, "the payment cannot change that way")
)

// Limits on input.
const (
	// MaxAmountCents bounds a charge (a billion in major units): far above any basket,
	// and well inside the integers JSON clients read exactly (2^53).
	MaxAmountCents int64 = 100_000_000_000
)

// ParseID reads a UUID such as an order or user id. It returns an apperr.Invalid error.
func ParseID(s string) (uuid.UUID, error) {
	if s == "" {
		return uuid.Nil, invalid("is required")
	}
	id, err := uuid.Parse(s)
	// uuid.Parse also takes "urn:uuid:" and braced forms; the API speaks only the
	// canonical 36-character one.
	if err != nil || len(s) != 36 || id == uuid.Nil {
		return uuid.Nil, invalid("must be a UUID")
	}
	return id, nil
}

// Currency is an ISO 4217 code, upper case: USD.
type Currency string

// ParseCurrency reads a three-letter currency code in either case. It returns an
// apperr.Invalid error.
func ParseCurrency(s string) (Currency, error) {
	if s == "" {
		return "", invalid("is required")
	}
	up := strings.ToUpper(s)
	if len(up) != 3 || strings.Trim(up, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		return "", invalid("must be a three-letter currency code such as USD")
	}
	return Currency(up), nil
}

func (c Currency) String() string { return string(c) }

// ParseAmount reads an amount in minor units: 1 to MaxAmountCents. It returns an
// apperr.Invalid error.
func ParseAmount(cents int64) (int64, error) {
	switch {
	case cents <= 0:
		return 0, invalid("must be greater than 0")
	case cents > MaxAmountCents:
		return 0, invalid("must be at most %d", MaxAmountCents)
	}
	return cents, nil
}

// Money is an amount in a currency's minor units. Never a float.
type Money struct {
	Cents    int64
	Currency Currency
}

// Method is a payment method the processor knows. They follow Stripe's test payment
// methods (docs/contract.md).
type Method string

// The payment methods.
const (
	// MethodVisa is a card that is always charged.
	MethodVisa Method = "pm_card_visa"
	// MethodDeclined is a card that is always declined (payment_declined).
	MethodDeclined Method = "pm_card_chargeDeclined"
	// MethodInsufficientFunds is a card declined for insufficient funds.
	MethodInsufficientFunds Method = "pm_card_chargeDeclinedInsufficientFunds"
)

// ParseMethod reads a payment method; an unknown one is an apperr.Invalid error.
func ParseMethod(s string) (Method, error) {
	switch m := Method(s); m {
	case MethodVisa, MethodDeclined, MethodInsufficientFunds:
		return m, nil
	case "":
		return "", invalid("is required")
	}
	return "", invalid("is not a known payment method (try %s)", MethodVisa)
}

// ParseKey reads a charge's Idempotency-Key, which the contract makes the order id:
// the key must equal order (when order is known). It returns an apperr.Invalid error.
func ParseKey(s string, order uuid.UUID) (string, error) {
	if s == "" {
		return "", invalid("is required: send the order id")
	}
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 || (order != uuid.Nil && id != order) {
		return "", invalid("must equal order_id")
	}
	return id.String(), nil
}

// ChargeRequest is a valid request to charge an order.
type ChargeRequest struct {
	OrderID uuid.UUID
	UserID  uuid.UUID
	Amount  Money
	Method  Method
}

// Fingerprint identifies the request's content: a retry carries the same fingerprint,
// a different request under the same key does not. It is taken over the parsed values,
// so spelling differences that mean the same charge (JSON whitespace, field order, the
// currency's case) do not count as different.
func (c ChargeRequest) Fingerprint() []byte {
	canonical := strings.Join([]string{
		c.OrderID.String(), c.UserID.String(), strconv.FormatInt(c.Amount.Cents, 10),
		c.Amount.Currency.String(), string(c.Method),
	}, "\n")
	sum := sha256.Sum256([]byte(canonical))
	return sum[:]
}

// Payment is the charge of one order.
type Payment struct {
	ID      uuid.UUID
	OrderID uuid.UUID
	UserID  uuid.UUID
	Amount  Money
	Method  Method
	Status  Status
	// DeclineCode is set when (and only when) the payment is declined.
	DeclineCode DeclineCode
	// ProcessorRef is the processor's id for the charge, once it has answered.
	ProcessorRef string
	// IdempotencyKey is the key the charge was made with (the order id), and
	// RequestHash the Fingerprint of its request: a later request with the key must
	// have the same fingerprint.
	IdempotencyKey string
	RequestHash    []byte
	CreatedAt      time.Time
	SettledAt      time.Time // when the processor's outcome was recorded; zero while pending
	RefundedAt     time.Time // zero unless refunded
}

// NewPending is the payment a charge request starts as, before the processor is asked.
func NewPending(id uuid.UUID, c ChargeRequest, now time.Time) Payment {
	return Payment{
		ID:             id,
		OrderID:        c.OrderID,
		UserID:         c.UserID,
		Amount:         c.Amount,
		Method:         c.Method,
		Status:         StatusPending,
		IdempotencyKey: c.OrderID.String(),
		RequestHash:    c.Fingerprint(),
		CreatedAt:      now,
	}
}

// Request is the charge request the payment was made from.
func (p Payment) Request() ChargeRequest {
	return ChargeRequest{OrderID: p.OrderID, UserID: p.UserID, Amount: p.Amount, Method: p.Method}
}

// Matches reports whether c is the request the payment was made from.
func (p Payment) Matches(c ChargeRequest) bool { return bytes.Equal(p.RequestHash, c.Fingerprint()) }

// Declined is nil unless the payment was declined, when it is the decline's error.
func (p Payment) Declined() error {
	if p.Status != StatusDeclined {
		return nil
	}
	return p.DeclineCode.Err()
}

// Settle records the processor's outcome of a pending payment. It returns
// ErrBadTransition for a payment that is not pending or an outcome that is neither a
// capture nor a decline with a known code.
func (p Payment) Settle(o Outcome, at time.Time) (Payment, error) {
	if p.Status != StatusPending {
		return p, fmt.Errorf("settle a %s payment: %w", p.Status, ErrBadTransition)
	}
	switch {
	case o.Status == StatusCaptured:
		p.DeclineCode = ""
	case o.Status == StatusDeclined && o.DeclineCode.Valid():
		p.DeclineCode = o.DeclineCode
	default:
		return p, fmt.Errorf("settle with outcome %+v: %w", o, ErrBadTransition)
	}
	p.Status = o.Status
	p.ProcessorRef = o.Reference
	p.SettledAt = at
	return p, nil
}

// Refund records that a captured payment was refunded. It returns ErrBadTransition for
// any other payment.
func (p Payment) Refund(at time.Time) (Payment, error) {
	if p.Status != StatusCaptured {
		return p, fmt.Errorf("refund a %s payment: %w", p.Status, ErrBadTransition)
	}
	p.Status = StatusRefunded
	p.RefundedAt = at
	return p, nil
}

func invalid(format string, args ...any) error { return apperr.E(apperr.Invalid, format, args...) }
