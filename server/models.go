package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/recserve/recserve/index"
	"github.com/recserve/recserve/internal/background"
	"github.com/recserve/recserve/internal/hugepage"
	"github.com/recserve/recserve/internal/memlimit"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/registry"
)

// models keeps, per model, the versions its policy wants loaded (the newest
// KeepVersions, pinned ones, and those labels point at) and the routing view
// requests read. Readers never block: the views are an immutable map behind an
// atomic pointer, replaced whole on every change.
type models struct {
	reg      registry.Store
	only     []string
	keep     int
	memLimit int64
	inUse    func() int64 // memlimit.InUse; tests replace it
	indexOpt index.Options
	log      *slog.Logger
	now      func() time.Time
	onSwap   func()
	// attach gives a loaded snapshot the run-time catalog before it serves.
	attach func(*snapshot)
	// onAdopt is called, without locks held, when a model's rollout state
	// changed in the registry (another replica or an operator wrote it).
	onAdopt func(model string)

	served atomic.Pointer[map[string]*view]

	refreshMu sync.Mutex // one refresh at a time; version loads happen under it

	mu      sync.Mutex // guards the maps below; never held while loading
	states  map[string]*rollout
	stored  map[string][]byte // model -> the state file as last read or written
	loaded  map[string]map[string]*snapshot
	waiting map[string][]string // model -> labels naming versions not loaded
	failed  map[string]failure  // "model/version" -> why it could not be loaded

	// refreshMu guards these two.
	reservedFor string // "model/version" whose size of memory is set aside
	refreshed   bool   // a refresh has completed
}

// A failed version is tried again after a backoff that doubles from
// retryFirst to retryMax: object stores may show a manifest before the files
// it lists, and a version refused for good would never serve.
const (
	retryFirst = 10 * time.Second
	retryMax   = 10 * time.Minute
)

// failure is a version that could not be loaded.
type failure struct {
	err   string
	tries int       // failed loads so far
	next  time.Time // when to try again
	full  bool      // not loaded for want of memory: tried again on every refresh
}

// skipLocked reports whether version key ("model/version") failed and is not
// due for another try.
func (m *models) skipLocked(key string) bool {
	f, bad := m.failed[key]
	return bad && m.now().Before(f.next)
}

func newModels(o Options, onSwap func()) *models {
	m := &models{
		reg: o.Registry, only: o.Models, keep: o.KeepVersions, memLimit: o.MemoryLimit, inUse: memlimit.InUse,
		indexOpt: o.Index, log: o.Logger, now: o.Clock, onSwap: onSwap,
		states: map[string]*rollout{}, stored: map[string][]byte{}, loaded: map[string]map[string]*snapshot{},
		waiting: map[string][]string{}, failed: map[string]failure{},
	}
	empty := map[string]*view{}
	m.served.Store(&empty)
	return m
}

// get returns the routing view of a model.
func (m *models) get(model string) (*view, bool) {
	v, ok := (*m.served.Load())[model]
	return v, ok
}

