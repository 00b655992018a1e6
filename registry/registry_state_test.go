package registry

import (
	"errors"
	"slices"
	"testing"
)

func TestState(t *testing.T) {
	forEachBackend(t, func(t *testing.T, r backend) {
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
		if keys := r.keys(""); !slices.Equal(keys, []string{"m/" + StateFile}) {
			t.Fatalf("the registry holds %q", keys)
		}
		if vs, err := r.Versions("m"); err != nil || len(vs) != 0 {
			t.Fatalf("Versions = %q, %v, want none", vs, err)
		}
		if err := r.WriteState("m", make([]byte, maxStateSize+1)); !errors.Is(err, ErrInvalid) {
			t.Fatalf("oversized state: %v", err)
		}
	})
}
