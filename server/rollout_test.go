package server

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/recserve/recserve/index"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/registry"
)

// fakeClock is a settable clock for rollout tests.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// newRolloutFixture serves model "m" with versions 1 and 2 published.
func newRolloutFixture(t *testing.T, clock *fakeClock) (*fixture, recservev1.ModelAdminServiceClient) {
	t.Helper()
	f := newFixture(t, Options{Clock: clock.now, Index: index.Options{Kind: index.KindExact}, CacheTTL: -1})
	f.publish(t, testBundle("m", 20, 200, 8, 40))
	f.publish(t, testBundle("m", 20, 200, 8, 41))
	return f, recservev1.NewModelAdminServiceClient(f.conn)
}

// simulate sends one request per user and feeds back an impression, and a click
// with the probability ctr gives the serving version. It returns requests per version.
func simulate(t *testing.T, f *fixture, rng *rand.Rand, users int, ctr map[string]float64, step int) map[string]int {
	t.Helper()
	served := map[string]int{}
	var evs []*recservev1.Event
	for u := 0; u < users; u++ {
		user := fmt.Sprintf("sim-%d", u)
		resp, err := f.srv.Recommend(context.Background(), &recservev1.RecommendRequest{UserId: user, N: proto.Int32(5)})
		if err != nil {
			t.Fatal(err)
		}
		v := resp.GetModelVersion()
		served[v]++
		base := &recservev1.Event{UserId: user, ItemId: resp.GetItems()[0].GetItemId(), RequestId: resp.GetRequestId(), ModelVersion: v, Model: "m"}
		imp := proto.Clone(base).(*recservev1.Event)
		imp.EventId, imp.Type = fmt.Sprintf("imp-%d-%d", step, u), recservev1.EventType_EVENT_TYPE_IMPRESSION
		evs = append(evs, imp)
		if rng.Float64() < ctr[v] {
			click := proto.Clone(base).(*recservev1.Event)
			click.EventId, click.Type = fmt.Sprintf("click-%d-%d", step, u), recservev1.EventType_EVENT_TYPE_CLICK
			evs = append(evs, click, click) // a redelivered click counts once
		}
	}
	f.srv.ObserveEvents(evs)
	return served
}

var testPolicy = &recservev1.RolloutPolicy{Steps: []float64{5, 25, 50, 100}, HoldSeconds: 600, MinImpressions: 400, CtrMargin: 0.01}

