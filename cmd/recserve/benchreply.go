package main

import (
	"errors"

	"google.golang.org/protobuf/encoding/protowire"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// benchReply is what the load generator reads of a RecommendResponse: it
// decodes only as far as it checks the answer. Decoding every item (a
// message and an ID string each) was 13% of the load generator's CPU, which
// shares the machine with the server it measures.
type benchReply struct {
	items   int    // number of items
	version []byte // model_version, within the decoded message
}

var replyFields = (&recservev1.RecommendResponse{}).ProtoReflect().Descriptor().Fields()

var (
	itemsField   = replyFields.ByName("items").Number()
	versionField = replyFields.ByName("model_version").Number()
)

var errBadReply = errors.New("malformed RecommendResponse")

// decode reads the wire encoding of a RecommendResponse.
func (r *benchReply) decode(b []byte) error {
	*r = benchReply{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errBadReply
		}
		b = b[n:]
		switch {
		case num == itemsField && typ == protowire.BytesType:
			r.items++
		case num == versionField && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errBadReply
			}
			r.version = v
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return errBadReply
		}
		b = b[n:]
	}
	return nil
}
