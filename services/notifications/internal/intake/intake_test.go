package intake_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/events"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/intake"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
	"github.com/bazaar-shop/bazaar/services/orders/orderevents"
	"github.com/bazaar-shop/bazaar/services/payments/paymentevents"
	"github.com/bazaar-shop/bazaar/services/users/userevents"
)

// fakeStore is the consumer's transaction in memory.
type fakeStore struct {
	recipients map[uuid.UUID]notification.Recipient
	added      []notification.Notification
	byEmail    int // RecipientByEmail calls
}

var _ intake.Store = (*fakeStore)(nil)

func newFakeStore() *fakeStore { return &fakeStore{recipients: map[uuid.UUID]notification.Recipient{}} }

func (s *fakeStore) SaveRecipient(_ context.Context, r notification.Recipient) error {
	s.recipients[r.UserID] = r
	return nil
}

func (s *fakeStore) Recipient(_ context.Context, user uuid.UUID) (notification.Recipient, error) {
	r, ok := s.recipients[user]
	if !ok {
		return r, fmt.Errorf("user %s: %w", user, notification.ErrUnknownRecipient)
	}
	return r, nil
}

func (s *fakeStore) RecipientByEmail(_ context.Context, email string) (notification.Recipient, error) {
	s.byEmail++
	for _, r := range s.recipients {
		if strings.EqualFold(r.Email, email) {
			return r, nil
		}
	}
	return notification.Recipient{}, fmt.Errorf("address %s: %w", email, notification.ErrUnknownRecipient)
}

func (s *fakeStore) Add(_ context.Context, n notification.Notification) (bool, error) {
	s.added = append(s.added, n)
	return true, nil
}

var at = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func event(typ, data string) events.Envelope {
	return events.Envelope{ID: uuid.New(), Type: typ, Source: "test", Subject: "x", Time: at, Data: []byte(data)}
}

func TestEventsBecomeNotifications(t *testing.T) {
	t.Parallel()
	s := newFakeStore()
	ctx := context.Background()
	user := uuid.New()
	order := uuid.New()
	reg := event(string(userevents.TypeRegistered), fmt.Sprintf(`{"user_id":%q,"email":"ann@example.com","name":"Ann","extra":"ignored"}`, user))
	if err := intake.Apply(ctx, s, reg, at, intake.Options{}); err != nil {
		t.Fatal(err)
	}
	if got := s.recipients[user].Email; got != "ann@example.com" {
		t.Errorf("recipient e-mail %q, want ann@example.com", got)
	}
	if got := s.recipients[user].Name; got != "Ann" {
		t.Errorf("recipient name %q, want Ann", got)
	}
	for _, e := range []events.Envelope{
		event(string(orderevents.TypeConfirmed), fmt.Sprintf(`{"order_id":%q,"user_id":%q,"total_cents":2598,"currency":"USD",
			"items":[{"product_id":%q,"quantity":2,"unit_price_cents":1299}]}`, order, user, uuid.New())),
		event(string(orderevents.TypeCancelled), fmt.Sprintf(`{"order_id":%q,"user_id":%q,"reason":"out_of_stock","total_cents":2598,"currency":"USD"}`, order, user)),
		event(string(paymentevents.TypeRefunded), fmt.Sprintf(`{"payment_id":%q,"order_id":%q,"user_id":%q,"amount_cents":2598,"currency":"USD"}`, uuid.New(), order, user)),
	} {
		if err := intake.Apply(ctx, s, e, at, intake.Options{}); err != nil {
			t.Fatalf("%s: %v", e.Type, err)
		}
	}
	if len(s.added) != 4 {
		t.Fatalf("%d notifications, want 4", len(s.added))
	}
	wantKinds := []notification.Kind{notification.KindWelcome, notification.KindOrderConfirmed, notification.KindOrderCancelled, notification.KindPaymentRefunded}
	for i, n := range s.added {
		if n.Kind != wantKinds[i] {
			t.Errorf("notification %d: kind %q, want %q", i, n.Kind, wantKinds[i])
		}
		if n.UserID != user {
			t.Errorf("notification %d: user %s, want %s", i, n.UserID, user)
		}
		if n.Recipient != "ann@example.com" {
			t.Errorf("notification %d: recipient %q, want ann@example.com", i, n.Recipient)
		}
		if n.Details.Name != "Ann" {
			t.Errorf("notification %d: name %q, want Ann", i, n.Details.Name)
		}
		if n.Status != notification.StatusQueued {
			t.Errorf("notification %d: status %q, want %q", i, n.Status, notification.StatusQueued)
		}
		if !n.CreatedAt.Equal(at) {
			t.Errorf("notification %d: created at %v, want %v", i, n.CreatedAt, at)
		}
	}
	d := s.added[1].Details
	if d.OrderID != order {
		t.Errorf("order_confirmed details order %s, want %s", d.OrderID, order)
	}
	if got := d.Total.String(); got != "$25.98" {
		t.Errorf("order_confirmed details total %s, want $25.98", got)
	}
	if len(d.Items) != 1 {
		t.Errorf("order_confirmed details items %+v, want one", d.Items)
	} else if got := d.Items[0].Total().String(); got != "$25.98" {
		t.Errorf("order_confirmed details item total %s, want $25.98", got)
	}
	if d := s.added[2].Details; d.Reason != notification.ReasonOutOfStock {
		t.Errorf("order_cancelled details %+v", d)
	}
	if got := s.added[3].Details.Refunded.String(); got != "$25.98" {
		t.Errorf("payment_refunded details refunded %s, want $25.98", got)
	}
	if s.added[3].Details.PaymentID == uuid.Nil {
		t.Error("payment_refunded details payment id nil, want the payment's")
	}
	if s.added[0].EventID != reg.ID {
		t.Errorf("event id %s, want %s", s.added[0].EventID, reg.ID)
	}
}

