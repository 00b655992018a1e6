package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/recserve/recserve/index"
	"github.com/recserve/recserve/internal/hugepage"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testCategory is item i's category in testBundle: 1% of items are "rare", the
// rest spread over c0..c4.
func testCategory(i int) string {
	if i%100 == 42 {
		return "rare"
	}
	return fmt.Sprintf("c%d", i%5)
}

// testBundle is a random model: users u0.., items i0.. in testCategory, every
// 10th item unavailable, each user has seen 5 items.
func testBundle(model string, users, items, dim int, seed uint64) *registry.Bundle {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := &registry.Bundle{Manifest: registry.Manifest{Model: model, Dim: dim, Metric: "dot"}}
	for u := 0; u < users; u++ {
		b.UserIDs = append(b.UserIDs, fmt.Sprintf("u%d", u))
	}
	for i := 0; i < items; i++ {
		b.Items = append(b.Items, registry.Item{ID: fmt.Sprintf("i%d", i), Category: testCategory(i), Available: i%10 != 9})
	}
	vec := func(n int) []float32 {
		v := make([]float32, n*dim)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	b.UserVectors, b.ItemVectors = vec(users), vec(items)
	b.SeenOffsets = []int64{0}
	for u := 0; u < users; u++ {
		seen := rng.Perm(items)[:5]
		for _, s := range seen {
			b.SeenItems = append(b.SeenItems, int32(s))
		}
		b.SeenOffsets = append(b.SeenOffsets, int64(len(b.SeenItems)))
	}
	return b
}

// fixture is a Server over a temporary registry with a bufconn gRPC client.
type fixture struct {
	conn   *grpc.ClientConn
	reg    *registry.FS
	srv    *Server
	client recservev1.RecommendServiceClient
	health healthpb.HealthClient
}

// newFixture serves opts over a new registry, or over opts.Registry (a
// *registry.FS) when set.
func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	reg, _ := opts.Registry.(*registry.FS)
	if reg == nil {
		var err error
		if reg, err = registry.Open(t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	opts.Registry, opts.Logger = reg, quiet
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(1 << 20)
	g := NewGRPCServer(srv)
	go func() { _ = g.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); g.Stop() })
	return &fixture{conn: conn, reg: reg, srv: srv, client: recservev1.NewRecommendServiceClient(conn), health: healthpb.NewHealthClient(conn)}
}

func (f *fixture) publish(t *testing.T, b *registry.Bundle) string {
	t.Helper()
	v, err := f.reg.Publish(b)
	if err != nil {
		t.Fatal(err)
	}
	f.refresh(t)
	return v
}

// exactTop is the reference answer: the n best allowed items by inner product.
func exactTop(b *registry.Bundle, q []float32, n int, allow func(int) bool) []string {
	type hit struct {
		id    int
		score float32
	}
	var hits []hit
	for i := range b.Items {
		if allow(i) {
			hits = append(hits, hit{i, index.Dot(q, b.ItemVectors[i*b.Manifest.Dim:(i+1)*b.Manifest.Dim])})
		}
	}
	sort.SliceStable(hits, func(a, c int) bool { return hits[a].score > hits[c].score })
	var out []string
	for _, h := range hits[:min(n, len(hits))] {
		out = append(out, b.Items[h.id].ID)
	}
	return out
}

func ids(items []*recservev1.ScoredItem) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.GetItemId())
	}
	return out
}

func TestHealthNotServingUntilLoaded(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := context.Background()
	resp, err := f.health.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("before load: %v, %v; want NOT_SERVING", resp, err)
	}
	_, err = f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: "u1"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Recommend before load: %v, want UNAVAILABLE", err)
	}
	f.publish(t, testBundle("m", 20, 200, 8, 1))
	resp, err = f.health.Check(ctx, &healthpb.HealthCheckRequest{Service: "recserve.v1.RecommendService"})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("after load: %v, %v; want SERVING", resp, err)
	}
}

