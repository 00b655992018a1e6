package events

import (
	"errors"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// ContentTypeHeader is the record header that may name a record's encoding:
// "application/json" (protojson) or "application/x-protobuf" (the default).
const ContentTypeHeader = "content-type"

// unmarshal decodes a record's value into m: protojson when the record's
// content-type header says application/json or, without that header, when
// the value starts with '{' (0x7b, a group start of field 15, which no
// recserve message has, so a protobuf value never starts with it); else
// binary protobuf. JSON takes the field names of the proto or their
// lowerCamelCase and the enum names, and rejects unknown fields.
func unmarshal(r *kgo.Record, m proto.Message) error {
	if len(r.Value) == 0 {
		return errors.New("empty record")
	}
	if isJSON(r) {
		return protojson.Unmarshal(r.Value, m)
	}
	return proto.Unmarshal(r.Value, m)
}

func isJSON(r *kgo.Record) bool {
	for _, h := range r.Headers {
		if strings.EqualFold(h.Key, ContentTypeHeader) {
			ct, _, _ := strings.Cut(string(h.Value), ";")
			return strings.EqualFold(strings.TrimSpace(ct), "application/json")
		}
	}
	return r.Value[0] == '{'
}
