package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	recserveclient "github.com/recserve/recserve/clients/go"
	"github.com/recserve/recserve/internal/daemon"
	"github.com/recserve/recserve/registry"
	"github.com/recserve/recserve/sampledata"
	"github.com/recserve/recserve/tlsreload/testcerts"
	"github.com/recserve/recserve/trainer"
)

// startDemo trains a small model on sample data, publishes it as model "demo" and
// serves it (plaintext, unless mods say otherwise) with an in-process Kafka
// broker; it returns the gRPC address.
func startDemo(t *testing.T, mods ...func(*daemon.Config)) (string, *sampledata.Data) {
	t.Helper()
	data := sampledata.Generate(sampledata.Options{Users: 200, Items: 150, Seed: 5})
	d := trainer.NewDataset()
	for _, e := range data.Events {
		w, _ := trainer.EventWeight(e.Type)
		d.Add(e.UserID, e.ItemID, w)
	}
	opts := trainer.DefaultOptions()
	opts.Factors, opts.Iterations = 8, 3
	m, err := trainer.Train(context.Background(), d, opts)
	if err != nil {
		t.Fatal(err)
	}
	b := trainer.Bundle(d, m, data.Items)
	b.Manifest.Model = "demo"
	reg, err := registry.Open(filepath.Join(t.TempDir(), "registry"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Publish(b); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan daemon.Addrs, 1), make(chan error, 1)
	cfg := daemon.Config{
		Registry: reg.Root(), GRPCAddr: "127.0.0.1:0", HTTPAddr: "off", EmbeddedKafka: true,
		PollInterval: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Security: daemon.Security{Plaintext: true},
	}
	for _, mod := range mods {
		mod(&cfg)
	}
	go func() { done <- daemon.Run(ctx, cfg, func(a daemon.Addrs) { ready <- a }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon stop: %v", err)
		}
	})
	select {
	case a := <-ready:
		return a.GRPC, data
	case err := <-done:
		t.Fatalf("daemon: %v", err)
	}
	return "", nil
}

// runJSON runs a client command and decodes what it printed into out.
func runJSON(t *testing.T, cmd func(context.Context, []string, io.Writer) error, out any, args ...string) {
	t.Helper()
	var buf bytes.Buffer
	if err := cmd(context.Background(), args, &buf); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	dec := json.NewDecoder(&buf)
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		t.Fatalf("%v printed %q: %v", args, buf.String(), err)
	}
}

func TestClientCommands(t *testing.T) {
	addr, data := startDemo(t)
	user, item := data.Events[0].UserID, data.Items[0].ID

	var rec recserveclient.Recommendations
	runJSON(t, recommendCmd, &rec, "-addr", addr, "-user", user, "-n", "5", "-model", "demo")
	if len(rec.Items) != 5 || rec.Model != "demo" || rec.ModelVersion == "" || rec.RequestID == "" || rec.Source != recserveclient.SourceModel {
		t.Fatalf("recommend: %+v", rec)
	}

	var books recserveclient.Recommendations
	runJSON(t, recommendCmd, &books, "-addr", addr, "-user", user, "-n", "3", "-include-categories", "books")
	for _, it := range books.Items {
		if it.Category != "books" {
			t.Fatalf("recommend -include-categories books returned %+v", it)
		}
	}

	var sim recserveclient.Similar
	runJSON(t, similarCmd, &sim, "-addr", addr, "-item", item, "-n", "4")
	if len(sim.Items) != 4 || sim.Model != "demo" || slices.ContainsFunc(sim.Items, func(it recserveclient.Item) bool { return it.ID == item }) {
		t.Fatalf("similar: %+v", sim)
	}

	// Events of a user the model does not know reach the online store through Kafka,
	// and the user's recommendations switch to a folded-in vector.
	const fresh = "cli-fresh-user"
	for i, it := range []string{data.Items[3].ID, data.Items[15].ID} {
		var ack struct {
			Accepted int    `json:"accepted"`
			EventID  string `json:"event_id"`
		}
		runJSON(t, eventsCmd, &ack, "-addr", addr, "-user", fresh, "-item", it, "-type", "purchase", "-id", "cli-"+it)
		if ack.Accepted != 1 || ack.EventID != "cli-"+it {
			t.Fatalf("event %d: %+v", i, ack)
		}
	}
	var ack struct {
		Accepted int    `json:"accepted"`
		EventID  string `json:"event_id"`
	}
	runJSON(t, eventsCmd, &ack, "-addr", addr, "-user", fresh, "-item", item, "-type", "EVENT_TYPE_VIEW")
	if ack.Accepted != 1 || len(ack.EventID) != 32 {
		t.Fatalf("event with a generated id: %+v", ack)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var got recserveclient.Recommendations
		runJSON(t, recommendCmd, &got, "-addr", addr, "-user", fresh, "-n", "5")
		if got.Source == recserveclient.SourceFoldIn {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recommendations of %s after events: source %q, want fold_in", fresh, got.Source)
		}
	}
}

