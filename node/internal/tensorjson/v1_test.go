package tensorjson

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
)

var nan = math.NaN()

// Schemas the prediction decoders are tested against.
var (
	tabularSchema = &structs.Schema{
		Inputs:       []structs.TensorSpec{{Name: "input", DataType: "FP64", Shape: []int{-1, 3}}},
		Outputs:      []structs.TensorSpec{{Name: "output", DataType: "FP64", Shape: []int{-1}}},
		FeatureNames: []string{"a", "b", "c"},
	}
	unnamedTabularSchema = &structs.Schema{
		Inputs: []structs.TensorSpec{{Name: "input", DataType: "FP64", Shape: []int{-1, 3}}},
	}
	singleFeatureSchema = &structs.Schema{
		Inputs: []structs.TensorSpec{{Name: "input", DataType: "FP64", Shape: []int{-1, 1}}},
	}
	imageSchema = &structs.Schema{
		Inputs: []structs.TensorSpec{{Name: "img", DataType: "FP32", Shape: []int{-1, 2, 2}}},
	}
	twoInputSchema = &structs.Schema{
		Inputs: []structs.TensorSpec{
			{Name: "x", DataType: "FP32", Shape: []int{-1, 2}},
			{Name: "y", DataType: "FP32", Shape: []int{-1}},
		},
	}
)

// sameTensors compares tensors, NaN equal to NaN.
func sameTensors(got, want []ml.Tensor) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range want {
		if got[i].Name != want[i].Name || !slices.Equal(got[i].Shape, want[i].Shape) || len(got[i].Data) != len(want[i].Data) {
			return false
		}
		for j, x := range want[i].Data {
			y := got[i].Data[j]
			if x != y && !(math.IsNaN(x) && math.IsNaN(y)) {
				return false
			}
		}
	}
	return true
}

// checkInvalid fails unless err is a client error whose message has each
// of mention.
func checkInvalid(t *testing.T, err error, mention ...string) {
	t.Helper()
	if structs.ErrorCode(err) != structs.CodeInvalid {
		t.Fatalf("err %v, want an invalid-input error", err)
	}
	for _, m := range mention {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
}

type decodeCase struct {
	name    string
	schema  *structs.Schema
	body    string
	want    []ml.Tensor
	mention []string // when set, an invalid-input error naming these
}

func runDecodeCases(t *testing.T, cases []decodeCase, decode func(body string, s *structs.Schema) ([]ml.Tensor, error)) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decode(tc.body, tc.schema)
			if tc.mention != nil {
				checkInvalid(t, err, tc.mention...)
				return
			}
			if err != nil {
				t.Fatalf("err %v", err)
			}
			if !sameTensors(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			for _, x := range got {
				if err := x.Check(); err != nil {
					t.Errorf("tensor fails Check: %v", err)
				}
			}
		})
	}
}

