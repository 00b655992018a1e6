package auth

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	good := "svc:recommend:" + HashKey("k")
	tests := []struct {
		name string
		cfg  Config
		err  string // substring of the error; empty: valid
	}{
		{"API keys only", Config{APIKeys: []string{good}}, ""},
		{"HMAC only", Config{HMACSecret: testSecret}, ""},
		{"JWKS only", Config{JWKSFile: "/etc/recserve/jwks.json"}, ""},
		{"nothing", Config{}, "no credentials configured"},
		{"short secret", Config{HMACSecret: []byte("short")}, "at least 32"},
		{"huge skew", Config{HMACSecret: testSecret, ClockSkew: 6e11}, "clock skew"},
		{"key without hash", Config{APIKeys: []string{"svc:recommend"}}, "want name:role1,role2:sha256hex"},
		{"key with the raw key", Config{APIKeys: []string{"svc:recommend:rsk_raw_secret"}}, "hex SHA-256"},
		{"key with short hash", Config{APIKeys: []string{"svc:recommend:abcd"}}, "hex SHA-256"},
		{"key without name", Config{APIKeys: []string{":recommend:" + HashKey("k")}}, "empty name"},
		{"key without roles", Config{APIKeys: []string{"svc: , :" + HashKey("k")}}, "no roles"},
		{"same key twice", Config{APIKeys: []string{good, "other:admin:" + HashKey("k")}}, "configured twice"},
		{"same name twice (rotation)", Config{APIKeys: []string{good, "svc:recommend:" + HashKey("k2")}}, ""},
		{"policy without slash", Config{APIKeys: []string{good}, Policy: Policy{"recserve.v1.RecommendService/Recommend": RoleRecommend}}, "policy entry"},
		{"policy with a partial wildcard", Config{APIKeys: []string{good}, Policy: Policy{"/recserve.v1.RecommendService/Rec*": RoleRecommend}}, "whole method"},
		{"policy with empty role", Config{APIKeys: []string{good}, Policy: Policy{"/a.B/C": ""}}, "empty role"},
		{"empty policy", Config{APIKeys: []string{good}, Policy: Policy{}}, "empty policy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("got error %v, want one containing %q", err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "rsk_raw_secret") {
				t.Errorf("error %q repeats the configured value", err)
			}
		})
	}
}

func TestNewReadsJWKS(t *testing.T) {
	if _, err := New(Config{JWKSFile: "/nonexistent/jwks.json"}); err == nil {
		t.Fatal("New with a missing JWKS file succeeded")
	}
}

func TestPolicyRole(t *testing.T) {
	p := DefaultPolicy()
	tests := []struct {
		method string
		role   string
		ok     bool
	}{
		{"/recserve.v1.RecommendService/Recommend", RoleRecommend, true},
		{"/recserve.v1.RecommendService/NewMethod", "", false},
		{"/recserve.v1.EventService/RecordEvents", RoleIngest, true},
		{"/recserve.v1.ModelAdminService/Promote", RoleAdmin, true},
		{"/recserve.v1.ModelAdminService/Anything", RoleAdmin, true},
		{"/recserve.v1.CatalogService/UpsertItems", RoleCatalog, true},
		{"/recserve.v1.CatalogService/DeleteItems", RoleCatalog, true},
		{"/recserve.v1.CatalogService/GetItem", RoleRecommend, true},
		{"/recserve.v1.UserService/EraseUser", RoleAdmin, true},
		{"/grpc.health.v1.Health/Check", Public, true},
		{"/grpc.health.v1.Health/Watch", Public, true},
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", RoleAdmin, true},
		{"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", RoleAdmin, true},
		{"/grpc.health.v1.Health", "", false},
		{"/grpc.health.v1.HealthX/Check", "", false},
		{"", "", false},
		{"/", "", false},
	}
	for _, tc := range tests {
		role, ok := p.Role(tc.method)
		if role != tc.role || ok != tc.ok {
			t.Errorf("Role(%q) = %q, %v; want %q, %v", tc.method, role, ok, tc.role, tc.ok)
		}
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigStringHidesSecrets(t *testing.T) {
	cfg := Config{HMACSecret: testSecret, APIKeys: testAPIKeys, JWKSFile: "/etc/jwks.json"}
	var buf strings.Builder
	slog.New(slog.NewTextHandler(&buf, nil)).Info("auth", "config", cfg)
	for _, s := range []string{cfg.String(), fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), buf.String()} {
		if strings.Contains(s, string(testSecret)) || strings.Contains(s, HashKey(keyReader)) {
			t.Errorf("%s shows a secret", s)
		}
		if !strings.Contains(s, "reader(recommend)") || !strings.Contains(s, "/etc/jwks.json") {
			t.Errorf("%s lacks the key names or the JWKS file", s)
		}
	}
}
