package onnx

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/kilnml/kiln/ml"
)

// ortBackend opens ONNX Runtime for a test, or skips it where the library
// is not installed (scripts/install-onnxruntime; .ci/run installs it, so CI
// runs these).
func ortBackend(t testing.TB) *Backend {
	t.Helper()
	b, err := Open(RuntimeORT, "")
	if err != nil {
		t.Skipf("ONNX Runtime is not installed here: %v", err)
	}
	return b
}

func loadWith(t testing.TB, b *Backend, data []byte) ml.Model {
	t.Helper()
	m, err := b.Load(bytes.NewReader(data), ml.CPUOnly)
	if err != nil {
		t.Fatalf("%s: Load: %v", b.Name(), err)
	}
	t.Cleanup(func() {
		if c, ok := m.(ml.Closer); ok {
			c.Close()
		}
	})
	return m
}

// TestORT_Samples runs the sample models under ORT against the outputs
// their producers stored, as TestLoad_Samples does under gonnx.
func TestORT_Samples(t *testing.T) {
	b := ortBackend(t)
	if b.Name() != RuntimeORT || b.Version() == "" || b.Platform() != "onnxruntime_onnx" {
		t.Fatalf("backend %q version %q platform %q", b.Name(), b.Version(), b.Platform())
	}
	for name, s := range readExpected(t) {
		t.Run(name, func(t *testing.T) {
			if !contains(sampleModels, name) {
				t.Skipf("%s is listed in expected.json but not kept in testdata", name)
			}
			m := loadWith(t, b, readModel(t, name))
			if r := m.(interface{ Runtime() string }).Runtime(); !strings.HasPrefix(r, "onnxruntime "+b.Version()+", CPU") {
				t.Errorf("Runtime() = %q", r)
			}
			got, err := m.Predict(context.Background(), s.inputsOf())
			if err != nil {
				t.Fatal(err)
			}
			checkOutputs(t, m, got, s.Outputs, 1e-4)
		})
	}
}

