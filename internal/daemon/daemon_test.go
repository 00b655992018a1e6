package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"

	"github.com/recserve/recserve/logs"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/registry"
	"github.com/recserve/recserve/sampledata"
	"github.com/recserve/recserve/trainer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startDaemon trains a small model on sample data, publishes it and runs the
// daemon on loopback ports chosen by the kernel.
func startDaemon(t testing.TB, mods ...func(*Config)) (Addrs, *sampledata.Data) {
	t.Helper()
	data := sampledata.Generate(sampledata.Options{Users: 300, Items: 240, Seed: 3})
	reg, err := registry.Open(filepath.Join(t.TempDir(), "registry"))
	if err != nil {
		t.Fatal(err)
	}
	publishSample(t, reg, data, 1)

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Addrs, 1)
	done := make(chan error, 1)
	cfg := Config{
		Registry: reg.Root(), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		PollInterval: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Security: Security{Plaintext: true},
	}
	for _, mod := range mods {
		mod(&cfg)
	}
	go func() { done <- Run(ctx, cfg, func(a Addrs) { ready <- a }) }()
	var addrs Addrs
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("daemon exited: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon stop: %v", err)
		}
		http.DefaultClient.CloseIdleConnections() // the tests' keep-alive connections to it
	})
	return addrs, data
}

// publishSample trains a small model on data and publishes it.
func publishSample(t testing.TB, reg registry.Store, data *sampledata.Data, seed int64) string {
	t.Helper()
	d := trainer.NewDataset()
	for _, e := range data.Events {
		w, _ := trainer.EventWeight(e.Type)
		d.Add(e.UserID, e.ItemID, w)
	}
	opts := trainer.DefaultOptions()
	opts.Factors, opts.Iterations, opts.Seed = 16, 4, seed
	m, err := trainer.Train(context.Background(), d, opts)
	if err != nil {
		t.Fatal(err)
	}
	b := trainer.Bundle(d, m, data.Items)
	b.Manifest.Model = "demo"
	v, err := reg.Publish(b)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func getJSON(t testing.TB, rawURL string, out any) int {
	t.Helper()
	resp, err := http.Get(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("GET %s: %v in %s", rawURL, err, body)
		}
	}
	return resp.StatusCode
}

type restItems struct {
	Items []struct {
		ItemID   string  `json:"itemId"`
		Score    float64 `json:"score"`
		Category string  `json:"category"`
	} `json:"items"`
	Model        string `json:"model"`
	ModelVersion string `json:"modelVersion"`
	RequestID    string `json:"requestId"`
	Source       string `json:"source"`
}

type restError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		FieldViolations []struct {
			Field string `json:"field"`
		} `json:"fieldViolations"`
	} `json:"details"`
}

