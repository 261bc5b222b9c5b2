package xgbjson

import (
	"bytes"
	"context"
	"errors"
	"math"
	"testing"

	"github.com/kilnml/kiln/ml"
)

// FuzzLoad checks that Load never panics: it returns a model that scores a
// batch of the right width, or an error wrapping ml.ErrBadModel.
func FuzzLoad(f *testing.F) {
	toy := readFile(f, testdata+"xgb_toy_categorical_model.json")
	f.Add(toy)
	for _, n := range []int{0, 1, 100, len(toy) / 2, len(toy) - 2} {
		f.Add(toy[:n])
	}
	for _, doc := range []map[string]any{
		modelDoc("binary:logistic", "[5E-1]", 0, []testTree{deepTree(), catStump(1, []int{0, 2}, -1, 1, true)}, []int{0, 0}),
		modelDoc("multi:softprob", "5E-1", 3, []testTree{stump(0, 0.5, 1, 2, true), stump(1, 0.5, 1, 2, false), deepTree()}, []int{0, 1, 2}),
		modelDoc("multi:softmax", "5E-1", 2, nil, []int{}),
		modelDoc("count:poisson", "1", 0, []testTree{stump(0, 0.5, 1, 2, true)}, []int{0}),
	} {
		f.Add(encode(f, doc))
	}
	f.Add([]byte(`{"learner": NaN}`))
	f.Add([]byte(`[Infinity, -Infinity, "NaN\"", NaN]`))

	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Load(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ml.ErrBadModel) {
				t.Fatalf("error does not wrap ml.ErrBadModel: %v", err)
			}
			return
		}
		s := m.Schema()
		features := s.Inputs[0].Shape[1]
		if features > 1<<16 {
			return // valid, but too wide to score here
		}
		const rows = 3
		values := []float64{0, math.NaN(), 1, -1, 2.5, math.Inf(1), 1 << 24, 0.5}
		in := make([]float64, rows*features)
		for i := range in {
			in[i] = values[i%len(values)]
		}
		out, err := m.Predict(context.Background(), []ml.Tensor{{Name: "input", Shape: []int{rows, features}, Data: in}})
		if err != nil {
			t.Fatalf("Predict: %v", err)
		}
		width := 1
		if shape := s.Outputs[0].Shape; len(shape) == 2 {
			width = shape[1]
		}
		if len(out) != 1 || len(out[0].Data) != rows*width {
			t.Fatalf("Predict gave %v for %d rows of width %d", out, rows, width)
		}
	})
}