func TestRolloutPromotesBetterCanary(t *testing.T) {
	clock := newFakeClock()
	f, admin := newRolloutFixture(t, clock)
	ctx := context.Background()
	if _, err := admin.Pin(ctx, &recservev1.PinRequest{Model: "m", Version: "1", Stable: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetCanary(ctx, &recservev1.SetCanaryRequest{Model: "m", Version: "2", Policy: testPolicy}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ctr := map[string]float64{"1": 0.10, "2": 0.16}
	wantPct := []float64{5, 25, 50}
	for step, pct := range wantPct {
		got, _ := admin.GetModel(ctx, &recservev1.GetModelRequest{Model: "m"})
		if got.GetModel().GetCanaryPercent() != pct || got.GetModel().GetCanaryVersion() != "2" {
			t.Fatalf("step %d: canary %q at %v%%, want 2 at %v%%", step, got.GetModel().GetCanaryVersion(), got.GetModel().GetCanaryPercent(), pct)
		}
		served := simulate(t, f, rng, 10000, ctr, step)
		share := 100 * float64(served["2"]) / 10000
		if math.Abs(share-pct) > 1.5 {
			t.Fatalf("step %d: canary served %.2f%% of users, configured %v%%", step, share, pct)
		}
		live, _ := admin.GetModel(ctx, &recservev1.GetModelRequest{Model: "m"})
		for _, v := range live.GetModel().GetVersions() {
			if v.GetVersion() == "2" && (v.GetMetrics().GetImpressions() < int64(served["2"]) || v.GetMetrics().GetCtr() < 0.12 || v.GetMetrics().GetRequests() == 0) {
				t.Fatalf("step %d: canary live metrics %v", step, v.GetMetrics())
			}
		}
		f.srv.evaluateRollouts(clock.now()) // not held long enough yet: no decision
		if st := f.srv.models.state("m"); st.Step != step {
			t.Fatalf("decided before the hold ended: %+v", st)
		}
		clock.advance(601 * time.Second)
		f.srv.evaluateRollouts(clock.now())
	}
	got, err := admin.GetModel(ctx, &recservev1.GetModelRequest{Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	m := got.GetModel()
	if m.GetStableVersion() != "2" || m.GetCanaryVersion() != "" {
		t.Fatalf("after the rollout: stable %q canary %q, want 2 promoted", m.GetStableVersion(), m.GetCanaryVersion())
	}
	var kinds []string
	for _, d := range m.GetDecisions() {
		kinds = append(kinds, d.GetKind())
	}
	want := []string{"pin", "set_canary", "advance", "advance", "promote"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("decisions %v, want %v", kinds, want)
	}
	if r := m.GetDecisions()[4].GetReason(); r == "" {
		t.Fatal("promotion logged without a reason")
	}
	resp, _ := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: "anyone"})
	if resp.GetModelVersion() != "2" {
		t.Fatalf("served %s after promotion", resp.GetModelVersion())
	}
}

func TestRolloutRollsBackWorseCanary(t *testing.T) {
	clock := newFakeClock()
	f, admin := newRolloutFixture(t, clock)
	ctx := context.Background()
	if _, err := admin.SetCanary(ctx, &recservev1.SetCanaryRequest{Model: "m", Version: "1", Policy: testPolicy}); err != nil {
		t.Fatal(err) // version 2 is the newest and so stable; 1 is the canary
	}
	rng := rand.New(rand.NewPCG(3, 4))
	simulate(t, f, rng, 10000, map[string]float64{"2": 0.10, "1": 0.04}, 0)
	clock.advance(601 * time.Second)
	f.srv.evaluateRollouts(clock.now())
	got, _ := admin.GetModel(ctx, &recservev1.GetModelRequest{Model: "m"})
	m := got.GetModel()
	if m.GetCanaryVersion() != "" || m.GetStableVersion() != "2" {
		t.Fatalf("worse canary not rolled back: %v", m)
	}
	last := m.GetDecisions()[len(m.GetDecisions())-1]
	if last.GetKind() != "rollback" || last.GetVersion() != "1" || last.GetReason() == "" {
		t.Fatalf("last decision %v", last)
	}
	t.Logf("rollback reason: %s", last.GetReason())
}

func TestRolloutHoldsWithoutEnoughImpressions(t *testing.T) {
	clock := newFakeClock()
	f, admin := newRolloutFixture(t, clock)
	if _, err := admin.SetCanary(context.Background(), &recservev1.SetCanaryRequest{Model: "m", Version: "1", Policy: testPolicy}); err != nil {
		t.Fatal(err)
	}
	simulate(t, f, rand.New(rand.NewPCG(5, 6)), 1000, map[string]float64{"2": 0.1, "1": 0.1}, 0)
	clock.advance(time.Hour)
	f.srv.evaluateRollouts(clock.now())
	if st := f.srv.models.state("m"); st.Canary != "1" || st.Step != 0 {
		t.Fatalf("decided on too few impressions: %+v", st)
	}
}

func TestSplitUnderLoadAndStickiness(t *testing.T) {
	clock := newFakeClock()
	f, admin := newRolloutFixture(t, clock)
	ctx := context.Background()
	if _, err := admin.SetCanary(ctx, &recservev1.SetCanaryRequest{Model: "m", Version: "1", Percent: 10}); err != nil {
		t.Fatal(err)
	}
	// Clients keep sending while the split changes and the canary is promoted.
	loadCtx, stop := context.WithCancel(ctx)
	var failed, done atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; loadCtx.Err() == nil; i++ {
				if _, err := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: fmt.Sprintf("load-%d-%d", w, i)}); err != nil {
					failed.Add(1)
					t.Errorf("request failed: %v", err)
				}
				done.Add(1)
			}
		}(w)
	}
	for _, pct := range []float64{30, 50, 20} {
		time.Sleep(30 * time.Millisecond)
		if _, err := admin.SetCanary(ctx, &recservev1.SetCanaryRequest{Model: "m", Percent: pct}); err != nil {
			t.Fatal(err)
		}
	}
	// The configured 20% split, observed in the responses to 100k users, and sticky.
	const users = 100_000
	served := map[string]int{}
	first := map[string]string{}
	for u := 0; u < users; u++ {
		user := fmt.Sprintf("user-%d", u)
		resp, err := f.srv.Recommend(ctx, &recservev1.RecommendRequest{UserId: user, N: proto.Int32(1)})
		if err != nil {
			t.Fatal(err)
		}
		served[resp.GetModelVersion()]++
		if u < 1000 {
			first[user] = resp.GetModelVersion()
		}
	}
	if share := 100 * float64(served["1"]) / users; math.Abs(share-20) > 1 {
		t.Fatalf("canary served %.2f%% of users, configured 20%%", share)
	}
	for user, ver := range first {
		resp, err := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: user})
		if err != nil || resp.GetModelVersion() != ver {
			t.Fatalf("user %s served %s, %s before (%v)", user, resp.GetModelVersion(), ver, err)
		}
	}
	if _, err := admin.Promote(ctx, &recservev1.PromoteRequest{Model: "m"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	stop()
	wg.Wait()
	if failed.Load() != 0 || done.Load() == 0 {
		t.Fatalf("%d of %d requests failed", failed.Load(), done.Load())
	}
	if resp, _ := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: "x"}); resp.GetModelVersion() != "1" {
		t.Fatalf("after promote served %s, want 1", resp.GetModelVersion())
	}
}

