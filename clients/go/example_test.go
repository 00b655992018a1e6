package recserveclient_test

import (
	"context"
	"fmt"
	"log"
	"time"

	recserveclient "github.com/recserve/recserve/clients/go"
)

// A client of the servers behind a Kubernetes headless Service: calls are spread
// round-robin over every pod, retried on UNAVAILABLE, and hedged after 50ms.
func Example() {
	c, err := recserveclient.Dial("dns:///recserve-headless.recs.svc.cluster.local:9090",
		recserveclient.WithTimeout(300*time.Millisecond),
		recserveclient.WithHedging(2, 50*time.Millisecond),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx := context.Background()
	recs, err := c.Recommend(ctx, "user-00042", recserveclient.Query{
		N:      5,
		Filter: recserveclient.Filter{IncludeCategories: []string{"books"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, it := range recs.Items {
		fmt.Println(it.ID, it.Score)
	}

	// Feedback names the recommendation that led to it.
	_, err = c.RecordEvents(ctx, []recserveclient.Event{{
		UserID: "user-00042", ItemID: recs.Items[0].ID, Type: recserveclient.EventPurchase,
		RequestID: recs.RequestID, Model: recs.Model, ModelVersion: recs.ModelVersion,
	}})
	if err != nil {
		log.Fatal(err)
	}
}

func ExampleClient_SimilarItems() {
	c, err := recserveclient.Dial("127.0.0.1:9090")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	sim, err := c.SimilarItems(context.Background(), "item-00000", recserveclient.Query{N: 3})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sim.ModelVersion, len(sim.Items))
}

// Catalog changes take effect without retraining; a new item is recommendable
// at once, with a folded-in vector.
func ExampleClient_UpsertItems() {
	c, err := recserveclient.Dial("127.0.0.1:9090")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	_, err = c.UpsertItems(ctx, []recserveclient.CatalogItem{
		{ID: "sku-9", Category: "books", Attributes: map[string]string{"price": "9.90"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.SetAvailability(ctx, []string{"item-00012"}, false); err != nil {
		log.Fatal(err)
	}
	it, err := c.GetItem(ctx, "sku-9", "")
	if err != nil {
		log.Fatal(err) // NOT_FOUND until the server has applied the change
	}
	fmt.Println(it.Category, it.Available, it.FoldedIn)
}
