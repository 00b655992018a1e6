package ratelimit

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/recserve/recserve/auth"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		err  string
	}{
		{"empty", Config{}, ""},
		{"limits", Config{Roles: map[string]Limit{"recommend": {Rate: 100, Burst: 200}, "admin": {}}, Default: Limit{Rate: 0.5, Burst: 1}}, ""},
		{"exempt", Config{Exempt: []string{"/a.B/C", "/a.B/*"}}, ""},
		{"no burst", Config{Roles: map[string]Limit{"recommend": {Rate: 100}}}, `role "recommend"`},
		{"no rate", Config{Default: Limit{Burst: 10}}, "default"},
		{"negative rate", Config{Default: Limit{Rate: -1, Burst: 10}}, "default"},
		{"bad exempt", Config{Exempt: []string{"a.B/C"}}, "exempt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("got %v, want error containing %q", err, tc.err)
			}
		})
	}
}

func TestLimitFor(t *testing.T) {
	l, err := New(Config{
		Roles: map[string]Limit{
			"recommend": {Rate: 100, Burst: 10},
			"ingest":    {Rate: 10, Burst: 50},
			"admin":     {},
		},
		Default: Limit{Rate: 1, Burst: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		roles []string
		want  Limit
	}{
		{nil, Limit{Rate: 1, Burst: 1}},
		{[]string{"other"}, Limit{Rate: 1, Burst: 1}},
		{[]string{"recommend"}, Limit{Rate: 100, Burst: 10}},
		{[]string{"recommend", "ingest"}, Limit{Rate: 100, Burst: 50}},
		{[]string{"other", "ingest"}, Limit{Rate: 10, Burst: 50}},
		{[]string{"recommend", "admin"}, Limit{}},
	}
	for _, tc := range tests {
		if got := l.LimitFor(tc.roles); got != tc.want {
			t.Errorf("LimitFor(%v) = %+v, want %+v", tc.roles, got, tc.want)
		}
	}
}

func TestAllow(t *testing.T) {
	clk := newClock()
	l, err := New(Config{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	lim := Limit{Rate: 2, Burst: 3}
	for i := range 3 {
		if w := l.Allow("a", lim); w != 0 {
			t.Fatalf("request %d of the burst waits %v", i, w)
		}
	}
	if w := l.Allow("a", lim); w != 500*time.Millisecond {
		t.Fatalf("over the burst: wait %v, want 500ms", w)
	}
	if w := l.Allow("b", lim); w != 0 {
		t.Fatalf("another key waits %v", w)
	}
	clk.Advance(200 * time.Millisecond)
	if w := l.Allow("a", lim); w != 300*time.Millisecond {
		t.Fatalf("after 200ms: wait %v, want 300ms", w)
	}
	clk.Advance(300 * time.Millisecond)
	if w := l.Allow("a", lim); w != 0 {
		t.Fatalf("after the refill: wait %v", w)
	}
	if w := l.Allow("a", lim); w == 0 {
		t.Fatal("a second token after refilling one")
	}
	// A long idle period refills up to the burst only.
	clk.Advance(time.Hour)
	for i := range 3 {
		if w := l.Allow("a", lim); w != 0 {
			t.Fatalf("after an hour, request %d waits %v", i, w)
		}
	}
	if w := l.Allow("a", lim); w == 0 {
		t.Fatal("burst exceeded after idling")
	}
	if w := l.Allow("a", Limit{}); w != 0 {
		t.Fatal("unlimited request waits")
	}
}

// TestEviction: buckets that have refilled are dropped, so memory follows the active
// principals, not all principals ever seen.
func TestEviction(t *testing.T) {
	clk := newClock()
	l, err := New(Config{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	slow := Limit{Rate: 1.0 / 3600, Burst: 1} // refills in an hour
	fast := Limit{Rate: 10, Burst: 10}
	for i := range 1000 {
		l.Allow(fmt.Sprint("fast", i), fast)
	}
	l.Allow("slow", slow)
	if n := l.Len(); n != 1001 {
		t.Fatalf("%d buckets", n)
	}
	clk.Advance(sweepInterval)
	l.Allow("fast0", fast) // sweeps
	if n := l.Len(); n != 2 {
		t.Fatalf("after a sweep, %d buckets, want slow and fast0", n)
	}
	if w := l.Allow("slow", slow); w == 0 {
		t.Fatal("the slow bucket was dropped before it refilled")
	}
	clk.Advance(time.Hour)
	l.Allow("x", fast)
	if n := l.Len(); n != 1 {
		t.Fatalf("after an hour, %d buckets", n)
	}
}

// TestUnauthenticatedByPeer: without a principal, callers share a bucket per IP.
func TestUnauthenticatedByPeer(t *testing.T) {
	clk := newClock()
	l, err := New(Config{Default: Limit{Rate: 1, Burst: 1}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	from := func(addr string) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(addr), Port: 40000 + len(addr)}})
	}
	m := "/recserve.v1.RecommendService/Recommend"
	if err := l.check(from("10.0.0.1"), m); err != nil {
		t.Fatal(err)
	}
	if err := l.check(from("10.0.0.1"), m); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second call from the same IP: %v", err)
	}
	if err := l.check(from("10.0.0.2"), m); err != nil {
		t.Fatalf("another IP: %v", err)
	}
	if err := l.check(from("10.0.0.1"), "/grpc.health.v1.Health/Check"); err != nil {
		t.Fatalf("health: %v", err)
	}
}

// Test API keys.
const (
	keyAlice = "rsk_alice"
	keyBob   = "rsk_bob"
	keyOps   = "rsk_ops"
)

// blockingRecommend blocks Recommend until release is closed, when block is set.
type blockingRecommend struct {
	recservev1.UnimplementedRecommendServiceServer
	block   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (b *blockingRecommend) Recommend(ctx context.Context, _ *recservev1.RecommendRequest) (*recservev1.RecommendResponse, error) {
	if b.block.Load() {
		b.entered <- struct{}{}
		select {
		case <-b.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &recservev1.RecommendResponse{}, nil
}

// serve runs RecommendService and health on 127.0.0.1:0 behind the interceptor chain
// the daemon uses: in-flight cap, authentication, rate limit.
func serve(t *testing.T, svc recservev1.RecommendServiceServer, f *InFlight, l *Limiter) *grpc.ClientConn {
	t.Helper()
	a, err := auth.New(auth.Config{APIKeys: []string{
		"alice:recommend:" + auth.HashKey(keyAlice),
		"bob:recommend:" + auth.HashKey(keyBob),
		"ops:recommend,admin:" + auth.HashKey(keyOps),
	}})
	if err != nil {
		t.Fatal(err)
	}
	var unary []grpc.UnaryServerInterceptor
	var stream []grpc.StreamServerInterceptor
	if f != nil {
		unary, stream = append(unary, f.UnaryInterceptor()), append(stream, f.StreamInterceptor())
	}
	unary, stream = append(unary, a.UnaryInterceptor()), append(stream, a.StreamInterceptor())
	if l != nil {
		unary, stream = append(unary, l.UnaryInterceptor()), append(stream, l.StreamInterceptor())
	}
	s := grpc.NewServer(grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...))
	recservev1.RegisterRecommendServiceServer(s, svc)
	healthpb.RegisterHealthServer(s, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		s.Stop()
		<-done
	})
	return conn
}

func recommendAs(conn *grpc.ClientConn, key string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-api-key", key)
	_, err := recservev1.NewRecommendServiceClient(conn).Recommend(ctx, &recservev1.RecommendRequest{UserId: "u1"})
	return err
}

func checkHealth(conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// retryDelay is the RetryInfo delay of err, or 0.
func retryDelay(err error) time.Duration {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

func TestRateLimitGRPC(t *testing.T) {
	clk := newClock()
	l, err := New(Config{
		Roles:   map[string]Limit{"recommend": {Rate: 2, Burst: 3}, "admin": {}},
		Default: Limit{Rate: 1, Burst: 1},
		Now:     clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	conn := serve(t, &blockingRecommend{}, nil, l)

	for i := range 3 {
		if err := recommendAs(conn, keyAlice); err != nil {
			t.Fatalf("call %d of the burst: %v", i, err)
		}
	}
	err = recommendAs(conn, keyAlice)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("over the burst: %v", err)
	}
	if d := retryDelay(err); d != 500*time.Millisecond {
		t.Fatalf("RetryInfo delay %v, want 500ms (%v)", d, err)
	}
	if strings.Contains(err.Error(), keyAlice) {
		t.Errorf("error %q contains the API key", err)
	}
	// Another principal has its own bucket; admin's is unlimited.
	if err := recommendAs(conn, keyBob); err != nil {
		t.Fatalf("bob: %v", err)
	}
	for i := range 20 {
		if err := recommendAs(conn, keyOps); err != nil {
			t.Fatalf("unlimited ops, call %d: %v", i, err)
		}
	}
	// Health is not limited.
	for i := range 10 {
		if err := checkHealth(conn); err != nil {
			t.Fatalf("health call %d: %v", i, err)
		}
	}
	// Half a second later alice has a token again, and only one.
	clk.Advance(500 * time.Millisecond)
	if err := recommendAs(conn, keyAlice); err != nil {
		t.Fatalf("after the refill: %v", err)
	}
	if err := recommendAs(conn, keyAlice); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second call after refilling one token: %v", err)
	}
	// Rejected before the handler: unauthenticated calls are not counted against alice.
	if err := recommendAs(conn, "rsk_wrong"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("bad key: %v", err)
	}
}

func TestInFlight(t *testing.T) {
	if _, err := NewInFlight(0); err == nil {
		t.Fatal("NewInFlight(0) succeeded")
	}
	const n = 2
	f, err := NewInFlight(n)
	if err != nil {
		t.Fatal(err)
	}
	svc := &blockingRecommend{entered: make(chan struct{}), release: make(chan struct{})}
	svc.block.Store(true)
	conn := serve(t, svc, f, nil)

	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() { errs <- recommendAs(conn, keyAlice) })
	}
	for range n {
		<-svc.entered
	}
	if got := f.Current(); got != n {
		t.Fatalf("%d in flight, want %d", got, n)
	}
	start := time.Now()
	err = recommendAs(conn, keyBob)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("call %d: %v", n+1, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("rejection took %v, want immediate", d)
	}
	if err := recommendAs(conn, "rsk_wrong"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("over the cap, a bad key is not even authenticated: %v", err)
	}
	if err := checkHealth(conn); err != nil {
		t.Fatalf("health at the cap: %v", err)
	}
	close(svc.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("blocked call: %v", err)
		}
	}
	if got := f.Current(); got != 0 {
		t.Fatalf("%d in flight after all returned", got)
	}
	svc.block.Store(false)
	if err := recommendAs(conn, keyBob); err != nil {
		t.Fatalf("after the release: %v", err)
	}
}
