package outbox_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/pkg/outbox"
)

func TestAboutReadsTheEventsOfTheSubjectsAskedForOldestFirst(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t, schema)
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	traced := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	order, payment, other := uuid.NewString(), uuid.NewString(), uuid.NewString()
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	write := func(ctx context.Context, typ, subject string, at time.Time) uuid.UUID {
		t.Helper()
		id := uuid.New()
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			return outbox.Write(ctx, tx, outbox.Event{ID: id, Stream: "events.test", Type: typ, Source: "test",
				Subject: subject, Time: at, Data: map[string]string{}})
		})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	// Written out of time order: About answers by time.
	confirmed := write(context.Background(), "order.confirmed", order, base.Add(2*time.Second))
	created := write(traced, "order.created", order, base)
	captured := write(context.Background(), "payment.captured", payment, base.Add(time.Second))
	write(context.Background(), "order.created", other, base)
	published := base.Add(3 * time.Second)
	if _, err := pool.Exec(t.Context(), `UPDATE outbox SET published_at = $2 WHERE id = $1`, created, published); err != nil {
		t.Fatal(err)
	}

	got, err := outbox.About(t.Context(), pool, []string{order, payment})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("About = %+v; want 3 events: order.created, payment.captured, order.confirmed", got)
	}
	for i, want := range []uuid.UUID{created, captured, confirmed} {
		if got[i].ID != want {
			t.Fatalf("About[%d] = %s %s; want %s (order.created, payment.captured, order.confirmed in that order)", i, got[i].Type, got[i].ID, want)
		}
	}
	first := got[0]
	if first.Stream != "events.test" {
		t.Errorf("order.created read back with stream %q, want events.test", first.Stream)
	}
	if first.Type != "order.created" {
		t.Errorf("order.created read back with type %q", first.Type)
	}
	if first.Subject != order {
		t.Errorf("order.created read back with subject %s, want %s", first.Subject, order)
	}
	if !first.Time.Equal(base) {
		t.Errorf("order.created read back with time %v, want %v", first.Time, base)
	}
	if loc := first.Time.Location(); loc != time.UTC {
		t.Errorf("order.created read back with time in %v, want UTC", loc)
	}
	if first.PublishedAt == nil {
		t.Errorf("order.created read back with no published_at, want %v", published)
	} else if !first.PublishedAt.Equal(published) {
		t.Errorf("order.created read back with published_at %v, want %v", *first.PublishedAt, published)
	}
	if want := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"; first.TraceParent != want {
		t.Errorf("order.created read back with traceparent %q, want %q", first.TraceParent, want)
	}
	if got[1].PublishedAt != nil {
		t.Errorf("an unpublished event read back with published_at %v, want none", *got[1].PublishedAt)
	}
	if got[1].TraceParent != "" {
		t.Errorf("an untraced event read back with traceparent %q, want none", got[1].TraceParent)
	}
	if got[1].Subject != payment {
		t.Errorf("payment.captured read back with subject %s, want %s", got[1].Subject, payment)
	}

	// Nothing is an empty slice, not nil: the admin answers list it as [].
	if none, err := outbox.About(t.Context(), pool, []string{uuid.NewString()}); err != nil || none == nil || len(none) != 0 {
		t.Errorf("About an unknown subject = %#v, %v; want an empty slice", none, err)
	}
	if none, err := outbox.About(t.Context(), pool, nil); err != nil || none == nil || len(none) != 0 {
		t.Errorf("About no subject = %#v, %v; want an empty slice", none, err)
	}
	if _, err := outbox.About(t.Context(), pool, make([]string, outbox.MaxSubjects+1)); err == nil {
		t.Errorf("About %d subjects succeeded; want an error", outbox.MaxSubjects+1)
	}
	pool.Close()
	if _, err := outbox.About(t.Context(), pool, []string{order}); err == nil || !strings.Contains(err.Error(), "outbox") {
		t.Errorf("About on a closed pool: %v; want an error naming the outbox", err)
	}
}

// The admin answers of orders, inventory and payments carry Records as they are, so
// their field names, the id's and the times' text, and null for an unpublished event
// are docs/openapi.yaml's OutboxEvent and must not drift. The services' admin tests
// read the answers back into Records, so the names are checked here, once.
func TestRecordsWireForm(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 1, 12, 0, 0, 500_000_000, time.UTC)
	published := at.Add(time.Second)
	id := uuid.MustParse("0b6c4f6e-3f1d-4c52-9b8e-2f0c8a7d1e90")
	got, err := json.Marshal([]outbox.Record{
		{ID: id, Stream: "events.orders", Type: "order.created", Subject: "o1", Time: at, PublishedAt: &published,
			TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{ID: id, Stream: "events.orders", Type: "order.confirmed", Subject: "o1", Time: at},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"id":"0b6c4f6e-3f1d-4c52-9b8e-2f0c8a7d1e90","stream":"events.orders","type":"order.created","subject":"o1",` +
		`"time":"2026-03-01T12:00:00.5Z","published_at":"2026-03-01T12:00:01.5Z",` +
		`"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},` +
		`{"id":"0b6c4f6e-3f1d-4c52-9b8e-2f0c8a7d1e90","stream":"events.orders","type":"order.confirmed","subject":"o1",` +
		`"time":"2026-03-01T12:00:00.5Z","published_at":null,"traceparent":""}]`
	if string(got) != want {
		t.Errorf("Records marshal as\n%s\nwant\n%s", got, want)
	}
}
