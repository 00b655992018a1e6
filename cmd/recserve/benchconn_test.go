package main

import (
	"context"
	"encoding/binary"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// echoServer answers Recommend with N items and the user id as the model
// version, after delay; user "missing" is NOT_FOUND and user "slow" is
// answered after 600 ms.
type echoServer struct {
	recservev1.UnimplementedRecommendServiceServer
	delay time.Duration
}

func (e echoServer) Recommend(ctx context.Context, req *recservev1.RecommendRequest) (*recservev1.RecommendResponse, error) {
	time.Sleep(e.delay)
	switch req.UserId {
	case "missing":
		return nil, status.Error(codes.NotFound, "user_id: no such user")
	case "slow":
		time.Sleep(600 * time.Millisecond)
	}
	resp := &recservev1.RecommendResponse{ModelVersion: req.UserId}
	for i := range req.GetN() {
		resp.Items = append(resp.Items, &recservev1.ScoredItem{ItemId: benchItemID(int(i)), Score: float32(i)})
	}
	return resp, nil
}

func startEcho(t *testing.T, delay time.Duration) (addr string, stop func()) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	recservev1.RegisterRecommendServiceServer(srv, echoServer{delay: delay})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), srv.Stop
}

// result is what a test keeps of a finished call.
type result struct {
	at      int64
	code    codes.Code
	items   int
	version string
}

func requestMsg(t *testing.T, user string, n int32) []byte {
	t.Helper()
	msg, err := proto.MarshalOptions{}.MarshalAppend(make([]byte, 5), &recservev1.RecommendRequest{UserId: user, N: &n})
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint32(msg[1:5], uint32(len(msg)-5))
	return msg
}

// dialEcho connects to addr with results sent to the returned channel.
func dialEcho(t *testing.T, addr string, timeout time.Duration) (*h2conn, chan result) {
	t.Helper()
	results := make(chan result, 10000)
	start := time.Now()
	now := func() int64 { return time.Since(start).Nanoseconds() }
	c, err := dialH2(addr, recservev1.RecommendService_Recommend_FullMethodName, timeout, now, func(_ *h2conn, cl *call) {
		r := result{at: cl.at, code: cl.code}
		if cl.code == codes.OK {
			var reply benchReply
			if err := reply.decode(cl.msg); err != nil {
				t.Errorf("call %d: %v", cl.at, err)
			}
			r.items, r.version = reply.items, string(reply.version)
		}
		results <- r
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.close(codes.Canceled) })
	return c, results
}

func TestH2ConnCalls(t *testing.T) {
	addr, _ := startEcho(t, 0)
	c, results := dialEcho(t, addr, 10*time.Second)
	// 4,000 calls from 4 goroutines, many in flight at once: every answer
	// must reach its own call. 50 items each make ~3 MB of responses, more
	// than the connection window's refill.
	const calls = 4000
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < calls; i += 4 {
				if err := c.send(int64(i), 0, requestMsg(t, "u"+strconv.Itoa(i), 50), i%8 < 4); err != nil {
					t.Error(err)
					return
				}
			}
			c.flush()
		})
	}
	wg.Wait()
	seen := map[int64]bool{}
	for range calls {
		r := <-results
		if r.code != codes.OK || r.items != 50 || r.version != "u"+strconv.FormatInt(r.at, 10) {
			t.Fatalf("call %d: %v, %d items, version %q; want OK, 50, u%d", r.at, r.code, r.items, r.version, r.at)
		}
		seen[r.at] = true
	}
	if len(seen) != calls {
		t.Fatalf("%d distinct calls answered, want %d", len(seen), calls)
	}
}

