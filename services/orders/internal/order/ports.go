package order

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/page"
)

// Store keeps orders, their sagas and step logs, and the outbox. Implementations
// translate their own errors into the domain's: the ones named below, or an
// apperr.Unavailable error when the storage cannot be reached.
type Store interface {
	// CreateOrder stores o (pending), its lines, its saga s and the order.created
	// event in one transaction, and returns o and true. The saga is created held by
	// lease (its Owner and TTL; the Token is filled in), so that no recovery pass can
	// take it before its creator drives it; a lease with no Owner creates it free.
	// When an order with o's id exists already (an Idempotency-Key repeated after its
	// first request died half-way) it stores nothing and returns that order and false.
	CreateOrder(ctx context.Context, o Order, s Saga, lease Lease) (Order, Lease, bool, error)
	// Order returns the order with its lines, or ErrNotFound.
	Order(ctx context.Context, id uuid.UUID) (Order, error)
	// OrdersByUser returns up to p.Limit+1 of the user's orders, newest first, after
	// p.After.
	OrdersByUser(ctx context.Context, userID uuid.UUID, p page.Request) ([]Order, error)
	// ClaimSaga takes the saga's lease for ttl on behalf of owner, so that no other
	// worker drives it meanwhile, and returns the lease with the order and saga. It
	// returns ErrNotFound, ErrSagaDone, or ErrSagaBusy while another lease is live.
	ClaimSaga(ctx context.Context, id uuid.UUID, owner string, ttl time.Duration) (Lease, Order, Saga, error)
	// Apply stores c in one transaction: the saga, the order's status, the step log
	// entry and c's event; it renews the lease, or gives it back when c finishes the
	// saga (Continue then does not release it). It returns ErrLeaseLost when the lease
	// was taken over.
	Apply(ctx context.Context, l Lease, c Change) error
	// ReleaseSaga gives the lease back; releasing a lost lease does nothing.
	ReleaseSaga(ctx context.Context, l Lease) error
	// SagasToRecover lists up to limit unfinished sagas that no one holds, those
	// left alone longest first.
	SagasToRecover(ctx context.Context, limit int) ([]uuid.UUID, error)
	// UpdateSaga runs fn on the order and saga with both locked, and stores the
	// change fn returns as Apply does (without a lease), in one transaction. It
	// returns ErrNotFound, ErrSagaBusy while a lease is live, or fn's error (storing
	// nothing).
	UpdateSaga(ctx context.Context, id uuid.UUID, fn func(Order, Saga) (Change, error)) (Change, error)
	// Sagas lists sagas in states (every unfinished one when states is empty) with
	// their orders and step logs, oldest first: up to p.Limit+1 after p.After.
	Sagas(ctx context.Context, states []SagaState, p page.Request) ([]SagaView, error)
	// Saga returns the order's saga with its order and its whole step log, oldest
	// entry first, or ErrNotFound.
	Saga(ctx context.Context, id uuid.UUID) (SagaView, error)
}

// Lease is a worker's exclusive right to drive one saga for a while. Its Token
// fences: a change is stored only while the token is still the saga's.
type Lease struct {
	OrderID uuid.UUID
	Owner   string
	Token   int64
	TTL     time.Duration
}

// Inventory is the inventory service as the saga uses it (docs/internal-api.md).
// Business answers are *apperr.Error values with a Reason; a transient failure is an
// apperr.Unavailable (not sent, or refused by an open breaker) or apperr.Timeout (sent,
// answer unknown) error, or another 5xx code.
type Inventory interface {
	// Quote prices the lines at the current prices, with no side effects. An unknown
	// product is apperr.Invalid with a field error items[i].product_id.
	Quote(ctx context.Context, lines []WantedLine) (Quote, error)
	// Reserve reserves every line for the order, or none: apperr.Conflict with Reason
	// "out_of_stock" when stock is short. Idempotent on the order id. It returns the
	// reservation's lines with the prices they were reserved at.
	Reserve(ctx context.Context, orderID uuid.UUID, lines []WantedLine) ([]Line, error)
	// Commit makes the reservation final: apperr.Conflict with Reason
	// "reservation_released" when it expired, apperr.NotFound when there is none.
	Commit(ctx context.Context, orderID uuid.UUID) error
	// Release puts the reserved (or committed) stock back; releasing twice, or a
	// reservation that never existed, succeeds.
	Release(ctx context.Context, orderID uuid.UUID) error
}

// PaymentStatus is the state of a payment at the payments service.
type PaymentStatus string

// The payment statuses.
const (
	PaymentCaptured PaymentStatus = "captured"
	PaymentRefused  PaymentStatus = "declined"
	PaymentRefunded PaymentStatus = "refunded"
)

// Payment is a payment as the payments service reports it.
type Payment struct {
	ID          uuid.UUID
	OrderID     uuid.UUID
	Status      PaymentStatus
	DeclineCode string // payment_declined or insufficient_funds when declined
}

// ChargeRequest asks payments to take an order's total.
type ChargeRequest struct {
	OrderID       uuid.UUID
	UserID        uuid.UUID
	AmountCents   int64
	Currency      string
	PaymentMethod PaymentMethod
}

// Payments is the payments service as the saga uses it (docs/internal-api.md). Errors
// are classified as for Inventory.
type Payments interface {
	// Charge charges the order once, idempotent on the order id: a declined card is
	// apperr.PaymentRequired with Reason payment_declined or insufficient_funds.
	Charge(ctx context.Context, c ChargeRequest) (Payment, error)
	// Refund gives the order's captured payment back; idempotent, and it succeeds
	// when there is nothing to refund.
	Refund(ctx context.Context, orderID uuid.UUID) (Payment, error)
	// Lookup returns the order's payment, or apperr.NotFound when there is none: how
	// a charge whose answer was lost is resolved.
	Lookup(ctx context.Context, orderID uuid.UUID) (Payment, error)
}

// StatusChange is an order's new status, published to live listeners after it is
// committed.
type StatusChange struct {
	OrderID      uuid.UUID
	Status       Status
	CancelReason CancelReason
}

// Notifier tells live listeners (the SSE stream) about status changes. It is best
// effort: what it loses, listeners re-read from the store.
type Notifier interface {
	Notify(ctx context.Context, c StatusChange)
}

// Recorder takes the saga's metrics.
type Recorder interface {
	// SagaEnded records a saga that finished with the order's final status (and the
	// cancel reason), took being the time since the order was created.
	SagaEnded(status Status, reason CancelReason, took time.Duration)
	// Alarmed records a saga that entered state stuck or compensation_failed.
	Alarmed(state SagaState)
}
