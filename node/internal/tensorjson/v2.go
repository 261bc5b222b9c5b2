package tensorjson

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// V2Input is one input tensor of an Open Inference Protocol v2 request. Its
// values are in Data (JSON, flat or nested in row-major order) or, with
// the binary tensor data extension, in the body after the JSON, as
// parameters.binary_data_size says.
type V2Input struct {
	Name       string                     `json:"name"`
	Shape      []int                      `json:"shape"`
	Datatype   string                     `json:"datatype"`
	Parameters map[string]json.RawMessage `json:"parameters,omitempty"`
	Data       json.RawMessage            `json:"data,omitempty"`
}

// V2RequestOutput is one output a v2 request asks for, with its
// parameters (binary_data: return it as binary).
type V2RequestOutput struct {
	Name       string                     `json:"name"`
	Parameters map[string]json.RawMessage `json:"parameters,omitempty"`
}

// v2Sizes are the protocol's datatypes and the bytes of one element in
// binary form; BYTES (0) is a 4-byte length then the bytes, per element.
var v2Sizes = map[string]int{
	"BOOL": 1, "UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8,
	"INT8": 1, "INT16": 2, "INT32": 4, "INT64": 8,
	"FP16": 2, "FP32": 4, "FP64": 8, "BYTES": 0,
}

// inputHead checks what an input says of itself: a known numeric datatype,
// a name the model has (the single input of a model may be named
// anything), and a shape that fits in memory. It returns the tensor to fill
// and how many elements it holds.
func inputHead(i int, in V2Input, s *structs.Schema) (path string, t ml.Tensor, n int, err error) {
	path = "inputs[" + strconv.Itoa(i) + "]"
	size, known := v2Sizes[in.Datatype]
	switch {
	case in.Datatype == "":
		return path, t, 0, structs.Errorf(structs.CodeInvalid, "%s.datatype is required", path)
	case !known:
		return path, t, 0, structs.Errorf(structs.CodeInvalid, "%s.datatype %q (input %q) is not a v2 datatype (BOOL, UINT8-UINT64, INT8-INT64, FP16, FP32, FP64, BYTES)", path, in.Datatype, in.Name)
	case size == 0:
		return path, t, 0, structs.Errorf(structs.CodeInvalid, "%s.datatype BYTES (input %q) is not taken: the model's inputs are numbers", path, in.Name)
	}
	name := in.Name
	if len(s.Inputs) == 1 {
		name = s.Inputs[0].Name
	} else if !slicesContainsName(s.Inputs, name) {
		return path, t, 0, structs.Errorf(structs.CodeInvalid, "%s.name %q is not an input of the model (inputs: %s)", path, in.Name, inputNames(s))
	}
	if len(in.Shape) == 0 {
		return path, t, 0, structs.Errorf(structs.CodeInvalid, "%s.shape is required", path)
	}
	// Check the shape before ml.Tensor.Check, whose product of dimensions
	// wraps around: [2^62, 28] would pass with no data and reach a runtime.
	n, ok := ShapeElements(in.Shape)
	if !ok {
		return path, t, 0, structs.Errorf(structs.CodeInvalid, "%s.shape %v has a negative dimension or too many elements", path, in.Shape)
	}
	return path, ml.Tensor{Name: name, Shape: in.Shape}, n, nil
}

// FromV2 reads one input whose values are JSON data, flat or nested; each
// value must fit the datatype (an integer in range for the integer types,
// a boolean or 0 or 1 for BOOL; null is a missing value).
func FromV2(i int, in V2Input, s *structs.Schema) (ml.Tensor, error) {
	path, t, n, err := inputHead(i, in, s)
	if err != nil {
		return t, err
	}
	if _, ok := in.Parameters["shared_memory_region"]; ok {
		return t, structs.Errorf(structs.CodeInvalid, "%s.parameters.shared_memory_region: the shared memory extension is not served; send the data in the request", path)
	}
	if size, err := BinarySize(in.Parameters, path); err != nil || size >= 0 {
		if err == nil {
			err = structs.Errorf(structs.CodeInvalid, "%s has parameters.binary_data_size but the request has no Inference-Header-Content-Length header to say where its binary data starts", path)
		}
		return t, err
	}
	var raw []any
	if err := json.Unmarshal(in.Data, &raw); err != nil {
		return ml.Tensor{}, structs.Errorf(structs.CodeInvalid, "%s.data must be an array", path)
	}
	fits := valueCheck(in.Datatype)
	t.Data = make([]float64, 0, min(n, 1<<20))
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
		if !math.IsNaN(x) && !fits(x) {
			return structs.Errorf(structs.CodeInvalid, "%s is %v: not a value of datatype %s", at, v, in.Datatype)
		}
		t.Data = append(t.Data, x)
		return nil
	}
	if err := flatten(raw, path+".data"); err != nil {
		return ml.Tensor{}, err
	}
	if len(t.Data) != n {
		return ml.Tensor{}, structs.Errorf(structs.CodeInvalid, "%s: shape %v needs %d values, data has %d", path, in.Shape, n, len(t.Data))
	}
	return t, nil
}