func TestOtherTypesAreIgnored(t *testing.T) {
	t.Parallel()
	s := newFakeStore()
	for _, typ := range []string{"order.created", "payment.captured", "stock.reserved"} {
		if err := intake.Apply(context.Background(), s, event(typ, `{"whatever":1}`), at, intake.Options{}); err != nil {
			t.Errorf("%s: %v", typ, err)
		}
	}
	if len(s.added) != 0 {
		t.Errorf("%d notifications from ignored events", len(s.added))
	}
}

func TestUnknownRecipientIsRetryable(t *testing.T) {
	t.Parallel()
	e := event(string(orderevents.TypeConfirmed), fmt.Sprintf(`{"order_id":%q,"user_id":%q,"total_cents":1,"currency":"USD","items":[]}`, uuid.New(), uuid.New()))
	err := intake.Apply(context.Background(), newFakeStore(), e, at, intake.Options{})
	if !errors.Is(err, notification.ErrUnknownRecipient) || errors.Is(err, events.ErrMalformed) {
		t.Errorf("Apply = %v; want ErrUnknownRecipient, not malformed (so it is retried)", err)
	}
}

func TestDataThatDoesNotFitIsMalformed(t *testing.T) {
	t.Parallel()
	user, order := uuid.New(), uuid.New()
	for name, e := range map[string]events.Envelope{
		"registered not JSON object": event(string(userevents.TypeRegistered), `[1,2]`),
		"registered bad user id":     event(string(userevents.TypeRegistered), `{"user_id":"nope","email":"a@example.com","name":"A"}`),
		"registered no user id":      event(string(userevents.TypeRegistered), `{"email":"a@example.com","name":"A"}`),
		"registered bad email":       event(string(userevents.TypeRegistered), fmt.Sprintf(`{"user_id":%q,"email":"nope","name":"A"}`, user)),
		"confirmed cents as string":  event(string(orderevents.TypeConfirmed), fmt.Sprintf(`{"order_id":%q,"user_id":%q,"total_cents":"12","currency":"USD"}`, order, user)),
		"confirmed no currency":      event(string(orderevents.TypeConfirmed), fmt.Sprintf(`{"order_id":%q,"user_id":%q,"total_cents":12}`, order, user)),
		"confirmed no order":         event(string(orderevents.TypeConfirmed), fmt.Sprintf(`{"user_id":%q,"total_cents":12,"currency":"USD"}`, user)),
		"confirmed bad item":         event(string(orderevents.TypeConfirmed), fmt.Sprintf(`{"order_id":%q,"user_id":%q,"total_cents":12,"currency":"USD","items":[{"quantity":0}]}`, order, user)),
		"cancelled negative":         event(string(orderevents.TypeCancelled), fmt.Sprintf(`{"order_id":%q,"user_id":%q,"reason":"timeout","total_cents":-1,"currency":"USD"}`, order, user)),
		"refunded no payment":        event(string(paymentevents.TypeRefunded), fmt.Sprintf(`{"order_id":%q,"user_id":%q,"amount_cents":1,"currency":"USD"}`, order, user)),
		"refunded no user":           event(string(paymentevents.TypeRefunded), fmt.Sprintf(`{"payment_id":%q,"order_id":%q,"amount_cents":1,"currency":"USD"}`, uuid.New(), order)),
	} {
		s := newFakeStore()
		s.recipients[user] = notification.Recipient{UserID: user, Email: "a@example.com"}
		if err := intake.Apply(context.Background(), s, e, at, intake.Options{}); !errors.Is(err, events.ErrMalformed) {
			t.Errorf("%s: Apply = %v, want ErrMalformed", name, err)
		}
		if len(s.added) != 0 {
			t.Errorf("%s: a notification was added", name)
		}
	}
}

