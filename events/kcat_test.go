package events

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// kcat returns the path of kcat (or kafkacat), skipping the test without it.
func kcat(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"kcat", "kafkacat"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("kcat is not on PATH (apt-get install kcat); TestConsumeExternalProducer covers a foreign producer")
	return ""
}

func runKcat(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	return runKcatInput(t, nil, bin, args...)
}

// runKcatInput runs kcat with stdin (nil: none) and returns its output.
func runKcatInput(t *testing.T, stdin []byte, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kcat %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// TestKcatProduce has kcat (librdkafka) produce proto-marshaled events, each
// file one binary record, plus a record that is not an event, and checks that
// Consume decodes the events and skips the other.
func TestKcatProduce(t *testing.T) {
	bin := kcat(t)
	e := startBroker(t, 3)
	dir := t.TempDir()
	evs := makeEvents("kcat", 25, 4)
	var files []string
	for i, ev := range evs {
		v, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, fmt.Sprintf("%03d.bin", i))
		if err := os.WriteFile(f, v, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	junk := filepath.Join(dir, "junk.bin")
	if err := os.WriteFile(junk, []byte{0xff, 0xff, 0xff, 0xff}, 0o644); err != nil {
		t.Fatal(err)
	}
	files = append(files[:10:10], append([]string{junk}, files[10:]...)...)
	// A fixed key sends everything to one partition, in file order.
	args := append([]string{"-P", "-q", "-b", strings.Join(e.Addrs(), ","), "-t", testTopic, "-k", "kcat-user", "-m", "10"}, files...)
	runKcat(t, bin, args...)

	got := collect(t, consumerConfig(e, "kcat"), len(evs))
	checkExactly(t, got, evs)
}

// TestKcatConsume has kcat read what Producer wrote: every record is keyed by
// its event's user id.
func TestKcatConsume(t *testing.T) {
	bin := kcat(t)
	e := startBroker(t, 3)
	p := newProducer(t, e)
	evs := makeEvents("kc", 30, 6)
	if err := p.Produce(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	out := runKcat(t, bin, "-C", "-q", "-e", "-b", strings.Join(e.Addrs(), ","), "-t", testTopic, "-o", "beginning", "-f", "%k\n", "-m", "10")
	keys := strings.Fields(string(out))
	if len(keys) != len(evs) {
		t.Fatalf("kcat read %d records, want %d:\n%s", len(keys), len(evs), out)
	}
	want := map[string]int{}
	for _, ev := range evs {
		want[ev.UserId]++
	}
	for _, k := range keys {
		want[k]--
	}
	for k, n := range want {
		if n != 0 {
			t.Fatalf("key %s: %d records more than user %s has events", k, -n, k)
		}
	}
}

// TestKcatProduceJSON has kcat produce events as JSON lines, as README shows,
// and checks that Consume decodes them.
func TestKcatProduceJSON(t *testing.T) {
	bin := kcat(t)
	e := startBroker(t, 3)
	evs := makeEvents("kcatjson", 12, 3)
	var lines bytes.Buffer
	for _, ev := range evs {
		v, err := protojson.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		lines.Write(v)
		lines.WriteByte('\n')
	}
	// One line a record, from stdin.
	runKcatInput(t, lines.Bytes(), bin, "-P", "-q", "-b", strings.Join(e.Addrs(), ","), "-t", testTopic, "-k", "kcat-user")
	checkExactly(t, collect(t, consumerConfig(e, "kcatjson"), len(evs)), evs)
}
