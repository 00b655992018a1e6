package auth

import (
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Metadata keys that carry credentials.
const (
	MetadataAuthorization = "authorization" // "Bearer <jwt>"
	MetadataAPIKey        = "x-api-key"     // "<key>"
)

// Authenticator authenticates requests and enforces a Policy.
type Authenticator struct {
	policy Policy
	jwt    *verifier // nil when no JWT is accepted
	keys   []apiKey
}

// New validates cfg, reads the JWKS file if any, and returns the Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	keys, err := parseAPIKeys(cfg.APIKeys)
	if err != nil {
		return nil, err
	}
	a := &Authenticator{policy: cfg.Policy, keys: keys}
	if len(cfg.HMACSecret) > 0 || cfg.JWKSFile != "" {
		a.jwt = &verifier{
			hmacSecret: append([]byte(nil), cfg.HMACSecret...),
			issuer:     cfg.Issuer,
			audience:   cfg.Audience,
			rolesClaim: cfg.RolesClaim,
			skew:       cfg.ClockSkew,
			now:        cfg.Now,
		}
		if cfg.JWKSFile != "" {
			if a.jwt.keys, err = newKeySet(cfg.JWKSFile, cfg.Now, cfg.Logger); err != nil {
				return nil, err
			}
		}
	}
	return a, nil
}

// Reload re-reads the JWKS file now. On error the previous keys stay in use. Without
// a JWKS file it does nothing.
func (a *Authenticator) Reload() error {
	if a.jwt == nil || a.jwt.keys == nil {
		return nil
	}
	return a.jwt.keys.reload()
}

// Authenticate returns the principal of the credentials in ctx's incoming metadata.
func (a *Authenticator) Authenticate(ctx context.Context) (Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	authz, keys := md.Get(MetadataAuthorization), md.Get(MetadataAPIKey)
	switch {
	case len(authz)+len(keys) == 0:
		return Principal{}, ErrNoCredentials
	case len(authz)+len(keys) > 1:
		return Principal{}, fmt.Errorf("%w: more than one credential", ErrInvalidCredentials)
	case len(keys) == 1:
		if len(a.keys) == 0 {
			return Principal{}, fmt.Errorf("%w: API keys are not accepted", ErrInvalidAPIKey)
		}
		return matchAPIKey(a.keys, keys[0])
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(authz[0]), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return Principal{}, fmt.Errorf("%w: authorization is not \"Bearer <token>\"", ErrInvalidCredentials)
	}
	if a.jwt == nil {
		return Principal{}, fmt.Errorf("%w: bearer tokens are not accepted", ErrInvalidToken)
	}
	return a.jwt.verify(strings.TrimSpace(token))
}

// authorize authenticates the caller of fullMethod and checks the policy; it returns
// ctx carrying the principal. Public methods are let through unauthenticated.
func (a *Authenticator) authorize(ctx context.Context, fullMethod string) (context.Context, error) {
	role, known := a.policy.Role(fullMethod)
	if known && role == Public {
		return ctx, nil
	}
	p, err := a.Authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	if !known {
		return nil, toStatus(fmt.Errorf("%w: %s is not in the access policy", ErrPermissionDenied, fullMethod))
	}
	if !p.HasRole(role) {
		return nil, toStatus(fmt.Errorf("%w: %s needs role %q", ErrPermissionDenied, fullMethod, role))
	}
	return NewContext(ctx, p), nil
}

// toStatus is where authentication errors become gRPC status codes.
func toStatus(err error) error {
	if errors.Is(err, ErrPermissionDenied) {
		return status.Error(codes.PermissionDenied, err.Error())
	}
	return status.Error(codes.Unauthenticated, err.Error())
}

// UnaryInterceptor authenticates and authorizes unary calls.
func (a *Authenticator) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor authenticates and authorizes streams.
func (a *Authenticator) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &serverStream{ServerStream: ss, ctx: ctx})
	}
}

// serverStream is ss with the principal's context.
type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }

// GatewayHeader is the part of a grpc-gateway incoming header matcher that forwards
// the X-Api-Key HTTP header as x-api-key metadata (grpc-gateway always forwards
// Authorization as authorization metadata). Combine it with the default matcher:
//
//	runtime.WithIncomingHeaderMatcher(func(k string) (string, bool) {
//		if md, ok := auth.GatewayHeader(k); ok {
//			return md, true
//		}
//		return runtime.DefaultHeaderMatcher(k)
//	})
func GatewayHeader(key string) (string, bool) {
	if textproto.CanonicalMIMEHeaderKey(key) == "X-Api-Key" {
		return MetadataAPIKey, true
	}
	return "", false
}
