package auth_test

import (
	"log"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/recserve/recserve/auth"
	"github.com/recserve/recserve/ratelimit"
	"github.com/recserve/recserve/tlsreload"
)

// Example wires authentication, rate limits, the in-flight cap and reloadable mTLS
// into a gRPC server, and the REST gateway's connection to it.
func Example() {
	authn, err := auth.New(auth.Config{
		JWKSFile: "/etc/recserve/jwks.json",
		Issuer:   "https://login.example.com/",
		Audience: "recserve",
		APIKeys:  []string{"batch-loader:ingest:" + auth.HashKey("rsk_...")},
	})
	if err != nil {
		log.Fatal(err)
	}
	limiter, err := ratelimit.New(ratelimit.Config{
		Roles: map[string]ratelimit.Limit{
			auth.RoleRecommend: {Rate: 200, Burst: 400},
			auth.RoleIngest:    {Rate: 50, Burst: 100},
			auth.RoleAdmin:     {Rate: 5, Burst: 10},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	inflight, err := ratelimit.NewInFlight(512)
	if err != nil {
		log.Fatal(err)
	}
	cert, err := tlsreload.New("/etc/recserve/tls/server.pem", "/etc/recserve/tls/server-key.pem")
	if err != nil {
		log.Fatal(err)
	}
	serverTLS, err := tlsreload.ServerConfig(cert, "/etc/recserve/tls/client-ca.pem", true)
	if err != nil {
		log.Fatal(err)
	}
	// Cap first (a rejected call costs nothing), then authentication, then the
	// per-principal limit, which needs the principal.
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(serverTLS)),
		grpc.ChainUnaryInterceptor(inflight.UnaryInterceptor(), authn.UnaryInterceptor(), limiter.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(inflight.StreamInterceptor(), authn.StreamInterceptor(), limiter.StreamInterceptor()),
	)
	defer srv.Stop()

	// The gateway dials the server with its own client certificate and forwards the
	// REST client's Authorization and X-Api-Key headers.
	gatewayTLS, err := tlsreload.ClientConfig("/etc/recserve/tls/ca.pem",
		"/etc/recserve/tls/gateway.pem", "/etc/recserve/tls/gateway-key.pem", "recserve.internal")
	if err != nil {
		log.Fatal(err)
	}
	conn, err := grpc.NewClient("127.0.0.1:9090", grpc.WithTransportCredentials(credentials.NewTLS(gatewayTLS)))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	mux := runtime.NewServeMux(runtime.WithIncomingHeaderMatcher(func(key string) (string, bool) {
		if md, ok := auth.GatewayHeader(key); ok {
			return md, true
		}
		return runtime.DefaultHeaderMatcher(key)
	}))
	_ = mux // recservev1.Register...Handler(ctx, mux, conn), as gateway.New does
}
