package recserveclient

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// WithAPIKey sends key with every call as "x-api-key" metadata, for servers run
// with -api-keys-file. Like WithBearerToken, it needs TLS
// (WithTransportCredentials): without it, Dial fails.
func WithAPIKey(key string) Option {
	return WithDialOptions(grpc.WithPerRPCCredentials(perRPC{"x-api-key": key}))
}

// WithBearerToken sends a JWT with every call as "authorization: Bearer <token>"
// metadata, for servers run with -auth-jwks or -auth-hmac-secret-file.
func WithBearerToken(token string) Option {
	return WithDialOptions(grpc.WithPerRPCCredentials(perRPC{"authorization": "Bearer " + token}))
}

// perRPC is fixed request metadata that only travels over TLS.
type perRPC map[string]string

var _ credentials.PerRPCCredentials = perRPC(nil)

func (p perRPC) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return p, nil
}

func (perRPC) RequireTransportSecurity() bool { return true }
