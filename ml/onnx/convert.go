package onnx

import (
	"fmt"
	"math"
	"slices"
	"strings"

	pb "github.com/advancedclimatesystems/gonnx/onnx"
	"gorgonia.org/tensor"

	"github.com/kilnml/kiln/ml"
)

// elemType is an ONNX element type this runtime carries between ml's
// float64 tensors and gonnx's typed ones.
type elemType struct {
	// name is the type's Open Inference Protocol name. ml declares the five
	// common ones; the narrower integer types use the protocol's spelling.
	name  string
	proto pb.TensorProto_DataType
	// For integer and boolean types: the whole numbers the type holds, lo
	// inclusive, hi exclusive (float64 holds both bounds exactly).
	integer bool
	lo, hi  float64
}

var elemTypes = map[pb.TensorProto_DataType]elemType{
	pb.TensorProto_FLOAT:  {name: ml.FP32, proto: pb.TensorProto_FLOAT},
	pb.TensorProto_DOUBLE: {name: ml.FP64, proto: pb.TensorProto_DOUBLE},
	pb.TensorProto_INT64:  {name: ml.INT64, proto: pb.TensorProto_INT64, integer: true, lo: -(1 << 63), hi: 1 << 63},
	pb.TensorProto_INT32:  {name: ml.INT32, proto: pb.TensorProto_INT32, integer: true, lo: -(1 << 31), hi: 1 << 31},
	pb.TensorProto_BOOL:   {name: ml.BOOL, proto: pb.TensorProto_BOOL, integer: true, lo: 0, hi: 2},
	pb.TensorProto_INT16:  {name: "INT16", proto: pb.TensorProto_INT16, integer: true, lo: -(1 << 15), hi: 1 << 15},
	pb.TensorProto_INT8:   {name: "INT8", proto: pb.TensorProto_INT8, integer: true, lo: -(1 << 7), hi: 1 << 7},
	pb.TensorProto_UINT64: {name: "UINT64", proto: pb.TensorProto_UINT64, integer: true, lo: 0, hi: 1 << 64},
	pb.TensorProto_UINT32: {name: "UINT32", proto: pb.TensorProto_UINT32, integer: true, lo: 0, hi: 1 << 32},
	pb.TensorProto_UINT16: {name: "UINT16", proto: pb.TensorProto_UINT16, integer: true, lo: 0, hi: 1 << 16},
	pb.TensorProto_UINT8:  {name: "UINT8", proto: pb.TensorProto_UINT8, integer: true, lo: 0, hi: 1 << 8},
}

