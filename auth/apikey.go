package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// MaxAPIKeyLen bounds a presented API key.
const MaxAPIKeyLen = 256

// apiKey is a configured key: its SHA-256 and who it stands for.
type apiKey struct {
	name  string
	roles []string
	hash  [sha256.Size]byte
}

// HashKey returns the hex SHA-256 of an API key, the form Config.APIKeys holds.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// GenerateKey returns a new random API key: "rsk_" and 256 random bits in base64url.
func GenerateKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return "rsk_" + base64.RawURLEncoding.EncodeToString(b)
}

// parseAPIKeys parses "name:role1,role2:sha256hex" entries. Errors name the entry by
// position and name, never by its hash.
func parseAPIKeys(entries []string) ([]apiKey, error) {
	keys := make([]apiKey, 0, len(entries))
	seen := map[[sha256.Size]byte]bool{}
	for i, e := range entries {
		parts := strings.Split(e, ":")
		if len(parts) != 3 {
			return nil, fmt.Errorf("auth: API key entry %d: want name:role1,role2:sha256hex", i)
		}
		name, roles, hexHash := strings.TrimSpace(parts[0]), parts[1], strings.TrimSpace(parts[2])
		if name == "" {
			return nil, fmt.Errorf("auth: API key entry %d: empty name", i)
		}
		k := apiKey{name: name}
		for r := range strings.SplitSeq(roles, ",") {
			if r = strings.TrimSpace(r); r != "" {
				k.roles = append(k.roles, r)
			}
		}
		if len(k.roles) == 0 {
			return nil, fmt.Errorf("auth: API key entry %d (%s): no roles", i, name)
		}
		slices.Sort(k.roles)
		k.roles = slices.Compact(k.roles)
		h, err := hex.DecodeString(hexHash)
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("auth: API key entry %d (%s): the third field must be the key's hex SHA-256 (64 hex digits, see auth.HashKey)", i, name)
		}
		copy(k.hash[:], h)
		if seen[k.hash] {
			return nil, fmt.Errorf("auth: API key entry %d (%s): the same key is configured twice", i, name)
		}
		seen[k.hash] = true
		keys = append(keys, k)
	}
	return keys, nil
}

// matchAPIKey finds the configured key equal to presented. It compares against every
// configured hash in constant time, without stopping at a match.
func matchAPIKey(keys []apiKey, presented string) (Principal, error) {
	if presented == "" || len(presented) > MaxAPIKeyLen {
		return Principal{}, ErrInvalidAPIKey
	}
	sum := sha256.Sum256([]byte(presented))
	match, found := 0, 0
	for i := range keys {
		eq := subtle.ConstantTimeCompare(sum[:], keys[i].hash[:])
		match = subtle.ConstantTimeSelect(eq, i, match)
		found |= eq
	}
	if found == 0 {
		return Principal{}, ErrInvalidAPIKey
	}
	k := keys[match]
	return Principal{Name: k.name, Roles: slices.Clone(k.roles), Kind: KindAPIKey}, nil
}
