// Package ratelimit bounds the load callers put on the gRPC server: a token bucket per
// principal (Limiter), sized by the principal's roles, and a cap on requests in flight
// (InFlight). Both reject with RESOURCE_EXHAUSTED (HTTP 429 through grpc-gateway)
// instead of queueing, and neither limits grpc.health.v1.
package ratelimit

import (
	"context"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/recserve/recserve/auth"
)

// healthService is never limited.
const healthService = "/grpc.health.v1.Health/"

// sweepInterval is how often, at most, idle buckets are dropped.
const sweepInterval = time.Minute

// Limit is a token bucket: Rate requests a second on average, bursts of up to Burst.
// The zero Limit means no limit.
type Limit struct {
	Rate  float64
	Burst int
}

// Unlimited reports whether l is the zero Limit.
func (l Limit) Unlimited() bool { return l.Rate == 0 && l.Burst == 0 }

func (l Limit) validate() error {
	if l.Unlimited() {
		return nil
	}
	if math.IsNaN(l.Rate) || math.IsInf(l.Rate, 0) || l.Rate <= 0 || l.Burst < 1 {
		return fmt.Errorf("rate %v/s burst %d: want a rate > 0 and a burst >= 1 (or both zero for no limit)", l.Rate, l.Burst)
	}
	return nil
}

// Config configures a Limiter.
type Config struct {
	// Roles gives each role its limit. A principal gets the most generous limit of
	// its roles: the highest rate and the highest burst among them, or none if one of
	// them is unlimited.
	Roles map[string]Limit
	// Default applies to principals none of whose roles is in Roles, and to requests
	// without a principal (auth disabled or a public method), which share one bucket
	// per peer IP address. Requests through the REST gateway without auth all come
	// from the gateway's address.
	Default Limit
	// Exempt lists more methods that are not limited, as auth.Policy patterns
	// ("/pkg.Service/Method" or "/pkg.Service/*"); grpc.health.v1 always is.
	Exempt []string
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

// Validate checks every limit and exemption.
func (c Config) Validate() error {
	for role, l := range c.Roles {
		if err := l.validate(); err != nil {
			return fmt.Errorf("ratelimit: role %q: %w", role, err)
		}
	}
	if err := c.Default.validate(); err != nil {
		return fmt.Errorf("ratelimit: default: %w", err)
	}
	for _, m := range c.Exempt {
		if !strings.HasPrefix(m, "/") || strings.Count(m, "/") != 2 {
			return fmt.Errorf("ratelimit: exempt method %q: want \"/pkg.Service/Method\" or \"/pkg.Service/*\"", m)
		}
	}
	return nil
}

// Limiter keeps a token bucket per principal. Buckets that have refilled completely
// are dropped (they are the same as new ones), so memory is bounded by the principals
// active within the last few refill periods.
type Limiter struct {
	roles    map[string]Limit
	fallback Limit
	exempt   []string
	now      func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

// bucket is a token bucket: tokens at time last, under limit.
type bucket struct {
	limit  Limit
	tokens float64
	last   time.Time
}

// New returns a Limiter for cfg.
func New(cfg Config) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	roles := make(map[string]Limit, len(cfg.Roles))
	for r, l := range cfg.Roles {
		roles[r] = l
	}
	return &Limiter{
		roles: roles, fallback: cfg.Default, exempt: append([]string{healthService + "*"}, cfg.Exempt...),
		now: cfg.Now, buckets: map[string]*bucket{}, lastSweep: cfg.Now(),
	}, nil
}

// LimitFor returns the limit of a principal with roles.
func (l *Limiter) LimitFor(roles []string) Limit {
	var best Limit
	found := false
	for _, r := range roles {
		lim, ok := l.roles[r]
		if !ok {
			continue
		}
		if lim.Unlimited() {
			return Limit{}
		}
		found = true
		best.Rate = max(best.Rate, lim.Rate)
		best.Burst = max(best.Burst, lim.Burst)
	}
	if !found {
		return l.fallback
	}
	return best
}

// Allow takes a token from key's bucket under limit. It returns 0 if there was one,
// else how long until there will be.
func (l *Limiter) Allow(key string, limit Limit) time.Duration {
	if limit.Unlimited() {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.lastSweep) >= sweepInterval {
		l.sweep(now)
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{limit: limit, tokens: float64(limit.Burst), last: now}
		l.buckets[key] = b
	}
	b.refill(now, limit)
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	wait := time.Duration(math.Ceil((1 - b.tokens) / limit.Rate * float64(time.Second)))
	return max(wait, time.Millisecond)
}

// refill adds the tokens earned since b.last, up to the burst; it adopts limit if
// the principal's limit changed.
func (b *bucket) refill(now time.Time, limit Limit) {
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens += elapsed.Seconds() * b.limit.Rate
		b.last = now
	}
	b.limit = limit
	b.tokens = min(b.tokens, float64(limit.Burst))
}

// sweep drops the buckets that are full by now.
func (l *Limiter) sweep(now time.Time) {
	l.lastSweep = now
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*b.limit.Rate >= float64(b.limit.Burst) {
			delete(l.buckets, k)
		}
	}
}

// Len returns the number of buckets held.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// check applies the caller's limit to a call of fullMethod.
func (l *Limiter) check(ctx context.Context, fullMethod string) error {
	if exempt(l.exempt, fullMethod) {
		return nil
	}
	var key string
	var limit Limit
	if p, ok := auth.FromContext(ctx); ok {
		key, limit = p.String(), l.LimitFor(p.Roles)
	} else {
		key, limit = "addr:"+peerHost(ctx), l.fallback
	}
	wait := l.Allow(key, limit)
	if wait == 0 {
		return nil
	}
	st := status.New(codes.ResourceExhausted, fmt.Sprintf("rate limit of %s exceeded (%g/s, burst %d); retry in %v", key, limit.Rate, limit.Burst, wait))
	if ds, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)}); err == nil {
		st = ds
	}
	return st.Err()
}

// UnaryInterceptor limits unary calls. Install it after the auth interceptor, which
// puts the principal in the context.
func (l *Limiter) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := l.check(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor limits the start of streams: a stream costs one token.
func (l *Limiter) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := l.check(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

// peerHost is the caller's IP address, or "unknown".
func peerHost(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	s := p.Addr.String()
	if host, _, err := net.SplitHostPort(s); err == nil {
		return host
	}
	return s
}

// exempt reports whether fullMethod matches one of patterns: exact, or
// "/pkg.Service/*" for a whole service.
func exempt(patterns []string, fullMethod string) bool {
	for _, p := range patterns {
		if svc, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(fullMethod, svc) && !strings.Contains(fullMethod[len(svc):], "/") {
				return true
			}
		} else if p == fullMethod {
			return true
		}
	}
	return false
}
