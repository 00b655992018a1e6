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
	"sync/atomic"
	"time"

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
// are new events.
type trainerJob struct {
	Consumer        events.ConsumerConfig
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
	afterStore func(delivered, added int)
	published  func(version string)
}

func runTrainer(ctx context.Context, args []string) error {
	var job trainerJob
	fs := flag.NewFlagSet("trainer", flag.ContinueOnError)
	brokers := fs.String("brokers", "", "Kafka brokers, comma-separated (empty: start an embedded broker and print its address)")
	fs.StringVar(&job.Consumer.Topic, "topic", "interactions", "event topic")
	fs.StringVar(&job.Consumer.Group, "group", "recserve-trainer", "consumer group")
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
		emb, err := events.StartEmbedded(job.Consumer.Topic, embeddedPartitions)
		if err != nil {
			return err
		}
		defer emb.Close()
		job.Consumer.Brokers = emb.Addrs()
		fmt.Printf("trainer: embedded Kafka broker on %s, topic %q (%d partitions)\n",
			strings.Join(emb.Addrs(), ","), job.Consumer.Topic, embeddedPartitions)
	}
	return job.run(ctx, slog.Default())
}

func (j trainerJob) validate() error {
	switch {
	case j.LogDir == "":
		return errors.New("-log-dir is required")
	case j.RetrainEvery < 1:
		return fmt.Errorf("-retrain-every %d must be at least 1", j.RetrainEvery)
	case j.RetrainInterval <= 0:
		return fmt.Errorf("-retrain-interval %v must be positive", j.RetrainInterval)
	}
	return j.Options.Validate()
}

// run consumes until ctx is done (then it returns nil) or consuming fails.
//
// Consuming and retraining run side by side: the consumer stores each batch
// (fsynced) before its offsets are committed, and the retrainer, one training
// at a time, reads the log's snapshot, trains and publishes. A training never
// holds up consumption, and events stored during it count towards the next.
func (j trainerJob) run(ctx context.Context, log *slog.Logger) error {
	if err := j.validate(); err != nil {
		return err
	}
	var catalog []registry.Item
	if j.Items != "" {
		var err error
		if catalog, err = readCatalog(j.Items); err != nil {
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

	r := &retrainer{job: j, log: log, el: el, catalog: catalog, kick: make(chan struct{}, 1)}
	trained := readTrainerState(j.LogDir, j.Model, log)
	r.trained.Store(int64(trained))
	tel, err := telemetry.New()
	if err != nil {
		return err
	}
	defer tel.Close()
	if r.metrics, err = newTrainerMetrics(tel.Meter(), r.untrained); err != nil {
		return err
	}
	log.Info("trainer started", "events", el.Len(), "untrained", r.untrained(),
		"brokers", j.Consumer.Brokers, "topic", j.Consumer.Topic, "group", j.Consumer.Group)
	if r.untrained() >= int64(j.RetrainEvery) {
		r.kick <- struct{}{}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if j.MetricsAddr != "" {
		if err := serveTrainerMetrics(ctx, log, j.MetricsAddr, tel, j.Consumer); err != nil {
			return err
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.loop(ctx)
	}()
	err = events.Consume(ctx, j.Consumer, log, r.store)
	cancel()
	<-done
	return err
}

// retrainer stores consumed events and retrains on them.
type retrainer struct {
	job     trainerJob
	log     *slog.Logger
	el      *eventlog.Log
	catalog []registry.Item
	metrics *trainerMetrics

	trained atomic.Int64  // events stored before the last published training began
	kick    chan struct{} // untrained events reached RetrainEvery
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
// last training passed with new events, one training at a time, until ctx is
// done. After a failed training it waits for the interval (at most a minute)
// before trying again.
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
		if n == 0 || (kicked && (n < every || time.Now().Before(backoffUntil))) {
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

// retrain trains on everything stored and publishes a version. On failure the
// events stay untrained.
func (r *retrainer) retrain(ctx context.Context) error {
	stored := r.el.Len() // the dataset below holds at least these
	d, err := r.el.Dataset()
	if err == nil && d.NumInteractions() == 0 {
		r.log.Info("nothing to train on yet: no interactions among the events", "events", stored)
		r.trained.Store(int64(stored)) // no retraining until new events arrive
		return nil
	}
	var version string
	if err == nil {
		start := time.Now()
		metrics := map[string]float64{"events": float64(stored), "interactions": float64(d.NumInteractions())}
		pj := publishJob{Registry: r.job.Registry, Model: r.job.Model, Catalog: r.catalog, Options: r.job.Options, Metrics: metrics}
		version, err = pj.run(ctx, d)
		r.metrics.trained(r.job.Model, time.Since(start), version, metrics, err)
	}
	if err != nil {
		return err
	}
	r.trained.Store(int64(stored))
	r.log.Info("published a version", "model", r.job.Model, "version", version, "events", stored,
		"users", d.NumUsers(), "items", d.NumItems(), "interactions", d.NumInteractions())
	if err := writeTrainerState(r.job.LogDir, trainerState{Model: r.job.Model, Version: version, Events: stored}); err != nil {
		r.log.Warn("could not record the training; the next start retrains", "err", err)
	}
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
}

const trainerStateFile = "trainer-state.json"

// readTrainerState returns the number of events the last published version of
// model was trained on, 0 when unknown.
func readTrainerState(dir, model string, log *slog.Logger) int {
	b, err := os.ReadFile(filepath.Join(dir, trainerStateFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	var st trainerState
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil {
		log.Warn("ignoring the trainer state; every stored event counts as new", "err", err)
		return 0
	}
	if st.Model != model {
		return 0
	}
	return st.Events
}

// writeTrainerState replaces the state file atomically.
func writeTrainerState(dir string, st trainerState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, trainerStateFile), b)
}
