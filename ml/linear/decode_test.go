package linear

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"strings"
	"testing"

	"github.com/kilnml/kiln/ml"
)

// baseModel is a valid mlp that uses every field; the rejection tests each
// break one rule of it.
func baseModel() *Model {
	return &Model{
		Format:       FileFormat,
		Version:      Version,
		Kind:         KindMLP,
		NFeatures:    2,
		FeatureNames: []string{"a", "b"},
		Classes:      []string{"no", "yes"},
		Scaler:       &Scaler{Mean: []float64{0, 1}, Scale: []float64{1, 2}},
		Layers: []Layer{
			{Weights: [][]float64{{1, 1}, {1, 1}}, Bias: []float64{0, -1}, Activation: ReLU},
			{Weights: [][]float64{{10, -20}}, Bias: []float64{-5}, Activation: Sigmoid},
		},
	}
}

// singleLayer is a valid model of a one-layer kind with the given outputs.
func singleLayer(kind Kind, outputs int) *Model {
	m := &Model{Format: FileFormat, Version: Version, Kind: kind, NFeatures: 2}
	l := Layer{}
	for range outputs {
		l.Weights = append(l.Weights, []float64{1, 2})
		l.Bias = append(l.Bias, 0)
	}
	m.Layers = []Layer{l}
	return m
}

