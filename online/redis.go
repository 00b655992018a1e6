package online

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/recserve/recserve/events"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// Redis keeps the state in a Redis server under a key prefix:
//
//	<p>e:<event id>       applied-event marker (dedupe), expires after TTL
//	<p>u:<user>:recent    list "item\tweight", newest first, trimmed to RecentMax
//	<p>u:<user>:seen      set of item ids
//	<p>u:<user>:counts    hash type -> count
//	<p>u:<user>:gen       counter bumped by every applied event
//	<p>pop                sorted set item -> summed weight
//	<p>c:<key>            cached responses
//
// The client reconnects by itself after an outage; calls made meanwhile fail fast
// with the error, and the server degrades instead of waiting.
type Redis struct {
	rdb    *redis.Client
	prefix string
	ttl    time.Duration

	// downUntil (unix nanos) short-circuits calls for a moment after a failure, so
	// an unreachable Redis costs requests nothing while it is down.
	downUntil atomic.Int64
}

// ErrUnavailable is returned while Redis is marked down after a failure.
var ErrUnavailable = errors.New("online store unavailable")

// retryAfter is how long calls fail fast after a Redis failure.
const retryAfter = 250 * time.Millisecond

// check fails fast while Redis is marked down.
func (r *Redis) check() error {
	if time.Now().UnixNano() < r.downUntil.Load() {
		return ErrUnavailable
	}
	return nil
}

// observe marks Redis down after a failure that is neither a Redis reply (a reply
// error such as WRONGTYPE means the server is up) nor the caller giving up.
func (r *Redis) observe(err error) error {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return err
	}
	var reply redis.Error
	if !errors.As(err, &reply) {
		r.downUntil.Store(time.Now().Add(retryAfter).UnixNano())
	}
	return err
}

// RedisOptions configure NewRedis.
type RedisOptions struct {
	Addr     string        // host:port
	Password string        // optional
	DB       int           // database number
	Prefix   string        // key prefix, default "rs:"
	TTL      time.Duration // per-user state lifetime, default DefaultTTL
	// Timeout bounds every Redis call (default 100ms): an unreachable Redis costs a
	// request at most this much before it degrades.
	Timeout time.Duration
	// TracerProvider receives a client span per Redis command (nil: none).
	TracerProvider trace.TracerProvider
}

