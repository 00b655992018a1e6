package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/recserve/recserve/catalog"
	"github.com/recserve/recserve/internal/background"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// CatalogStore persists the run-time catalog so that a restart reads it back
// (package catalog: File, Redis).
type CatalogStore interface {
	Load(ctx context.Context) ([]catalog.Item, error)
	Save(ctx context.Context, items []catalog.Item) error
}

// CatalogSink durably accepts catalog records: the catalog topic's producer.
// Every server consumes the topic and calls ApplyCatalog with its records.
type CatalogSink interface {
	ProduceCatalog(ctx context.Context, recs []*recservev1.CatalogRecord) error
}

// liveCatalog applies catalog changes to every loaded snapshot. A snapshot
// attaches once loaded, before it serves, and gets the whole state; changes
// after that reach it through apply. The mutex orders the two, so no change
// is missed in between.
type liveCatalog struct {
	mu    sync.Mutex
	state *catalog.State
	snaps []weak.Pointer[snapshot] // dropped once collected
	// changes counts the applies that changed the state and refolds the
	// times added items got new vectors: cache keys include both (stamp), so
	// either invalidates every cached response.
	changes, refolds atomic.Int64
}

// stamp identifies the catalog's state for cache keys.
func (c *liveCatalog) stamp() string {
	return strconv.FormatInt(c.changes.Load(), 10) + "." + strconv.FormatInt(c.refolds.Load(), 10)
}

func newLiveCatalog() *liveCatalog { return &liveCatalog{state: catalog.NewState()} }

func (c *liveCatalog) attach(s *snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.live.apply(c.state.Items())
	c.snaps = append(c.snaps, weak.Make(s))
}

// apply applies recs to the state and every snapshot and returns the items
// whose state changed.
func (c *liveCatalog) apply(recs []*recservev1.CatalogRecord) []catalog.Item {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := c.state.Apply(recs)
	if len(changed) > 0 {
		c.changes.Add(1)
		for _, s := range c.live() {
			s.live.apply(changed)
		}
	}
	return changed
}

// live returns the snapshots still in memory (c.mu held).
func (c *liveCatalog) live() []*snapshot {
	out := make([]*snapshot, 0, len(c.snaps))
	kept := c.snaps[:0]
	for _, w := range c.snaps {
		if s := w.Value(); s != nil {
			out = append(out, s)
			kept = append(kept, w)
		}
	}
	c.snaps = kept
	return out
}

func (c *liveCatalog) snapshots() []*snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live()
}

// LoadCatalog reads the persisted catalog (Options.CatalogStore) into the
// server; the daemon calls it before the first refresh.
func (s *Server) LoadCatalog(ctx context.Context) error {
	if s.opts.CatalogStore == nil {
		return nil
	}
	items, err := s.opts.CatalogStore.Load(ctx)
	if err != nil {
		return err
	}
	s.catalog.apply(catalog.Records(items))
	s.kickRefold()
	return nil
}

// ApplyCatalog applies catalog records (from the catalog topic, or from this
// server's own API without a sink): item changes to every loaded version, then
// persisted; erasures to the online store. It returns an error, and should be
// called again with the same records, when persisting or erasing failed;
// applying a record twice changes nothing.
func (s *Server) ApplyCatalog(ctx context.Context, recs []*recservev1.CatalogRecord) error {
	// At the lowest OS priority: a batch of changes looks up rows and map
	// entries at random (cache misses, ~3 µs a change); beside 5,000
	// requests/s it raised their p99 1.49-1.50x at normal priority and
	// 1.19-1.35x at the lowest (BENCHMARKS.md).
	var changed []catalog.Item
	_ = background.Run(func() error { changed = s.catalog.apply(recs); return nil })
	for _, it := range changed {
		if it.Upserted && !it.Deleted {
			s.kickRefold()
			break
		}
	}
	if s.opts.CatalogStore != nil && len(changed) > 0 {
		if err := s.opts.CatalogStore.Save(ctx, changed); err != nil {
			return fmt.Errorf("%w: persist catalog: %w", errStoreUnavailable, err)
		}
	}
	for _, user := range catalog.Erasures(recs) {
		if err := s.eraseUser(ctx, user); err != nil {
			return err
		}
	}
	return nil
}

