// Package telemetry sets up OpenTelemetry tracing for a program: a tracer provider that
// exports over OTLP/HTTP when an endpoint is configured, and only mints trace ids (for
// logs and propagation) when none is. It installs nothing globally, so that tests can
// run several programs in one process.
package telemetry

import (
	"context"
	"fmt"
	"math/rand/v2"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// Tracing is a program's tracer provider and the W3C propagator it speaks.
type Tracing struct {
	Provider   trace.TracerProvider
	Propagator propagation.TextMapPropagator
	// Exporting reports whether spans are recorded and exported. When they are not,
	// Provider's spans carry ids and nothing else, and instrumentation may skip the
	// attributes it would have given them (pkg/httpserver does).
	Exporting bool
	shutdown  func(context.Context) error
}

// Setup makes the tracing of service, exporting as exp says (ExportFromEnv).
//
// Without an export URL the provider records nothing: its spans only carry a trace id
// (a caller's from traceparent, else a new one) and a span id of their own, for the
// logs and for propagation. The SDK's provider would record every span, attributes
// and all, and then drop it for want of an exporter: a cost on every request that
// bought nothing (docs/benchmarks.md).
func Setup(ctx context.Context, service string, export Export) (*Tracing, error) {
	propagator := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	if export.URL == "" {
		return &Tracing{Provider: idsOnly{}, Propagator: propagator, shutdown: func(context.Context) error { return nil }}, nil
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(export.URL)}
	if len(export.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(export.Headers))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(service))),
		sdktrace.WithBatcher(exp),
	)
	return &Tracing{Provider: tp, Propagator: propagator, Exporting: true, shutdown: tp.Shutdown}, nil
}

// idsOnly is a tracer provider whose spans record nothing: each has the trace id of
// its parent (in the context, local or remote) or a new one, a new span id, and its
// parent's flags and trace state. A new trace is marked sampled, as the SDK's
// default sampler marks it, so that a program further down that does export records
// its part.
type idsOnly struct{ embedded.TracerProvider }

func (idsOnly) Tracer(string, ...trace.TracerOption) trace.Tracer { return idTracer{} }

type idTracer struct{ embedded.Tracer }

func (idTracer) Start(ctx context.Context, _ string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	parent := trace.SpanContextFromContext(ctx)
	if len(opts) > 0 {
		if c := trace.NewSpanStartConfig(opts...); c.NewRoot() {
			parent = trace.SpanContext{}
		}
	}
	cfg := trace.SpanContextConfig{TraceFlags: trace.FlagsSampled}
	if parent.IsValid() {
		cfg = trace.SpanContextConfig{TraceID: parent.TraceID(), TraceFlags: parent.TraceFlags(), TraceState: parent.TraceState()}
	} else {
		putUint64s(cfg.TraceID[:], rand.Uint64(), rand.Uint64())
	}
	putUint64s(cfg.SpanID[:], rand.Uint64())
	// A context carrying a bare span context holds a span that records nothing.
	ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(cfg))
	return ctx, trace.SpanFromContext(ctx)
}

// putUint64s writes the values into b, big-endian, as many as fit. The ids need to be
// unique, not secret: math/rand's generator is seeded at random and fast.
func putUint64s(b []byte, vs ...uint64) {
	for i, v := range vs {
		for j := range 8 {
			b[8*i+j] = byte(v >> (56 - 8*j))
		}
	}
}

// Shutdown flushes spans not yet exported.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.shutdown(ctx) }
