package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/recserve/recserve/catalog"
	"github.com/recserve/recserve/eventlog"
	"github.com/recserve/recserve/events"
	"github.com/recserve/recserve/internal/fsutil"
	"github.com/recserve/recserve/internal/telemetry"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/registry"
	"github.com/recserve/recserve/trainer"
)

// embeddedPartitions is the partition count of the topic on an embedded broker.
const embeddedPartitions = 4

// trainerJob is the long-running trainer: it consumes the event topic into a
// durable, deduplicated event log and retrains and publishes a version from the
// whole log every RetrainEvery new events, or every RetrainInterval when there
// are new events. It also consumes the catalog topic (CatalogTopic, its own
// group: the event group + "-catalog"): item changes go to a catalog file in
// LogDir and into the catalog of the next version, erasures remove the users'
// events from the log; either counts as a reason to retrain at the next
// RetrainInterval, like new events.
type trainerJob struct {
	Consumer        events.ConsumerConfig
	CatalogTopic    string // empty: no catalog consumer
	LogDir          string
	Registry        string
	Model           string
	Items           string // optional catalog in items.jsonl format
	Options         trainer.Options
	RetrainEvery    int
	RetrainInterval time.Duration
	MetricsAddr     string // where to serve /metrics; empty: nowhere

	// Test hooks: afterStore runs after a batch of delivered events was stored
	// (added of them new), before the batch is committed; published after a
	// version was published.
	// catalogApplied runs after a batch of catalog records was applied (items
	// changed of them, events removed by its erasures), before its commit.
	afterStore     func(delivered, added int)
	published      func(version string)
	catalogApplied func(records, changed, removed int)
}

func runTrainer(ctx context.Context, args []string) error {
	var job trainerJob
	fs := flag.NewFlagSet("trainer", flag.ContinueOnError)
	brokers := fs.String("brokers", "", "Kafka brokers, comma-separated (empty: start an embedded broker and print its address)")
	listen := fs.String("kafka-listen", "", "without -brokers: the embedded broker's address, host:port (empty: a free loopback port)")
	fs.StringVar(&job.Consumer.Topic, "topic", "interactions", "event topic")
	fs.StringVar(&job.Consumer.Group, "group", "recserve-trainer", "consumer group (the catalog topic's: this + \"-catalog\")")
	fs.StringVar(&job.CatalogTopic, "catalog-topic", catalog.DefaultTopicName, "catalog topic: item changes and user erasures (empty: none)")
	fs.StringVar(&job.LogDir, "log-dir", "./trainer-data", "directory of the event log: every event consumed, the training set")
	fs.StringVar(&job.Registry, "registry", "./registry-data", registryUsage)
	fs.StringVar(&job.Model, "model", "default", "model name")
	fs.StringVar(&job.Items, "items", "", "optional item catalog (items.jsonl: id, category, available, attributes)")
	fs.IntVar(&job.RetrainEvery, "retrain-every", 10000, "retrain after this many new events")
	fs.DurationVar(&job.RetrainInterval, "retrain-interval", 10*time.Minute, "retrain this long after the last training when there are new events")
	fs.StringVar(&job.MetricsAddr, "metrics-addr", "", "address to serve Prometheus /metrics on, e.g. :9100 (empty: no metrics)")
	opts := trainFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	job.Options = *opts
	if err := job.validate(); err != nil {
		return err
	}
	if *brokers != "" {
		job.Consumer.Brokers = strings.Split(*brokers, ",")
	} else {
		emb, err := trainerEmbedded(*listen, job.Consumer.Topic, job.CatalogTopic)
		if err != nil {
			return err
		}
		defer emb.Close()
		job.Consumer.Brokers = emb.Addrs()
		topics := fmt.Sprintf("%q", job.Consumer.Topic)
		if job.CatalogTopic != "" {
			topics += fmt.Sprintf(" and %q", job.CatalogTopic)
		}
		fmt.Printf("trainer: embedded Kafka broker on %s, topic %s (%d partitions)\n",
			strings.Join(emb.Addrs(), ","), topics, embeddedPartitions)
	}
	return job.run(ctx, slog.Default())
}

// trainerEmbedded starts the embedded broker of a trainer without -brokers
// on addr (empty: a free port), with the event topic and, unless it is
// empty, the catalog topic.
func trainerEmbedded(addr, topic, catalogTopic string) (*events.Embedded, error) {
	topics := []string{topic}
	if catalogTopic != "" {
		topics = append(topics, catalogTopic)
	}
	return events.StartEmbeddedOn(addr, embeddedPartitions, topics...)
}

func (j trainerJob) validate() error {
	switch {
	case j.LogDir == "":
		return errors.New("-log-dir is required")
	case j.RetrainEvery < 1:
		return fmt.Errorf("-retrain-every %d must be at least 1", j.RetrainEvery)
	case j.RetrainInterval <= 0:
		return fmt.Errorf("-retrain-interval %v must be positive", j.RetrainInterval)
	case j.CatalogTopic != "" && j.CatalogTopic == j.Consumer.Topic:
		return fmt.Errorf("-catalog-topic %q must differ from -topic", j.CatalogTopic)
	}
	return j.Options.Validate()
}

