package server

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"

	"github.com/recserve/recserve/online"
	"google.golang.org/protobuf/proto"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/registry"
)

// BenchmarkRecommend calls Recommend (n = 20, known users, response cache off,
// in-process online store, OpenTelemetry SDK metrics) through the gRPC
// interceptors, without the network, so that allocations and CPU profiles show
// the server's own cost per request.
//
// The ranked variant adds diversity (MMR, lambda 0.3) and exploration (10%).
func BenchmarkRecommend(b *testing.B) {
	variants := []struct {
		name    string
		ranking *recservev1.Ranking
	}{{"items=20000", nil}, {"items=20000/ranked", &recservev1.Ranking{DiversityLambda: proto.Float64(0.3), ExplorationShare: proto.Float64(0.1)}}}
	for _, v := range variants {
		items := 20_000
		b.Run(v.name, func(b *testing.B) {
			reg, err := registry.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := reg.Publish(testBundle("m", 10_000, items, 64, 1)); err != nil {
				b.Fatal(err)
			}
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			defer mp.Shutdown(context.Background())
			s, err := New(Options{Registry: reg, Logger: quiet, Online: online.NewMemory(), CacheTTL: -1, Meter: mp.Meter("bench")})
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Refresh(context.Background()); err != nil {
				b.Fatal(err)
			}
			n := int32(20)
			handler := func(ctx context.Context, req any) (any, error) {
				return s.Recommend(ctx, req.(*recservev1.RecommendRequest))
			}
			info := &grpc.UnaryServerInfo{FullMethod: "/recserve.v1.RecommendService/Recommend"}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					req := &recservev1.RecommendRequest{UserId: fmt.Sprintf("u%d", i%10_000), N: &n, Ranking: v.ranking}
					i += 7919
					resp, err := s.measureUnary(context.Background(), req, info, handler)
					if err != nil || len(resp.(*recservev1.RecommendResponse).GetItems()) != 20 {
						b.Fatalf("Recommend: %v, %v", resp, err)
					}
				}
			})
		})
	}
}

// BenchmarkBatchRecommend calls BatchRecommend for 100 known users (n = 20,
// 20k items) one batch at a time, with the in-process online store and with
// Redis (skipped when none answers at 127.0.0.1:6379 or RECSERVE_TEST_REDIS),
// each user with a few events: the time per batch is what a caller waits.
func BenchmarkBatchRecommend(b *testing.B) {
	stores := map[string]func(b *testing.B) OnlineStore{
		"online=memory": func(*testing.B) OnlineStore { return online.NewMemory() },
		"online=redis": func(b *testing.B) OnlineStore {
			addr := cmp.Or(os.Getenv("RECSERVE_TEST_REDIS"), "127.0.0.1:6379")
			r := online.NewRedis(online.RedisOptions{Addr: addr, Prefix: fmt.Sprintf("rsbench:%d:", time.Now().UnixNano()), TTL: time.Minute, Timeout: time.Second})
			if err := r.Ping(context.Background()); err != nil {
				r.Close()
				b.Skipf("no Redis at %s: %v", addr, err)
			}
			b.Cleanup(func() { r.Close() })
			return r
		},
	}
	for _, name := range []string{"online=memory", "online=redis"} {
		b.Run(name, func(b *testing.B) {
			store := stores[name](b)
			reg, err := registry.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := reg.Publish(testBundle("m", 10_000, 20_000, 64, 1)); err != nil {
				b.Fatal(err)
			}
			s, err := New(Options{Registry: reg, Logger: quiet, Online: store, CacheTTL: -1})
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Refresh(context.Background()); err != nil {
				b.Fatal(err)
			}
			users := make([]string, MaxBatchUsers)
			var evs []*recservev1.Event
			for i := range users {
				users[i] = fmt.Sprintf("u%d", i*97)
				for j := range 3 {
					evs = append(evs, &recservev1.Event{EventId: fmt.Sprintf("e%d-%d", i, j), UserId: users[i], ItemId: fmt.Sprintf("i%d", i*31+j), Type: recservev1.EventType_EVENT_TYPE_VIEW, Weight: 1})
				}
			}
			if _, err := store.Record(context.Background(), evs); err != nil {
				b.Fatal(err)
			}
			n := int32(20)
			req := &recservev1.BatchRecommendRequest{UserIds: users, N: &n}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				resp, err := s.BatchRecommend(context.Background(), req)
				if err != nil || len(resp.GetResults()) != len(users) || len(resp.GetResults()[0].GetItems()) != 20 {
					b.Fatalf("BatchRecommend: %v", err)
				}
			}
		})
	}
}
