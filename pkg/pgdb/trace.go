package pgdb

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Traced makes every statement a span (kind client, named by its verb and the
// database: "INSERT bazaar_orders", with the SQL as db.query.text) — but only a
// statement run for something already traced: a request, an event, a task. The
// background loops (relay polls, sweeps) start no trace of their own, which would
// bury the traces people look for under one every second.
func Traced(tp trace.TracerProvider) Option {
	return func(c *options) { c.tracer = tp.Tracer("github.com/bazaar-shop/bazaar/pkg/pgdb") }
}

// Option changes how Open connects.
type Option func(*options)

type options struct {
	tracer trace.Tracer
}

// queryTracer is pgx's hook for the spans (pgx.QueryTracer).
type queryTracer struct {
	tracer   trace.Tracer
	database string
}

// spanKey marks a context whose statement has a span of its own, so that the end of
// a statement that got none does not end its caller's.
type spanKey struct{}

func (q queryTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	verb, _, _ := strings.Cut(strings.TrimSpace(d.SQL), " ")
	verb = strings.ToUpper(strings.TrimSpace(verb))
	ctx, span := q.tracer.Start(ctx, verb+" "+q.database, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("db.system.name", "postgresql"),
			attribute.String("db.namespace", q.database),
			attribute.String("db.operation.name", verb),
			attribute.String("db.query.text", d.SQL),
		))
	return context.WithValue(ctx, spanKey{}, span)
}

func (q queryTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	span, ok := ctx.Value(spanKey{}).(trace.Span)
	if !ok {
		return
	}
	if d.Err != nil {
		span.RecordError(d.Err)
		span.SetStatus(codes.Error, d.Err.Error())
	}
	span.End()
}