// valueCheck says whether a JSON number is a value of a datatype.
func valueCheck(datatype string) func(float64) bool {
	integer := func(lo, hi float64) func(float64) bool {
		return func(x float64) bool { return x == math.Trunc(x) && x >= lo && x <= hi }
	}
	switch datatype {
	case "BOOL":
		return func(x float64) bool { return x == 0 || x == 1 }
	case "INT8":
		return integer(math.MinInt8, math.MaxInt8)
	case "INT16":
		return integer(math.MinInt16, math.MaxInt16)
	case "INT32":
		return integer(math.MinInt32, math.MaxInt32)
	case "INT64":
		return integer(-(1 << 63), 1<<63)
	case "UINT8":
		return integer(0, math.MaxUint8)
	case "UINT16":
		return integer(0, math.MaxUint16)
	case "UINT32":
		return integer(0, math.MaxUint32)
	case "UINT64":
		return integer(0, 1<<64)
	case "FP16":
		return func(x float64) bool { return math.Abs(x) <= 65504 }
	case "FP32":
		return func(x float64) bool { return math.Abs(x) <= math.MaxFloat32 }
	}
	return func(float64) bool { return true }
}

// BinarySize reads parameters.binary_data_size: -1 when it is absent.
func BinarySize(params map[string]json.RawMessage, path string) (int64, error) {
	raw, ok := params["binary_data_size"]
	if !ok {
		return -1, nil
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n < 0 {
		return 0, structs.Errorf(structs.CodeInvalid, "%s.parameters.binary_data_size must be a non-negative integer, not %s", path, raw)
	}
	return n, nil
}

// BoolParam reads a boolean parameter, def when it is absent.
func BoolParam(params map[string]json.RawMessage, name, path string, def bool) (bool, error) {
	raw, ok := params[name]
	if !ok {
		return def, nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, structs.Errorf(structs.CodeInvalid, "%s.parameters.%s must be true or false, not %s", path, name, raw)
	}
	return b, nil
}

// CheckParameters refuses a parameter that is not a JSON boolean, number
// or string, as the protocol types them; the names are open.
func CheckParameters(params map[string]json.RawMessage, path string) error {
	for name, raw := range params {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return structs.Errorf(structs.CodeInvalid, "%s.parameters.%s: %v", path, name, err)
		}
		switch v.(type) {
		case bool, float64, string:
		default:
			return structs.Errorf(structs.CodeInvalid, "%s.parameters.%s must be a boolean, a number or a string", path, name)
		}
	}
	return nil
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

// OutputType is the datatype the schema declares for an output, FP64 when
// it declares none (or one that is not numeric).
func OutputType(name string, s *structs.Schema) string {
	for _, t := range s.Outputs {
		if t.Name == name && t.DataType != "" && v2Sizes[t.DataType] > 0 {
			return t.DataType
		}
	}
	return "FP64"
}

// V2Output is one output tensor of a v2 response, its values as JSON.
type V2Output struct {
	Name     string `json:"name"`
	Shape    []int  `json:"shape"`
	Datatype string `json:"datatype"`
	Data     []any  `json:"data"`
}

// V2BinaryOutput is one output tensor of a v2 response whose values follow
// the JSON, binary_data_size bytes of them.
type V2BinaryOutput struct {
	Name       string           `json:"name"`
	Shape      []int            `json:"shape"`
	Datatype   string           `json:"datatype"`
	Parameters map[string]int64 `json:"parameters"`
}

// V2Outputs shapes a model's outputs as v2 tensors, with the datatypes the
// schema declares (FP64 when it declares none); NaN and infinities, which
// JSON cannot carry, become null.
func V2Outputs(out []ml.Tensor, s *structs.Schema) []V2Output {
	outputs := make([]V2Output, len(out))
	for i, t := range out {
		outputs[i] = V2JSONOutput(t, s)
	}
	return outputs
}

// V2JSONOutput is one output with its values as JSON.
func V2JSONOutput(t ml.Tensor, s *structs.Schema) V2Output {
	data := make([]any, len(t.Data))
	for j, x := range t.Data {
		data[j] = jsonNumber(x)
	}
	return V2Output{Name: t.Name, Shape: t.Shape, Datatype: OutputType(t.Name, s), Data: data}
}

// CheckOutputs refuses a requested output the model does not have, when
// its schema names its outputs; names are the requested outputs in order.
func CheckOutputs(names []string, s *structs.Schema) error {
	if len(s.Outputs) == 0 {
		return nil
	}
	for i, n := range names {
		if !slicesContainsName(s.Outputs, n) {
			have := make([]string, len(s.Outputs))
			for j, o := range s.Outputs {
				have[j] = o.Name
			}
			return structs.Errorf(structs.CodeInvalid, "outputs[%d].name %q is not an output of the model (outputs: %s)", i, n, strings.Join(have, ", "))
		}
	}
	return nil
}
