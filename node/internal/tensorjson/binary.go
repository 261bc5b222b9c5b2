package tensorjson

import (
	"encoding/binary"
	"math"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// The binary tensor data extension (Triton's, which its clients use by
// default): a request's JSON is followed by the inputs' raw values, each
// input saying in parameters.binary_data_size how many bytes are its own,
// in the order of the inputs; the Inference-Header-Content-Length header
// gives the JSON's length. Values are little-endian, row-major, in the
// datatype's native size; a BOOL is one byte, 0 or 1.

// FromV2Binary reads one input whose values are raw, in the datatype's
// binary form: raw must be exactly the elements the shape calls for.
func FromV2Binary(i int, in V2Input, raw []byte, s *structs.Schema) (ml.Tensor, error) {
	path, t, n, err := inputHead(i, in, s)
	if err != nil {
		return t, err
	}
	if len(in.Data) > 0 {
		return ml.Tensor{}, structs.Errorf(structs.CodeInvalid, "%s has both data and parameters.binary_data_size: give one", path)
	}
	size := v2Sizes[in.Datatype]
	if len(raw) != n*size {
		return ml.Tensor{}, structs.Errorf(structs.CodeInvalid, "%s (input %q): shape %v of %s needs %d bytes of binary data, binary_data_size is %d", path, in.Name, in.Shape, in.Datatype, n*size, len(raw))
	}
	t.Data = make([]float64, n)
	for k := range n {
		b := raw[k*size:]
		var x float64
		switch in.Datatype {
		case "BOOL":
			if b[0] > 1 {
				return ml.Tensor{}, structs.Errorf(structs.CodeInvalid, "%s (input %q): element %d is the byte %d, not a BOOL (0 or 1)", path, in.Name, k, b[0])
			}
			x = float64(b[0])
		case "UINT8":
			x = float64(b[0])
		case "INT8":
			x = float64(int8(b[0]))
		case "UINT16":
			x = float64(binary.LittleEndian.Uint16(b))
		case "INT16":
			x = float64(int16(binary.LittleEndian.Uint16(b)))
		case "UINT32":
			x = float64(binary.LittleEndian.Uint32(b))
		case "INT32":
			x = float64(int32(binary.LittleEndian.Uint32(b)))
		case "UINT64":
			x = float64(binary.LittleEndian.Uint64(b))
		case "INT64":
			x = float64(int64(binary.LittleEndian.Uint64(b)))
		case "FP16":
			x = halfToFloat(binary.LittleEndian.Uint16(b))
		case "FP32":
			x = float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
		case "FP64":
			x = math.Float64frombits(binary.LittleEndian.Uint64(b))
		}
		t.Data[k] = x
	}
	return t, nil
}

// AppendBinary appends data in datatype's binary form (a numeric datatype;
// values are rounded to the nearest for the integer types, saturating at
// their range, and NaN is 0 there).
func AppendBinary(b []byte, datatype string, data []float64) []byte {
	integer := func(x, lo, hi float64) float64 {
		if math.IsNaN(x) {
			return 0
		}
		return math.Max(lo, math.Min(hi, math.Round(x)))
	}
	for _, x := range data {
		switch datatype {
		case "BOOL":
			v := byte(0)
			if x != 0 && !math.IsNaN(x) {
				v = 1
			}
			b = append(b, v)
		case "UINT8":
			b = append(b, byte(integer(x, 0, math.MaxUint8)))
		case "INT8":
			b = append(b, byte(int8(integer(x, math.MinInt8, math.MaxInt8))))
		case "UINT16":
			b = binary.LittleEndian.AppendUint16(b, uint16(integer(x, 0, math.MaxUint16)))
		case "INT16":
			b = binary.LittleEndian.AppendUint16(b, uint16(int16(integer(x, math.MinInt16, math.MaxInt16))))
		case "UINT32":
			b = binary.LittleEndian.AppendUint32(b, uint32(integer(x, 0, math.MaxUint32)))
		case "INT32":
			b = binary.LittleEndian.AppendUint32(b, uint32(int32(integer(x, math.MinInt32, math.MaxInt32))))
		case "UINT64":
			b = binary.LittleEndian.AppendUint64(b, uint64(integer(x, 0, math.MaxUint64)))
		case "INT64":
			b = binary.LittleEndian.AppendUint64(b, uint64(int64(integer(x, math.MinInt64, math.MaxInt64))))
		case "FP16":
			b = binary.LittleEndian.AppendUint16(b, floatToHalf(x))
		case "FP32":
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(x)))
		default:
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
		}
	}
	return b
}

// halfToFloat reads an IEEE 754 binary16 value.
func halfToFloat(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	frac := float64(h & 0x3ff)
	switch exp {
	case 0: // zero or subnormal
		return sign * math.Ldexp(frac, -24)
	case 0x1f:
		if frac == 0 {
			return math.Inf(int(sign))
		}
		return math.NaN()
	}
	return sign * math.Ldexp(1+frac/1024, exp-15)
}

// floatToHalf rounds x to the nearest IEEE 754 binary16 value, ties to
// even; beyond its range it is an infinity.
func floatToHalf(x float64) uint16 {
	var sign uint16
	if math.Signbit(x) {
		sign = 0x8000
		x = -x
	}
	switch {
	case math.IsNaN(x):
		return 0x7e00
	case x >= 65520: // rounds past the largest half, 65504
		return sign | 0x7c00
	case x < math.Ldexp(1, -14): // subnormal: a multiple of 2^-24
		return sign | uint16(math.RoundToEven(x*(1<<24)))
	}
	frac, exp := math.Frexp(x) // x = frac × 2^exp, frac in [0.5, 1)
	m := math.RoundToEven((frac*2 - 1) * 1024)
	e := exp - 1 + 15
	if m == 1024 { // rounded up to the next power of two
		m, e = 0, e+1
	}
	if e >= 0x1f {
		return sign | 0x7c00
	}
	return sign | uint16(e)<<10 | uint16(m)
}
