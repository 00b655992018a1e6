package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Options configures [OpenS3].
type S3Options struct {
	// Endpoint is the server's URL, "https://s3.eu-west-1.amazonaws.com" or
	// "http://127.0.0.1:9000"; without a scheme, HTTPS is used.
	Endpoint string
	// Bucket holds the registry; it must exist.
	Bucket string
	// Prefix, if set, is the key prefix of the registry's root: objects are
	// <prefix>/<model>/<version>/<file>.
	Prefix string
	// Region defaults to us-east-1.
	Region string
	// AccessKey and SecretKey sign requests; both empty means anonymous.
	AccessKey, SecretKey string
	// UsePathStyle addresses the bucket as <endpoint>/<bucket> rather than
	// <bucket>.<endpoint>, as MinIO and most non-AWS servers want.
	UsePathStyle bool
	// Transport, if set, carries the requests; by default S3 makes its own,
	// which Close releases.
	Transport http.RoundTripper
	// Timeout bounds each registry call, Load and Publish included; default
	// 10 minutes.
	Timeout time.Duration
}

// S3 is a registry in a bucket of an S3-compatible object store. It keeps
// the filesystem's layout and rules (FORMAT.md) with keys in place of paths:
// a version is complete once <model>/<version>/manifest.json exists.
//
// Object stores cannot rename, so Publish writes in place: it claims the
// next version number by creating <model>/<version>/.publish with a
// conditional put (If-None-Match: *), uploads the data files, then the
// manifest, also conditionally, and finally deletes the claim. This relies on
// the server honouring If-None-Match: * on PUT (Amazon S3 since 2024, MinIO,
// Cloudflare R2, Google Cloud Storage) and on strongly consistent
// read-after-write and listing (Amazon S3 since 2020). A server that ignores
// the header lets two concurrent publishers take one number; their versions
// then fail to load with ErrCorrupt rather than loading wrong data, since
// every file is checksummed.
//
// An S3 is safe for concurrent use, also by many processes sharing a bucket.
type S3 struct {
	client    *minio.Client
	bucket    string
	prefix    string // "" or ending in "/"
	timeout   time.Duration
	transport *http.Transport // made by OpenS3; nil if given
}

// OpenS3 connects to a registry in object storage and checks that its bucket
// exists. Call Close when done.
func OpenS3(ctx context.Context, opts S3Options) (*S3, error) {
	if opts.Bucket == "" {
		return nil, fmt.Errorf("registry: s3: %w: no bucket", ErrInvalid)
	}
	host, secure := opts.Endpoint, true
	if strings.Contains(host, "://") {
		u, err := url.Parse(host)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || strings.Trim(u.Path, "/") != "" {
			return nil, fmt.Errorf("registry: s3: %w: endpoint %q is not http(s)://host[:port]", ErrInvalid, opts.Endpoint)
		}
		host, secure = u.Host, u.Scheme == "https"
	}
	if host == "" {
		return nil, fmt.Errorf("registry: s3: %w: no endpoint", ErrInvalid)
	}
	prefix := strings.Trim(opts.Prefix, "/")
	for _, part := range strings.Split(prefix, "/") {
		if prefix != "" && checkName(part) != nil {
			return nil, fmt.Errorf("registry: s3: %w: prefix %q: each part must be a valid name", ErrInvalid, opts.Prefix)
		}
	}
	if prefix != "" {
		prefix += "/"
	}
	region := cmp.Or(opts.Region, "us-east-1")
	s := &S3{bucket: opts.Bucket, prefix: prefix, timeout: cmp.Or(opts.Timeout, 10*time.Minute)}
	tr := opts.Transport
	if tr == nil {
		t, err := minio.DefaultTransport(secure)
		if err != nil {
			return nil, fmt.Errorf("registry: s3: %w", err)
		}
		s.transport, tr = t, t
	}
	lookup := minio.BucketLookupAuto
	if opts.UsePathStyle {
		lookup = minio.BucketLookupPath
	}
	var creds *credentials.Credentials
	if opts.AccessKey != "" || opts.SecretKey != "" {
		creds = credentials.NewStaticV4(opts.AccessKey, opts.SecretKey, "")
	} else {
		creds = credentials.NewStatic("", "", "", credentials.SignatureAnonymous)
	}
	client, err := minio.New(host, &minio.Options{
		Creds: creds, Secure: secure, Transport: tr, Region: region, BucketLookup: lookup,
	})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("registry: s3: %w", err)
	}
	s.client = client
	ok, err := client.BucketExists(ctx, s.bucket)
	if err == nil && !ok {
		err = fmt.Errorf("bucket %s: %w", s.bucket, ErrNotFound)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("registry: s3: %w", err)
	}
	return s, nil
}

// Close releases idle connections of the transport OpenS3 made.
func (s *S3) Close() error {
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
	return nil
}

// Location returns s3://<bucket>/<prefix>.
func (s *S3) Location() string {
	return "s3://" + s.bucket + "/" + strings.TrimSuffix(s.prefix, "/")
}

func (s *S3) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.timeout)
}

// modelDir and versionDir return key prefixes, ending in "/".
func (s *S3) modelDir(model string) string { return s.prefix + model + "/" }
func (s *S3) versionDir(model, version string) string {
	return s.prefix + model + "/" + version + "/"
}