func TestRecommendKnownUser(t *testing.T) {
	f := newFixture(t, Options{Index: index.Options{Kind: index.KindExact}})
	b := testBundle("m", 50, 300, 16, 2)
	version := f.publish(t, b)
	ctx := context.Background()
	seenReq := map[string]bool{}
	for u := 0; u < 50; u += 7 {
		resp, err := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: b.UserIDs[u], N: proto.Int32(12)})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetModel() != "m" || resp.GetModelVersion() != version || resp.GetSource() != recservev1.RecommendationSource_RECOMMENDATION_SOURCE_MODEL {
			t.Fatalf("response header %v", resp)
		}
		if seenReq[resp.GetRequestId()] || resp.GetRequestId() == "" {
			t.Fatalf("request id %q not unique", resp.GetRequestId())
		}
		seenReq[resp.GetRequestId()] = true
		seen := b.Seen(u)
		want := exactTop(b, b.UserVectors[u*16:(u+1)*16], 12, func(i int) bool {
			return b.Items[i].Available && !slices.Contains(seen, int32(i))
		})
		if got := ids(resp.GetItems()); !slices.Equal(got, want) {
			t.Fatalf("user %d: got %v, want %v", u, got, want)
		}
		// include_seen brings seen items back.
		all, err := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: b.UserIDs[u], N: proto.Int32(300), IncludeSeen: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range seen {
			if b.Items[s].Available && !slices.Contains(ids(all.GetItems()), b.Items[s].ID) {
				t.Fatalf("include_seen: seen item %s missing", b.Items[s].ID)
			}
		}
	}
}

