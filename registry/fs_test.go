package registry

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestVersions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, r backend) {
		for _, v := range []string{"10", "9", "2", "1", "100", "11"} {
			mkVersion(t, r, "m", v, true)
		}
		mkVersion(t, r, "m", "12", false)                  // torn: data but no manifest
		mkVersion(t, r, "m", ".tmp-123", true)             // a publisher's temporary directory
		mkVersion(t, r, "m", "007", true)                  // not a version name
		mkVersion(t, r, "m", "abc", true)                  // not a version name
		mkVersion(t, r, "m", "0", true)                    // versions start at 1
		mkVersion(t, r, "m", "99999999999999999999", true) // overflows int64
		r.put("m/200", nil)                                // a file, not a version
		r.put("m/400/sub/"+ManifestFile, []byte("{}"))     // a manifest one level too deep

		got, err := r.Versions("m")
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"1", "2", "9", "10", "11", "100"}; !slices.Equal(got, want) {
			t.Errorf("Versions = %q, want %q", got, want)
		}
		if latest, err := r.Latest("m"); err != nil || latest != "100" {
			t.Errorf("Latest = %q, %v, want 100", latest, err)
		}
		if _, err := r.Load("m", "12"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Load of a torn version = %v, want ErrNotFound", err)
		}
	})
}

// TestVersionsManifestDirectory: on a filesystem, a manifest.json that is a
// directory does not make a version complete.
func TestVersionsManifestDirectory(t *testing.T) {
	r := openFS(t)
	if err := os.MkdirAll(filepath.Join(r.Root(), "m", "300", ManifestFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Versions("m"); err != nil || len(got) != 0 {
		t.Errorf("Versions = %q, %v, want none", got, err)
	}
}

func TestLatestNotFound(t *testing.T) {
	forEachBackend(t, func(t *testing.T, r backend) {
		if _, err := r.Latest("nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Latest of a missing model = %v, want ErrNotFound", err)
		}
		if _, err := r.Versions("nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Versions of a missing model = %v, want ErrNotFound", err)
		}
		mkVersion(t, r, "torn", "1", false)
		if _, err := r.Latest("torn"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Latest with only a torn version = %v, want ErrNotFound", err)
		}
		if vs, err := r.Versions("torn"); err != nil || len(vs) != 0 {
			t.Errorf("Versions with only a torn version = %q, %v, want none", vs, err)
		}
		if _, err := r.Load("nope", "1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Load of a missing model = %v, want ErrNotFound", err)
		}
	})
}

func TestModels(t *testing.T) {
	forEachBackend(t, func(t *testing.T, r backend) {
		mkVersion(t, r, "b", "1", true)
		mkVersion(t, r, "a.v2", "3", true)
		mkVersion(t, r, "torn", "1", false)
		mkVersion(t, r, ".hidden", "1", true)
		r.put("file", nil)
		got, err := r.Models()
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string][]string{"a.v2": {"3"}, "b": {"1"}}; !maps.EqualFunc(got, want, slices.Equal) {
			t.Errorf("Models = %q, want %q", got, want)
		}
	})
}

// TestInvalidNames: model and version names that are not names are refused
// before anything is read or written.
func TestInvalidNames(t *testing.T) {
	forEachBackend(t, func(t *testing.T, r backend) {
		publish(t, r, newBundle(2, 2, 2, false))
		models := []string{"", ".", "..", "../outside", "m/../m", "m/", "/m", `m\x`, ".tmp-1", "a b", "m\x00", string(make([]byte, 65))}
		for _, model := range models {
			if _, err := r.Load(model, "1"); !errors.Is(err, ErrInvalid) {
				t.Errorf("Load(%q, 1) = %v, want ErrInvalid", model, err)
			}
			if _, err := r.Versions(model); !errors.Is(err, ErrInvalid) {
				t.Errorf("Versions(%q) = %v, want ErrInvalid", model, err)
			}
			if _, err := r.Latest(model); !errors.Is(err, ErrInvalid) {
				t.Errorf("Latest(%q) = %v, want ErrInvalid", model, err)
			}
			if _, err := r.ReadState(model); !errors.Is(err, ErrInvalid) {
				t.Errorf("ReadState(%q) = %v, want ErrInvalid", model, err)
			}
			if err := r.WriteState(model, []byte("{}")); !errors.Is(err, ErrInvalid) {
				t.Errorf("WriteState(%q) = %v, want ErrInvalid", model, err)
			}
			b := newBundle(1, 1, 1, false)
			b.Manifest.Model = model
			if _, err := r.Publish(b); !errors.Is(err, ErrInvalid) {
				t.Errorf("Publish to model %q = %v, want ErrInvalid", model, err)
			}
		}
		for _, version := range []string{"", ".", "..", "../1", "1/..", "../../outside/1", "01", "0", "-1", "+1", "1.0", " 1", "latest", "99999999999999999999"} {
			if _, err := r.Load("m", version); !errors.Is(err, ErrInvalid) {
				t.Errorf("Load(m, %q) = %v, want ErrInvalid", version, err)
			}
		}
		if keys := r.keys(""); len(keys) != 5 || !slices.ContainsFunc(keys, func(k string) bool { return k == "m/1/"+ManifestFile }) {
			t.Errorf("the registry holds %q, want version 1 of m only", keys)
		}
	})
}

// TestPathTraversal: a filesystem registry never reaches outside its root.
func TestPathTraversal(t *testing.T) {
	parent := t.TempDir()
	r, err := Open(filepath.Join(parent, "root"))
	if err != nil {
		t.Fatal(err)
	}
	// A complete version outside the root that an escape would reach.
	outside, err := Open(parent)
	if err != nil {
		t.Fatal(err)
	}
	b := newBundle(2, 2, 2, false)
	b.Manifest.Model = "outside"
	publish(t, outside, b)
	for _, model := range []string{"../outside", "..", "m/../../outside"} {
		if _, err := r.Load(model, "1"); !errors.Is(err, ErrInvalid) {
			t.Errorf("Load(%q, 1) = %v, want ErrInvalid", model, err)
		}
	}
	if _, err := r.Load("m", "../../outside/1"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Load(m, ../../outside/1) = %v, want ErrInvalid", err)
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("the registry's parent holds %d entries, want root and outside only", len(entries))
	}
}
