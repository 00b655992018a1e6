package events

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Trace context crosses Kafka in each record's headers (W3C traceparent), so
// that a consumer's span links to the request that produced the event.
var propagator = propagation.TraceContext{}

// tracerName names the tracer of this package's spans.
const tracerName = "github.com/recserve/recserve/events"

// maxLinks bounds the producer spans one consumed batch links to.
const maxLinks = 128

func tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return tp.Tracer(tracerName)
}

// headers adapts a record's headers to a propagation carrier.
type headers struct{ r *kgo.Record }

func (h headers) Get(key string) string {
	for _, x := range h.r.Headers {
		if x.Key == key {
			return string(x.Value)
		}
	}
	return ""
}

func (h headers) Set(key, value string) {
	for i, x := range h.r.Headers {
		if x.Key == key {
			h.r.Headers[i].Value = []byte(value)
			return
		}
	}
	h.r.Headers = append(h.r.Headers, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

func (h headers) Keys() []string {
	keys := make([]string, len(h.r.Headers))
	for i, x := range h.r.Headers {
		keys[i] = x.Key
	}
	return keys
}

// spanAttrs describes a batch of records of topic, after OpenTelemetry's
// messaging conventions.
func spanAttrs(topic string, n int) trace.SpanStartEventOption {
	return trace.WithAttributes(attribute.String("messaging.system", "kafka"),
		attribute.String("messaging.destination.name", topic), attribute.Int("messaging.batch.message_count", n))
}

// links returns links to the distinct producer spans of recs, at most maxLinks.
func links(recs []*kgo.Record) []trace.Link {
	var out []trace.Link
	seen := map[trace.SpanID]bool{}
	for _, r := range recs {
		sc := trace.SpanContextFromContext(propagator.Extract(context.Background(), headers{r}))
		if sc.IsValid() && !seen[sc.SpanID()] && len(out) < maxLinks {
			seen[sc.SpanID()] = true
			out = append(out, trace.Link{SpanContext: sc})
		}
	}
	return out
}
