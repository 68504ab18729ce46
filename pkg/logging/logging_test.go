package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestLogLineCarriesIDs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log, err := New(&buf, "info", "users")
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(WithRequestID(context.Background(), "req-1"),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	log.InfoContext(ctx, "hello", "n", 1)
	log.DebugContext(ctx, "hidden")

	var line map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &line); err != nil {
		t.Fatalf("want exactly one JSON line, got %q: %v", buf.String(), err)
	}
	for k, want := range map[string]any{"msg": "hello", "service": "users", "request_id": "req-1",
		"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "level": "INFO"} {
		if line[k] != want {
			t.Errorf("%s = %v, want %v", k, line[k], want)
		}
	}
}

func TestBadLevel(t *testing.T) {
	t.Parallel()
	if _, err := New(&bytes.Buffer{}, "loud", "x"); err == nil {
		t.Fatal("want an error for an unknown level")
	}
	if l, err := ParseLevel("DEBUG"); err != nil || l.String() != "DEBUG" {
		t.Fatalf("ParseLevel(DEBUG) = %v, %v", l, err)
	}
}