func supportedTypes() string {
	names := make([]string, 0, len(elemTypes))
	for _, e := range elemTypes {
		names = append(names, e.name)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// checkValues holds a request tensor's values to its input's element type:
// integers and booleans whole and in range, and no NaN unless nanOK (a
// float NaN then passes to the model).
func (s inputSpec) checkValues(t ml.Tensor, nanOK bool) error {
	e := s.elem
	for i, v := range t.Data {
		if math.IsNaN(v) && !(nanOK && !e.integer) {
			return fmt.Errorf("%w: onnx: input %q element %v is missing (NaN); ONNX models cannot take missing values", ml.ErrBadInput, s.name, coordinates(i, t.Shape))
		}
		if e.integer && (v != math.Trunc(v) || v < e.lo || v >= e.hi) {
			return fmt.Errorf("%w: onnx: input %q element %v is %g, which is not a valid %s (whole numbers in [%.0f, %.0f))", ml.ErrBadInput, s.name, coordinates(i, t.Shape), v, e.name, e.lo, e.hi)
		}
	}
	return nil
}

// toGonnx builds a new gonnx tensor of the input's element type from a
// request tensor that graph.match has checked. gorgonia tensors are never
// shared between calls: each call gets its own backing slice.
func toGonnx(spec inputSpec, t ml.Tensor) (tensor.Tensor, error) {
	for i, d := range t.Shape {
		if d == 0 { // gorgonia has no empty tensors
			return nil, fmt.Errorf("%w: onnx: input %q has shape %v: dimension %d is empty", ml.ErrBadInput, spec.name, t.Shape, i)
		}
	}
	e := spec.elem
	switch e.proto {
	case pb.TensorProto_FLOAT:
		return newTensor(narrow[float32](t.Data), t.Shape), nil
	case pb.TensorProto_DOUBLE:
		return newTensor(slices.Clone(t.Data), t.Shape), nil
	case pb.TensorProto_INT64:
		return newTensor(narrow[int64](t.Data), t.Shape), nil
	case pb.TensorProto_INT32:
		return newTensor(narrow[int32](t.Data), t.Shape), nil
	case pb.TensorProto_INT16:
		return newTensor(narrow[int16](t.Data), t.Shape), nil
	case pb.TensorProto_INT8:
		return newTensor(narrow[int8](t.Data), t.Shape), nil
	case pb.TensorProto_UINT64:
		return newTensor(narrow[uint64](t.Data), t.Shape), nil
	case pb.TensorProto_UINT32:
		return newTensor(narrow[uint32](t.Data), t.Shape), nil
	case pb.TensorProto_UINT16:
		return newTensor(narrow[uint16](t.Data), t.Shape), nil
	case pb.TensorProto_UINT8:
		return newTensor(narrow[uint8](t.Data), t.Shape), nil
	case pb.TensorProto_BOOL:
		b := make([]bool, len(t.Data))
		for i, v := range t.Data {
			b[i] = v != 0
		}
		return newTensor(b, t.Shape), nil
	}
	return nil, fmt.Errorf("%w: onnx: input %q: element type %s is not converted", ml.ErrRuntime, spec.name, e.name)
}

type number interface {
	~float32 | ~float64 | ~int | ~int8 | ~int16 | ~int32 | ~int64 | ~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64
}

func narrow[T number](v []float64) []T {
	out := make([]T, len(v))
	for i, x := range v {
		out[i] = T(x)
	}
	return out
}

func widen[T number](v []T) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func newTensor[T any](data []T, shape []int) tensor.Tensor {
	if len(shape) == 0 {
		return tensor.New(tensor.FromScalar(data[0]))
	}
	return tensor.New(tensor.WithShape(slices.Clone(shape)...), tensor.WithBacking(data))
}

// coordinates turns a row-major flat index into per-dimension indices.
func coordinates(flat int, shape []int) []int {
	c := make([]int, len(shape))
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] > 0 {
			c[i] = flat % shape[i]
			flat /= shape[i]
		}
	}
	return c
}

// fromGonnx copies a gonnx output into an ml.Tensor with its real shape.
func fromGonnx(name string, t tensor.Tensor) (ml.Tensor, error) {
	if d, ok := t.(*tensor.Dense); ok && d.IsMaterializable() {
		t = d.Materialize()
	}
	var data []float64
	switch v := t.Data().(type) {
	case []float32:
		data = widen(v)
	case []float64:
		data = slices.Clone(v)
	case []int64:
		data = widen(v)
	case []int32:
		data = widen(v)
	case []int16:
		data = widen(v)
	case []int8:
		data = widen(v)
	case []int:
		data = widen(v)
	case []uint64:
		data = widen(v)
	case []uint32:
		data = widen(v)
	case []uint16:
		data = widen(v)
	case []uint8:
		data = widen(v)
	case []uint:
		data = widen(v)
	case []bool:
		data = make([]float64, len(v))
		for i, b := range v {
			if b {
				data[i] = 1
			}
		}
	case float32:
		data = []float64{float64(v)}
	case float64:
		data = []float64{v}
	case int64:
		data = []float64{float64(v)}
	case int32:
		data = []float64{float64(v)}
	case int:
		data = []float64{float64(v)}
	case bool:
		data = []float64{0}
		if v {
			data[0] = 1
		}
	default:
		return ml.Tensor{}, fmt.Errorf("%w: onnx: output %q has gonnx type %v, which is not converted", ml.ErrRuntime, name, t.Dtype())
	}
	out := ml.Tensor{Name: name, Shape: slices.Clone([]int(t.Shape())), Data: data}
	if out.Shape == nil {
		out.Shape = []int{}
	}
	if out.Len() != len(data) {
		return ml.Tensor{}, fmt.Errorf("%w: onnx: output %q has shape %v but %d values", ml.ErrRuntime, name, out.Shape, len(data))
	}
	return out, nil
}
