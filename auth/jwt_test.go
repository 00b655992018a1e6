package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestVerifyEdges pins behaviours of the verifier kept from its hand-written
// predecessor: sub-second NumericDates, their range, the skew on each time claim,
// a null kid, and errors that wrap both ErrInvalidToken and the library's reason.
func TestVerifyEdges(t *testing.T) {
	k := testKeys()
	clk := newClock(t0)
	a, err := New(Config{HMACSecret: testSecret, JWKSFile: testJWKS(t), Issuer: "https://issuer.test", Audience: "recserve", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	now := float64(t0.Unix())
	alice := claims("alice", RoleRecommend)
	hs := func(c map[string]any) string { return mint("HS256", "", testSecret, c) }
	tests := []struct {
		name  string
		token string
		want  error // nil: valid; else wrapped besides ErrInvalidToken
	}{
		{"valid", hs(alice), nil},
		{"exp within skew, fractional", hs(with(alice, "exp", now-29.5)), nil},
		{"exp at the skew", hs(with(alice, "exp", now-30)), jwt.ErrTokenExpired},
		{"nbf within skew, fractional", hs(with(alice, "nbf", now+29.5)), nil},
		{"nbf past the skew, fractional", hs(with(alice, "nbf", now+30.5)), jwt.ErrTokenNotValidYet},
		{"iat past the skew", hs(with(alice, "iat", now+31)), jwt.ErrTokenUsedBeforeIssued},
		{"negative nbf", hs(with(alice, "nbf", -1)), jwt.ErrInvalidType},
		{"exp after 9999", hs(with(alice, "exp", maxNumericDate+1)), jwt.ErrInvalidType},
		{"exp a string", hs(with(alice, "exp", "tomorrow")), jwt.ErrInvalidType},
		{"no exp", hs(with(alice, "exp", nil)), jwt.ErrTokenRequiredClaimMissing},
		{"wrong iss", hs(with(alice, "iss", "x")), jwt.ErrTokenInvalidIssuer},
		{"wrong aud", hs(with(alice, "aud", []string{"x"})), jwt.ErrTokenInvalidAudience},
		{"null kid", mintHeader(map[string]any{"alg": "HS256", "kid": nil}, testSecret, alice), nil},
		{"kid a number", mintHeader(map[string]any{"alg": "HS256", "kid": 1}, testSecret, alice), jwt.ErrTokenUnverifiable},
		{"crit", mintHeader(map[string]any{"alg": "HS256", "crit": []string{"exp"}}, testSecret, alice), jwt.ErrTokenUnverifiable},
		{"alg none", mint("none", "", nil, alice), jwt.ErrTokenSignatureInvalid},
		{"HS256 keyed with the RSA public key", mint("HS256", "rsa1", publicPEM(&k.rsa.PublicKey), alice), jwt.ErrTokenSignatureInvalid},
		{"ES256 naming the RSA key", mint("ES256", "rsa1", k.ec, alice), jwt.ErrTokenUnverifiable},
		{"ES256 without kid", mint("ES256", "", k.ec, alice), nil},
		{"trailing data after the claims", mintRaw(`{"alg":"HS256"}`, `{"sub":"a","exp":1e10} x`), jwt.ErrTokenMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.jwt.verify(tc.token)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want == nil && p.Name != "alice":
				t.Fatalf("principal %+v", p)
			case tc.want != nil && (!errors.Is(err, ErrInvalidToken) || !errors.Is(err, tc.want)):
				t.Fatalf("got %v, want an error wrapping %v and %v", err, ErrInvalidToken, tc.want)
			}
		})
	}

	// The injected clock is the library's: at exp plus the skew, the token has expired.
	tok := hs(alice)
	clk.Advance(time.Hour + DefaultClockSkew)
	if _, err := a.jwt.verify(tok); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Fatalf("at exp + skew: %v", err)
	}
}

// mintRaw signs a header and payload given as JSON text with testSecret.
func mintRaw(header, payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	signed := enc([]byte(header)) + "." + enc([]byte(payload))
	mac := hmac.New(sha256.New, testSecret)
	mac.Write([]byte(signed))
	return signed + "." + enc(mac.Sum(nil))
}
