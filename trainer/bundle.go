package trainer

import (
	"strconv"

	"github.com/recserve/recserve/registry"
)

// Bundle packages a trained model as a registry version: the model's user and
// item embeddings, each user's training items as the seen set, and item metadata
// from catalog (items missing from it are available and uncategorized; catalog
// items without interactions have no embedding and are left out). The caller sets
// Manifest.Model and may add metrics before publishing.
func Bundle(d *Dataset, m *Model, catalog []registry.Item) *registry.Bundle {
	meta := make(map[string]registry.Item, len(catalog))
	for _, it := range catalog {
		meta[it.ID] = it
	}
	items := make([]registry.Item, len(d.ItemIDs))
	for i, id := range d.ItemIDs {
		it, ok := meta[id]
		if !ok {
			it = registry.Item{ID: id, Available: true}
		}
		items[i] = it
	}
	offsets := make([]int64, 1, len(d.UserIDs)+1)
	seen := make([]int32, 0, d.NumInteractions())
	for u := range d.UserIDs {
		seen = append(seen, d.UserItems(u)...)
		offsets = append(offsets, int64(len(seen)))
	}
	return &registry.Bundle{
		Manifest:    registry.Manifest{Dim: m.Dim, Metric: "dot"},
		UserIDs:     d.UserIDs,
		UserVectors: m.UserVectors,
		Items:       items,
		ItemVectors: m.ItemVectors,
		SeenOffsets: offsets,
		SeenItems:   seen,
	}
}

// Params returns the options as manifest parameters.
func (o Options) Params() map[string]string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	return map[string]string{
		"algorithm":    "ials",
		"factors":      strconv.Itoa(o.Factors),
		"iterations":   strconv.Itoa(o.Iterations),
		"reg":          f(o.Reg),
		"alpha":        f(o.Alpha),
		"unobserved":   f(o.Unobserved),
		"reg_exponent": f(o.RegExponent),
		"cg_steps":     strconv.Itoa(o.CGSteps),
		"seed":         strconv.FormatInt(o.Seed, 10),
	}
}

// OptionsFromParams reads back options written by Params, starting from
// DefaultOptions for anything absent or unreadable (a version written by another
// tool may carry none). Fold-in uses it to solve with the model's own objective.
func OptionsFromParams(p map[string]string) Options {
	o := DefaultOptions()
	floats := map[string]*float64{"reg": &o.Reg, "alpha": &o.Alpha, "unobserved": &o.Unobserved, "reg_exponent": &o.RegExponent}
	for k, dst := range floats {
		if v, err := strconv.ParseFloat(p[k], 64); err == nil {
			*dst = v
		}
	}
	ints := map[string]*int{"factors": &o.Factors, "iterations": &o.Iterations, "cg_steps": &o.CGSteps}
	for k, dst := range ints {
		if v, err := strconv.Atoi(p[k]); err == nil {
			*dst = v
		}
	}
	if v, err := strconv.ParseInt(p["seed"], 10, 64); err == nil {
		o.Seed = v
	}
	if o.Validate() != nil {
		return DefaultOptions()
	}
	return o
}
