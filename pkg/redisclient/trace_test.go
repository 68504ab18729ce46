package redisclient_test

import (
	"context"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
)

// A command sent for traced work is a span in its trace (a pipeline one span, named by
// its distinct commands); a background loop's command with no trace starts none, and
// a missing key is not an error.
func TestTracedCommandsAreSpansOnlyWithinATrace(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	rdb, err := redisclient.Open(redistest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	redisclient.Trace(rdb, tp)
	ctx := context.Background()

	rdb.Set(ctx, "untraced", 1, 0) // no trace: no span
	traced, parent := tp.Tracer("test").Start(ctx, "request")
	if err := rdb.Get(traced, "missing").Err(); err != redis.Nil {
		t.Fatalf("GET missing: %v", err)
	}
	pipe := rdb.Pipeline()
	pipe.Set(traced, "a", 1, 0)
	pipe.Set(traced, "b", 2, 0)
	pipe.Get(traced, "a")
	if _, err := pipe.Exec(traced); err != nil {
		t.Fatal(err)
	}
	parent.End()

	var got []string
	for _, s := range rec.Ended() {
		if s.Name() != "request" {
			got = append(got, s.Name()+" "+s.Status().Code.String())
		}
	}
	want := []string{"GET Unset", "pipeline SET GET Unset"}
	if !slices.Equal(got, want) {
		t.Errorf("spans %q, want %q", got, want)
	}
}
