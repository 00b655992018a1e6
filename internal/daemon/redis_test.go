package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// redisProc is a redis-server of the test's own, so it can be stopped.
type redisProc struct {
	port int
	cmd  *exec.Cmd
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (r *redisProc) start(t testing.TB) {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("this test needs redis-server on PATH (.ci/run installs it): %v", err)
	}
	r.cmd = exec.Command(path, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", r.addr()); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("redis-server did not start")
}

func (r *redisProc) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		r.cmd = nil
	}
}

func (r *redisProc) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

// TestRedisOutageUnderLoad kills Redis while clients send requests, then brings it
// back: no request may fail, and the daemon must use Redis again afterwards.
func TestRedisOutageUnderLoad(t *testing.T) {
	rp := &redisProc{port: freePort(t)}
	rp.start(t)
	defer rp.stop()
	addrs, data := startDaemon(t, withKafka, func(c *Config) { c.RedisAddr = rp.addr() })
	c := dial(t, addrs.GRPC)

	var users []string
	for _, e := range data.Events {
		if !slices.Contains(users, e.UserID) {
			users = append(users, e.UserID)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i += 4 {
				_, err := c.rec.Recommend(context.Background(), &recservev1.RecommendRequest{UserId: users[i%len(users)], N: proto.Int32(10)})
				if err != nil {
					failed.Add(1)
					t.Errorf("request failed: %v", err)
					continue
				}
				ok.Add(1)
			}
		}(w)
	}
	time.Sleep(300 * time.Millisecond)
	rp.stop()
	time.Sleep(500 * time.Millisecond)
	rp.start(t)
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("%d requests failed, %d succeeded", failed.Load(), ok.Load())
	}
	t.Logf("%d requests, none failed, across a Redis restart", ok.Load())

	// Reconnected: an event goes through Kafka into the new Redis and shows.
	user := users[0]
	req := &recservev1.RecommendRequest{UserId: user, N: proto.Int32(5)}
	before, err := c.rec.Recommend(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	top := before.GetItems()[0].GetItemId()
	if _, err := c.ev.RecordEvents(context.Background(), &recservev1.RecordEventsRequest{Events: []*recservev1.Event{
		{EventId: "after-restart", UserId: user, ItemId: top, Type: recservev1.EventType_EVENT_TYPE_PURCHASE},
	}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, req, func(r *recservev1.RecommendResponse) bool { return !slices.Contains(itemIDs(r), top) })
}

// TestTraceIntoRedis: the Redis commands of a REST request (the user's online
// state, the response cache) are spans of the request's trace.
func TestTraceIntoRedis(t *testing.T) {
	rp := &redisProc{port: freePort(t)}
	rp.start(t)
	defer rp.stop()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	addrs, data := startDaemon(t, func(c *Config) { c.RedisAddr, c.TracerProvider = rp.addr(), tp })
	if code := getJSON(t, "http://"+addrs.HTTP+"/v1/users/"+data.Events[0].UserID+"/recommendations?n=3", nil); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	server := waitSpan(t, rec, oteltrace.SpanKindServer, "recserve.v1.RecommendService/Recommend")
	redisSpans := map[oteltrace.TraceID]int{}
	for _, s := range rec.Ended() {
		if s.SpanKind() == oteltrace.SpanKindClient && strings.HasPrefix(s.Name(), "redis ") {
			redisSpans[s.SpanContext().TraceID()]++
		}
	}
	if n := redisSpans[server.SpanContext().TraceID()]; n < 2 {
		t.Fatalf("%d Redis spans in the request's trace, want the state read and the cache: %v", n, redisSpans)
	}
}
