package tlsreload

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// ServerConfig returns a server tls.Config presenting r's current certificate. With
// clientCAFile, client certificates are verified against the CAs in it (PEM), which is
// re-read when it changes, like r's files; requireClientCert makes one mandatory
// (mTLS), else a client may connect without one. NextProtos is h2 and http/1.1, so the
// config suits both the gRPC server (credentials.NewTLS) and an HTTPS server.
func ServerConfig(r *Reloader, clientCAFile string, requireClientCert bool) (*tls.Config, error) {
	if r == nil {
		return nil, errors.New("tlsreload: nil Reloader")
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
	if clientCAFile == "" {
		if requireClientCert {
			return nil, errors.New("tlsreload: requiring client certificates needs a client CA file")
		}
		return cfg, nil
	}
	cas, err := newCAPool(clientCAFile, r.opts)
	if err != nil {
		return nil, err
	}
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	if requireClientCert {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	cfg.ClientCAs = cas.current()
	base := cfg.Clone()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.ClientCAs = cas.current()
		return c, nil
	}
	return cfg, nil
}

// ClientConfig returns a client tls.Config: servers are verified against the CAs in
// caFile (PEM; empty: the system roots) under serverName (empty: the host dialled);
// with certFile and keyFile, it presents that certificate (reloaded when the files
// change) to servers that ask for one.
func ClientConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pool, err := readPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("tlsreload: a client certificate needs both the certificate and the key file")
	}
	if certFile != "" {
		r, err := New(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = r.GetClientCertificate
	}
	return cfg, nil
}

// readPool reads PEM certificates into a pool.
func readPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tlsreload: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tlsreload: CA file %s: no PEM certificate", file)
	}
	return pool, nil
}

// caPool is a CA file's pool, re-read when the file changes; a failed read keeps the
// previous pool.
type caPool struct {
	file string
	opts options

	mu        sync.Mutex
	pool      *x509.CertPool
	stamp     os.FileInfo
	lastCheck time.Time
}

func newCAPool(file string, opts options) (*caPool, error) {
	c := &caPool{file: file, opts: opts, lastCheck: opts.now()}
	fi, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("tlsreload: CA file: %w", err)
	}
	if c.pool, err = readPool(file); err != nil {
		return nil, err
	}
	c.stamp = fi
	return c, nil
}

func (c *caPool) current() *x509.CertPool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.now()
	if d := now.Sub(c.lastCheck); d < c.opts.interval && d >= 0 {
		return c.pool
	}
	c.lastCheck = now
	fi, err := os.Stat(c.file)
	if err != nil || (os.SameFile(fi, c.stamp) && fi.Size() == c.stamp.Size() && fi.ModTime().Equal(c.stamp.ModTime())) {
		return c.pool
	}
	if pool, err := readPool(c.file); err == nil {
		c.pool, c.stamp = pool, fi
	}
	return c.pool
}