// assertBadModel checks that err wraps ml.ErrBadModel and contains want.
func assertBadModel(t *testing.T, err error, want string) {
	t.Helper()
	if !errors.Is(err, ml.ErrBadModel) {
		t.Fatalf("error %v; want one wrapping ml.ErrBadModel", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
	if !strings.HasPrefix(err.Error(), "ml: bad model: linear: ") {
		t.Fatalf("error %q is not prefixed with the package", err)
	}
}

// TestDecode_RejectsBrokenRules breaks each rule of the format in turn, in a
// model written out as JSON, and checks that Decode, Load and Validate name
// the field at fault.
func TestDecode_RejectsBrokenRules(t *testing.T) {
	tests := []struct {
		name   string
		model  func() *Model
		mutate func(m *Model)
		want   string
	}{
		{"format", baseModel, func(m *Model) { m.Format = "kiln-tree" }, `format is "kiln-tree"; want "kiln-linear"`},
		{"version", baseModel, func(m *Model) { m.Version = 2 }, "version 2 is not supported; this build reads version 1"},
		{"kind missing", baseModel, func(m *Model) { m.Kind = "" }, "kind is missing"},
		{"kind unknown", baseModel, func(m *Model) { m.Kind = "svm" }, `kind "svm" is unknown`},
		{"n_features", baseModel, func(m *Model) { m.NFeatures = 0 }, "n_features is 0; it must be at least 1"},
		{"feature_names count", baseModel, func(m *Model) { m.FeatureNames = []string{"a"} }, "feature_names has 1 names; n_features is 2"},
		{"feature_names empty", baseModel, func(m *Model) { m.FeatureNames[1] = " " }, "feature_names[1] is empty"},
		{"feature_names repeat", baseModel, func(m *Model) { m.FeatureNames[1] = "a" }, `feature_names[1] "a" repeats feature_names[0]`},
		{"scaler.mean count", baseModel, func(m *Model) { m.Scaler.Mean = []float64{0} }, "scaler.mean has 1 values; n_features is 2"},
		{"scaler.scale count", baseModel, func(m *Model) { m.Scaler.Scale = nil }, "scaler.scale has 0 values; n_features is 2"},
		{"scaler.scale zero", baseModel, func(m *Model) { m.Scaler.Scale[1] = 0 }, "scaler.scale[1] is 0"},
		{"layers empty", baseModel, func(m *Model) { m.Layers = nil }, "layers is empty"},
		{"weights empty", baseModel, func(m *Model) { m.Layers[1].Weights = nil }, "layers[1].weights is empty"},
		{"first layer width", baseModel, func(m *Model) { m.Layers[0].Weights[1] = []float64{1, 2, 3} }, "layers[0].weights[1] has 3 columns; n_features is 2"},
		{"later layer width", baseModel, func(m *Model) { m.Layers[1].Weights[0] = []float64{1, 2, 3} }, "layers[1].weights[0] has 3 columns; layers[0] has 2 outputs"},
		{"bias count", baseModel, func(m *Model) { m.Layers[0].Bias = []float64{0} }, "layers[0].bias has 1 values; layers[0].weights has 2 rows"},
		{"activation unknown", baseModel, func(m *Model) { m.Layers[0].Activation = "gelu" }, `layers[0].activation "gelu" is unknown`},
		{"mlp activation missing", baseModel, func(m *Model) { m.Layers[1].Activation = "" }, "layers[1].activation is missing"},
		{"mlp hidden softmax", baseModel, func(m *Model) { m.Layers[0].Activation = Softmax }, "layers[0].activation is softmax; only the last layer (layers[1])"},
		{"mlp softmax of one output", baseModel, func(m *Model) { m.Layers[1].Activation, m.Classes = Softmax, nil }, "layers[1] is softmax with 1 output"},
		{"one-layer kind with two layers", baseModel, func(m *Model) { m.Kind = KindLogistic }, `layers has 2 layers; kind "logistic" takes exactly one`},
		{"linear activation", func() *Model { return singleLayer(KindLinear, 1) }, func(m *Model) { m.Layers[0].Activation = Sigmoid }, `layers[0].activation is "sigmoid"; kind "linear" implies "identity"`},
		{"logistic activation", func() *Model { return singleLayer(KindLogistic, 1) }, func(m *Model) { m.Layers[0].Activation = ReLU }, `layers[0].activation is "relu"; kind "logistic" implies "sigmoid"`},
		{"logistic outputs", func() *Model { return singleLayer(KindLogistic, 2) }, func(m *Model) {}, `layers[0] has 2 outputs; kind "logistic" has exactly 1`},
		{"softmax outputs", func() *Model { return singleLayer(KindSoftmax, 1) }, func(m *Model) {}, `layers[0] has 1 output; kind "softmax" needs at least 2`},
		{"classes on a regression", func() *Model { return singleLayer(KindLinear, 2) }, func(m *Model) { m.Classes = []string{"a", "b"} }, "classes is set but the model's output activation is identity"},
		{"classes on an mlp regression", baseModel, func(m *Model) { m.Layers[1].Activation = Tanh }, "classes is set but the model's output activation is tanh"},
		{"classes of one sigmoid output", baseModel, func(m *Model) { m.Classes = []string{"yes"} }, "classes has 1 labels; a single sigmoid output takes 2"},
		{"classes of softmax outputs", func() *Model { return singleLayer(KindSoftmax, 3) }, func(m *Model) { m.Classes = []string{"a", "b"} }, "classes has 2 labels; the last layer has 3 outputs"},
		{"classes repeat", baseModel, func(m *Model) { m.Classes[1] = "no" }, `classes[1] "no" repeats classes[0]`},
		{"classes empty", baseModel, func(m *Model) { m.Classes[0] = "" }, "classes[0] is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.model()
			tt.mutate(m)
			assertBadModel(t, m.Validate(), tt.want)
			_, err := New(m)
			assertBadModel(t, err, tt.want)
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Decode(strings.NewReader(string(b)))
			assertBadModel(t, err, tt.want)
			_, err = Load(strings.NewReader(string(b)))
			assertBadModel(t, err, tt.want)
		})
	}
}

// TestValidate_RejectsNonFinite checks NaN and ±Inf in every kind of
// parameter; JSON cannot carry them, so this goes through Validate.
func TestValidate_RejectsNonFinite(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m *Model)
		want   string
	}{
		{"weight NaN", func(m *Model) { m.Layers[1].Weights[0][1] = math.NaN() }, "layers[1].weights[0][1] is NaN or null"},
		{"weight +Inf", func(m *Model) { m.Layers[0].Weights[1][0] = math.Inf(1) }, "layers[0].weights[1][0] is +Inf"},
		{"bias -Inf", func(m *Model) { m.Layers[0].Bias[1] = math.Inf(-1) }, "layers[0].bias[1] is -Inf"},
		{"mean NaN", func(m *Model) { m.Scaler.Mean[0] = math.NaN() }, "scaler.mean[0] is NaN or null"},
		{"scale +Inf", func(m *Model) { m.Scaler.Scale[1] = math.Inf(1) }, "scaler.scale[1] is +Inf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := baseModel()
			tt.mutate(m)
			assertBadModel(t, m.Validate(), tt.want)
		})
	}
}