func TestTensorsFromInstances_Decodes(t *testing.T) {
	cases := []decodeCase{
		{"rows", tabularSchema, `[[1,2,3],[4,5,6]]`,
			[]ml.Tensor{{Name: "input", Shape: []int{2, 3}, Data: []float64{1, 2, 3, 4, 5, 6}}}, nil},
		{"null is missing, booleans are 0 and 1", unnamedTabularSchema, `[[null,true,false]]`,
			[]ml.Tensor{{Name: "input", Shape: []int{1, 3}, Data: []float64{nan, 1, 0}}}, nil},
		{"one flat row", tabularSchema, `[1,2,3]`,
			[]ml.Tensor{{Name: "input", Shape: []int{3}, Data: []float64{1, 2, 3}}}, nil},
		{"nested 3-D", imageSchema, `[[[1,2],[3,4]],[[5,6],[7,8]]]`,
			[]ml.Tensor{{Name: "img", Shape: []int{2, 2, 2}, Data: []float64{1, 2, 3, 4, 5, 6, 7, 8}}}, nil},
		{"objects by input name", twoInputSchema, `[{"x":[1,2],"y":3},{"y":6,"x":[4,5]}]`,
			[]ml.Tensor{
				{Name: "x", Shape: []int{2, 2}, Data: []float64{1, 2, 4, 5}},
				{Name: "y", Shape: []int{2}, Data: []float64{3, 6}},
			}, nil},
		{"objects by feature name, omitted features missing", tabularSchema, `[{"c":3,"a":1},{"b":2},{}]`,
			[]ml.Tensor{{Name: "input", Shape: []int{3, 3}, Data: []float64{1, nan, 3, nan, 2, nan, nan, nan, nan}}}, nil},

		{"ragged rows", tabularSchema, `[[1,2,3],[4,5]]`, nil, []string{"instances[1]", "[3]"}},
		{"ragged deep", imageSchema, `[[[1,2],[3,4]],[[5,6],[7]]]`, nil, []string{"instances[1][1]"}},
		{"scalar where a row was", tabularSchema, `[[1,2,3],4]`, nil, []string{"instances[1]"}},
		{"row where a scalar was", tabularSchema, `[[1,2,[3]]]`, nil, []string{"instances[0][2]", "not a number"}},
		{"string value", tabularSchema, `[[1,"two",3]]`, nil, []string{"instances[0][1]", "string"}},
		{"object value", unnamedTabularSchema, `[[1,{},3]]`, nil, []string{"instances[0][1]"}},
		{"claimed shape far beyond the data", imageSchema, claimHugeShape(), nil, []string{"instances"}},
		{"unknown feature", tabularSchema, `[{"a":1,"z":2}]`, nil, []string{"instances[0].z", `"z"`}},
		{"feature value not a number", tabularSchema, `[{"a":"1"}]`, nil, []string{"instances[0].a"}},
		{"object after a row", tabularSchema, `[{"a":1},[1,2,3]]`, nil, []string{"instances[1]", "not an object"}},
		{"unknown input", twoInputSchema, `[{"x":[1,2],"y":3,"w":1}]`, nil, []string{"instances[0].w", "x, y"}},
		{"input missing from a later instance", twoInputSchema, `[{"x":[1,2],"y":3},{"x":[4,5]}]`, nil, []string{`"y"`}},
		{"input missing from a middle instance", twoInputSchema, `[{"x":[1,2],"y":3},{"y":4},{"x":[4,5],"y":5}]`, nil, []string{"instances[1]", `"x"`}},
		{"input missing everywhere", twoInputSchema, `[{"x":[1,2]}]`, nil, []string{`"y"`}},
		{"rows for a two-input model", twoInputSchema, `[[1,2]]`, nil, []string{"2 inputs", "x, y"}},
		{"empty", tabularSchema, `[]`, nil, []string{"instances is empty"}},
		{"not an array", tabularSchema, `{"a":1}`, nil, []string{"JSON array"}},
		{"null", tabularSchema, `null`, nil, []string{"instances is empty"}},
	}
	runDecodeCases(t, cases, func(body string, s *structs.Schema) ([]ml.Tensor, error) {
		return FromInstances(json.RawMessage(body), s)
	})
}

// claimHugeShape is a small instances array whose first instance claims a
// shape of 2000x2000x2000 values while holding a few thousand: the decoder
// must not reserve memory for the claim.
func claimHugeShape() string {
	inner := "[" + strings.Repeat("0,", 1999) + "0]"
	mid := "[" + inner + strings.Repeat(",[]", 1999) + "]"
	return "[" + "[" + mid + strings.Repeat(",[]", 1999) + "]" + "]"
}

