// Package tlsreload serves TLS certificates that can be rotated on disk without a
// restart: a Reloader hands the current key pair to crypto/tls and reads the files
// again when they change. ServerConfig and ClientConfig build the tls.Config of the
// gRPC server (optionally mTLS) and of its clients.
package tlsreload

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// DefaultInterval is how often, at most, the files are checked for changes.
const DefaultInterval = time.Second

// Option configures a Reloader.
type Option func(*options)

type options struct {
	interval time.Duration
	now      func() time.Time
}

// WithInterval sets how often, at most, the files are checked (default 1s; 0 checks
// at every handshake).
func WithInterval(d time.Duration) Option { return func(o *options) { o.interval = d } }

// WithClock sets the clock that paces the checks (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Reloader holds a certificate and key loaded from two PEM files. Handshakes get the
// current pair through GetCertificate or GetClientCertificate; at most once per
// interval they first check the files, and load them again if either changed (inode,
// size or modification time). A failed load keeps the previous pair, is reported by
// LastError, and is retried at the next check. It starts no goroutine.
type Reloader struct {
	certFile, keyFile string
	opts              options

	mu        sync.Mutex
	cert      *tls.Certificate
	stamps    [2]os.FileInfo // of certFile and keyFile when cert was loaded
	lastCheck time.Time
	lastErr   error
}

// New loads certFile and keyFile (PEM), failing if they do not hold a matching pair.
func New(certFile, keyFile string, opts ...Option) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile, opts: options{interval: DefaultInterval, now: time.Now}}
	for _, o := range opts {
		o(&r.opts)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastCheck = r.opts.now()
	if err := r.loadLocked(); err != nil {
		return nil, err
	}
	return r, nil
}

// loadLocked reads the pair; on failure the current one stays.
func (r *Reloader) loadLocked() error {
	certInfo, err1 := os.Stat(r.certFile)
	keyInfo, err2 := os.Stat(r.keyFile)
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	for _, e := range []error{err1, err2, err} {
		if e != nil {
			r.lastErr = fmt.Errorf("tlsreload: load %s, %s: %w", r.certFile, r.keyFile, e)
			return r.lastErr
		}
	}
	r.cert, r.stamps, r.lastErr = &cert, [2]os.FileInfo{certInfo, keyInfo}, nil
	return nil
}

// changedLocked reports whether either file differs from the loaded version.
func (r *Reloader) changedLocked() bool {
	for i, name := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return true
		}
		old := r.stamps[i]
		if !os.SameFile(fi, old) || fi.Size() != old.Size() || !fi.ModTime().Equal(old.ModTime()) {
			return true
		}
	}
	return false
}

// Certificate returns the current pair, first reloading it if the check interval has
// passed and the files changed.
func (r *Reloader) Certificate() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.opts.now()
	if d := now.Sub(r.lastCheck); d >= r.opts.interval || d < 0 {
		r.lastCheck = now
		if r.changedLocked() {
			_ = r.loadLocked() // kept in lastErr
		}
	}
	return r.cert
}

// Reload loads the files now, whether or not they changed. On error the previous pair
// stays in use.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastCheck = r.opts.now()
	return r.loadLocked()
}

// LastError returns the error of the last load, nil if it succeeded.
func (r *Reloader) LastError() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

// GetCertificate is a tls.Config.GetCertificate returning the current pair.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.Certificate(), nil
}

// GetClientCertificate is a tls.Config.GetClientCertificate returning the current pair.
func (r *Reloader) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.Certificate(), nil
}