// list returns the keys under prefix: all of them when recursive, otherwise
// the objects and the common prefixes (ending in "/") of one level.
func (s *S3) list(ctx context.Context, prefix string, recursive bool, max int) ([]string, error) {
	ctx, cancel := context.WithCancel(ctx)
	objects := s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: recursive})
	defer func() {
		cancel()
		for range objects { // the lister may be sending one more; it closes the channel when it ends
		}
	}()
	var keys []string
	for obj := range objects {
		if obj.Err != nil {
			return nil, obj.Err
		}
		keys = append(keys, obj.Key)
		if max > 0 && len(keys) >= max {
			break
		}
	}
	return keys, nil
}

// Models returns every model with at least one complete version, and its
// complete versions in ascending order (as Versions lists them).
func (s *S3) Models() (map[string][]string, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	keys, err := s.list(ctx, s.prefix, false, 0)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	models := map[string][]string{}
	for _, k := range keys {
		name, ok := strings.CutSuffix(strings.TrimPrefix(k, s.prefix), "/")
		if !ok || checkName(name) != nil {
			continue
		}
		complete, _, err := s.scan(ctx, name)
		if errors.Is(err, ErrNotFound) { // removed meanwhile
			continue
		}
		if err != nil {
			return nil, err
		}
		if len(complete) > 0 {
			models[name] = complete
		}
	}
	return models, nil
}

// scan lists the versions of model: the complete ones in ascending order and
// the highest number in use, complete or not. It returns ErrNotFound when
// nothing is stored under the model.
func (s *S3) scan(ctx context.Context, model string) (complete []string, top int64, err error) {
	dir := s.modelDir(model)
	keys, err := s.list(ctx, dir, true, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("registry: model %s: %w", model, err)
	}
	if len(keys) == 0 {
		return nil, 0, fmt.Errorf("registry: model %s: %w", model, ErrNotFound)
	}
	var ns []int64
	for _, k := range keys {
		v, file, ok := strings.Cut(strings.TrimPrefix(k, dir), "/")
		n, isVersion := parseVersion(v)
		if !ok || !isVersion {
			continue
		}
		top = max(top, n)
		if file == ManifestFile {
			ns = append(ns, n)
		}
	}
	slices.Sort(ns)
	for _, n := range slices.Compact(ns) {
		complete = append(complete, fmt.Sprint(n))
	}
	return complete, top, nil
}

// Versions returns the complete versions of model in ascending numeric order;
// versions without a manifest.json and keys that are not versions are left
// out. It returns ErrNotFound when the model does not exist.
func (s *S3) Versions(model string) ([]string, error) {
	if err := checkModel(model); err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	vs, _, err := s.scan(ctx, model)
	if vs == nil && err == nil {
		vs = []string{}
	}
	return vs, err
}

// Latest returns the highest complete version of model, or ErrNotFound.
func (s *S3) Latest(model string) (string, error) { return latest(s, model) }

// Load reads, verifies and decodes a complete version of model exactly as
// [FS.Load] does. A manifest naming an object that is missing, or one of
// another size or checksum (a partial upload, or a listing that lags), is
// ErrCorrupt naming the file.
func (s *S3) Load(model, version string) (*Bundle, error) {
	if err := checkModel(model); err != nil {
		return nil, err
	}
	if err := checkVersion(model, version); err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	return load(s3Version{s: s, ctx: ctx, dir: s.versionDir(model, version)}, model, version)
}

// s3Version reads the objects of one version.
type s3Version struct {
	s   *S3
	ctx context.Context
	dir string
}

func (v s3Version) open(name string) (io.ReadCloser, int64, error) {
	return v.s.get(v.ctx, v.dir+name)
}

func (v s3Version) exists() bool {
	keys, err := v.s.list(v.ctx, v.dir, true, 1)
	return err == nil && len(keys) > 0
}

// get opens the object at key and returns its size; a missing object is an
// error wrapping fs.ErrNotExist.
func (s *S3) get(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	obj, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, 0, err
	}
	st, err := obj.Stat() // makes the request
	if err != nil {
		obj.Close()
		if isNotFound(err) {
			return nil, 0, fmt.Errorf("%s: %w", key, fs.ErrNotExist)
		}
		return nil, 0, err
	}
	return obj, st.Size, nil
}

func isNotFound(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.Code == minio.NoSuchKey || r.StatusCode == http.StatusNotFound
}

func isPreconditionFailed(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.Code == "PreconditionFailed" || r.StatusCode == http.StatusPreconditionFailed
}

// ReadState returns a model's stored rollout state, <model>/rollout.json, or
// nil and no error when none was written.
func (s *S3) ReadState(model string) ([]byte, error) {
	if err := checkModel(model); err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	key := s.modelDir(model) + StateFile
	r, size, err := s.get(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry: state of %s: %w", model, err)
	}
	defer r.Close()
	if size > maxStateSize {
		return nil, fmt.Errorf("registry: %s: %w: larger than %d bytes", key, ErrCorrupt, maxStateSize)
	}
	data, err := io.ReadAll(io.LimitReader(r, maxStateSize+1))
	if err != nil {
		return nil, fmt.Errorf("registry: state of %s: %w", model, err)
	}
	return data, nil
}

// WriteState replaces a model's rollout state; a single PUT replaces an
// object atomically.
func (s *S3) WriteState(model string, data []byte) error {
	if err := checkModel(model); err != nil {
		return err
	}
	if len(data) > maxStateSize {
		return fmt.Errorf("registry: state of %s: %w: larger than %d bytes", model, ErrInvalid, maxStateSize)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	_, err := s.client.PutObject(ctx, s.bucket, s.modelDir(model)+StateFile, strings.NewReader(string(data)), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/json"})
	if err != nil {
		return fmt.Errorf("registry: state of %s: %w", model, err)
	}
	return nil
}
