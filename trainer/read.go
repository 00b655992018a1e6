package trainer

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"
)

// ErrFormat is wrapped by every error about malformed input data.
var ErrFormat = errors.New("malformed interaction data")

// maxLine bounds the length of one input line.
const maxLine = 64 << 20

// EventWeight returns the weight ReadJSONL gives an event of type typ that
// has no explicit weight: view 1, click 2, add_to_cart 3, purchase 5. Other
// types, including "rating", have no default and must carry a weight.
func EventWeight(typ string) (float32, bool) {
	switch typ {
	case "view":
		return 1, true
	case "click":
		return 2, true
	case "add_to_cart":
		return 3, true
	case "purchase":
		return 5, true
	}
	return 0, false
}

func newScanner(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	return sc
}

// ReadLightGCN appends interactions in the LightGCN text format to d: one
// line per user, "uid item item ...", ids non-negative decimal integers
// separated by white space. Each pair gets weight 1. A line with only a uid
// adds the user without items; blank lines are skipped. Errors name the
// 1-based line number and wrap ErrFormat.
func ReadLightGCN(r io.Reader, d *Dataset) error {
	sc := newScanner(r)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		for _, f := range fields {
			if !isUint(f) {
				return fmt.Errorf("%w: line %d: id %q is not a non-negative integer", ErrFormat, line, f)
			}
		}
		u := d.AddUser(fields[0])
		for _, f := range fields[1:] {
			d.addRow(u, int32(d.AddItem(f)), 1)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read interactions: %w", err)
	}
	return nil
}

func isUint(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// event is one JSONL interaction record.
type event struct {
	UserID    string   `json:"user_id"`
	ItemID    string   `json:"item_id"`
	Type      string   `json:"type"`
	Weight    *float64 `json:"weight"`
	Timestamp string   `json:"timestamp"`
}

// ReadJSONL appends interactions in JSON Lines format to d, one object per
// line:
//
//	{"user_id":"u1","item_id":"i9","type":"purchase","weight":1.0,"timestamp":"2024-01-02T03:04:05Z"}
//
// user_id and item_id are required. An explicit weight (finite, ≥ 0) wins;
// otherwise EventWeight(type) is used, and a missing weight
// with type "rating" or an unknown type is an error. timestamp is optional
// but must be RFC 3339 when present. Blank lines are skipped. Errors name
// the 1-based line number and wrap ErrFormat.
func ReadJSONL(r io.Reader, d *Dataset) error {
	sc := newScanner(r)
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var e event
		if err := json.Unmarshal(b, &e); err != nil {
			return fmt.Errorf("%w: line %d: %v", ErrFormat, line, err)
		}
		w, err := e.weight()
		if err != nil {
			return fmt.Errorf("%w: line %d: %v", ErrFormat, line, err)
		}
		d.Add(e.UserID, e.ItemID, w)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read interactions: %w", err)
	}
	return nil
}

func (e *event) weight() (float32, error) {
	switch {
	case e.UserID == "":
		return 0, errors.New("missing user_id")
	case e.ItemID == "":
		return 0, errors.New("missing item_id")
	}
	if e.Timestamp != "" {
		if _, err := time.Parse(time.RFC3339, e.Timestamp); err != nil {
			return 0, fmt.Errorf("timestamp: %v", err)
		}
	}
	if e.Weight != nil {
		w := *e.Weight
		if math.IsNaN(w) || w < 0 || w > math.MaxFloat32 {
			return 0, fmt.Errorf("weight %v is not a finite non-negative number", w)
		}
		return float32(w), nil
	}
	w, ok := EventWeight(e.Type)
	if !ok {
		return 0, fmt.Errorf("event type %q needs an explicit weight", e.Type)
	}
	return w, nil
}

// ReadFile appends the interactions in the named file to d. A ".gz" suffix
// means gzip. After it is removed, a ".jsonl" or ".json" extension selects
// ReadJSONL; anything else is read with ReadLightGCN.
func ReadFile(path string, d *Dataset) (err error) {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	var r io.Reader = bufio.NewReaderSize(f, 1<<20)
	name := path
	if strings.HasSuffix(name, ".gz") {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		defer zr.Close()
		r = zr
		name = strings.TrimSuffix(name, ".gz")
	}
	read := ReadLightGCN
	if strings.HasSuffix(name, ".jsonl") || strings.HasSuffix(name, ".json") {
		read = ReadJSONL
	}
	if err := read(r, d); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
