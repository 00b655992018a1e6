package main

import (
	"errors"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// benchCodec is the load generator's gRPC codec: requests are encoded with
// protobuf as usual, and a RecommendResponse is decoded into a benchReply,
// only as far as the load generator checks it. Decoding every item (a
// message and an ID string each) was 13% of the load generator's CPU, which
// shares the machine with the server it measures.
type benchCodec struct{}

func (benchCodec) Name() string { return "proto" }

func (benchCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, err := proto.Marshal(v.(proto.Message))
	return mem.BufferSlice{mem.SliceBuffer(b)}, err
}

func (benchCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return v.(*benchReply).decode(data.Materialize())
}

// benchReply is what the load generator reads of a RecommendResponse.
type benchReply struct {
	items   int    // number of items
	version string // model_version
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
			v, n := protowire.ConsumeString(b)
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
