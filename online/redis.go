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
//	<p>e:<event id>       applied-event marker (dedupe), expires after TTL; no user data, kept by EraseUser
//	<p>u:<user>:recent    list "item\tweight", newest first, trimmed to RecentMax
//	<p>u:<user>:seen      set of item ids
//	<p>u:<user>:counts    hash type -> count
//	<p>u:<user>:gen       counter bumped by every applied event
//	<p>u:<user>:ckeys     sorted set: Redis keys (<p>c:...) of the user's cached responses -> expiry, unix ms;
//	                      expires with the last of them
//	<p>u:<user>:erased    erasure guard: set by EraseUser for eraseGuard; CacheSet stores none of the user's responses meanwhile
//	<p>i:<item>:users     list "user\tweight", newest first, each user once with the summed weight, trimmed to RecentMax
//	<p>pop                sorted set item -> summed weight (an aggregate, kept by EraseUser)
//	<p>c:<key>            cached responses
//
// The u: and i: keys expire after TTL without events of the user or item.
// Entries are split at their last tab: a weight has none, an id may.
//
// The client reconnects by itself after an outage; calls made meanwhile fail fast
// with the error, and the server degrades instead of waiting.
type Redis struct {
	rdb    *redis.Client
	prefix string
	ttl    time.Duration
	guard  time.Duration // eraseGuard; tests shorten it

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
	return &Redis{rdb: rdb, prefix: o.Prefix, ttl: o.TTL, guard: eraseGuard}
}

// Close closes the connections.
func (r *Redis) Close() error { return r.rdb.Close() }

// Ping checks the connection.
func (r *Redis) Ping(ctx context.Context) error { return r.rdb.Ping(ctx).Err() }

// luaItemUsers are the Lua helpers for <p>i:<item>:users lists: isEntry(e, pre)
// reports whether list entry e ("user\tweight") is the entry of the user whose
// entry prefix is pre (user .. '\t'): e starts with pre and has no tab after it,
// since a weight has none; drop(k, user) removes the user's entry from list k.
const luaItemUsers = `
local function isEntry(e, pre)
  return string.sub(e, 1, #pre) == pre and not string.find(e, '\t', #pre + 1, true)
end
local function drop(k, user)
  local pre = user .. '\t'
  for _, e in ipairs(redis.call('LRANGE', k, 0, -1)) do
    if isEntry(e, pre) then
      redis.call('LREM', k, 0, e)
    end
  end
end
`