func TestClientCommandErrors(t *testing.T) {
	addr, data := startDemo(t)
	item := data.Items[0].ID
	tests := []struct {
		name string
		cmd  func(context.Context, []string, io.Writer) error
		args []string
		code codes.Code // OK: a local error containing want
		want string
	}{
		{"recommend without -user", recommendCmd, nil, codes.OK, "-user is required"},
		{"similar without -item", similarCmd, nil, codes.OK, "-item is required"},
		{"events without -type", eventsCmd, []string{"-user", "u", "-item", item}, codes.OK, "-type is required"},
		{"events with an unknown type", eventsCmd, []string{"-user", "u", "-item", item, "-type", "buy"}, codes.OK, "unknown event type"},
		{"unknown model", recommendCmd, []string{"-user", "u", "-model", "nope"}, codes.NotFound, ""},
		{"unknown item", similarCmd, []string{"-item", "no-such-item"}, codes.NotFound, ""},
		{"n out of range", recommendCmd, []string{"-user", "u", "-n", "5000"}, codes.InvalidArgument, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := tc.cmd(context.Background(), append([]string{"-addr", addr}, tc.args...), &out)
			if err == nil {
				t.Fatalf("no error; printed %s", out.String())
			}
			if status.Code(err) != tc.code && !(tc.code == codes.OK && status.Code(err) == codes.Unknown) {
				t.Fatalf("err = %v, want code %v", err, tc.code)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Fatalf("printed %s on error", out.String())
			}
		})
	}
}

func TestClientCommandsTLS(t *testing.T) {
	dir := t.TempDir()
	_, files, err := testcerts.Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	addr, data := startDemo(t, func(c *daemon.Config) {
		c.Security = daemon.Security{
			CertFile: files.ServerCert, KeyFile: files.ServerKey,
			ClientCAFile: files.CA, RequireClientCert: true,
		}
	})
	user := data.Events[0].UserID
	tests := []struct {
		name string
		args []string
		ok   bool
	}{
		{"mTLS", []string{"-cacert", files.CA, "-cert", files.ClientCert, "-key", files.ClientKey}, true},
		{"mTLS, name checked", []string{"-cacert", files.CA, "-cert", files.ClientCert, "-key", files.ClientKey, "-servername", "localhost"}, true},
		{"wrong server name", []string{"-cacert", files.CA, "-cert", files.ClientCert, "-key", files.ClientKey, "-servername", "elsewhere"}, false},
		{"no client certificate", []string{"-cacert", files.CA}, false},
		{"untrusted server", []string{"-tls", "-cert", files.ClientCert, "-key", files.ClientKey}, false},
		{"plaintext", nil, false},
		{"CA file without a certificate", []string{"-cacert", files.ClientKey}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			args := append([]string{"-addr", addr, "-user", user, "-n", "3", "-timeout", "3s"}, tc.args...)
			err := recommendCmd(context.Background(), args, &out)
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, printed %s", err, out.String())
			}
			if tc.ok {
				var rec recserveclient.Recommendations
				if err := json.Unmarshal(out.Bytes(), &rec); err != nil || len(rec.Items) != 3 {
					t.Fatalf("printed %s: %v", out.String(), err)
				}
			}
		})
	}
}
