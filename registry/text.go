package registry

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/recserve/recserve/internal/background"
)

// decodeUserIDs splits the content of user_ids.txt into ids: one per line, LF
// line endings, the final LF optional. An empty file holds no ids. The ids are
// substrings of s.
func decodeUserIDs(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	if strings.HasPrefix(s, "\uFEFF") {
		return nil, errors.New("starts with a UTF-8 byte order mark")
	}
	s = strings.TrimSuffix(s, "\n")
	ids := make([]string, 0, strings.Count(s, "\n")+1)
	for line := 1; ; line++ {
		id, rest, more := strings.Cut(s, "\n")
		if err := checkID(id); err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		ids = append(ids, id)
		if !more {
			return ids, nil
		}
		s = rest
	}
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

// maxSharedCategories bounds the distinct categories decodeItems shares one
// string among their items.
const maxSharedCategories = 1024

// decodeItems reads items.jsonl: one JSON object per line, LF line endings,
// the final LF optional. Unknown fields are errors. capacity is the number
// of items expected.
func decodeItems(r io.Reader, capacity int) ([]Item, error) {
	br := bufio.NewReader(r)
	items := make([]Item, 0, capacity)
	categories := map[string]string{} // one string per category, not per item
	for line := 1; ; line++ {
		if line%1024 == 0 {
			background.Pace()
		}
		b, err := br.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return nil, err
		}
		if len(b) == 0 && err == io.EOF {
			return items, nil
		}
		it, derr := decodeItem(bytes.TrimSuffix(b, []byte("\n")))
		if derr != nil {
			return nil, fmt.Errorf("line %d: %v", line, derr)
		}
		if c, ok := categories[it.Category]; ok {
			it.Category = c
		} else if len(categories) < maxSharedCategories {
			categories[it.Category] = it.Category
		}
		items = append(items, it)
		if err == io.EOF {
			return items, nil
		}
	}
}

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
// decodeItem then gives to encoding/json. b is valid UTF-8.
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
// the start of b and returns it and what follows it.
func plainString(b []byte) (s string, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return "", nil, false
	}
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return string(b[1:i]), b[i+1:], true
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
