// Package notification is the notifications service's domain: what a notification is
// (a kind of e-mail owed to a user because of a domain event: a customer, or the
// admin for the daily sales report), how it is rendered, and the rules of its life —
// queued, then sent, or failed once retries run out. The Sender delivers one
// notification (the email:send task), the Dispatcher makes sure every queued
// notification has its task, and the Service answers the HTTP API's reads. The small
// interfaces they need (stores, a Mailer, an Enqueuer) are declared here and
// implemented by the adapters.
package notification

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

// Kind is what a notification tells its recipient.
type Kind string

// The kinds, one per event notifications reacts to.
const (
	KindWelcome         Kind = "welcome"          // user.registered
	KindOrderConfirmed  Kind = "order_confirmed"  // order.confirmed
	KindOrderCancelled  Kind = "order_cancelled"  // order.cancelled
	KindPaymentRefunded Kind = "payment_refunded" // payment.refunded
	// KindDailySalesReport is the orders service's report of one UTC day, sent to
	// the admin (report.daily_sales).
	KindDailySalesReport Kind = "daily_sales_report"
)

// Kinds lists every kind.
var Kinds = []Kind{KindWelcome, KindOrderConfirmed, KindOrderCancelled, KindPaymentRefunded, KindDailySalesReport}

// Status is where a notification is in its life.
type Status string

// The statuses. A notification is queued until its e-mail is handed to the mail server
// (sent), or the server refuses it for good or the Sender gives up on it (failed).
const (
	StatusQueued Status = "queued"
	StatusSent   Status = "sent"
	StatusFailed Status = "failed"
)

// Errors of the domain.
var (
	// ErrNotFound is a notification that does not exist.
	ErrNotFound = apperr.E(apperr.NotFound, "notification not found")
	// ErrUnknownRecipient is a user (or, for a report, an e-mail address) whose
	// user.registered has not been seen (yet).
	ErrUnknownRecipient = errors.New("recipient not known yet")
	// ErrUndeliverable means the mail server refused the message for good (a 5xx
	// reply): retrying cannot help.
	ErrUndeliverable = errors.New("the mail server refused the message")
	// ErrGaveUp means the message could not be handed to the mail server for longer
	// than the Sender waits (GiveUp): retrying is over.
	ErrGaveUp = errors.New("gave up sending")
	// ErrAlreadyEnqueued means the notification's email:send task already exists.
	ErrAlreadyEnqueued = errors.New("the notification's task is already enqueued")
)

// Recipient is a user e-mails go to: the local projection of the users service's
// user, kept from user.registered.
type Recipient struct {
	UserID uuid.UUID
	Email  string // a bare address, ann@example.com
	Name   string
}

// maxName bounds a name as rendered; longer names are cut (the users service limits
// them anyway).
const maxName = 200

// NewRecipient checks a recipient: a user id, a single bare e-mail address, and a
// name (control characters dropped; it may be empty). It fails with a message naming
// the bad field.
func NewRecipient(userID uuid.UUID, email, name string) (Recipient, error) {
	if userID == uuid.Nil {
		return Recipient{}, errors.New("user_id is required")
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || addr.Name != "" {
		return Recipient{}, fmt.Errorf("email %q is not a bare e-mail address", email)
	}
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, name)
	name = strings.Join(strings.Fields(name), " ")
	if r := []rune(name); len(r) > maxName {
		name = string(r[:maxName])
	}
	return Recipient{UserID: userID, Email: email, Name: name}, nil
}

// Item is one line of an order.
type Item struct {
	ProductID uuid.UUID
	Quantity  int
	UnitPrice Money
}

// Total is the line's price.
func (i Item) Total() Money {
	return Money{Cents: i.UnitPrice.Cents * int64(i.Quantity), Currency: i.UnitPrice.Currency}
}

