package tensorjson

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// TestHalf: every binary16 value reads and writes back to itself (NaNs to
// the one quiet NaN), and rounding to binary16 is to the nearest, ties to
// even, as IEEE 754 says.
func TestHalf(t *testing.T) {
	for h := range 1 << 16 {
		x := halfToFloat(uint16(h))
		got := floatToHalf(x)
		if math.IsNaN(x) {
			if got != 0x7e00 {
				t.Fatalf("NaN %#04x wrote back as %#04x", h, got)
			}
			continue
		}
		if got != uint16(h) {
			t.Fatalf("%#04x = %v wrote back as %#04x", h, x, got)
		}
	}
	for _, tc := range []struct {
		x    float64
		want uint16
	}{
		{1, 0x3c00}, {-2, 0xc000}, {65504, 0x7bff}, {65519, 0x7bff}, {65520, 0x7c00}, {1e9, 0x7c00},
		{1 + 1.0/2048, 0x3c00},         // a tie, to the even 1.0
		{1 + 3.0/2048, 0x3c02},         // a tie, to the even 1 + 2/1024
		{math.Ldexp(1, -24), 0x0001},   // the smallest subnormal
		{math.Ldexp(1, -26), 0x0000},   // below half of it
		{math.Ldexp(1.5, -25), 0x0001}, // rounds up to it
		{2047.0 / 1024 * 0.5, 0x3bff},  // just below 1
		{math.Inf(-1), 0xfc00},
	} {
		if got := floatToHalf(tc.x); got != tc.want {
			t.Errorf("floatToHalf(%v) = %#04x, want %#04x", tc.x, got, tc.want)
		}
	}
}

// TestAppendBinary_RoundTrips: what AppendBinary writes, FromV2Binary
// reads back, for every numeric datatype; integer types round and
// saturate.
func TestAppendBinary_RoundTrips(t *testing.T) {
	s := &structs.Schema{Inputs: []structs.TensorSpec{{Name: "x"}}}
	vals := []float64{0, 1, 7, 100, 3}
	for dt, size := range v2Sizes {
		if size == 0 {
			continue
		}
		in := vals
		if dt == "BOOL" {
			in = []float64{0, 1, 1, 0, 1}
		}
		raw := AppendBinary(nil, dt, in)
		if len(raw) != size*len(in) {
			t.Fatalf("%s: %d bytes, want %d", dt, len(raw), size*len(in))
		}
		got, err := FromV2Binary(0, V2Input{Name: "x", Shape: []int{5}, Datatype: dt}, raw, s)
		if err != nil {
			t.Fatalf("%s: %v", dt, err)
		}
		for i := range in {
			if got.Data[i] != in[i] {
				t.Fatalf("%s: read back %v, wrote %v", dt, got.Data, in)
			}
		}
	}
	if b := AppendBinary(nil, "UINT8", []float64{-3, 2.6, 999, math.NaN()}); string(b) != "\x00\x03\xff\x00" {
		t.Errorf("UINT8 of -3, 2.6, 999, NaN = %v", b)
	}
	if b := AppendBinary(nil, "INT16", []float64{-40000}); int16(binary.LittleEndian.Uint16(b)) != math.MinInt16 {
		t.Errorf("INT16 of -40000 = %v", b)
	}
}

// FuzzFromV2Binary: any datatype, shape and bytes give a tensor of exactly
// the shape's elements or an invalid_argument error; never a panic.
func FuzzFromV2Binary(f *testing.F) {
	f.Add("FP32", []byte(`[1,4]`), AppendBinary(nil, "FP32", []float64{1, 2, 3, 4}))
	f.Add("BOOL", []byte(`[3]`), []byte{0, 1, 2})
	f.Add("FP16", []byte(`[2,1]`), []byte{0, 0x3c, 0xff, 0x7c})
	f.Add("INT64", []byte(`[4611686018427387904,2]`), []byte{})
	f.Add("BYTES", []byte(`[1]`), []byte{1, 0, 0, 0, 'x'})
	s := &structs.Schema{Inputs: []structs.TensorSpec{{Name: "x"}}}
	f.Fuzz(func(t *testing.T, datatype string, shapeJSON, raw []byte) {
		var shape []int
		if json.Unmarshal(shapeJSON, &shape) != nil {
			return
		}
		got, err := FromV2Binary(0, V2Input{Name: "x", Shape: shape, Datatype: datatype}, raw, s)
		if err != nil {
			if structs.ErrorCode(err) != structs.CodeInvalid {
				t.Fatalf("error %v is not invalid_argument", err)
			}
			return
		}
		n, ok := ShapeElements(shape)
		if !ok || len(got.Data) != n || len(raw) != n*v2Sizes[datatype] {
			t.Fatalf("shape %v, %d bytes of %s: %d values", shape, len(raw), datatype, len(got.Data))
		}
	})
}
