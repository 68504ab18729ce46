package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/internal/eventcontract"
	"github.com/bazaar-shop/bazaar/services/payments/internal/payment"
	"github.com/bazaar-shop/bazaar/services/payments/paymentevents"
)

// The store is the only writer of payments' events, so its outbox rows are what every
// consumer reads: each type it writes must be paymentevents' example, which consumers
// are tested with.
func TestTheEventsWrittenAreTheContractExamples(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &countingProcessor{})
	ctx := context.Background()
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	user := uuid.MustParse("0c000000-0000-4000-8000-0000000000b1")
	pending := func(id, order string, cents int64, currency payment.Currency) payment.Payment {
		p := payment.NewPending(uuid.MustParse(id), payment.ChargeRequest{OrderID: uuid.MustParse(order), UserID: user,
			Amount: payment.Money{Cents: cents, Currency: currency}, Method: payment.MethodVisa}, at)
		if err := e.store.CreatePending(ctx, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	record := func(from payment.Status, next payment.Payment) payment.Payment {
		if _, err := e.store.Record(ctx, from, next); err != nil {
			t.Fatal(err)
		}
		return next
	}

	captured := pending("0c000000-0000-4000-8000-000000000001", "0c000000-0000-4000-8000-0000000000a1", 2598, "USD")
	captured.Status, captured.ProcessorRef, captured.SettledAt = payment.StatusCaptured, "ch_1", at
	captured = record(payment.StatusPending, captured)
	refunded := captured
	refunded.Status, refunded.RefundedAt = payment.StatusRefunded, at.Add(time.Hour)
	record(payment.StatusCaptured, refunded)
	declined := pending("0c000000-0000-4000-8000-000000000002", "0c000000-0000-4000-8000-0000000000a2", 4200, "EUR")
	declined.Status, declined.DeclineCode, declined.SettledAt = payment.StatusDeclined, payment.DeclineInsufficientFunds, at
	record(payment.StatusPending, declined)

	rows, err := e.pool.Query(ctx, `SELECT stream, source, type, data FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var written []string
	for rows.Next() {
		var stream, source, typ string
		var data []byte
		if err := rows.Scan(&stream, &source, &typ, &data); err != nil {
			t.Fatal(err)
		}
		if stream != paymentevents.Stream {
			t.Errorf("%s on stream %s, want %s", typ, stream, paymentevents.Stream)
		}
		if source != paymentevents.Source {
			t.Errorf("%s from source %s, want %s", typ, source, paymentevents.Source)
		}
		written = append(written, typ)
		eventcontract.SameJSON(t, typ, data, eventcontract.Example(t, typ))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"payment.captured", "payment.refunded", "payment.declined"}; len(written) != len(want) {
		t.Errorf("written %v, want %v", written, want)
	}
}
