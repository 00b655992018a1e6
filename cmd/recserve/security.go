package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/recserve/recserve/auth"
	"github.com/recserve/recserve/internal/daemon"
	"github.com/recserve/recserve/ratelimit"
)

// securityFlags registers TLS, authentication and limit flags. The returned
// function finishes the configuration after parsing (it reads the secret files).
func securityFlags(fs *flag.FlagSet, s *daemon.Security) func() error {
	fs.BoolVar(&s.Plaintext, "plaintext", false, "serve without TLS (only for a trusted local network; the demo does)")
	fs.StringVar(&s.CertFile, "tls-cert", "", "server certificate (PEM), reloaded when the file changes")
	fs.StringVar(&s.KeyFile, "tls-key", "", "server private key (PEM)")
	fs.StringVar(&s.ClientCAFile, "tls-client-ca", "", "CA that signs client certificates (enables mTLS verification)")
	fs.BoolVar(&s.RequireClientCert, "tls-require-client-cert", false, "reject clients without a certificate from -tls-client-ca")
	fs.StringVar(&s.CAFile, "tls-ca", "", "CA the gateway trusts for the server certificate (default -tls-client-ca, else system roots)")
	fs.StringVar(&s.ServerName, "tls-server-name", "", "name the gateway verifies in the server certificate (default localhost)")
	fs.StringVar(&s.GatewayCertFile, "gateway-cert", "", "the gateway's client certificate for mTLS")
	fs.StringVar(&s.GatewayKeyFile, "gateway-key", "", "the gateway's client key for mTLS")
	hmacFile := fs.String("auth-hmac-secret-file", "", "file holding the HS256 JWT secret (at least 32 bytes)")
	var a auth.Config
	fs.StringVar(&a.JWKSFile, "auth-jwks", "", "JWKS file with the RS256/ES256 keys that sign JWTs")
	fs.StringVar(&a.Issuer, "auth-issuer", "", "required JWT issuer (iss)")
	fs.StringVar(&a.Audience, "auth-audience", "", "required JWT audience (aud)")
	fs.StringVar(&a.RolesClaim, "auth-roles-claim", "", "JWT claim holding the roles (default roles)")
	keysFile := fs.String("api-keys-file", "", `API keys, one "name:role1,role2:sha256hex" a line (see "recserve apikey")`)
	limits := fs.String("rate-limit", "", `per-principal limits "role=rate:burst,...", e.g. recommend=1000:2000,ingest=100:200,default=50:100`)
	fs.IntVar(&s.MaxInFlight, "max-in-flight", 1000, "requests in flight beyond which new ones are rejected at once")
	return func() error {
		if *hmacFile != "" {
			secret, err := os.ReadFile(*hmacFile)
			if err != nil {
				return err
			}
			a.HMACSecret = []byte(strings.TrimSpace(string(secret)))
		}
		if *keysFile != "" {
			keys, err := readLines(*keysFile)
			if err != nil {
				return err
			}
			a.APIKeys = keys
		}
		if len(a.HMACSecret) > 0 || a.JWKSFile != "" || len(a.APIKeys) > 0 {
			s.Auth = &a
		}
		if *limits != "" {
			rl, err := parseRateLimits(*limits)
			if err != nil {
				return fmt.Errorf("-rate-limit: %w", err)
			}
			s.RateLimit = rl
		}
		return nil
	}
}

// readLines returns the non-empty lines of a file that are not # comments.
func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out, sc.Err()
}

// parseRateLimits reads "role=rate:burst,..."; the role "default" sets Default.
func parseRateLimits(spec string) (*ratelimit.Config, error) {
	cfg := &ratelimit.Config{Roles: map[string]ratelimit.Limit{}}
	for _, part := range strings.Split(spec, ",") {
		role, lim, ok := strings.Cut(strings.TrimSpace(part), "=")
		rate, burst, ok2 := strings.Cut(lim, ":")
		if !ok || !ok2 {
			return nil, fmt.Errorf("%q is not role=rate:burst", part)
		}
		r, err1 := strconv.ParseFloat(rate, 64)
		b, err2 := strconv.Atoi(burst)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%q: rate and burst must be numbers", part)
		}
		if role == "default" {
			cfg.Default = ratelimit.Limit{Rate: r, Burst: b}
		} else {
			cfg.Roles[role] = ratelimit.Limit{Rate: r, Burst: b}
		}
	}
	return cfg, cfg.Validate()
}

// runAPIKey makes a new API key and prints it with the line for -api-keys-file.
func runAPIKey(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("apikey", flag.ContinueOnError)
	name := fs.String("name", "", "who the key is for")
	roles := fs.String("roles", "recommend", "comma-separated roles: recommend, ingest, catalog, admin")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" {
		return fmt.Errorf("-name is required")
	}
	key := auth.GenerateKey()
	fmt.Printf("key (give it to the client; it is not stored):\n  %s\nline for -api-keys-file:\n  %s:%s:%s\n", key, *name, *roles, auth.HashKey(key))
	return nil
}