// Details are what a notification's e-mail says: the template data, kept with the
// notification so that the e-mail can be rendered (again) without the event.
type Details struct {
	Name      string    // the recipient's name
	OrderID   uuid.UUID // order_confirmed, order_cancelled, payment_refunded
	PaymentID uuid.UUID // payment_refunded
	Total     Money     // the order's total: order_confirmed, order_cancelled
	Items     []Item    // order_confirmed
	Reason    CancelReason
	Refunded  Money        // payment_refunded
	Sales     *SalesReport // daily_sales_report; nil for every other kind
}

// CancelReason is why an order was cancelled (the orders service's cancel_reason).
type CancelReason string

// The cancel reasons the orders service gives.
const (
	ReasonOutOfStock        CancelReason = "out_of_stock"
	ReasonPaymentDeclined   CancelReason = "payment_declined"
	ReasonInsufficientFunds CancelReason = "insufficient_funds"
	ReasonCustomerRequest   CancelReason = "customer_request"
	ReasonTimeout           CancelReason = "timeout"
	ReasonPriceChanged      CancelReason = "price_changed"
)

// Words says the reason to a customer, completing "We cancelled it because ...". A
// reason this service does not know yet (orders added one) gets a neutral wording
// rather than a failure.
func (r CancelReason) Words() string {
	switch r {
	case ReasonOutOfStock:
		return "some of the items were out of stock"
	case ReasonPaymentDeclined:
		return "the payment was declined"
	case ReasonInsufficientFunds:
		return "the card had insufficient funds"
	case ReasonCustomerRequest:
		return "you asked us to cancel it"
	case ReasonTimeout:
		return "we could not complete it in time"
	case ReasonPriceChanged:
		return "a price changed while we were placing it, so we did not charge the price we quoted"
	}
	return "we could not complete it"
}

// Notification is one e-mail owed to a user because of one event.
type Notification struct {
	ID        uuid.UUID
	EventID   uuid.UUID // the event it came from; one notification per event
	Kind      Kind
	UserID    uuid.UUID
	Recipient string // the e-mail address
	Subject   string
	Details   Details
	Status    Status
	Attempts  int    // SMTP attempts that got an answer
	Error     string // the last failure, "" when none
	CreatedAt time.Time
	SentAt    time.Time // zero until sent
}

// Handled is an event the consumer handled, as its inbox remembers it (for
// INBOX_RETENTION): whether or not it made a notification, it was applied once, then.
type Handled struct {
	EventID   uuid.UUID
	Stream    string
	Type      string
	HandledAt time.Time
}

// New is a queued notification of kind for the event eventID, to r, made at at. Its
// subject is fixed now, from the details, so that the list shows what the e-mail says.
func New(eventID uuid.UUID, kind Kind, r Recipient, d Details, at time.Time) Notification {
	d.Name = r.Name
	return Notification{
		ID:        uuid.New(),
		EventID:   eventID,
		Kind:      kind,
		UserID:    r.UserID,
		Recipient: r.Email,
		Subject:   subject(kind, d),
		Details:   d,
		Status:    StatusQueued,
		// Postgres keeps microseconds: round here so that the value stored is the
		// value held.
		CreatedAt: at.UTC().Truncate(time.Microsecond),
	}
}

func subject(kind Kind, d Details) string {
	switch kind {
	case KindWelcome:
		if d.Name == "" {
			return "Welcome to Bazaar"
		}
		return "Welcome to Bazaar, " + d.Name
	case KindOrderConfirmed:
		return "Your order " + short(d.OrderID) + " is confirmed"
	case KindOrderCancelled:
		return "Your order " + short(d.OrderID) + " was cancelled"
	case KindPaymentRefunded:
		return "Your refund of " + d.Refunded.String() + " is on its way"
	case KindDailySalesReport:
		if d.Sales != nil {
			return "Bazaar daily sales for " + d.Sales.DayString()
		}
	}
	return "A message from Bazaar"
}

// short is the last block's tail of an id, the way a customer reads an order number.
// Not the first block: Bazaar's ids are UUIDv7, whose first bits are a timestamp, so
// orders placed close together would share it; the tail is random.
func short(id uuid.UUID) string { s := id.String(); return strings.ToUpper(s[len(s)-8:]) }
