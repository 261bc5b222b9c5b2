package tensorjson

import (
	"encoding/json"
	"math"
	"strconv"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// V2Input is one input tensor of an Open Inference Protocol v2 request.
type V2Input struct {
	Name     string          `json:"name"`
	Shape    []int           `json:"shape"`
	Datatype string          `json:"datatype"`
	Data     json.RawMessage `json:"data,omitempty"`
}

// FromV2 checks one v2 input: its name (the single input may be
// named anything), its numeric datatype, and that data holds exactly the
// values its shape calls for, flat or nested.
func FromV2(i int, in V2Input, s *structs.Schema) (ml.Tensor, error) {
	path := "inputs[" + strconv.Itoa(i) + "]"
	switch in.Datatype {
	case "FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "BOOL":
	case "":
		return ml.Tensor{}, structs.Errorf(structs.CodeInvalid, "%s.datatype is required", path)
	default:
		return ml.Tensor{}, structs.Errorf(structs.CodeInvalid, "%s.datatype %q is not supported: send a numeric or BOOL tensor", path, in.Datatype)
	}
	name := in.Name
	if len(s.Inputs) == 1 {
		name = s.Inputs[0].Name
	} else if !slicesContainsName(s.Inputs, name) {
		return ml.Tensor{}, structs.Errorf(structs.CodeInvalid, "%s.name %q is not an input of the model (inputs: %s)", path, in.Name, inputNames(s))
	}
	if len(in.Shape) == 0 {
		return ml.Tensor{}, structs.Errorf(structs.CodeInvalid, "%s.shape is required", path)
	}
	// Check the shape before ml.Tensor.Check, whose product of dimensions
	// wraps around: [2^62, 28] would pass with no data and reach a runtime.
	if _, ok := ShapeElements(in.Shape); !ok {
		return ml.Tensor{}, structs.Errorf(structs.CodeInvalid, "%s.shape %v has a negative dimension or too many elements", path, in.Shape)
	}
	var raw []any
	if err := json.Unmarshal(in.Data, &raw); err != nil {
		return ml.Tensor{}, structs.Errorf(structs.CodeInvalid, "%s.data must be an array", path)
	}
	t := ml.Tensor{Name: name, Shape: in.Shape}
	var flatten func(v any, at string) error
	flatten = func(v any, at string) error {
		if arr, ok := v.([]any); ok {
			for j, x := range arr {
				if err := flatten(x, at+"["+strconv.Itoa(j)+"]"); err != nil {
					return err
				}
			}
			return nil
		}
		x, err := number(v, at)
		if err != nil {
			return err
		}
		t.Data = append(t.Data, x)
		return nil
	}
	if err := flatten(raw, path+".data"); err != nil {
		return ml.Tensor{}, err
	}
	if err := t.Check(); err != nil {
		return ml.Tensor{}, structs.Errorf(structs.CodeInvalid, "%s: shape %v needs %d values, data has %d", path, in.Shape, t.Len(), len(t.Data))
	}
	return t, nil
}

// ShapeElements is the number of elements a shape holds; false when a
// dimension is negative or the count does not fit in an int.
func ShapeElements(shape []int) (int, bool) {
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

func slicesContainsName(specs []structs.TensorSpec, name string) bool {
	for _, t := range specs {
		if t.Name == name {
			return true
		}
	}
	return false
}

func OutputType(name string, s *structs.Schema) string {
	for _, t := range s.Outputs {
		if t.Name == name && t.DataType != "" {
			return t.DataType
		}
	}
	return "FP64"
}

// V2Output is one output tensor of a v2 response.
type V2Output struct {
	Name     string `json:"name"`
	Shape    []int  `json:"shape"`
	Datatype string `json:"datatype"`
	Data     []any  `json:"data"`
}

// V2Outputs shapes a model's outputs as v2 tensors, with the datatypes the
// schema declares (FP64 when it declares none); NaN and infinities, which
// JSON cannot carry, become null.
func V2Outputs(out []ml.Tensor, s *structs.Schema) []V2Output {
	outputs := make([]V2Output, len(out))
	for i, t := range out {
		data := make([]any, len(t.Data))
		for j, x := range t.Data {
			data[j] = jsonNumber(x)
		}
		outputs[i] = V2Output{Name: t.Name, Shape: t.Shape, Datatype: OutputType(t.Name, s), Data: data}
	}
	return outputs
}
