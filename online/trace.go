package online

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

// tracing is a go-redis hook that makes a client span of each command and
// pipeline, a child of the request that issued it.
type tracing struct{ tracer trace.Tracer }

func (t tracing) DialHook(next redis.DialHook) redis.DialHook { return next }

func (t tracing) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		ctx, span := t.start(ctx, cmd.Name())
		err := next(ctx, cmd)
		end(span, err)
		return err
	}
}

// ProcessPipelineHook names a pipeline's span after its distinct commands in
// order ("lrange smembers get" for any number of users' reads) and records
// how many it sent.
func (t tracing) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var names []string
		for _, c := range cmds {
			if !slices.Contains(names, c.Name()) {
				names = append(names, c.Name())
			}
		}
		ctx, span := t.start(ctx, strings.Join(names, " "))
		span.SetAttributes(attribute.Int("db.redis.pipeline_length", len(cmds)))
		err := next(ctx, cmds)
		end(span, err)
		return err
	}
}

func (t tracing) start(ctx context.Context, op string) (context.Context, trace.Span) {
	return t.tracer.Start(ctx, "redis "+op, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system", "redis"), attribute.String("db.operation", op)))
}

// end ends span, marking it failed unless err is nil or a missing key.
func end(span trace.Span, err error) {
	if err != nil && !errors.Is(err, redis.Nil) {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
