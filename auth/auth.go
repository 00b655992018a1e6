// Package auth authenticates gRPC callers and authorizes each RPC by role.
//
// A caller presents either a JWT (metadata "authorization: Bearer <jwt>") or an API
// key (metadata "x-api-key: <key>"). The Authenticator turns the credential into a
// Principal, checks that the Policy grants the method's role to it and puts the
// Principal in the request context (FromContext). Missing or invalid credentials are
// UNAUTHENTICATED; valid credentials without the role are PERMISSION_DENIED.
//
// REST clients send the HTTP headers "Authorization: Bearer <jwt>" or
// "X-Api-Key: <key>". grpc-gateway forwards Authorization as authorization metadata
// by itself; X-Api-Key needs GatewayHeader in the gateway's incoming header matcher.
package auth

import (
	"context"
	"errors"
	"slices"
)

// The roles of recserve's API (see DefaultPolicy).
const (
	RoleRecommend = "recommend" // read RPCs: recommendations, similar items
	RoleIngest    = "ingest"    // writing interaction events
	RoleAdmin     = "admin"     // model lifecycle, user erasure, server reflection
	RoleCatalog   = "catalog"   // changing the item catalog
)

// Kinds of credential a Principal authenticated with.
const (
	KindJWT    = "jwt"
	KindAPIKey = "apikey"
)

// Errors of authentication and authorization. The interceptors map ErrPermissionDenied
// to PERMISSION_DENIED and every other error to UNAUTHENTICATED. No error carries a
// credential.
var (
	ErrNoCredentials      = errors.New("no credentials: send \"authorization: Bearer <token>\" or \"x-api-key: <key>\"")
	ErrInvalidCredentials = errors.New("invalid credentials")
	ErrInvalidToken       = errors.New("invalid token")
	ErrInvalidAPIKey      = errors.New("invalid API key")
	ErrPermissionDenied   = errors.New("permission denied")
)

// Principal is an authenticated caller.
type Principal struct {
	// Name is the JWT subject (sub) or the API key's configured name.
	Name  string
	Roles []string
	// Kind is KindJWT or KindAPIKey.
	Kind string
}

// String names the principal, as "kind:name"; it never includes a credential.
func (p Principal) String() string { return p.Kind + ":" + p.Name }

// HasRole reports whether p holds role.
func (p Principal) HasRole(role string) bool { return slices.Contains(p.Roles, role) }

type principalKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal the interceptors authenticated, if any. Methods the
// policy leaves public carry none.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