func TestExplicitVersionAndShadow(t *testing.T) {
	clock := newFakeClock()
	f, admin := newRolloutFixture(t, clock)
	ctx := context.Background()
	if _, err := admin.SetCanary(ctx, &recservev1.SetCanaryRequest{Model: "m", Version: "1", Percent: 0, ShadowFraction: 1}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ ask, want string }{{"1", "1"}, {"2", "2"}, {"canary", "1"}, {"stable", "2"}} {
		resp, err := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: "u1", Version: c.ask})
		if err != nil || resp.GetModelVersion() != c.want {
			t.Fatalf("version %q: served %q (%v), want %q", c.ask, resp.GetModelVersion(), err, c.want)
		}
	}
	_, err := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: "u1", Version: "99"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown version: %v, want NOT_FOUND", err)
	}
	// Every stable request is shadowed on the canary; answers still come from stable.
	for i := 0; i < 50; i++ {
		resp, err := f.client.Recommend(ctx, &recservev1.RecommendRequest{UserId: fmt.Sprintf("u%d", i%20)})
		if err != nil || resp.GetModelVersion() != "2" {
			t.Fatalf("shadowed request served %q (%v)", resp.GetModelVersion(), err)
		}
		time.Sleep(time.Millisecond) // let shadows finish; at most maxShadows run at once
	}
	f.srv.shadows.Wait()
	got, _ := admin.GetModel(ctx, &recservev1.GetModelRequest{Model: "m"})
	for _, v := range got.GetModel().GetVersions() {
		if v.GetVersion() != "1" {
			continue
		}
		m := v.GetMetrics()
		if m.GetShadowRequests() == 0 || m.GetShadowOverlap() < 0 || m.GetShadowOverlap() > 1 {
			t.Fatalf("shadow metrics %v", m)
		}
	}
}

