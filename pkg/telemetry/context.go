package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
)

// TraceParent is the W3C traceparent of the span in ctx, "" when there is none: what
// travels with work that leaves the process through storage (an outbox row, a queued
// notification) or a queue (a task's headers, an event's envelope).
func TraceParent(ctx context.Context) string {
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	return carrier.Get("traceparent")
}

// WithTraceParent is ctx carrying the remote span context that traceparent names, so
// that spans started from it join that trace; ctx as it is when traceparent is empty
// or malformed.
func WithTraceParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}
