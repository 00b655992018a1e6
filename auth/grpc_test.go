package auth

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// Test API keys and their configuration.
const (
	keyReader   = "rsk_reader-key-0001"
	keyIngester = "rsk_ingest-key-0002"
	keyOps      = "rsk_ops-key-0003"
)

var testAPIKeys = []string{
	"reader:recommend:" + HashKey(keyReader),
	"ingester:ingest:" + HashKey(keyIngester),
	"ops:admin,recommend:" + HashKey(keyOps),
}

// fakeRecommend answers with the caller's principal as the request id.
type fakeRecommend struct {
	recservev1.UnimplementedRecommendServiceServer
}

func principalName(ctx context.Context) string {
	p, ok := FromContext(ctx)
	if !ok {
		return "none"
	}
	return p.String()
}

func (fakeRecommend) Recommend(ctx context.Context, _ *recservev1.RecommendRequest) (*recservev1.RecommendResponse, error) {
	return &recservev1.RecommendResponse{RequestId: principalName(ctx)}, nil
}

type fakeEvents struct {
	recservev1.UnimplementedEventServiceServer
}

func (fakeEvents) RecordEvents(context.Context, *recservev1.RecordEventsRequest) (*recservev1.RecordEventsResponse, error) {
	return &recservev1.RecordEventsResponse{}, nil
}

type fakeAdmin struct {
	recservev1.UnimplementedModelAdminServiceServer
}

func (fakeAdmin) ListModels(context.Context, *recservev1.ListModelsRequest) (*recservev1.ListModelsResponse, error) {
	return &recservev1.ListModelsResponse{}, nil
}

// unlistedMethod is served but not in DefaultPolicy.
const unlistedMethod = "/test.Unlisted/Do"

var unlistedDesc = grpc.ServiceDesc{
	ServiceName: "test.Unlisted",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Do",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(context.Context, any) (any, error) { return &emptypb.Empty{}, nil }
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: unlistedMethod}, h)
		},
	}},
}

// startServer serves the recserve fakes, health, reflection and test.Unlisted on
// 127.0.0.1:0 behind a's interceptors, and returns a client connection.
func startServer(t *testing.T, a *Authenticator, more ...grpc.ServerOption) (*grpc.ClientConn, *grpc.Server) {
	t.Helper()
	opts := append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(a.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(a.StreamInterceptor()),
	}, more...)
	s := grpc.NewServer(opts...)
	recservev1.RegisterRecommendServiceServer(s, fakeRecommend{})
	recservev1.RegisterEventServiceServer(s, fakeEvents{})
	recservev1.RegisterModelAdminServiceServer(s, fakeAdmin{})
	healthpb.RegisterHealthServer(s, health.NewServer())
	reflection.Register(s)
	s.RegisterService(&unlistedDesc, struct{}{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		s.Stop()
		<-done
	})
	return conn, s
}

func testConfig(t testing.TB) Config {
	return Config{
		HMACSecret: testSecret,
		JWKSFile:   testJWKS(t),
		Issuer:     "https://issuer.test",
		Audience:   "recserve",
		APIKeys:    testAPIKeys,
		Now:        func() time.Time { return t0 },
	}
}

// rpc is one call a test case makes; it returns the RPC's error and, for Recommend,
// the principal the handler saw.
type rpc func(ctx context.Context, conn *grpc.ClientConn) (string, error)

func callRecommend(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	resp, err := recservev1.NewRecommendServiceClient(conn).Recommend(ctx, &recservev1.RecommendRequest{UserId: "u1"})
	return resp.GetRequestId(), err
}

func callRecordEvents(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	_, err := recservev1.NewEventServiceClient(conn).RecordEvents(ctx, &recservev1.RecordEventsRequest{})
	return "", err
}

func callListModels(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	_, err := recservev1.NewModelAdminServiceClient(conn).ListModels(ctx, &recservev1.ListModelsRequest{})
	return "", err
}

func callPromote(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	_, err := recservev1.NewModelAdminServiceClient(conn).Promote(ctx, &recservev1.PromoteRequest{})
	return "", err
}

func callHealth(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return "", err
}