func TestREST(t *testing.T) {
	addrs, data := startDaemon(t)
	base := "http://" + addrs.HTTP
	user := data.Events[0].UserID

	var rec restItems
	if code := getJSON(t, base+"/v1/users/"+user+"/recommendations?n=7", &rec); code != http.StatusOK {
		t.Fatalf("status %d: %+v", code, rec)
	}
	if len(rec.Items) != 7 || rec.Model != "demo" || rec.ModelVersion == "" || rec.RequestID == "" || rec.Source != "RECOMMENDATION_SOURCE_MODEL" {
		t.Fatalf("recommendations %+v", rec)
	}

	var books restItems
	getJSON(t, base+"/v1/users/"+user+"/recommendations?n=5&filter.includeCategories=books", &books)
	if len(books.Items) != 5 {
		t.Fatalf("filtered: %+v", books)
	}
	for _, it := range books.Items {
		if it.Category != "books" {
			t.Fatalf("category filter: got %+v", it)
		}
	}

	var stranger restItems
	getJSON(t, base+"/v1/users/"+url.PathEscape("new visitor")+"/recommendations", &stranger)
	if stranger.Source != "RECOMMENDATION_SOURCE_POPULARITY" || len(stranger.Items) != 10 {
		t.Fatalf("unknown user: %+v", stranger)
	}

	var sim restItems
	if code := getJSON(t, base+"/v1/items/"+data.Items[0].ID+"/similar?n=4", &sim); code != http.StatusOK || len(sim.Items) != 4 {
		t.Fatalf("similar: %d %+v", code, sim)
	}

	resp, err := http.Post(base+"/v1/recommendations:batch", "application/json",
		strings.NewReader(fmt.Sprintf(`{"userIds":[%q,"someone-new"],"n":3}`, user)))
	if err != nil {
		t.Fatal(err)
	}
	var batch struct {
		Results []struct {
			UserID string `json:"userId"`
			Items  []any  `json:"items"`
		} `json:"results"`
		ModelVersion string `json:"modelVersion"`
	}
	json.NewDecoder(resp.Body).Decode(&batch)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(batch.Results) != 2 || len(batch.Results[0].Items) != 3 || batch.ModelVersion == "" {
		t.Fatalf("batch: %d %+v", resp.StatusCode, batch)
	}

	errCases := []struct {
		path  string
		code  int
		field string
	}{
		{"/v1/users/" + user + "/recommendations?n=0", http.StatusBadRequest, "n"},
		{"/v1/users/" + user + "/recommendations?n=1001", http.StatusBadRequest, "n"},
		{"/v1/users/" + user + "/recommendations?filter.excludeCategories=", http.StatusBadRequest, "filter.exclude_categories[0]"},
		{"/v1/users/" + user + "/recommendations?model=nope", http.StatusNotFound, ""},
		{"/v1/items/no-such-item/similar", http.StatusNotFound, ""},
		{"/v1/users/" + user + "/recommendations?n=abc", http.StatusBadRequest, ""},
	}
	for _, c := range errCases {
		var e restError
		if code := getJSON(t, base+c.path, &e); code != c.code {
			t.Errorf("%s: status %d, want %d (%+v)", c.path, code, c.code, e)
			continue
		}
		if c.field != "" && (len(e.Details) == 0 || len(e.Details[0].FieldViolations) == 0 || e.Details[0].FieldViolations[0].Field != c.field) {
			t.Errorf("%s: details %+v, want field %q", c.path, e, c.field)
		}
	}

	resp, err = http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
	var spec struct {
		Paths map[string]any `json:"paths"`
	}
	getJSON(t, base+"/openapi.json", &spec)
	if _, ok := spec.Paths["/v1/users/{userId}/recommendations"]; !ok {
		t.Fatalf("openapi paths: %v", spec.Paths)
	}
}

func TestGRPC(t *testing.T) {
	addrs, data := startDaemon(t)
	conn, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health %v %v", h, err)
	}
	resp, err := recservev1.NewRecommendServiceClient(conn).Recommend(ctx, &recservev1.RecommendRequest{UserId: data.Events[0].UserID, N: proto.Int32(5)})
	if err != nil || len(resp.GetItems()) != 5 || resp.GetModelVersion() == "" {
		t.Fatalf("recommend %v %v", resp, err)
	}

	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	stream.CloseSend()
	var names []string
	for _, s := range r.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !strings.Contains(strings.Join(names, ","), "recserve.v1.RecommendService") {
		t.Fatalf("reflection lists %v", names)
	}
}

func TestRunFailsOnBusyPort(t *testing.T) {
	addrs, _ := startDaemon(t)
	err := Run(context.Background(), Config{Registry: t.TempDir(), GRPCAddr: addrs.GRPC, Security: Security{Plaintext: true}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil)
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("Run on a busy port: %v", err)
	}
}

