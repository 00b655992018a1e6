package registry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
)

// backend is a registry under test together with raw access to the bytes it
// stores, as an external writer, a broken disk or an interrupted upload sees
// them. Keys are slash-separated and relative to the registry's root:
// "m/1/manifest.json".
type backend struct {
	Store
	put    func(key string, data []byte)
	get    func(key string) []byte // nil when missing
	remove func(key string)
	keys   func(prefix string) []string // sorted, files only
}

// forEachBackend runs test against a filesystem registry and an S3 registry
// served by an in-process S3 server (gofakes3), each new and empty.
func forEachBackend(t *testing.T, test func(t *testing.T, b backend)) {
	t.Run("fs", func(t *testing.T) { test(t, newFSBackend(t)) })
	t.Run("s3", func(t *testing.T) { test(t, newS3Backend(t)) })
}

func newFSBackend(t *testing.T) backend {
	r := openFS(t)
	file := func(key string) string { return filepath.Join(r.Root(), filepath.FromSlash(key)) }
	return backend{
		Store: r,
		put: func(key string, data []byte) {
			t.Helper()
			if err := os.MkdirAll(filepath.Dir(file(key)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file(key), data, 0o644); err != nil {
				t.Fatal(err)
			}
		},
		get: func(key string) []byte {
			data, err := os.ReadFile(file(key))
			if err != nil {
				return nil
			}
			return data
		},
		remove: func(key string) { os.Remove(file(key)) },
		keys: func(prefix string) []string {
			var out []string
			filepath.WalkDir(r.Root(), func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					rel, _ := filepath.Rel(r.Root(), p)
					if k := filepath.ToSlash(rel); strings.HasPrefix(k, prefix) {
						out = append(out, k)
					}
				}
				return nil
			})
			return out
		},
	}
}

// s3Server is an in-process S3 server with one bucket, "reg".
type s3Server struct {
	mem *s3mem.Backend
	url string
}

func newS3Server(t *testing.T) *s3Server {
	t.Helper()
	mem := s3mem.New()
	if err := mem.CreateBucket("reg"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(mem).Server())
	t.Cleanup(srv.Close)
	return &s3Server{mem: mem, url: srv.URL}
}

// open opens the registry at prefix in the bucket.
func (s *s3Server) open(t *testing.T, prefix string) *S3 {
	t.Helper()
	r, err := OpenS3(context.Background(), S3Options{
		Endpoint: s.url, Bucket: "reg", Prefix: prefix, AccessKey: "key", SecretKey: "secret", UsePathStyle: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func newS3Backend(t *testing.T) backend {
	const prefix = "models/" // a registry below the bucket's root, as deployments put it
	s := newS3Server(t)
	r := s.open(t, prefix)
	return backend{
		Store: r,
		put: func(key string, data []byte) {
			t.Helper()
			if _, err := r.client.PutObject(context.Background(), "reg", prefix+key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{DisableContentSha256: len(data) == 0}); err != nil {
				t.Fatal(err)
			}
		},
		get: func(key string) []byte {
			obj, err := s.mem.GetObject("reg", prefix+key, nil)
			if err != nil {
				return nil
			}
			defer obj.Contents.Close()
			data, _ := io.ReadAll(obj.Contents)
			return data
		},
		remove: func(key string) { s.mem.DeleteObject("reg", prefix+key) },
		keys: func(p string) []string {
			list, err := s.mem.ListBucket("reg", &gofakes3.Prefix{HasPrefix: true, Prefix: prefix + p}, gofakes3.ListBucketPage{})
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, c := range list.Contents {
				out = append(out, strings.TrimPrefix(c.Key, prefix))
			}
			slices.Sort(out)
			return out
		},
	}
}

// versionDir edits the files of a stored version the way a broken writer or a
// bad disk would.
type versionDir struct {
	t   *testing.T
	b   backend
	dir string // "m/1/"
}

func (v versionDir) key(name string) string { return path.Join(v.dir, name) }

func (v versionDir) read(name string) []byte {
	v.t.Helper()
	data := v.b.get(v.key(name))
	if data == nil {
		v.t.Fatalf("%s is missing", v.key(name))
	}
	return data
}

func (v versionDir) remove(name string) { v.b.remove(v.key(name)) }

// write replaces a data file; with rehash it also updates the manifest's size
// and checksum, so that only the content is wrong.
func (v versionDir) write(name string, data []byte, rehash bool) {
	v.t.Helper()
	v.b.put(v.key(name), data)
	if rehash {
		v.manifest(func(m map[string]any) {
			m["files"].(map[string]any)[name] = fileEntry(data)
		})
	}
}

// mkVersion stores model/name with one data file and, when complete, an
// (empty) manifest. Versions only looks for the manifest; Load would reject
// these.
func mkVersion(t *testing.T, b backend, model, name string, complete bool) {
	t.Helper()
	b.put(model+"/"+name+"/"+UserVectorsFile, []byte("x"))
	if complete {
		b.put(model+"/"+name+"/"+ManifestFile, []byte("{}"))
	}
}

// TestOpenS3 checks the options OpenS3 refuses and the bucket it requires.
func TestOpenS3(t *testing.T) {
	s := newS3Server(t)
	for _, opts := range []S3Options{
		{Endpoint: s.url},
		{Endpoint: "ftp://host", Bucket: "reg"},
		{Endpoint: "http://host/path", Bucket: "reg"},
		{Endpoint: s.url, Bucket: "reg", Prefix: "a/../b"},
	} {
		if _, err := OpenS3(context.Background(), opts); !errors.Is(err, ErrInvalid) {
			t.Errorf("OpenS3(%+v) = %v, want ErrInvalid", opts, err)
		}
	}
	if _, err := OpenS3(context.Background(), S3Options{Endpoint: s.url, Bucket: "nope", UsePathStyle: true}); !errors.Is(err, ErrNotFound) {
		t.Errorf("OpenS3 of a missing bucket = %v, want ErrNotFound", err)
	}
	if loc := s.open(t, "/a/b/").Location(); loc != "s3://reg/a/b" {
		t.Errorf("Location = %q", loc)
	}
}
