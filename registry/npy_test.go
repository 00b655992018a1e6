package registry

import (
	"bytes"
	"encoding/binary"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestNPYRoundTrip(t *testing.T) {
	big := make([]float32, 3*(64<<10)/4+7) // spans several of the 64 KiB pieces package le reads and writes at a time
	for i := range big {
		big[i] = float32(i) * 0.5
	}
	tests := []struct {
		name  string
		data  any
		shape []int
	}{
		{"f4 matrix", []float32{1, -2.5, 3, float32(math.Inf(1)), 0, 7}, []int{2, 3}},
		{"f4 empty rows", []float32{}, []int{0, 8}},
		{"f4 big", big, []int{len(big), 1}},
		{"i8 vector", []int64{0, 3, 3, math.MaxInt64, math.MinInt64}, nil},
		{"i4 vector", []int32{-1, 0, 1 << 30}, []int{3}},
		{"i4 empty", []int32{}, nil},
		{"i4 nil", []int32(nil), []int{0}},
		{"scalar", []int64{42}, []int{}},
		{"3-d", []int32{1, 2, 3, 4, 5, 6, 7, 8}, []int{2, 2, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteNPY(&buf, tt.data, tt.shape...); err != nil {
				t.Fatal(err)
			}
			hlen := int(binary.LittleEndian.Uint16(buf.Bytes()[8:]))
			if (10+hlen)%64 != 0 || buf.Bytes()[10+hlen-1] != '\n' {
				t.Errorf("header of %d bytes is not 64-aligned and LF-terminated", hlen)
			}
			n := int64(buf.Len())
			dtype, shape, data, err := ReadNPY(&buf, n)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.shape
			if want == nil {
				want = []int{reflect.ValueOf(tt.data).Len()}
			}
			if !reflect.DeepEqual(shape, want) {
				t.Errorf("shape = %v, want %v", shape, want)
			}
			if reflect.ValueOf(data).Len() != reflect.ValueOf(tt.data).Len() || reflect.ValueOf(data).Len() > 0 && !reflect.DeepEqual(data, tt.data) {
				t.Errorf("data = %v (%s), want %v", data, dtype, tt.data)
			}
			if buf.Len() != 0 {
				t.Errorf("%d bytes left unread", buf.Len())
			}
		})
	}
}

// TestWriteNPYMatchesNumPy compares with the bytes numpy.save writes for
// np.zeros((2, 3), "<f4") (NumPy 1.x; 2.x pads the same header differently,
// which ReadNPY accepts too).
func TestWriteNPYMatchesNumPy(t *testing.T) {
	want := "\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" +
		strings.Repeat(" ", 58) + "\n" + strings.Repeat("\x00", 24)
	var buf bytes.Buffer
	if err := WriteNPY(&buf, make([]float32, 6), 2, 3); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != want {
		t.Errorf("WriteNPY =\n%q\nwant\n%q", got, want)
	}
}

func TestWriteNPYErrors(t *testing.T) {
	var buf bytes.Buffer
	for _, tt := range []struct {
		data  any
		shape []int
	}{
		{[]float64{1}, nil},
		{[]float32{1, 2, 3}, []int{2, 2}},
		{[]float32{1, 2}, []int{-1, -2}},
		{nil, nil},
	} {
		if err := WriteNPY(&buf, tt.data, tt.shape...); err == nil {
			t.Errorf("WriteNPY(%T %v, %v) succeeded", tt.data, tt.data, tt.shape)
		}
	}
}

// rawNPY builds a .npy file from a header dict literal, padded as NumPy does.
func rawNPY(major byte, dict string, data []byte) []byte {
	h := dict + strings.Repeat(" ", 64-(len(dict)+13)%64) + "\n"
	b := []byte("\x93NUMPY")
	b = append(b, major, 0)
	if major == 1 {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(h)))
	} else {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(h)))
	}
	return append(append(b, h...), data...)
}

func TestReadNPYHeaders(t *testing.T) {
	f4 := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, math.Float32bits(1.5)), math.Float32bits(-2))
	good := []struct {
		name  string
		file  []byte
		shape []int
	}{
		{"numpy 2 padding", rawNPY(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"+strings.Repeat(" ", 20), f4), []int{2}},
		{"version 2.0", rawNPY(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }", f4), []int{1, 2}},
		{"version 3.0", rawNPY(3, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), }", f4), []int{2, 1}},
		{"double quotes, no trailing comma", rawNPY(1, `{"shape": (2,),"descr":"<f4","fortran_order":False}`, f4), []int{2}},
		{"tuple trailing comma", rawNPY(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2,), }", f4), []int{1, 2}},
		{"spaces in tuple", rawNPY(1, "{'descr': '<f4', 'fortran_order': False, 'shape': ( 2 , ), }", f4), []int{2}},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			dtype, shape, data, err := ReadNPY(bytes.NewReader(tt.file), int64(len(tt.file)))
			if err != nil {
				t.Fatal(err)
			}
			if dtype != DTypeFloat32 || !reflect.DeepEqual(shape, tt.shape) || !reflect.DeepEqual(data, []float32{1.5, -2}) {
				t.Errorf("ReadNPY = %s %v %v", dtype, shape, data)
			}
		})
	}
	bad := []struct {
		name, file, wantErr string
	}{
		{"empty", "", "magic"},
		{"bad magic", "\x93NUMPZ\x01\x00\x00\x00", "magic"},
		{"version 4", string(rawNPY(4, "{}", nil)), "format version 4.0"},
		{"short header", "\x93NUMPY\x01\x00\x40\x00{'descr'", "header"},
		{"huge header", "\x93NUMPY\x02\x00\xff\xff\xff\x7f{", "too long"},
		{"fortran", string(rawNPY(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", f4)), "fortran_order"},
		{"big endian", string(rawNPY(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", f4)), "dtype"},
		{"float64", string(rawNPY(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", f4)), "dtype"},
		{"not a tuple", string(rawNPY(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2), }", f4)), "tuple"},
		{"negative dim", string(rawNPY(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", f4)), "shape"},
		{"python 2 long", string(rawNPY(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2L,), }", f4)), "shape"},
		{"missing key", string(rawNPY(1, "{'descr': '<f4', 'shape': (2,), }", f4)), "want keys"},
		{"unknown key", string(rawNPY(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", f4)), "unknown key"},
		{"duplicate key", string(rawNPY(1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", f4)), "duplicate"},
		{"trailing junk", string(rawNPY(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", f4)), "after the dict"},
		{"short data", string(rawNPY(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f4)), "does not fit"},
		{"overflowing shape", string(rawNPY(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", f4)), "does not fit"},
		{"huge dim", string(rawNPY(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (99999999999999999999,), }", f4)), "shape"},
		{"too many dims", string(rawNPY(1, "{'descr': '<i8', 'fortran_order': False, 'shape': ("+strings.Repeat("1,", 65)+"), }", f4)), "dimensions"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := ReadNPY(strings.NewReader(tt.file), int64(len(tt.file)))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ReadNPY error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// A stream longer than the declared limit must not make ReadNPY allocate past
// the limit.
func TestReadNPYLimit(t *testing.T) {
	file := npy(t, make([]float32, 1000))
	if _, _, _, err := ReadNPY(bytes.NewReader(file), int64(len(file)-1)); err == nil {
		t.Fatal("ReadNPY read past its limit")
	}
	if _, _, _, err := ReadNPY(bytes.NewReader(file), int64(len(file))); err != nil {
		t.Fatal(err)
	}
}