func TestRecommendDefaultNAndScoresOrdered(t *testing.T) {
	f := newFixture(t, Options{})
	f.publish(t, testBundle("m", 30, 500, 8, 3))
	resp, err := f.client.Recommend(context.Background(), &recservev1.RecommendRequest{UserId: "u3"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetItems()) != DefaultN {
		t.Fatalf("got %d items, want default %d", len(resp.GetItems()), DefaultN)
	}
	for i := 1; i < len(resp.GetItems()); i++ {
		if resp.GetItems()[i].GetScore() > resp.GetItems()[i-1].GetScore() {
			t.Fatalf("scores not descending: %v", resp.GetItems())
		}
	}
}

func TestUnknownUserGetsPopularityFallback(t *testing.T) {
	f := newFixture(t, Options{})
	b := testBundle("m", 40, 100, 8, 4)
	f.publish(t, b)
	resp, err := f.client.Recommend(context.Background(), &recservev1.RecommendRequest{UserId: "never-seen", N: proto.Int32(5)})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetSource() != recservev1.RecommendationSource_RECOMMENDATION_SOURCE_POPULARITY {
		t.Fatalf("source %v, want POPULARITY", resp.GetSource())
	}
	counts := make([]int, len(b.Items))
	for _, s := range b.SeenItems {
		counts[s]++
	}
	got := resp.GetItems()
	if len(got) != 5 {
		t.Fatalf("got %d items", len(got))
	}
	for i, it := range got {
		row := slices.IndexFunc(b.Items, func(x registry.Item) bool { return x.ID == it.GetItemId() })
		if !b.Items[row].Available {
			t.Fatalf("unavailable item %s recommended", it.GetItemId())
		}
		if want := float32(counts[row]) / float32(len(b.SeenItems)); it.GetScore() != want {
			t.Fatalf("item %s score %v, want popularity share %v", it.GetItemId(), it.GetScore(), want)
		}
		if i > 0 && it.GetScore() > got[i-1].GetScore() {
			t.Fatalf("not by popularity: %v", got)
		}
	}
	// No available item more popular than the last returned one was skipped.
	last := got[len(got)-1].GetScore()
	for row, c := range counts {
		if b.Items[row].Available && float32(c)/float32(len(b.SeenItems)) > last && !slices.Contains(ids(got), b.Items[row].ID) {
			t.Fatalf("popular item %s skipped", b.Items[row].ID)
		}
	}
}

func TestFilters(t *testing.T) {
	for _, kind := range []index.Kind{index.KindHNSW, index.KindExact} {
		t.Run(string(kind), func(t *testing.T) {
			f := newFixture(t, Options{Index: index.Options{Kind: kind}})
			b := testBundle("m", 20, 2000, 16, 5)
			f.publish(t, b)
			u := 4
			q := b.UserVectors[u*16 : (u+1)*16]
			seen := b.Seen(u)
			base := func(i int) bool { return b.Items[i].Available && !slices.Contains(seen, int32(i)) }
			inCat := func(i int, cats ...string) bool { return slices.Contains(cats, testCategory(i)) }
			cases := []struct {
				name   string
				filter *recservev1.Filter
				allow  func(i int) bool
			}{
				{"include category", &recservev1.Filter{IncludeCategories: []string{"c2"}}, func(i int) bool { return base(i) && inCat(i, "c2") }},
				{"exclude categories", &recservev1.Filter{ExcludeCategories: []string{"c0", "c1", "c3"}}, func(i int) bool { return base(i) && !inCat(i, "c0", "c1", "c3") }},
				{"exclude ids", &recservev1.Filter{ExcludeItemIds: []string{"i1", "i2", "i3", "unknown"}}, func(i int) bool { return base(i) && i > 3 || base(i) && i == 0 }},
				{"include unavailable", &recservev1.Filter{IncludeUnavailable: true}, func(i int) bool { return !slices.Contains(seen, int32(i)) }},
				{"selective 1%", &recservev1.Filter{IncludeCategories: []string{"rare"}}, func(i int) bool { return base(i) && inCat(i, "rare") }},
				{"unknown category", &recservev1.Filter{IncludeCategories: []string{"nope"}}, func(int) bool { return false }},
			}
			for _, c := range cases {
				resp, err := f.client.Recommend(context.Background(), &recservev1.RecommendRequest{UserId: b.UserIDs[u], N: proto.Int32(10), Filter: c.filter})
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				want := exactTop(b, q, 10, c.allow)
				got := ids(resp.GetItems())
				if kind == index.KindExact || c.name == "selective 1%" || c.name == "unknown category" {
					if !slices.Equal(got, want) {
						t.Fatalf("%s: got %v, want %v", c.name, got, want)
					}
					continue
				}
				// HNSW: every item allowed, the full count, high overlap with exact.
				if len(got) != len(want) {
					t.Fatalf("%s: got %d items, want %d", c.name, len(got), len(want))
				}
				hits := 0
				for _, id := range got {
					var row int
					fmt.Sscanf(id, "i%d", &row)
					if !c.allow(row) {
						t.Fatalf("%s: item %s violates the filter", c.name, id)
					}
					if slices.Contains(want, id) {
						hits++
					}
				}
				if hits < 8 {
					t.Fatalf("%s: only %d of 10 exact results", c.name, hits)
				}
			}
		})
	}
}

func TestSimilarItems(t *testing.T) {
	f := newFixture(t, Options{Index: index.Options{Kind: index.KindExact}})
	b := testBundle("m", 10, 300, 8, 6)
	f.publish(t, b)
	resp, err := f.client.SimilarItems(context.Background(), &recservev1.SimilarItemsRequest{ItemId: "i7", N: proto.Int32(5), Filter: &recservev1.Filter{IncludeCategories: []string{"c2"}}})
	if err != nil {
		t.Fatal(err)
	}
	want := exactTop(b, b.ItemVectors[7*8:8*8], 5, func(i int) bool { return i != 7 && b.Items[i].Available && testCategory(i) == "c2" })
	if got := ids(resp.GetItems()); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	unfiltered, err := f.client.SimilarItems(context.Background(), &recservev1.SimilarItemsRequest{ItemId: "i7", N: proto.Int32(300)})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(ids(unfiltered.GetItems()), "i7") {
		t.Fatal("query item returned as similar to itself")
	}
}

func TestBatchRecommend(t *testing.T) {
	f := newFixture(t, Options{})
	b := testBundle("m", 20, 200, 8, 8)
	v := f.publish(t, b)
	resp, err := f.client.BatchRecommend(context.Background(), &recservev1.BatchRecommendRequest{UserIds: []string{"u1", "stranger", "u2"}, N: proto.Int32(3)})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetModelVersion() != v || len(resp.GetResults()) != 3 {
		t.Fatalf("response %v", resp)
	}
	wantSrc := []recservev1.RecommendationSource{
		recservev1.RecommendationSource_RECOMMENDATION_SOURCE_MODEL,
		recservev1.RecommendationSource_RECOMMENDATION_SOURCE_POPULARITY,
		recservev1.RecommendationSource_RECOMMENDATION_SOURCE_MODEL,
	}
	for i, r := range resp.GetResults() {
		if r.GetUserId() != []string{"u1", "stranger", "u2"}[i] || len(r.GetItems()) != 3 || r.GetSource() != wantSrc[i] {
			t.Fatalf("result %d: %v", i, r)
		}
	}
}

func TestBadRequests(t *testing.T) {
	f := newFixture(t, Options{})
	f.publish(t, testBundle("m", 10, 100, 8, 9))
	ctx := context.Background()
	long := string(make([]byte, MaxIDLen+1))
	cases := []struct {
		name  string
		call  func() error
		code  codes.Code
		field string
	}{
		{"empty user", func() error {
			_, err := f.client.Recommend(ctx, &recservev1.RecommendRequest{})
			return err
		}, codes.InvalidArgument, "user_id"},
		{"long user", func() error {
			_, err := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: long})
			return err
		}, codes.InvalidArgument, "user_id"},
		{"n zero", func() error {
			_, err := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: "u1", N: proto.Int32(0)})
			return err
		}, codes.InvalidArgument, "n"},
		{"n negative", func() error {
			_, err := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: "u1", N: proto.Int32(-3)})
			return err
		}, codes.InvalidArgument, "n"},
		{"n too big", func() error {
			_, err := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: "u1", N: proto.Int32(MaxN + 1)})
			return err
		}, codes.InvalidArgument, "n"},
		{"unknown model", func() error {
			_, err := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: "u1", Model: "nope"})
			return err
		}, codes.NotFound, ""},
		{"empty category", func() error {
			_, err := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: "u1", Filter: &recservev1.Filter{IncludeCategories: []string{"c1", ""}}})
			return err
		}, codes.InvalidArgument, "filter.include_categories[1]"},
		{"too many exclusions", func() error {
			_, err := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: "u1", Filter: &recservev1.Filter{ExcludeItemIds: make([]string, MaxFilterLen+1)}})
			return err
		}, codes.InvalidArgument, "filter.exclude_item_ids"},
		{"unknown item", func() error {
			_, err := f.client.SimilarItems(ctx, &recservev1.SimilarItemsRequest{ItemId: "nope"})
			return err
		}, codes.NotFound, ""},
		{"empty item", func() error {
			_, err := f.client.SimilarItems(ctx, &recservev1.SimilarItemsRequest{})
			return err
		}, codes.InvalidArgument, "item_id"},
		{"empty batch", func() error {
			_, err := f.client.BatchRecommend(ctx, &recservev1.BatchRecommendRequest{})
			return err
		}, codes.InvalidArgument, "user_ids"},
		{"batch too big", func() error {
			_, err := f.client.BatchRecommend(ctx, &recservev1.BatchRecommendRequest{UserIds: make([]string, MaxBatchUsers+1)})
			return err
		}, codes.InvalidArgument, "user_ids"},
		{"empty id in batch", func() error {
			_, err := f.client.BatchRecommend(ctx, &recservev1.BatchRecommendRequest{UserIds: []string{"u1", ""}})
			return err
		}, codes.InvalidArgument, "user_ids[1]"},
	}
	for _, c := range cases {
		err := c.call()
		st := status.Convert(err)
		if st.Code() != c.code {
			t.Errorf("%s: code %v (%v), want %v", c.name, st.Code(), err, c.code)
			continue
		}
		if c.field == "" {
			continue
		}
		var got string
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
				got = br.GetFieldViolations()[0].GetField()
			}
		}
		if got != c.field {
			t.Errorf("%s: field violation %q, want %q (%v)", c.name, got, c.field, err)
		}
	}
}