// TestORT_SameAsGonnx: the generated MLP gives the same answers, and the
// same schema, under both backends.
func TestORT_SameAsGonnx(t *testing.T) {
	b := ortBackend(t)
	data, err := RandomMLP(7, 28, 64, 64, 3).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	om, gm := loadWith(t, b, data), loadWith(t, Gonnx(), data)
	if !specsEqual(om.Schema().Inputs, gm.Schema().Inputs) || !specsEqual(om.Schema().Outputs, gm.Schema().Outputs) {
		t.Fatalf("schemas differ: ORT %+v, gonnx %+v", om.Schema(), gm.Schema())
	}
	in := []ml.Tensor{{Shape: []int{5, 28}, Data: mlpRows(5, 28, 3)}}
	want, err := gm.Predict(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := om.Predict(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	checkOutputs(t, om, got, map[string]jsonTensor{want[0].Name: {Shape: want[0].Shape, Data: want[0].Data}}, 1e-5)
}

// TestORT_ConcurrentPredict: one session serves many goroutines at once.
func TestORT_ConcurrentPredict(t *testing.T) {
	b := ortBackend(t)
	data, err := RandomMLP(3, 8, 16, 2).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	m, ref := loadWith(t, b, data), loadWith(t, Gonnx(), data)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				in := []ml.Tensor{{Shape: []int{1 + i%4, 8}, Data: mlpRows(1+i%4, 8, uint64(g*100+i))}}
				got, err := m.Predict(context.Background(), in)
				if err != nil {
					errs <- err
					return
				}
				want, _ := ref.Predict(context.Background(), in)
				for k := range want[0].Data {
					if d := got[0].Data[k] - want[0].Data[k]; d > 1e-5 || d < -1e-5 {
						errs <- errors.New("a concurrent answer differs from gonnx's")
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestORT_BadInputNeverReachesORT: each malformed request is refused by
// graph.match with ml.ErrBadInput naming the input.
func TestORT_BadInputNeverReachesORT(t *testing.T) {
	b := ortBackend(t)
	data, err := RandomMLP(3, 4, 8, 2).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	m := loadWith(t, b, data)
	name := m.Schema().Inputs[0].Name
	for _, c := range []struct {
		in   []ml.Tensor
		want string
	}{
		{[]ml.Tensor{{Name: name, Shape: []int{1, 5}, Data: make([]float64, 5)}}, "expects"},
		{[]ml.Tensor{{Name: name, Shape: []int{4}, Data: make([]float64, 4)}}, "expects"},
		{[]ml.Tensor{{Name: "nope", Shape: []int{1, 4}, Data: make([]float64, 4)}}, `unknown input "nope"`},
		{[]ml.Tensor{{Name: name, Shape: []int{1, 4}, Data: make([]float64, 3)}}, "needs 4 values"},
		{[]ml.Tensor{{Name: name, Shape: []int{1, 4}, Data: []float64{1, 2, math.NaN(), 4}}}, "missing (NaN)"},
	} {
		_, err := m.Predict(context.Background(), c.in)
		if !errors.Is(err, ml.ErrBadInput) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want ErrBadInput with %q", c.in, err, c.want)
		}
	}
	// Unlike gonnx, ORT takes an empty batch.
	out, err := m.Predict(context.Background(), []ml.Tensor{{Name: name, Shape: []int{0, 4}, Data: []float64{}}})
	if err != nil || len(out) != 1 || out[0].Shape[0] != 0 {
		t.Errorf("empty batch: %v %+v", err, out)
	}
}

// TestORT_RefusesOldOpsetAndBadModels: an opset below 7 names the fix; a
// model ORT cannot load is refused with ORT's own message.
func TestORT_RefusesOldOpsetAndBadModels(t *testing.T) {
	b := ortBackend(t)
	old := withOpset(t, "mlp.onnx", 6, nil)
	_, err := b.Load(bytes.NewReader(old), ml.CPUOnly)
	if !errors.Is(err, ml.ErrBadModel) || !strings.Contains(err.Error(), "opset 6") || !strings.Contains(err.Error(), "onnx.version_converter") {
		t.Errorf("opset 6: %v", err)
	}
	_, err = b.Load(strings.NewReader("not a model"), ml.CPUOnly)
	if !errors.Is(err, ml.ErrBadModel) {
		t.Errorf("garbage: %v", err)
	}
	// An op no runtime has: ORT says which.
	g := parse(t, readModel(t, "mlp.onnx"))
	g.GetGraph().GetNode()[0].OpType = "NoSuchOp"
	_, err = b.Load(bytes.NewReader(encode(t, g)), ml.CPUOnly)
	if !errors.Is(err, ml.ErrBadModel) || !strings.Contains(err.Error(), "NoSuchOp") {
		t.Errorf("unknown op: %v", err)
	}
}

// TestOpen: auto falls back to gonnx with a reason when the library is
// missing; ort refuses naming the path; an unknown runtime is refused.
func TestOpen(t *testing.T) {
	b, err := Open(RuntimeAuto, "/nonexistent/libonnxruntime.so.1")
	if err != nil || b.Name() != RuntimeGonnx || !strings.Contains(b.Reason(), "/nonexistent/libonnxruntime.so.1") {
		t.Errorf("auto without the library: %v, %+v", err, b)
	}
	if _, err := Open(RuntimeORT, "/nonexistent/libonnxruntime.so.1"); err == nil || !strings.Contains(err.Error(), "/nonexistent/libonnxruntime.so.1") {
		t.Errorf("ort without the library: %v", err)
	}
	if _, err := Open("tensorrt", ""); err == nil || !strings.Contains(err.Error(), "auto, ort, gonnx") {
		t.Errorf("unknown runtime: %v", err)
	}
	if b, err := Open(RuntimeGonnx, ""); err != nil || b.Name() != RuntimeGonnx || b.Platform() != "gonnx_onnx" {
		t.Errorf("gonnx: %v %+v", err, b)
	}
}

// FuzzORTPredict feeds arbitrary tensors (rank, dimensions, name, values)
// to a model served by ORT: each is refused with ml.ErrBadInput or scored,
// never a crash, and never an error from ORT itself (what reaches ORT has
// been checked).
func FuzzORTPredict(f *testing.F) {
	for _, s := range [][]byte{
		{2, 1, 4, 0, 1, 2, 3, 4, 5, 6, 7, 8},
		{2, 0, 4, 1},
		{1, 4, 0},
		{3, 1, 1, 4, 2},
		{0, 0},
		{2, 2, 4, 1, 0xff, 0xf8, 0, 0, 0, 0, 0, 0},
	} {
		f.Add(s)
	}
	b, err := Open(RuntimeORT, "")
	if err != nil {
		f.Skipf("ONNX Runtime is not installed here: %v", err)
	}
	data, err := RandomMLP(3, 4, 8, 2).Marshal()
	if err != nil {
		f.Fatal(err)
	}
	m := loadWith(f, b, data)
	name := m.Schema().Inputs[0].Name
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 2 {
			return
		}
		rank := int(in[0] % 4)
		in = in[1:]
		if len(in) < rank+1 {
			return
		}
		shape := make([]int, rank)
		for i := range shape {
			shape[i] = int(in[i] % 6)
		}
		names := []string{"", name, "x"}
		tn := names[int(in[rank])%len(names)]
		in = in[rank+1:]
		var vals []float64
		for len(in) >= 8 {
			vals = append(vals, math.Float64frombits(binary.LittleEndian.Uint64(in)))
			in = in[8:]
		}
		for _, c := range in {
			vals = append(vals, float64(c)-128)
		}
		out, err := m.Predict(context.Background(), []ml.Tensor{{Name: tn, Shape: shape, Data: vals}})
		switch {
		case errors.Is(err, ml.ErrBadInput):
		case err != nil:
			t.Fatalf("shape %v, %d values: %v", shape, len(vals), err)
		case len(out) != 1 || len(out[0].Shape) != 2 || out[0].Shape[0] != shape[0] || out[0].Shape[1] != 2:
			t.Fatalf("shape %v: output %+v", shape, out)
		}
	})
}

// BenchmarkPredictSmall compares the backends on gonnx's sample mlp.onnx
// (3 -> 2, what cluster-tests/onnx-bench.sh serves) and on the generated
// 28-512-512-3 MLP, one row a call.
func BenchmarkPredictSmall(b *testing.B) {
	big, err := RandomMLP(7, benchMLP...).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	backends := []*Backend{Gonnx()}
	if o, err := Open(RuntimeORT, ""); err == nil {
		backends = append(backends, o)
	}
	for _, c := range []struct {
		name  string
		model []byte
		in    ml.Tensor
	}{
		{"mlp.onnx", readModel(b, "mlp.onnx"), ml.Tensor{Shape: []int{1, 3}, Data: []float64{0, 1, 2}}},
		{"mlp-28-512-512-3", big, ml.Tensor{Shape: []int{1, 28}, Data: mlpRows(1, 28, 1)}},
	} {
		for _, be := range backends {
			b.Run(c.name+"/"+be.Name(), func(b *testing.B) {
				m := loadWith(b, be, c.model)
				in := []ml.Tensor{c.in}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := m.Predict(context.Background(), in); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestORT_SessionOptions: the thread count reaches the session, and a
// replica with a GPU falls back to CPU, saying why, when ORT's CUDA
// provider does not load (the npm build Kiln installs has none; on a
// machine with a CUDA build the same call runs on the device).
func TestORT_SessionOptions(t *testing.T) {
	b := ortBackend(t)
	data, err := RandomMLP(3, 4, 8, 2).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	m, err := b.Load(bytes.NewReader(data), ml.LoadOptions{Threads: 2, GPU: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer m.(ml.Closer).Close()
	r := m.(ml.Runtimed).Runtime()
	if !strings.Contains(r, "2 intra-op thread(s)") {
		t.Errorf("Runtime() = %q, want 2 intra-op threads", r)
	}
	if !strings.Contains(r, "CUDA GPU 0") && !strings.Contains(r, "CPU (GPU 0 reserved, but ORT's CUDA provider did not load") {
		t.Errorf("Runtime() = %q, want the device or why not", r)
	}
	if _, err := m.Predict(context.Background(), []ml.Tensor{{Shape: []int{1, 4}, Data: []float64{1, 2, 3, 4}}}); err != nil {
		t.Fatal(err)
	}
	t.Log(r)
}
