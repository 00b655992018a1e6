package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/recserve/recserve/events"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// catalogBatch is how many availability changes one SetAvailability carries
// in the catalog phase of "bench serve", and catalogOut how many items at
// most its changes keep out of stock.
const (
	catalogBatch = 1000
	catalogOut   = 10000
)

// catalogResult is what the catalog phase measured.
type catalogResult struct {
	Sent, Failed int             // changes acknowledged and batches that failed
	FirstError   string          // of the first batch that failed
	Effect       []time.Duration // probes: acknowledgement to the first response without the item, sorted
	ProbeErrors  int
	// CPU time of the driver and of the server meanwhile (filled in by bench serve).
	DriverCPU, ServerCPU time.Duration `json:"-"`
}

// catalogDriverCommand runs catalogLoad in a process of its own ("recserve
// bench catalog-driver"), so that its CPU and collections do not delay the
// load generator's requests, which the results would blame on the server.
const catalogDriverCommand = "catalog-driver"

func runCatalogDriver(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench "+catalogDriverCommand, flag.ContinueOnError)
	addr := fs.String("addr", "", "server address")
	items := fs.Int("items", 0, "items of the model")
	users := fs.Int("users", 0, "users of the model")
	rate := fs.Float64("rate", 0, "changes per second")
	cycle := fs.Duration("cycle", 0, "alternate changes for this long with none for this long (0: changes throughout)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	res, err := catalogLoad(ctx, *addr, *items, *users, *rate, *cycle)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// brokerCommand runs an embedded Kafka broker with the event and catalog
// topics in a process of its own ("recserve bench broker"), as a real one
// runs apart from the load generator; it prints its address and runs until
// interrupted.
const brokerCommand = "broker"

func runBroker(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	emb, err := events.StartEmbedded("interactions", 4, events.DefaultCatalogTopic)
	if err != nil {
		return err
	}
	defer emb.Close()
	fmt.Println(strings.Join(emb.Addrs(), ","))
	<-ctx.Done()
	return nil
}

// startBroker starts "recserve bench broker" and returns its address and a
// stop function.
func startBroker(exe string) (addr string, stop func(), err error) {
	cmd := exec.Command(exe, "bench", brokerCommand)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("bench broker: %w", err)
	}
	return strings.TrimSpace(line), stop, nil
}

// startCatalogDriver starts the driver; stop interrupts it and returns what
// it measured.
func startCatalogDriver(exe, addr string, items, users int, rate float64, cycle time.Duration) (stop func() (*catalogResult, error), err error) {
	cmd := exec.Command(exe, "bench", catalogDriverCommand, "-addr", addr, "-items", strconv.Itoa(items), "-users", strconv.Itoa(users),
		"-rate", strconv.FormatFloat(rate, 'f', -1, 64), "-cycle", cycle.String())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() (*catalogResult, error) {
		cpu := cpuTime(cmd.Process.Pid)
		_ = cmd.Process.Signal(os.Interrupt)
		if err := cmd.Wait(); err != nil {
			return nil, fmt.Errorf("catalog driver: %w", err)
		}
		res := &catalogResult{DriverCPU: cpu}
		if err := json.Unmarshal(out.Bytes(), res); err != nil {
			return nil, fmt.Errorf("catalog driver: %w in %q", err, out.String())
		}
		return res, nil
	}, nil
}

// catalogLoad applies availability changes to random items at rate changes
// per second in batches of catalogBatch, and meanwhile probes how long a
// change takes to show: it sets a user's top item unavailable and asks for the
// user's recommendations until the item is gone, timing from the
// acknowledgement, then makes the item available again. It runs until ctx is
// done.
//
// With cycle > 0 it alternates: changes and probes for a cycle, then nothing
// for a cycle, from its start on, so that latencies with and without changes
// can be compared over the same stretch of time (a machine's pace drifts).
func catalogLoad(ctx context.Context, addr string, items, users int, rate float64, cycle time.Duration) (*catalogResult, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cat, rec := recservev1.NewCatalogServiceClient(conn), recservev1.NewRecommendServiceClient(conn)
	res := &catalogResult{}
	start := time.Now()
	// pause waits out an off cycle; it reports whether ctx is done.
	pause := func() bool {
		if cycle <= 0 {
			return ctx.Err() != nil
		}
		if k := time.Since(start) / cycle; k%2 == 1 {
			select {
			case <-ctx.Done():
			case <-time.After(start.Add((k + 1) * cycle).Sub(time.Now())):
			}
		}
		return ctx.Err() != nil
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Go(func() { // the stream of changes
		rng := rand.New(rand.NewPCG(1, 2))
		every := time.Duration(float64(time.Second) * catalogBatch / rate)
		t := time.NewTicker(every)
		defer t.Stop()
		// Stock churn at a steady level: half of each batch takes random items
		// out of stock, the other half puts back the ones taken out longest
		// ago, so at most catalogOut items are out at a time (1% of 1M).
		var out []int
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if pause() {
				return
			}
			req := &recservev1.SetAvailabilityRequest{Items: make([]*recservev1.ItemAvailability, catalogBatch)}
			for i := range req.Items {
				if i%2 == 1 && len(out) >= catalogOut {
					req.Items[i] = &recservev1.ItemAvailability{ItemId: benchItemID(out[0]), Available: true}
					out = out[1:]
					continue
				}
				item := rng.IntN(items)
				out = append(out, item)
				req.Items[i] = &recservev1.ItemAvailability{ItemId: benchItemID(item)}
			}
			_, err := cat.SetAvailability(ctx, req)
			mu.Lock()
			if err != nil && ctx.Err() == nil {
				res.Failed++
				if res.FirstError == "" {
					res.FirstError = err.Error()
				}
			} else if err == nil {
				res.Sent += catalogBatch
			}
			mu.Unlock()
		}
	})
	wg.Go(func() { // the probes
		rng := rand.New(rand.NewPCG(3, 4))
		for !pause() {
			d, err := probeCatalog(ctx, cat, rec, benchUserID(rng.IntN(users)))
			mu.Lock()
			if err != nil {
				res.ProbeErrors++
			} else {
				res.Effect = append(res.Effect, d)
			}
			mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	})
	wg.Wait()
	if ctx.Err() != nil && res.ProbeErrors > 0 {
		res.ProbeErrors-- // the probe that ctx cut short
	}
	slices.Sort(res.Effect)
	return res, nil
}

// probeCatalog times one change to effect: user's top item set unavailable,
// from the acknowledgement to the first response without it.
func probeCatalog(ctx context.Context, cat recservev1.CatalogServiceClient, rec recservev1.RecommendServiceClient, user string) (time.Duration, error) {
	req := &recservev1.RecommendRequest{Model: benchModel, UserId: user, N: proto.Int32(10)}
	resp, err := rec.Recommend(ctx, req)
	if err != nil || len(resp.GetItems()) == 0 {
		return 0, err
	}
	item := resp.GetItems()[0].GetItemId()
	set := func(available bool) error {
		_, err := cat.SetAvailability(ctx, &recservev1.SetAvailabilityRequest{Items: []*recservev1.ItemAvailability{{ItemId: item, Available: available}}})
		return err
	}
	if err := set(false); err != nil {
		return 0, err
	}
	acked := time.Now()
	defer set(true) //nolint:errcheck // the stream of changes flips items anyway
	for {
		resp, err := rec.Recommend(ctx, req)
		if err != nil {
			return 0, err
		}
		if !slices.ContainsFunc(resp.GetItems(), func(it *recservev1.ScoredItem) bool { return it.GetItemId() == item }) {
			return time.Since(acked), nil
		}
	}
}