func TestCorruptNewVersionKeepsServing(t *testing.T) {
	f := newFixture(t, Options{})
	good := f.publish(t, testBundle("m", 10, 100, 8, 10))
	bad, err := f.reg.Publish(testBundle("m", 10, 100, 8, 11))
	if err != nil {
		t.Fatal(err)
	}
	corruptVersion(t, f.reg.Root(), "m", bad)
	f.refresh(t)
	resp, err := f.client.Recommend(context.Background(), &recservev1.RecommendRequest{UserId: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetModelVersion() != good {
		t.Fatalf("serving %s, want the good version %s", resp.GetModelVersion(), good)
	}
	st, err := recservev1.NewModelAdminServiceClient(f.conn).GetModel(context.Background(), &recservev1.GetModelRequest{Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if errs := st.GetModel().GetLoadErrors(); len(errs) != 1 || !strings.HasPrefix(errs[0], bad+": ") || !strings.Contains(errs[0], "item_vectors.npy") {
		t.Fatalf("corrupt version %s not reported through the admin API: %v", bad, errs)
	}
}

func TestStartSkipsCorruptNewest(t *testing.T) {
	reg, err := registry.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	good, err := reg.Publish(testBundle("m", 10, 100, 8, 12))
	if err != nil {
		t.Fatal(err)
	}
	bad, err := reg.Publish(testBundle("m", 10, 100, 8, 13))
	if err != nil {
		t.Fatal(err)
	}
	corruptVersion(t, reg.Root(), "m", bad)
	srv, err := New(Options{Registry: reg, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := srv.Served()["m"]; got != good {
		t.Fatalf("serving %q, want %q", got, good)
	}
}

// TestHotSwapUnderLoad publishes versions while clients hammer the server: no
// request may fail, and the clients must see the versions change.
func TestHotSwapUnderLoad(t *testing.T) {
	f := newFixture(t, Options{})
	first := f.publish(t, testBundle("m", 200, 3000, 16, 20))
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		versions map[string]int
		errs     []error
	}
	results := make(chan result)
	for w := 0; w < 4; w++ {
		go func(w int) {
			r := result{versions: map[string]int{}}
			for i := 0; ctx.Err() == nil; i++ {
				resp, err := f.client.Recommend(context.Background(), &recservev1.RecommendRequest{UserId: fmt.Sprintf("u%d", (w*31+i)%200), N: proto.Int32(10)})
				if err != nil {
					r.errs = append(r.errs, err)
					continue
				}
				if len(resp.GetItems()) != 10 {
					r.errs = append(r.errs, fmt.Errorf("got %d items", len(resp.GetItems())))
				}
				r.versions[resp.GetModelVersion()]++
			}
			results <- r
		}(w)
	}
	var published []string
	for s := uint64(21); s < 24; s++ {
		time.Sleep(50 * time.Millisecond)
		published = append(published, f.publish(t, testBundle("m", 200, 3000, 16, s)))
	}
	time.Sleep(50 * time.Millisecond)
	cancel()
	seen := map[string]int{}
	for w := 0; w < 4; w++ {
		r := <-results
		for _, err := range r.errs {
			t.Errorf("request failed during hot swap: %v", err)
		}
		for v, n := range r.versions {
			seen[v] += n
		}
	}
	last := published[len(published)-1]
	if seen[first] == 0 || seen[last] == 0 {
		t.Fatalf("versions served %v; want both %s and %s", seen, first, last)
	}
	if got := f.srv.Served()["m"]; got != last {
		t.Fatalf("serving %s after swaps, want %s", got, last)
	}
}

// corruptVersion flips one byte of a published version's item vectors.
func corruptVersion(t *testing.T, root, model, version string) {
	t.Helper()
	path := filepath.Join(root, model, version, "item_vectors.npy")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 0xff
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRegistryUnreadableKeepsServing takes the registry away under a loaded
// server: refreshing fails, requests keep being answered.
func TestRegistryUnreadableKeepsServing(t *testing.T) {
	f := newFixture(t, Options{})
	v := f.publish(t, testBundle("m", 10, 100, 8, 14))
	if err := os.RemoveAll(f.reg.Root()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.reg.Root(), []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Refresh(context.Background()); err == nil {
		t.Fatal("refresh of an unreadable registry reported no error")
	}
	resp, err := f.client.Recommend(context.Background(), &recservev1.RecommendRequest{UserId: "u1"})
	if err != nil || resp.GetModelVersion() != v || len(resp.GetItems()) != DefaultN {
		t.Fatalf("after the registry broke: %v %v", resp, err)
	}
}

// TestFailedVersionRetried: a version that failed to load, as when object
// storage shows its manifest before its files, is tried again after a
// backoff and then served.
func TestFailedVersionRetried(t *testing.T) {
	var now atomic.Int64 // seconds
	now.Store(1_700_000_000)
	f := newFixture(t, Options{Clock: func() time.Time { return time.Unix(now.Load(), 0) }})
	good := f.publish(t, testBundle("m", 10, 100, 8, 10))
	next, err := f.reg.Publish(testBundle("m", 10, 100, 8, 11))
	if err != nil {
		t.Fatal(err)
	}
	corruptVersion(t, f.reg.Root(), "m", next)
	served := func() string {
		t.Helper()
		f.refresh(t)
		return f.srv.Served()["m"]
	}
	if v := served(); v != good {
		t.Fatalf("serving %s with %s unreadable, want %s", v, next, good)
	}
	corruptVersion(t, f.reg.Root(), "m", next) // flips the byte back: the file is whole now
	if v := served(); v != good {
		t.Fatalf("serving %s before the retry is due, want %s", v, good)
	}
	now.Add(int64(retryFirst / time.Second))
	if v := served(); v != next {
		t.Fatalf("serving %s after the retry, want %s", v, next)
	}
	if errs := f.srv.models.failures(); len(errs) != 0 {
		t.Fatalf("load errors after a successful retry: %v", errs)
	}
}

// TestPrebuiltIndex: a version published with its HNSW graph is served from
// that graph; a graph of other vectors is refused and the index rebuilt.
func TestPrebuiltIndex(t *testing.T) {
	f := newFixture(t, Options{})
	source := func(v string) string {
		view, _ := f.srv.models.get("m")
		return view.loaded[v].indexSource
	}
	b := testBundle("m", 10, 300, 8, 21)
	h, err := index.NewHNSW(b.ItemVectors, 8, index.Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	var graph bytes.Buffer
	if _, err := h.WriteTo(&graph); err != nil {
		t.Fatal(err)
	}
	b.Index = graph.Bytes()
	v := f.publish(t, b)
	if got := source(v); got != "prebuilt" {
		t.Fatalf("index of version %s: %q, want prebuilt", v, got)
	}
	resp, err := f.client.Recommend(context.Background(), &recservev1.RecommendRequest{UserId: "u1"})
	if err != nil || resp.GetModelVersion() != v || len(resp.GetItems()) != DefaultN {
		t.Fatalf("Recommend from the prebuilt graph: %v, %v", resp, err)
	}

	other := testBundle("m", 10, 300, 8, 22)
	other.Index = graph.Bytes() // the graph of the first version's vectors
	v2 := f.publish(t, other)
	if got := source(v2); !strings.HasPrefix(got, "built; the prebuilt graph was refused") {
		t.Fatalf("index of version %s with a mismatched graph: %q", v2, got)
	}
}

// TestNextVersionLoadsIntoReservedMemory checks that a server with room for
// another version (KeepVersions 2, one loaded) sets memory aside the size of
// the loaded version's big arrays, that the next version makes its arrays
// there, and that with no room left the server releases the rest.
func TestNextVersionLoadsIntoReservedMemory(t *testing.T) {
	t.Cleanup(func() { hugepage.Reserve(nil) })
	f := newFixture(t, Options{})
	snap := func(v string) *snapshot {
		view, _ := f.srv.models.get("m")
		return view.loaded[v]
	}
	v1 := f.publish(t, testBundle("m", 50, 6000, 64, 31)) // item vectors of 1.5 MB
	first := snap(v1)
	if len(first.sizes) == 0 || first.reservedBytes != 0 {
		t.Fatalf("first version: big arrays %v, %d bytes in reserved memory; want some, 0", first.sizes, first.reservedBytes)
	}
	if got := hugepage.Reserved(); got < sum(first.sizes) {
		t.Fatalf("set aside %d bytes for a next version like one of %d", got, sum(first.sizes))
	}

	v2 := f.publish(t, testBundle("m", 50, 6000, 64, 32))
	second := snap(v2)
	if second.reservedBytes == 0 || second.reservedBytes != sum(second.sizes) {
		t.Fatalf("second version: %d of its %d bytes of big arrays in reserved memory, want all", second.reservedBytes, sum(second.sizes))
	}
	if got := hugepage.Reserved(); got != 0 {
		t.Fatalf("%d bytes still set aside with two versions loaded, want 0", got)
	}
	resp, err := f.client.Recommend(context.Background(), &recservev1.RecommendRequest{UserId: "u1"})
	if err != nil || resp.GetModelVersion() != v2 || len(resp.GetItems()) != DefaultN {
		t.Fatalf("Recommend from the version in reserved memory: %v, %v", resp, err)
	}
}

// TestLaterVersionsLoadIntoUnloadedMemory checks that once KeepVersions are
// loaded, a new version first unloads the one the policy drops, if it serves
// no traffic, and loads into its memory; the stable version keeps serving.
func TestLaterVersionsLoadIntoUnloadedMemory(t *testing.T) {
	t.Cleanup(func() { hugepage.Reserve(nil) })
	f := newFixture(t, Options{})
	f.publish(t, testBundle("m", 50, 6000, 64, 41))
	v2 := f.publish(t, testBundle("m", 50, 6000, 64, 42))
	if got := hugepage.Reserved(); got != 0 {
		t.Fatalf("%d bytes set aside with two versions loaded, want 0", got)
	}
	v3 := f.publish(t, testBundle("m", 50, 6000, 64, 43))
	view, _ := f.srv.models.get("m")
	if got := slices.Sorted(maps.Keys(view.loaded)); !slices.Equal(got, []string{v2, v3}) {
		t.Fatalf("loaded %v, want %v", got, []string{v2, v3})
	}
	s := view.loaded[v3]
	if s.reservedBytes == 0 || s.reservedBytes != sum(s.sizes) {
		t.Fatalf("third version: %d of its %d bytes of big arrays in the unloaded version's memory, want all", s.reservedBytes, sum(s.sizes))
	}
}

// refresh runs one registry refresh.
func (f *fixture) refresh(t *testing.T) {
	t.Helper()
	if err := f.srv.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// loadedVersions lists the loaded versions of model m, sorted.
func (f *fixture) loadedVersions() []string {
	view, _ := f.srv.models.get("m")
	var out []string
	for v := range view.loaded {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// limitedFixture is a server with a 1 GiB memory limit whose memory in use is
// inUse's value instead of the process's.
func limitedFixture(t *testing.T, inUse *atomic.Int64) *fixture {
	t.Cleanup(func() { hugepage.Reserve(nil) })
	f := newFixture(t, Options{MemoryLimit: 1 << 30})
	f.srv.models.inUse = inUse.Load
	return f
}

// TestMemoryLimitDefersThirdVersion checks that a version published while a
// stable and a canary serve, which would take the process over its memory
// limit, is not loaded, is reported, leaves both serving, and loads on the
// first refresh after memory is free.
func TestMemoryLimitDefersThirdVersion(t *testing.T) {
	var inUse atomic.Int64
	f := limitedFixture(t, &inUse)
	admin := recservev1.NewModelAdminServiceClient(f.conn)
	f.publish(t, testBundle("m", 50, 6000, 64, 51)) // item vectors of 1.5 MB: tracked
	f.publish(t, testBundle("m", 50, 6000, 64, 52))
	ctx := context.Background()
	if _, err := admin.Pin(ctx, &recservev1.PinRequest{Model: "m", Version: "1", Stable: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetCanary(ctx, &recservev1.SetCanaryRequest{Model: "m", Version: "2", Percent: 50}); err != nil {
		t.Fatal(err)
	}

	inUse.Store(1<<30 - 1<<30/10 - 1<<20) // 1 MiB short of nine tenths: less than a version's arrays
	f.publish(t, testBundle("m", 50, 6000, 64, 53))
	f.refresh(t) // once more: still refused, not given up
	if got := f.loadedVersions(); !slices.Equal(got, []string{"1", "2"}) {
		t.Fatalf("loaded %v over the memory limit, want 1 and 2", got)
	}
	if why := f.srv.models.failures()["m/3"]; !strings.Contains(why, "memory limit") {
		t.Fatalf("version 3 not reported as over the memory limit: %q", why)
	}
	served := map[string]bool{}
	for u := range 50 {
		resp, err := f.client.Recommend(context.Background(), &recservev1.RecommendRequest{UserId: fmt.Sprintf("u%d", u)})
		if err != nil {
			t.Fatal(err)
		}
		served[resp.GetModelVersion()] = true
	}
	if !served["1"] || !served["2"] || len(served) != 2 {
		t.Fatalf("versions served over the memory limit %v, want stable 1 and canary 2", served)
	}

	inUse.Store(0)
	f.refresh(t)
	if got := f.loadedVersions(); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("loaded %v once memory was free, want 1, 2 and 3", got)
	}
	if errs := f.srv.models.failures(); len(errs) != 0 {
		t.Fatalf("failures left after version 3 loaded: %v", errs)
	}
}

// TestMemoryLimitHoldsNoReserve checks that a server with room for one
// version under its limit sets no memory aside for a second and keeps serving
// the first rather than loading the second.
func TestMemoryLimitHoldsNoReserve(t *testing.T) {
	var inUse atomic.Int64
	inUse.Store(1 << 30)
	f := limitedFixture(t, &inUse)
	f.publish(t, testBundle("m", 50, 6000, 64, 61)) // a model's first version is not checked
	if got := hugepage.Reserved(); got != 0 {
		t.Fatalf("%d bytes set aside at the memory limit, want 0", got)
	}
	f.publish(t, testBundle("m", 50, 6000, 64, 62))
	if got := f.loadedVersions(); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("loaded %v at the memory limit, want 1", got)
	}
	if got := f.srv.Served()["m"]; got != "1" {
		t.Fatalf("serving %q, want 1", got)
	}
}
