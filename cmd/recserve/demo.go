package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/recserve/recserve/internal/daemon"
	"github.com/recserve/recserve/sampledata"
)

func runDemo(ctx context.Context, args []string) error {
	var cfg daemon.Config
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dir := fs.String("dir", "", "where to write the sample data and registry (default: a new temporary directory)")
	users := fs.Int("users", 2000, "sample users")
	items := fs.Int("items", 1500, "sample items")
	fs.StringVar(&cfg.EmbeddedKafkaAddr, "kafka-listen", "", "without -kafka: the embedded broker's address, host:port (empty: a free loopback port)")
	finish := serveFlags(fs, &cfg)
	opts := trainFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := finish(ctx); err != nil {
		return err
	}
	if !isSet(fs, "factors") {
		opts.Factors = 32 // the sample catalog is small
	}
	if *dir == "" {
		tmp, err := os.MkdirTemp("", "recserve-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		*dir = tmp
	}

	data := sampledata.Generate(sampledata.Options{Users: *users, Items: *items})
	eventsPath, itemsPath := filepath.Join(*dir, "events.jsonl"), filepath.Join(*dir, "items.jsonl")
	if err := writeFile(eventsPath, data.WriteEvents); err != nil {
		return err
	}
	if err := writeFile(itemsPath, data.WriteItems); err != nil {
		return err
	}
	fmt.Printf("demo: %d users, %d items, %d events in %s\n", *users, *items, len(data.Events), *dir)

	job := publishJob{Registry: filepath.Join(*dir, "registry"), Model: "demo", Options: *opts}
	version, err := trainFile(ctx, eventsPath, itemsPath, job)
	if err != nil {
		return err
	}
	fmt.Printf("demo: trained and published model %q version %s\n", job.Model, version)

	cfg.Registry = job.Registry
	if cfg.CatalogDir == "./catalog-data" { // the default: keep the demo's state in its directory
		cfg.CatalogDir = filepath.Join(*dir, "catalog")
	}
	cfg.EmbeddedKafka = true                                                       // without -kafka, an in-process broker carries the events
	cfg.Security.Plaintext = cfg.Security.Plaintext || cfg.Security.CertFile == "" // a local demo, unless given a certificate
	user, item := data.Events[0].UserID, data.Items[0].ID
	return daemon.Run(ctx, cfg, func(a daemon.Addrs) {
		fmt.Printf(`
recserve demo is serving gRPC on %[1]s and REST on %[2]s; events go to Kafka at %[5]s. Try:

  curl 'http://%[2]s/v1/users/%[3]s/recommendations?n=5'
  curl 'http://%[2]s/v1/users/%[3]s/recommendations?n=5&filter.includeCategories=books'
  curl 'http://%[2]s/v1/users/new-visitor/recommendations?n=5'
  curl 'http://%[2]s/v1/items/%[4]s/similar?n=5'
  curl -X POST 'http://%[2]s/v1/recommendations:batch' -d '{"userIds":["%[3]s","user-00002"],"n":3}'
  curl -X POST 'http://%[2]s/v1/events' -d '{"events":[{"eventId":"e1","userId":"new-visitor","itemId":"%[4]s","type":"EVENT_TYPE_PURCHASE"}]}'
  curl 'http://%[2]s/healthz'
  grpcurl -plaintext -d '{"user_id":"%[3]s","n":5}' %[1]s recserve.v1.RecommendService/Recommend
  grpcurl -plaintext %[1]s list

Press Ctrl-C to stop.
`, a.GRPC, a.HTTP, user, item, strings.Join(a.Kafka, ","))
	})
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
