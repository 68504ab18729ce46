package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"testing/fstest"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/pkg/outbox"
)

// schema is a service with an outbox and nothing else.
var schema = outbox.WithTable(fstest.MapFS{})

func TestWriteCommitsAndRollsBackWithTheTransaction(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t, schema)
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	userID := uuid.New()

	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		return outbox.Write(ctx, tx, outbox.Event{Stream: "events.users", Type: "user.registered",
			Source: "users", Subject: userID.String(), Data: map[string]string{"email": "a@b.c"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("the change failed")
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := outbox.Write(ctx, tx, outbox.Event{Stream: "events.users", Type: "user.registered",
			Source: "users", Subject: "x", Data: 1}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}

	var n int
	var typ, subject, traceparent string
	var data []byte
	if err := pool.QueryRow(ctx, `SELECT count(*) OVER (), type, subject, traceparent, data FROM outbox`).
		Scan(&n, &typ, &subject, &traceparent, &data); err != nil {
		t.Fatal(err)
	}
	var payload map[string]string
	_ = json.Unmarshal(data, &payload)
	if n != 1 {
		t.Errorf("%d outbox rows, want 1", n)
	}
	if typ != "user.registered" {
		t.Errorf("type %q, want user.registered", typ)
	}
	if subject != userID.String() {
		t.Errorf("subject %q, want %s", subject, userID)
	}
	if payload["email"] != "a@b.c" {
		t.Errorf("data %s, want email a@b.c", data)
	}
	if want := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"; traceparent != want {
		t.Errorf("traceparent %q, want %q", traceparent, want)
	}
}
