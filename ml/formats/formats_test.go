package formats

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/kilnml/kiln/ml"
)

func TestDetectAndLoad_RealFiles(t *testing.T) {
	for _, tc := range []struct {
		file   string
		detect string // "" when the format cannot be told from the bytes
		format string
		inputs int
	}{
		{"linear/iris.json", ml.FormatLinear, ml.FormatLinear, 1},
		{"lightgbm/lgmulticlass.model", ml.FormatLightGBM, ml.FormatLightGBM, 1},
		{"lightgbm/lg_breast_cancer.txt", ml.FormatLightGBM, ml.FormatLightGBM, 1},
		{"xgboost/xgb_toy_categorical_model.json", ml.FormatXGBoostJSON, ml.FormatXGBoostJSON, 1},
		{"xgboost/xgagaricus.model", "", ml.FormatXGBoost, 1},
		{"onnx/mlp.onnx", ml.FormatONNX, ml.FormatONNX, 1},
		{"onnx/gru.onnx", ml.FormatONNX, ml.FormatONNX, 2},
		{"onnx/scaler.onnx", ml.FormatONNX, ml.FormatONNX, 1},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("../testdata", tc.file)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := Detect(b[:min(len(b), 4096)]); got != tc.detect {
				t.Errorf("Detect = %q, want %q", got, tc.detect)
			}
			m, err := Load(tc.format, path)
			if err != nil {
				t.Fatalf("Load(%s): %v", tc.format, err)
			}
			if n := len(m.Schema().Inputs); n != tc.inputs {
				t.Errorf("%d inputs, want %d", n, tc.inputs)
			}
		})
	}
}

func TestLoad_Refusals(t *testing.T) {
	if _, err := Load("pickle", "../testdata/onnx/mlp.onnx"); !errors.Is(err, ml.ErrBadModel) {
		t.Errorf("unknown format: %v, want ml.ErrBadModel", err)
	}
	if _, err := Load(ml.FormatLightGBM, "../testdata/onnx/mlp.onnx"); !errors.Is(err, ml.ErrBadModel) {
		t.Errorf("an ONNX file loaded as LightGBM: %v, want ml.ErrBadModel", err)
	}
	if Detect([]byte(`{"hello": 1}`)) != "" || Detect(nil) != "" {
		t.Error("Detect guessed a format for JSON that is neither of ours, or for nothing")
	}
	for _, f := range Names {
		if !Supported(f) {
			t.Errorf("Supported(%q) = false", f)
		}
	}
}
