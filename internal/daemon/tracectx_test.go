package daemon

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
)

func TestTraceContextUnary(t *testing.T) {
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	seen := func(md metadata.MD) trace.SpanContext {
		var got trace.SpanContext
		ctx := metadata.NewIncomingContext(context.Background(), md)
		_, err := traceContextUnary(ctx, nil, nil, func(ctx context.Context, _ any) (any, error) {
			got = trace.SpanContextFromContext(ctx)
			return nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	sc := seen(metadata.Pairs("traceparent", parent, "tracestate", "vendor=x"))
	if sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sc.SpanID().String() != "00f067aa0ba902b7" || !sc.IsRemote() || !sc.IsSampled() {
		t.Errorf("span context %+v, want the caller's", sc)
	}
	if got := sc.TraceState().Get("vendor"); got != "x" {
		t.Errorf("trace state vendor=%q, want x", got)
	}
	if sc := seen(metadata.Pairs("x-other", "1")); sc.IsValid() {
		t.Errorf("no traceparent gave span context %+v", sc)
	}
	if sc := seen(metadata.Pairs("traceparent", "garbage")); sc.IsValid() {
		t.Errorf("a malformed traceparent gave span context %+v", sc)
	}
}