func TestTensorsFromColumns_Decodes(t *testing.T) {
	cases := []decodeCase{
		{"features", tabularSchema, `{"a":[1,2],"b":[3,4],"c":[5,null]}`,
			[]ml.Tensor{{Name: "input", Shape: []int{2, 3}, Data: []float64{1, 3, 5, 2, 4, nan}}}, nil},
		{"features, zero instances", tabularSchema, `{"a":[],"b":[],"c":[]}`,
			[]ml.Tensor{{Name: "input", Shape: []int{0, 3}, Data: []float64{}}}, nil},
		{"the input by name on a model with features", tabularSchema, `{"input":[[1,2,3]]}`,
			[]ml.Tensor{{Name: "input", Shape: []int{1, 3}, Data: []float64{1, 2, 3}}}, nil},
		{"inputs by name", twoInputSchema, `{"y":[3,6],"x":[[1,2],[4,5]]}`,
			[]ml.Tensor{
				{Name: "x", Shape: []int{2, 2}, Data: []float64{1, 2, 4, 5}},
				{Name: "y", Shape: []int{2}, Data: []float64{3, 6}},
			}, nil},
		{"nested input", imageSchema, `{"img":[[[1,2],[3,4]]]}`,
			[]ml.Tensor{{Name: "img", Shape: []int{1, 2, 2}, Data: []float64{1, 2, 3, 4}}}, nil},

		{"mismatched lengths", tabularSchema, `{"a":[1,2],"b":[3],"c":[5,6]}`, nil, []string{"inputs.b", "1 values", "2"}},
		{"missing feature", tabularSchema, `{"a":[1],"c":[3]}`, nil, []string{`feature "b"`}},
		{"unknown feature", tabularSchema, `{"a":[1],"b":[2],"c":[3],"d":[4]}`, nil, []string{"inputs.d"}},
		{"feature not a number", tabularSchema, `{"a":[1],"b":["x"],"c":[3]}`, nil, []string{"inputs.b[0]"}},
		{"feature values not an array", tabularSchema, `{"a":1,"b":[2],"c":[3]}`, nil, []string{"inputs.a", "array"}},
		{"missing input", twoInputSchema, `{"x":[[1,2]]}`, nil, []string{`"y"`}},
		{"unknown input", twoInputSchema, `{"x":[[1,2]],"y":[1],"w":[1]}`, nil, []string{"inputs.w", "x, y"}},
		{"ragged input", twoInputSchema, `{"x":[[1,2],[3]],"y":[1,2]}`, nil, []string{"inputs.x[1]"}},
		{"empty input", twoInputSchema, `{"x":[],"y":[]}`, nil, []string{"inputs.x is empty"}},
		{"empty", tabularSchema, `{}`, nil, []string{"inputs is empty"}},
	}
	runDecodeCases(t, cases, func(body string, s *structs.Schema) ([]ml.Tensor, error) {
		var cols map[string]json.RawMessage
		if err := json.Unmarshal([]byte(body), &cols); err != nil {
			t.Fatalf("test body %s: %v", body, err)
		}
		return FromColumns(cols, s)
	})
}