// recordScript applies a batch of events atomically, each at most once.
// ARGV: prefix, ttl seconds, recent max, then per event: id, user, item, weight, type, interaction(0|1).
// An interaction also moves the user to the front of the item's users, with
// the weight the user had there plus the event's.
var recordScript = redis.NewScript(luaItemUsers + `
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
      local ik, pre, sum = p .. 'i:' .. item .. ':users', user .. '\t', tonumber(w)
      for _, e in ipairs(redis.call('LRANGE', ik, 0, rmax - 1)) do
        if isEntry(e, pre) then
          sum = sum + (tonumber(string.sub(e, #pre + 1)) or 0)
          redis.call('LREM', ik, 1, e)
          break
        end
      end
      redis.call('LPUSH', ik, pre .. string.format('%.17g', sum))
      redis.call('LTRIM', ik, 0, rmax - 1)
      redis.call('EXPIRE', ik, ttl)
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
			item, w := splitEntry(s)
			u.Recent = append(u.Recent, Interaction{Item: item, Weight: w})
		}
		for _, s := range rd.seen.Val() {
			u.Seen[s] = struct{}{}
		}
		u.Gen, _ = rd.gen.Int64()
		out[i] = u
	}
	return out, nil
}

// splitEntry splits a list entry "id\tweight" at its last tab (an id may hold
// tabs, a weight holds none).
func splitEntry(s string) (string, float32) {
	i := strings.LastIndexByte(s, '\t')
	if i < 0 {
		return s, 0
	}
	w, _ := strconv.ParseFloat(s[i+1:], 32)
	return s[:i], float32(w)
}

// ItemUsers returns the recent users of items, in their order, in one round
// trip: per item the users who interacted with it (impressions excluded),
// newest first, each once with the summed weight of their interactions, at
// most RecentMax. An item without interactions has nil.
func (r *Redis) ItemUsers(ctx context.Context, items []string) ([][]ItemUser, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.StringSliceCmd, len(items))
	for i, item := range items {
		cmds[i] = pipe.LRange(ctx, r.prefix+"i:"+item+":users", 0, RecentMax-1)
	}
	if len(items) > 0 {
		if _, err := pipe.Exec(ctx); r.observe(err) != nil {
			return nil, fmt.Errorf("redis item users: %w", err)
		}
	}
	out := make([][]ItemUser, len(items))
	for i, cmd := range cmds {
		for _, s := range cmd.Val() {
			user, w := splitEntry(s)
			out[i] = append(out[i], ItemUser{User: user, Weight: w})
		}
	}
	return out, nil
}

// eraseItemsScript removes a user from the user lists of items.
// ARGV: prefix, user, then the items.
var eraseItemsScript = redis.NewScript(luaItemUsers + `
local p, user = ARGV[1], ARGV[2]
for i = 3, #ARGV do
  drop(p .. 'i:' .. ARGV[i] .. ':users', user)
end
return 0
`)

// eraseUserScript removes a user from the user lists of the items in their
// recent list (covering events applied since EraseUser read the seen set),
// deletes their cached responses and state, and sets the erasure guard,
// atomically. ARGV: prefix, user, guard milliseconds.
var eraseUserScript = redis.NewScript(luaItemUsers + `
local p, user, guard = ARGV[1], ARGV[2], tonumber(ARGV[3])
local u = p .. 'u:' .. user
for _, e in ipairs(redis.call('LRANGE', u .. ':recent', 0, -1)) do
  local item = string.match(e, '^(.*)\t[^\t]*$')
  if item then
    drop(p .. 'i:' .. item .. ':users', user)
  end
end
local ck = redis.call('ZRANGE', u .. ':ckeys', 0, -1)
for i = 1, #ck, 1000 do
  redis.call('UNLINK', unpack(ck, i, math.min(i + 999, #ck)))
end
redis.call('UNLINK', u .. ':recent', u .. ':seen', u .. ':counts', u .. ':gen', u .. ':ckeys')
redis.call('SET', u .. ':erased', '1', 'PX', guard)
return 0
`)

// eraseChunk is how many items one eraseItemsScript call handles, so that a
// user with a large seen set does not block Redis for long.
const eraseChunk = 500

// EraseUser removes everything the store holds about user (see the package
// documentation and the key layout): it removes the user from the user lists
// of the items in their seen set, a chunk of items per call, then, in one
// atomic step, from those of the items in their recent list, and deletes
// their cached responses and u: keys. An error leaves the state either intact
// or with only item lists cleaned, so the caller can retry; an unknown user is
// no error. Events of the user applied while EraseUser runs may survive it.
func (r *Redis) EraseUser(ctx context.Context, user string) error {
	if err := r.check(); err != nil {
		return fmt.Errorf("redis erase user: %w", err)
	}
	items, err := r.rdb.SMembers(ctx, r.prefix+"u:"+user+":seen").Result()
	if err := r.observe(err); err != nil {
		return fmt.Errorf("redis erase user: %w", err)
	}
	for len(items) > 0 {
		n := min(len(items), eraseChunk)
		args := make([]any, 0, 2+n)
		args = append(args, r.prefix, user)
		for _, item := range items[:n] {
			args = append(args, item)
		}
		if err := r.observe(eraseItemsScript.Run(ctx, r.rdb, nil, args...).Err()); err != nil {
			return fmt.Errorf("redis erase user: %w", err)
		}
		items = items[n:]
	}
	guard := max(r.guard.Milliseconds(), 1)
	if err := r.observe(eraseUserScript.Run(ctx, r.rdb, nil, r.prefix, user, guard).Err()); err != nil {
		return fmt.Errorf("redis erase user: %w", err)
	}
	return nil
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

// cacheSetScript stores a user's cached response and indexes it under the user,
// unless its gen is not the user's current gen or the user's erasure guard is
// set. KEYS: entry, the user's ckeys, erased and gen; ARGV: value, ttl
// milliseconds, the key's gen.
var cacheSetScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[3]) == 1 or (tonumber(redis.call('GET', KEYS[4])) or 0) ~= tonumber(ARGV[3]) then
  return 0
end
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('(%d', now))
redis.call('ZADD', KEYS[2], string.format('%d', now + ttl), KEYS[1])
if redis.call('PTTL', KEYS[2]) < ttl then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return 1
`)

// CacheSet stores a value for ttl. A user's response (a key of the server's
// form, see the package documentation) is stored, in one script call, only if
// its gen is the user's current gen and the user was not erased within
// eraseGuard (dropped silently otherwise), and is indexed under the user for
// EraseUser; its ttl is rounded up to whole milliseconds.
func (r *Redis) CacheSet(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := r.check(); err != nil {
		return err
	}
	user, gen, ok := cacheUser(key)
	var err error
	if !ok {
		err = r.rdb.Set(ctx, r.prefix+"c:"+key, val, ttl).Err()
	} else {
		u := r.prefix + "u:" + user
		ms := max((ttl+time.Millisecond-1)/time.Millisecond, 1)
		err = cacheSetScript.Run(ctx, r.rdb, []string{r.prefix + "c:" + key, u + ":ckeys", u + ":erased", u + ":gen"},
			val, int64(ms), gen).Err()
	}
	if err := r.observe(err); err != nil {
		return fmt.Errorf("redis cache set: %w", err)
	}
	return nil
}
