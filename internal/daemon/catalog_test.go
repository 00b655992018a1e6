package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recserve/recserve/index"
	"github.com/recserve/recserve/registry"
)

// post sends body to path over REST and returns the status and the body.
func post(t testing.TB, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type restItem struct {
	ItemID   string `json:"itemId"`
	Category string `json:"category"`
	FoldedIn bool   `json:"foldedIn"`
}

type restRecs struct {
	Items        []restItem `json:"items"`
	ModelVersion string     `json:"modelVersion"`
}

func restRecommend(t testing.TB, addrs Addrs, user string, query string) restRecs {
	t.Helper()
	var out restRecs
	if code := getJSON(t, "http://"+addrs.HTTP+"/v1/users/"+user+"/recommendations?"+query, &out); code != http.StatusOK {
		t.Fatalf("GET recommendations of %s: %d", user, code)
	}
	return out
}

func restIDs(items []restItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.ItemID
	}
	return out
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestRESTCatalogAvailabilityAndBadInput: over REST and the catalog topic, an
// item set unavailable leaves the next responses; bad batches are 400 naming
// the field, unknown fields included.
func TestRESTCatalogAvailabilityAndBadInput(t *testing.T) {
	addrs, data := startDaemon(t, withKafka)
	user := data.Events[0].UserID
	before := restRecommend(t, addrs, user, "n=5")
	top := before.Items[0].ItemID
	code, body := post(t, "POST", "http://"+addrs.HTTP+"/v1/items:setAvailability", `{"items":[{"itemId":"`+top+`","available":false}]}`)
	if code != http.StatusOK || !strings.Contains(body, `"accepted":1`) {
		t.Fatalf("setAvailability: %d %s", code, body)
	}
	eventually(t, "unavailable item leaves the response", func() bool {
		return !slices.Contains(restIDs(restRecommend(t, addrs, user, "n=5").Items), top)
	})
	var item struct {
		Item struct {
			Available bool `json:"available"`
		} `json:"item"`
	}
	if code := getJSON(t, "http://"+addrs.HTTP+"/v1/items/"+top, &item); code != http.StatusOK || item.Item.Available {
		t.Fatalf("GET /v1/items/%s: %d %+v", top, code, item)
	}

	var big strings.Builder
	big.WriteString(`{"items":[`)
	for i := range 10000 {
		if i > 0 {
			big.WriteString(",")
		}
		fmt.Fprintf(&big, `{"itemId":"x%d"}`, i)
	}
	big.WriteString(`]}`)
	for _, tc := range []struct {
		name, path, body, field string
	}{
		{"unknown field", "/v1/items:upsert", `{"items":[{"itemId":"a"}],"count":3}`, "count"},
		{"unknown item field", "/v1/items:upsert", `{"items":[{"itemId":"a","colour":"red"}]}`, "colour"},
		{"10k items", "/v1/items:upsert", big.String(), "items"},
		{"empty id", "/v1/items:upsert", `{"items":[{"itemId":""}]}`, "items[0].item_id"},
		{"empty delete id", "/v1/items:delete", `{"itemIds":["i1",""]}`, "item_ids[1]"},
		{"malformed JSON", "/v1/items:upsert", `{"items":[{"itemId":"a"}`, "byte offset 24"},
		{"not JSON", "/v1/items:delete", `itemIds=a`, "byte offset 1"},
	} {
		code, body := post(t, "POST", "http://"+addrs.HTTP+tc.path, tc.body)
		if code != http.StatusBadRequest || !strings.Contains(body, tc.field) {
			t.Errorf("%s: %d %.300s; want 400 naming %s", tc.name, code, body, tc.field)
		}
	}
	if code, body := post(t, "DELETE", "http://"+addrs.HTTP+"/v1/users/"+user, ""); code != http.StatusOK {
		t.Fatalf("DELETE /v1/users/%s: %d %s", user, code, body)
	}
}

// TestRESTDeletedItemStaysDeleted: a deleted item never comes back: not after
// a restart (the catalog file is read back; the embedded broker is new and
// empty), not after a swap to a version trained before the deletion.
func TestRESTDeletedItemStaysDeleted(t *testing.T) {
	catalogDir := filepath.Join(t.TempDir(), "catalog")
	var root string
	withDir := func(c *Config) { c.CatalogDir, root = catalogDir, c.Registry }
	addrs, data := startDaemon(t, withKafka, withDir)
	user := data.Events[0].UserID
	top := restRecommend(t, addrs, user, "n=3").Items[0].ItemID
	if code, body := post(t, "POST", "http://"+addrs.HTTP+"/v1/items:delete", `{"itemIds":["`+top+`"]}`); code != http.StatusOK {
		t.Fatalf("delete: %d %s", code, body)
	}
	absent := func(addrs Addrs) bool {
		for _, e := range data.Events[:50] {
			if slices.Contains(restIDs(restRecommend(t, addrs, e.UserID, "n=20&includeSeen=true&filter.includeUnavailable=true").Items), top) {
				return false
			}
		}
		return true
	}
	eventually(t, "deleted item leaves every response", func() bool { return absent(addrs) })

	// A second daemon over the same registry and catalog directory: a restart.
	addrs2, stop := runDaemon(t, Config{Registry: root, CatalogDir: catalogDir, EmbeddedKafka: true})
	defer stop()
	if !absent(addrs2) {
		t.Fatal("deleted item recommended after a restart")
	}
	reg, err := registry.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	publishSample(t, reg, data, 2) // trained on the same events: it has the item
	eventually(t, "version 2 serves", func() bool { return restRecommend(t, addrs2, user, "n=3").ModelVersion == "2" })
	if !absent(addrs2) {
		t.Fatal("deleted item recommended by a version trained before the deletion")
	}
}

// TestRESTNewItemRecommended: an item upserted over REST, bought over REST by
// the five users nearest in taste to one user, is among that user's top 20
// of 240 items, labelled folded in, but not the user least like them.
func TestRESTNewItemRecommended(t *testing.T) {
	var root string
	addrs, data := startDaemon(t, withKafka, func(c *Config) { root = c.Registry })
	reg, err := registry.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	b, err := reg.Load("demo", "1")
	if err != nil {
		t.Fatal(err)
	}
	users, dim := b.UserRows(), b.Manifest.Dim
	vec := func(u int) []float32 { return b.UserVectors[u*dim : (u+1)*dim] }
	target := data.Events[0].UserID
	tu, _ := users.Row(target)
	others := make([]int, 0, users.Rows())
	for u := range users.Rows() {
		if u != int(tu) {
			others = append(others, u)
		}
	}
	slices.SortFunc(others, func(a, c int) int {
		if index.Dot(vec(int(tu)), vec(a)) > index.Dot(vec(int(tu)), vec(c)) {
			return -1
		}
		return 1
	})
	if code, body := post(t, "POST", "http://"+addrs.HTTP+"/v1/items:upsert",
		`{"items":[{"itemId":"brand-new","category":"books","attributes":{"price":"12.50"}}]}`); code != http.StatusOK {
		t.Fatalf("upsert: %d %s", code, body)
	}
	var evs []map[string]any
	for i, u := range others[:5] {
		evs = append(evs, map[string]any{"eventId": fmt.Sprintf("new-%d", i), "userId": users.ID(u), "itemId": "brand-new", "type": "EVENT_TYPE_PURCHASE"})
	}
	body, _ := json.Marshal(map[string]any{"events": evs})
	resp, err := http.Post("http://"+addrs.HTTP+"/v1/events", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/events: %d", resp.StatusCode)
	}
	has := func(user string) bool {
		return slices.ContainsFunc(restRecommend(t, addrs, user, "n=20").Items, func(it restItem) bool { return it.ItemID == "brand-new" && it.FoldedIn })
	}
	eventually(t, "brand-new in the top 20 of 240 items for "+target, func() bool { return has(target) })
	if unlike := users.ID(others[len(others)-1]); has(unlike) {
		t.Fatalf("brand-new recommended to %s, the user least like its buyers", unlike)
	}
}

// runDaemon runs the daemon with cfg on loopback ports until stop.
func runDaemon(t testing.TB, cfg Config) (Addrs, func()) {
	t.Helper()
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.PollInterval = "127.0.0.1:0", "127.0.0.1:0", 100*time.Millisecond
	cfg.Logger, cfg.Security = slog.New(slog.NewTextHandler(io.Discard, nil)), Security{Plaintext: true}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Addrs, 1)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, func(a Addrs) { ready <- a }) }()
	select {
	case a := <-ready:
		return a, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("daemon stop: %v", err)
			}
			http.DefaultClient.CloseIdleConnections()
		}
	case err := <-done:
		cancel()
		t.Fatalf("daemon exited: %v", err)
	}
	return Addrs{}, nil
}
