package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/recserve/recserve/catalog"
	"github.com/recserve/recserve/events"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/registry"
)

// The trainer's side of the run-time catalog: it consumes the catalog topic
// (recservev1.CatalogRecord values) into a catalog.File in its log directory
// and erases users' events from the event log; the next training merges the
// changes into the catalog it publishes and leaves deleted items out.

// catalogGroupSuffix makes the catalog consumer's group from the event
// consumer's: the two topics are consumed and committed independently.
const catalogGroupSuffix = "-catalog"

// catalogConsumer is the configuration of the catalog topic's consumer.
func (j trainerJob) catalogConsumer() events.ConsumerConfig {
	cc := j.Consumer
	cc.Topic, cc.Group = j.CatalogTopic, j.Consumer.Group+catalogGroupSuffix
	cc.TracerProvider = nil
	return cc
}

// applyCatalog is the catalog consumer's handler. It applies the item changes
// to the catalog state and saves the changed items to the catalog file, and
// erases the erased users' events from the event log (see
// eventlog.Log.EraseUsers); it returns nil only when both are durable, so the
// offsets are committed only then. Applying a batch again changes nothing.
//
// A batch that changes something marks the trainer state as having changes
// no version reflects yet, durably and before applying them, so that the next
// retrain (at the interval, also without new events) happens even after a
// crash between applying and committing.
func (r *retrainer) applyCatalog(ctx context.Context, recs []*recservev1.CatalogRecord) error {
	var items []*recservev1.CatalogRecord
	erase := map[string]time.Time{}
	fresh := false
	for _, rec := range recs {
		t := rec.GetTime().AsTime()
		if u := rec.GetEraseUserId(); u != "" {
			if cur, ok := erase[u]; !ok || t.After(cur) {
				erase[u] = t
			}
			if prev, ok := r.el.Erased(u); !ok || t.After(prev) {
				fresh = true
			}
			continue
		}
		items = append(items, rec)
		if cur, ok := r.cat.Get(catalog.ItemID(rec)); !ok || t.After(cur.Time) {
			fresh = true
		}
	}
	if fresh {
		if err := r.markChanged(); err != nil {
			return fmt.Errorf("trainer: record catalog changes: %w", err)
		}
	}
	changed := r.cat.Apply(items)
	if err := r.catFile.Save(ctx, changed); err != nil {
		return err
	}
	removed := 0
	if len(erase) > 0 {
		var err error
		if removed, err = r.el.EraseUsers(erase); err != nil {
			return err
		}
		r.log.Info("erased users' events", "users", len(erase), "events_removed", removed)
	}
	if len(changed) > 0 {
		r.log.Info("applied catalog changes", "items", len(changed), "changed_items", r.cat.Len())
	}
	if r.job.catalogApplied != nil {
		r.job.catalogApplied(len(recs), len(changed), removed)
	}
	return nil
}

// markChanged counts a catalog change or erasure and records in the trainer
// state that a change is pending.
func (r *retrainer) markChanged() error {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	r.changes.Add(1)
	if r.state.Pending {
		return nil
	}
	st := r.state
	st.Model, st.Pending = r.job.Model, true
	if err := writeTrainerState(r.job.LogDir, st); err != nil {
		return err
	}
	r.state = st
	return nil
}

// pending reports whether catalog changes or erasures arrived since the last
// published training began.
func (r *retrainer) pending() bool { return r.changes.Load() != r.trainedChanges.Load() }

// trainingCatalog returns the catalog to publish with the next version and the
// items deleted from it, whose events the training leaves out.
func (r *retrainer) trainingCatalog() ([]registry.Item, map[string]bool) {
	if r.cat == nil {
		return r.base, nil
	}
	return mergeCatalog(r.base, r.cat.Items())
}

// mergeCatalog applies the run-time changes to the base catalog (the -items
// file): an upserted item replaces its entry or is added, with its category,
// availability and attributes; an availability change sets the entry's
// availability (adding an uncategorized entry for an item the base does not
// list); a deleted item's entries are removed and it is in deleted. Base
// entries keep their order; added ones follow, sorted by id.
func mergeCatalog(base []registry.Item, changes []catalog.Item) (items []registry.Item, deleted map[string]bool) {
	items = slices.Clone(base)
	pos := make(map[string]int, len(items)) // an id listed twice: its last entry, which wins in trainer.Bundle
	for i, it := range items {
		pos[it.ID] = i
	}
	deleted = map[string]bool{}
	set := func(it registry.Item) {
		if i, ok := pos[it.ID]; ok {
			items[i] = it
			return
		}
		pos[it.ID] = len(items)
		items = append(items, it)
	}
	for _, c := range changes {
		switch {
		case c.Deleted:
			deleted[c.ID] = true
		case c.Upserted:
			set(registry.Item{ID: c.ID, Category: c.Category, Available: c.Available, Attributes: c.Attributes})
		default:
			if i, ok := pos[c.ID]; ok {
				items[i].Available = c.Available
			} else {
				set(registry.Item{ID: c.ID, Available: c.Available})
			}
		}
	}
	if len(deleted) > 0 {
		items = slices.DeleteFunc(items, func(it registry.Item) bool { return deleted[it.ID] })
	}
	return items, deleted
}