func TestRolloutStateSurvivesRestart(t *testing.T) {
	clock := newFakeClock()
	f, admin := newRolloutFixture(t, clock)
	ctx := context.Background()
	if _, err := admin.SetCanary(ctx, &recservev1.SetCanaryRequest{Model: "m", Version: "1", Policy: testPolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Pin(ctx, &recservev1.PinRequest{Model: "m", Version: "1"}); err != nil {
		t.Fatal(err)
	}
	before, _ := f.srv.models.get("m")
	again, err := New(Options{Registry: f.reg, Logger: quiet, Clock: clock.now, Index: index.Options{Kind: index.KindExact}})
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	st := again.models.state("m")
	after, _ := again.models.get("m")
	if st.Canary != "1" || st.CanaryPercent != 5 || st.Policy == nil || st.Stable != "2" || !slices.Equal(st.Pinned, []string{"1"}) || len(st.Decisions) != 2 {
		t.Fatalf("state after restart %+v", st)
	}
	for u := 0; u < 2000; u++ {
		user := fmt.Sprintf("user-%d", u)
		a, _ := before.route(user, "")
		b, _ := after.route(user, "")
		if a.version != b.version {
			t.Fatalf("user %s moved from %s to %s across the restart", user, a.version, b.version)
		}
	}
}

func TestLabelWaitsForVersion(t *testing.T) {
	reg, err := registry.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for s := uint64(50); s < 52; s++ {
		if _, err := reg.Publish(testBundle("m", 10, 50, 8, s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := reg.WriteState("m", []byte(`{"stable":"3","salt":"m"}`)); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Registry: reg, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := srv.Served()["m"]; got != "2" {
		t.Fatalf("serving %q while stable=3 is missing, want the newest loaded (2)", got)
	}
	st, _ := srv.modelStatus("m")
	if !slices.Equal(st.GetWaiting(), []string{"stable=3"}) {
		t.Fatalf("waiting %v", st.GetWaiting())
	}
	if _, err := reg.Publish(testBundle("m", 10, 50, 8, 52)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := srv.Served()["m"]; got != "3" {
		t.Fatalf("serving %q after version 3 appeared", got)
	}
}

func TestKeepVersionsAndPin(t *testing.T) {
	f := newFixture(t, Options{KeepVersions: 2, Index: index.Options{Kind: index.KindExact}})
	admin := recservev1.NewModelAdminServiceClient(f.conn)
	f.publish(t, testBundle("m", 5, 30, 4, 60))
	if _, err := admin.Pin(context.Background(), &recservev1.PinRequest{Model: "m", Version: "1"}); err != nil {
		t.Fatal(err)
	}
	for s := uint64(61); s < 64; s++ {
		f.publish(t, testBundle("m", 5, 30, 4, s))
	}
	v, _ := f.srv.models.get("m")
	loaded := f.loadedVersions()
	if !slices.Equal(loaded, []string{"1", "3", "4"}) || v.stable.version != "4" {
		t.Fatalf("loaded %v stable %s; want pinned 1 plus the newest two, 4 stable", loaded, v.stable.version)
	}
}

func TestAdminErrors(t *testing.T) {
	_, admin := newRolloutFixture(t, newFakeClock())
	ctx := context.Background()
	cases := []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"unknown model", func() error {
			_, err := admin.GetModel(ctx, &recservev1.GetModelRequest{Model: "nope"})
			return err
		}, codes.NotFound},
		{"unknown version", func() error {
			_, err := admin.SetCanary(ctx, &recservev1.SetCanaryRequest{Model: "m", Version: "9", Percent: 5})
			return err
		}, codes.NotFound},
		{"percent out of range", func() error {
			_, err := admin.SetCanary(ctx, &recservev1.SetCanaryRequest{Model: "m", Version: "1", Percent: 150})
			return err
		}, codes.InvalidArgument},
		{"canary is stable", func() error {
			_, err := admin.SetCanary(ctx, &recservev1.SetCanaryRequest{Model: "m", Version: "2", Percent: 5})
			return err
		}, codes.InvalidArgument},
		{"steps not increasing", func() error {
			_, err := admin.SetCanary(ctx, &recservev1.SetCanaryRequest{Model: "m", Version: "1", Policy: &recservev1.RolloutPolicy{Steps: []float64{50, 10}, HoldSeconds: 1}})
			return err
		}, codes.InvalidArgument},
		{"promote without canary", func() error {
			_, err := admin.Promote(ctx, &recservev1.PromoteRequest{Model: "m"})
			return err
		}, codes.FailedPrecondition},
		{"rollback without canary", func() error {
			_, err := admin.Rollback(ctx, &recservev1.RollbackRequest{Model: "m"})
			return err
		}, codes.FailedPrecondition},
	}
	for _, c := range cases {
		if code := status.Code(c.call()); code != c.code {
			t.Errorf("%s: %v, want %v", c.name, code, c.code)
		}
	}
}

// TestReplicasShareRolloutState: two servers on one registry, as replicas
// behind a load balancer. An admin call to one of them reaches the other
// within a poll, so users are routed the same whichever replica answers.
func TestReplicasShareRolloutState(t *testing.T) {
	clock := newFakeClock()
	a, admin := newRolloutFixture(t, clock)
	ctx := context.Background()
	b, err := New(Options{Registry: a.reg, Logger: quiet, Clock: clock.now, Index: index.Options{Kind: index.KindExact}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetCanary(ctx, &recservev1.SetCanaryRequest{Model: "m", Version: "1", Percent: 30}); err != nil {
		t.Fatal(err)
	}
	sameRoutes := func() bool {
		va, _ := a.srv.models.get("m")
		vb, _ := b.models.get("m")
		for u := 0; u < 2000; u++ {
			user := fmt.Sprintf("user-%d", u)
			ra, _ := va.route(user, "")
			rb, _ := vb.route(user, "")
			if ra.version != rb.version {
				return false
			}
		}
		return true
	}
	if sameRoutes() {
		t.Fatal("the other replica routed like the canary before it polled: the test would prove nothing")
	}
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if st := b.models.state("m"); st.Canary != "1" || st.CanaryPercent != 30 || !sameRoutes() {
		t.Fatalf("replica after a poll: %+v", st)
	}

	// And back: a promotion through the second replica reaches the first.
	if _, err := b.models.update("m", func(st *rollout, now time.Time) error {
		st.Stable = st.Canary
		st.clearCanary()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := a.srv.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if st := a.srv.models.state("m"); st.Stable != "1" || st.Canary != "" || !sameRoutes() {
		t.Fatalf("first replica after the promotion: %+v", st)
	}
}

// TestRolloutInconclusiveHolds: equal CTRs on 120 impressions each are
// inconclusive: the step holds (logged once, with the reason) instead of
// rolling back, and its sample keeps growing until a verdict is shown.
func TestRolloutInconclusiveHolds(t *testing.T) {
	clock := newFakeClock()
	f, admin := newRolloutFixture(t, clock)
	ctx := context.Background()
	policy := &recservev1.RolloutPolicy{Steps: []float64{50, 100}, HoldSeconds: 600, MinImpressions: 100, CtrMargin: 0.005}
	if _, err := admin.SetCanary(ctx, &recservev1.SetCanaryRequest{Model: "m", Version: "1", Policy: policy}); err != nil {
		t.Fatal(err)
	}
	served := simulate(t, f, rand.New(rand.NewPCG(7, 8)), 240, map[string]float64{"2": 0.1, "1": 0.1}, 0)
	if served["1"] < 100 || served["2"] < 100 {
		t.Fatalf("served %v, want at least 100 impressions each", served)
	}
	clock.advance(601 * time.Second)
	for range 3 { // every poll judges again; the hold is logged once
		f.srv.evaluateRollouts(clock.now())
		clock.advance(2 * time.Second)
	}
	got, _ := admin.GetModel(ctx, &recservev1.GetModelRequest{Model: "m"})
	m := got.GetModel()
	if m.GetCanaryVersion() != "1" || m.GetCanaryPercent() != 50 {
		t.Fatalf("inconclusive step not held: canary %q at %v%%", m.GetCanaryVersion(), m.GetCanaryPercent())
	}
	var holds []string
	for _, d := range m.GetDecisions() {
		if d.GetKind() == "rollback" {
			t.Fatalf("rolled back on an inconclusive result: %s", d.GetReason())
		}
		if d.GetKind() == "hold" {
			holds = append(holds, d.GetReason())
		}
	}
	if len(holds) != 1 || !strings.HasPrefix(holds[0], "inconclusive") {
		t.Fatalf("hold decisions %q, want one saying inconclusive", holds)
	}
	// More impressions in the same step, now with the canary clearly worse.
	simulate(t, f, rand.New(rand.NewPCG(9, 10)), 4000, map[string]float64{"2": 0.1, "1": 0.02}, 1)
	f.srv.evaluateRollouts(clock.now())
	got, _ = admin.GetModel(ctx, &recservev1.GetModelRequest{Model: "m"})
	last := got.GetModel().GetDecisions()[len(got.GetModel().GetDecisions())-1]
	if got.GetModel().GetCanaryVersion() != "" || last.GetKind() != "rollback" || !strings.HasPrefix(last.GetReason(), "worse") {
		t.Fatalf("after more impressions of a worse canary: canary %q, last decision %v", got.GetModel().GetCanaryVersion(), last)
	}
}
