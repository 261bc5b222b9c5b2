package onnx

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/advancedclimatesystems/gonnx"
	pb "github.com/advancedclimatesystems/gonnx/onnx"
	"gorgonia.org/tensor"

	"github.com/kilnml/kiln/ml"
)

const tolerance = 1e-5 // the one gonnx's model_test.go uses

func TestPredict_MatchesGonnxExpected(t *testing.T) {
	for name, s := range readExpected(t) {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(testdata, name))
			if errors.Is(err, os.ErrNotExist) && !contains(sampleModels, name) {
				t.Skipf("%s is listed in expected.json but not kept in testdata", name)
			}
			if err != nil {
				t.Fatal(err)
			}
			m := loadBytes(t, b)
			got, err := m.Predict(context.Background(), s.inputsOf())
			if err != nil {
				t.Fatalf("Predict: %v", err)
			}
			checkOutputs(t, m, got, s.Outputs, tolerance)
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestSchema_FromGraph(t *testing.T) {
	tests := []struct {
		file    string
		inputs  []ml.TensorSpec
		outputs []ml.TensorSpec
	}{
		{
			"mlp.onnx",
			[]ml.TensorSpec{{Name: "data_input", DataType: ml.FP32, Shape: []int{-1, 3}}},
			[]ml.TensorSpec{{Name: "preds", DataType: ml.FP32, Shape: []int{-1, 2}}},
		},
		{
			"gru.onnx",
			[]ml.TensorSpec{
				{Name: "data_input", DataType: ml.FP32, Shape: []int{-1, -1, 3}},
				{Name: "init_hidden", DataType: ml.FP32, Shape: []int{1, -1, 5}},
			},
			[]ml.TensorSpec{
				{Name: "preds", DataType: ml.FP32, Shape: []int{-1, -1, 5}},
				{Name: "hidden_out", DataType: ml.FP32, Shape: []int{1, -1, 5}},
			},
		},
		{
			"scaler.onnx",
			[]ml.TensorSpec{{Name: "X", DataType: ml.FP32, Shape: []int{-1, 3}}},
			[]ml.TensorSpec{{Name: "variable", DataType: ml.FP32, Shape: []int{-1, -1}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			s := loadBytes(t, readModel(t, tt.file)).Schema()
			checkSpecs(t, "input", s.Inputs, tt.inputs)
			checkSpecs(t, "output", s.Outputs, tt.outputs)
		})
	}
}

func checkSpecs(t *testing.T, kind string, got, want []ml.TensorSpec) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d %ss %v, want %d", len(got), kind, got, len(want))
	}
	for i := range want {
		if got[i].Name != want[i].Name || got[i].DataType != want[i].DataType || !equalInts(got[i].Shape, want[i].Shape) {
			t.Errorf("%s %d = %+v, want %+v", kind, i, got[i], want[i])
		}
	}
}

// TestLoad_OpsetRewrite loads the sample models re-encoded at a later
// opset, and small graphs of ops that changed after 13 in ways that do not
// matter for them; each must give the opset-13 answer.
func TestLoad_OpsetRewrite(t *testing.T) {
	want := readExpected(t)
	tests := []struct {
		name  string
		file  string
		opset int64
	}{
		{"mlp at 15 (Gemm unchanged, Relu-14 types only)", "mlp.onnx", 15},
		{"mlp at 17", "mlp.onnx", 17},
		{"scaler at 15 (ai.onnx.ml kept)", "scaler.onnx", 15},
		{"gru at 14 (GRU-14 without layout)", "gru.onnx", 14},
		{"gru at 16", "gru.onnx", 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := loadBytes(t, withOpset(t, tt.file, tt.opset, nil))
			s := want[tt.file]
			got, err := m.Predict(context.Background(), s.inputsOf())
			if err != nil {
				t.Fatalf("Predict: %v", err)
			}
			checkOutputs(t, m, got, s.Outputs, tolerance)
		})
	}

	reshapeIn := []ml.Tensor{{Name: "X", Shape: []int{2, 3}, Data: []float64{1, 2, 3, 4, 5, 6}}}
	reshapeWant := map[string]jsonTensor{"Y": {Shape: []int{3, 2}, Data: []float64{1, 2, 3, 4, 5, 6}}}
	graphs := []struct {
		name string
		mp   *pb.ModelProto
	}{
		{"Reshape-14 without allowzero", reshapeModel(14)},
		{"Reshape-14 with allowzero=0", reshapeModel(14, intAttr("allowzero", 0))},
	}
	for _, tt := range graphs {
		t.Run(tt.name, func(t *testing.T) {
			m := loadBytes(t, encode(t, tt.mp))
			got, err := m.Predict(context.Background(), reshapeIn)
			if err != nil {
				t.Fatalf("Predict: %v", err)
			}
			checkOutputs(t, m, got, reshapeWant, 0)
		})
	}
}

