package pgdb_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/pkg/pgdb"
)

// A statement run for traced work is a span in its trace, named by verb and
// database; one run by a background loop with no trace starts none.
func TestTracedStatementsAreSpansOnlyWithinATrace(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx := context.Background()
	pool, err := pgdb.Open(ctx, pgtest.NewDatabase(t), pgdb.Traced(tp))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	if _, err := pool.Exec(ctx, "SELECT 1"); err != nil { // no trace: no span
		t.Fatal(err)
	}
	traced, parent := tp.Tracer("test").Start(ctx, "request")
	if _, err := pool.Exec(traced, "select 2"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(traced, "SELECT nope"); err == nil {
		t.Fatal("a bad statement ran")
	}
	parent.End()

	var got []string
	for _, s := range rec.Ended() {
		if s.Name() == "request" {
			continue
		}
		got = append(got, s.Name()+" "+s.Status().Code.String())
		if s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("%s is not a child of the request's span", s.Name())
		}
	}
	db := pool.Config().ConnConfig.Database
	want := []string{"SELECT " + db + " Unset", "SELECT " + db + " Error"}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("spans %q, want %q (none for the untraced statement)", got, want)
	}
	if parent.(sdktrace.ReadOnlySpan).Status().Code.String() != "Unset" {
		t.Error("a failed statement's span ended its caller's")
	}
}