// run consumes until ctx is done (then it returns nil) or consuming fails.
//
// Consuming and retraining run side by side: the consumer stores each batch
// (fsynced) before its offsets are committed, and the retrainer, one training
// at a time, reads the log's snapshot, trains and publishes. A training never
// holds up consumption, and events stored during it count towards the next.
// The catalog topic's consumer runs beside the event consumer; either one's
// error stops both.
func (j trainerJob) run(ctx context.Context, log *slog.Logger) error {
	if err := j.validate(); err != nil {
		return err
	}
	var base []registry.Item
	if j.Items != "" {
		var err error
		if base, err = readCatalog(j.Items); err != nil {
			return err
		}
	}
	reg, err := registry.OpenURL(ctx, j.Registry) // fail at start, not at the first retrain
	if err != nil {
		return err
	}
	reg.Close()
	el, err := eventlog.Open(j.LogDir)
	if err != nil {
		return err
	}
	defer el.Close()
	if torn := el.TornBytes(); torn > 0 {
		log.Warn("event log: truncated the torn end of an append cut short", "bytes", torn)
	}

	// The catalog file, after the event log: the log's lock covers the directory.
	catFile, err := catalog.OpenFile(j.LogDir)
	if err != nil {
		return err
	}
	defer catFile.Close()
	cat := catalog.NewState()
	saved, err := catFile.Load(ctx)
	if err != nil {
		return err
	}
	cat.Restore(saved)

	r := &retrainer{job: j, log: log, el: el, base: base, cat: cat, catFile: catFile, kick: make(chan struct{}, 1)}
	r.state = loadTrainerState(j.LogDir, j.Model, log)
	r.trained.Store(int64(r.state.Events))
	if r.state.Pending { // changes arrived after the last published training
		r.changes.Store(1)
	}
	tel, err := telemetry.New()
	if err != nil {
		return err
	}
	defer tel.Close()
	if r.metrics, err = newTrainerMetrics(tel.Meter(), r.untrained); err != nil {
		return err
	}
	log.Info("trainer started", "events", el.Len(), "untrained", r.untrained(), "changed_items", cat.Len(),
		"pending_changes", r.state.Pending, "brokers", j.Consumer.Brokers, "topic", j.Consumer.Topic,
		"group", j.Consumer.Group, "catalog_topic", j.CatalogTopic)
	if r.untrained() >= int64(j.RetrainEvery) {
		r.kick <- struct{}{}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if j.MetricsAddr != "" {
		var more []string
		if j.CatalogTopic != "" {
			more = append(more, j.catalogConsumer().Group)
		}
		if err := serveTrainerMetrics(ctx, log, j.MetricsAddr, tel, j.Consumer, more...); err != nil {
			return err
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.loop(ctx)
	}()
	consumers := 1
	errc := make(chan error, 2)
	go func() { errc <- events.Consume(ctx, j.Consumer, log, r.store) }()
	if j.CatalogTopic != "" {
		consumers++
		go func() { errc <- events.ConsumeCatalog(ctx, j.catalogConsumer(), log, r.applyCatalog) }()
	}
	err = <-errc // nil only once ctx is done
	cancel()
	for range consumers - 1 {
		if e := <-errc; err == nil {
			err = e
		}
	}
	<-done
	return err
}

// retrainer stores consumed events and catalog changes and retrains on them.
type retrainer struct {
	job     trainerJob
	log     *slog.Logger
	el      *eventlog.Log
	base    []registry.Item // the -items catalog
	cat     *catalog.State  // run-time changes to it (nil: none)
	catFile *catalog.File   // where they are kept
	metrics *trainerMetrics

	trained atomic.Int64  // events stored before the last published training began
	kick    chan struct{} // untrained events reached RetrainEvery

	// changes counts catalog changes and erasures applied; trainedChanges is
	// what it was when the last published training began.
	changes, trainedChanges atomic.Int64
	stateMu                 sync.Mutex
	state                   trainerState // as last written
}

// untrained is how many stored events the last published version was not
// trained on. It is derived from the log, so an append racing a training
// cannot leave it counting events the training did include.
func (r *retrainer) untrained() int64 { return max(0, int64(r.el.Len())-r.trained.Load()) }

// store is the consumer's handler: it appends a batch to the log, durably,
// and returns nil only then, so offsets are committed only for stored events.
// An event delivered again (the previous consumer stored it and died before
// committing) is not stored twice. A storage error stops the consumer without
// committing: the batch is delivered again after a restart.
func (r *retrainer) store(_ context.Context, evs []*recservev1.Event) error {
	keep := make([]*recservev1.Event, 0, len(evs))
	for _, e := range evs {
		if e.GetEventId() != "" { // no id, no deduplication: the producer skipped Validate
			keep = append(keep, e)
		}
	}
	if n := len(evs) - len(keep); n > 0 {
		r.log.Warn("skipping events without an event id", "events", n)
	}
	added, err := r.el.Append(keep)
	if err != nil {
		return err
	}
	r.metrics.stored.Add(context.Background(), int64(added))
	if r.job.afterStore != nil {
		r.job.afterStore(len(evs), added)
	}
	if added > 0 && r.untrained() >= int64(r.job.RetrainEvery) {
		select {
		case r.kick <- struct{}{}:
		default: // a kick is already waiting
		}
	}
	return nil
}

// loop retrains when kicked (enough new events) or when the interval since the
// last training passed with new events or catalog changes (erasures
// included), one training at a time, until ctx is done. After a failed
// training it waits for the interval (at most a minute) before trying again.
func (r *retrainer) loop(ctx context.Context) {
	every, interval := int64(r.job.RetrainEvery), r.job.RetrainInterval
	timer := time.NewTimer(interval)
	defer timer.Stop()
	var backoffUntil time.Time
	for {
		kicked := false
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
			kicked = true
		case <-timer.C:
			timer.Reset(interval)
		}
		n := r.untrained()
		// A kick is for events; the interval also retrains for catalog
		// changes and erasures alone.
		if (n == 0 && !r.pending()) || (kicked && (n < every || time.Now().Before(backoffUntil))) {
			continue
		}
		if err := r.retrain(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			r.log.Error("retraining failed; will retry", "err", err, "untrained", r.untrained())
			backoffUntil = time.Now().Add(min(interval, time.Minute))
		}
		timer.Reset(interval)
	}
}

// retrain trains on everything stored and publishes a version, with the base
// catalog changed by the catalog changes so far; the events of deleted items
// are left out, so those items get no vector. On failure the events and
// changes stay untrained.
func (r *retrainer) retrain(ctx context.Context) error {
	gen := r.changes.Load() // changes applied by now are in the catalog below
	stored := r.el.Len()    // the dataset below holds at least these
	items, deleted := r.trainingCatalog()
	var keep func(*recservev1.Event) bool
	if len(deleted) > 0 {
		keep = func(e *recservev1.Event) bool { return !deleted[e.GetItemId()] }
	}
	d, err := r.el.DatasetOf(keep)
	if err == nil && d.NumInteractions() == 0 {
		r.log.Info("nothing to train on yet: no interactions among the events", "events", stored)
		if r.pending() {
			r.log.Warn("catalog changes or erasures are not in a version: no interactions left to train on")
		}
		r.trained.Store(int64(stored)) // no retraining until new events or changes arrive
		r.trainedChanges.Store(gen)
		return nil
	}
	var version string
	if err == nil {
		start := time.Now()
		metrics := map[string]float64{"events": float64(stored), "interactions": float64(d.NumInteractions())}
		pj := publishJob{Registry: r.job.Registry, Model: r.job.Model, Catalog: items, Options: r.job.Options, Metrics: metrics}
		version, err = pj.run(ctx, d)
		r.metrics.trained(r.job.Model, time.Since(start), version, metrics, err)
	}
	if err != nil {
		return err
	}
	r.trained.Store(int64(stored))
	r.log.Info("published a version", "model", r.job.Model, "version", version, "events", stored,
		"users", d.NumUsers(), "items", d.NumItems(), "interactions", d.NumInteractions(), "deleted_items", len(deleted))
	r.stateMu.Lock()
	r.trainedChanges.Store(gen)
	st := trainerState{Model: r.job.Model, Version: version, Events: stored, Pending: r.changes.Load() != gen}
	if err := writeTrainerState(r.job.LogDir, st); err != nil {
		r.log.Warn("could not record the training; the next start retrains", "err", err)
	} else {
		r.state = st
	}
	r.stateMu.Unlock()
	if r.job.published != nil {
		r.job.published(version)
	}
	return nil
}

// trainerState records the last published training, so that a restarted
// trainer knows how many stored events are not in a model yet.
type trainerState struct {
	Model   string `json:"model"`
	Version string `json:"version"`
	Events  int    `json:"events"`
	// Pending: catalog changes or erasures arrived that no published version
	// reflects yet (written before they are applied).
	Pending bool `json:"pending_changes,omitempty"`
}

const trainerStateFile = "trainer-state.json"

// readTrainerState returns the number of events the last published version of
// model was trained on, 0 when unknown.
func readTrainerState(dir, model string, log *slog.Logger) int {
	return loadTrainerState(dir, model, log).Events
}

// loadTrainerState returns the trainer state of model; a missing or unreadable
// state, or another model's, is the zero state of model.
func loadTrainerState(dir, model string, log *slog.Logger) trainerState {
	zero := trainerState{Model: model}
	b, err := os.ReadFile(filepath.Join(dir, trainerStateFile))
	if errors.Is(err, os.ErrNotExist) {
		return zero
	}
	var st trainerState
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil {
		log.Warn("ignoring the trainer state; every stored event counts as new", "err", err)
		return zero
	}
	if st.Model != model {
		return zero
	}
	return st
}

// writeTrainerState replaces the state file atomically.
func writeTrainerState(dir string, st trainerState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, trainerStateFile), b)
}
