package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/recserve/recserve/auth"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/ratelimit"
	"github.com/recserve/recserve/tlsreload/testcerts"
)

// securedDaemon serves over mTLS with API keys: "reader" (recommend), "writer"
// (ingest) and "ops" (admin); reader is limited to a burst of 5 requests.
func securedDaemon(t *testing.T) (Addrs, testcerts.Files, map[string]string) {
	t.Helper()
	_, files, err := testcerts.Generate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{"reader": auth.GenerateKey(), "writer": auth.GenerateKey(), "ops": auth.GenerateKey()}
	roles := map[string]string{"reader": "recommend", "writer": "ingest", "ops": "admin"}
	var lines []string
	for name, key := range keys {
		lines = append(lines, name+":"+roles[name]+":"+auth.HashKey(key))
	}
	addrs, _ := startDaemon(t, func(c *Config) {
		c.Security = Security{
			CertFile: files.ServerCert, KeyFile: files.ServerKey,
			ClientCAFile: files.CA, RequireClientCert: true,
			GatewayCertFile: files.ClientCert, GatewayKeyFile: files.ClientKey,
			Auth:      &auth.Config{APIKeys: lines},
			RateLimit: &ratelimit.Config{Roles: map[string]ratelimit.Limit{"recommend": {Rate: 0.001, Burst: 5}}},
		}
	})
	return addrs, files, keys
}

func clientTLS(t *testing.T, files testcerts.Files, withCert bool) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if withCert {
		cert, err := tls.LoadX509KeyPair(files.ClientCert, files.ClientKey)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
}

func TestSecurityOverGRPC(t *testing.T) {
	addrs, files, keys := securedDaemon(t)
	conn, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS(t, files, true))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rec := recservev1.NewRecommendServiceClient(conn)
	admin := recservev1.NewModelAdminServiceClient(conn)
	withKey := func(key string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "x-api-key", key)
	}
	req := &recservev1.RecommendRequest{UserId: "someone", N: proto.Int32(3)}

	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health needs no credentials: %v", err)
	}
	cases := []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"no credentials", func() error { _, err := rec.Recommend(context.Background(), req); return err }, codes.Unauthenticated},
		{"unknown key", func() error { _, err := rec.Recommend(withKey(auth.GenerateKey()), req); return err }, codes.Unauthenticated},
		{"wrong role", func() error { _, err := rec.Recommend(withKey(keys["writer"]), req); return err }, codes.PermissionDenied},
		{"admin needs admin", func() error {
			_, err := admin.ListModels(withKey(keys["reader"]), &recservev1.ListModelsRequest{})
			return err
		}, codes.PermissionDenied},
		{"admin", func() error {
			_, err := admin.ListModels(withKey(keys["ops"]), &recservev1.ListModelsRequest{})
			return err
		}, codes.OK},
		{"reader", func() error { _, err := rec.Recommend(withKey(keys["reader"]), req); return err }, codes.OK},
	}
	for _, c := range cases {
		if got := status.Code(c.call()); got != c.code {
			t.Errorf("%s: %v, want %v", c.name, got, c.code)
		}
	}
	// The reader's burst of 5 is spent (one call above), then RESOURCE_EXHAUSTED with a retry hint.
	var last error
	for i := 0; i < 5; i++ {
		_, last = rec.Recommend(withKey(keys["reader"]), req)
	}
	st := status.Convert(last)
	if st.Code() != codes.ResourceExhausted || len(st.Details()) == 0 {
		t.Fatalf("after the burst: %v (details %v), want RESOURCE_EXHAUSTED with RetryInfo", last, st.Details())
	}

	// A client without a certificate is turned away by mTLS.
	bare, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS(t, files, false))))
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(bare).Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("without a client certificate: %v, want the connection refused", err)
	}
}

func TestSecurityOverREST(t *testing.T) {
	addrs, files, keys := securedDaemon(t)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(t, files, true)}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	get := func(path, key string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "https://"+addrs.HTTP+path, nil)
		if key != "" {
			req.Header.Set("X-Api-Key", key)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	path := "/v1/users/someone/recommendations?n=2"
	if code := get("/healthz", ""); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
	for _, c := range []struct {
		name, path, key string
		want            int
	}{
		{"no credentials", path, "", http.StatusUnauthorized},
		{"wrong role", path, keys["writer"], http.StatusForbidden},
		{"admin with a reader key", "/v1/models", keys["reader"], http.StatusForbidden},
		{"reader", path, keys["reader"], http.StatusOK},
	} {
		if code := get(c.path, c.key); code != c.want {
			t.Errorf("%s: %d, want %d", c.name, code, c.want)
		}
	}
	codes := map[int]int{}
	for i := 0; i < 6; i++ {
		codes[get(path, keys["reader"])]++
	}
	if codes[http.StatusTooManyRequests] == 0 {
		t.Fatalf("no 429 after the burst: %v", codes)
	}

	plain := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	defer plain.CloseIdleConnections()
	if resp, err := plain.Get("http://" + addrs.HTTP + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plaintext HTTP served on a TLS port")
		}
	}
}

func TestTLSRequiredUnlessPlaintext(t *testing.T) {
	err := Run(context.Background(), Config{Registry: t.TempDir(), GRPCAddr: "127.0.0.1:0", HTTPAddr: "off",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil)
	if !errors.Is(err, errNoTLS) {
		t.Fatalf("no TLS and no plaintext: %v, want errNoTLS", err)
	}
}