func TestPredictionsJSON_Shapes(t *testing.T) {
	cases := []struct {
		name string
		out  []ml.Tensor
		want string // JSON of the predictions
	}{
		{"scalar outputs", []ml.Tensor{{Name: "output", Shape: []int{3}, Data: []float64{0.5, 1, -2}}}, `[0.5,1,-2]`},
		{"vectors", []ml.Tensor{{Name: "output", Shape: []int{2, 3}, Data: []float64{1, 2, 3, 4, 5, 6}}}, `[[1,2,3],[4,5,6]]`},
		{"3-D", []ml.Tensor{{Name: "output", Shape: []int{1, 2, 2}, Data: []float64{1, 2, 3, 4}}}, `[[[1,2],[3,4]]]`},
		{"NaN and infinities are null", []ml.Tensor{{Name: "output", Shape: []int{3}, Data: []float64{nan, math.Inf(1), math.Inf(-1)}}}, `[null,null,null]`},
		{"several outputs are objects", []ml.Tensor{
			{Name: "label", Shape: []int{2}, Data: []float64{1, 0}},
			{Name: "probs", Shape: []int{2, 2}, Data: []float64{0.1, 0.9, 0.8, nan}},
		}, `[{"label":1,"probs":[0.1,0.9]},{"label":0,"probs":[0.8,null]}]`},
		{"no instances", []ml.Tensor{{Name: "output", Shape: []int{0, 3}, Data: []float64{}}}, `[]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			preds, err := Predictions(tc.out)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(preds)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("got %s, want %s", b, tc.want)
			}
		})
	}
}

func TestPredictionsJSON_RefusesMalformedOutputs(t *testing.T) {
	cases := []struct {
		name string
		out  []ml.Tensor
	}{
		{"no outputs", nil},
		{"no batch dimension", []ml.Tensor{{Name: "output", Shape: []int{}, Data: []float64{1}}}},
		{"batches differ", []ml.Tensor{
			{Name: "a", Shape: []int{2}, Data: []float64{1, 2}},
			{Name: "b", Shape: []int{3}, Data: []float64{1, 2, 3}},
		}},
		{"second output without batch", []ml.Tensor{
			{Name: "a", Shape: []int{1}, Data: []float64{1}},
			{Name: "b", Shape: nil, Data: []float64{1}},
		}},
		{"data shorter than the shape", []ml.Tensor{{Name: "output", Shape: []int{2, 3}, Data: []float64{1, 2}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Predictions(tc.out); structs.ErrorCode(err) != structs.CodeInternal {
				t.Errorf("err %v, want an internal error", err)
			}
		})
	}
}

func TestV2InputTensor_Decodes(t *testing.T) {
	cases := []struct {
		name    string
		schema  *structs.Schema
		in      string // one v2 input tensor as JSON
		want    ml.Tensor
		mention []string
	}{
		{"flat data", tabularSchema, `{"name":"input","shape":[2,3],"datatype":"FP64","data":[1,2,3,4,5,6]}`,
			ml.Tensor{Name: "input", Shape: []int{2, 3}, Data: []float64{1, 2, 3, 4, 5, 6}}, nil},
		{"nested data", tabularSchema, `{"name":"input","shape":[2,3],"datatype":"FP32","data":[[1,2,3],[4,5,6]]}`,
			ml.Tensor{Name: "input", Shape: []int{2, 3}, Data: []float64{1, 2, 3, 4, 5, 6}}, nil},
		{"the single input may have any name", tabularSchema, `{"name":"whatever","shape":[3],"datatype":"INT64","data":[1,2,3]}`,
			ml.Tensor{Name: "input", Shape: []int{3}, Data: []float64{1, 2, 3}}, nil},
		{"BOOL", tabularSchema, `{"name":"input","shape":[3],"datatype":"BOOL","data":[true,false,true]}`,
			ml.Tensor{Name: "input", Shape: []int{3}, Data: []float64{1, 0, 1}}, nil},
		{"named input of several", twoInputSchema, `{"name":"y","shape":[2],"datatype":"FP32","data":[1,2]}`,
			ml.Tensor{Name: "y", Shape: []int{2}, Data: []float64{1, 2}}, nil},
		{"zero-size", tabularSchema, `{"name":"input","shape":[0,3],"datatype":"FP64","data":[]}`,
			ml.Tensor{Name: "input", Shape: []int{0, 3}}, nil},

		{"fewer values than the shape", tabularSchema, `{"name":"input","shape":[2,3],"datatype":"FP64","data":[1,2,3,4,5]}`, ml.Tensor{}, []string{"inputs[0]", "needs 6 values", "has 5"}},
		{"more values than the shape", tabularSchema, `{"name":"input","shape":[1,3],"datatype":"FP64","data":[[1,2,3],[4,5,6]]}`, ml.Tensor{}, []string{"needs 3 values", "has 6"}},
		{"BYTES", tabularSchema, `{"name":"input","shape":[1],"datatype":"BYTES","data":["abc"]}`, ml.Tensor{}, []string{"inputs[0].datatype", "BYTES"}},
		{"no datatype", tabularSchema, `{"name":"input","shape":[1],"data":[1]}`, ml.Tensor{}, []string{"inputs[0].datatype is required"}},
		{"no shape", tabularSchema, `{"name":"input","datatype":"FP64","data":[1]}`, ml.Tensor{}, []string{"inputs[0].shape is required"}},
		{"negative dimension", tabularSchema, `{"name":"input","shape":[-1,3],"datatype":"FP64","data":[1,2,3]}`, ml.Tensor{}, []string{"inputs[0].shape"}},
		{"overflowing shape", tabularSchema, `{"name":"input","shape":[4611686018427387904,28],"datatype":"FP64","data":[]}`, ml.Tensor{}, []string{"inputs[0].shape"}},
		{"overflowing shape with some data", tabularSchema, `{"name":"input","shape":[3037000500,3037000500,2],"datatype":"FP64","data":[1]}`, ml.Tensor{}, []string{"inputs[0].shape"}},
		{"data not an array", tabularSchema, `{"name":"input","shape":[1],"datatype":"FP64","data":1}`, ml.Tensor{}, []string{"inputs[0].data must be an array"}},
		{"no data", tabularSchema, `{"name":"input","shape":[1],"datatype":"FP64"}`, ml.Tensor{}, []string{"inputs[0].data"}},
		{"string value", tabularSchema, `{"name":"input","shape":[2],"datatype":"FP64","data":[1,"2"]}`, ml.Tensor{}, []string{"inputs[0].data[1]"}},
		{"nested string value", tabularSchema, `{"name":"input","shape":[2,1],"datatype":"FP64","data":[[1],["2"]]}`, ml.Tensor{}, []string{"inputs[0].data[1][0]"}},
		{"unknown input of several", twoInputSchema, `{"name":"z","shape":[1],"datatype":"FP32","data":[1]}`, ml.Tensor{}, []string{`"z"`, "x, y"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var in V2Input
			if err := json.Unmarshal([]byte(tc.in), &in); err != nil {
				t.Fatalf("test input: %v", err)
			}
			got, err := FromV2(0, in, tc.schema)
			if tc.mention != nil {
				checkInvalid(t, err, tc.mention...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !sameTensors([]ml.Tensor{got}, []ml.Tensor{tc.want}) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNormalizeTabular_AddsTheBatchDimension(t *testing.T) {
	tensor := func(shape ...int) ml.Tensor {
		n := 1
		for _, d := range shape {
			n *= d
		}
		return ml.Tensor{Name: "input", Shape: shape, Data: make([]float64, n)}
	}
	cases := []struct {
		name   string
		schema *structs.Schema
		in     []ml.Tensor
		want   [][]int
	}{
		{"one flat row", tabularSchema, []ml.Tensor{tensor(3)}, [][]int{{1, 3}}},
		{"scalars for a single feature", singleFeatureSchema, []ml.Tensor{tensor(4)}, [][]int{{4, 1}}},
		{"one scalar for a single feature", singleFeatureSchema, []ml.Tensor{tensor(1)}, [][]int{{1, 1}}},
		{"already a batch", tabularSchema, []ml.Tensor{tensor(2, 3)}, [][]int{{2, 3}}},
		{"a flat row of the wrong width", tabularSchema, []ml.Tensor{tensor(4)}, [][]int{{4}}},
		{"not tabular", imageSchema, []ml.Tensor{tensor(4)}, [][]int{{4}}},
		{"several inputs", twoInputSchema, []ml.Tensor{tensor(2), tensor(2)}, [][]int{{2}, {2}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			NormalizeTabular(tc.in, tc.schema)
			for i, x := range tc.in {
				if !slices.Equal(x.Shape, tc.want[i]) {
					t.Errorf("input %d: shape %v, want %v", i, x.Shape, tc.want[i])
				}
				if err := x.Check(); err != nil {
					t.Errorf("input %d: %v", i, err)
				}
			}
		})
	}
}

func TestShapeElements_Overflow(t *testing.T) {
	cases := []struct {
		shape []int
		n     int
		ok    bool
	}{
		{nil, 1, true},
		{[]int{2, 3}, 6, true},
		{[]int{0, math.MaxInt}, 0, true},
		{[]int{-1, 3}, 0, false},
		{[]int{1 << 62, 28}, 0, false},
		{[]int{math.MaxInt, 1}, math.MaxInt, true},
		{[]int{math.MaxInt, 2}, 0, false},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.shape), func(t *testing.T) {
			n, ok := ShapeElements(tc.shape)
			if n != tc.n || ok != tc.ok {
				t.Errorf("got %d %v, want %d %v", n, ok, tc.n, tc.ok)
			}
		})
	}
}
