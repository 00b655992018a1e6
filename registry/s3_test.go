package registry

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// failPuts is a transport that fails every PUT whose path contains a string.
type failPuts struct {
	base http.RoundTripper
	path string
}

func (f failPuts) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && strings.Contains(req.URL.Path, f.path) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, errors.New("connection reset by test")
	}
	return f.base.RoundTrip(req)
}

// TestS3InterruptedPublish: an upload that fails half-way leaves no version
// behind, and the next publish takes the number.
func TestS3InterruptedPublish(t *testing.T) {
	s := newS3Server(t)
	good := s.open(t, "")
	publish(t, good, newBundle(3, 4, 2, false))

	bad, err := OpenS3(context.Background(), S3Options{
		Endpoint: s.url, Bucket: "reg", AccessKey: "key", SecretKey: "secret", UsePathStyle: true,
		Transport: failPuts{http.DefaultTransport, ItemVectorsFile},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := bad.Publish(newBundle(3, 4, 2, false)); err == nil || !strings.Contains(err.Error(), ItemVectorsFile) {
		t.Fatalf("Publish through a failing connection = %v, want an error naming %s", err, ItemVectorsFile)
	}
	if vs, err := good.Versions("m"); err != nil || !slices.Equal(vs, []string{"1"}) {
		t.Fatalf("Versions after the failed publish = %q, %v, want [1]", vs, err)
	}
	if keys, _ := good.list(context.Background(), "m/2/", true, 0); len(keys) != 0 {
		t.Errorf("the failed publish left %q", keys)
	}
	if v := publish(t, good, newBundle(3, 4, 2, false)); v != "2" {
		t.Errorf("next version = %q, want 2", v)
	}
}

// TestS3ManifestBeforeData: a reader that sees the manifest before a data file
// (an eventually consistent replica, or a writer that uploads out of order)
// gets ErrCorrupt naming the file, and the version once the file arrives.
func TestS3ManifestBeforeData(t *testing.T) {
	r := newS3Backend(t)
	v := publish(t, r, newBundle(5, 7, 3, true))
	key := "m/" + v + "/" + ItemVectorsFile
	data := r.get(key)
	r.remove(key)
	if _, err := r.Load("m", v); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), ItemVectorsFile+": corrupt: file is missing") {
		t.Fatalf("Load with a data file not yet visible = %v, want ErrCorrupt naming it", err)
	}
	r.put(key, data)
	if _, err := r.Load("m", v); err != nil {
		t.Fatalf("Load once the file is visible: %v", err)
	}
}

// TestS3Replicas: registries opened separately on one bucket, as server
// replicas and a trainer do, see each other's versions and never share a
// version number.
func TestS3Replicas(t *testing.T) {
	s := newS3Server(t)
	a, b := s.open(t, "prod"), s.open(t, "prod")
	other := s.open(t, "staging")
	done := make(chan string, 2)
	for _, r := range []*S3{a, b} {
		go func() {
			v, err := r.Publish(newBundle(3, 4, 2, false))
			if err != nil {
				t.Error(err)
			}
			done <- v
		}()
	}
	got := []string{<-done, <-done}
	slices.Sort(got)
	if !slices.Equal(got, []string{"1", "2"}) {
		t.Fatalf("versions = %q, want 1 and 2", got)
	}
	if vs, err := b.Versions("m"); err != nil || !slices.Equal(vs, got) {
		t.Errorf("Versions seen by a replica = %q, %v", vs, err)
	}
	if models, err := other.Models(); err != nil || len(models) != 0 {
		t.Errorf("another prefix sees %q, %v", models, err)
	}
}

// TestOpenURL opens both kinds of registry from a location string.
func TestOpenURL(t *testing.T) {
	dir := t.TempDir() + "/reg"
	r, err := OpenURL(context.Background(), dir)
	if err != nil || r.Location() != dir {
		t.Fatalf("OpenURL(%s) = %v, %v", dir, r, err)
	}
	r.Close()

	s := newS3Server(t)
	t.Setenv(EnvS3Endpoint, s.url)
	t.Setenv(EnvS3PathStyle, "true")
	t.Setenv(EnvAccessKey, "key")
	t.Setenv(EnvSecretKey, "secret")
	r, err = OpenURL(context.Background(), "s3://reg/prod/recs")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Location() != "s3://reg/prod/recs" {
		t.Errorf("Location = %q", r.Location())
	}
	publish(t, r, newBundle(2, 2, 2, false))
	if vs, err := s.open(t, "prod/recs").Versions("m"); err != nil || !slices.Equal(vs, []string{"1"}) {
		t.Errorf("Versions under the location's prefix = %q, %v, want [1]", vs, err)
	}
	if _, err := OpenURL(context.Background(), "s3://missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("OpenURL of a missing bucket = %v, want ErrNotFound", err)
	}
}
