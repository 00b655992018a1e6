// Command grpcfloor is a stand-in for "recserve serve" that answers every
// Recommend with the first n (default 20) of 100 canned items and does nothing else: run
// under the serving benchmark (`recserve bench serve -serve-exe grpcfloor`),
// it measures what gRPC and the machine alone cost, the floor under any
// recommendation work.
//
// It takes the flags `bench serve` gives a server and ignores all but
// -grpc-addr, serves grpc.health.v1 (SERVING) beside Recommend with the
// server's own transport options (server.TransportOptions), and
// logs the JSON "serving" line the benchmark waits for.
//
//	go build -o /tmp/grpcfloor ./bench/grpcfloor
//	recserve bench serve -dir /tmp/b1m ... -serve-exe /tmp/grpcfloor
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/server"
)

// canned answers every Recommend with the same items.
type canned struct {
	recservev1.UnimplementedRecommendServiceServer
	items []*recservev1.ScoredItem
}

func (c *canned) Recommend(ctx context.Context, req *recservev1.RecommendRequest) (*recservev1.RecommendResponse, error) {
	n := 20
	if req.N != nil {
		n = int(req.GetN())
	}
	n = min(n, len(c.items))
	return &recservev1.RecommendResponse{Items: c.items[:n], Model: req.GetModel(), ModelVersion: "1"}, nil
}

func main() {
	if len(os.Args) < 2 || os.Args[1] != "serve" {
		log.Fatal("usage: grpcfloor serve [recserve serve flags]")
	}
	// Every flag of recserve serve but -grpc-addr is accepted and ignored.
	addr := "127.0.0.1:0"
	for i, a := range os.Args {
		switch {
		case a == "-grpc-addr" && i+1 < len(os.Args):
			addr = os.Args[i+1]
		case strings.HasPrefix(a, "-grpc-addr="):
			addr = strings.TrimPrefix(a, "-grpc-addr=")
		}
	}

	c := &canned{}
	for i := range 100 {
		c.items = append(c.items, &recservev1.ScoredItem{ItemId: fmt.Sprintf("i%07d", i), Score: 1 / float32(i+1), Category: fmt.Sprintf("c%02d", i%20)})
	}
	g := grpc.NewServer(server.TransportOptions()...)
	recservev1.RegisterRecommendServiceServer(g, c)
	h := health.NewServer()
	healthpb.RegisterHealthServer(g, h)

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	line, _ := json.Marshal(map[string]string{"msg": "serving", "grpc": ln.Addr().String()})
	fmt.Fprintln(os.Stderr, string(line))
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
		g.GracefulStop()
	}()
	if err := g.Serve(ln); err != nil {
		log.Fatal(err)
	}
}
