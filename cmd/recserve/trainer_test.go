package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recserve/recserve/eventlog"
	"github.com/recserve/recserve/events"
	"github.com/recserve/recserve/internal/telemetry"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/registry"
	"github.com/recserve/recserve/sampledata"
	"github.com/recserve/recserve/trainer"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const trainerTopic = "interactions"

func trainerLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func startTrainerBroker(t *testing.T) *events.Embedded {
	t.Helper()
	e, err := events.StartEmbedded(trainerTopic, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func produce(t *testing.T, e *events.Embedded, evs []*recservev1.Event) {
	t.Helper()
	p, err := events.NewProducer(events.ProducerConfig{Brokers: e.Addrs(), Topic: trainerTopic, Logger: trainerLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for len(evs) > 0 {
		n := min(len(evs), events.MaxBatch)
		if err := events.Validate(evs[:n], time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := p.Produce(t.Context(), evs[:n]); err != nil {
			t.Fatal(err)
		}
		evs = evs[n:]
	}
}

var sampleTypes = map[string]recservev1.EventType{
	"view":        recservev1.EventType_EVENT_TYPE_VIEW,
	"click":       recservev1.EventType_EVENT_TYPE_CLICK,
	"add_to_cart": recservev1.EventType_EVENT_TYPE_ADD_TO_CART,
	"purchase":    recservev1.EventType_EVENT_TYPE_PURCHASE,
}

// sampleEvents converts generated sample events to normalized API events.
func sampleEvents(t *testing.T, data *sampledata.Data) []*recservev1.Event {
	t.Helper()
	evs := make([]*recservev1.Event, len(data.Events))
	for i, s := range data.Events {
		typ, ok := sampleTypes[s.Type]
		if !ok {
			t.Fatalf("sample event type %q", s.Type)
		}
		evs[i] = &recservev1.Event{
			EventId: fmt.Sprintf("sample-%06d", i), UserId: s.UserID, ItemId: s.ItemID,
			Type: typ, Timestamp: timestamppb.New(s.Timestamp),
		}
	}
	events.Normalize(evs, time.Now())
	return evs
}

// offsets returns the group's committed offsets and the topic's end
// offsets, each summed over partitions (see LagReader.Offsets).
func offsets(t *testing.T, e *events.Embedded, group string) (committed, end int64) {
	t.Helper()
	r, err := events.NewLagReader(e.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	committed, end, err = r.Offsets(ctx, group, trainerTopic)
	if err != nil {
		t.Fatal(err)
	}
	return committed, end
}

// verifyNoLeaks checks, after the test and its cleanups, that it left no
// goroutines behind (other tests' are ignored).
func verifyNoLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// waitFor polls cond every 50ms until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTrainerEndToEnd runs "recserve trainer" against an embedded broker, feeds
// it sample events (some delivered twice) and checks that it publishes a
// version of the whole, deduplicated set.
func TestTrainerEndToEnd(t *testing.T) {
	verifyNoLeaks(t)
	e := startTrainerBroker(t)
	dir := t.TempDir()
	data := sampledata.Generate(sampledata.Options{Users: 60, Items: 90})
	itemsPath := filepath.Join(dir, "items.jsonl")
	if err := writeFile(itemsPath, data.WriteItems); err != nil {
		t.Fatal(err)
	}
	evs := sampleEvents(t, data)
	want := trainer.NewDataset()
	for _, ev := range evs {
		want.Add(ev.UserId, ev.ItemId, float32(ev.Weight))
	}
	regDir := filepath.Join(dir, "registry")
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
			"-brokers", strings.Join(e.Addrs(), ","), "-topic", trainerTopic, "-group", "t-e2e",
			"-log-dir", filepath.Join(dir, "log"), "-registry", regDir, "-model", "rt", "-items", itemsPath,
			"-retrain-every", "300", "-retrain-interval", "500ms",
			"-factors", "8", "-iterations", "2", "-workers", "1", "-metrics-addr", metricsAddr,
		})
	}()
	// A third of the events, then all of them: the first third is delivered twice.
	produce(t, e, evs[:len(evs)/3])
	produce(t, e, evs)

	reg, err := registry.Open(regDir)
	if err != nil {
		t.Fatal(err)
	}
	var last *registry.Bundle
	waitFor(t, 60*time.Second, "a version of all events", func() bool {
		select {
		case err := <-errc:
			t.Fatalf("trainer stopped: %v", err)
		default:
		}
		v, err := reg.Latest("rt")
		if err != nil {
			return false
		}
		b, err := reg.Load("rt", v)
		if err != nil {
			t.Fatalf("load version %s: %v", v, err)
		}
		last = b
		return b.Manifest.Metrics["events"] == float64(len(evs))
	})
	m := last.Manifest
	if m.Users != want.NumUsers() || m.Items != want.NumItems() || m.Metrics["interactions"] != float64(want.NumInteractions()) {
		t.Fatalf("manifest: %d users, %d items, %v interactions; want %d, %d, %d",
			m.Users, m.Items, m.Metrics["interactions"], want.NumUsers(), want.NumItems(), want.NumInteractions())
	}
	if got := int64(len(last.SeenItems)); got != int64(want.NumInteractions()) {
		t.Fatalf("bundle has %d seen items, want %d", got, want.NumInteractions())
	}
	if versions, _ := reg.Versions("rt"); len(versions) < 2 {
		t.Errorf("published %d versions, want at least 2 (retrain every 300 of %d events)", len(versions), len(evs))
	}

	// The trainer's /metrics: trainings, stored events, the published version's
	// metrics and the group's lag (committed after the store: 0 when idle).
	var text string
	waitFor(t, 10*time.Second, "the trainer's metrics of the last version", func() bool {
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		text = string(body)
		return strings.Contains(text, fmt.Sprintf(`recserve_trained_model_metric{metric="events",model="rt",version="%s"} %d`, m.Version, len(evs))) &&
			strings.Contains(text, `recserve_consumer_lag{group="t-e2e",partition="0",topic="interactions"} 0`)
	})
	for _, want := range []string{
		`recserve_training_duration_seconds_count{model="rt",result="ok"}`,
		fmt.Sprintf("recserve_trainer_events_stored_total %d", len(evs)),
		"recserve_trainer_untrained_events 0",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("trainer /metrics lacks %q:\n%s", want, text)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("trainer returned %v after ctx was canceled", err)
	}
}

// crashHelperEnv makes TestTrainerCrashHelper, in a child process, run the
// trainer and die right after it stored its first batch.
const crashHelperEnv = "RECSERVE_TRAINER_CRASH_HELPER"

// crashConsumer is the consumer configuration of both trainer runs of
// TestTrainerExactlyOnce: small batches, and a short session so that the group
// gives up on the dead process quickly.
func crashConsumer(brokers []string) events.ConsumerConfig {
	return events.ConsumerConfig{
		Brokers: brokers, Topic: trainerTopic, Group: "t-crash",
		MaxPollRecords: 100, SessionTimeout: time.Second,
	}
}

func noRetrain(cc events.ConsumerConfig, logDir, regDir string) trainerJob {
	return trainerJob{
		Consumer: cc, LogDir: logDir, Registry: regDir, Model: "crash",
		Options: trainer.DefaultOptions(), RetrainEvery: 1 << 30, RetrainInterval: time.Hour,
	}
}

func TestTrainerCrashHelper(t *testing.T) {
	if os.Getenv(crashHelperEnv) == "" {
		t.Skip("runs as the child process of TestTrainerExactlyOnce")
	}
	job := noRetrain(crashConsumer(strings.Split(os.Getenv("BROKERS"), ",")), os.Getenv("LOG_DIR"), os.Getenv("REGISTRY"))
	job.afterStore = func(delivered, added int) {
		// The batch is in the log, fsynced; its offsets are not committed.
		fmt.Printf("stored %d of %d\n", added, delivered)
		os.Exit(3)
	}
	err := job.run(context.Background(), trainerLogger(t))
	t.Fatalf("trainer returned %v instead of crashing", err)
}

// TestTrainerExactlyOnce kills a trainer process between storing a batch and
// committing its offsets, restarts it on the same group and log, and checks
// that the log holds every event produced, before and after the crash, once.
func TestTrainerExactlyOnce(t *testing.T) {
	verifyNoLeaks(t)
	e := startTrainerBroker(t)
	dir := t.TempDir()
	logDir, regDir := filepath.Join(dir, "log"), filepath.Join(dir, "registry")
	mk := func(prefix string, n int) []*recservev1.Event {
		evs := make([]*recservev1.Event, n)
		for i := range evs {
			evs[i] = &recservev1.Event{
				EventId: fmt.Sprintf("%s-%04d", prefix, i), UserId: fmt.Sprintf("u%02d", i%23),
				ItemId: fmt.Sprintf("i%02d", i%31), Type: recservev1.EventType_EVENT_TYPE_CLICK,
			}
		}
		events.Normalize(evs, time.Now())
		return evs
	}
	before, after := mk("before", 300), mk("after", 200)
	produce(t, e, before)

	// The first trainer: a real process, killed after its first store.
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestTrainerCrashHelper$")
	cmd.Env = append(os.Environ(), crashHelperEnv+"=1", "BROKERS="+strings.Join(e.Addrs(), ","), "LOG_DIR="+logDir, "REGISTRY="+regDir)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("crash helper: %v, want exit status 3\n%s", err, out)
	}
	t.Logf("crashed trainer: %s", strings.TrimSpace(string(out)))

	// The crash window was real: events are stored, none committed.
	el, err := eventlog.Open(logDir)
	if err != nil {
		t.Fatal(err)
	}
	crashed := el.Len()
	el.Close()
	if crashed == 0 || crashed > 100 {
		t.Fatalf("the crashed trainer stored %d events, want 1 to 100", crashed)
	}
	if c, _ := offsets(t, e, "t-crash"); c != 0 {
		t.Fatalf("the crashed trainer committed %d offsets", c)
	}

	// More events after the crash, and a client retrying some earlier batch.
	produce(t, e, after)
	produce(t, e, before[:50])

	// The restarted trainer, in this process, on the same group and log.
	var delivered, added atomic.Int64
	job := noRetrain(crashConsumer(e.Addrs()), logDir, regDir)
	job.afterStore = func(d, a int) {
		delivered.Add(int64(d))
		added.Add(int64(a))
	}
	rctx, rcancel := context.WithCancel(t.Context())
	defer rcancel()
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = job.run(rctx, trainerLogger(t)) })
	waitFor(t, 45*time.Second, "the restarted trainer to commit everything", func() bool {
		c, end := offsets(t, e, "t-crash")
		return end == 550 && c == end
	})
	rcancel()
	wg.Wait()
	if runErr != nil {
		t.Fatalf("restarted trainer: %v", runErr)
	}

	// Every event once: the file holds one record per event.
	el, err = eventlog.Open(logDir)
	if err != nil {
		t.Fatal(err)
	}
	defer el.Close()
	count := map[string]int{}
	records := 0
	if err := el.Each(func(ev *recservev1.Event) error {
		count[ev.EventId]++
		records++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, ev := range append(before, after...) {
		if count[ev.EventId] != 1 {
			t.Errorf("event %s stored %d times", ev.EventId, count[ev.EventId])
		}
	}
	if records != 500 || el.Len() != 500 || len(count) != 500 {
		t.Fatalf("log holds %d records, %d distinct (Len %d), want 500", records, len(count), el.Len())
	}
	// The restarted trainer got the crashed batch and the retried events again
	// and stored only what was new.
	if d, a := delivered.Load(), added.Load(); d != 550 || a != int64(500-crashed) {
		t.Fatalf("restarted trainer: %d delivered, %d added; want 550, %d", d, a, 500-crashed)
	}
}

// TestTrainerRetrainPolicy checks the retrainer alone: a retrain after
// RetrainEvery new events, after the interval with fewer, none without new
// events, and the count carried over a restart.
func TestTrainerRetrainPolicy(t *testing.T) {
	verifyNoLeaks(t)
	dir := t.TempDir()
	logDir, regDir := filepath.Join(dir, "log"), filepath.Join(dir, "registry")
	opts := trainer.DefaultOptions()
	opts.Factors, opts.Iterations, opts.Workers = 4, 1, 1
	_, err := registry.Open(regDir)
	if err != nil {
		t.Fatal(err)
	}
	el, err := eventlog.Open(logDir)
	if err != nil {
		t.Fatal(err)
	}
	defer el.Close()
	published := make(chan string, 10)
	job := trainerJob{LogDir: logDir, Registry: regDir, Model: "p", Options: opts, RetrainEvery: 10, RetrainInterval: 300 * time.Millisecond,
		published: func(v string) { published <- v }}
	tel, err := telemetry.New()
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Close()
	r := &retrainer{job: job, log: trainerLogger(t), el: el, kick: make(chan struct{}, 1)}
	if r.metrics, err = newTrainerMetrics(tel.Meter(), r.untrained); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { r.loop(ctx) })
	defer func() { cancel(); wg.Wait() }()

	batch := func(prefix string, n int) []*recservev1.Event {
		evs := make([]*recservev1.Event, n)
		for i := range evs {
			evs[i] = &recservev1.Event{EventId: fmt.Sprint(prefix, i), UserId: fmt.Sprint("u", i%3), ItemId: fmt.Sprint("i", i), Type: 1}
		}
		return evs
	}
	expect := func(what string, within time.Duration) {
		t.Helper()
		select {
		case <-published:
		case <-time.After(within):
			t.Fatalf("no version published: %s", what)
		}
	}
	expectNone := func(what string, during time.Duration) {
		t.Helper()
		select {
		case v := <-published:
			t.Fatalf("version %s published: %s", v, what)
		case <-time.After(during):
		}
	}
	if err := r.store(ctx, batch("a", 12)); err != nil { // ≥ RetrainEvery: retrain at once
		t.Fatal(err)
	}
	expect("after 12 events", 2*time.Second)
	if err := r.store(ctx, batch("a", 12)); err != nil { // redelivered: nothing new
		t.Fatal(err)
	}
	expectNone("for redelivered events", 700*time.Millisecond)
	if err := r.store(ctx, batch("b", 3)); err != nil { // fewer: after the interval
		t.Fatal(err)
	}
	expect("3 events after the interval", 2*time.Second)
	expectNone("without new events", 700*time.Millisecond)
	if got := readTrainerState(logDir, "p", r.log); got != 15 {
		t.Fatalf("trainer state: %d events trained, want 15", got)
	}
	if got := readTrainerState(logDir, "other-model", r.log); got != 0 {
		t.Fatalf("trainer state of another model: %d", got)
	}
}