func TestMetricsPerVersion(t *testing.T) {
	var regDir string
	addrs, data := startDaemon(t, func(c *Config) { regDir, c.MemoryLimit = c.Registry, 16<<30 })
	base := "http://" + addrs.HTTP
	// A corrupt new version is refused, counted, and version 1 keeps serving.
	reg, err := registry.Open(regDir)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := reg.Load("demo", "1")
	if err != nil {
		t.Fatal(err)
	}
	bad := publishSample(t, reg, data, 9)
	vectors := filepath.Join(regDir, "demo", bad, registry.ItemVectorsFile)
	raw, err := os.ReadFile(vectors)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1] ^= 0xff
	if err := os.WriteFile(vectors, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	// The server polls the registry every 100 ms; wait until it has refused
	// the version rather than for a fixed time (under -race on a busy machine,
	// 300 ms was not always enough).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		health, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(health), "load_error demo/"+bad+": ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the corrupt version %s was not refused within 30 s; /healthz:\n%s", bad, health)
		}
	}
	user := data.Events[0].UserID
	for i := 0; i < 3; i++ {
		getJSON(t, base+"/v1/users/"+user+"/recommendations?n=3", nil)
	}
	getJSON(t, base+"/v1/users/"+user+"/recommendations?n=0", nil)
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`recserve_requests_total{code="OK",model="demo",rpc="Recommend",version="1"} 3`,
		`recserve_requests_total{code="INVALID_ARGUMENT",model="",rpc="Recommend",version=""} 1`,
		`recserve_request_duration_seconds_bucket{model="demo",rpc="Recommend",version="1",le="0.005"}`,
		`recserve_cache_requests_total{rpc="Recommend"} 3`,
		`recserve_cache_hits_total{rpc="Recommend"} 2`,
		`recserve_model_version_info{model="demo",role="stable",version="1"} 1`,
		`recserve_models_loaded 1`,
		`recserve_model_load_failures{model="demo"} 1`,
		`recserve_model_version_age_seconds{model="demo",version="1"}`,
		fmt.Sprintf(`recserve_index_items{model="demo",version="1"} %d`, v1.Manifest.Items),
		`go_goroutines`,
		`recserve_memory_limit_bytes 1.7179869184e+10`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	resp, err = http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	health, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(health), "load_error demo/"+bad+": ") {
		t.Errorf("/healthz %d:\n%s\nwant SERVING with the refused version %s", resp.StatusCode, health, bad)
	}
	if t.Failed() {
		t.Log(text)
	}
}

// TestTraceSpansGatewayAndServer follows one REST request: the gateway's HTTP
// span, its gRPC client span and the server's gRPC span share one trace.
func TestTraceSpansGatewayAndServer(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	addrs, data := startDaemon(t, func(c *Config) { c.TracerProvider = tp })
	getJSON(t, "http://"+addrs.HTTP+"/v1/users/"+data.Events[0].UserID+"/recommendations?n=2", nil)

	httpSpan := waitSpan(t, rec, oteltrace.SpanKindServer, "GET ")
	serverSpan := waitSpan(t, rec, oteltrace.SpanKindServer, "recserve.v1.RecommendService/Recommend")
	if httpSpan.SpanContext().TraceID() != serverSpan.SpanContext().TraceID() {
		t.Fatalf("gateway trace %s, server trace %s: not one trace", httpSpan.SpanContext().TraceID(), serverSpan.SpanContext().TraceID())
	}
	if !serverSpan.Parent().IsValid() || !serverSpan.Parent().IsRemote() {
		t.Fatalf("server span's parent %v: want the gateway's client span, across the wire", serverSpan.Parent())
	}
}

// syncBuffer is a bytes.Buffer safe for the daemon's goroutines to write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLogsCarryTraceIDs: a request that fails on the server's side (no model
// loaded yet: UNAVAILABLE) is logged as JSON with the trace id of its spans.
func TestLogsCarryTraceIDs(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	var out syncBuffer
	addrs, _ := startDaemon(t, func(c *Config) {
		c.Registry, c.TracerProvider, c.Logger = t.TempDir(), tp, logs.NewJSON(&out, slog.LevelInfo)
	})
	if code := getJSON(t, "http://"+addrs.HTTP+"/v1/users/u1/recommendations", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("status %d with no model loaded, want 503", code)
	}
	serverSpan := waitSpan(t, rec, oteltrace.SpanKindServer, "recserve.v1.RecommendService/Recommend")
	for _, line := range strings.Split(out.String(), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && r["msg"] == "request failed" {
			if r["trace_id"] != serverSpan.SpanContext().TraceID().String() || r["code"] != "Unavailable" || r["rpc"] != "Recommend" {
				t.Fatalf("log line %s, want trace %s", line, serverSpan.SpanContext().TraceID())
			}
			return
		}
	}
	t.Fatalf("no \"request failed\" line in:\n%s", out.String())
}

// waitSpan returns the first ended span of kind whose name starts with name,
// waiting for it up to 10 s: servers end their spans after the response has
// gone out, so a client may see the answer first.
func waitSpan(t *testing.T, rec *tracetest.SpanRecorder, kind oteltrace.SpanKind, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var names []string
		for _, s := range rec.Ended() {
			if s.SpanKind() == kind && strings.HasPrefix(s.Name(), name) {
				return s
			}
			names = append(names, s.SpanKind().String()+" "+s.Name())
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s span %q among %q", kind, name, names)
		}
	}
}
