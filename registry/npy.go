package registry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/recserve/recserve/internal/hugepage"
	"github.com/recserve/recserve/internal/le"
)

// NumPy dtypes used by the format: little-endian float32, int64 and int32.
const (
	DTypeFloat32 = "<f4"
	DTypeInt64   = "<i8"
	DTypeInt32   = "<i4"
)

const (
	npyMagic     = "\x93NUMPY"
	npyAlign     = 64      // header alignment NumPy uses when writing
	maxNPYHeader = 1 << 16 // NumPy itself refuses headers over 10000 bytes by default
	maxNPYDims   = 64
)

// WriteNPY writes data as a NumPy .npy file, format version 1.0, in C order.
// data is a []float32, []int64 or []int32; shape defaults to one dimension of
// len(data), and its product must equal len(data).
func WriteNPY(w io.Writer, data any, shape ...int) error {
	var dtype string
	var n int
	switch d := data.(type) {
	case []float32:
		dtype, n = DTypeFloat32, len(d)
	case []int64:
		dtype, n = DTypeInt64, len(d)
	case []int32:
		dtype, n = DTypeInt32, len(d)
	default:
		return fmt.Errorf("registry: WriteNPY: unsupported data type %T", data)
	}
	if shape == nil {
		shape = []int{n}
	}
	if count, ok := shapeCount(shape); !ok || count != n {
		return fmt.Errorf("registry: WriteNPY: shape %s does not hold %d values", formatShape(shape), n)
	}
	header := "{'descr': '" + dtype + "', 'fortran_order': False, 'shape': " + formatShape(shape) + ", }"
	pad := npyAlign - (len(npyMagic)+4+len(header)+1)%npyAlign
	if pad == npyAlign {
		pad = 0
	}
	header += strings.Repeat(" ", pad) + "\n"
	if len(header) > math.MaxUint16 {
		return fmt.Errorf("registry: WriteNPY: header of %d bytes is too long", len(header))
	}
	pre := []byte(npyMagic + "\x01\x00\x00\x00")
	binary.LittleEndian.PutUint16(pre[8:], uint16(len(header)))
	if _, err := w.Write(pre); err != nil {
		return err
	}
	if _, err := io.WriteString(w, header); err != nil {
		return err
	}
	switch d := data.(type) {
	case []float32:
		return le.Write(w, d)
	case []int64:
		return le.Write(w, d)
	default:
		return le.Write(w, data.([]int32))
	}
}

// ReadNPY reads a NumPy .npy array (format version 1.0, 2.0 or 3.0) of dtype
// "<f4", "<i8" or "<i4" in C order from r, reading exactly the header and the
// data. data is a []float32, []int64 or []int32. limit is the most bytes the
// array may take; ReadNPY allocates no more than that, whatever the header
// claims.
func ReadNPY(r io.Reader, limit int64) (dtype string, shape []int, data any, err error) {
	var pre [12]byte
	if _, err := io.ReadFull(r, pre[:8]); err != nil {
		return "", nil, nil, fmt.Errorf("npy: reading magic: %w", noEOF(err))
	}
	if string(pre[:6]) != npyMagic {
		return "", nil, nil, errors.New("npy: bad magic, not a .npy file")
	}
	major, minor := pre[6], pre[7]
	var prefix, hlen int64
	switch {
	case major == 1 && minor == 0:
		prefix = 10
	case (major == 2 || major == 3) && minor == 0:
		prefix = 12
	default:
		return "", nil, nil, fmt.Errorf("npy: unsupported format version %d.%d", major, minor)
	}
	if _, err := io.ReadFull(r, pre[8:prefix]); err != nil {
		return "", nil, nil, fmt.Errorf("npy: reading header length: %w", noEOF(err))
	}
	if prefix == 10 {
		hlen = int64(binary.LittleEndian.Uint16(pre[8:]))
	} else {
		hlen = int64(binary.LittleEndian.Uint32(pre[8:]))
	}
	if hlen > maxNPYHeader || prefix+hlen > limit {
		return "", nil, nil, fmt.Errorf("npy: header length %d is too long", hlen)
	}
	hdr := make([]byte, hlen)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return "", nil, nil, fmt.Errorf("npy: reading header: %w", noEOF(err))
	}
	dtype, fortran, shape, err := parseNPYHeader(hdr)
	if err != nil {
		if len(hdr) > 200 {
			hdr = append(hdr[:200:200], "..."...)
		}
		return "", nil, nil, fmt.Errorf("npy: header %q: %v", hdr, err)
	}
	if fortran {
		return "", nil, nil, errors.New("npy: fortran_order is True; write C order (numpy.ascontiguousarray)")
	}
	var size int64
	switch dtype {
	case DTypeFloat32, DTypeInt32:
		size = 4
	case DTypeInt64:
		size = 8
	default:
		return "", nil, nil, fmt.Errorf("npy: unsupported dtype %q, want %q, %q or %q", dtype, DTypeFloat32, DTypeInt64, DTypeInt32)
	}
	count, ok := shapeCount(shape)
	if left := limit - prefix - hlen; !ok || int64(count) > left/size {
		return "", nil, nil, fmt.Errorf("npy: shape %s of %s does not fit in the %d bytes left", formatShape(shape), dtype, left)
	}
	switch dtype {
	case DTypeFloat32:
		data, err = readElems[float32](r, count)
	case DTypeInt64:
		data, err = readElems[int64](r, count)
	default:
		data, err = readElems[int32](r, count)
	}
	if err != nil {
		return "", nil, nil, fmt.Errorf("npy: reading %d values of %s: %w", count, dtype, noEOF(err))
	}
	return dtype, shape, data, nil
}

