package tlsreload_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/recserve/recserve/tlsreload"
	"github.com/recserve/recserve/tlsreload/testcerts"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// serveTLS runs a gRPC health server with cfg on 127.0.0.1:0 and returns its address.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	healthpb.RegisterHealthServer(s, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(lis) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return lis.Addr().String()
}

// check opens a new connection with cfg, makes a health check and returns the serial
// of the server's certificate.
func check(t *testing.T, addr string, cfg *tls.Config) (*big.Int, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		return nil, err
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		t.Fatalf("no TLS peer certificate: %#v", p.AuthInfo)
	}
	return info.State.PeerCertificates[0].SerialNumber, nil
}

func serialOf(t *testing.T, file string) *big.Int {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(file, strings.TrimSuffix(file, ".pem")+"-key.pem")
	if err != nil {
		t.Fatal(err)
	}
	return cert.Leaf.SerialNumber
}

// TestRotation: the server keeps running while its certificate files are replaced;
// new connections get the new certificate once the files have been checked again, and
// a broken rewrite keeps the last good one.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	ca, files, err := testcerts.Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	r, err := tlsreload.New(files.ServerCert, files.ServerKey, tlsreload.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := tlsreload.ServerConfig(r, "", false)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, cfg)
	client, err := tlsreload.ClientConfig(files.CA, "", "", "localhost")
	if err != nil {
		t.Fatal(err)
	}

	first := serialOf(t, files.ServerCert)
	if got, err := check(t, addr, client); err != nil || got.Cmp(first) != 0 {
		t.Fatalf("first certificate: serial %v, %v; want %v", got, err, first)
	}

	// Rotate: a new certificate with a later expiry.
	leaf := testcerts.Leaf{CommonName: "localhost", DNSNames: []string{"localhost"}, NotAfter: time.Now().Add(48 * time.Hour)}
	if _, _, err := ca.WriteLeaf(dir, "server", leaf); err != nil {
		t.Fatal(err)
	}
	second := serialOf(t, files.ServerCert)
	if got, err := check(t, addr, client); err != nil || got.Cmp(first) != 0 {
		t.Fatalf("within the check interval: serial %v, %v; want still %v", got, err, first)
	}
	clk.Advance(time.Second)
	if got, err := check(t, addr, client); err != nil || got.Cmp(second) != 0 {
		t.Fatalf("after rotation: serial %v, %v; want %v", got, err, second)
	}
	if err := r.LastError(); err != nil {
		t.Fatalf("LastError after a good reload: %v", err)
	}

	// A broken rewrite keeps the current certificate and is reported.
	if err := os.WriteFile(files.ServerCert, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if got, err := check(t, addr, client); err != nil || got.Cmp(second) != 0 {
		t.Fatalf("after a broken rewrite: serial %v, %v; want still %v", got, err, second)
	}
	if err := r.LastError(); err == nil {
		t.Fatal("LastError is nil after a broken rewrite")
	}
	if err := r.Reload(); err == nil {
		t.Fatal("Reload of a broken file succeeded")
	}

	// Repaired, it is picked up again.
	if _, _, err := ca.WriteLeaf(dir, "server", leaf); err != nil {
		t.Fatal(err)
	}
	third := serialOf(t, files.ServerCert)
	clk.Advance(time.Second)
	if got, err := check(t, addr, client); err != nil || got.Cmp(third) != 0 {
		t.Fatalf("after the repair: serial %v, %v; want %v", got, err, third)
	}
	if err := r.LastError(); err != nil {
		t.Fatalf("LastError after the repair: %v", err)
	}
}

