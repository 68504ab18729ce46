package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/internal/eventcontract"
	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
	"github.com/bazaar-shop/bazaar/services/orders/internal/report"
	"github.com/bazaar-shop/bazaar/services/orders/orderevents"
)

// The store is the only writer of orders' events, so its outbox rows are what every
// consumer reads: each type it writes must be orderevents' example, which consumers
// are tested with.
func TestTheEventsWrittenAreTheContractExamples(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	user := uuid.MustParse("0d000000-0000-4000-8000-0000000000b1")
	mug, tee := uuid.MustParse("0d000000-0000-4000-8000-000000000001"), uuid.MustParse("0d000000-0000-4000-8000-000000000002")
	// finish creates order id with lines, which writes order.created, then ends its
	// saga as the saga would, with event.
	finish := func(id string, status order.Status, reason order.CancelReason, event orderevents.Type, lines ...order.Line) {
		o := order.Order{ID: uuid.MustParse(id), UserID: user, Status: order.StatusPending, Lines: lines, Currency: "USD",
			PaymentMethod: order.PaymentVisa, CreatedAt: at, UpdatedAt: at}
		for _, l := range lines {
			o.TotalCents += l.Amount()
		}
		if _, _, _, err := s.CreateOrder(ctx, o, order.NewSaga(o), order.Lease{}); err != nil {
			t.Fatal(err)
		}
		l, ord, sg, err := s.ClaimSaga(ctx, o.ID, "test", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		c := order.Change{Order: ord, Saga: sg, StatusChanged: true, Event: event,
			Log: order.StepLog{Step: order.StepCommit, Attempt: 1, Outcome: order.OutcomeOK, At: at}}
		c.Order.Status, c.Order.CancelReason, c.Saga.State = status, reason, order.SagaDone
		if err := s.Apply(ctx, l, c); err != nil {
			t.Fatal(err)
		}
	}
	finish("0d000000-0000-4000-8000-0000000000a1", order.StatusConfirmed, order.ReasonNone, orderevents.TypeConfirmed,
		order.Line{ProductID: mug, Quantity: 2, UnitPriceCents: 1299}, order.Line{ProductID: tee, Quantity: 1, UnitPriceCents: 1299})
	finish("0d000000-0000-4000-8000-0000000000a2", order.StatusCancelled, order.ReasonOutOfStock, orderevents.TypeCancelled,
		order.Line{ProductID: mug, Quantity: 1, UnitPriceCents: 1299})
	day := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	if err := s.WriteDailySales(ctx, report.Sales{Range: report.Range{From: day, To: day.AddDate(0, 0, 1)},
		Orders: 5, Confirmed: 3, Cancelled: 1,
		Revenue: []report.Money{{Currency: "EUR", AmountCents: 4200}, {Currency: "USD", AmountCents: 3897}},
		TopProducts: []report.ProductSales{
			{ProductID: mug, Quantity: 2, RevenueCents: 2598, Currency: "USD"},
			{ProductID: uuid.MustParse("0d000000-0000-4000-8000-000000000003"), Quantity: 1, RevenueCents: 4200, Currency: "EUR"},
		}}); err != nil {
		t.Fatal(err)
	}

	rows, err := pool.Query(ctx, `SELECT stream, source, type, subject, data FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	written := map[string]int{}
	for rows.Next() {
		var stream, source, typ, subject string
		var data []byte
		if err := rows.Scan(&stream, &source, &typ, &subject, &data); err != nil {
			t.Fatal(err)
		}
		if stream != orderevents.Stream {
			t.Errorf("%s on stream %s, want %s", typ, stream, orderevents.Stream)
		}
		if source != orderevents.Source {
			t.Errorf("%s from source %s, want %s", typ, source, orderevents.Source)
		}
		written[typ]++
		if typ == string(orderevents.TypeCreated) && subject != "0d000000-0000-4000-8000-0000000000a1" {
			continue // the cancelled order's creation; the confirmed one's is the example
		}
		eventcontract.SameJSON(t, typ, data, eventcontract.Example(t, typ))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for typ, want := range map[string]int{"order.created": 2, "order.confirmed": 1, "order.cancelled": 1, "report.daily_sales": 1} {
		if written[typ] != want {
			t.Errorf("%d %s written, want %d; all written %v", written[typ], typ, want, written)
		}
	}
}
