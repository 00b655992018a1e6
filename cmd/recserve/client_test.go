package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/recserve/recserve/auth"
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

// eventually polls cond every 20 ms until it holds, failing after 20 s: catalog
// changes reach the server through the catalog topic, after the call returned.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20 s", what)
		}
	}
}

// getItem runs "items get" and returns the item, or the error's code.
func getItem(t *testing.T, addr, id string) (recserveclient.ServedItem, codes.Code) {
	t.Helper()
	var buf bytes.Buffer
	if err := itemsCmd(context.Background(), []string{"get", "-addr", addr, "-id", id}, &buf); err != nil {
		return recserveclient.ServedItem{}, status.Code(err)
	}
	var it recserveclient.ServedItem
	dec := json.NewDecoder(&buf)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&it); err != nil {
		t.Fatalf("items get printed %q: %v", buf.String(), err)
	}
	return it, codes.OK
}

type acceptedOut struct {
	Accepted int `json:"accepted"`
	Batches  int `json:"batches"`
}

func TestItemsCommands(t *testing.T) {
	addr, data := startDemo(t)
	trained := data.Items[0].ID
	const fresh = "cli-new-item"

	// upsert, then get: a new item is served at once, folded in, as upserted.
	var ack acceptedOut
	runJSON(t, itemsCmd, &ack, "upsert", "-addr", addr, "-id", fresh, "-category", "books", "-attr", "price=9.90", "-attr", "tags=a=b")
	if ack.Accepted != 1 {
		t.Fatalf("upsert: %+v", ack)
	}
	var got recserveclient.ServedItem
	eventually(t, "upserted item served", func() bool {
		var code codes.Code
		got, code = getItem(t, addr, fresh)
		return code == codes.OK
	})
	if got.ID != fresh || got.Category != "books" || !got.Available || !got.FoldedIn || got.Model != "demo" || got.ModelVersion == "" ||
		len(got.Attributes) != 2 || got.Attributes["price"] != "9.90" || got.Attributes["tags"] != "a=b" {
		t.Fatalf("get after upsert: %+v", got)
	}
	if tr, code := getItem(t, addr, trained); code != codes.OK || tr.FoldedIn || !tr.Available {
		t.Fatalf("get of a trained item: %+v, %v", tr, code)
	}

	// available -false, then get: unavailable; available again without -false.
	runJSON(t, itemsCmd, &ack, "available", "-addr", addr, "-id", fresh+","+trained, "-false")
	if ack.Accepted != 2 {
		t.Fatalf("available -false: %+v", ack)
	}
	for _, id := range []string{fresh, trained} {
		eventually(t, id+" unavailable", func() bool { it, code := getItem(t, addr, id); return code == codes.OK && !it.Available })
	}
	runJSON(t, itemsCmd, &ack, "available", "-addr", addr, "-id", trained)
	eventually(t, trained+" available again", func() bool { it, code := getItem(t, addr, trained); return code == codes.OK && it.Available })

	// delete, then get: NOT_FOUND, for a new and for a trained item.
	runJSON(t, itemsCmd, &ack, "delete", "-addr", addr, "-id", fresh+","+trained)
	if ack.Accepted != 2 {
		t.Fatalf("delete: %+v", ack)
	}
	for _, id := range []string{fresh, trained} {
		eventually(t, id+" deleted", func() bool { _, code := getItem(t, addr, id); return code == codes.NotFound })
	}

	// upsert -file: id or item_id, availability, attributes, blank lines; 1001
	// items take two batches.
	path := filepath.Join(t.TempDir(), "items.jsonl")
	var file strings.Builder
	file.WriteString(`{"id":"cli-f0","category":"toys","available":false,"attributes":{"colour":"red"}}` + "\n\n")
	file.WriteString(`{"item_id":"cli-f1"}` + "\n")
	for i := 2; i < 1001; i++ {
		fmt.Fprintf(&file, `{"id":"cli-f%d","category":"books"}`+"\n", i)
	}
	if err := os.WriteFile(path, []byte(file.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	runJSON(t, itemsCmd, &ack, "upsert", "-addr", addr, "-file", path)
	if ack.Accepted != 1001 || ack.Batches != 2 {
		t.Fatalf("upsert -file: %+v, want 1001 accepted in 2 batches", ack)
	}
	eventually(t, "last item of the file served", func() bool { _, code := getItem(t, addr, "cli-f1000"); return code == codes.OK })
	f0, code := getItem(t, addr, "cli-f0")
	if code != codes.OK || f0.Available || f0.Category != "toys" || f0.Attributes["colour"] != "red" || !f0.FoldedIn {
		t.Fatalf("cli-f0: %+v, %v", f0, code)
	}
	if f1, code := getItem(t, addr, "cli-f1"); code != codes.OK || !f1.Available || f1.Category != "" {
		t.Fatalf("cli-f1: %+v, %v", f1, code)
	}

	// New items are recommended beside the trained ones, marked folded in.
	var sim recserveclient.Similar
	runJSON(t, similarCmd, &sim, "-addr", addr, "-item", data.Items[1].ID, "-n", "1000", "-include-categories", "books")
	if !slices.ContainsFunc(sim.Items, func(it recserveclient.Item) bool { return it.ID == "cli-f7" && it.FoldedIn }) {
		t.Fatalf("similar items of %s in books: no folded-in cli-f7 among %d", data.Items[1].ID, len(sim.Items))
	}
}

func TestUsersEraseCommand(t *testing.T) {
	addr, data := startDemo(t)
	const user = "cli-erased-user"
	var ack struct {
		Accepted int    `json:"accepted"`
		EventID  string `json:"event_id"`
	}
	runJSON(t, eventsCmd, &ack, "-addr", addr, "-user", user, "-item", data.Items[3].ID, "-type", "purchase")
	source := func() recserveclient.Source {
		var rec recserveclient.Recommendations
		runJSON(t, recommendCmd, &rec, "-addr", addr, "-user", user, "-n", "5")
		return rec.Source
	}
	eventually(t, "folded in from the event", func() bool { return source() == recserveclient.SourceFoldIn })

	var out struct {
		UserID string `json:"user_id"`
		Erased bool   `json:"erased"`
	}
	runJSON(t, usersCmd, &out, "erase", "-addr", addr, "-user", user)
	if out.UserID != user || !out.Erased {
		t.Fatalf("users erase printed %+v", out)
	}
	eventually(t, "erased user back to popular items", func() bool { return source() == recserveclient.SourcePopularity })
}

func TestItemsCommandErrors(t *testing.T) {
	addr, _ := startDemo(t)
	dir := t.TempDir()
	badFile := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(badFile, []byte(`{"id":"cli-bad-0"}`+"\n"+`{"id":"cli-bad-1","colour":"red"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	emptyIDFile := filepath.Join(dir, "empty-id.jsonl")
	if err := os.WriteFile(emptyIDFile, []byte(`{"id":"cli-bad-2"}`+"\n\n"+`{"category":"books"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 300)
	tests := []struct {
		name string
		cmd  func(context.Context, []string, io.Writer) error
		args []string
		code codes.Code // OK: a local error containing want
		want string
	}{
		{"upsert without -id", itemsCmd, []string{"upsert", "-category", "books"}, codes.OK, "-id (or -file) is required"},
		{"upsert with an empty -id", itemsCmd, []string{"upsert", "-id", ""}, codes.OK, "-id (or -file) is required"},
		{"upsert -id and -file", itemsCmd, []string{"upsert", "-id", "a", "-file", badFile}, codes.OK, "-file cannot be combined"},
		{"attribute without =", itemsCmd, []string{"upsert", "-id", "a", "-attr", "price"}, codes.OK, `"price": want key=value`},
		{"attribute twice", itemsCmd, []string{"upsert", "-id", "a", "-attr", "k=1", "-attr", "k=2"}, codes.OK, `key "k" given twice`},
		{"file with an unknown field", itemsCmd, []string{"upsert", "-file", badFile}, codes.OK, `bad.jsonl line 2: bad JSON: json: unknown field "colour"`},
		{"file with an item without id", itemsCmd, []string{"upsert", "-file", emptyIDFile}, codes.OK, "empty-id.jsonl line 3: item.item_id: must not be empty"},
		{"missing file", itemsCmd, []string{"upsert", "-file", filepath.Join(dir, "none.jsonl")}, codes.OK, "no such file"},
		{"available without -id", itemsCmd, []string{"available", "-false"}, codes.OK, "-id is required"},
		{"delete with only commas", itemsCmd, []string{"delete", "-id", ","}, codes.OK, "-id is required"},
		{"get without -id", itemsCmd, []string{"get"}, codes.OK, "-id is required"},
		{"get with the id as an argument", itemsCmd, []string{"get", "item-1"}, codes.OK, `unexpected argument "item-1" (ids go in -id)`},
		{"unknown action", itemsCmd, []string{"frobnicate"}, codes.OK, `unknown action "frobnicate"`},
		{"erase without -user", usersCmd, []string{"erase"}, codes.OK, "-user is required"},
		{"unknown users action", usersCmd, []string{"list"}, codes.OK, `unknown action "list"`},
		{"id too long", itemsCmd, []string{"upsert", "-id", long}, codes.InvalidArgument, "items[0].item_id: must be at most 256 bytes"},
		{"too many attributes", itemsCmd, manyAttrs(65), codes.InvalidArgument, "items[0].attributes: must hold at most 64 entries"},
		{"delete an id too long", itemsCmd, []string{"delete", "-id", long}, codes.InvalidArgument, "item_ids[0]: must be at most 256 bytes"},
		{"get an unknown item", itemsCmd, []string{"get", "-id", "no-such-item"}, codes.NotFound, `item_id "no-such-item": item not found`},
		{"get of an unknown model", itemsCmd, []string{"get", "-id", "x", "-model", "nope"}, codes.NotFound, ""},
		{"erase a user id too long", usersCmd, []string{"erase", "-user", long}, codes.InvalidArgument, "user_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The action comes first, then the flags.
			args := append([]string{tc.args[0], "-addr", addr}, tc.args[1:]...)
			var out bytes.Buffer
			err := tc.cmd(context.Background(), args, &out)
			if err == nil {
				t.Fatalf("no error; printed %s", out.String())
			}
			if status.Code(err) != tc.code && !(tc.code == codes.OK && status.Code(err) == codes.Unknown) {
				t.Fatalf("err = %v, want code %v", err, tc.code)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if tc.code != codes.OK && !strings.Contains(err.Error(), "code = "+tc.code.String()) {
				t.Fatalf("err = %v does not name the code %v", err, tc.code)
			}
			if out.Len() != 0 {
				t.Fatalf("printed %s on error", out.String())
			}
		})
	}
	// A file that fails its check sends nothing: its first, valid item is unknown.
	if _, code := getItem(t, addr, "cli-bad-0"); code != codes.NotFound {
		t.Fatalf("item of a rejected file: %v, want NOT_FOUND", code)
	}
}

// manyAttrs returns "upsert -id a" with n attributes.
func manyAttrs(n int) []string {
	args := []string{"upsert", "-id", "a"}
	for i := range n {
		args = append(args, "-attr", fmt.Sprintf("k%d=v", i))
	}
	return args
}

// TestItemsCommandsRoles: over TLS with API keys, catalog changes need the
// catalog role, items get the recommend role and users erase the admin role.
func TestItemsCommandsRoles(t *testing.T) {
	dir := t.TempDir()
	_, files, err := testcerts.Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	var entries []string
	for _, role := range []string{auth.RoleCatalog, auth.RoleRecommend, auth.RoleAdmin} {
		keys[role] = auth.GenerateKey()
		entries = append(entries, role+"-key:"+role+":"+auth.HashKey(keys[role]))
	}
	addr, data := startDemo(t, func(c *daemon.Config) {
		c.Security = daemon.Security{CertFile: files.ServerCert, KeyFile: files.ServerKey, Auth: &auth.Config{APIKeys: entries}}
	})
	item := data.Items[0].ID
	tests := []struct {
		role string
		cmd  func(context.Context, []string, io.Writer) error
		args []string
		code codes.Code
	}{
		{auth.RoleCatalog, itemsCmd, []string{"upsert", "-id", "cli-role-item"}, codes.OK},
		{auth.RoleCatalog, itemsCmd, []string{"available", "-id", item}, codes.OK},
		{auth.RoleRecommend, itemsCmd, []string{"upsert", "-id", "cli-role-item"}, codes.PermissionDenied},
		{auth.RoleRecommend, itemsCmd, []string{"delete", "-id", item}, codes.PermissionDenied},
		{auth.RoleRecommend, itemsCmd, []string{"get", "-id", item}, codes.OK},
		{auth.RoleCatalog, itemsCmd, []string{"get", "-id", item}, codes.PermissionDenied},
		{auth.RoleCatalog, usersCmd, []string{"erase", "-user", "u"}, codes.PermissionDenied},
		{auth.RoleAdmin, usersCmd, []string{"erase", "-user", "u"}, codes.OK},
	}
	for _, tc := range tests {
		t.Run(tc.role+" "+strings.Join(tc.args[:1], ""), func(t *testing.T) {
			t.Setenv("RECSERVE_API_KEY", keys[tc.role])
			args := append([]string{tc.args[0], "-addr", addr, "-cacert", files.CA, "-servername", "localhost"}, tc.args[1:]...)
			var out bytes.Buffer
			err := tc.cmd(context.Background(), args, &out)
			if status.Code(err) != tc.code {
				t.Fatalf("err = %v, want code %v", err, tc.code)
			}
		})
	}
}