// TestHalfRotated: a certificate replaced before its key does not match it; the old
// pair stays until the key follows.
func TestHalfRotated(t *testing.T) {
	dir := t.TempDir()
	ca, files, err := testcerts.Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	r, err := tlsreload.New(files.ServerCert, files.ServerKey, tlsreload.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	old := r.Certificate().Leaf.SerialNumber
	certPEM, keyPEM, err := ca.Issue(testcerts.Leaf{CommonName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if err := testcerts.WriteFile(files.ServerCert, certPEM); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if got := r.Certificate().Leaf.SerialNumber; got.Cmp(old) != 0 || r.LastError() == nil {
		t.Fatalf("half rotated: serial %v (old %v), LastError %v", got, old, r.LastError())
	}
	if err := testcerts.WriteFile(files.ServerKey, keyPEM); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if got := r.Certificate().Leaf.SerialNumber; got.Cmp(old) == 0 || r.LastError() != nil {
		t.Fatalf("rotated: serial %v (old %v), LastError %v", got, old, r.LastError())
	}
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	_, files, err := testcerts.Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	r, err := tlsreload.New(files.ServerCert, files.ServerKey, tlsreload.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := tlsreload.ServerConfig(r, files.CA, true)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, cfg)

	// A client certificate from another CA.
	otherDir := filepath.Join(dir, "other")
	if err := os.Mkdir(otherDir, 0o700); err != nil {
		t.Fatal(err)
	}
	otherCA, otherFiles, err := testcerts.Generate(otherDir)
	if err != nil {
		t.Fatal(err)
	}

	withCert, err := tlsreload.ClientConfig(files.CA, files.ClientCert, files.ClientKey, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	noCert, err := tlsreload.ClientConfig(files.CA, "", "", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	foreignCert, err := tlsreload.ClientConfig(files.CA, otherFiles.ClientCert, otherFiles.ClientKey, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	serverCertAsClient, err := tlsreload.ClientConfig(files.CA, files.ServerCert, files.ServerKey, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := check(t, addr, withCert); err != nil {
		t.Fatalf("client with a certificate: %v", err)
	}
	if _, err := check(t, addr, noCert); err == nil {
		t.Fatal("client without a certificate accepted")
	} else {
		t.Logf("rejected as it should be: %v", err)
	}
	if _, err := check(t, addr, foreignCert); err == nil {
		t.Fatal("client with a certificate of another CA accepted")
	} else {
		t.Logf("rejected as it should be: %v", err)
	}
	if _, err := check(t, addr, serverCertAsClient); err == nil {
		t.Fatal("client with a server-only certificate accepted")
	} else {
		t.Logf("rejected as it should be: %v", err)
	}

	// Trusting the other CA too (the CA file rotated) admits its clients.
	both := append(append([]byte{}, mustRead(t, files.CA)...), otherCA.CertPEM...)
	if err := testcerts.WriteFile(files.CA, both); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if _, err := check(t, addr, foreignCert); err != nil {
		t.Fatalf("after adding its CA: %v", err)
	}
	if _, err := check(t, addr, withCert); err != nil {
		t.Fatalf("after adding a CA, the first CA's client: %v", err)
	}
}

// TestOptionalClientCert: without requireClientCert a client may connect without a
// certificate, but one it presents must verify.
func TestOptionalClientCert(t *testing.T) {
	dir := t.TempDir()
	_, files, err := testcerts.Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := tlsreload.New(files.ServerCert, files.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := tlsreload.ServerConfig(r, files.CA, false)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, cfg)
	otherDir := filepath.Join(dir, "other")
	if err := os.Mkdir(otherDir, 0o700); err != nil {
		t.Fatal(err)
	}
	_, otherFiles, err := testcerts.Generate(otherDir)
	if err != nil {
		t.Fatal(err)
	}
	noCert, _ := tlsreload.ClientConfig(files.CA, "", "", "localhost")
	foreign, _ := tlsreload.ClientConfig(files.CA, otherFiles.ClientCert, otherFiles.ClientKey, "localhost")
	if _, err := check(t, addr, noCert); err != nil {
		t.Fatalf("without a certificate: %v", err)
	}
	if _, err := check(t, addr, foreign); err == nil {
		t.Fatal("a certificate of another CA accepted")
	} else {
		t.Logf("rejected as it should be: %v", err)
	}
	// A client that does not trust the server's CA fails.
	untrusting, _ := tlsreload.ClientConfig(otherFiles.CA, "", "", "localhost")
	if _, err := check(t, addr, untrusting); err == nil {
		t.Fatal("server accepted by a client that does not trust its CA")
	} else {
		t.Logf("rejected as it should be: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	_, files, err := testcerts.Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := tlsreload.New(files.ServerCert, files.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		fn   func() error
	}{
		{"New with a missing key", func() error { _, err := tlsreload.New(files.ServerCert, missing); return err }},
		{"New with a mismatched pair", func() error { _, err := tlsreload.New(files.ServerCert, files.ClientKey); return err }},
		{"ServerConfig nil", func() error { _, err := tlsreload.ServerConfig(nil, "", false); return err }},
		{"ServerConfig requiring certs without a CA", func() error { _, err := tlsreload.ServerConfig(r, "", true); return err }},
		{"ServerConfig missing CA", func() error { _, err := tlsreload.ServerConfig(r, missing, true); return err }},
		{"ServerConfig CA not PEM", func() error { _, err := tlsreload.ServerConfig(r, notPEM, true); return err }},
		{"ClientConfig CA not PEM", func() error { _, err := tlsreload.ClientConfig(notPEM, "", "", ""); return err }},
		{"ClientConfig cert without key", func() error { _, err := tlsreload.ClientConfig(files.CA, files.ClientCert, "", ""); return err }},
		{"ClientConfig bad pair", func() error {
			_, err := tlsreload.ClientConfig(files.CA, files.ClientCert, files.ServerKey, "")
			return err
		}},
	}
	for _, tc := range tests {
		if err := tc.fn(); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func mustRead(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHTTPS serves HTTPS with an mTLS ServerConfig: HTTP/2 and HTTP/1.1 clients both
// negotiate (ALPN survives the per-handshake config).
func TestHTTPS(t *testing.T) {
	dir := t.TempDir()
	_, files, err := testcerts.Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := tlsreload.New(files.ServerCert, files.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := tlsreload.ServerConfig(r, files.CA, true)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		TLSConfig:         cfg,
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			fmt.Fprint(w, req.Proto)
		}),
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ServeTLS(lis, "", "") }()
	defer func() { srv.Close(); <-done }()

	for _, proto := range []string{"HTTP/2.0", "HTTP/1.1"} {
		client, err := tlsreload.ClientConfig(files.CA, files.ClientCert, files.ClientKey, "localhost")
		if err != nil {
			t.Fatal(err)
		}
		tr := &http.Transport{TLSClientConfig: client, ForceAttemptHTTP2: proto == "HTTP/2.0"}
		if proto == "HTTP/1.1" {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + lis.Addr().String())
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		if string(body) != proto {
			t.Errorf("got %s, want %s", body, proto)
		}
	}
}