// reportOpts mails reports to the admin, spelt as an operator might.
var reportOpts = intake.Options{ReportEmail: "Admin@Bazaar.local"}

// salesData is a report.daily_sales payload as the orders service writes it.
func salesData(products ...uuid.UUID) string {
	top := make([]string, 0, len(products))
	for i, p := range products {
		top = append(top, fmt.Sprintf(`{"product_id":%q,"quantity":%d,"revenue_cents":%d,"currency":"USD"}`, p, 12-i*5, 15588-i*10000))
	}
	return `{"day":"2026-11-25","from":"2026-11-25T00:00:00Z","to":"2026-11-26T00:00:00Z",
		"orders":9,"confirmed":6,"cancelled":2,
		"revenue":[{"currency":"EUR","amount_cents":1200},{"currency":"USD","amount_cents":123456}],
		"top_products":[` + strings.Join(top, ",") + `]}`
}

func withAdmin() (*fakeStore, notification.Recipient) {
	s := newFakeStore()
	admin := notification.Recipient{UserID: uuid.New(), Email: "admin@bazaar.local", Name: "Ada"}
	s.recipients[admin.UserID] = admin
	return s, admin
}

func TestDailySalesReportGoesToTheAdmin(t *testing.T) {
	t.Parallel()
	s, admin := withAdmin()
	p1, p2 := uuid.New(), uuid.New()
	e := event(string(orderevents.TypeDailySales), salesData(p1, p2))
	if err := intake.Apply(context.Background(), s, e, at, reportOpts); err != nil {
		t.Fatal(err)
	}
	if len(s.added) != 1 {
		t.Fatalf("%d notifications, want 1", len(s.added))
	}
	n := s.added[0]
	if n.Kind != notification.KindDailySalesReport {
		t.Errorf("notification kind %q, want %q", n.Kind, notification.KindDailySalesReport)
	}
	if n.EventID != e.ID {
		t.Errorf("notification event %s, want %s", n.EventID, e.ID)
	}
	if n.UserID != admin.UserID {
		t.Errorf("notification user %s, want the admin %s", n.UserID, admin.UserID)
	}
	if n.Recipient != "admin@bazaar.local" {
		t.Errorf("notification recipient %q, want admin@bazaar.local", n.Recipient)
	}
	if n.Details.Name != "Ada" {
		t.Errorf("notification name %q, want Ada", n.Details.Name)
	}
	if n.Subject != "Bazaar daily sales for 2026-11-25" {
		t.Errorf("notification subject %q, want %q", n.Subject, "Bazaar daily sales for 2026-11-25")
	}
	if n.Status != notification.StatusQueued {
		t.Errorf("notification status %q, want %q", n.Status, notification.StatusQueued)
	}
	if !n.CreatedAt.Equal(at) {
		t.Errorf("notification created at %v, want %v", n.CreatedAt, at)
	}
	r := n.Details.Sales
	if r == nil {
		t.Fatal("no report in the details")
	}
	if got := r.DayString(); got != "2026-11-25" {
		t.Errorf("report day %s, want 2026-11-25", got)
	}
	if want := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC); !r.From.Equal(want) {
		t.Errorf("report from %v, want %v", r.From, want)
	}
	if want := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC); !r.To.Equal(want) {
		t.Errorf("report to %v, want %v", r.To, want)
	}
	if r.Orders != 9 {
		t.Errorf("report of %d orders, want 9", r.Orders)
	}
	if r.Confirmed != 6 {
		t.Errorf("report of %d confirmed, want 6", r.Confirmed)
	}
	if r.Cancelled != 2 {
		t.Errorf("report of %d cancelled, want 2", r.Cancelled)
	}
	if got := r.Open(); got != 1 {
		t.Errorf("report of %d open, want 1", got)
	}
	if len(r.Revenue) != 2 {
		t.Errorf("revenue %+v, want 2 currencies", r.Revenue)
	} else {
		if got := r.Revenue[0].String(); got != "€12.00" {
			t.Errorf("revenue[0] %s, want €12.00", got)
		}
		if got := r.Revenue[1].String(); got != "$1,234.56" {
			t.Errorf("revenue[1] %s, want $1,234.56", got)
		}
	}
	if len(r.TopProducts) != 2 {
		t.Errorf("top products %+v, want 2", r.TopProducts)
	} else {
		if want := (notification.ProductSales{ProductID: p1, Quantity: 12, Revenue: notification.Money{Cents: 15588, Currency: "USD"}}); r.TopProducts[0] != want {
			t.Errorf("top product %+v, want %+v", r.TopProducts[0], want)
		}
		if want := (notification.ProductSales{ProductID: p2, Quantity: 7, Revenue: notification.Money{Cents: 5588, Currency: "USD"}}); r.TopProducts[1] != want {
			t.Errorf("second product %+v, want %+v", r.TopProducts[1], want)
		}
	}
}

