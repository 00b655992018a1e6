package recserveclient

import (
	"context"
	"maps"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// MaxCatalogBatch is the most items UpsertItems, SetAvailability and DeleteItems
// take in one call.
const MaxCatalogBatch = 1000

// CatalogItem is an item as UpsertItems adds or replaces it.
type CatalogItem struct {
	// ID is 1 to 256 bytes of UTF-8.
	ID string `json:"item_id"`
	// Category name; empty means none.
	Category string `json:"category,omitempty"`
	// Unavailable items are not recommended unless a filter asks for them; the
	// zero value is available.
	Unavailable bool `json:"unavailable,omitempty"`
	// Attributes such as price or tags: at most 64, keys 1 to 128 bytes, values
	// at most 1024 bytes.
	Attributes map[string]string `json:"attributes,omitempty"`
}

// ServedItem answers GetItem: an item as the server serves it now, the model
// version's catalog with every run-time change applied.
type ServedItem struct {
	ID         string            `json:"item_id"`
	Category   string            `json:"category,omitempty"`
	Available  bool              `json:"available"`
	Attributes map[string]string `json:"attributes,omitempty"`
	// FoldedIn: the version was not trained on the item; its vector is folded in.
	FoldedIn     bool   `json:"folded_in"`
	Model        string `json:"model"`
	ModelVersion string `json:"model_version"`
}

// UpsertItems adds 1 to MaxCatalogBatch items or replaces them whole and returns
// how many the server accepted. The server validates the batch whole: one invalid
// item rejects it with INVALID_ARGUMENT naming items[i].field. The call returns
// once the change is durable; every server applies it as it reads the catalog
// topic. Like every catalog call it is retried on UNAVAILABLE: sending the same
// change twice leaves the same state.
func (c *Client) UpsertItems(ctx context.Context, items []CatalogItem) (int, error) {
	req := &recservev1.UpsertItemsRequest{Items: make([]*recservev1.CatalogItem, len(items))}
	for i, it := range items {
		avail := !it.Unavailable
		req.Items[i] = &recservev1.CatalogItem{
			ItemId: it.ID, Category: it.Category, Available: &avail, Attributes: maps.Clone(it.Attributes),
		}
	}
	resp, err := c.catalog.UpsertItems(ctx, req)
	if err != nil {
		return 0, err
	}
	return int(resp.GetAccepted()), nil
}

// SetAvailability marks 1 to MaxCatalogBatch items available or unavailable and
// returns how many the server accepted. The generated stub (CatalogService) sets
// different availabilities in one call.
func (c *Client) SetAvailability(ctx context.Context, itemIDs []string, available bool) (int, error) {
	req := &recservev1.SetAvailabilityRequest{Items: make([]*recservev1.ItemAvailability, len(itemIDs))}
	for i, id := range itemIDs {
		req.Items[i] = &recservev1.ItemAvailability{ItemId: id, Available: available}
	}
	resp, err := c.catalog.SetAvailability(ctx, req)
	if err != nil {
		return 0, err
	}
	return int(resp.GetAccepted()), nil
}

// DeleteItems deletes 1 to MaxCatalogBatch items, which no version returns
// again, and returns how many the server accepted.
func (c *Client) DeleteItems(ctx context.Context, itemIDs []string) (int, error) {
	resp, err := c.catalog.DeleteItems(ctx, &recservev1.DeleteItemsRequest{ItemIds: itemIDs})
	if err != nil {
		return 0, err
	}
	return int(resp.GetAccepted()), nil
}

// GetItem returns itemID as model (empty: the server's default model) serves it
// now. A deleted or unknown item is NOT_FOUND.
func (c *Client) GetItem(ctx context.Context, itemID, model string) (*ServedItem, error) {
	resp, err := c.catalog.GetItem(ctx, &recservev1.GetItemRequest{Model: model, ItemId: itemID})
	if err != nil {
		return nil, err
	}
	it := resp.GetItem()
	return &ServedItem{
		ID: it.GetItemId(), Category: it.GetCategory(), Available: it.Available == nil || it.GetAvailable(),
		Attributes: it.GetAttributes(), FoldedIn: resp.GetFoldedIn(),
		Model: resp.GetModel(), ModelVersion: resp.GetModelVersion(),
	}, nil
}

// EraseUser removes userID's data: real-time state, cached responses and, through
// the catalog topic, the user's events in the trainer's training data. It needs
// the admin role.
func (c *Client) EraseUser(ctx context.Context, userID string) error {
	_, err := c.users.EraseUser(ctx, &recservev1.EraseUserRequest{UserId: userID})
	return err
}