// TestValidate_RejectsTooManyParams checks the parameter cap. The rows share
// one backing slice, so the test does not allocate what it describes.
func TestValidate_RejectsTooManyParams(t *testing.T) {
	row := make([]float64, 4096)
	m := &Model{Kind: KindLinear, NFeatures: len(row)}
	l := Layer{Bias: make([]float64, 4096)}
	for range 4096 {
		l.Weights = append(l.Weights, row)
	}
	m.Layers = []Layer{l}
	assertBadModel(t, m.Validate(), "model has 16781312 parameters; the limit is 16777216")

	// One output fewer is under the cap and valid.
	m.Layers[0].Weights = m.Layers[0].Weights[:4095]
	m.Layers[0].Bias = m.Layers[0].Bias[:4095]
	if err := m.Validate(); err != nil {
		t.Fatalf("a model of %d parameters: %v", 4095*4097, err)
	}
}

// TestDecode_RejectsBadJSON covers what only the file form can get wrong:
// syntax, types, nulls, unknown fields, trailing data, size.
func TestDecode_RejectsBadJSON(t *testing.T) {
	const head = `{"format":"kiln-linear","version":1,"kind":"softmax","n_features":2,`
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"empty", "", "the file is empty"},
		{"only space", " \n", "the file is empty"},
		{"truncated", head + `"layers":[{"weights":[[1,2`, "the file ends in the middle"},
		{"syntax", head + `"layers":[{"weights":[[1,,2]]}]}`, "invalid JSON at byte"},
		{"not an object", `[1, 2]`, "the file: JSON array where an object is expected"},
		{"null file", `null`, "format is missing"},
		{"format missing", `{"version":1,"kind":"linear","n_features":1,"layers":[{"weights":[[1]],"bias":[0]}]}`, "format is missing"},
		{"version missing", `{"format":"kiln-linear","kind":"linear","n_features":1,"layers":[{"weights":[[1]],"bias":[0]}]}`, "version is missing"},
		{"unknown field", head + `"learning_rate":0.1,"layers":[{"weights":[[1,2],[3,4]],"bias":[0,0]}]}`, `unknown field "learning_rate"`},
		{"unknown layer field", head + `"layers":[{"weights":[[1,2],[3,4]],"bias":[0,0],"dropout":0.5}]}`, `unknown field "dropout"`},
		{"unknown scaler field", head + `"scaler":{"mean":[0,0],"scale":[1,1],"var":[1,1]},"layers":[{"weights":[[1,2],[3,4]],"bias":[0,0]}]}`, `unknown field "var"`},
		{"later version with new fields", `{"format":"kiln-linear","version":2,"kind":"linear","n_features":1,"layers":[],"quantized":true}`, "version 2 is not supported"},
		{"another format", `{"format":"onnx","graph":{}}`, `format is "onnx"; want "kiln-linear"`},
		{"null weight", head + `"layers":[{"weights":[[1,2],[3,null]],"bias":[0,0]}]}`, "layers[0].weights[1][1] is NaN or null"},
		{"null bias", head + `"layers":[{"weights":[[1,2],[3,4]],"bias":[null, 0]}]}`, "layers[0].bias[0] is NaN or null"},
		{"null mean", head + `"scaler":{"mean":[0,null],"scale":[1,1]},"layers":[{"weights":[[1,2],[3,4]],"bias":[0,0]}]}`, "scaler.mean[1] is NaN or null"},
		{"null weights", head + `"layers":[{"weights":null,"bias":[0,0]}]}`, "layers[0].weights is empty"},
		{"null row", head + `"layers":[{"weights":[[1,2],null],"bias":[0,0]}]}`, "layers[0].weights[1] has 0 columns"},
		{"string weight", head + `"layers":[{"weights":[[1,2],[3,"4"]],"bias":[0,0]}]}`, "layers.weights: JSON string where a number is expected"},
		{"string weight beside null", head + `"layers":[{"weights":[[1,2],[null,"4"]],"bias":[0,0]}]}`, "layers.weights: JSON string where a number is expected"},
		{"bool weight", head + `"layers":[{"weights":[[1,2],[3,true]],"bias":[0,0]}]}`, "layers.weights: JSON bool where a number is expected"},
		{"nested array bias", head + `"layers":[{"weights":[[1,2],[3,4]],"bias":[[0],null]}]}`, "layers.bias: JSON array where a number is expected"},
		{"out of range", head + `"layers":[{"weights":[[1,2],[3,1e400]],"bias":[0,0]}]}`, "layers.weights: number 1e400 is out of the range of float64"},
		{"out of range beside null", head + `"layers":[{"weights":[[1,2],[null,-1e400]],"bias":[0,0]}]}`, "layers.weights: number -1e400 is out of the range of float64"},
		{"string n_features", `{"format":"kiln-linear","version":1,"n_features":"2"}`, "n_features: JSON string where an integer is expected"},
		{"fractional n_features", `{"format":"kiln-linear","version":1,"n_features":2.5}`, "n_features: JSON number 2.5 where an integer is expected"},
		{"trailing data", head + `"layers":[{"weights":[[1,2],[3,4]],"bias":[0,0]}]} {}`, "unexpected data after the model object"},
		{"trailing bracket", head + `"layers":[{"weights":[[1,2],[3,4]],"bias":[0,0]}]}]`, "unexpected data after the model object"},
		{"trailing data after blanks", `{"format":"kiln-linear","version":1,"kind":"linear","n_features":1,"layers":[{"weights":[[1]],"bias":[0]}]}` + " \n x", "unexpected data after the model object, at byte 110"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(strings.NewReader(tt.doc))
			assertBadModel(t, err, tt.want)
			_, err = Load(strings.NewReader(tt.doc))
			assertBadModel(t, err, tt.want)
		})
	}
}

