package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"sync"
	"time"
)

const (
	// maxJWKSSize bounds the JWKS file.
	maxJWKSSize = 1 << 20
	// jwksCheckInterval is how often, at most, the JWKS file is checked for changes.
	jwksCheckInterval = time.Second
	// minRSABits is the smallest RSA modulus accepted.
	minRSABits = 2048
)

// jwk is one usable public key of a JWKS document.
type jwk struct {
	kid string
	alg string // the alg the key is for: RS256 or ES256
	key crypto.PublicKey
}

// keySet holds the keys of a JWKS file, re-read when the file changes.
type keySet struct {
	path string
	now  func() time.Time
	log  *slog.Logger

	mu        sync.Mutex
	keys      []jwk
	stamp     fileStamp // of the file the keys came from
	lastCheck time.Time
}

// fileStamp identifies a version of a file: a change of inode, size or mtime is a
// new version.
type fileStamp struct {
	info os.FileInfo
}

func statFile(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	return fileStamp{info: fi}, err
}

func (s fileStamp) same(o fileStamp) bool {
	if s.info == nil || o.info == nil {
		return false
	}
	return os.SameFile(s.info, o.info) && s.info.Size() == o.info.Size() && s.info.ModTime().Equal(o.info.ModTime())
}

func newKeySet(path string, now func() time.Time, log *slog.Logger) (*keySet, error) {
	ks := &keySet{path: path, now: now, log: log}
	if err := ks.reload(); err != nil {
		return nil, err
	}
	return ks, nil
}

// reload reads the file now; on failure the keys stay as they were.
func (ks *keySet) reload() error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.lastCheck = ks.now()
	return ks.loadLocked()
}

func (ks *keySet) loadLocked() error {
	st, err := statFile(ks.path)
	if err != nil {
		return fmt.Errorf("auth: jwks: %w", err)
	}
	f, err := os.Open(ks.path)
	if err != nil {
		return fmt.Errorf("auth: jwks: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxJWKSSize+1))
	if err != nil {
		return fmt.Errorf("auth: jwks: %w", err)
	}
	if len(data) > maxJWKSSize {
		return fmt.Errorf("auth: jwks %s: larger than %d bytes", ks.path, maxJWKSSize)
	}
	keys, err := parseJWKS(data)
	if err != nil {
		return fmt.Errorf("auth: jwks %s: %w", ks.path, err)
	}
	ks.keys, ks.stamp = keys, st
	return nil
}

// current returns the keys, first re-reading the file if a second has passed since the
// last check and the file changed. A failed re-read is logged and keeps the old keys;
// it is retried at the next check.
func (ks *keySet) current() []jwk {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	now := ks.now()
	if now.Sub(ks.lastCheck) < jwksCheckInterval && !now.Before(ks.lastCheck) {
		return ks.keys
	}
	ks.lastCheck = now
	if st, err := statFile(ks.path); err == nil && st.same(ks.stamp) {
		return ks.keys
	}
	if err := ks.loadLocked(); err != nil {
		ks.log.Error("JWKS reload failed; keeping the previous keys", "err", err)
	} else {
		ks.log.Info("JWKS reloaded", "path", ks.path, "keys", len(ks.keys))
	}
	return ks.keys
}

// lookup returns the key for a token signed with alg: the key named kid, or without a
// kid the only key for alg.
func (ks *keySet) lookup(kid, alg string) (crypto.PublicKey, error) {
	keys := ks.current()
	var found *jwk
	n := 0
	for i := range keys {
		k := &keys[i]
		if kid != "" && k.kid == kid {
			found, n = k, 1
			break
		}
		if kid == "" && k.alg == alg {
			found = k
			n++
		}
	}
	switch {
	case n == 0 && kid != "":
		return nil, errors.New("unknown kid")
	case n == 0:
		return nil, fmt.Errorf("no %s key", alg)
	case n > 1:
		return nil, errors.New("no kid and several keys")
	case found.alg != alg:
		return nil, fmt.Errorf("key %q is for %s, token is %s", truncate(kid, 64), found.alg, alg)
	}
	return found.key, nil
}

// parseJWKS decodes a JWKS document (RFC 7517). It keeps RSA keys (for RS256, at least
// 2048 bits) and P-256 EC keys (for ES256) meant for signatures; symmetric and other
// keys are ignored, so a JWKS can never supply an HMAC secret.
func parseJWKS(data []byte) ([]jwk, error) {
	var doc struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			Use string `json:"use"`
			Alg string `json:"alg"`
			N   string `json:"n"`
			E   string `json:"e"`
			Crv string `json:"crv"`
			X   string `json:"x"`
			Y   string `json:"y"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not a JWKS document: %w", err)
	}
	var keys []jwk
	kids := map[string]bool{}
	for i, k := range doc.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var key jwk
		switch k.Kty {
		case "RSA":
			if k.Alg != "" && k.Alg != algRS256 {
				continue
			}
			pub, err := rsaKey(k.N, k.E)
			if err != nil {
				return nil, fmt.Errorf("key %d (kid %q): %w", i, k.Kid, err)
			}
			key = jwk{kid: k.Kid, alg: algRS256, key: pub}
		case "EC":
			if (k.Alg != "" && k.Alg != algES256) || k.Crv != "P-256" {
				continue
			}
			pub, err := p256Key(k.X, k.Y)
			if err != nil {
				return nil, fmt.Errorf("key %d (kid %q): %w", i, k.Kid, err)
			}
			key = jwk{kid: k.Kid, alg: algES256, key: pub}
		default:
			continue
		}
		if key.kid != "" {
			if kids[key.kid] {
				return nil, fmt.Errorf("duplicate kid %q", key.kid)
			}
			kids[key.kid] = true
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("no RS256 or ES256 signing key")
	}
	return keys, nil
}

func rsaKey(n64, e64 string) (*rsa.PublicKey, error) {
	nb, err := b64.DecodeString(n64)
	if err != nil {
		return nil, errors.New("n is not base64url")
	}
	eb, err := b64.DecodeString(e64)
	if err != nil || len(eb) == 0 || len(eb) > 4 {
		return nil, errors.New("bad e")
	}
	n := new(big.Int).SetBytes(nb)
	e := new(big.Int).SetBytes(eb).Int64()
	if n.BitLen() < minRSABits {
		return nil, fmt.Errorf("RSA key of %d bits, want at least %d", n.BitLen(), minRSABits)
	}
	if e < 3 || e%2 == 0 || e > 1<<31-1 {
		return nil, errors.New("bad e")
	}
	return &rsa.PublicKey{N: n, E: int(e)}, nil
}

func p256Key(x64, y64 string) (*ecdsa.PublicKey, error) {
	x, errX := b64.DecodeString(x64)
	y, errY := b64.DecodeString(y64)
	if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
		return nil, errors.New("bad P-256 coordinates")
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		return nil, errors.New("point not on P-256")
	}
	return pub, nil
}
