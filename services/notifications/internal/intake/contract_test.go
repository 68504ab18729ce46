package intake_test

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/internal/eventcontract"
	"github.com/bazaar-shop/bazaar/pkg/events"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/intake"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
)

// The producers' tests show their outbox rows are their contracts' examples; this one
// hands every example on the streams notifications reads to the handler, so a change
// on either side that the other does not follow fails here. The expectations are read
// from the example as plain JSON, not through the contract types, so a field a
// contract type lost would show as a missing value.
func TestEveryEventTheProducersWriteIsAcceptedWithAllItsValues(t *testing.T) {
	t.Parallel()
	const admin = "admin@bazaar.local"
	adminID := uuid.MustParse("0e000000-0000-4000-8000-000000000001")
	opts := intake.Options{ReportEmail: admin}
	for _, stream := range intake.Streams {
		for typ, raw := range eventcontract.ExamplesOn(t, stream) {
			t.Run(typ, func(t *testing.T) {
				var m map[string]any
				if err := json.Unmarshal(raw, &m); err != nil {
					t.Fatal(err)
				}
				s := newFakeStore()
				s.recipients[adminID] = notification.Recipient{UserID: adminID, Email: admin, Name: "Admin"}
				if id, ok := m["user_id"].(string); ok && typ != "user.registered" {
					// The user registered earlier, as the welcome e-mail's event said.
					s.recipients[uuid.MustParse(id)] = notification.Recipient{UserID: uuid.MustParse(id), Email: "ann@example.com", Name: "Ann"}
				}
				e := events.Envelope{ID: uuid.New(), Type: typ, Source: "test", Subject: "x", Time: at, Data: raw}
				if err := intake.Apply(context.Background(), s, e, at, opts); err != nil {
					t.Fatalf("Apply: %v", err)
				}
				want, acted := expected(t, typ, m)
				if typ == "report.daily_sales" {
					want.UserID = adminID // REPORT_EMAIL's user
				}
				switch {
				case !acted && len(s.added) != 0:
					t.Errorf("%s is not notified, but made %+v", typ, s.added)
				case acted && len(s.added) != 1:
					t.Fatalf("%s made %d notifications, want 1", typ, len(s.added))
				case acted:
					n := s.added[0]
					n.Details.Name = "" // the recipient's, not the event's
					if n.Kind != want.Kind || n.UserID != want.UserID || !reflect.DeepEqual(n.Details, want.Details) {
						t.Errorf("%s made %s for %s with %+v (sales %+v);\nwant %s for %s with %+v (sales %+v)", typ,
							n.Kind, n.UserID, n.Details, n.Details.Sales, want.Kind, want.UserID, want.Details, want.Details.Sales)
					}
				}
				if typ == "user.registered" {
					id := uuid.MustParse(m["user_id"].(string))
					r := s.recipients[id]
					if r.Email != m["email"] {
						t.Errorf("recipient e-mail %q, want the event's %v", r.Email, m["email"])
					}
					if r.Name != m["name"] {
						t.Errorf("recipient name %q, want the event's %v", r.Name, m["name"])
					}
				}
			})
		}
	}
}

// expected is the notification an event of type typ with data m makes, and whether
// it makes one: every other type on the streams is ignored.
func expected(t *testing.T, typ string, m map[string]any) (notification.Notification, bool) {
	id := func(k string) uuid.UUID { return uuid.MustParse(m[k].(string)) }
	money := func(m map[string]any, cents string) notification.Money {
		return notification.Money{Cents: int64(m[cents].(float64)), Currency: m["currency"].(string)}
	}
	var n notification.Notification
	switch typ {
	case "user.registered":
		n.Kind, n.UserID = notification.KindWelcome, id("user_id")
	case "order.confirmed":
		n.Kind, n.UserID = notification.KindOrderConfirmed, id("user_id")
		n.Details = notification.Details{OrderID: id("order_id"), Total: money(m, "total_cents")}
		for _, it := range m["items"].([]any) {
			it := it.(map[string]any)
			n.Details.Items = append(n.Details.Items, notification.Item{ProductID: uuid.MustParse(it["product_id"].(string)),
				Quantity: int(it["quantity"].(float64)), UnitPrice: notification.Money{Cents: int64(it["unit_price_cents"].(float64)), Currency: m["currency"].(string)}})
		}
	case "order.cancelled":
		n.Kind, n.UserID = notification.KindOrderCancelled, id("user_id")
		n.Details = notification.Details{OrderID: id("order_id"), Total: money(m, "total_cents"), Reason: notification.CancelReason(m["reason"].(string))}
	case "payment.refunded":
		n.Kind, n.UserID = notification.KindPaymentRefunded, id("user_id")
		n.Details = notification.Details{OrderID: id("order_id"), PaymentID: id("payment_id"), Refunded: money(m, "amount_cents")}
	case "report.daily_sales":
		n.Kind = notification.KindDailySalesReport
		tm := func(k string) time.Time {
			v, err := time.Parse(time.RFC3339, m[k].(string))
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		day, err := time.Parse(time.DateOnly, m["day"].(string))
		if err != nil {
			t.Fatal(err)
		}
		r := notification.SalesReport{Day: day, From: tm("from"), To: tm("to"),
			Orders: int64(m["orders"].(float64)), Confirmed: int64(m["confirmed"].(float64)), Cancelled: int64(m["cancelled"].(float64))}
		for _, v := range m["revenue"].([]any) {
			r.Revenue = append(r.Revenue, money(v.(map[string]any), "amount_cents"))
		}
		for _, v := range m["top_products"].([]any) {
			p := v.(map[string]any)
			r.TopProducts = append(r.TopProducts, notification.ProductSales{ProductID: uuid.MustParse(p["product_id"].(string)),
				Quantity: int64(p["quantity"].(float64)), Revenue: money(p, "revenue_cents")})
		}
		n.Details.Sales = &r
	default:
		return n, false
	}
	return n, true
}
