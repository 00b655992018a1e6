package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

func withKafka(c *Config) { c.EmbeddedKafka = true }

type clients struct {
	rec recservev1.RecommendServiceClient
	ev  recservev1.EventServiceClient
}

func dial(t testing.TB, addr string) clients {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return clients{recservev1.NewRecommendServiceClient(conn), recservev1.NewEventServiceClient(conn)}
}

// waitFor polls Recommend until ok accepts the response or the deadline passes.
func waitFor(t testing.TB, c clients, req *recservev1.RecommendRequest, ok func(*recservev1.RecommendResponse) bool) *recservev1.RecommendResponse {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.rec.Recommend(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if ok(resp) {
			return resp
		}
		if time.Now().After(deadline) {
			t.Fatalf("event not reflected within 10s: %v", resp)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestEventsReachRecommendationsThroughKafka(t *testing.T) {
	addrs, data := startDaemon(t, withKafka)
	c := dial(t, addrs.GRPC)
	ctx := context.Background()
	user := data.Events[0].UserID
	req := &recservev1.RecommendRequest{UserId: user, N: proto.Int32(5)}
	before, err := c.rec.Recommend(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	top := before.GetItems()[0].GetItemId()

	// A purchase recorded over REST, as a web backend would.
	postEvent(t, addrs, &recservev1.Event{EventId: "rest-1", UserId: user, ItemId: top, Type: recservev1.EventType_EVENT_TYPE_PURCHASE,
		RequestId: before.GetRequestId(), ModelVersion: before.GetModelVersion()})
	waitFor(t, c, req, func(r *recservev1.RecommendResponse) bool { return !slices.Contains(itemIDs(r), top) })

	// A new user gets a folded-in vector as soon as they have interacted.
	newReq := &recservev1.RecommendRequest{UserId: "fresh-user", N: proto.Int32(5)}
	if r, _ := c.rec.Recommend(ctx, newReq); r.GetSource() != recservev1.RecommendationSource_RECOMMENDATION_SOURCE_POPULARITY {
		t.Fatalf("before events: %v", r.GetSource())
	}
	if _, err := c.ev.RecordEvents(ctx, &recservev1.RecordEventsRequest{Events: []*recservev1.Event{
		{EventId: "g-1", UserId: "fresh-user", ItemId: data.Items[3].ID, Type: recservev1.EventType_EVENT_TYPE_CLICK},
		{EventId: "g-2", UserId: "fresh-user", ItemId: data.Items[15].ID, Type: recservev1.EventType_EVENT_TYPE_PURCHASE},
	}}); err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, c, newReq, func(r *recservev1.RecommendResponse) bool {
		return r.GetSource() == recservev1.RecommendationSource_RECOMMENDATION_SOURCE_FOLD_IN
	})
	if len(got.GetItems()) != 5 || slices.Contains(itemIDs(got), data.Items[15].ID) {
		t.Fatalf("fold-in answer %v", got)
	}
}

// TestExternalProducer writes to the topic with a Kafka client of its own, as
// another service would, and sees the effect through the public API.
func TestExternalProducer(t *testing.T) {
	addrs, data := startDaemon(t, withKafka)
	c := dial(t, addrs.GRPC)
	user := data.Events[0].UserID
	req := &recservev1.RecommendRequest{UserId: user, N: proto.Int32(3)}
	before, err := c.rec.Recommend(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	top := before.GetItems()[0].GetItemId()

	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs.Kafka...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	value, _ := proto.Marshal(&recservev1.Event{EventId: "ext-1", UserId: user, ItemId: top, Type: recservev1.EventType_EVENT_TYPE_PURCHASE, Weight: 5})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "interactions", Key: []byte(user), Value: value}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, req, func(r *recservev1.RecommendResponse) bool { return !slices.Contains(itemIDs(r), top) })

	// The server's consumer group reports its lag per partition.
	resp, err := http.Get("http://" + addrs.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `recserve_consumer_lag{group="recserve-server-`) || !strings.Contains(string(body), `topic="interactions"`) {
		t.Fatalf("/metrics has no consumer lag:\n%s", body)
	}
}

func itemIDs(r *recservev1.RecommendResponse) []string {
	var out []string
	for _, it := range r.GetItems() {
		out = append(out, it.GetItemId())
	}
	return out
}

// BenchmarkFreshness measures the time from RecordEvents returning to the next
// Recommend reflecting the event (the purchased item excluded), through the
// embedded Kafka broker and the in-process online store.
func BenchmarkFreshness(b *testing.B) {
	addrs, data := startDaemon(b, withKafka)
	c := dial(b, addrs.GRPC)
	ctx := context.Background()
	var lat []time.Duration
	users := map[string]bool{}
	for _, e := range data.Events {
		users[e.UserID] = true
	}
	var userList []string
	for u := range users {
		userList = append(userList, u)
	}
	slices.Sort(userList)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		user := userList[i%len(userList)]
		req := &recservev1.RecommendRequest{UserId: user, N: proto.Int32(10)}
		before, err := c.rec.Recommend(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		top := before.GetItems()[0].GetItemId()
		ev := &recservev1.Event{EventId: fmt.Sprintf("fresh-%d", i), UserId: user, ItemId: top, Type: recservev1.EventType_EVENT_TYPE_PURCHASE}
		if _, err := c.ev.RecordEvents(ctx, &recservev1.RecordEventsRequest{Events: []*recservev1.Event{ev}}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		waitFor(b, c, req, func(r *recservev1.RecommendResponse) bool { return !slices.Contains(itemIDs(r), top) })
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

// BenchmarkIngest measures RecordEvents throughput with batches of 1000 events
// into the embedded broker, from two concurrent clients.
func BenchmarkIngest(b *testing.B) {
	addrs, data := startDaemon(b, withKafka)
	c := dial(b, addrs.GRPC)
	const batch = 1000
	reqs := make([]*recservev1.RecordEventsRequest, 8)
	for r := range reqs {
		req := &recservev1.RecordEventsRequest{}
		for i := 0; i < batch; i++ {
			e := data.Events[(r*batch+i)%len(data.Events)]
			req.Events = append(req.Events, &recservev1.Event{
				EventId: fmt.Sprintf("ingest-%d-%d", r, i), UserId: e.UserID, ItemId: e.ItemID, Type: recservev1.EventType_EVENT_TYPE_VIEW,
			})
		}
		reqs[r] = req
	}
	b.ResetTimer()
	start := time.Now()
	b.SetParallelism(2)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := c.ev.RecordEvents(context.Background(), reqs[i%len(reqs)]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "events/s")
}

// TestTraceThroughKafka: an event posted over REST is one trace from the
// gateway through the server to the Kafka producer, and the span of the
// consumer that applied it links to that producer span.
func TestTraceThroughKafka(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	addrs, data := startDaemon(t, withKafka, func(c *Config) { c.TracerProvider = tp })
	e := data.Events[0]
	postEvent(t, addrs, &recservev1.Event{EventId: "traced-1", UserId: e.UserID, ItemId: e.ItemID, Type: recservev1.EventType_EVENT_TYPE_CLICK})

	consumed := waitSpan(t, rec, oteltrace.SpanKindConsumer, "process interactions")
	gateway := waitSpan(t, rec, oteltrace.SpanKindServer, "POST /")
	server := waitSpan(t, rec, oteltrace.SpanKindServer, "recserve.v1.EventService/RecordEvents")
	produced := waitSpan(t, rec, oteltrace.SpanKindProducer, "send interactions")
	trace := gateway.SpanContext().TraceID()
	if server.SpanContext().TraceID() != trace || produced.SpanContext().TraceID() != trace || produced.Parent().SpanID() != server.SpanContext().SpanID() {
		t.Fatalf("gateway, server and producer spans are not one trace: %s %s %s", trace, server.SpanContext().TraceID(), produced.SpanContext().TraceID())
	}
	if !slices.ContainsFunc(consumed.Links(), func(l sdktrace.Link) bool { return l.SpanContext.SpanID() == produced.SpanContext().SpanID() }) {
		t.Fatalf("consumer span links %v, want the producer span %s", consumed.Links(), produced.SpanContext().SpanID())
	}
}

// postEvent records e over REST, as a web backend would.
func postEvent(t *testing.T, addrs Addrs, e *recservev1.Event) {
	t.Helper()
	body, _ := protojson.Marshal(&recservev1.RecordEventsRequest{Events: []*recservev1.Event{e}})
	resp, err := http.Post("http://"+addrs.HTTP+"/v1/events", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/events: %d", resp.StatusCode)
	}
}

// TestExternalJSONProducer: an event in JSON, as README's kcat example sends
// it, to an embedded broker on the address the configuration names, changes
// the next recommendation.
func TestExternalJSONProducer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := lis.Addr().String()
	lis.Close()
	addrs, data := startDaemon(t, withKafka, func(c *Config) { c.EmbeddedKafkaAddr = listen })
	if !slices.Equal(addrs.Kafka, []string{listen}) {
		t.Fatalf("embedded broker on %v, want %s", addrs.Kafka, listen)
	}
	c := dial(t, addrs.GRPC)
	user := data.Events[0].UserID
	req := &recservev1.RecommendRequest{UserId: user, N: proto.Int32(3)}
	before, err := c.rec.Recommend(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	top := before.GetItems()[0].GetItemId()
	cl, err := kgo.NewClient(kgo.SeedBrokers(listen))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	value := fmt.Appendf(nil, `{"eventId":"json-1","userId":%q,"itemId":%q,"type":"EVENT_TYPE_PURCHASE"}`, user, top)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "interactions", Key: []byte(user), Value: value}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, req, func(r *recservev1.RecommendResponse) bool { return !slices.Contains(itemIDs(r), top) })
}
