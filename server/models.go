package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/recserve/recserve/index"
	"github.com/recserve/recserve/registry"
)

// models keeps the newest loadable version of each served model and swaps in newer
// ones as they appear in the registry. Readers never block: the served set is an
// immutable map behind an atomic pointer, replaced whole on every swap.
type models struct {
	reg      *registry.FS
	only     []string // models to serve; empty: every model in the registry
	indexOpt index.Options
	log      *slog.Logger
	onSwap   func()

	served atomic.Pointer[map[string]*snapshot]

	mu     sync.Mutex        // serializes refresh
	failed map[string]string // "model/version" -> why it could not be loaded
}

func newModels(reg *registry.FS, only []string, indexOpt index.Options, log *slog.Logger, onSwap func()) *models {
	m := &models{reg: reg, only: only, indexOpt: indexOpt, log: log, onSwap: onSwap, failed: map[string]string{}}
	empty := map[string]*snapshot{}
	m.served.Store(&empty)
	return m
}

// get returns the served snapshot of a model.
func (m *models) get(model string) (*snapshot, bool) {
	s, ok := (*m.served.Load())[model]
	return s, ok
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

// refresh loads, for every model, the newest complete version that is newer than the
// served one and not known to be broken. A broken version is logged, remembered and
// skipped; the served version stays.
func (m *models) refresh(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := m.only
	if len(names) == 0 {
		var err error
		if names, err = m.reg.Models(); err != nil {
			return fmt.Errorf("list models: %w", err)
		}
	}
	var errs []error
	for _, name := range names {
		if err := m.refreshModel(ctx, name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *models) refreshModel(ctx context.Context, name string) error {
	versions, err := m.reg.Versions(name)
	if errors.Is(err, registry.ErrNotFound) {
		return nil // not published yet; health stays NOT_SERVING for it
	}
	if err != nil {
		return fmt.Errorf("list versions of %s: %w", name, err)
	}
	cur, _ := m.get(name)
	for i := len(versions) - 1; i >= 0; i-- {
		v := versions[i]
		if cur != nil && !newer(v, cur.version) {
			return nil
		}
		key := name + "/" + v
		if _, bad := m.failed[key]; bad {
			continue
		}
		start := time.Now()
		s, err := m.load(ctx, name, v)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			m.failed[key] = err.Error()
			m.log.Error("model version not loaded; keeping the served one", "model", name, "version", v, "err", err)
			continue
		}
		m.swap(s)
		m.log.Info("model version serving", "model", name, "version", v, "items", len(s.bundle.Items),
			"users", len(s.bundle.UserIDs), "load_seconds", time.Since(start).Seconds())
		return nil
	}
	return nil
}

func (m *models) load(ctx context.Context, name, version string) (*snapshot, error) {
	b, err := m.reg.Load(name, version)
	if err != nil {
		return nil, err
	}
	return newSnapshot(ctx, b, m.indexOpt)
}

func (m *models) swap(s *snapshot) {
	old := *m.served.Load()
	next := make(map[string]*snapshot, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[s.model] = s
	m.served.Store(&next)
	if m.onSwap != nil {
		m.onSwap()
	}
}

// failures returns the versions that could not be loaded and why.
func (m *models) failures() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(m.failed))
	for k, v := range m.failed {
		out[k] = v
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
