package sampledata

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
)

func TestGenerate(t *testing.T) {
	d := Generate(Options{Users: 500, Items: 600, Seed: 7})
	if len(d.Items) != 600 {
		t.Fatalf("%d items", len(d.Items))
	}
	if again := Generate(Options{Users: 500, Items: 600, Seed: 7}); !reflect.DeepEqual(d, again) {
		t.Fatal("same seed, different data")
	}
	users := map[string]map[string]int{} // user -> category -> events
	pop := map[string]int{}
	for _, e := range d.Events {
		if users[e.UserID] == nil {
			users[e.UserID] = map[string]int{}
		}
		pop[e.ItemID]++
	}
	cat := map[string]string{}
	for _, it := range d.Items {
		cat[it.ID] = it.Category
	}
	for _, e := range d.Events {
		users[e.UserID][cat[e.ItemID]]++
	}
	if len(users) != 500 {
		t.Fatalf("%d users with events, want 500", len(users))
	}
	// Tastes: most of a user's events fall in their top three categories.
	focused := 0
	for _, byCat := range users {
		var counts []int
		total := 0
		for _, n := range byCat {
			counts = append(counts, n)
			total += n
		}
		slices.Sort(counts)
		slices.Reverse(counts)
		top := 0
		for _, n := range counts[:min(3, len(counts))] {
			top += n
		}
		if float64(top) >= 0.75*float64(total) {
			focused++
		}
	}
	if focused < 400 {
		t.Fatalf("only %d of 500 users concentrate on three categories", focused)
	}
	// Popularity skew: the top 10% of items get far more than 10% of events.
	var counts []int
	for _, n := range pop {
		counts = append(counts, n)
	}
	slices.Sort(counts)
	slices.Reverse(counts)
	top := 0
	for _, n := range counts[:len(counts)/10] {
		top += n
	}
	if share := float64(top) / float64(len(d.Events)); share < 0.25 {
		t.Fatalf("top 10%% of items hold %.2f of events; want a long tail", share)
	}

	var buf bytes.Buffer
	if err := d.WriteEvents(&buf); err != nil {
		t.Fatal(err)
	}
	var first Event
	if err := json.NewDecoder(&buf).Decode(&first); err != nil || first != d.Events[0] {
		t.Fatalf("events JSON round trip: %v %+v", err, first)
	}
}
