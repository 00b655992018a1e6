package catalog

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// Redis persists the state in two hashes, shared by every replica that uses
// the same server and prefix:
//
//	<p>catalog:items   c:<item id> -> its content, a marshaled upsert or deletion record
//	                   a:<item id> -> its availability, a marshaled availability record
//	<p>catalog:times   the same fields -> the record's time, 20-digit unix nanoseconds
//
// A record is written only if it is not older than the stored one, so replicas
// that apply the topic at different paces leave the newest state behind.
type Redis struct {
	rdb    *redis.Client
	prefix string
}

// NewRedis returns a store over rdb under key prefix (recserve's is "recserve:").
func NewRedis(rdb *redis.Client, prefix string) *Redis { return &Redis{rdb: rdb, prefix: prefix} }

// saveNewer sets each item (ARGV: id, time, state triples) unless its stored
// time is later; times are fixed-width strings, so they compare as text.
var saveNewer = redis.NewScript(`
for i = 1, #ARGV, 3 do
  local t = redis.call('HGET', KEYS[2], ARGV[i])
  if not t or t <= ARGV[i+1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i+2])
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i+1])
  end
end
return 0`)

func (r *Redis) keys() []string {
	return []string{r.prefix + "catalog:items", r.prefix + "catalog:times"}
}

// Save writes the states of items, in one script call.
func (r *Redis) Save(ctx context.Context, items []Item) error {
	if len(items) == 0 {
		return nil
	}
	args := make([]any, 0, 6*len(items))
	for _, it := range items {
		for _, r := range it.Records() {
			b, err := proto.Marshal(r)
			if err != nil {
				return fmt.Errorf("catalog: encode %q: %w", it.ID, err)
			}
			field := "c:" + it.ID
			if r.GetAvailability() != nil {
				field = "a:" + it.ID
			}
			args = append(args, field, fmt.Sprintf("%020d", r.GetTime().AsTime().UnixNano()), b)
		}
	}
	if err := saveNewer.Run(ctx, r.rdb, r.keys(), args...).Err(); err != nil && err != redis.Nil {
		return fmt.Errorf("catalog: redis save: %w", err)
	}
	return nil
}

// Load reads every stored item.
func (r *Redis) Load(ctx context.Context) ([]Item, error) {
	st := NewState()
	var cursor uint64
	for {
		kv, next, err := r.rdb.HScan(ctx, r.keys()[0], cursor, "", 1000).Result()
		if err != nil {
			return nil, fmt.Errorf("catalog: redis load: %w", err)
		}
		recs := make([]*recservev1.CatalogRecord, 0, len(kv)/2)
		for i := 1; i < len(kv); i += 2 {
			rec := new(recservev1.CatalogRecord)
			if err := proto.Unmarshal([]byte(kv[i]), rec); err != nil {
				return nil, fmt.Errorf("catalog: redis load %q: %w", kv[i-1], err)
			}
			recs = append(recs, rec)
		}
		st.Apply(recs)
		if cursor = next; cursor == 0 {
			return st.Items(), nil
		}
	}
}
