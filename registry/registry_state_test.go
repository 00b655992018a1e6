package registry

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestState(t *testing.T) {
	r, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.ReadState("m"); err != nil || got != nil {
		t.Fatalf("no state yet: %q %v", got, err)
	}
	for _, s := range []string{`{"stable":"1"}`, `{"stable":"2","canary":"3"}`} {
		if err := r.WriteState("m", []byte(s)); err != nil {
			t.Fatal(err)
		}
		if got, err := r.ReadState("m"); err != nil || string(got) != s {
			t.Fatalf("read back %q %v, want %q", got, err, s)
		}
	}
	// The state file is not a version and leaves no temporary files behind.
	entries, _ := os.ReadDir(filepath.Join(r.Root(), "m"))
	if len(entries) != 1 || entries[0].Name() != StateFile {
		t.Fatalf("model dir holds %v", entries)
	}
	if err := r.WriteState("../x", []byte("{}")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("path traversal: %v", err)
	}
}
