package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/recserve/recserve/catalog"
	"github.com/recserve/recserve/eventlog"
	"github.com/recserve/recserve/events"
	"github.com/recserve/recserve/internal/telemetry"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/registry"
	"github.com/recserve/recserve/trainer"
)

const catalogTopic = "catalog"

// startCatalogBroker is startTrainerBroker with the catalog topic too.
func startCatalogBroker(t *testing.T) *events.Embedded {
	t.Helper()
	e := startTrainerBroker(t)
	if err := events.EnsureTopic(t.Context(), e.Addrs(), catalogTopic, 2); err != nil {
		t.Fatal(err)
	}
	return e
}

// produceCatalog writes raw values to the catalog topic: marshaled records,
// or anything else to test what the trainer skips.
func produceCatalog(t *testing.T, e *events.Embedded, values ...any) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...), kgo.DefaultProduceTopic(catalogTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for _, v := range values {
		switch v := v.(type) {
		case *recservev1.CatalogRecord:
			b, err := proto.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			key := catalog.ItemID(v)
			if key == "" {
				key = v.GetEraseUserId()
			}
			recs = append(recs, &kgo.Record{Key: []byte(key), Value: b})
		case []byte:
			recs = append(recs, &kgo.Record{Key: []byte("junk"), Value: v})
		default:
			t.Fatalf("produceCatalog: %T", v)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func eraseRecord(user string, at time.Time) *recservev1.CatalogRecord {
	return &recservev1.CatalogRecord{Change: &recservev1.CatalogRecord_EraseUserId{EraseUserId: user}, Time: timestamppb.New(at)}
}

func upsertRecord(id, category string, available *bool, attrs map[string]string, at time.Time) *recservev1.CatalogRecord {
	return &recservev1.CatalogRecord{Change: &recservev1.CatalogRecord_Upsert{Upsert: &recservev1.CatalogItem{
		ItemId: id, Category: category, Available: available, Attributes: attrs}}, Time: timestamppb.New(at)}
}

func availabilityRecord(id string, available bool, at time.Time) *recservev1.CatalogRecord {
	return &recservev1.CatalogRecord{Change: &recservev1.CatalogRecord_Availability{Availability: &recservev1.ItemAvailability{
		ItemId: id, Available: available}}, Time: timestamppb.New(at)}
}

func deleteRecord(id string, at time.Time) *recservev1.CatalogRecord {
	return &recservev1.CatalogRecord{Change: &recservev1.CatalogRecord_DeleteItemId{DeleteItemId: id}, Time: timestamppb.New(at)}
}

func click(id, user, item string, at time.Time) *recservev1.Event {
	return &recservev1.Event{EventId: id, UserId: user, ItemId: item, Type: recservev1.EventType_EVENT_TYPE_CLICK,
		Weight: 2, Timestamp: timestamppb.New(at)}
}

func versionNumber(t *testing.T, v string) int {
	t.Helper()
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("version %q: %v", v, err)
	}
	return n
}

// waitVersion waits for the latest version of model to satisfy cond and
// returns it; errc reports the trainer stopping early.
func waitVersion(t *testing.T, reg *registry.FS, model string, errc <-chan error, what string, cond func(b *registry.Bundle) bool) *registry.Bundle {
	t.Helper()
	var last *registry.Bundle
	waitFor(t, 20*time.Second, what, func() bool {
		select {
		case err := <-errc:
			t.Fatalf("trainer stopped: %v", err)
		default:
		}
		v, err := reg.Latest(model)
		if err != nil {
			return false
		}
		if last != nil && last.Manifest.Version == v {
			return false
		}
		b, err := reg.Load(model, v)
		if err != nil {
			t.Fatalf("load version %s: %v", v, err)
		}
		last = b
		return cond(b)
	})
	return last
}

func hasUser(b *registry.Bundle, user string) bool {
	_, ok := b.UserRows().Row(user)
	return ok
}

// seenOf returns the ids of the items user saw in training in b.
func seenOf(b *registry.Bundle, user string) []string {
	u, ok := b.UserRows().Row(user)
	if !ok {
		return nil
	}
	var out []string
	for _, i := range b.Seen(int(u)) {
		out = append(out, b.ItemRows().ID(int(i)))
	}
	slices.Sort(out)
	return out
}

func groupOffsets(t *testing.T, e *events.Embedded, group, topic string) (committed, end int64) {
	t.Helper()
	r, err := events.NewLagReader(e.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	committed, end, err = r.Offsets(ctx, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	return committed, end
}

// TestTrainerErasure: an erase_user record on the catalog topic removes the
// user's events from the trainer's log, so the next version (trained at the
// interval, with no new events) does not have the user; the user's old events
// delivered again are not stored, a new one is.
func TestTrainerErasure(t *testing.T) {
	verifyNoLeaks(t)
	e := startCatalogBroker(t)
	dir := t.TempDir()
	logDir, regDir := filepath.Join(dir, "log"), filepath.Join(dir, "registry")
	old := time.Now().Add(-time.Hour)
	var evs, evsA []*recservev1.Event
	for ui, u := range []string{"A", "B", "u0", "u1", "u2", "u3", "u4", "u5"} {
		for k := range 6 {
			ev := click(fmt.Sprintf("%s-%d", u, k), u, fmt.Sprint("i", (ui*3+k)%12), old)
			evs = append(evs, ev)
			if u == "A" {
				evsA = append(evsA, ev)
			}
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := lis.Addr().String()
	lis.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- runTrainer(ctx, []string{
			"-brokers", strings.Join(e.Addrs(), ","), "-topic", trainerTopic, "-group", "t-erase", "-catalog-topic", catalogTopic,
			"-log-dir", logDir, "-registry", regDir, "-model", "er", "-metrics-addr", metricsAddr,
			"-retrain-every", "1000000", "-retrain-interval", "300ms", "-factors", "4", "-iterations", "1", "-workers", "1",
		})
	}()
	produce(t, e, evs)
	reg, err := registry.Open(regDir)
	if err != nil {
		t.Fatal(err)
	}
	first := waitVersion(t, reg, "er", errc, "a version of all events", func(b *registry.Bundle) bool {
		return b.Manifest.Metrics["events"] == float64(len(evs))
	})
	if !hasUser(first, "A") || !hasUser(first, "B") {
		t.Fatal("the first version lacks user A or B")
	}

	erasedAt := time.Now()
	produceCatalog(t, e, eraseRecord("A", erasedAt))
	erased := waitVersion(t, reg, "er", errc, "a version after the erasure", func(b *registry.Bundle) bool {
		return versionNumber(t, b.Manifest.Version) > versionNumber(t, first.Manifest.Version)
	})
	if hasUser(erased, "A") {
		t.Fatalf("version %s, trained after A's erasure, has user A", erased.Manifest.Version)
	}
	if !hasUser(erased, "B") || erased.Manifest.Users != first.Manifest.Users-1 {
		t.Fatalf("version %s: %d users (B there: %v), want %d with B", erased.Manifest.Version,
			erased.Manifest.Users, hasUser(erased, "B"), first.Manifest.Users-1)
	}
	if got, want := erased.Manifest.Metrics["events"], float64(len(evs)-len(evsA)); got != want {
		t.Fatalf("version %s trained on %v events, want %v", erased.Manifest.Version, got, want)
	}

	// A's events again (a redelivery: same ids; a replay under new ids), a new
	// event of B, and one of A after the erasure: A comes back with that one.
	var again []*recservev1.Event
	for _, ev := range evsA {
		again = append(again, proto.Clone(ev).(*recservev1.Event))
		re := proto.Clone(ev).(*recservev1.Event)
		re.EventId = "replayed-" + ev.EventId
		again = append(again, re)
	}
	again = append(again, click("B-new", "B", "i11", time.Now()), click("A-back", "A", "i7", erasedAt.Add(time.Second)))
	produce(t, e, again)
	last := waitVersion(t, reg, "er", errc, "a version with the new events", func(b *registry.Bundle) bool {
		return b.Manifest.Metrics["events"] == float64(len(evs)-len(evsA)+2)
	})
	if got := seenOf(last, "A"); !slices.Equal(got, []string{"i7"}) {
		t.Fatalf("user A's training items in version %s: %v, want only the event after the erasure", last.Manifest.Version, got)
	}
	// The catalog group's lag is on /metrics, next to the event group's.
	waitFor(t, 10*time.Second, "the catalog group's lag on /metrics", func() bool {
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(body), `group="t-erase-catalog"`) && strings.Contains(string(body), `group="t-erase"`)
	})
	http.DefaultClient.CloseIdleConnections()
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("trainer returned %v after ctx was canceled", err)
	}
	if c, end := groupOffsets(t, e, "t-erase-catalog", catalogTopic); end != 1 || c != end {
		t.Fatalf("catalog group committed %d of %d records", c, end)
	}
	el, err := eventlog.Open(logDir)
	if err != nil {
		t.Fatal(err)
	}
	defer el.Close()
	if at, ok := el.Erased("A"); !ok || !at.Equal(erasedAt.Truncate(time.Nanosecond)) {
		t.Fatalf("the log has A erased at %v, %v; want %v", at, ok, erasedAt)
	}
}

// readVersionItems reads the items.jsonl of a published version.
func readVersionItems(t *testing.T, regDir, model, version string) map[string]registry.Item {
	t.Helper()
	f, err := os.Open(filepath.Join(regDir, model, version, "items.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]registry.Item{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var it registry.Item
		if err := json.Unmarshal(sc.Bytes(), &it); err != nil {
			t.Fatal(err)
		}
		out[it.ID] = it
	}
	return out
}

// checkItem checks an item of a loaded version: present with a non-zero
// vector, its category and availability.
func checkItem(t *testing.T, b *registry.Bundle, id, category string, available bool) {
	t.Helper()
	row, ok := b.ItemRows().Row(id)
	if !ok {
		t.Fatalf("version %s lacks item %s", b.Manifest.Version, id)
	}
	c := b.Catalog()
	if got := c.CategoryName(c.Category(row)); got != category {
		t.Errorf("version %s: item %s in category %q, want %q", b.Manifest.Version, id, got, category)
	}
	if got := c.Available(row); got != available {
		t.Errorf("version %s: item %s available %v, want %v", b.Manifest.Version, id, got, available)
	}
	var norm float32
	for _, x := range b.ItemVectors[int(row)*b.Manifest.Dim : int(row+1)*b.Manifest.Dim] {
		norm += x * x
	}
	if norm == 0 {
		t.Errorf("version %s: item %s has a zero vector", b.Manifest.Version, id)
	}
}

// TestTrainerCatalogChanges: item changes on the catalog topic reach the next
// version's catalog: an upserted new item with events is trained, with its
// category and attributes; a deleted item has no vector, also when it has
// events; availability changes apply, an older one never over a newer one,
// and a record without a time has the Kafka record's; invalid records are
// skipped. A deletion alone retrains at the interval, and
// the changes survive a restart of the trainer.
func TestTrainerCatalogChanges(t *testing.T) {
	verifyNoLeaks(t)
	e := startCatalogBroker(t)
	dir := t.TempDir()
	logDir, regDir := filepath.Join(dir, "log"), filepath.Join(dir, "registry")
	itemsPath := filepath.Join(dir, "items.jsonl")
	var base strings.Builder
	for i := range 12 {
		fmt.Fprintf(&base, `{"id":"i%d","category":"c%d","available":true}`+"\n", i, i%2)
	}
	if err := os.WriteFile(itemsPath, []byte(base.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := trainer.DefaultOptions()
	opts.Factors, opts.Iterations, opts.Workers = 4, 1, 1
	var applied atomic.Int64
	start := func(ctx context.Context) <-chan error {
		job := trainerJob{
			Consumer:     events.ConsumerConfig{Brokers: e.Addrs(), Topic: trainerTopic, Group: "t-cat"},
			CatalogTopic: catalogTopic, LogDir: logDir, Registry: regDir, Model: "cat", Items: itemsPath,
			Options: opts, RetrainEvery: 1 << 30, RetrainInterval: 300 * time.Millisecond,
			catalogApplied: func(records, _, _ int) { applied.Add(int64(records)) },
		}
		errc := make(chan error, 1)
		go func() { errc <- job.run(ctx, trainerLogger(t)) }()
		return errc
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errc := start(ctx)

	t1 := time.Now().Add(-10 * time.Minute)
	no := false
	produceCatalog(t, e,
		upsertRecord("new-1", "fresh", nil, map[string]string{"price": "9"}, t1),
		deleteRecord("i3", t1),
		availabilityRecord("i5", false, t1),
		availabilityRecord("i6", false, t1),
		availabilityRecord("i6", true, t1.Add(-time.Minute)), // older: ignored
		upsertRecord("i8", "moved", &no, nil, t1),
		upsertRecord("i10", "ten", nil, nil, t1),
		// No time: the Kafka record's (now), so it is newer than the upsert.
		&recservev1.CatalogRecord{Change: &recservev1.CatalogRecord_Availability{Availability: &recservev1.ItemAvailability{ItemId: "i10"}}},
		upsertRecord("", "bad", nil, nil, t1), // invalid: skipped
		[]byte("not a record"),                // skipped
	)
	waitFor(t, 15*time.Second, "the catalog records applied", func() bool { return applied.Load() == 8 })

	var evs []*recservev1.Event
	for u := range 8 {
		user := fmt.Sprint("u", u)
		for j := range 5 {
			evs = append(evs, click(fmt.Sprintf("%s-%d", user, j), user, fmt.Sprint("i", (u+j)%12), time.Now()))
		}
		if u < 4 {
			evs = append(evs, click(user+"-new", user, "new-1", time.Now()))
		}
	}
	produce(t, e, evs)
	reg, err := registry.Open(regDir)
	if err != nil {
		t.Fatal(err)
	}
	v1 := waitVersion(t, reg, "cat", errc, "a version of all events", func(b *registry.Bundle) bool {
		return b.Manifest.Metrics["events"] == float64(len(evs))
	})
	if _, ok := v1.ItemRows().Row("i3"); ok {
		t.Errorf("version %s has the deleted item i3", v1.Manifest.Version)
	}
	if v1.Manifest.Items != 12 { // 12 base items, i3 deleted, new-1 added
		t.Errorf("version %s has %d items, want 12", v1.Manifest.Version, v1.Manifest.Items)
	}
	checkItem(t, v1, "new-1", "fresh", true)
	checkItem(t, v1, "i0", "c0", true)
	checkItem(t, v1, "i5", "c1", false)
	checkItem(t, v1, "i6", "c0", false)
	checkItem(t, v1, "i8", "moved", false)
	checkItem(t, v1, "i10", "ten", false)
	for u := range 8 {
		if slices.Contains(seenOf(v1, fmt.Sprint("u", u)), "i3") {
			t.Errorf("user u%d's training items include the deleted i3", u)
		}
	}
	if it := readVersionItems(t, regDir, "cat", v1.Manifest.Version)["new-1"]; it.Attributes["price"] != "9" {
		t.Errorf("items.jsonl of version %s: new-1 is %+v, want its attributes", v1.Manifest.Version, it)
	}

	// A deletion alone: a new version at the interval, without the item.
	produceCatalog(t, e, deleteRecord("new-1", time.Now()))
	v2 := waitVersion(t, reg, "cat", errc, "a version without new-1", func(b *registry.Bundle) bool {
		_, ok := b.ItemRows().Row("new-1")
		return !ok
	})
	if v2.Manifest.Items != 11 || v2.Manifest.Metrics["events"] != float64(len(evs)) {
		t.Fatalf("version %s: %d items, %v events; want 11, %d", v2.Manifest.Version, v2.Manifest.Items, v2.Manifest.Metrics["events"], len(evs))
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}

	// Restarted on the same directory: the changes are still in the next version.
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	errc = start(ctx)
	produce(t, e, []*recservev1.Event{click("late", "u9", "i1", time.Now())})
	v3 := waitVersion(t, reg, "cat", errc, "a version after the restart", func(b *registry.Bundle) bool {
		return b.Manifest.Metrics["events"] == float64(len(evs)+1)
	})
	for _, id := range []string{"i3", "new-1"} {
		if _, ok := v3.ItemRows().Row(id); ok {
			t.Errorf("version %s has the deleted item %s", v3.Manifest.Version, id)
		}
	}
	checkItem(t, v3, "i5", "c1", false)
	checkItem(t, v3, "i8", "moved", false)
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestTrainerPendingChanges checks the retrainer's bookkeeping of catalog
// changes: a change is recorded as pending in the trainer state before it is
// applied (so a restart retrains), a retrain clears it, and the same records
// applied again (a redelivery) are not a change.
func TestTrainerPendingChanges(t *testing.T) {
	dir := t.TempDir()
	logDir, regDir := filepath.Join(dir, "log"), filepath.Join(dir, "registry")
	opts := trainer.DefaultOptions()
	opts.Factors, opts.Iterations, opts.Workers = 4, 1, 1
	el, err := eventlog.Open(logDir)
	if err != nil {
		t.Fatal(err)
	}
	defer el.Close()
	cf, err := catalog.OpenFile(logDir)
	if err != nil {
		t.Fatal(err)
	}
	defer cf.Close()
	tel, err := telemetry.New()
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Close()
	var published []string
	var mu sync.Mutex
	job := trainerJob{LogDir: logDir, Registry: regDir, Model: "pc", Options: opts, RetrainEvery: 1 << 30, RetrainInterval: time.Hour,
		published: func(v string) { mu.Lock(); published = append(published, v); mu.Unlock() }}
	r := &retrainer{job: job, log: trainerLogger(t), el: el, cat: catalog.NewState(), catFile: cf, kick: make(chan struct{}, 1)}
	r.state = loadTrainerState(logDir, "pc", r.log)
	if r.metrics, err = newTrainerMetrics(tel.Meter(), r.untrained); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var evs []*recservev1.Event
	for i := range 12 {
		evs = append(evs, click(fmt.Sprint("e", i), fmt.Sprint("u", i%3), fmt.Sprint("i", i%5), now.Add(-time.Hour)))
	}
	if err := r.store(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	if err := r.retrain(t.Context()); err != nil {
		t.Fatal(err)
	}
	if r.pending() || loadTrainerState(logDir, "pc", r.log).Pending {
		t.Fatal("pending changes before any")
	}
	batch := []*recservev1.CatalogRecord{eraseRecord("u0", now), deleteRecord("i1", now)}
	if err := r.applyCatalog(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if !r.pending() || !loadTrainerState(logDir, "pc", r.log).Pending {
		t.Fatal("a change is not pending, in memory or in the trainer state")
	}
	if el.Len() != 8 {
		t.Fatalf("log holds %d events after erasing u0's 4, want 8", el.Len())
	}
	if err := r.retrain(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := loadTrainerState(logDir, "pc", r.log)
	if r.pending() || st.Pending || st.Events != 8 {
		t.Fatalf("after the retrain: pending %v, state %+v", r.pending(), st)
	}
	reg, err := registry.Open(regDir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := reg.Load("pc", st.Version)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.ItemRows().Row("i1"); ok || hasUser(b, "u0") {
		t.Fatalf("version %s has the deleted item or the erased user", st.Version)
	}
	// The same batch again: nothing changes, nothing is pending.
	if err := r.applyCatalog(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if r.pending() || loadTrainerState(logDir, "pc", r.log).Pending {
		t.Fatal("a redelivered batch counts as a change")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(published) != 2 {
		t.Fatalf("published %v, want 2 versions", published)
	}
}

// TestMergeCatalog checks the catalog a training publishes.
func TestMergeCatalog(t *testing.T) {
	base := []registry.Item{
		{ID: "a", Category: "x", Available: true},
		{ID: "b", Category: "y", Available: true},
		{ID: "c", Category: "x", Available: false},
		{ID: "b", Category: "z", Available: true}, // repeated: the last entry wins in trainer.Bundle
	}
	at := time.Now()
	st := catalog.NewState()
	st.Apply([]*recservev1.CatalogRecord{
		upsertRecord("n", "new", nil, map[string]string{"k": "v"}, at),
		availabilityRecord("b", false, at),
		availabilityRecord("m", false, at),
		upsertRecord("c", "w", nil, nil, at),
		deleteRecord("a", at),
	})
	items, deleted := mergeCatalog(base, st.Items())
	want := []registry.Item{
		{ID: "b", Category: "y", Available: true},
		{ID: "c", Category: "w", Available: true},
		{ID: "b", Category: "z", Available: false},
		{ID: "m", Available: false},
		{ID: "n", Category: "new", Available: true, Attributes: map[string]string{"k": "v"}},
	}
	if fmt.Sprint(items) != fmt.Sprint(want) || len(deleted) != 1 || !deleted["a"] {
		t.Fatalf("merged %v (deleted %v), want %v (deleted a)", items, deleted, want)
	}
	if base[2].Category != "x" || base[3].Available != true {
		t.Fatal("mergeCatalog changed its base")
	}
}

// TestTrainerEmbeddedTopics: without -brokers the trainer's broker has both topics.
func TestTrainerEmbeddedTopics(t *testing.T) {
	emb, err := trainerEmbedded("", "interactions", "catalog")
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(emb.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	td, err := kadm.NewClient(cl).ListTopics(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"interactions", "catalog"} {
		if d, ok := td[topic]; !ok || len(d.Partitions) != embeddedPartitions {
			t.Errorf("embedded broker: topic %s: %v", topic, td[topic])
		}
	}
}
