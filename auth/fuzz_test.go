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
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fuzzSecret signs the seed corpus in testdata/fuzz/FuzzParseJWT.
var fuzzSecret = []byte("recserve-fuzz-secret-0123456789abcdef")

// fuzzVerifier is the verifier of FuzzParseJWT: HS256 with fuzzSecret, the test JWKS,
// and the issuer, audience and clock of the seed corpus.
func fuzzVerifier(tb testing.TB) *verifier {
	v := &verifier{
		hmacSecret: fuzzSecret,
		issuer:     "https://issuer.test",
		audience:   "recserve",
		rolesClaim: DefaultRolesClaim,
		skew:       DefaultClockSkew,
		now:        func() time.Time { return t0 },
	}
	var err error
	if v.keys, err = newKeySet(testJWKS(tb), v.now, slog.New(slog.DiscardHandler)); err != nil {
		tb.Fatal(err)
	}
	return v
}

// FuzzParseJWT feeds arbitrary tokens to the verifier, which must never panic. Each
// input is verified as it is and once more with its header and payload re-signed with
// the HS256 secret, so that mutated headers and claims get past the signature check.
func FuzzParseJWT(f *testing.F) {
	k := testKeys()
	v := fuzzVerifier(f)
	alice := claims("alice", RoleRecommend)
	f.Add(mint("HS256", "", fuzzSecret, alice))
	f.Add(mint("RS256", "rsa1", k.rsa, alice))
	f.Add(mint("ES256", "ec1", k.ec, alice))
	f.Add(mint("none", "", nil, alice))
	f.Fuzz(func(t *testing.T, token string) {
		check := func(token string) {
			p, err := v.verify(token)
			if err != nil {
				if p.Name != "" || p.Roles != nil {
					t.Fatalf("error %v with principal %v", err, p)
				}
				return
			}
			if p.Name == "" || p.Kind != KindJWT {
				t.Fatalf("accepted %q as %+v", token, p)
			}
			var h map[string]json.RawMessage
			raw, _ := base64.RawURLEncoding.DecodeString(token[:strings.IndexByte(token, '.')])
			if json.Unmarshal(raw, &h) != nil {
				t.Fatalf("accepted %q with an undecodable header", token)
			}
			if alg := string(h["alg"]); alg != `"HS256"` && alg != `"RS256"` && alg != `"ES256"` {
				t.Fatalf("accepted %q with alg %s", token, alg)
			}
		}
		check(token)
		if i := strings.LastIndexByte(token, '.'); i >= 0 {
			mac := hmac.New(sha256.New, fuzzSecret)
			mac.Write([]byte(token[:i]))
			check(token[:i] + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)))
		}
	})
}

// TestFuzzCorpus checks what the committed seeds mean: those listed are valid tokens,
// every other one is rejected.
func TestFuzzCorpus(t *testing.T) {
	valid := []string{"valid_hs256", "scope_and_aud_array", "fractional_dates", "utf8_claims"}
	v := fuzzVerifier(t)
	dir := filepath.Join("testdata", "fuzz", "FuzzParseJWT")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < 20 {
		t.Fatalf("%d seeds in %s", len(entries), dir)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "string(") {
			t.Fatalf("%s: not a fuzz corpus file", e.Name())
		}
		token, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "string("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		_, err = v.verify(token)
		if want := slices.Contains(valid, e.Name()); (err == nil) != want {
			t.Errorf("%s: valid %v, want %v (%v)", e.Name(), err == nil, want, err)
		}
	}
}

