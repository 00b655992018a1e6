package registry

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		bundle func() *Bundle
	}{
		{"minimal", func() *Bundle { return newBundle(1, 1, 1, false) }},
		{"with seen CSR", func() *Bundle { return newBundle(9, 12, 4, true) }},
		{"no users", func() *Bundle { return newBundle(0, 5, 3, false) }},
		{"no users, empty CSR", func() *Bundle { return newBundle(0, 5, 3, true) }},
		{"CSR nobody has seen anything", func() *Bundle {
			b := newBundle(3, 4, 2, false)
			b.SeenOffsets = []int64{0, 0, 0, 0}
			return b
		}},
		{"all items unavailable, no attributes", func() *Bundle {
			b := newBundle(2, 3, 2, true)
			for i := range b.Items {
				b.Items[i].Available, b.Items[i].Attributes, b.Items[i].Category = false, nil, ""
			}
			return b
		}},
		{"odd ids and no metrics", func() *Bundle {
			b := newBundle(3, 3, 2, false)
			b.UserIDs = []string{"a b", `"quoted"`, "日本語 🙂"}
			b.Items[0].ID, b.Items[1].ID = `{"id":1}`, "\\back\\slash"
			b.Manifest.Metrics, b.Manifest.Params = nil, nil
			b.Manifest.CreatedAt = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", 3600))
			return b
		}},
		{"several conversion chunks", func() *Bundle { return newBundle(50, 1100, 16, true) }},
		{"with a prebuilt index", func() *Bundle {
			b := newBundle(4, 6, 2, true)
			b.Index = []byte("RSHNSWGR any bytes: the registry does not decode them")
			return b
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, r backend) {
				in := tt.bundle()
				want := tt.bundle() // Publish fills in in.Manifest; keep a pristine copy of the data
				v := publish(t, r, in)
				if v != "1" {
					t.Errorf("first version = %q, want 1", v)
				}
				if in.Manifest.Version != v || in.Manifest.FormatVersion != FormatVersion || in.Manifest.Metric != MetricDot ||
					in.Manifest.CreatedAt.IsZero() || in.Manifest.Users != len(in.UserIDs) || in.Manifest.Items != len(in.Items) {
					t.Errorf("Publish did not fill in the manifest: %+v", in.Manifest)
				}
				wantFiles := 4
				if in.SeenOffsets != nil {
					wantFiles = 6
				}
				if in.Index != nil {
					wantFiles++
				}
				if len(in.Manifest.Files) != wantFiles {
					t.Errorf("manifest lists %d files, want %d", len(in.Manifest.Files), wantFiles)
				}
				latest, err := r.Latest("m")
				if err != nil || latest != v {
					t.Fatalf("Latest = %q, %v, want %q", latest, err, v)
				}
				got, err := r.Load("m", latest)
				if err != nil {
					t.Fatal(err)
				}
				want.Manifest = in.Manifest
				checkSameBundle(t, got, want)

				// Nothing but the version's files: no temporary directory, no claim.
				keys := r.keys("m/")
				if len(keys) != wantFiles+1 || slices.ContainsFunc(keys, func(k string) bool { return !strings.HasPrefix(k, "m/1/") }) {
					t.Errorf("model m holds %q, want the files of version 1 only", keys)
				}
				if fs, ok := r.Store.(*FS); ok {
					st, err := os.Stat(filepath.Join(fs.Root(), "m", v))
					if err != nil || st.Mode().Perm() != 0o755 {
						t.Errorf("version directory mode = %v, %v, want 0755", st.Mode(), err)
					}
				}
			})
		})
	}
}

func TestPublishNumbersAfterTornVersions(t *testing.T) {
	forEachBackend(t, testPublishNumbersAfterTornVersions)
}

func testPublishNumbersAfterTornVersions(t *testing.T, r backend) {
	publish(t, r, newBundle(2, 2, 2, false))
	mkVersion(t, r, "m", "7", false) // an external writer is still writing 7
	if v := publish(t, r, newBundle(2, 2, 2, false)); v != "8" {
		t.Errorf("version = %q, want 8", v)
	}
	if vs, err := r.Versions("m"); err != nil || !slices.Equal(vs, []string{"1", "8"}) {
		t.Errorf("Versions = %q, %v, want [1 8]", vs, err)
	}
}

func TestPublishInvalid(t *testing.T) {
	forEachBackend(t, testPublishInvalid)
}

func testPublishInvalid(t *testing.T, r backend) {
	b := newBundle(3, 3, 2, true)
	b.UserIDs[2] = b.UserIDs[0]
	before := b.Manifest
	if _, err := r.Publish(b); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "UserIDs") {
		t.Errorf("Publish with duplicate user ids = %v, want ErrInvalid naming UserIDs", err)
	}
	if b.Manifest.Users != before.Users || b.Manifest.Files != nil {
		t.Errorf("failed Publish changed the bundle's manifest: %+v", b.Manifest)
	}
	if _, err := r.Publish(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Publish(nil) = %v, want ErrInvalid", err)
	}
	b = newBundle(1, 1, 1, false)
	b.Manifest.FormatVersion = 2
	if _, err := r.Publish(b); !errors.Is(err, ErrInvalid) {
		t.Errorf("Publish of format version 2 = %v, want ErrInvalid", err)
	}
	if models, err := r.Models(); err != nil || len(models) != 0 {
		t.Errorf("Models after failed publishes = %q, %v, want none", models, err)
	}
	if keys := r.keys(""); len(keys) != 0 {
		t.Errorf("failed publishes left %q", keys)
	}
}

func TestPublishConcurrent(t *testing.T) {
	forEachBackend(t, testPublishConcurrent)
}

func testPublishConcurrent(t *testing.T, r backend) {
	const writers, each = 6, 4
	versions := make([][]string, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				b := newBundle(3, 4, 2, true)
				b.Manifest.Params["writer"] = fmt.Sprint(w, "/", i)
				v, err := r.Publish(b)
				if err != nil {
					t.Error(err)
					return
				}
				versions[w] = append(versions[w], v)
			}
		})
	}
	wg.Wait()
	all := slices.Concat(versions...)
	slices.Sort(all)
	if n := len(slices.Compact(slices.Clone(all))); n != len(all) || n != writers*each {
		t.Fatalf("got %d distinct versions of %d publishes: %q", n, len(all), all)
	}
	stored, err := r.Versions("m")
	if err != nil || len(stored) != writers*each || stored[len(stored)-1] != fmt.Sprint(writers*each) {
		t.Fatalf("Versions = %q, %v, want 1..%d", stored, err, writers*each)
	}
	for w, vs := range versions {
		for i, v := range vs {
			b, err := r.Load("m", v)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := b.Manifest.Params["writer"], fmt.Sprint(w, "/", i); got != want {
				t.Errorf("version %s was written by %s, want %s", v, got, want)
			}
		}
	}
}
