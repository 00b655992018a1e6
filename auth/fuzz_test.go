package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
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