func TestH2ConnErrors(t *testing.T) {
	addr, stop := startEcho(t, 0)
	c, results := dialEcho(t, addr, 200*time.Millisecond)
	for i, tc := range []struct {
		user string
		want codes.Code
	}{
		{"missing", codes.NotFound},
		{"slow", codes.DeadlineExceeded}, // past the 200 ms deadline
		{"u1", codes.OK},
	} {
		if err := c.send(int64(i), c.now(), requestMsg(t, tc.user, 3), true); err != nil {
			t.Fatal(err)
		}
		if r := <-results; r.code != tc.want {
			t.Errorf("user %q: %v, want %v", tc.user, r.code, tc.want)
		}
	}

	// A server that goes away fails what is in flight, and later calls are refused.
	c2, results2 := dialEcho(t, addr, 10*time.Second)
	if err := c2.send(0, 0, requestMsg(t, "slow", 3), true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the call reaches the server
	stop()
	if r := <-results2; r.code != codes.Unavailable {
		t.Errorf("call in flight when the server stopped: %v, want Unavailable", r.code)
	}
	if err := c2.send(1, 0, requestMsg(t, "u1", 3), true); err == nil {
		t.Error("send on a closed connection succeeded")
	}
}

// runLoad runs g for d against an echo server answering after delay, over
// conns connections, and returns its samples and how long the run took.
func runLoad(t *testing.T, g *loadGen, delay time.Duration, conns int, d time.Duration) ([]sample, time.Duration) {
	t.Helper()
	addr, _ := startEcho(t, delay)
	if err := g.dial(addr, conns); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	samples := g.run(ctx, start)
	return samples, time.Since(start)
}

func TestLoadGenOpenLoop(t *testing.T) {
	g := &loadGen{users: 100, n: 5, timeout: 10 * time.Second, workers: 8, rate: 2000}
	samples, took := runLoad(t, g, 0, 2, 200*time.Millisecond)
	// Request i is due at i x 0.5 ms, and the ~400 due in 200 ms are all sent
	// and answered, none before it was due (none due after the run either).
	if most := int(took.Seconds()*2000) + 1; len(samples) < 100 || len(samples) > most {
		t.Fatalf("%d samples, want about 400, at most %d in %v", len(samples), most, took)
	}
	for i, s := range samples {
		if s.at != int64(i)*500_000 || s.code != codes.OK || s.short || s.lag < 0 || s.took < s.lag {
			t.Fatalf("sample %d: %+v; want due at %d ns, OK, sent after it was due", i, s, int64(i)*500_000)
		}
	}
}

func TestLoadGenWaitsForAPlace(t *testing.T) {
	// One place and answers slower than requests fall due: those due
	// meanwhile wait, and their latency counts from when they were due.
	g := &loadGen{users: 1, n: 1, timeout: 10 * time.Second, workers: 1, rate: 50}
	samples, _ := runLoad(t, g, 80*time.Millisecond, 1, 300*time.Millisecond)
	if len(samples) < 2 || len(samples) > 5 {
		t.Fatalf("%d samples, want up to 4 answers of 80 ms in 300 ms, one at a time", len(samples))
	}
	for i, s := range samples {
		if s.at != int64(i)*20_000_000 || s.code != codes.OK {
			t.Errorf("sample %d: due at %d ns, %v; want due at %d, OK", i, s.at, s.code, int64(i)*20_000_000)
		}
		if i > 0 {
			if prev := samples[i-1]; s.at+s.lag < prev.at+prev.took {
				t.Errorf("sample %d was sent at %d ns, before the one place was freed at %d", i, s.at+s.lag, prev.at+prev.took)
			}
		}
	}
}

func TestH2ConnLargeAnswer(t *testing.T) {
	addr, _ := startEcho(t, 0)
	c, results := dialEcho(t, addr, 10*time.Second)
	// ~100 KB: more than HTTP/2's default stream window of 64 KiB.
	if err := c.send(0, c.now(), requestMsg(t, "big", 5000), true); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-results:
		if r.code != codes.OK || r.items != 5000 {
			t.Errorf("%v, %d items; want OK, 5000", r.code, r.items)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer in 5 s: the stream's flow-control window stalled it")
	}
}

func TestSampleLogKeepsSamplesInPlace(t *testing.T) {
	var l sampleLog
	l.add(sample{at: 0})
	first := &l.chunks[0][0]
	n := 2*sampleChunk + 5
	for i := 1; i < n; i++ {
		l.add(sample{at: int64(i)})
	}
	if &l.chunks[0][0] != first {
		t.Fatal("adding samples moved the first one")
	}
	all := l.all()
	if len(all) != n {
		t.Fatalf("all() has %d samples, want %d", len(all), n)
	}
	for i, s := range all {
		if s.at != int64(i) {
			t.Fatalf("sample %d has at %d, want them in the order added", i, s.at)
		}
	}
}
