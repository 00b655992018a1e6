package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseJWKS(t *testing.T) {
	k := testKeys()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	rsaJWK, ecJWK := jwkOf("rsa1", &k.rsa.PublicKey), jwkOf("ec1", &k.ec.PublicKey)
	set := func(keys ...map[string]any) string {
		b, _ := json.Marshal(map[string]any{"keys": keys})
		return string(b)
	}
	tests := []struct {
		name string
		doc  string
		n    int    // keys kept
		err  string // substring; empty: valid
	}{
		{"RSA and EC", set(rsaJWK, ecJWK), 2, ""},
		{"encryption key skipped", set(rsaJWK, with(ecJWK, "use", "enc")), 1, ""},
		{"symmetric key skipped", set(rsaJWK, map[string]any{"kty": "oct", "kid": "hmac", "k": enc(testSecret)}), 1, ""},
		{"RS512 key skipped", set(with(rsaJWK, "alg", "RS512"), ecJWK), 1, ""},
		{"P-384 key skipped", set(rsaJWK, map[string]any{"kty": "EC", "kid": "p384", "crv": "P-384", "x": enc(p384.X.Bytes()), "y": enc(p384.Y.Bytes())}), 1, ""},
		{"only a symmetric key", set(map[string]any{"kty": "oct", "k": enc(testSecret)}), 0, "no RS256 or ES256"},
		{"empty", `{"keys":[]}`, 0, "no RS256 or ES256"},
		{"not JSON", `{"keys":`, 0, "not a JWKS"},
		{"keys not an array", `{"keys":{}}`, 0, "not a JWKS"},
		{"duplicate kid", set(rsaJWK, with(ecJWK, "kid", "rsa1")), 0, "duplicate kid"},
		{"1024-bit RSA", set(jwkOf("small", &small.PublicKey)), 0, "at least 2048"},
		{"RSA even e", set(with(rsaJWK, "e", enc([]byte{1, 0, 0}))), 0, "bad e"},
		{"RSA n not base64url", set(with(rsaJWK, "n", "+/+/")), 0, "n is not base64url"},
		{"EC point off the curve", set(with(ecJWK, "y", ecJWK["x"])), 0, "not on P-256"},
		{"EC short coordinate", set(with(ecJWK, "x", enc([]byte{1, 2, 3}))), 0, "coordinates"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := parseJWKS([]byte(tc.doc))
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("got error %v, want one containing %q", err, tc.err)
			case len(keys) != tc.n:
				t.Fatalf("kept %d keys, want %d", len(keys), tc.n)
			}
		})
	}
}

// TestJWKSReload rotates the signing key in the JWKS file: tokens of the new key are
// accepted once the file has been checked again (at most a second later), a broken
// file keeps the old keys, and Reload reports it.
func TestJWKSReload(t *testing.T) {
	k := testKeys()
	file := filepath.Join(t.TempDir(), "jwks.json")
	writeJWKS(t, file, jwkOf("old", &k.rsa.PublicKey))
	clk := newClock(t0)
	var logs bytes.Buffer
	a, err := New(Config{JWKSFile: file, Now: clk.Now, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	alice := claims("alice", RoleRecommend)
	oldTok, newTok := mint("RS256", "old", k.rsa, alice), mint("RS256", "new", k.rsa2, alice)
	verify := func(tok string) error { _, err := a.jwt.verify(tok); return err }
	if err := verify(oldTok); err != nil {
		t.Fatal(err)
	}
	if err := verify(newTok); err == nil {
		t.Fatal("token of an unknown key accepted")
	}

	writeJWKS(t, file, jwkOf("old", &k.rsa.PublicKey), jwkOf("new", &k.rsa2.PublicKey))
	if err := verify(newTok); err == nil {
		t.Fatal("file checked again within a second")
	}
	clk.Advance(time.Second)
	if err := verify(newTok); err != nil {
		t.Fatalf("after rotation: %v", err)
	}

	// A broken file keeps the keys, is logged, and Reload says why.
	if err := os.WriteFile(file, []byte(`{"keys": [`), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if err := verify(newTok); err != nil {
		t.Fatalf("after a broken rewrite: %v", err)
	}
	if !strings.Contains(logs.String(), "JWKS reload failed") {
		t.Errorf("broken JWKS not logged: %s", logs.String())
	}
	if err := a.Reload(); err == nil || !strings.Contains(err.Error(), "not a JWKS") {
		t.Errorf("Reload of a broken file: %v", err)
	}

	// Dropping the old key revokes its tokens.
	writeJWKS(t, file, jwkOf("new", &k.rsa2.PublicKey))
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := verify(oldTok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("token of a removed key: %v", err)
	}
}
