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
	if !sc.HasTraceID() || !sc.HasSpanID() {
		t.Fatalf("span without ids: %+v", sc)
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
		if sc := s.SpanContext(); !sc.IsValid() || !sc.IsSampled() {
			t.Errorf("%s: span context %+v, want valid ids, sampled", name, sc)
		}
		s.End()
	}
	r, c := root.SpanContext(), child.SpanContext()
	if c.TraceID() != r.TraceID() || c.SpanID() == r.SpanID() {
		t.Errorf("child %s/%s of %s/%s: want the same trace, another span", c.TraceID(), c.SpanID(), r.TraceID(), r.SpanID())
	}
	if other.SpanContext().TraceID() == r.TraceID() || fresh.SpanContext().TraceID() == r.TraceID() {
		t.Error("a new root shares its trace id with another")
	}

	// A caller's trace context, not sampled: kept as it came.
	remote := tr.Propagator.Extract(context.Background(), propagation.MapCarrier{
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
		"tracestate":  "vendor=x",
	})
	ctx, span := tracer.Start(remote, "server")
	sc := span.SpanContext()
	if sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sc.SpanID().String() == "00f067aa0ba902b7" ||
		sc.IsSampled() || sc.TraceState().Get("vendor") != "x" {
		t.Errorf("span under a remote parent: %+v", sc)
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
