package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Defaults of Config.
const (
	DefaultRolesClaim = "roles"
	DefaultClockSkew  = 30 * time.Second
	// MinHMACSecret is the shortest HS256 secret accepted (RFC 7518 section 3.2).
	MinHMACSecret = 32
)

// Config configures an Authenticator. At least one of HMACSecret, JWKSFile and
// APIKeys must be set.
type Config struct {
	// HMACSecret, if set, accepts HS256 tokens signed with it; at least 32 bytes.
	HMACSecret []byte
	// JWKSFile, if set, accepts RS256 and ES256 tokens signed by a key of this JWKS
	// document, chosen by the token's kid. The file is read again when it changes
	// (checked at most once a second), or on Authenticator.Reload.
	JWKSFile string
	// Issuer, if set, must equal the token's iss.
	Issuer string
	// Audience, if set, must be in the token's aud.
	Audience string
	// RolesClaim names the claim holding the roles, an array of strings or a
	// space-separated string (default "roles"). Roles in a space-separated "scope"
	// claim count too.
	RolesClaim string
	// ClockSkew is tolerated on exp, nbf and iat (default 30s; negative means none).
	ClockSkew time.Duration

	// APIKeys are "name:role1,role2:sha256hex" entries: the hex SHA-256 of the key
	// (HashKey), never the key itself.
	APIKeys []string

	// Policy maps methods to roles (default DefaultPolicy()).
	Policy Policy

	// Logger receives JWKS reload failures (default: discarded).
	Logger *slog.Logger
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.RolesClaim == "" {
		c.RolesClaim = DefaultRolesClaim
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = DefaultClockSkew
	} else if c.ClockSkew < 0 {
		c.ClockSkew = 0
	}
	if c.Policy == nil {
		c.Policy = DefaultPolicy()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate checks the configuration without reading files.
func (c Config) Validate() error {
	if len(c.HMACSecret) == 0 && c.JWKSFile == "" && len(c.APIKeys) == 0 {
		return errors.New("auth: no credentials configured: set an HMAC secret, a JWKS file or API keys")
	}
	if len(c.HMACSecret) > 0 && len(c.HMACSecret) < MinHMACSecret {
		return fmt.Errorf("auth: HMAC secret is %d bytes, want at least %d", len(c.HMACSecret), MinHMACSecret)
	}
	if c.ClockSkew > 5*time.Minute {
		return fmt.Errorf("auth: clock skew %v is more than 5m", c.ClockSkew)
	}
	if _, err := parseAPIKeys(c.APIKeys); err != nil {
		return err
	}
	if c.Policy != nil {
		if err := c.Policy.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// String describes c without its secrets: whether an HMAC secret is set, and the names
// of the API keys, not their hashes.
func (c Config) String() string {
	var names []string
	if keys, err := parseAPIKeys(c.APIKeys); err == nil {
		for _, k := range keys {
			names = append(names, k.name+"("+strings.Join(k.roles, ",")+")")
		}
	} else {
		names = []string{fmt.Sprintf("%d invalid entries", len(c.APIKeys))}
	}
	return fmt.Sprintf("auth.Config{HMACSecret:%v JWKSFile:%q Issuer:%q Audience:%q RolesClaim:%q ClockSkew:%v APIKeys:[%s] Policy:%d entries}",
		len(c.HMACSecret) > 0, c.JWKSFile, c.Issuer, c.Audience, c.RolesClaim, c.ClockSkew, strings.Join(names, " "), len(c.Policy))
}

// LogValue logs c as String does, without secrets.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }
