package onnx

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	pb "github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"

	"github.com/kilnml/kiln/ml"
)

const testdata = "../testdata/onnx"

// sampleModels are the models testdata must hold; expected.json may list
// more (ndm.onnx), which the tests run when their file is present.
var sampleModels = []string{"mlp.onnx", "gru.onnx", "scaler.onnx"}

// sample is one entry of expected.json: inputs and the outputs gonnx's own
// model_test.go expects for them.
type sample struct {
	Producer string                `json:"producer"`
	Inputs   map[string]jsonTensor `json:"inputs"`
	Outputs  map[string]jsonTensor `json:"outputs"`
}

type jsonTensor struct {
	Shape []int     `json:"shape"`
	Data  []float64 `json:"data"`
}

func readExpected(t testing.TB) map[string]sample {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	out := map[string]sample{}
	for name, msg := range raw {
		if name[0] == '_' {
			continue // "_note"
		}
		var s sample
		if err := json.Unmarshal(msg, &s); err != nil {
			t.Fatalf("expected.json %s: %v", name, err)
		}
		out[name] = s
	}
	for _, name := range sampleModels {
		if _, ok := out[name]; !ok {
			t.Fatalf("expected.json has no entry for %s", name)
		}
	}
	return out
}

// inputsOf returns a sample's inputs as ml tensors.
func (s sample) inputsOf() []ml.Tensor {
	var ins []ml.Tensor
	for name, jt := range s.Inputs {
		ins = append(ins, ml.Tensor{Name: name, Shape: jt.Shape, Data: jt.Data})
	}
	return ins
}

// checkOutputs compares Predict's outputs with a sample's, within tol.
func checkOutputs(t *testing.T, m ml.Model, got []ml.Tensor, want map[string]jsonTensor, tol float64) {
	t.Helper()
	if len(got) != len(m.Schema().Outputs) {
		t.Fatalf("got %d outputs, schema has %d", len(got), len(m.Schema().Outputs))
	}
	for i, spec := range m.Schema().Outputs {
		if got[i].Name != spec.Name {
			t.Errorf("output %d is %q, schema says %q", i, got[i].Name, spec.Name)
		}
	}
	for name, w := range want {
		var g *ml.Tensor
		for i := range got {
			if got[i].Name == name {
				g = &got[i]
			}
		}
		if g == nil {
			t.Errorf("no output %q", name)
			continue
		}
		if !equalInts(g.Shape, w.Shape) {
			t.Errorf("output %q shape %v, want %v", name, g.Shape, w.Shape)
			continue
		}
		for i := range w.Data {
			if math.Abs(g.Data[i]-w.Data[i]) > tol {
				t.Errorf("output %q[%d] = %g, want %g (tolerance %g)", name, i, g.Data[i], w.Data[i], tol)
				break
			}
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func readModel(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadBytes(t testing.TB, b []byte) ml.Model {
	t.Helper()
	m, err := Load(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return m
}

func parse(t testing.TB, b []byte) *pb.ModelProto {
	t.Helper()
	mp := &pb.ModelProto{}
	if err := proto.Unmarshal(b, mp); err != nil {
		t.Fatal(err)
	}
	return mp
}

func encode(t testing.TB, mp *pb.ModelProto) []byte {
	t.Helper()
	b, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withOpset re-encodes a model file with its default-domain opset import
// set to opset, and edit (if any) applied to the parsed model.
func withOpset(t testing.TB, file string, opset int64, edit func(*pb.ModelProto)) []byte {
	t.Helper()
	mp := parse(t, readModel(t, file))
	for _, imp := range mp.OpsetImport {
		if imp.Domain == "" || imp.Domain == "ai.onnx" {
			imp.Version = opset
		}
	}
	if edit != nil {
		edit(mp)
	}
	return encode(t, mp)
}

// graphModel builds a model of one graph in the default domain at opset.
func graphModel(opset int64, g *pb.GraphProto) *pb.ModelProto {
	return &pb.ModelProto{
		IrVersion:   8,
		OpsetImport: []*pb.OperatorSetIdProto{{Domain: "", Version: opset}},
		Graph:       g,
	}
}

// valueInfo describes a tensor; a dim is an int (fixed size) or a string
// (a symbolic name).
func valueInfo(name string, elem pb.TensorProto_DataType, dims ...any) *pb.ValueInfoProto {
	shape := &pb.TensorShapeProto{}
	for _, d := range dims {
		dim := &pb.TensorShapeProto_Dimension{}
		switch d := d.(type) {
		case int:
			dim.Value = &pb.TensorShapeProto_Dimension_DimValue{DimValue: int64(d)}
		case string:
			dim.Value = &pb.TensorShapeProto_Dimension_DimParam{DimParam: d}
		}
		shape.Dim = append(shape.Dim, dim)
	}
	return &pb.ValueInfoProto{Name: name, Type: &pb.TypeProto{Value: &pb.TypeProto_TensorType{
		TensorType: &pb.TypeProto_Tensor{ElemType: int32(elem), Shape: shape},
	}}}
}

func floatInit(name string, dims []int64, v ...float32) *pb.TensorProto {
	return &pb.TensorProto{Name: name, Dims: dims, DataType: int32(pb.TensorProto_FLOAT), FloatData: v}
}

func int64Init(name string, dims []int64, v ...int64) *pb.TensorProto {
	return &pb.TensorProto{Name: name, Dims: dims, DataType: int32(pb.TensorProto_INT64), Int64Data: v}
}

func node(op string, in, out []string, attrs ...*pb.AttributeProto) *pb.NodeProto {
	return &pb.NodeProto{OpType: op, Name: op + "_0", Input: in, Output: out, Attribute: attrs}
}

func intAttr(name string, v int64) *pb.AttributeProto {
	return &pb.AttributeProto{Name: name, Type: pb.AttributeProto_INT, I: v}
}

func graphAttr(name string, g *pb.GraphProto) *pb.AttributeProto {
	return &pb.AttributeProto{Name: name, Type: pb.AttributeProto_GRAPH, G: g}
}

// convModel is a Conv with a bias initializer: gonnx.Model.Run fails on it
// the second time it runs, because Conv reshapes the bias in place.
func convModel() *pb.ModelProto {
	return graphModel(13, &pb.GraphProto{
		Node: []*pb.NodeProto{node("Conv", []string{"X", "W", "B"}, []string{"Y"})},
		Initializer: []*pb.TensorProto{
			floatInit("W", []int64{2, 1, 2, 2}, 1, 1, 1, 1, 1, 0, 0, 1),
			floatInit("B", []int64{2}, 10, 20),
		},
		Input:  []*pb.ValueInfoProto{valueInfo("X", pb.TensorProto_FLOAT, 1, 1, 3, 3)},
		Output: []*pb.ValueInfoProto{valueInfo("Y", pb.TensorProto_FLOAT, 1, 2, 2, 2)},
	})
}

var (
	convInput = ml.Tensor{Name: "X", Shape: []int{1, 1, 3, 3}, Data: []float64{1, 2, 3, 4, 5, 6, 7, 8, 9}}
	convWant  = map[string]jsonTensor{"Y": {Shape: []int{1, 2, 2, 2}, Data: []float64{22, 26, 34, 38, 26, 28, 32, 34}}}
)

// reshapeModel reshapes a [2, 3] input to [3, 2] at the given opset, with
// extra attributes on the Reshape node.
func reshapeModel(opset int64, attrs ...*pb.AttributeProto) *pb.ModelProto {
	return graphModel(opset, &pb.GraphProto{
		Node:        []*pb.NodeProto{node("Reshape", []string{"X", "shape"}, []string{"Y"}, attrs...)},
		Initializer: []*pb.TensorProto{int64Init("shape", []int64{2}, 3, 2)},
		Input:       []*pb.ValueInfoProto{valueInfo("X", pb.TensorProto_FLOAT, 2, 3)},
		Output:      []*pb.ValueInfoProto{valueInfo("Y", pb.TensorProto_FLOAT, 3, 2)},
	})
}

// gatherModel picks rows of a constant [3, 2] table by INT64 indices.
func gatherModel() *pb.ModelProto {
	return graphModel(13, &pb.GraphProto{
		Node:        []*pb.NodeProto{node("Gather", []string{"table", "idx"}, []string{"rows"}, intAttr("axis", 0))},
		Initializer: []*pb.TensorProto{floatInit("table", []int64{3, 2}, 1, 2, 3, 4, 5, 6)},
		Input:       []*pb.ValueInfoProto{valueInfo("idx", pb.TensorProto_INT64, "n")},
		Output:      []*pb.ValueInfoProto{valueInfo("rows", pb.TensorProto_FLOAT, "n", 2)},
	})
}
