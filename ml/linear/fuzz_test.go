package linear

import (
	"bytes"
	"context"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/kilnml/kiln/ml"
)

// FuzzLoad feeds arbitrary bytes to Load. It must never panic, every failure
// must wrap ml.ErrBadModel, and a model that loads must survive Encode and
// Decode unchanged and score a row of zeros to finite outputs (or refuse it
// as an overflow, with ml.ErrBadInput).
func FuzzLoad(f *testing.F) {
	for _, doc := range docExamples(f) {
		f.Add([]byte(doc))
	}
	seeds := []string{
		``, `null`, `[]`, `{}`, `{"format":"kiln-linear"}`,
		`{"format":"kiln-linear","version":1,"kind":"linear","n_features":1,"layers":[{"weights":[[1]],"bias":[0]}]}`,
		`{"format":"kiln-linear","version":1,"kind":"mlp","n_features":1,"layers":[{"weights":[[1e308]],"bias":[1e308],"activation":"relu"},{"weights":[[1e308],[-1e308]],"bias":[0,0],"activation":"softmax"}]}`,
		`{"format":"kiln-linear","version":1,"kind":"softmax","n_features":2,"layers":[{"weights":[[1,null],[2,3]],"bias":[0,0]}]}`,
		`{"format":"kiln-linear","version":1,"kind":"logistic","n_features":1,"scaler":{"mean":[0],"scale":[0]},"layers":[{"weights":[[1]],"bias":[0]}]}`,
		`{"format":"kiln-linear","version":1,"kind":"linear","n_features":2,"layers":[{"weights":[[1,"x"]],"bias":[0]}]}`,
		`{"format":"kiln-linear","version":1,"kind":"linear","n_features":1,"layers":[{"weights":[[1]],"bias":[0]}]} x`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Load(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ml.ErrBadModel) {
				t.Fatalf("Load error %v does not wrap ml.ErrBadModel", err)
			}
			return
		}
		file, err := Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("Load accepted what Decode refuses: %v", err)
		}
		var buf bytes.Buffer
		if err := file.Encode(&buf); err != nil {
			t.Fatalf("Encode of a decoded model: %v", err)
		}
		again, err := Decode(&buf)
		if err != nil {
			t.Fatalf("Decode of Encode's output: %v", err)
		}
		if !reflect.DeepEqual(file, again) {
			t.Fatalf("Encode and Decode changed the model:\n%+v\n%+v", file, again)
		}

		if file.NFeatures > 1024 {
			return
		}
		out, err := m.Predict(context.Background(), []ml.Tensor{{Shape: []int{1, file.NFeatures}, Data: make([]float64, file.NFeatures)}})
		if err != nil {
			if !errors.Is(err, ml.ErrBadInput) {
				t.Fatalf("Predict error %v does not wrap ml.ErrBadInput", err)
			}
			return
		}
		for i, v := range out[0].Data {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("output %d is %v", i, v)
			}
		}
	})
}