// names lists the served models.
func (m *models) names() []string {
	var out []string
	for name := range *m.served.Load() {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// refresh loads the versions each model's policy wants and unloads the rest. A
// broken version is logged, remembered and skipped; what was served stays.
func (m *models) refresh(ctx context.Context) error {
	m.refreshMu.Lock()
	defer m.refreshMu.Unlock()
	var listed map[string][]string // discovery: every model and its versions in one listing
	names := m.only
	if len(names) == 0 {
		var err error
		if listed, err = m.reg.Models(); err != nil {
			return fmt.Errorf("list models: %w", err)
		}
		names = slices.Sorted(maps.Keys(listed))
	}
	var errs []error
	for _, name := range names {
		if err := m.refreshModel(ctx, name, listed[name]); err != nil {
			errs = append(errs, err)
		}
	}
	m.reserve(!m.refreshed)
	m.refreshed = true
	return errors.Join(errs...)
}

// refreshModel brings one model's loaded versions to what its policy wants;
// versions are its complete versions when the caller listed them, else nil.
func (m *models) refreshModel(ctx context.Context, name string, versions []string) error {
	m.mu.Lock()
	adopted := m.syncStateLocked(name)
	if adopted {
		m.publishLocked(name)
	}
	m.mu.Unlock()
	if adopted && m.onAdopt != nil {
		m.onAdopt(name)
	}
	if versions == nil {
		var err error
		versions, err = m.reg.Versions(name)
		if errors.Is(err, registry.ErrNotFound) {
			return nil // not published yet; health stays NOT_SERVING for it
		}
		if err != nil {
			return fmt.Errorf("list versions of %s: %w", name, err)
		}
	}
	m.mu.Lock()
	want := m.desiredLocked(name, versions)
	have := m.loaded[name]
	m.mu.Unlock()
	if slices.ContainsFunc(want, func(v string) bool { _, ok := have[v]; return !ok }) {
		m.makeRoom(name, want)
	}

	for i := len(want) - 1; i >= 0; i-- { // newest first
		v := want[i]
		if _, ok := have[v]; ok {
			continue
		}
		if err := m.roomFor(name); err != nil {
			m.mu.Lock()
			key := name + "/" + v
			f := m.failed[key]
			if !f.full {
				m.log.Error("model version not loaded for want of memory; keeping the served ones, trying again on every refresh",
					"model", name, "version", v, "err", err)
			}
			f.err, f.next, f.full = err.Error(), m.now(), true
			m.failed[key] = f
			m.mu.Unlock()
			continue
		}
		start := time.Now()
		s, err := m.load(ctx, name, v)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			m.mu.Lock()
			f := m.failed[name+"/"+v]
			f.err, f.next, f.full = err.Error(), m.now().Add(min(retryFirst<<min(f.tries, 16), retryMax)), false
			f.tries++
			m.failed[name+"/"+v] = f
			m.mu.Unlock()
			m.log.Error("model version not loaded; keeping the served ones", "model", name, "version", v, "err", err)
			continue
		}
		m.mu.Lock()
		delete(m.failed, name+"/"+v)
		if m.loaded[name] == nil {
			m.loaded[name] = map[string]*snapshot{}
		}
		m.loaded[name][v] = s
		m.publishLocked(name)
		m.mu.Unlock()
		m.log.Info("model version loaded", "model", name, "version", v, "items", s.itemRow.Rows(), "index", s.indexSource,
			"users", s.userRow.Rows(), "load_seconds", time.Since(start).Seconds(), "bytes_in_reserved_memory", s.reservedBytes)
	}

	// Unload what the policy no longer wants, now that its replacements serve.
	m.mu.Lock()
	defer m.mu.Unlock()
	want = m.desiredLocked(name, versions)
	for v := range m.loaded[name] {
		if !slices.Contains(want, v) {
			delete(m.loaded[name], v)
			m.log.Info("model version unloaded", "model", name, "version", v)
		}
	}
	m.publishLocked(name)
	return nil
}

// makeRoom, before a new version of model name loads, unloads the versions
// the policy no longer wants that serve no traffic (neither the stable nor the
// canary), collects them and sets their memory aside for the new version (see
// reserve), still warm. Versions that serve are unloaded only once their
// replacements serve.
func (m *models) makeRoom(name string, want []string) {
	m.mu.Lock()
	view := (*m.served.Load())[name]
	unloaded := false
	for v, s := range m.loaded[name] {
		if slices.Contains(want, v) || view != nil && (s == view.stable || s == view.canary) {
			continue
		}
		delete(m.loaded[name], v)
		unloaded = true
		m.log.Info("model version unloaded to make room for a new one", "model", name, "version", v)
	}
	if unloaded {
		m.publishLocked(name)
	}
	m.mu.Unlock()
	if unloaded {
		runtime.GC() // the unloaded versions' memory back to the heap, not yet to the OS
		m.reserve(false)
	}
}

// desiredLocked lists, ascending, the versions a model should have loaded: the
// newest keep versions that are not broken, the pinned ones and the labelled ones.
func (m *models) desiredLocked(name string, versions []string) []string {
	st := m.stateLocked(name)
	var want []string
	for i := len(versions) - 1; i >= 0 && len(want) < m.keep; i-- {
		if !m.skipLocked(name + "/" + versions[i]) {
			want = append(want, versions[i])
		}
	}
	for _, v := range append(slices.Clone(st.Pinned), st.Stable, st.Canary) {
		if v != "" && slices.Contains(versions, v) && !slices.Contains(want, v) {
			if !m.skipLocked(name + "/" + v) {
				want = append(want, v)
			}
		}
	}
	slices.SortFunc(want, func(a, b string) int {
		switch {
		case newer(a, b):
			return 1
		case newer(b, a):
			return -1
		}
		return 0
	})
	return want
}

// stateLocked returns a model's rollout state, reading it from the registry the
// first time. An unreadable state file is logged and replaced by a fresh state.
func (m *models) stateLocked(name string) *rollout {
	if st := m.states[name]; st != nil {
		return st
	}
	st := &rollout{}
	data, err := m.reg.ReadState(name)
	if err == nil && data != nil {
		err = json.Unmarshal(data, st)
	}
	if err != nil {
		m.log.Error("rollout state unreadable; starting from a fresh state", "model", name, "err", err)
		st = &rollout{}
	}
	if st.Salt == "" {
		st.Salt = name
	}
	if st.Policy != nil {
		st.StepStarted = m.now() // counters start over with the process
	}
	m.states[name], m.stored[name] = st, data
	return st
}

// syncStateLocked adopts a model's rollout state as stored in the registry
// when it differs from what this server last read or wrote, so that replicas
// sharing a registry follow each other's and the operator's changes within a
// poll. It reports whether it adopted a change. A state that cannot be read
// or parsed is logged and the current one kept.
func (m *models) syncStateLocked(name string) bool {
	if m.states[name] == nil {
		m.stateLocked(name)
		return false
	}
	data, err := m.reg.ReadState(name)
	if err != nil || data == nil || bytes.Equal(data, m.stored[name]) {
		return false
	}
	st := &rollout{}
	if err := json.Unmarshal(data, st); err != nil {
		m.log.Error("rollout state in the registry unreadable; keeping the current one", "model", name, "err", err)
		return false
	}
	if st.Salt == "" {
		st.Salt = name
	}
	m.states[name], m.stored[name] = st, data
	m.log.Info("rollout state changed in the registry; adopted", "model", name, "stable", st.Stable, "canary", st.Canary, "percent", st.CanaryPercent)
	return true
}

// load reads a version and builds its snapshot in the background (see package
// background): the versions being served keep the processors they had. While
// any version serves, the load is paced (background.RunPaced): beside
// closed-loop load on 2 vCPUs, a 1M-item version then served 16–22 s after
// its publish instead of 11–14, and the p99 while it loaded was 3.8–4.9 ms
// instead of 4.9–5.7 (BENCHMARKS.md). The first load, with nothing to serve
// yet, runs at full speed. Its big arrays come from the memory set aside for
// it (see reserve) where they fit.
func (m *models) load(ctx context.Context, name, version string) (s *snapshot, err error) {
	run := background.Run
	if len(*m.served.Load()) > 0 {
		run = background.RunPaced
	}
	err = run(func() error {
		stop := hugepage.Track()
		defer func() {
			if sizes, reserved := stop(); s != nil {
				s.sizes, s.reservedBytes = sizes, reserved
			}
		}()
		b, err := m.reg.Load(name, version)
		if err != nil {
			return err
		}
		s, err = newSnapshot(ctx, b, m.indexOpt)
		if err == nil && m.attach != nil {
			m.attach(s)
		}
		return err
	})
	return s, err
}

// reserve sets memory aside for the next version while a model has room for
// one more within KeepVersions: as much as the largest such model's newest
// version took (hugepage.Reserve). Loading into memory the process has never
// touched costs the host's page faults on the serving vCPUs: beside 10,000
// requests/s, a 1M-item version loaded into memory set aside served 5.1–5.8 s
// after its publish instead of 8.0–9.1, and the p99 while it loaded was 2.55
// ms instead of 2.77 on average over 10 pairs of runs (BENCHMARKS.md, twelfth
// session). The memory is resident from then on: a server keeping two
// versions holds that much from its first load, not from its first swap.
// Without room it releases what it set aside. The first refresh, before the
// server listens, sets memory aside at full speed; later ones paced.
func (m *models) reserve(first bool) {
	var sizes []int
	key := ""
	m.mu.Lock()
	for name, loaded := range m.loaded {
		if len(loaded) == 0 || len(loaded) >= m.keep {
			continue
		}
		newest := newestOf(loaded)
		if sum(newest.sizes) > sum(sizes) {
			sizes, key = newest.sizes, name+"/"+newest.version
		}
	}
	m.mu.Unlock()
	if key == m.reservedFor {
		return
	}
	m.reservedFor = key
	if err := m.fits(sizes, key); err != nil {
		m.log.Warn("no memory set aside for the next version: it would not fit", "like", key, "err", err)
		sizes, key = nil, ""
	}
	run := background.RunPaced
	if first {
		run = background.Run
	}
	_ = run(func() error {
		hugepage.Reserve(sizes)
		return nil
	})
	if key != "" {
		m.log.Info("memory set aside for the next version", "like", key, "bytes", hugepage.Reserved())
	}
}

// roomFor returns why a new version of model name would not fit under the
// memory limit, or nil. The version is expected to take as much as the
// model's newest loaded version took in big arrays (hugepage.Track). A
// model's first version is not checked.
func (m *models) roomFor(name string) error {
	m.mu.Lock()
	newest := newestOf(m.loaded[name])
	m.mu.Unlock()
	if newest == nil {
		return nil
	}
	return m.fits(newest.sizes, name+"/"+newest.version)
}

// fits returns an error if arrays of the given sizes, as version like made,
// would take the process past nine tenths of the memory limit: those beyond
// the memory set aside for loads (hugepage.Reserved), which they take first.
func (m *models) fits(sizes []int, like string) error {
	more := sum(sizes) - hugepage.Reserved()
	if m.memLimit <= 0 || more <= 0 {
		return nil
	}
	inUse, most := m.inUse(), m.memLimit-m.memLimit/10
	if inUse+int64(more) <= most {
		return nil
	}
	return fmt.Errorf("would need about %d MiB more (as much as %s took) with %d MiB in use; the memory limit is %d MiB, a tenth of it kept free",
		more>>20, like, inUse>>20, m.memLimit>>20)
}

// newestOf returns the newest of loaded versions, or nil if there are none.
func newestOf(loaded map[string]*snapshot) *snapshot {
	var newest *snapshot
	for _, s := range loaded {
		if newest == nil || newer(s.version, newest.version) {
			newest = s
		}
	}
	return newest
}

func sum(sizes []int) int {
	total := 0
	for _, n := range sizes {
		total += n
	}
	return total
}

// publishLocked rebuilds a model's routing view and swaps it in.
func (m *models) publishLocked(name string) {
	st := m.stateLocked(name)
	loaded := m.loaded[name]
	v := &view{name: name, loaded: make(map[string]*snapshot, len(loaded)), salt: st.Salt, shadow: st.ShadowFraction}
	if len(st.Ranking) > 0 {
		r := new(recservev1.Ranking)
		if err := protojson.Unmarshal(st.Ranking, r); err != nil {
			m.log.Error("model's default ranking ignored: not a recserve.v1.Ranking", "model", name, "err", err)
		} else {
			v.ranking, v.rankingKey = r, string(st.Ranking)
		}
	}
	maps.Copy(v.loaded, loaded)
	var waiting []string
	v.stable = newestOf(loaded)
	if st.Stable != "" {
		if s, ok := loaded[st.Stable]; ok {
			v.stable = s
		} else {
			waiting = append(waiting, "stable="+st.Stable)
		}
	}
	if st.Canary != "" {
		if s, ok := loaded[st.Canary]; ok {
			v.canary, v.canaryPct = s, st.CanaryPercent
		} else {
			waiting = append(waiting, "canary="+st.Canary)
		}
	}
	m.waiting[name] = waiting

	old := *m.served.Load()
	next := make(map[string]*view, len(old)+1)
	for k, x := range old {
		next[k] = x
	}
	if v.stable == nil {
		delete(next, name)
	} else {
		next[name] = v
	}
	m.served.Store(&next)
	if m.onSwap != nil {
		m.onSwap()
	}
}

// update changes a model's rollout state: f edits a copy, which is persisted and
// then takes effect. When f or persisting fails nothing changes.
func (m *models) update(name string, f func(st *rollout, now time.Time) error) (*rollout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.syncStateLocked(name) { // start from the latest stored state
		m.publishLocked(name)
	}
	next := m.stateLocked(name).clone()
	if err := f(next, m.now()); err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := m.reg.WriteState(name, data); err != nil {
		return nil, fmt.Errorf("persist rollout state of %s: %w", name, err)
	}
	m.states[name], m.stored[name] = next, data
	m.publishLocked(name)
	return next.clone(), nil
}

// waitingFor lists a model's labels that name versions not loaded yet.
func (m *models) waitingFor(name string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.waiting[name])
}

// state returns a copy of a model's rollout state.
func (m *models) state(name string) *rollout {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stateLocked(name).clone()
}

// failures returns the versions that could not be loaded and why.
func (m *models) failures() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(m.failed))
	for k, f := range m.failed {
		out[k] = f.err
	}
	return out
}

// newer reports whether version a sorts after b (numerically when both are numbers).
func newer(a, b string) bool {
	ai, errA := strconv.ParseUint(a, 10, 64)
	bi, errB := strconv.ParseUint(b, 10, 64)
	if errA == nil && errB == nil {
		return ai > bi
	}
	return a > b
}
