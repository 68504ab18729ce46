package redisclient

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Trace makes every command of rdb a span (kind client, named by the command: "XADD",
// or "pipeline XADD XACK" for a pipeline, by its distinct commands) — but only a command sent for something
// already traced (a request, an event, a task): the blocking reads and polls of the
// background loops start no trace of their own, which would bury the ones people
// look for.
func Trace(rdb *redis.Client, tp trace.TracerProvider) {
	rdb.AddHook(tracingHook{tp.Tracer("github.com/bazaar-shop/bazaar/pkg/redisclient")})
}

type tracingHook struct{ tracer trace.Tracer }

func (tracingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

// handshake are the commands go-redis sends on a new connection before the caller's
// (in the caller's context, so they would show as its spans; CLIENT SETINFO even as a
// failure on a Redis older than 7.2): the connection's doing, not the caller's.
var handshake = []string{"hello", "auth", "select", "client"}

func (h tracingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !trace.SpanContextFromContext(ctx).IsValid() || slices.Contains(handshake, cmd.Name()) {
			return next(ctx, cmd)
		}
		name := strings.ToUpper(cmd.Name())
		ctx, span := h.start(ctx, name, name)
		err := next(ctx, cmd)
		end(span, err)
		return err
	}
}

func (h tracingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !trace.SpanContextFromContext(ctx).IsValid() || slices.ContainsFunc(cmds, func(c redis.Cmder) bool {
			return slices.Contains(handshake, c.Name())
		}) {
			return next(ctx, cmds)
		}
		var names []string
		for _, c := range cmds {
			if n := strings.ToUpper(c.Name()); !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		ctx, span := h.start(ctx, "pipeline "+strings.Join(names, " "), "pipeline")
		span.SetAttributes(attribute.Int("db.operation.batch.size", len(cmds)))
		err := next(ctx, cmds)
		end(span, err)
		return err
	}
}

func (h tracingHook) start(ctx context.Context, name, operation string) (context.Context, trace.Span) {
	return h.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("db.system.name", "redis"), attribute.String("db.operation.name", operation)))
}

// end ends span, marking it failed for an error other than redis.Nil (a missing key
// is an answer, not a failure).
func end(span trace.Span, err error) {
	if err != nil && !errors.Is(err, redis.Nil) {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
