package telemetry_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// With no exporter, tracing still mints trace ids (for logs) and carries them across
// programs in traceparent.
func TestSpansGetIDsAndPropagate(t *testing.T) {
	t.Parallel()
	tr, err := telemetry.Setup(context.Background(), "test", telemetry.Export{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	ctx, span := tr.Provider.Tracer("t").Start(context.Background(), "op")
	defer span.End()
	sc := span.SpanContext()
	if !sc.HasTraceID() {
		t.Fatalf("span without a trace id: %+v", sc)
	}
	if !sc.HasSpanID() {
		t.Fatalf("span without a span id: %+v", sc)
	}
	carrier := propagation.MapCarrier{}
	tr.Propagator.Inject(ctx, carrier)
	if carrier.Get("traceparent") == "" {
		t.Fatal("no traceparent injected")
	}
	remote := trace.SpanContextFromContext(tr.Propagator.Extract(context.Background(), carrier))
	if remote.TraceID() != sc.TraceID() {
		t.Fatalf("extracted trace %s, want %s", remote.TraceID(), sc.TraceID())
	}
}

func TestSetupWithAnExporter(t *testing.T) {
	t.Parallel()
	// Nothing listens there: spans are dropped on export, which must not fail Setup.
	tr, err := telemetry.Setup(context.Background(), "test", telemetry.Export{URL: "http://127.0.0.1:1/v1/traces"})
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Exporting {
		t.Error("not Exporting with an endpoint")
	}
	_ = tr.Shutdown(context.Background())
}

// Without an exporter spans record nothing, but carry ids as a trace needs them: a
// child keeps its parent's trace id, local or from a caller's traceparent (with the
// caller's flags), and a new root gets a new trace id. Each span has an id of its own.
func TestWithoutAnExporterSpansCarryIDsAndRecordNothing(t *testing.T) {
	t.Parallel()
	tr, err := telemetry.Setup(context.Background(), "test", telemetry.Export{})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Exporting {
		t.Error("Exporting without an endpoint")
	}
	tracer := tr.Provider.Tracer("t")
	ctx, root := tracer.Start(context.Background(), "root")
	_, child := tracer.Start(ctx, "child")
	_, other := tracer.Start(context.Background(), "another root")
	_, fresh := tracer.Start(ctx, "new root", trace.WithNewRoot())
	for name, s := range map[string]trace.Span{"root": root, "child": child, "other": other, "fresh": fresh} {
		if s.IsRecording() {
			t.Errorf("%s records", name)
		}
		sc := s.SpanContext()
		if !sc.IsValid() {
			t.Errorf("%s: span context %+v, want valid ids", name, sc)
		}
		if !sc.IsSampled() {
			t.Errorf("%s: span context %+v not sampled, want sampled", name, sc)
		}
		s.End()
	}
	r, c := root.SpanContext(), child.SpanContext()
	if c.TraceID() != r.TraceID() || c.SpanID() == r.SpanID() {
		t.Errorf("child %s/%s of %s/%s: want the same trace, another span", c.TraceID(), c.SpanID(), r.TraceID(), r.SpanID())
	}
	if id := other.SpanContext().TraceID(); id == r.TraceID() {
		t.Errorf("another root has the first root's trace id %s, want its own", id)
	}
	if id := fresh.SpanContext().TraceID(); id == r.TraceID() {
		t.Errorf("a new root under the first root's context has its trace id %s, want its own", id)
	}

	// A caller's trace context, not sampled: kept as it came.
	remote := tr.Propagator.Extract(context.Background(), propagation.MapCarrier{
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
		"tracestate":  "vendor=x",
	})
	ctx, span := tracer.Start(remote, "server")
	sc := span.SpanContext()
	if got := sc.TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("span under a remote parent: trace %s, want the caller's 4bf92f3577b34da6a3ce929d0e0e4736", got)
	}
	if got := sc.SpanID().String(); got == "00f067aa0ba902b7" {
		t.Errorf("span under a remote parent: span id %s, the caller's; want its own", got)
	}
	if sc.IsSampled() {
		t.Error("span under a remote parent: sampled, want not sampled as the caller said")
	}
	if got := sc.TraceState().Get("vendor"); got != "x" {
		t.Errorf("span under a remote parent: tracestate vendor=%q, want x", got)
	}
	carrier := propagation.MapCarrier{}
	tr.Propagator.Inject(ctx, carrier)
	if got := carrier.Get("traceparent"); got != "00-4bf92f3577b34da6a3ce929d0e0e4736-"+sc.SpanID().String()+"-00" {
		t.Errorf("traceparent passed on: %q", got)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}
