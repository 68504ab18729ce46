// Package intake turns the domain events notifications consumes into notifications:
// the events.Handler of its consumer group. It reads user.registered, order.confirmed,
// order.cancelled, payment.refunded and report.daily_sales with their producers'
// published payload types (userevents, orderevents, paymentevents), so there is one
// declaration of each wire shape, and parses them into domain values; data that does
// not fit is a poison message (events.ErrMalformed) and goes to the DLQ at once.
package intake

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/bazaar-shop/bazaar/pkg/events"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
	"github.com/bazaar-shop/bazaar/services/orders/orderevents"
	"github.com/bazaar-shop/bazaar/services/payments/paymentevents"
	"github.com/bazaar-shop/bazaar/services/users/userevents"
)

// Streams are the streams notifications reads.
var Streams = []string{userevents.Stream, orderevents.Stream, paymentevents.Stream}

// Options are the handler's settings.
type Options struct {
	// ReportEmail is the address the daily sales report goes to: a registered user's
	// (the admin's). Empty means reports are not mailed: report.daily_sales is then
	// acknowledged and ignored like any type not acted on.
	ReportEmail string
}

// Store is what the handler writes, inside the consumer's transaction.
type Store interface {
	// SaveRecipient records or updates a recipient.
	SaveRecipient(ctx context.Context, r notification.Recipient) error
	// Recipient is the recipient of user, or an error wrapping
	// notification.ErrUnknownRecipient.
	Recipient(ctx context.Context, user uuid.UUID) (notification.Recipient, error)
	// RecipientByEmail is the recipient whose address is email, compared without
	// regard to case, or an error wrapping notification.ErrUnknownRecipient.
	RecipientByEmail(ctx context.Context, email string) (notification.Recipient, error)
	// Add writes a queued notification, reporting false when its event already has one.
	Add(ctx context.Context, n notification.Notification) (bool, error)
}

// Handler is the consumer's handler: each event is applied through the Store that
// inTx makes of the consumer's transaction, so the notification row, the recipient
// and the inbox row commit together. now is the clock.
func Handler(inTx func(pgx.Tx) Store, now func() time.Time, opts Options) events.Handler {
	return func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
		return Apply(ctx, inTx(tx), e, now(), opts)
	}
}

// Apply turns one event into its effects at time at. It fails with an error wrapping
// events.ErrMalformed when the event's data does not fit its type, with one wrapping
// notification.ErrUnknownRecipient when an order or payment event names a user not
// seen yet or a report's address (opts.ReportEmail) is not a registered user's yet,
// and with others when the store fails.
func Apply(ctx context.Context, s Store, e events.Envelope, at time.Time, opts Options) error {
	var (
		n   notification.Notification
		err error
	)
	// The types acted on; every other type on those streams is acknowledged and ignored.
	switch e.Type {
	case string(userevents.TypeRegistered):
		n, err = registered(ctx, s, e, at)
	case string(orderevents.TypeConfirmed):
		n, err = confirmed(ctx, s, e, at)
	case string(orderevents.TypeCancelled):
		n, err = cancelled(ctx, s, e, at)
	case string(paymentevents.TypeRefunded):
		n, err = refunded(ctx, s, e, at)
	case string(orderevents.TypeDailySales):
		if opts.ReportEmail == "" {
			return nil // reports are not mailed (REPORT_EMAIL is off)
		}
		n, err = dailySales(ctx, s, e, opts.ReportEmail, at)
	default:
		return nil // another consumer's business (order.created, payment.captured, ...)
	}
	if err != nil {
		return err
	}
	// false: the event already has its notification (the inbox should have said so;
	// the unique event_id is the second guard). Nothing more to do either way.
	_, err = s.Add(ctx, n)
	return err
}

func registered(ctx context.Context, s Store, e events.Envelope, at time.Time) (notification.Notification, error) {
	var d userevents.Registered
	if err := e.Decode(&d); err != nil {
		return notification.Notification{}, err
	}
	r, err := notification.NewRecipient(d.UserID, d.Email, d.Name)
	if err != nil {
		return notification.Notification{}, malformed(e, err)
	}
	if err := s.SaveRecipient(ctx, r); err != nil {
		return notification.Notification{}, err
	}
	return notification.New(e.ID, notification.KindWelcome, r, notification.Details{}, at), nil
}

func confirmed(ctx context.Context, s Store, e events.Envelope, at time.Time) (notification.Notification, error) {
	var d orderevents.Confirmed
	if err := e.Decode(&d); err != nil {
		return notification.Notification{}, err
	}
	if d.OrderID == uuid.Nil {
		return notification.Notification{}, malformed(e, errors.New("order_id is required"))
	}
	total, err := notification.NewMoney(d.TotalCents, d.Currency)
	if err != nil {
		return notification.Notification{}, malformed(e, err)
	}
	details := notification.Details{OrderID: d.OrderID, Total: total}
	for i, it := range d.Items {
		price, err := notification.NewMoney(it.UnitPriceCents, d.Currency)
		if err != nil || it.Quantity < 1 || it.ProductID == uuid.Nil {
			return notification.Notification{}, malformed(e, fmt.Errorf("items[%d] needs a product_id, a quantity of at least 1 and a unit price", i))
		}
		details.Items = append(details.Items, notification.Item{ProductID: it.ProductID, Quantity: it.Quantity, UnitPrice: price})
	}
	return forRecipient(ctx, s, e, d.UserID, notification.KindOrderConfirmed, details, at)
}