func readElems[T le.Number](r io.Reader, n int) ([]T, error) {
	out := hugepage.Make[T](n)
	if err := le.ReadFull(r, out); err != nil {
		return nil, err
	}
	return out, nil
}

// noEOF turns a bare io.EOF into io.ErrUnexpectedEOF: a short file is an
// error, not a clean end.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// shapeCount returns the number of elements of shape, or false when a
// dimension is negative or the count overflows an int.
func shapeCount(shape []int) (int, bool) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if d != 0 && n > math.MaxInt/d {
			return 0, false
		}
		n *= d
	}
	return n, true
}

// formatShape formats shape as Python does a tuple: (), (3,), (3, 4).
func formatShape(shape []int) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, d := range shape {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(d))
	}
	if len(shape) == 1 {
		b.WriteByte(',')
	}
	b.WriteByte(')')
	return b.String()
}

// parseNPYHeader parses the Python dict literal of a .npy header, such as
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// It accepts exactly the keys descr, fortran_order and shape, with string,
// boolean and tuple-of-integers values.
func parseNPYHeader(h []byte) (descr string, fortran bool, shape []int, err error) {
	p := pyParser{s: h}
	if !p.eat('{') {
		return "", false, nil, errors.New("not a dict")
	}
	var have [3]bool
	for !p.eat('}') {
		key, err := p.str()
		if err != nil {
			return "", false, nil, err
		}
		if !p.eat(':') {
			return "", false, nil, fmt.Errorf("missing ':' after key %q", key)
		}
		var k int
		switch key {
		case "descr":
			k = 0
			descr, err = p.str()
		case "fortran_order":
			k = 1
			fortran, err = p.bool()
		case "shape":
			k = 2
			shape, err = p.tuple()
		default:
			return "", false, nil, fmt.Errorf("unknown key %q", key)
		}
		if err != nil {
			return "", false, nil, fmt.Errorf("%s: %v", key, err)
		}
		if have[k] {
			return "", false, nil, fmt.Errorf("duplicate key %q", key)
		}
		have[k] = true
		if !p.eat(',') {
			if !p.eat('}') {
				return "", false, nil, errors.New("missing ',' or '}'")
			}
			break
		}
	}
	p.ws()
	if p.i != len(p.s) {
		return "", false, nil, errors.New("data after the dict")
	}
	if !have[0] || !have[1] || !have[2] {
		return "", false, nil, errors.New("want keys 'descr', 'fortran_order' and 'shape'")
	}
	return descr, fortran, shape, nil
}

// pyParser reads the few Python literals a .npy header uses.
type pyParser struct {
	s []byte
	i int
}

func (p *pyParser) ws() {
	for p.i < len(p.s) && strings.IndexByte(" \t\r\n", p.s[p.i]) >= 0 {
		p.i++
	}
}

// eat skips white space and then c, if c is next.
func (p *pyParser) eat(c byte) bool {
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a quoted string without escapes.
func (p *pyParser) str() (string, error) {
	p.ws()
	if p.i >= len(p.s) || p.s[p.i] != '\'' && p.s[p.i] != '"' {
		return "", errors.New("want a quoted string")
	}
	q := p.s[p.i]
	for j := p.i + 1; j < len(p.s); j++ {
		switch p.s[j] {
		case q:
			s := string(p.s[p.i+1 : j])
			p.i = j + 1
			return s, nil
		case '\\', '\n':
			return "", errors.New("unsupported character in string")
		}
	}
	return "", errors.New("unterminated string")
}

func (p *pyParser) bool() (bool, error) {
	p.ws()
	rest := p.s[p.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "True":
		p.i += 4
		return true, nil
	case len(rest) >= 5 && string(rest[:5]) == "False":
		p.i += 5
		return false, nil
	}
	return false, errors.New("want True or False")
}

// tuple reads a tuple of non-negative integers: (), (3,), (3, 4), (3, 4,).
func (p *pyParser) tuple() ([]int, error) {
	if !p.eat('(') {
		return nil, errors.New("want a tuple")
	}
	shape := []int{}
	for !p.eat(')') {
		if len(shape) == maxNPYDims {
			return nil, fmt.Errorf("more than %d dimensions", maxNPYDims)
		}
		p.ws()
		j := p.i
		for j < len(p.s) && '0' <= p.s[j] && p.s[j] <= '9' {
			j++
		}
		d, err := strconv.Atoi(string(p.s[p.i:j]))
		if err != nil {
			return nil, errors.New("want a non-negative integer")
		}
		p.i = j
		shape = append(shape, d)
		if !p.eat(',') {
			if !p.eat(')') {
				return nil, errors.New("missing ',' or ')'")
			}
			if len(shape) == 1 {
				return nil, errors.New("(n) is not a tuple, want (n,)")
			}
			break
		}
	}
	return shape, nil
}