// A day with no sales is still reported: an empty list is not a malformed one.
func TestDailySalesReportOfAQuietDay(t *testing.T) {
	t.Parallel()
	s, _ := withAdmin()
	e := event(string(orderevents.TypeDailySales), `{"day":"2026-11-25","from":"2026-11-25T00:00:00Z","to":"2026-11-26T00:00:00Z",
		"orders":0,"confirmed":0,"cancelled":0,"revenue":[],"top_products":[]}`)
	if err := intake.Apply(context.Background(), s, e, at, reportOpts); err != nil {
		t.Fatal(err)
	}
	if len(s.added) != 1 {
		t.Fatalf("added %+v, want one notification", s.added)
	}
	if r := s.added[0].Details.Sales; r == nil {
		t.Error("no report in the details, want one of no orders")
	} else if r.Orders != 0 {
		t.Errorf("report of %d orders, want 0", r.Orders)
	}
}

// REPORT_EMAIL names no registered user (yet): retried, like an order for a user not
// seen yet, not dead-lettered at once.
func TestDailySalesReportForAnUnknownAddressIsRetryable(t *testing.T) {
	t.Parallel()
	s, _ := withAdmin()
	e := event(string(orderevents.TypeDailySales), salesData(uuid.New()))
	err := intake.Apply(context.Background(), s, e, at, intake.Options{ReportEmail: "boss@bazaar.local"})
	if !errors.Is(err, notification.ErrUnknownRecipient) || errors.Is(err, events.ErrMalformed) {
		t.Errorf("Apply = %v; want ErrUnknownRecipient, not malformed (so it is retried)", err)
	}
	if len(s.added) != 0 {
		t.Errorf("a notification was added: %+v", s.added)
	}
}

