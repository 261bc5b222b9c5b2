package onnx

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/kilnml/kiln/ml"
)

// FuzzLoad feeds Load arbitrary bytes: it must never panic, every error must
// wrap ml.ErrBadModel, and a model that loads must have a schema and score a
// small zero-filled request without panicking (errors then wrap
// ml.ErrBadInput or ml.ErrRuntime). Seeds: the sample models, their
// truncations, a rewritten-opset copy and a Conv model.
func FuzzLoad(f *testing.F) {
	for _, name := range sampleModels {
		b := readModel(f, name)
		f.Add(b)
		for n := 0; n < len(b); n += 1 + len(b)/24 {
			f.Add(b[:n])
		}
	}
	f.Add(withOpset(f, "mlp.onnx", 15, nil))
	f.Add(withOpset(f, "gru.onnx", 18, nil))
	f.Add(encode(f, convModel()))
	f.Add(encode(f, gatherModel()))
	f.Add([]byte("\x08\x07\x12\x00"))

	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Load(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ml.ErrBadModel) {
				t.Fatalf("Load error %q does not wrap ml.ErrBadModel", err)
			}
			return
		}
		s := m.Schema()
		if len(s.Inputs) == 0 || len(s.Outputs) == 0 {
			t.Fatalf("loaded a model with schema %+v", s)
		}
		inputs, ok := zeroInputs(s)
		if !ok {
			return
		}
		if _, err := m.Predict(context.Background(), inputs); err != nil &&
			!errors.Is(err, ml.ErrBadInput) && !errors.Is(err, ml.ErrRuntime) {
			t.Fatalf("Predict error %q wraps neither ml.ErrBadInput nor ml.ErrRuntime", err)
		}
	})
}

// zeroInputs builds a zero-filled request for a schema, free dimensions set
// to 1; false when the request would be large (a fuzzed shape can ask for
// anything).
func zeroInputs(s ml.Schema) ([]ml.Tensor, bool) {
	var inputs []ml.Tensor
	for _, spec := range s.Inputs {
		shape := make([]int, len(spec.Shape))
		n := 1
		for i, d := range spec.Shape {
			shape[i] = max(d, 1)
			n *= shape[i]
			if n > 1<<12 {
				return nil, false
			}
		}
		inputs = append(inputs, ml.Tensor{Name: spec.Name, Shape: shape, Data: make([]float64, n)})
	}
	return inputs, true
}
