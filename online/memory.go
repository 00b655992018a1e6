package online

import (
	"context"
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
	pop      map[string]float64
	eventIDs map[string]struct{}
	idOrder  []string
	cache    map[string]memEntry
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

type memEntry struct {
	val     []byte
	expires time.Time
}

// NewMemory returns an empty in-process store.
func NewMemory() *Memory {
	return &Memory{
		users: map[string]*memUser{}, pop: map[string]float64{}, eventIDs: map[string]struct{}{},
		cache: map[string]memEntry{}, now: time.Now,
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
		}
		u.counts[events.TypeName(e.GetType())]++
		u.gen++
	}
	return applied, nil
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

// CacheSet stores a value for ttl. Expired entries are swept on the way.
func (m *Memory) CacheSet(_ context.Context, key string, val []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
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
