package auth

import (
	"strings"
	"testing"
)

func TestHashKey(t *testing.T) {
	// echo -n abc | sha256sum
	if got, want := HashKey("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Fatalf("HashKey(abc) = %s, want %s", got, want)
	}
}

func TestGenerateKey(t *testing.T) {
	a, b := GenerateKey(), GenerateKey()
	if a == b || !strings.HasPrefix(a, "rsk_") || len(a) != 4+43 {
		t.Fatalf("GenerateKey: %q, %q", a, b)
	}
}

func TestMatchAPIKey(t *testing.T) {
	keys, err := parseAPIKeys(testAPIKeys)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key  string
		name string // empty: no match
	}{
		{keyReader, "reader"},
		{keyIngester, "ingester"},
		{keyOps, "ops"},
		{"", ""},
		{keyReader + " ", ""},
		{strings.Repeat("x", MaxAPIKeyLen+1), ""},
		{HashKey(keyReader), ""},
	}
	for _, tc := range tests {
		p, err := matchAPIKey(keys, tc.key)
		if tc.name == "" {
			if err == nil {
				t.Errorf("key %.10q matched %v", tc.key, p)
			}
			continue
		}
		if err != nil || p.Name != tc.name || p.Kind != KindAPIKey {
			t.Errorf("key of %s: got %v, %v", tc.name, p, err)
		}
		if s := p.String(); strings.Contains(s, tc.key) || s != "apikey:"+tc.name {
			t.Errorf("String() = %q", s)
		}
	}
	// The principal's roles are a copy.
	p, _ := matchAPIKey(keys, keyOps)
	p.Roles[0] = "mutated"
	if q, _ := matchAPIKey(keys, keyOps); q.Roles[0] == "mutated" {
		t.Fatal("principal roles alias the configuration")
	}
}

func TestGatewayHeader(t *testing.T) {
	for _, h := range []string{"X-Api-Key", "x-api-key", "X-API-KEY"} {
		if md, ok := GatewayHeader(h); !ok || md != "x-api-key" {
			t.Errorf("GatewayHeader(%q) = %q, %v", h, md, ok)
		}
	}
	for _, h := range []string{"Authorization", "X-Api-Keys", "Grpc-Metadata-X-Api-Key", ""} {
		if md, ok := GatewayHeader(h); ok {
			t.Errorf("GatewayHeader(%q) = %q, true", h, md)
		}
	}
}