// TestDecode_EmptyListsAreNone checks that "feature_names": [] and
// "classes": [] read as absent, as Encode writes them.
func TestDecode_EmptyListsAreNone(t *testing.T) {
	doc := `{"format":"kiln-linear","version":1,"kind":"softmax","n_features":2,"feature_names":[],"classes":[],` +
		`"layers":[{"weights":[[1,2],[3,4]],"bias":[0,0]}]}`
	m, err := Decode(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if m.FeatureNames != nil || m.Classes != nil {
		t.Fatalf("FeatureNames %#v, Classes %#v; want nil", m.FeatureNames, m.Classes)
	}
}

// spaces is an endless reader of blanks, valid JSON whitespace.
type spaces struct{}

var blanks = []byte(strings.Repeat(" ", 64<<10))

func (spaces) Read(p []byte) (int, error) {
	return copy(p, blanks), nil
}

// TestDecode_RejectsLargeFile checks the file size cap without building a
// model that large: a valid model padded with blanks up to and past the cap.
// (Padding before the object works too, but the JSON decoder then scans 64 MiB,
// which takes seconds under -race.)
func TestDecode_RejectsLargeFile(t *testing.T) {
	doc := docExamples(t)[KindLinear]
	pad := int64(MaxFileBytes - len(doc))
	tests := []struct {
		name string
		r    io.Reader
		want string // "" when it loads
	}{
		{"blanks after, at the cap", io.MultiReader(strings.NewReader(doc), io.LimitReader(spaces{}, pad)), ""},
		{"blanks after, over the cap", io.MultiReader(strings.NewReader(doc), io.LimitReader(spaces{}, pad+1)), "the file is over 67108864 bytes (64 MiB)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.r)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				return
			}
			assertBadModel(t, err, tt.want)
		})
	}
}

// failingReader fails every read.
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

// TestDecode_ReportsReadErrors checks that an error of the reader is passed
// on as it is, not mistaken for a bad model.
func TestDecode_ReportsReadErrors(t *testing.T) {
	_, err := Load(failingReader{})
	if err == nil || errors.Is(err, ml.ErrBadModel) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Load from a failing reader = %v; want the read error, not ml.ErrBadModel", err)
	}
}
