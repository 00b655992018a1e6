package auth

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenLen bounds the size of a JWT the verifier looks at.
const MaxTokenLen = 8 << 10

// maxNumericDate is 9999-12-31T23:59:59Z: later dates are rejected.
const maxNumericDate = 253402300799

// Signature algorithms the verifier accepts. Each is tied to one kind of key: HS256 to
// Config.HMACSecret, RS256 to RSA and ES256 to P-256 keys of the JWKS, so a token
// cannot make the verifier use a public key as an HMAC secret.
const (
	algHS256 = "HS256"
	algRS256 = "RS256"
	algES256 = "ES256"
)

// verifier checks JWTs with github.com/golang-jwt/jwt/v5: signature, time claims,
// issuer, audience; it returns the principal they name.
type verifier struct {
	hmacSecret []byte
	keys       *keySet // nil without a JWKS file
	issuer     string
	audience   string
	rolesClaim string
	skew       time.Duration
	now        func() time.Time

	parserOnce sync.Once
	parser     *jwt.Parser
}

// tokenErr wraps ErrInvalidToken with a reason.
func tokenErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidToken, fmt.Sprintf(format, args...))
}

// b64 decodes unpadded base64url, rejecting padding and non-canonical encodings.
var b64 = base64.RawURLEncoding.Strict()

// jwtParser returns the parser of v's settings, built on first use. Only the
// algorithms of the configured keys are valid; "none" never is.
func (v *verifier) jwtParser() *jwt.Parser {
	v.parserOnce.Do(func() {
		methods := []string{} // not nil: jwt.WithValidMethods(nil) would allow any
		if len(v.hmacSecret) > 0 {
			methods = append(methods, algHS256)
		}
		if v.keys != nil {
			methods = append(methods, algRS256, algES256)
		}
		now := v.now
		if now == nil {
			now = time.Now
		}
		opts := []jwt.ParserOption{
			jwt.WithValidMethods(methods),
			jwt.WithStrictDecoding(),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(v.skew),
			jwt.WithTimeFunc(now),
		}
		if v.issuer != "" {
			opts = append(opts, jwt.WithIssuer(v.issuer))
		}
		if v.audience != "" {
			opts = append(opts, jwt.WithAudience(v.audience))
		}
		v.parser = jwt.NewParser(opts...)
	})
	return v.parser
}

// verify checks token and returns its principal. It never panics, whatever token is.
func (v *verifier) verify(token string) (Principal, error) {
	if len(token) > MaxTokenLen {
		return Principal{}, tokenErr("longer than %d bytes", MaxTokenLen)
	}
	var c tokenClaims
	if _, err := v.jwtParser().ParseWithClaims(token, &c, v.keyFor); err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	roles, err := stringsClaim(c.MapClaims, v.rolesClaim)
	if err != nil {
		return Principal{}, err
	}
	if v.rolesClaim != "scope" {
		scope, err := stringsClaim(c.MapClaims, "scope")
		if err != nil {
			return Principal{}, err
		}
		roles = append(roles, scope...)
	}
	slices.Sort(roles)
	sub, _ := c.GetSubject() // checked by Validate
	return Principal{Name: sub, Roles: slices.Compact(roles), Kind: KindJWT}, nil
}

// keyFor is the jwt.Keyfunc: it returns the key of the token's algorithm, and only a
// key of that algorithm's kind, so that a public key is never used as an HMAC secret
// nor an RSA key for ES256.
func (v *verifier) keyFor(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, errors.New("unsupported crit extensions")
	}
	kid, ok := t.Header["kid"].(string)
	if !ok && t.Header["kid"] != nil {
		return nil, errors.New("kid is not a string")
	}
	switch t.Method {
	case jwt.SigningMethodHS256:
		if len(v.hmacSecret) == 0 {
			return nil, errors.New("alg HS256 is not accepted")
		}
		return v.hmacSecret, nil
	case jwt.SigningMethodRS256, jwt.SigningMethodES256:
		alg := t.Method.Alg()
		if v.keys == nil {
			return nil, fmt.Errorf("alg %s is not accepted", alg)
		}
		key, err := v.keys.lookup(kid, alg)
		if err != nil {
			return nil, err
		}
		switch key.(type) {
		case *rsa.PublicKey:
			if alg == algRS256 {
				return key, nil
			}
		case *ecdsa.PublicKey:
			if alg == algES256 {
				return key, nil
			}
		}
		return nil, fmt.Errorf("key type does not match alg %s", alg)
	}
	return nil, errors.New("alg is not accepted (HS256, RS256, ES256)")
}

// tokenClaims are the claims of a token: a JSON object with its exact member names
// (Go's struct decoding would match "SUB" to sub). The library checks exp, nbf, iat,
// iss and aud; the date getters keep sub-second precision (jwt.MapClaims truncates to
// seconds) and the range 1970..9999, and Validate requires sub.
type tokenClaims struct{ jwt.MapClaims }

func (c *tokenClaims) UnmarshalJSON(data []byte) error {
	if err := json.Unmarshal(data, &c.MapClaims); err != nil || c.MapClaims == nil {
		return errors.New("claims are not a JSON object")
	}
	return nil
}

func (c *tokenClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.date("exp") }
func (c *tokenClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.date("nbf") }
func (c *tokenClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.date("iat") }

// date decodes a NumericDate claim (seconds since the epoch, maybe fractional).
func (c *tokenClaims) date(name string) (*jwt.NumericDate, error) {
	v, ok := c.MapClaims[name]
	if !ok {
		return nil, nil
	}
	f, ok := v.(float64)
	if !ok || f < 0 || f > maxNumericDate {
		return nil, fmt.Errorf("%w: %s is not a NumericDate", jwt.ErrInvalidType, name)
	}
	sec := math.Floor(f)
	return &jwt.NumericDate{Time: time.Unix(int64(sec), int64((f-sec)*1e9))}, nil
}

// Validate implements jwt.ClaimsValidator: sub is a non-empty string.
func (c *tokenClaims) Validate() error {
	if sub, ok := c.MapClaims["sub"].(string); !ok || sub == "" {
		return errors.New("no sub")
	}
	return nil
}

// stringsClaim decodes a claim that is a space-separated string or an array of
// strings (a null element is the empty string). A missing or null claim is empty.
func stringsClaim(c jwt.MapClaims, name string) ([]string, error) {
	switch x := c[name].(type) {
	case nil:
		return nil, nil
	case string:
		return strings.Fields(x), nil
	case []any:
		list := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok && e != nil {
				return nil, tokenErr("%s is not a string or an array of strings", truncate(name, 64))
			}
			list = append(list, s)
		}
		return list, nil
	}
	return nil, tokenErr("%s is not a string or an array of strings", truncate(name, 64))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
