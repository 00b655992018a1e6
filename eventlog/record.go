package eventlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"google.golang.org/protobuf/proto"
)

// A record is an 8-byte header, the payload's length and its CRC-32C (both
// little-endian uint32), followed by the payload: one proto-marshaled Event.
const (
	headerLen = 8
	// maxRecord bounds a payload; an event with every string at its 256-byte
	// limit is under 2 KiB.
	maxRecord = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendRecord appends e's record to buf.
func appendRecord(buf []byte, e *recservev1.Event) ([]byte, error) {
	start := len(buf)
	buf = append(buf, make([]byte, headerLen)...)
	buf, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(buf, e)
	if err != nil {
		return buf[:start], err
	}
	payload := buf[start+headerLen:]
	if len(payload) == 0 || len(payload) > maxRecord {
		return buf[:start], fmt.Errorf("record of %d bytes", len(payload))
	}
	binary.LittleEndian.PutUint32(buf[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(payload, castagnoli))
	return buf, nil
}

// errBadRecord is returned by scan for a record that is cut short or does not
// check out; scan's offset says where it starts.
var errBadRecord = errors.New("bad record")

// scan reads the records in r, which holds size bytes, calling fn with each
// event and the offset of the record after it. It returns the offset after the
// last good record, with errBadRecord (wrapped) when a bad one follows it, an
// I/O error, or fn's error.
func scan(r io.Reader, size int64, fn func(e *recservev1.Event, end int64) error) (int64, error) {
	var (
		off int64
		hdr [headerLen]byte
		buf []byte
	)
	for off < size {
		if size-off < headerLen {
			return off, fmt.Errorf("%w: %d bytes of a header", errBadRecord, size-off)
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return off, err
		}
		n := int64(binary.LittleEndian.Uint32(hdr[:4]))
		if n == 0 || n > maxRecord || off+headerLen+n > size {
			return off, fmt.Errorf("%w: length %d at offset %d of %d", errBadRecord, n, off, size)
		}
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return off, err
		}
		if crc32.Checksum(buf, castagnoli) != binary.LittleEndian.Uint32(hdr[4:]) {
			return off, fmt.Errorf("%w: checksum mismatch at offset %d", errBadRecord, off)
		}
		e := new(recservev1.Event)
		if err := proto.Unmarshal(buf, e); err != nil {
			return off, fmt.Errorf("%w: at offset %d: %v", errBadRecord, off, err)
		}
		end := off + headerLen + n
		if err := fn(e, end); err != nil {
			return off, err
		}
		off = end
	}
	return off, nil
}
