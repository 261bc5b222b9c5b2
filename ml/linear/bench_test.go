package linear

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"github.com/kilnml/kiln/ml"
)

// BenchmarkLoad decodes, checks and builds an mlp of about a million
// parameters (a 9 MB file).
func BenchmarkLoad(b *testing.B) {
	m := randomModel(1, 512, []int{1024, 512, 10}, []Activation{ReLU, ReLU, Softmax})
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	for b.Loop() {
		if _, err := Load(bytes.NewReader(buf.Bytes())); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPredict scores batches of 256 rows through a 32-64-64-3 mlp and a
// 32-feature logistic regression.
func BenchmarkPredict(b *testing.B) {
	models := []struct {
		name string
		m    *Model
	}{
		{"mlp", randomModel(2, 32, []int{64, 64, 3}, []Activation{Tanh, ReLU, Softmax})},
		{"logistic", randomModel(3, 32, []int{1}, []Activation{Sigmoid})},
	}
	for _, bm := range models {
		b.Run(bm.name, func(b *testing.B) {
			r, err := New(bm.m)
			if err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 1))
			in := ml.Tensor{Shape: []int{256, 32}, Data: make([]float64, 256*32)}
			for i := range in.Data {
				in.Data[i] = rng.NormFloat64()
			}
			for b.Loop() {
				if _, err := r.Predict(context.Background(), []ml.Tensor{in}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
