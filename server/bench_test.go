package server

import (
	"context"
	"fmt"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"

	"github.com/recserve/recserve/online"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/registry"
)

// BenchmarkRecommend calls Recommend (n = 20, known users, response cache off,
// in-process online store, OpenTelemetry SDK metrics) through the gRPC
// interceptors, without the network, so that allocations and CPU profiles show
// the server's own cost per request.
func BenchmarkRecommend(b *testing.B) {
	for _, items := range []int{20_000} {
		b.Run(fmt.Sprintf("items=%d", items), func(b *testing.B) {
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
					req := &recservev1.RecommendRequest{UserId: fmt.Sprintf("u%d", i%10_000), N: &n}
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