// eraseUser removes a user's online state and cached responses.
func (s *Server) eraseUser(ctx context.Context, user string) error {
	if s.opts.Online == nil {
		return nil
	}
	if err := s.opts.Online.EraseUser(ctx, user); err != nil {
		return fmt.Errorf("%w: erase user: %w", errStoreUnavailable, err)
	}
	return nil
}

var errStoreUnavailable = errors.New("online store unavailable")

// submit makes recs durable: through the sink (every server applies them
// when it consumes them) or, without one, by applying them here.
func (s *Server) submit(ctx context.Context, recs []*recservev1.CatalogRecord) error {
	now := timestamppb.New(s.opts.Clock())
	for _, r := range recs {
		r.Time = now
	}
	if s.opts.Catalog != nil {
		return s.opts.Catalog.ProduceCatalog(ctx, recs)
	}
	return s.ApplyCatalog(ctx, recs)
}

func (s *Server) kickRefold() {
	select {
	case s.refold <- struct{}{}:
	default:
	}
}

// refoldLoop gives added items vectors folded from their interactions: when
// kicked (an item was added, or an event touched an added item) and every
// interval, since replicas that share Redis see only their share of events.
func (s *Server) refoldLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.refold:
		case <-t.C:
		}
		if err := s.refoldItems(ctx); err != nil && ctx.Err() == nil {
			s.degraded.report(ctx, s.log, "added items keep their vectors: online store unavailable", "err", err)
		}
	}
}

