package logs

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func TestTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log := NewJSON(&buf, slog.LevelInfo).With("component", "test").WithGroup("g")
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	log.InfoContext(ctx, "in a span", "k", 1)
	span.End()
	log.InfoContext(context.Background(), "outside")
	log.Debug("below the level")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	var in, out map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &in); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &out); err != nil {
		t.Fatal(err)
	}
	g, _ := in["g"].(map[string]any)
	sc := span.SpanContext()
	if in["msg"] != "in a span" || in["component"] != "test" || g["k"] != 1.0 ||
		g["trace_id"] != sc.TraceID().String() || g["span_id"] != sc.SpanID().String() {
		t.Errorf("record in a span: %s", lines[0])
	}
	if _, ok := out["trace_id"]; ok || out["msg"] != "outside" {
		t.Errorf("record outside a span: %s", lines[1])
	}
}
