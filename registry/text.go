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

// decodeItems reads items.jsonl: one JSON object per line, LF line endings,
// the final LF optional. Unknown fields are errors. capacity is the number
// of items expected.
func decodeItems(r io.Reader, capacity int) ([]Item, error) {
	br := bufio.NewReader(r)
	items := make([]Item, 0, capacity)
	for line := 1; ; line++ {
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