func TestLoad_RejectsWithReason(t *testing.T) {
	mlp := readModel(t, "mlp.onnx")
	layerNorm := graphModel(17, &pb.GraphProto{
		Node: []*pb.NodeProto{node("LayerNormalization", []string{"X", "scale", "bias"}, []string{"Y"})},
		Initializer: []*pb.TensorProto{
			floatInit("scale", []int64{3}, 1, 1, 1),
			floatInit("bias", []int64{3}, 0, 0, 0),
		},
		Input:  []*pb.ValueInfoProto{valueInfo("X", pb.TensorProto_FLOAT, "n", 3)},
		Output: []*pb.ValueInfoProto{valueInfo("Y", pb.TensorProto_FLOAT, "n", 3)},
	})
	// LayerNormalization inside If's branch: the subgraph is checked too,
	// before gonnx's lack of If is.
	nested := graphModel(17, &pb.GraphProto{
		Node: []*pb.NodeProto{node("If", []string{"cond"}, []string{"Y"},
			graphAttr("then_branch", layerNorm.Graph), graphAttr("else_branch", layerNorm.Graph))},
		Input:  []*pb.ValueInfoProto{valueInfo("cond", pb.TensorProto_BOOL), valueInfo("X", pb.TensorProto_FLOAT, "n", 3)},
		Output: []*pb.ValueInfoProto{valueInfo("Y", pb.TensorProto_FLOAT, "n", 3)},
	})
	unknownOp := reshapeModel(13)
	unknownOp.Graph.Node[0].OpType = "Erf"
	customDomain := reshapeModel(13)
	customDomain.Graph.Node[0].Domain = "com.microsoft"
	shapeStart := reshapeModel(15)
	shapeStart.Graph.Node = append([]*pb.NodeProto{node("Shape", []string{"X"}, []string{"s"}, intAttr("start", 1))}, shapeStart.Graph.Node...)
	hardSwish := reshapeModel(14)
	hardSwish.Graph.Node[0] = node("HardSwish", []string{"X"}, []string{"Y"})
	badInit := convModel()
	badInit.Graph.Initializer[1].FloatData = []float32{1, 2, 3}

	tests := []struct {
		name  string
		model []byte
		limit int64 // 0: MaxModelBytes
		want  string
	}{
		{"LayerNormalization at 17", encode(t, layerNorm), 0, "op LayerNormalization (opset 17) has no opset-13 equivalent"},
		{"LayerNormalization in a subgraph", encode(t, nested), 0, "op LayerNormalization (opset 17) has no opset-13 equivalent"},
		{"Reshape allowzero=1 at 14", encode(t, reshapeModel(14, intAttr("allowzero", 1))), 0, "op Reshape (opset 14) has no opset-13 equivalent"},
		{"GRU layout=1 at 14", withOpset(t, "gru.onnx", 14, func(mp *pb.ModelProto) {
			for _, n := range mp.Graph.Node {
				if n.OpType == "GRU" {
					n.Attribute = append(n.Attribute, intAttr("layout", 1))
				}
			}
		}), 0, "op GRU (opset 14) has no opset-13 equivalent"},
		{"Shape start at 15", encode(t, shapeStart), 0, "op Shape (opset 15) has no opset-13 equivalent"},
		{"HardSwish at 14", encode(t, hardSwish), 0, "op HardSwish (opset 14) has no opset-13 equivalent"},
		{"opset 12", withOpset(t, "mlp.onnx", 12, nil), 0, "opset 12"},
		{"opset 6", withOpset(t, "mlp.onnx", 6, nil), 0, "opset 6"},
		{"opset 18", withOpset(t, "mlp.onnx", 18, nil), 0, "opset 18"},
		{"op gonnx lacks", encode(t, unknownOp), 0, "op Erf is not implemented by gonnx"},
		{"custom domain", encode(t, customDomain), 0, `domain "com.microsoft"`},
		{"initializer shorter than its dims", encode(t, badInit), 0, `initializer "B" has dims [2] (2 values) but holds 3`},
		{"empty", nil, 0, "empty"},
		{"garbage", []byte("this is not a protobuf message at all"), 0, "not an ONNX model"},
		{"truncated", mlp[:len(mlp)/2], 0, "not an ONNX model"},
		{"over the size cap", mlp, 100, "larger than 100 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limit := tt.limit
			if limit == 0 {
				limit = MaxModelBytes
			}
			m, err := load(bytes.NewReader(tt.model), limit)
			if err == nil {
				t.Fatalf("loaded %v", m.Schema())
			}
			if !errors.Is(err, ml.ErrBadModel) {
				t.Errorf("error %q does not wrap ml.ErrBadModel", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

func TestPredict_RejectsBadInput(t *testing.T) {
	mlp := loadBytes(t, readModel(t, "mlp.onnx"))
	gru := loadBytes(t, readModel(t, "gru.onnx"))
	gather := loadBytes(t, encode(t, gatherModel()))
	gruIn := func(batchX, batchH int) []ml.Tensor {
		return []ml.Tensor{
			{Name: "data_input", Shape: []int{batchX, 2, 3}, Data: make([]float64, batchX*6)},
			{Name: "init_hidden", Shape: []int{1, batchH, 5}, Data: make([]float64, batchH*5)},
		}
	}
	nan := []float64{0, 1, 2, 3, 4, math.NaN()}

	tests := []struct {
		name   string
		model  ml.Model
		inputs []ml.Tensor
		want   string
	}{
		{"wrong width", mlp, []ml.Tensor{{Name: "data_input", Shape: []int{2, 2}, Data: make([]float64, 4)}}, "the model expects [batch_size, 3]"},
		{"wrong rank", mlp, []ml.Tensor{{Name: "data_input", Shape: []int{2, 4, 2}, Data: make([]float64, 16)}}, "has shape [2 4 2]; the model expects [batch_size, 3]"},
		{"data does not fill shape", mlp, []ml.Tensor{{Name: "data_input", Shape: []int{2, 3}, Data: make([]float64, 5)}}, "needs 6 values, got 5"},
		{"NaN", mlp, []ml.Tensor{{Name: "data_input", Shape: []int{2, 3}, Data: nan}}, `input "data_input" element [1 2] is missing (NaN)`},
		{"unknown name", mlp, []ml.Tensor{{Name: "x", Shape: []int{1, 3}, Data: make([]float64, 3)}}, `unknown input "x"`},
		{"missing input", gru, gruIn(1, 1)[:1], `missing input "init_hidden"`},
		{"unnamed with two inputs", gru, []ml.Tensor{{Shape: []int{1, 2, 3}, Data: make([]float64, 6)}}, "has no name"},
		{"given twice", gru, append(gruIn(1, 1), gruIn(1, 1)[0]), "given twice"},
		{"batch sizes disagree", gru, gruIn(2, 1), "batch_size"},
		{"empty batch", mlp, []ml.Tensor{{Name: "data_input", Shape: []int{0, 3}, Data: nil}}, "is empty"},
		{"fractional index", gather, []ml.Tensor{{Name: "idx", Shape: []int{2}, Data: []float64{0, 1.5}}}, "not a valid INT64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tt.model.Predict(context.Background(), tt.inputs)
			if err == nil {
				t.Fatalf("Predict gave %v", out)
			}
			if !errors.Is(err, ml.ErrBadInput) {
				t.Errorf("error %q does not wrap ml.ErrBadInput", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

func TestPredict_AcceptsUnnamedSingleInput(t *testing.T) {
	s := readExpected(t)["mlp.onnx"]
	m := loadBytes(t, readModel(t, "mlp.onnx"))
	in := s.Inputs["data_input"]
	got, err := m.Predict(context.Background(), []ml.Tensor{{Shape: in.Shape, Data: in.Data}})
	if err != nil {
		t.Fatal(err)
	}
	checkOutputs(t, m, got, s.Outputs, tolerance)
}

func TestPredict_Int64Input(t *testing.T) {
	m := loadBytes(t, encode(t, gatherModel()))
	if dt := m.Schema().Inputs[0].DataType; dt != ml.INT64 {
		t.Fatalf("input datatype %s, want %s", dt, ml.INT64)
	}
	got, err := m.Predict(context.Background(), []ml.Tensor{{Name: "idx", Shape: []int{3}, Data: []float64{2, 0, 2}}})
	if err != nil {
		t.Fatal(err)
	}
	checkOutputs(t, m, got, map[string]jsonTensor{"rows": {Shape: []int{3, 2}, Data: []float64{5, 6, 1, 2, 5, 6}}}, 0)
}

// TestGonnxRun_ConvBiasBreaksSecondRun records why Predict does not call
// gonnx.Model.Run: v1.1.0's Conv reshapes the model's bias tensor in place,
// so the same Model fails the second time. If this test starts failing after
// a gonnx upgrade, the per-call copies in run may no longer be needed.
func TestGonnxRun_ConvBiasBreaksSecondRun(t *testing.T) {
	gm, err := gonnx.NewModel(convModel())
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	for range 2 {
		x := tensor.New(tensor.WithShape(1, 1, 3, 3), tensor.WithBacking([]float32{1, 2, 3, 4, 5, 6, 7, 8, 9}))
		_, err := gm.Run(gonnx.Tensors{"X": x})
		errs = append(errs, err)
	}
	if errs[0] != nil || errs[1] == nil {
		t.Fatalf("gonnx Run errors %v; expected the first run to work and the second to fail", errs)
	}
}

func TestPredict_RepeatsConvWithBias(t *testing.T) {
	m := loadBytes(t, encode(t, convModel()))
	for i := range 3 {
		got, err := m.Predict(context.Background(), []ml.Tensor{convInput})
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		checkOutputs(t, m, got, convWant, 0)
	}
}

func TestPredict_Concurrent(t *testing.T) {
	want := readExpected(t)
	type job struct {
		m      ml.Model
		inputs []ml.Tensor
		want   map[string]jsonTensor
	}
	var jobs []job
	for _, name := range sampleModels {
		jobs = append(jobs, job{loadBytes(t, readModel(t, name)), want[name].inputsOf(), want[name].Outputs})
	}
	jobs = append(jobs, job{loadBytes(t, encode(t, convModel())), []ml.Tensor{convInput}, convWant})

	const goroutines, rounds = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*rounds*len(jobs))
	results := make([][]ml.Tensor, goroutines*rounds*len(jobs))
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				for j, jb := range jobs {
					out, err := jb.m.Predict(context.Background(), jb.inputs)
					if err != nil {
						errs <- err
						continue
					}
					results[(g*rounds+r)*len(jobs)+j] = out
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, out := range results {
		if out != nil {
			jb := jobs[i%len(jobs)]
			checkOutputs(t, jb.m, out, jb.want, tolerance)
		}
	}
}

func TestPredict_StopsOnCancelledContext(t *testing.T) {
	s := readExpected(t)["gru.onnx"]
	m := loadBytes(t, readModel(t, "gru.onnx"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := m.Predict(ctx, s.inputsOf())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}
