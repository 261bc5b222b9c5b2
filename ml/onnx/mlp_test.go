package onnx

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kilnml/kiln/ml"
)

// benchMLP is the shape node's BenchmarkBatchingMLP serves: 28 features,
// two hidden layers of 512, three classes.
var benchMLP = []int{28, 512, 512, 3}

func TestMLP_MatchesPlainGo(t *testing.T) {
	gen := RandomMLP(7, benchMLP...)
	b, err := gen.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	m := loadBytes(t, b)
	s := m.Schema()
	wantIn := []ml.TensorSpec{{Name: "input", DataType: ml.FP32, Shape: []int{-1, 28}}}
	wantOut := []ml.TensorSpec{{Name: "probabilities", DataType: ml.FP32, Shape: []int{-1, 3}}}
	if !specsEqual(s.Inputs, wantIn) || !specsEqual(s.Outputs, wantOut) {
		t.Fatalf("schema %+v, want inputs %+v and outputs %+v", s, wantIn, wantOut)
	}

	for _, rows := range []int{1, 5, 32} {
		t.Run(fmt.Sprintf("rows=%d", rows), func(t *testing.T) {
			x := mlpRows(rows, 28, uint64(rows))
			got, err := m.Predict(context.Background(), []ml.Tensor{{Name: "input", Shape: []int{rows, 28}, Data: x}})
			if err != nil {
				t.Fatalf("Predict: %v", err)
			}
			if len(got) != 1 || !slices.Equal(got[0].Shape, []int{rows, 3}) {
				t.Fatalf("outputs %+v, want one of shape [%d 3]", got, rows)
			}
			for r := range rows {
				want := forward(gen, x[r*28:(r+1)*28])
				row := got[0].Data[r*3 : (r+1)*3]
				for j := range want {
					if math.Abs(row[j]-want[j]) > tolerance {
						t.Fatalf("row %d: got %v, plain Go gives %v (tolerance %g)", r, row, want, tolerance)
					}
				}
			}
		})
	}
}

func TestRandomMLP_Deterministic(t *testing.T) {
	a, err := RandomMLP(7, benchMLP...).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, _ := RandomMLP(7, benchMLP...).Marshal()
	other, _ := RandomMLP(8, benchMLP...).Marshal()
	if !bytes.Equal(a, again) {
		t.Error("the same seed gave two different models")
	}
	if bytes.Equal(a, other) {
		t.Error("seeds 7 and 8 gave the same model")
	}
}

func TestMLP_MarshalRefusesMismatch(t *testing.T) {
	m := RandomMLP(1, 4, 3, 2)
	m.Biases[1] = m.Biases[1][:1]
	if _, err := m.Marshal(); err == nil {
		t.Fatal("Marshal took a layer with too few biases")
	}
}

// BenchmarkPredictMLP scores the 28-512-512-3 MLP in batches of 1 and 32
// rows: the model's own cost per row without HTTP, which is what batching
// in serving can at best win back.
//
//	go test ./ml/onnx -run x -bench PredictMLP
func BenchmarkPredictMLP(b *testing.B) {
	raw, err := RandomMLP(7, benchMLP...).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	m := loadBytes(b, raw)
	for _, rows := range []int{1, 32} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			in := []ml.Tensor{{Name: "input", Shape: []int{rows, 28}, Data: mlpRows(rows, 28, 1)}}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Predict(context.Background(), in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// forward is the MLP computed in plain Go, in float64 from the float32
// weights and the input rounded to float32 as Predict rounds it.
func forward(m *MLP, row []float64) []float64 {
	x := make([]float64, len(row))
	for i, v := range row {
		x[i] = float64(float32(v))
	}
	for l, w := range m.Weights {
		in, out := m.Sizes[l], m.Sizes[l+1]
		y := make([]float64, out)
		for j := range out {
			sum := float64(m.Biases[l][j])
			for i := range in {
				sum += x[i] * float64(w[i*out+j])
			}
			y[j] = sum
		}
		if l < len(m.Weights)-1 {
			for j := range y {
				y[j] = max(y[j], 0)
			}
		}
		x = y
	}
	top := slices.Max(x)
	var total float64
	for j := range x {
		x[j] = math.Exp(x[j] - top)
		total += x[j]
	}
	for j := range x {
		x[j] /= total
	}
	return x
}

// mlpRows are rows standard-normal features, drawn from seed.
func mlpRows(rows, width int, seed uint64) []float64 {
	rng := rand.New(rand.NewPCG(seed, 1))
	x := make([]float64, rows*width)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	return x
}

func specsEqual(a, b []ml.TensorSpec) bool {
	return slices.EqualFunc(a, b, func(x, y ml.TensorSpec) bool {
		return x.Name == y.Name && x.DataType == y.DataType && slices.Equal(x.Shape, y.Shape)
	})
}
