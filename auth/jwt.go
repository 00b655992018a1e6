package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strings"
	"time"
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

// verifier checks JWTs: signature, time claims, issuer, audience; it returns the
// principal they name.
type verifier struct {
	hmacSecret []byte
	keys       *keySet // nil without a JWKS file
	issuer     string
	audience   string
	rolesClaim string
	skew       time.Duration
	now        func() time.Time
}

// tokenErr wraps ErrInvalidToken with a reason.
func tokenErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidToken, fmt.Sprintf(format, args...))
}

// b64 decodes unpadded base64url, rejecting padding and non-canonical encodings.
var b64 = base64.RawURLEncoding.Strict()

// verify checks token and returns its principal. It never panics, whatever token is.
func (v *verifier) verify(token string) (Principal, error) {
	if len(token) > MaxTokenLen {
		return Principal{}, tokenErr("longer than %d bytes", MaxTokenLen)
	}
	if strings.Count(token, ".") != 2 {
		return Principal{}, tokenErr("not a compact JWS (header.payload.signature)")
	}
	i := strings.IndexByte(token, '.')
	j := strings.LastIndexByte(token, '.')
	headerB64, payloadB64, sigB64 := token[:i], token[i+1:j], token[j+1:]

	header, err := decodeObject(headerB64)
	if err != nil {
		return Principal{}, tokenErr("header: %v", err)
	}
	sig, err := b64.DecodeString(sigB64)
	if err != nil {
		return Principal{}, tokenErr("signature: not base64url")
	}
	if err := v.checkSignature(header, token[:j], sig); err != nil {
		return Principal{}, err
	}
	claims, err := decodeObject(payloadB64)
	if err != nil {
		return Principal{}, tokenErr("payload: %v", err)
	}
	return v.checkClaims(claims)
}

// decodeObject decodes a base64url JSON object, keeping exact member names (Go's
// struct decoding would match "ALG" to alg).
func decodeObject(s string) (map[string]json.RawMessage, error) {
	raw, err := b64.DecodeString(s)
	if err != nil {
		return nil, errors.New("not base64url")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

// stringMember returns the string member name of m; ok is false when m lacks it.
func stringMember(m map[string]json.RawMessage, name string) (s string, ok bool, err error) {
	raw, ok := m[name]
	if !ok {
		return "", false, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", true, fmt.Errorf("%s is not a string", name)
	}
	return s, true, nil
}

// checkSignature verifies sig over signed with the key the header's alg and kid select.
func (v *verifier) checkSignature(header map[string]json.RawMessage, signed string, sig []byte) error {
	alg, ok, err := stringMember(header, "alg")
	if err != nil || !ok {
		return tokenErr("header: no alg")
	}
	if _, ok := header["crit"]; ok {
		return tokenErr("header: unsupported crit extensions")
	}
	kid, _, err := stringMember(header, "kid")
	if err != nil {
		return tokenErr("header: %v", err)
	}
	digest := sha256.Sum256([]byte(signed))
	switch alg {
	case algHS256:
		if len(v.hmacSecret) == 0 {
			return tokenErr("alg HS256 is not accepted")
		}
		mac := hmac.New(sha256.New, v.hmacSecret)
		mac.Write([]byte(signed))
		if !hmac.Equal(mac.Sum(nil), sig) {
			return tokenErr("bad signature")
		}
		return nil
	case algRS256, algES256:
		if v.keys == nil {
			return tokenErr("alg %s is not accepted", alg)
		}
		key, err := v.keys.lookup(kid, alg)
		if err != nil {
			return tokenErr("%v", err)
		}
		switch k := key.(type) {
		case *rsa.PublicKey:
			if alg != algRS256 || rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) != nil {
				return tokenErr("bad signature")
			}
			return nil
		case *ecdsa.PublicKey:
			if alg != algES256 || len(sig) != 64 {
				return tokenErr("bad signature")
			}
			r := new(big.Int).SetBytes(sig[:32])
			s := new(big.Int).SetBytes(sig[32:])
			if !ecdsa.Verify(k, digest[:], r, s) {
				return tokenErr("bad signature")
			}
			return nil
		}
		return tokenErr("key type does not match alg %s", alg)
	}
	if alg == "" || strings.EqualFold(alg, "none") {
		return tokenErr("unsigned tokens are not accepted")
	}
	return tokenErr("alg %q is not accepted (HS256, RS256, ES256)", truncate(alg, 16))
}

// checkClaims validates the registered claims and returns the principal.
func (v *verifier) checkClaims(c map[string]json.RawMessage) (Principal, error) {
	now := v.now()
	exp, ok, err := dateClaim(c, "exp")
	switch {
	case err != nil:
		return Principal{}, err
	case !ok:
		return Principal{}, tokenErr("no exp")
	case !now.Before(exp.Add(v.skew)):
		return Principal{}, tokenErr("expired")
	}
	if nbf, ok, err := dateClaim(c, "nbf"); err != nil {
		return Principal{}, err
	} else if ok && now.Add(v.skew).Before(nbf) {
		return Principal{}, tokenErr("not valid yet (nbf)")
	}
	if iat, ok, err := dateClaim(c, "iat"); err != nil {
		return Principal{}, err
	} else if ok && now.Add(v.skew).Before(iat) {
		return Principal{}, tokenErr("issued in the future (iat)")
	}
	if v.issuer != "" {
		iss, _, err := stringMember(c, "iss")
		if err != nil || iss != v.issuer {
			return Principal{}, tokenErr("wrong issuer")
		}
	}
	if v.audience != "" {
		aud, err := stringsClaim(c, "aud", false)
		if err != nil || !slices.Contains(aud, v.audience) {
			return Principal{}, tokenErr("wrong audience")
		}
	}
	sub, _, err := stringMember(c, "sub")
	if err != nil || sub == "" {
		return Principal{}, tokenErr("no sub")
	}
	roles, err := stringsClaim(c, v.rolesClaim, true)
	if err != nil {
		return Principal{}, err
	}
	if v.rolesClaim != "scope" {
		scope, err := stringsClaim(c, "scope", true)
		if err != nil {
			return Principal{}, err
		}
		roles = append(roles, scope...)
	}
	slices.Sort(roles)
	return Principal{Name: sub, Roles: slices.Compact(roles), Kind: KindJWT}, nil
}

// dateClaim decodes a NumericDate claim (seconds since the epoch, maybe fractional).
func dateClaim(c map[string]json.RawMessage, name string) (time.Time, bool, error) {
	raw, ok := c[name]
	if !ok {
		return time.Time{}, false, nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, true, tokenErr("%s is not a NumericDate", name)
	}
	sec := math.Floor(f)
	return time.Unix(int64(sec), int64((f-sec)*1e9)), true, nil
}

// stringsClaim decodes a claim that is a string or an array of strings; with split, a
// string is a space-separated list. A missing claim is empty.
func stringsClaim(c map[string]json.RawMessage, name string, split bool) ([]string, error) {
	raw, ok := c[name]
	if !ok {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		if split {
			return strings.Fields(s), nil
		}
		return []string{s}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, tokenErr("%s is not a string or an array of strings", truncate(name, 64))
	}
	return list, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
