package main

import (
	"testing"

	"google.golang.org/protobuf/proto"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

func TestBenchReplyDecodes(t *testing.T) {
	resp := &recservev1.RecommendResponse{Model: "bench", ModelVersion: "7", RequestId: "r1",
		Source: recservev1.RecommendationSource_RECOMMENDATION_SOURCE_MODEL}
	for i := range 20 {
		resp.Items = append(resp.Items, &recservev1.ScoredItem{ItemId: benchItemID(i), Score: float32(i)})
	}
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var r benchReply
	if err := r.decode(b); err != nil {
		t.Fatal(err)
	}
	if r.items != 20 || string(r.version) != "7" {
		t.Errorf("decoded %+v, want 20 items of version 7", r)
	}
	if err := r.decode(b[:len(b)-3]); err == nil {
		t.Error("a truncated response decoded without error")
	}
	if err := r.decode(nil); err != nil || r.items != 0 || r.version != nil {
		t.Errorf("empty response: %+v, %v", r, err)
	}
}
