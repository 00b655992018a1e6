package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"time"

	"github.com/minio/minio-go/v7"
)

// claimFile marks a version number taken by a publisher that is uploading
// it. Its name starts with '.', so it is never a file of a manifest.
const claimFile = ".publish"

// errAborted stops an encoder whose upload has ended.
var errAborted = errors.New("upload ended")

// Publish stores b as the next version of model b.Manifest.Model and returns
// the version, filling in the manifest as [FS.Publish] does. The version is
// one more than the highest version present, complete or not. Publish takes
// the number by creating <version>/.publish with If-None-Match: *, moving on
// to the next number when another publisher has it or anything else is
// stored there; it then uploads the data files, the manifest last (also
// conditionally) and deletes the claim. A failed Publish deletes what it
// uploaded, if it can; whatever it leaves lacks a manifest and stays
// invisible.
//
// Each data file is encoded twice, to learn its size and checksum and then to
// upload it, so that memory use stays small for large bundles.
func (s *S3) Publish(b *Bundle) (string, error) {
	nb, err := preparePublish(b)
	if err != nil {
		return "", err
	}
	m := nb.Manifest
	files := dataFiles(nb)
	m.Files = make(map[string]File, len(files))
	for _, f := range files {
		file, err := encode(io.Discard, f.write)
		if err != nil {
			return "", fmt.Errorf("registry: publish %s: %s: %w", m.Model, f.name, err)
		}
		m.Files[f.name] = file
	}

	ctx, cancel := s.ctx()
	defer cancel()
	id := rand.Text()
	for try := range maxPublishTries {
		if try > 0 { // let the other publisher get ahead
			time.Sleep(time.Duration(mrand.Int64N(int64(time.Millisecond) << min(try, 6))))
		}
		_, top, err := s.scan(ctx, m.Model)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return "", fmt.Errorf("registry: publish %s: %w", m.Model, err)
		}
		next := fmt.Sprint(top + 1)
		if _, ok := parseVersion(next); !ok {
			return "", fmt.Errorf("registry: publish %s: version numbers exhausted", m.Model)
		}
		dir := s.versionDir(m.Model, next)
		ok, err := s.claim(ctx, dir, id)
		if err != nil {
			return "", fmt.Errorf("registry: publish %s version %s: %w", m.Model, next, err)
		}
		if !ok {
			continue
		}
		m.Version = next
		if err := s.upload(ctx, dir, files, &m); err != nil {
			s.cleanup(dir, files)
			return "", fmt.Errorf("registry: publish %s version %s: %w", m.Model, next, err)
		}
		// The version is complete; the claim has done its work.
		if err := s.client.RemoveObject(ctx, s.bucket, dir+claimFile, minio.RemoveObjectOptions{}); err != nil {
			return "", fmt.Errorf("registry: publish %s version %s: complete, but removing %s: %w", m.Model, next, claimFile, err)
		}
		b.Manifest = m
		return next, nil
	}
	return "", fmt.Errorf("registry: publish %s: no free version number after %d tries", m.Model, maxPublishTries)
}

// claim takes the version at dir for this publisher: it creates dir/.publish
// unless it exists, and then checks that nothing else is stored under dir,
// as when an external writer writes a version in place without a claim.
func (s *S3) claim(ctx context.Context, dir, id string) (bool, error) {
	var opts minio.PutObjectOptions
	opts.SetMatchETagExcept("*") // If-None-Match: *
	_, err := s.client.PutObject(ctx, s.bucket, dir+claimFile, bytes.NewReader([]byte(id)), int64(len(id)), opts)
	if isPreconditionFailed(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	keys, err := s.list(ctx, dir, true, 2)
	if err != nil {
		return false, err
	}
	if len(keys) != 1 || keys[0] != dir+claimFile {
		err := s.client.RemoveObject(ctx, s.bucket, dir+claimFile, minio.RemoveObjectOptions{})
		return false, err
	}
	return true, nil
}

// upload puts the data files under dir, then the manifest m.
func (s *S3) upload(ctx context.Context, dir string, files []dataFile, m *Manifest) error {
	for _, f := range files {
		if err := s.putEncoded(ctx, dir+f.name, m.Files[f.name], f.write); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	data, err := manifestJSON(m)
	if err != nil {
		return err
	}
	var opts minio.PutObjectOptions
	opts.ContentType = "application/json"
	opts.SetMatchETagExcept("*")
	_, err = s.client.PutObject(ctx, s.bucket, dir+ManifestFile, bytes.NewReader(data), int64(len(data)), opts)
	if isPreconditionFailed(err) {
		return fmt.Errorf("%s: another writer put it first; the server may not honour If-None-Match", ManifestFile)
	}
	return err
}

// putEncoded uploads what write writes, streaming, and checks that it has the
// size and checksum of want.
func (s *S3) putEncoded(ctx context.Context, key string, want File, write func(w io.Writer) error) error {
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream"}
	if want.Size == 0 { // a streamed empty body reached gofakes3 without a Content-Length
		opts.DisableContentSha256 = true
		_, err := s.client.PutObject(ctx, s.bucket, key, bytes.NewReader(nil), 0, opts)
		return err
	}
	pr, pw := io.Pipe()
	var got File
	done := make(chan error, 1)
	go func() {
		var err error
		got, err = encode(pw, write)
		pw.CloseWithError(err) // nil: EOF
		done <- err
	}()
	_, err := s.client.PutObject(ctx, s.bucket, key, pr, want.Size, opts)
	pr.CloseWithError(errAborted) // unblocks the encoder if the upload ended early
	werr := <-done
	if err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	if got != want {
		return errors.New("encoding differs between passes") // cannot happen: encoders are deterministic
	}
	return nil
}

// cleanup deletes, as far as it can, what a failed Publish uploaded to dir:
// the manifest first, so that the version is never complete but partial.
func (s *S3) cleanup(dir string, files []dataFile) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	keys := []string{dir + ManifestFile}
	for _, f := range files {
		keys = append(keys, dir+f.name)
	}
	keys = append(keys, dir+claimFile)
	for _, k := range keys {
		_ = s.client.RemoveObject(ctx, s.bucket, k, minio.RemoveObjectOptions{}) // best effort: leftovers are invisible
	}
}