// refoldItems folds every added item's vector in, in every loaded version,
// from the users who interacted with it recently.
func (s *Server) refoldItems(ctx context.Context) error {
	snaps := s.catalog.snapshots()
	seen := map[string]bool{}
	var ids []string
	for _, snap := range snaps {
		for _, id := range snap.live.added.Load().ids {
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	if len(ids) == 0 || s.opts.Online == nil {
		return nil
	}
	users, err := s.opts.Online.ItemUsers(ctx, ids)
	if err != nil {
		return err
	}
	for _, snap := range snaps {
		vecs, from := map[string][]float32{}, map[string]int{}
		for i, id := range ids {
			if v, n := snap.live.foldItem(users[i]); v != nil {
				vecs[id], from[id] = v, n
			}
		}
		if len(vecs) > 0 && snap.live.setVectors(vecs, from) {
			s.catalog.refolds.Add(1)
		}
	}
	return nil
}

// touchesAdded reports whether any event is about an item added to the catalog.
func (s *Server) touchesAdded(evs []*recservev1.Event) bool {
	for _, e := range evs {
		if it, ok := s.catalog.state.Get(e.GetItemId()); ok && it.Upserted && !it.Deleted {
			return true
		}
	}
	return false
}

// catalogService implements recserve.v1.CatalogService.
type catalogService struct {
	recservev1.UnimplementedCatalogServiceServer
	s *Server
}

func (c *catalogService) UpsertItems(ctx context.Context, req *recservev1.UpsertItemsRequest) (*recservev1.UpsertItemsResponse, error) {
	items := req.GetItems()
	if err := catalog.ValidateBatch("items", len(items)); err != nil {
		return nil, toStatus(err)
	}
	recs := make([]*recservev1.CatalogRecord, len(items))
	for i, it := range items {
		if err := catalog.ValidateItem(fmt.Sprintf("items[%d]", i), it); err != nil {
			return nil, toStatus(err)
		}
		recs[i] = &recservev1.CatalogRecord{Change: &recservev1.CatalogRecord_Upsert{Upsert: it}}
	}
	if err := c.s.submit(ctx, recs); err != nil {
		return nil, toStatus(err)
	}
	return &recservev1.UpsertItemsResponse{Accepted: int32(len(recs))}, nil
}

func (c *catalogService) SetAvailability(ctx context.Context, req *recservev1.SetAvailabilityRequest) (*recservev1.SetAvailabilityResponse, error) {
	items := req.GetItems()
	if err := catalog.ValidateBatch("items", len(items)); err != nil {
		return nil, toStatus(err)
	}
	recs := make([]*recservev1.CatalogRecord, len(items))
	for i, it := range items {
		if err := catalog.ValidateID(fmt.Sprintf("items[%d].item_id", i), it.GetItemId()); err != nil {
			return nil, toStatus(err)
		}
		recs[i] = &recservev1.CatalogRecord{Change: &recservev1.CatalogRecord_Availability{Availability: it}}
	}
	if err := c.s.submit(ctx, recs); err != nil {
		return nil, toStatus(err)
	}
	return &recservev1.SetAvailabilityResponse{Accepted: int32(len(recs))}, nil
}

func (c *catalogService) DeleteItems(ctx context.Context, req *recservev1.DeleteItemsRequest) (*recservev1.DeleteItemsResponse, error) {
	ids := req.GetItemIds()
	if err := catalog.ValidateBatch("item_ids", len(ids)); err != nil {
		return nil, toStatus(err)
	}
	recs := make([]*recservev1.CatalogRecord, len(ids))
	for i, id := range ids {
		if err := catalog.ValidateID(fmt.Sprintf("item_ids[%d]", i), id); err != nil {
			return nil, toStatus(err)
		}
		recs[i] = &recservev1.CatalogRecord{Change: &recservev1.CatalogRecord_DeleteItemId{DeleteItemId: id}}
	}
	if err := c.s.submit(ctx, recs); err != nil {
		return nil, toStatus(err)
	}
	return &recservev1.DeleteItemsResponse{Accepted: int32(len(recs))}, nil
}

func (c *catalogService) GetItem(ctx context.Context, req *recservev1.GetItemRequest) (*recservev1.GetItemResponse, error) {
	if err := validateModel(req.GetModel()); err != nil {
		return nil, toStatus(err)
	}
	if err := validateID("item_id", req.GetItemId()); err != nil {
		return nil, toStatus(err)
	}
	_, snap, err := c.s.route(req.GetModel(), "", "")
	if err != nil {
		return nil, toStatus(err)
	}
	it, folded, ok := snap.catalogItem(req.GetItemId())
	if !ok {
		return nil, toStatus(&notFound{field: "item_id", value: req.GetItemId(), err: errItemNotFound})
	}
	if st, ok := c.s.catalog.state.Get(req.GetItemId()); ok && st.Upserted {
		it.Attributes = st.Attributes
	}
	return &recservev1.GetItemResponse{Item: it, Model: snap.model, ModelVersion: snap.version, FoldedIn: folded}, nil
}

// userService implements recserve.v1.UserService.
type userService struct {
	recservev1.UnimplementedUserServiceServer
	s *Server
}

// EraseUser erases the user here at once (with a shared Redis, for every
// replica) and sends the erasure on the catalog topic, so that the other
// servers and the trainer erase the user too.
func (u *userService) EraseUser(ctx context.Context, req *recservev1.EraseUserRequest) (*recservev1.EraseUserResponse, error) {
	if err := validateID("user_id", req.GetUserId()); err != nil {
		return nil, toStatus(err)
	}
	if err := u.s.eraseUser(ctx, req.GetUserId()); err != nil {
		return nil, toStatus(err)
	}
	rec := &recservev1.CatalogRecord{Change: &recservev1.CatalogRecord_EraseUserId{EraseUserId: req.GetUserId()}}
	if err := u.s.submit(ctx, []*recservev1.CatalogRecord{rec}); err != nil {
		return nil, toStatus(err)
	}
	return &recservev1.EraseUserResponse{}, nil
}
