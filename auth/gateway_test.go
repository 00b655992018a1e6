package auth

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// TestGatewayForwardsCredentials runs REST requests through grpc-gateway with the
// header matcher the gateway needs: Authorization and X-Api-Key reach the server.
func TestGatewayForwardsCredentials(t *testing.T) {
	a, err := New(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	conn, _ := startServer(t, a)
	mux := runtime.NewServeMux(runtime.WithIncomingHeaderMatcher(func(k string) (string, bool) {
		if md, ok := GatewayHeader(k); ok {
			return md, true
		}
		return runtime.DefaultHeaderMatcher(k)
	}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := recservev1.RegisterRecommendServiceHandler(ctx, mux, conn); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(mux)
	defer ts.Close()
	client := ts.Client()
	defer client.CloseIdleConnections()

	tests := []struct {
		name      string
		header    http.Header
		want      int
		principal string
	}{
		{"no credentials", nil, http.StatusUnauthorized, ""},
		{"bearer token", http.Header{"Authorization": {"Bearer " + mint("HS256", "", testSecret, claims("alice", RoleRecommend))}}, http.StatusOK, "jwt:alice"},
		{"API key", http.Header{"X-Api-Key": {keyReader}}, http.StatusOK, "apikey:reader"},
		{"API key without the role", http.Header{"X-Api-Key": {keyIngester}}, http.StatusForbidden, ""},
		{"bad API key", http.Header{"X-Api-Key": {"rsk_wrong"}}, http.StatusUnauthorized, ""},
		// grpc-gateway v2.33's default matcher no longer forwards Grpc-Metadata-*.
		{"Grpc-Metadata- prefix is not forwarded", http.Header{"Grpc-Metadata-X-Api-Key": {keyReader}}, http.StatusUnauthorized, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/v1/users/u1/recommendations", nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.want)
			}
			if tc.principal != "" && !strings.Contains(string(body), `"requestId":"`+tc.principal+`"`) {
				t.Errorf("body %s does not name %s", body, tc.principal)
			}
			if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}
