package server

import (
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// FuzzValidateRequests decodes arbitrary bytes as each request type and checks that
// validation never panics and that whatever it accepts is within the limits.
func FuzzValidateRequests(f *testing.F) {
	seeds := []proto.Message{
		&recservev1.RecommendRequest{UserId: "u1", N: proto.Int32(10)},
		&recservev1.RecommendRequest{UserId: "u1", Filter: &recservev1.Filter{IncludeCategories: []string{"books", ""}, ExcludeItemIds: []string{"i1"}}},
		&recservev1.SimilarItemsRequest{ItemId: "i1", N: proto.Int32(-1)},
		&recservev1.BatchRecommendRequest{UserIds: []string{"a", "b"}, N: proto.Int32(1001)},
	}
	for _, m := range seeds {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte{0x12, 0x03, 0xff, 0xfe, 0xfd}) // user_id with invalid UTF-8
	f.Fuzz(func(t *testing.T, data []byte) {
		checkIDs := func(ids ...string) {
			for _, id := range ids {
				if id == "" || len(id) > MaxIDLen || !utf8.ValidString(id) {
					t.Fatalf("accepted id %q", id)
				}
			}
		}
		checkFilter := func(fl *recservev1.Filter) {
			for _, l := range [][]string{fl.GetIncludeCategories(), fl.GetExcludeCategories(), fl.GetExcludeItemIds()} {
				if len(l) > MaxFilterLen {
					t.Fatalf("accepted a filter list of %d", len(l))
				}
				checkIDs(l...)
			}
		}
		checkN := func(n int) {
			if n < 1 || n > MaxN {
				t.Fatalf("accepted n = %d", n)
			}
		}
		var rec recservev1.RecommendRequest
		if proto.Unmarshal(data, &rec) == nil {
			if n, err := validateRecommend(&rec); err == nil {
				checkN(n)
				checkIDs(rec.GetUserId())
				checkFilter(rec.GetFilter())
			}
		}
		var sim recservev1.SimilarItemsRequest
		if proto.Unmarshal(data, &sim) == nil {
			if n, err := validateSimilar(&sim); err == nil {
				checkN(n)
				checkIDs(sim.GetItemId())
				checkFilter(sim.GetFilter())
			}
		}
		var batch recservev1.BatchRecommendRequest
		if proto.Unmarshal(data, &batch) == nil {
			if n, err := validateBatch(&batch); err == nil {
				checkN(n)
				if len(batch.GetUserIds()) > MaxBatchUsers {
					t.Fatalf("accepted %d users", len(batch.GetUserIds()))
				}
				checkIDs(batch.GetUserIds()...)
				checkFilter(batch.GetFilter())
			}
		}
	})
}