func TestDailySalesReportIsNotMailedWithoutReportEmail(t *testing.T) {
	t.Parallel()
	s, _ := withAdmin()
	for _, data := range []string{salesData(uuid.New()), `{"day":"not even a report"}`} {
		if err := intake.Apply(context.Background(), s, event(string(orderevents.TypeDailySales), data), at, intake.Options{}); err != nil {
			t.Errorf("Apply = %v; want the report acknowledged", err)
		}
	}
	if len(s.added) != 0 || s.byEmail != 0 {
		t.Errorf("%d notifications added, %d look-ups; want none", len(s.added), s.byEmail)
	}
}

func TestDailySalesReportThatDoesNotFitIsMalformed(t *testing.T) {
	t.Parallel()
	const (
		rng  = `"from":"2026-11-25T00:00:00Z","to":"2026-11-26T00:00:00Z"`
		cnt  = `"orders":3,"confirmed":2,"cancelled":1`
		prod = `"product_id":"aaaaaaaa-0000-4000-8000-00000000000a"`
	)
	for name, data := range map[string]string{
		"not an object":          `"report"`,
		"no day":                 `{` + rng + `,` + cnt + `}`,
		"day not a date":         `{"day":"25/11/2026",` + rng + `,` + cnt + `}`,
		"day a time":             `{"day":"2026-11-25T00:00:00Z",` + rng + `,` + cnt + `}`,
		"no range":               `{"day":"2026-11-25",` + cnt + `}`,
		"from not a time":        `{"day":"2026-11-25","from":"yesterday","to":"2026-11-26T00:00:00Z",` + cnt + `}`,
		"to before from":         `{"day":"2026-11-25","from":"2026-11-26T00:00:00Z","to":"2026-11-25T00:00:00Z",` + cnt + `}`,
		"negative count":         `{"day":"2026-11-25",` + rng + `,"orders":3,"confirmed":-1,"cancelled":1}`,
		"counts do not add up":   `{"day":"2026-11-25",` + rng + `,"orders":2,"confirmed":2,"cancelled":1}`,
		"count as string":        `{"day":"2026-11-25",` + rng + `,"orders":"3","confirmed":2,"cancelled":1}`,
		"revenue bad currency":   `{"day":"2026-11-25",` + rng + `,` + cnt + `,"revenue":[{"currency":"dollars","amount_cents":1}]}`,
		"revenue negative":       `{"day":"2026-11-25",` + rng + `,` + cnt + `,"revenue":[{"currency":"USD","amount_cents":-1}]}`,
		"revenue not a list":     `{"day":"2026-11-25",` + rng + `,` + cnt + `,"revenue":{"USD":1}}`,
		"product without id":     `{"day":"2026-11-25",` + rng + `,` + cnt + `,"top_products":[{"quantity":1,"revenue_cents":1,"currency":"USD"}]}`,
		"product bad id":         `{"day":"2026-11-25",` + rng + `,` + cnt + `,"top_products":[{"product_id":"p1","quantity":1,"revenue_cents":1,"currency":"USD"}]}`,
		"product none sold":      `{"day":"2026-11-25",` + rng + `,` + cnt + `,"top_products":[{` + prod + `,"quantity":0,"revenue_cents":0,"currency":"USD"}]}`,
		"product no currency":    `{"day":"2026-11-25",` + rng + `,` + cnt + `,"top_products":[{` + prod + `,"quantity":1,"revenue_cents":1}]}`,
		"product revenue string": `{"day":"2026-11-25",` + rng + `,` + cnt + `,"top_products":[{` + prod + `,"quantity":1,"revenue_cents":"1","currency":"USD"}]}`,
	} {
		s, _ := withAdmin()
		if err := intake.Apply(context.Background(), s, event(string(orderevents.TypeDailySales), data), at, reportOpts); !errors.Is(err, events.ErrMalformed) {
			t.Errorf("%s: Apply = %v, want ErrMalformed", name, err)
		}
		if len(s.added) != 0 {
			t.Errorf("%s: a notification was added", name)
		}
	}
}
