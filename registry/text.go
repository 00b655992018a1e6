package registry

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
	"unsafe"

	"github.com/recserve/recserve/internal/background"
	"github.com/recserve/recserve/internal/hugepage"
)

// decodeUserRows indexes the content of user_ids.txt: one id per line, LF
// line endings, the final LF optional. An empty file holds no ids. It moves
// the ids together at the start of text, which the Rows keeps: no string per
// id is made.
func decodeUserRows(text []byte) (*Rows, error) {
	if bytes.HasPrefix(text, []byte("\uFEFF")) {
		return nil, errors.New("starts with a UTF-8 byte order mark")
	}
	rest := bytes.TrimSuffix(text, []byte("\n"))
	n := 0
	if len(text) > 0 {
		n = bytes.Count(rest, []byte("\n")) + 1
	}
	ends := hugepage.Make[int](n)
	end := 0
	for row := range n {
		if row%4096 == 0 {
			background.Pace()
		}
		var id []byte
		id, rest, _ = bytes.Cut(rest, []byte("\n"))
		if err := checkID(unsafe.String(unsafe.SliceData(id), len(id))); err != nil {
			return nil, fmt.Errorf("line %d: %v", row+1, err)
		}
		end += copy(text[end:], id) // never past what is still to read
		ends[row] = end
	}
	return uniqueRows(text[:end], ends)
}

// uniqueRows indexes ids as indexRows does, and fails on an id that repeats.
func uniqueRows(text []byte, ends []int) (*Rows, error) {
	r, first, dup := indexRows(text, ends)
	if dup >= 0 {
		return nil, fmt.Errorf("row %d: duplicate id %q, first at row %d", dup, r.ID(dup), first)
	}
	return r, nil
}

// encodeUserIDs writes ids one per line, each ended by LF.
func encodeUserIDs(w io.Writer, ids []string) error {
	for _, id := range ids {
		if _, err := io.WriteString(w, id+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// itemLine is one line of items.jsonl; a missing "available" means true.
type itemLine struct {
	ID         string            `json:"id"`
	Category   string            `json:"category"`
	Available  *bool             `json:"available"`
	Attributes map[string]string `json:"attributes"`
}

// decodeCatalog reads items.jsonl: one JSON object per line, LF line
// endings, the final LF optional; unknown fields are errors. It returns the
// rows of the items' ids and their catalog; attributes are checked, not
// kept. capacity is the number of items expected.
func decodeCatalog(r io.Reader, capacity int) (*Rows, *Catalog, error) {
	br := bufio.NewReader(r)
	var text []byte // the ids, back to back
	ends := hugepage.Make[int](capacity)[:0]
	c := newCatalog(capacity)
	for line := 1; ; line++ {
		if line%1024 == 0 {
			background.Pace()
		}
		b, err := readLine(br)
		if err != nil && err != io.EOF {
			return nil, nil, err
		}
		if len(b) == 0 && err == io.EOF {
			break
		}
		it, derr := decodeItem(bytes.TrimSuffix(b, []byte("\n")))
		if derr != nil {
			return nil, nil, fmt.Errorf("line %d: %v", line, derr)
		}
		if derr := checkID(it.ID); derr != nil {
			return nil, nil, fmt.Errorf("line %d: %v", line, derr)
		}
		text = append(text, it.ID...)
		ends = append(ends, len(text))
		c.add(it.Category, it.Available)
		if err == io.EOF {
			break
		}
	}
	rows, err := uniqueRows(append(hugepage.Make[byte](len(text))[:0], text...), ends)
	if err != nil {
		return nil, nil, err
	}
	return rows, c, nil
}

// readLine reads up to and including the next LF, like ReadBytes, but
// returns br's own buffer when the line fits in it: valid until the next read.
func readLine(br *bufio.Reader) ([]byte, error) {
	b, err := br.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return b, err
	}
	line := bytes.Clone(b)
	rest, err := br.ReadBytes('\n')
	return append(line, rest...), err
}

// decodeItem decodes one line of items.jsonl. The item's ID and Category may
// share memory with b.
func decodeItem(b []byte) (Item, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return Item{}, errors.New("empty line")
	}
	if !utf8.Valid(b) {
		return Item{}, errors.New("not valid UTF-8")
	}
	if it, ok := decodeCanonicalItem(b); ok {
		return it, nil
	}
	var l itemLine
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return Item{}, fmt.Errorf("bad JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Item{}, errors.New("bad JSON: data after the object")
	}
	it := Item{ID: l.ID, Category: l.Category, Available: true, Attributes: l.Attributes}
	if l.Available != nil {
		it.Available = *l.Available
	}
	return it, nil
}

// decodeCanonicalItem reads, without encoding/json's reflection and per-line
// decoder, the form encodeItems writes for an item without attributes:
// {"id":"…"[,"category":"…"],"available":true|false} with strings free of
// escapes and control characters. ok is false for any other line, which
// decodeItem then gives to encoding/json. b is valid UTF-8; the item's
// strings share its memory.
func decodeCanonicalItem(b []byte) (it Item, ok bool) {
	rest, ok := bytes.CutPrefix(b, []byte(`{"id":`))
	if !ok {
		return Item{}, false
	}
	if it.ID, rest, ok = plainString(rest); !ok {
		return Item{}, false
	}
	if r, found := bytes.CutPrefix(rest, []byte(`,"category":`)); found {
		if it.Category, rest, ok = plainString(r); !ok {
			return Item{}, false
		}
	}
	switch string(rest) {
	case `,"available":true}`:
		it.Available = true
	case `,"available":false}`:
	default:
		return Item{}, false
	}
	return it, true
}

// plainString reads a JSON string without escapes or control characters at
// the start of b and returns it, sharing b's memory, and what follows it.
func plainString(b []byte) (s string, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return "", nil, false
	}
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return unsafe.String(&b[1], i-1), b[i+1:], true
		case c == '\\' || c < 0x20:
			return "", nil, false
		}
	}
	return "", nil, false
}

// encodeItems writes items as JSON lines.
func encodeItems(w io.Writer, items []Item) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for i := range items {
		if err := enc.Encode(&items[i]); err != nil {
			return err
		}
	}
	return nil
}
