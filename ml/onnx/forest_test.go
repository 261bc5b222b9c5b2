package onnx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnml/kiln/ml"
)

// forestCases reads testdata/onnx/forest/expected.json: iris rows with
// scikit-learn's own predict_proba and predict for the random forest that
// gen.py converted to ONNX.
func forestCases(t *testing.T) (rows [][]float64, probs [][]float64, labels []float64) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata, "forest", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		Inputs        [][]float64 `json:"inputs"`
		Probabilities [][]float64 `json:"probabilities"`
		Labels        []float64   `json:"labels"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return e.Inputs, e.Probabilities, e.Labels
}

// TestORT_RandomForest serves the forest under ORT, through its ZipMap and
// through its plain probability tensor, and compares both with
// scikit-learn's answers. gonnx has no TreeEnsembleClassifier: it refuses
// the model, naming the op.
func TestORT_RandomForest(t *testing.T) {
	rows, probs, labels := forestCases(t)
	flat := make([]float64, 0, 4*len(rows))
	for _, r := range rows {
		flat = append(flat, r...)
	}
	in := []ml.Tensor{{Name: "input", Shape: []int{len(rows), 4}, Data: flat}}
	zipmap, err := os.ReadFile(filepath.Join(testdata, "forest", "forest_zipmap.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Gonnx().Load(bytes.NewReader(zipmap), ml.CPUOnly); !errors.Is(err, ml.ErrBadModel) || !strings.Contains(err.Error(), "TreeEnsembleClassifier") {
		t.Errorf("gonnx on a TreeEnsembleClassifier: %v", err)
	}
	b := ortBackend(t)
	for _, file := range []string{"forest_zipmap.onnx", "forest_tensor.onnx"} {
		t.Run(file, func(t *testing.T) {
			m := loadWith(t, b, readModel(t, filepath.Join("forest", file)))
			s := m.Schema()
			if len(s.Outputs) != 2 || s.Outputs[0].Name != "label" || s.Outputs[1].DataType != ml.FP32 || !equalInts(s.Outputs[1].Shape, []int{-1, 3}) {
				t.Fatalf("schema outputs %+v", s.Outputs)
			}
			out, err := m.Predict(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			if !equalInts(out[0].Shape, []int{len(rows)}) || !equalInts(out[1].Shape, []int{len(rows), 3}) {
				t.Fatalf("output shapes %v %v", out[0].Shape, out[1].Shape)
			}
			// A tree ensemble reads NaN as a missing value: it is served,
			// and every row still gets probabilities that sum to 1.
			nan := []ml.Tensor{{Name: "input", Shape: []int{1, 4}, Data: []float64{math.NaN(), 3, math.NaN(), 0.2}}}
			if got, err := m.Predict(context.Background(), nan); err != nil || math.Abs(got[1].Data[0]+got[1].Data[1]+got[1].Data[2]-1) > 1e-6 {
				t.Errorf("a row with missing values: %v %+v", err, got)
			}
			for i := range rows {
				if out[0].Data[i] != labels[i] {
					t.Errorf("row %d: label %v, scikit-learn says %v", i, out[0].Data[i], labels[i])
				}
				for k := range 3 {
					if got := out[1].Data[3*i+k]; math.Abs(got-probs[i][k]) > 1e-6 {
						t.Errorf("row %d class %d: probability %v, scikit-learn says %v", i, k, got, probs[i][k])
					}
				}
			}
		})
	}
}
