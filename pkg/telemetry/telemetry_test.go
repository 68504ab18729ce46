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
	tr, err := telemetry.Setup(context.Background(), "test", "")
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
	tr, err := telemetry.Setup(context.Background(), "test", "http://127.0.0.1:1/v1/traces")
	if err != nil {
		t.Fatal(err)
	}
	_ = tr.Shutdown(context.Background())
}