// FuzzParseToken feeds arbitrary strings to two verifiers, one with the HS256 secret
// and the test JWKS and one with the JWKS only. Neither may panic, and a token either
// accepts must be signed, as an independent check with crypto/* confirms, by the
// configured key of its alg's kind, and carry a valid exp, iss, aud and sub. Each
// input is also tried with its header and payload re-signed with the HS256 secret.
func FuzzParseToken(f *testing.F) {
	k := testKeys()
	full := fuzzVerifier(f)
	jwksOnly := &verifier{
		keys: full.keys, issuer: full.issuer, audience: full.audience,
		rolesClaim: DefaultRolesClaim, skew: DefaultClockSkew, now: full.now,
	}
	alice := claims("alice", RoleRecommend)
	valid := mint("HS256", "", fuzzSecret, alice)
	for _, seed := range []string{
		valid,
		mint("RS256", "rsa1", k.rsa, alice),
		mint("ES256", "ec1", k.ec, alice),
		mint("RS256", "", k.rsa, with(alice, "scope", "admin ingest")),
		mint("none", "", nil, alice),
		mint("None", "", fuzzSecret, alice),
		mint("HS256", "rsa1", publicPEM(&k.rsa.PublicKey), alice), // key confusion
		mint("ES256", "rsa1", k.ec, alice),
		mintHeader(map[string]any{"alg": "HS256", "crit": []string{"exp"}}, fuzzSecret, alice),
		valid[:len(valid)-1],
		valid[:strings.LastIndexByte(valid, '.')],
		valid[:strings.LastIndexByte(valid, '.')+1],
		valid[:strings.IndexByte(valid, '.')],
		valid[:10],
		"", ".", "..", "...",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		check := func(v *verifier, token string) {
			p, err := v.verify(token)
			if err != nil {
				if !errors.Is(err, ErrInvalidToken) {
					t.Fatalf("error %v does not wrap ErrInvalidToken", err)
				}
				if p.Name != "" || p.Roles != nil {
					t.Fatalf("error %v with principal %v", err, p)
				}
				return
			}
			if !signedByConfiguredKey(v, token, k) {
				t.Fatalf("accepted %q, which no configured key signed", token)
			}
			var c map[string]any
			parts := strings.Split(token, ".")
			raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
			if json.Unmarshal(raw, &c) != nil {
				t.Fatalf("accepted %q with undecodable claims", token)
			}
			exp, ok := c["exp"].(float64)
			if !ok || !t0.Before(time.Unix(int64(exp), 0).Add(DefaultClockSkew+time.Second)) {
				t.Fatalf("accepted %q without a valid exp", token)
			}
			if c["iss"] != v.issuer || p.Kind != KindJWT || p.Name == "" || c["sub"] != p.Name {
				t.Fatalf("accepted %q as %+v", token, p)
			}
			if aud, ok := c["aud"].(string); !ok || aud != v.audience {
				if list, _ := c["aud"].([]any); !slices.Contains(list, any(v.audience)) {
					t.Fatalf("accepted %q without audience %q", token, v.audience)
				}
			}
		}
		resigned := ""
		if i := strings.LastIndexByte(token, '.'); i >= 0 {
			mac := hmac.New(sha256.New, fuzzSecret)
			mac.Write([]byte(token[:i]))
			resigned = token[:i] + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
		}
		for _, v := range []*verifier{full, jwksOnly} {
			check(v, token)
			if resigned != "" {
				check(v, resigned)
			}
		}
	})
}

// signedByConfiguredKey reports whether token's signature is valid, by crypto/*
// alone, for its header's alg and a key v is configured with for that alg.
func signedByConfiguredKey(v *verifier, token string, k struct {
	rsa, rsa2 *rsa.PrivateKey
	ec        *ecdsa.PrivateKey
}) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	var h map[string]any
	raw, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || json.Unmarshal(raw, &h) != nil {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	signed := parts[0] + "." + parts[1]
	digest := sha256.Sum256([]byte(signed))
	switch h["alg"] {
	case "HS256":
		mac := hmac.New(sha256.New, v.hmacSecret)
		mac.Write([]byte(signed))
		return len(v.hmacSecret) > 0 && hmac.Equal(mac.Sum(nil), sig)
	case "RS256":
		return v.keys != nil && rsa.VerifyPKCS1v15(&k.rsa.PublicKey, crypto.SHA256, digest[:], sig) == nil
	case "ES256":
		return v.keys != nil && len(sig) == 64 &&
			ecdsa.Verify(&k.ec.PublicKey, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
	}
	return false
}
