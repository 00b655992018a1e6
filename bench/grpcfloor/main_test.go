package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

func TestMain(m *testing.M) {
	if os.Getenv("GRPCFLOOR_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestServesLikeRecserve runs the command as bench serve runs a server: with
// recserve serve's flags, waiting for its "serving" line and health.
func TestServesLikeRecserve(t *testing.T) {
	cmd := exec.Command(os.Args[0], "serve", "-registry", t.TempDir(), "-models", "bench", "-plaintext",
		"-grpc-addr", "127.0.0.1:0", "-http-addr", "off", "-cache-ttl=-1s", "-poll", "2s")
	cmd.Env = append(os.Environ(), "GRPCFLOOR_TEST_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stderr)
	if !sc.Scan() {
		t.Fatalf("no log line: %v", sc.Err())
	}
	var line struct{ Msg, GRPC string }
	if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line.Msg != "serving" || line.GRPC == "" {
		t.Fatalf("first line %q, want a JSON serving line with the gRPC address (%v)", sc.Text(), err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(line.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h.GetStatus(), err)
	}
	rec := recservev1.NewRecommendServiceClient(conn)
	for _, tc := range []struct{ n, want int32 }{{20, 20}, {1, 1}, {500, 100}} {
		resp, err := rec.Recommend(ctx, &recservev1.RecommendRequest{Model: "bench", UserId: "u1", N: proto.Int32(tc.n)})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetItems()) != int(tc.want) || resp.GetModelVersion() != "1" || resp.GetModel() != "bench" {
			t.Errorf("n=%d: %d items, model %q version %q; want %d items of bench version 1", tc.n, len(resp.GetItems()), resp.GetModel(), resp.GetModelVersion(), tc.want)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}