func cancelled(ctx context.Context, s Store, e events.Envelope, at time.Time) (notification.Notification, error) {
	var d orderevents.Cancelled
	if err := e.Decode(&d); err != nil {
		return notification.Notification{}, err
	}
	if d.OrderID == uuid.Nil {
		return notification.Notification{}, malformed(e, errors.New("order_id is required"))
	}
	total, err := notification.NewMoney(d.TotalCents, d.Currency)
	if err != nil {
		return notification.Notification{}, malformed(e, err)
	}
	// An unknown reason is kept and worded neutrally (CancelReason.Words): orders
	// may add reasons before this service learns them.
	details := notification.Details{OrderID: d.OrderID, Total: total, Reason: notification.CancelReason(d.Reason)}
	return forRecipient(ctx, s, e, d.UserID, notification.KindOrderCancelled, details, at)
}

func refunded(ctx context.Context, s Store, e events.Envelope, at time.Time) (notification.Notification, error) {
	var d paymentevents.Refunded
	if err := e.Decode(&d); err != nil {
		return notification.Notification{}, err
	}
	if d.PaymentID == uuid.Nil || d.OrderID == uuid.Nil {
		return notification.Notification{}, malformed(e, errors.New("payment_id and order_id are required"))
	}
	amount, err := notification.NewMoney(d.AmountCents, d.Currency)
	if err != nil {
		return notification.Notification{}, malformed(e, err)
	}
	details := notification.Details{OrderID: d.OrderID, PaymentID: d.PaymentID, Refunded: amount}
	return forRecipient(ctx, s, e, d.UserID, notification.KindPaymentRefunded, details, at)
}

func dailySales(ctx context.Context, s Store, e events.Envelope, to string, at time.Time) (notification.Notification, error) {
	var d orderevents.DailySales
	if err := e.Decode(&d); err != nil {
		return notification.Notification{}, err
	}
	day, err := time.Parse(time.DateOnly, d.Day)
	if err != nil {
		return notification.Notification{}, malformed(e, fmt.Errorf("day %q is not a date (YYYY-MM-DD)", d.Day))
	}
	if d.From.IsZero() || !d.To.After(d.From) {
		return notification.Notification{}, malformed(e, errors.New("from and to are required, to after from"))
	}
	if d.Orders < 0 || d.Confirmed < 0 || d.Cancelled < 0 || d.Confirmed+d.Cancelled > d.Orders {
		return notification.Notification{}, malformed(e, fmt.Errorf("counts %d orders, %d confirmed, %d cancelled do not add up",
			d.Orders, d.Confirmed, d.Cancelled))
	}
	r := notification.SalesReport{Day: day, From: d.From.UTC(), To: d.To.UTC(),
		Orders: d.Orders, Confirmed: d.Confirmed, Cancelled: d.Cancelled}
	for i, m := range d.Revenue {
		amount, err := notification.NewMoney(m.AmountCents, m.Currency)
		if err != nil {
			return notification.Notification{}, malformed(e, fmt.Errorf("revenue[%d]: %w", i, err))
		}
		r.Revenue = append(r.Revenue, amount)
	}
	for i, p := range d.TopProducts {
		revenue, err := notification.NewMoney(p.RevenueCents, p.Currency)
		if err != nil || p.Quantity < 1 || p.ProductID == uuid.Nil {
			return notification.Notification{}, malformed(e, fmt.Errorf("top_products[%d] needs a product_id, a quantity of at least 1 and its revenue", i))
		}
		r.TopProducts = append(r.TopProducts, notification.ProductSales{ProductID: p.ProductID, Quantity: p.Quantity, Revenue: revenue})
	}
	// The admin is a user like any other, registered through users, so the address
	// is looked up in the same projection. Not there (yet) is retried like an order
	// event for a user not seen yet (see forRecipient): the registration may be on
	// its way, and if it never comes — REPORT_EMAIL names no user — the report ends
	// in the DLQ, where it can be replayed once that user exists, rather than being
	// dropped.
	admin, err := s.RecipientByEmail(ctx, to)
	if err != nil {
		return notification.Notification{}, err
	}
	return notification.New(e.ID, notification.KindDailySalesReport, admin, notification.Details{Sales: &r}, at), nil
}

// forRecipient makes the notification for user, whose address comes from the local
// recipients projection.
//
// A user not in the projection yet is an error, not a skip: the streams are not
// ordered with one another, so an order event can overtake its user's user.registered
// (events.users lagging, or replayed from the DLQ). Failing leaves the entry pending;
// the consumer retries it, by when the registration has usually been handled. If it
// never is (that event was lost: trimmed, or dead-lettered itself), the entry goes to
// events.dlq after its last delivery, where an operator sees it and can replay it once
// the registration has been re-published — rather than the e-mail silently never
// being sent.
func forRecipient(ctx context.Context, s Store, e events.Envelope, user uuid.UUID, kind notification.Kind, d notification.Details, at time.Time) (notification.Notification, error) {
	if user == uuid.Nil {
		return notification.Notification{}, malformed(e, errors.New("user_id is required"))
	}
	r, err := s.Recipient(ctx, user)
	if err != nil {
		return notification.Notification{}, err
	}
	return notification.New(e.ID, kind, r, d, at), nil
}

func malformed(e events.Envelope, err error) error {
	return fmt.Errorf("%w: %s data: %w", events.ErrMalformed, e.Type, err)
}