// NewRedis connects lazily: it never fails for an unreachable server.
func NewRedis(o RedisOptions) *Redis {
	if o.Prefix == "" {
		o.Prefix = "rs:"
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Timeout <= 0 {
		o.Timeout = 100 * time.Millisecond
	}
	rdb := redis.NewClient(&redis.Options{
		Addr: o.Addr, Password: o.Password, DB: o.DB,
		DialTimeout: o.Timeout, ReadTimeout: o.Timeout, WriteTimeout: o.Timeout,
		PoolTimeout: o.Timeout, MaxRetries: 1, DialerRetries: 1, ContextTimeoutEnabled: true,
	})
	if o.TracerProvider != nil {
		rdb.AddHook(tracing{o.TracerProvider.Tracer("github.com/recserve/recserve/online")})
	}
	return &Redis{rdb: rdb, prefix: o.Prefix, ttl: o.TTL}
}

// Close closes the connections.
func (r *Redis) Close() error { return r.rdb.Close() }

// Ping checks the connection.
func (r *Redis) Ping(ctx context.Context) error { return r.rdb.Ping(ctx).Err() }

// recordScript applies a batch of events atomically, each at most once.
// ARGV: prefix, ttl seconds, recent max, then per event: id, user, item, weight, type, interaction(0|1).
var recordScript = redis.NewScript(`
local p, ttl, rmax = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local applied = 0
for i = 4, #ARGV, 6 do
  local id, user, item, w, typ, inter = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4], ARGV[i+5]
  if redis.call('SET', p .. 'e:' .. id, '1', 'NX', 'EX', ttl) then
    applied = applied + 1
    local u = p .. 'u:' .. user
    if inter == '1' then
      redis.call('LPUSH', u .. ':recent', item .. '\t' .. w)
      redis.call('LTRIM', u .. ':recent', 0, rmax - 1)
      redis.call('EXPIRE', u .. ':recent', ttl)
      redis.call('SADD', u .. ':seen', item)
      redis.call('EXPIRE', u .. ':seen', ttl)
      redis.call('ZINCRBY', p .. 'pop', w, item)
    end
    redis.call('HINCRBY', u .. ':counts', typ, 1)
    redis.call('EXPIRE', u .. ':counts', ttl)
    redis.call('INCR', u .. ':gen')
    redis.call('EXPIRE', u .. ':gen', ttl)
  end
end
return applied
`)

// Record applies events whose ids were not applied before and returns how many it applied.
func (r *Redis) Record(ctx context.Context, evs []*recservev1.Event) (int, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	if err := r.check(); err != nil {
		return 0, err
	}
	args := make([]any, 0, 3+6*len(evs))
	args = append(args, r.prefix, int64(r.ttl/time.Second), RecentMax)
	for _, e := range evs {
		inter := "0"
		if isInteraction(e.GetType()) {
			inter = "1"
		}
		args = append(args, e.GetEventId(), e.GetUserId(), e.GetItemId(),
			strconv.FormatFloat(e.GetWeight(), 'g', -1, 64), events.TypeName(e.GetType()), inter)
	}
	n, err := recordScript.Run(ctx, r.rdb, nil, args...).Int()
	if err := r.observe(err); err != nil {
		return 0, fmt.Errorf("redis record: %w", err)
	}
	return n, nil
}

// Users returns the states of users, in their order, in one round trip; an
// unknown user has the zero state.
func (r *Redis) Users(ctx context.Context, users []string) ([]User, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	type reads struct {
		recent, seen *redis.StringSliceCmd
		gen          *redis.StringCmd
	}
	pipe := r.rdb.Pipeline()
	rs := make([]reads, len(users))
	for i, user := range users {
		u := r.prefix + "u:" + user
		rs[i] = reads{pipe.LRange(ctx, u+":recent", 0, RecentMax-1), pipe.SMembers(ctx, u+":seen"), pipe.Get(ctx, u+":gen")}
	}
	if _, err := pipe.Exec(ctx); r.observe(err) != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redis user: %w", err)
	}
	out := make([]User, len(users))
	for i, rd := range rs {
		u := User{Seen: make(map[string]struct{}, len(rd.seen.Val()))}
		for _, s := range rd.recent.Val() {
			item, w, _ := strings.Cut(s, "\t")
			wf, _ := strconv.ParseFloat(w, 32)
			u.Recent = append(u.Recent, Interaction{Item: item, Weight: float32(wf)})
		}
		for _, s := range rd.seen.Val() {
			u.Seen[s] = struct{}{}
		}
		u.Gen, _ = rd.gen.Int64()
		out[i] = u
	}
	return out, nil
}

// Counts returns a user's event counts by type name.
func (r *Redis) Counts(ctx context.Context, user string) (map[string]int64, error) {
	m, err := r.rdb.HGetAll(ctx, r.prefix+"u:"+user+":counts").Result()
	if err != nil {
		return nil, fmt.Errorf("redis counts: %w", err)
	}
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k], _ = strconv.ParseInt(v, 10, 64)
	}
	return out, nil
}

// Popularity returns an item's summed interaction weight.
func (r *Redis) Popularity(ctx context.Context, item string) (float64, error) {
	v, err := r.rdb.ZScore(ctx, r.prefix+"pop", item).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("redis popularity: %w", err)
	}
	return v, nil
}

// CacheGet returns a cached value.
func (r *Redis) CacheGet(ctx context.Context, key string) ([]byte, bool, error) {
	if err := r.check(); err != nil {
		return nil, false, err
	}
	v, err := r.rdb.Get(ctx, r.prefix+"c:"+key).Bytes()
	if errors.Is(r.observe(err), redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("redis cache get: %w", err)
	}
	return v, true, nil
}

// CacheSet stores a value for ttl.
func (r *Redis) CacheSet(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := r.check(); err != nil {
		return err
	}
	if err := r.observe(r.rdb.Set(ctx, r.prefix+"c:"+key, val, ttl).Err()); err != nil {
		return fmt.Errorf("redis cache set: %w", err)
	}
	return nil
}