func callHealthWatch(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return "", err
	}
	_, err = st.Recv()
	return "", err
}

func callReflection(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return "", err
	}
	// A stream the server has already ended (rejected) fails Send with io.EOF;
	// its status comes with Recv.
	if err := st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	_, err = st.Recv()
	return "", err
}

func callUnlisted(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	return "", conn.Invoke(ctx, unlistedMethod, &emptypb.Empty{}, &emptypb.Empty{})
}

func bearer(token string) metadata.MD { return metadata.Pairs("authorization", "Bearer "+token) }
func keyMD(key string) metadata.MD    { return metadata.Pairs("x-api-key", key) }

func TestInterceptors(t *testing.T) {
	k := testKeys()
	a, err := New(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	conn, _ := startServer(t, a)

	// jwksOnly accepts RS256/ES256 only: the setting of the classic HS/RS confusion.
	jwksOnly, err := New(Config{JWKSFile: testJWKS(t), Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	jwksConn, _ := startServer(t, jwksOnly)

	alice := claims("alice", RoleRecommend)
	hs := func(c map[string]any) metadata.MD { return bearer(mint("HS256", "", testSecret, c)) }
	rs := func(c map[string]any) metadata.MD { return bearer(mint("RS256", "rsa1", k.rsa, c)) }
	es := func(c map[string]any) metadata.MD { return bearer(mint("ES256", "ec1", k.ec, c)) }
	tampered := func() metadata.MD {
		tok := mint("RS256", "rsa1", k.rsa, alice)
		parts := strings.Split(tok, ".")
		parts[1] = b64json(with(alice, "roles", []string{RoleAdmin, RoleRecommend}))
		return bearer(strings.Join(parts, "."))
	}
	confusion := bearer(mint("HS256", "rsa1", publicPEM(&k.rsa.PublicKey), alice))

	tests := []struct {
		name      string
		conn      *grpc.ClientConn // nil: the full server
		md        metadata.MD
		call      rpc
		want      codes.Code
		principal string // for OK Recommend calls
	}{
		{name: "no credentials", call: callRecommend, want: codes.Unauthenticated},
		{name: "HS256", md: hs(alice), call: callRecommend, want: codes.OK, principal: "jwt:alice"},
		{name: "RS256", md: rs(alice), call: callRecommend, want: codes.OK, principal: "jwt:alice"},
		{name: "ES256", md: es(alice), call: callRecommend, want: codes.OK, principal: "jwt:alice"},
		{name: "lowercase bearer scheme", md: metadata.Pairs("authorization", "bearer "+mint("HS256", "", testSecret, alice)), call: callRecommend, want: codes.OK, principal: "jwt:alice"},
		{name: "role in scope", md: hs(with(alice, "roles", nil, "scope", "openid recommend")), call: callRecommend, want: codes.OK, principal: "jwt:alice"},
		{name: "aud array", md: hs(with(alice, "aud", []string{"other", "recserve"})), call: callRecommend, want: codes.OK, principal: "jwt:alice"},
		{name: "expired within skew", md: hs(with(alice, "exp", t0.Add(-10*time.Second).Unix())), call: callRecommend, want: codes.OK, principal: "jwt:alice"},
		{name: "bad HS256 signature", md: bearer(mint("HS256", "", []byte("another-secret-another-secret-1234"), alice)), call: callRecommend, want: codes.Unauthenticated},
		{name: "RS256 signed by another key", md: bearer(mint("RS256", "rsa1", k.rsa2, alice)), call: callRecommend, want: codes.Unauthenticated},
		{name: "tampered payload", md: tampered(), call: callRecommend, want: codes.Unauthenticated},
		{name: "expired", md: hs(with(alice, "exp", t0.Add(-time.Hour).Unix())), call: callRecommend, want: codes.Unauthenticated},
		{name: "no exp", md: hs(with(alice, "exp", nil)), call: callRecommend, want: codes.Unauthenticated},
		{name: "exp a string", md: hs(with(alice, "exp", "2099-01-01")), call: callRecommend, want: codes.Unauthenticated},
		{name: "nbf in the future", md: hs(with(alice, "nbf", t0.Add(time.Hour).Unix())), call: callRecommend, want: codes.Unauthenticated},
		{name: "iat in the future", md: hs(with(alice, "iat", t0.Add(time.Hour).Unix())), call: callRecommend, want: codes.Unauthenticated},
		{name: "wrong aud", md: hs(with(alice, "aud", "someone-else")), call: callRecommend, want: codes.Unauthenticated},
		{name: "no aud", md: hs(with(alice, "aud", nil)), call: callRecommend, want: codes.Unauthenticated},
		{name: "wrong iss", md: hs(with(alice, "iss", "https://evil.test")), call: callRecommend, want: codes.Unauthenticated},
		{name: "no sub", md: hs(with(alice, "sub", nil)), call: callRecommend, want: codes.Unauthenticated},
		{name: "alg none", md: bearer(mint("none", "", nil, alice)), call: callRecommend, want: codes.Unauthenticated},
		{name: "alg None with a signature", md: bearer(mint("None", "", testSecret, alice)), call: callRecommend, want: codes.Unauthenticated},
		{name: "no alg", md: bearer(mintHeader(map[string]any{"typ": "JWT"}, testSecret, alice)), call: callRecommend, want: codes.Unauthenticated},
		{name: "ALG member is not alg", md: bearer(mintHeader(map[string]any{"ALG": "HS256"}, testSecret, alice)), call: callRecommend, want: codes.Unauthenticated},
		{name: "crit header", md: bearer(mintHeader(map[string]any{"alg": "HS256", "crit": []string{"x"}, "x": 1}, testSecret, alice)), call: callRecommend, want: codes.Unauthenticated},
		{name: "HS384 not accepted", md: bearer(mint("HS384", "", testSecret, alice)), call: callRecommend, want: codes.Unauthenticated},
		{name: "HS256 with the RSA public key as secret", md: confusion, call: callRecommend, want: codes.Unauthenticated},
		{name: "HS256 with the RSA public key as secret, JWKS-only server", conn: jwksConn, md: confusion, call: callRecommend, want: codes.Unauthenticated},
		{name: "RS256 accepted by the JWKS-only server", conn: jwksConn, md: rs(alice), call: callRecommend, want: codes.OK, principal: "jwt:alice"},
		{name: "HS256 on the JWKS-only server", conn: jwksConn, md: hs(alice), call: callRecommend, want: codes.Unauthenticated},
		{name: "RS256 naming the EC key", md: bearer(mint("RS256", "ec1", k.rsa, alice)), call: callRecommend, want: codes.Unauthenticated},
		{name: "ES256 naming the RSA key", md: bearer(mint("ES256", "rsa1", k.ec, alice)), call: callRecommend, want: codes.Unauthenticated},
		{name: "unknown kid", md: bearer(mint("RS256", "rsa9", k.rsa, alice)), call: callRecommend, want: codes.Unauthenticated},
		{name: "RS256 without kid, one RSA key", md: bearer(mint("RS256", "", k.rsa, alice)), call: callRecommend, want: codes.OK, principal: "jwt:alice"},
		{name: "garbage token", md: bearer("not.a.jwt"), call: callRecommend, want: codes.Unauthenticated},
		{name: "empty bearer", md: metadata.Pairs("authorization", "Bearer "), call: callRecommend, want: codes.Unauthenticated},
		{name: "Basic auth", md: metadata.Pairs("authorization", "Basic dXNlcjpwYXNz"), call: callRecommend, want: codes.Unauthenticated},
		{name: "token and API key", md: metadata.Join(hs(alice), keyMD(keyReader)), call: callRecommend, want: codes.Unauthenticated},
		{name: "two API keys", md: metadata.Pairs("x-api-key", keyReader, "x-api-key", keyOps), call: callRecommend, want: codes.Unauthenticated},
		{name: "JWT without the role", md: hs(claims("bob", RoleIngest)), call: callRecommend, want: codes.PermissionDenied},
		{name: "JWT without roles", md: hs(with(alice, "roles", nil)), call: callRecommend, want: codes.PermissionDenied},
		{name: "JWT with the ingest role", md: hs(claims("bob", RoleIngest)), call: callRecordEvents, want: codes.OK},
		{name: "custom roles claim ignored", md: hs(with(alice, "roles", nil, "groups", []string{RoleRecommend})), call: callRecommend, want: codes.PermissionDenied},
		{name: "API key", md: keyMD(keyReader), call: callRecommend, want: codes.OK, principal: "apikey:reader"},
		{name: "bad API key", md: keyMD("rsk_wrong"), call: callRecommend, want: codes.Unauthenticated},
		{name: "API key hash sent as the key", md: keyMD(HashKey(keyReader)), call: callRecommend, want: codes.Unauthenticated},
		{name: "API key without the role", md: keyMD(keyIngester), call: callRecommend, want: codes.PermissionDenied},
		{name: "API key with ingest", md: keyMD(keyIngester), call: callRecordEvents, want: codes.OK},
		{name: "API key with recommend cannot ingest", md: keyMD(keyReader), call: callRecordEvents, want: codes.PermissionDenied},
		{name: "admin RPC as admin", md: keyMD(keyOps), call: callListModels, want: codes.OK},
		{name: "admin RPC as admin, unimplemented reaches the handler", md: keyMD(keyOps), call: callPromote, want: codes.Unimplemented},
		{name: "admin RPC as reader", md: keyMD(keyReader), call: callPromote, want: codes.PermissionDenied},
		{name: "admin RPC without credentials", call: callListModels, want: codes.Unauthenticated},
		{name: "admin JWT", md: hs(claims("root", RoleAdmin)), call: callListModels, want: codes.OK},
		{name: "health without credentials", call: callHealth, want: codes.OK},
		{name: "health with bad credentials", md: keyMD("rsk_wrong"), call: callHealth, want: codes.OK},
		{name: "health watch without credentials", call: callHealthWatch, want: codes.OK},
		{name: "reflection without credentials", call: callReflection, want: codes.Unauthenticated},
		{name: "reflection as reader", md: keyMD(keyReader), call: callReflection, want: codes.PermissionDenied},
		{name: "reflection as admin", md: keyMD(keyOps), call: callReflection, want: codes.OK},
		{name: "unlisted method without credentials", call: callUnlisted, want: codes.Unauthenticated},
		{name: "unlisted method as admin", md: keyMD(keyOps), call: callUnlisted, want: codes.PermissionDenied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if tc.md != nil {
				ctx = metadata.NewOutgoingContext(ctx, tc.md)
			}
			c := conn
			if tc.conn != nil {
				c = tc.conn
			}
			principal, err := tc.call(ctx, c)
			t.Logf("%v", err)
			if got := status.Code(err); got != tc.want {
				t.Fatalf("got %v (%v), want %v", got, err, tc.want)
			}
			if tc.principal != "" && principal != tc.principal {
				t.Errorf("handler saw principal %q, want %q", principal, tc.principal)
			}
			for _, secret := range []string{keyReader, keyIngester, keyOps, "rsk_wrong", string(testSecret)} {
				if err != nil && strings.Contains(err.Error(), secret) {
					t.Errorf("error %q contains a credential", err)
				}
			}
		})
	}
}

// TestDefaultPolicyCoversServer checks that every method the server serves, except
// test.Unlisted, has a policy entry, so a new RPC cannot ship unreachable or, worse,
// without a decision.
func TestDefaultPolicyCoversServer(t *testing.T) {
	a, err := New(Config{APIKeys: testAPIKeys})
	if err != nil {
		t.Fatal(err)
	}
	_, s := startServer(t, a)
	p := DefaultPolicy()
	n := 0
	for svc, info := range s.GetServiceInfo() {
		for _, m := range info.Methods {
			full := "/" + svc + "/" + m.Name
			role, ok := p.Role(full)
			if svc == "test.Unlisted" {
				if ok {
					t.Errorf("%s has role %q", full, role)
				}
				continue
			}
			n++
			if !ok {
				t.Errorf("%s has no policy entry", full)
			}
			if strings.HasPrefix(svc, "recserve.") && role == Public {
				t.Errorf("%s is public", full)
			}
		}
	}
	if n < 12 {
		t.Errorf("checked only %d methods", n)
	}
}
