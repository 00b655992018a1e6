package online

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/recserve/recserve/events"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// Memory is an in-process store with the same semantics as Redis. Event ids are
// remembered up to maxEventIDs (oldest forgotten first).
type Memory struct {
	mu       sync.Mutex
	users    map[string]*memUser
	items    map[string][]memItemUser // newest first, at most RecentMax
	pop      map[string]float64
	eventIDs map[string]struct{}
	idOrder  []string
	cache    map[string]memEntry
	erased   map[string]time.Time // user -> end of the erasure guard
	guard    time.Duration        // eraseGuard; tests shorten it
	now      func() time.Time
}

const (
	maxEventIDs     = 1 << 20
	maxCacheEntries = 100_000
)

type memUser struct {
	recent []Interaction
	seen   map[string]struct{}
	counts map[string]int64
	gen    int64
}

// memItemUser sums in float64, as Redis does, and rounds on reading.
type memItemUser struct {
	user   string
	weight float64
}

type memEntry struct {
	val     []byte
	expires time.Time
}

// NewMemory returns an empty in-process store.
func NewMemory() *Memory {
	return &Memory{
		users: map[string]*memUser{}, items: map[string][]memItemUser{}, pop: map[string]float64{}, eventIDs: map[string]struct{}{},
		cache: map[string]memEntry{}, erased: map[string]time.Time{}, guard: eraseGuard, now: time.Now,
	}
}

// Record applies events whose ids it has not seen and returns how many it applied.
func (m *Memory) Record(_ context.Context, evs []*recservev1.Event) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	applied := 0
	for _, e := range evs {
		if _, dup := m.eventIDs[e.GetEventId()]; dup {
			continue
		}
		m.rememberID(e.GetEventId())
		applied++
		u := m.users[e.GetUserId()]
		if u == nil {
			u = &memUser{seen: map[string]struct{}{}, counts: map[string]int64{}}
			m.users[e.GetUserId()] = u
		}
		if isInteraction(e.GetType()) {
			u.recent = append([]Interaction{{Item: e.GetItemId(), Weight: float32(e.GetWeight())}}, u.recent...)
			if len(u.recent) > RecentMax {
				u.recent = u.recent[:RecentMax]
			}
			u.seen[e.GetItemId()] = struct{}{}
			m.pop[e.GetItemId()] += e.GetWeight()
			m.addItemUser(e.GetItemId(), e.GetUserId(), e.GetWeight())
		}
		u.counts[events.TypeName(e.GetType())]++
		u.gen++
	}
	return applied, nil
}

// addItemUser moves user to the front of item's users, adding w to the
// weight the user already has there.
func (m *Memory) addItemUser(item, user string, w float64) {
	list := m.items[item]
	if i := slices.IndexFunc(list, func(iu memItemUser) bool { return iu.user == user }); i >= 0 {
		w = list[i].weight + w
		list = slices.Delete(list, i, i+1)
	}
	list = slices.Insert(list, 0, memItemUser{user: user, weight: w})
	if len(list) > RecentMax {
		list = list[:RecentMax]
	}
	m.items[item] = list
}

// dropItemUser removes user from item's users.
func (m *Memory) dropItemUser(item, user string) {
	list := slices.DeleteFunc(m.items[item], func(iu memItemUser) bool { return iu.user == user })
	if len(list) == 0 {
		delete(m.items, item)
		return
	}
	m.items[item] = list
}

func (m *Memory) rememberID(id string) {
	if len(m.idOrder) >= maxEventIDs {
		delete(m.eventIDs, m.idOrder[0])
		m.idOrder = m.idOrder[1:]
	}
	m.eventIDs[id] = struct{}{}
	m.idOrder = append(m.idOrder, id)
}

// Users returns copies of the states of users, in their order; an unknown
// user has the zero state.
func (m *Memory) Users(_ context.Context, users []string) ([]User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]User, len(users))
	for i, user := range users {
		u := m.users[user]
		if u == nil {
			continue
		}
		out[i] = User{Recent: append([]Interaction(nil), u.recent...), Seen: make(map[string]struct{}, len(u.seen)), Gen: u.gen}
		for k := range u.seen {
			out[i].Seen[k] = struct{}{}
		}
	}
	return out, nil
}

// ItemUsers returns the recent users of items, in their order: per item the
// users who interacted with it (impressions excluded), newest first, each once
// with the summed weight of their interactions, at most RecentMax. An item
// without interactions has nil.
func (m *Memory) ItemUsers(_ context.Context, items []string) ([][]ItemUser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([][]ItemUser, len(items))
	for i, item := range items {
		for _, iu := range m.items[item] {
			out[i] = append(out[i], ItemUser{User: iu.user, Weight: float32(iu.weight)})
		}
	}
	return out, nil
}

// EraseUser removes everything the store holds about user (see the package
// documentation): state, entries in item user lists, cached responses. The
// user's responses are not cached for a while after. An unknown user is no
// error.
func (m *Memory) EraseUser(_ context.Context, user string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if u := m.users[user]; u != nil {
		for item := range u.seen {
			m.dropItemUser(item, user)
		}
		for _, in := range u.recent {
			m.dropItemUser(in.Item, user)
		}
		delete(m.users, user)
	}
	for k := range m.cache { // erasure is rare; the cache is bounded
		if cu, _, ok := cacheUser(k); ok && cu == user {
			delete(m.cache, k)
		}
	}
	now := m.now()
	for u, until := range m.erased {
		if !now.Before(until) {
			delete(m.erased, u)
		}
	}
	m.erased[user] = now.Add(m.guard)
	return nil
}

// Counts returns a user's event counts by type name ("purchase": 2).
func (m *Memory) Counts(_ context.Context, user string) (map[string]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int64{}
	if u := m.users[user]; u != nil {
		for k, v := range u.counts {
			out[k] = v
		}
	}
	return out, nil
}

// Popularity returns an item's summed interaction weight.
func (m *Memory) Popularity(_ context.Context, item string) (float64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pop[item], nil
}

// CacheGet returns a cached value that has not expired.
func (m *Memory) CacheGet(_ context.Context, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.cache[key]
	if !ok || m.now().After(e.expires) {
		delete(m.cache, key)
		return nil, false, nil
	}
	return e.val, true, nil
}

// CacheSet stores a value for ttl. Expired entries are swept on the way. A
// user's response (a key of the server's form) is stored only if its gen is
// the user's current gen and the user was not erased within eraseGuard; it is
// dropped silently otherwise (see the package documentation).
func (m *Memory) CacheSet(_ context.Context, key string, val []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if user, gen, ok := cacheUser(key); ok {
		var cur int64
		if u := m.users[user]; u != nil {
			cur = u.gen
		}
		if until, erased := m.erased[user]; gen != cur || erased && now.Before(until) {
			return nil
		}
	}
	if len(m.cache) >= maxCacheEntries {
		for k, e := range m.cache {
			if now.After(e.expires) {
				delete(m.cache, k)
			}
		}
		if len(m.cache) >= maxCacheEntries {
			clear(m.cache) // a cache may forget; it must not grow without bound
		}
	}
	m.cache[key] = memEntry{val: val, expires: now.Add(ttl)}
	return nil
}
