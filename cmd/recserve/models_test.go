package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/recserve/recserve/internal/daemon"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/registry"
)

// serveVersions publishes n random versions of model "m" and runs a daemon on them.
func serveVersions(t *testing.T, n int) string {
	t.Helper()
	reg, err := registry.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for v := 0; v < n; v++ {
		b := &registry.Bundle{Manifest: registry.Manifest{Model: "m", Dim: 4}}
		for i := 0; i < 20; i++ {
			b.UserIDs = append(b.UserIDs, fmt.Sprintf("u%d", i))
			b.Items = append(b.Items, registry.Item{ID: fmt.Sprintf("i%d", i), Available: true})
			for d := 0; d < 4; d++ {
				b.UserVectors = append(b.UserVectors, float32(rng.NormFloat64()))
				b.ItemVectors = append(b.ItemVectors, float32(rng.NormFloat64()))
			}
		}
		if _, err := reg.Publish(b); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan daemon.Addrs, 1), make(chan error, 1)
	cfg := daemon.Config{Registry: reg.Root(), GRPCAddr: "127.0.0.1:0", HTTPAddr: "off", PollInterval: time.Hour, Security: daemon.Security{Plaintext: true},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	go func() { done <- daemon.Run(ctx, cfg, func(a daemon.Addrs) { ready <- a }) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case a := <-ready:
		return a.GRPC
	case err := <-done:
		t.Fatalf("daemon: %v", err)
	}
	return ""
}

func TestModelsCommand(t *testing.T) {
	addr := serveVersions(t, 2)
	ctx := context.Background()
	run := func(args ...string) *recservev1.ModelStatus {
		t.Helper()
		var out bytes.Buffer
		if err := modelsCmd(ctx, append(args, "-addr", addr), &out); err != nil {
			t.Fatalf("models %v: %v", args, err)
		}
		msg := &recservev1.GetModelResponse{}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(out.Bytes(), msg); err != nil {
			t.Fatalf("models %v printed %s: %v", args, out.String(), err)
		}
		return msg.GetModel()
	}
	if m := run("canary", "m", "-version", "1", "-percent", "10", "-shadow", "0.5"); m.GetCanaryVersion() != "1" || m.GetCanaryPercent() != 10 || m.GetStableVersion() != "2" {
		t.Fatalf("after canary: %v", m)
	}
	if m := run("get", "m"); len(m.GetVersions()) != 2 || m.GetShadowFraction() != 0.5 {
		t.Fatalf("get: %v", m)
	}
	if m := run("rollback", "m", "-reason", "smoke test"); m.GetCanaryVersion() != "" || m.GetDecisions()[len(m.GetDecisions())-1].GetReason() != "smoke test" {
		t.Fatalf("after rollback: %v", m)
	}
	if m := run("canary", "m", "-version", "1", "-steps", "5,50,100", "-hold", "1m"); m.GetCanaryPercent() != 5 || len(m.GetPolicy().GetSteps()) != 3 {
		t.Fatalf("automatic rollout: %v", m)
	}
	if m := run("promote", "m"); m.GetStableVersion() != "1" {
		t.Fatalf("after promote: %v", m)
	}
	if m := run("pin", "m", "-version", "2", "-stable"); m.GetStableVersion() != "2" {
		t.Fatalf("after pin: %v", m)
	}
	if m := run("ranking", "m", "-json", `{"maxPerCategory":2,"explorationShare":0.1}`); m.GetRanking().GetMaxPerCategory() != 2 || m.GetRanking().GetExplorationShare() != 0.1 {
		t.Fatalf("after ranking: %v", m.GetRanking())
	}
	if m := run("ranking", "m", "-json", `{}`); m.GetRanking() != nil {
		t.Fatalf("after clearing the ranking: %v", m.GetRanking())
	}
	if err := modelsCmd(ctx, []string{"ranking", "m", "-json", `{"maxPerCategory":-1}`, "-addr", addr}, io.Discard); err == nil || !strings.Contains(err.Error(), "ranking.max_per_category") {
		t.Fatalf("invalid ranking: %v", err)
	}
	var out bytes.Buffer
	if err := modelsCmd(ctx, []string{"list", "-addr", addr}, &out); err != nil {
		t.Fatal(err)
	}
	list := &recservev1.ListModelsResponse{}
	if err := protojson.Unmarshal(out.Bytes(), list); err != nil || len(list.GetModels()) != 1 || list.GetModels()[0].GetModel() != "m" {
		t.Fatalf("list: %v %s", err, out.String())
	}
	if err := modelsCmd(ctx, []string{"promote", "m", "-addr", addr}, io.Discard); err == nil || !strings.Contains(err.Error(), "FailedPrecondition") {
		t.Fatalf("promote without canary: %v", err)
	}
	if err := modelsCmd(ctx, []string{"get", "-addr", addr}, io.Discard); err == nil {
		t.Fatal("get without a model name succeeded")
	}
}
