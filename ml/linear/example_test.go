package linear_test

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/ml/linear"
)

// A trainer writes a fitted binary logistic regression.
func ExampleModel_Encode() {
	m := &linear.Model{
		Kind:         linear.KindLogistic,
		NFeatures:    2,
		FeatureNames: []string{"tenure_months", "support_calls"},
		Classes:      []string{"stays", "churns"},
		Layers: []linear.Layer{
			{Weights: [][]float64{{-0.05, 0.8}}, Bias: []float64{-1}},
		},
	}
	if err := m.Encode(os.Stdout); err != nil {
		fmt.Println(err)
	}
	// Output:
	// {"format":"kiln-linear","version":1,"kind":"logistic","n_features":2,"feature_names":["tenure_months","support_calls"],"classes":["stays","churns"],"layers":[{"weights":[[-0.05,0.8]],"bias":[-1]}]}
}

// Loading the XOR network of the package doc and scoring a batch.
func ExampleLoad() {
	const xor = `{
	  "format": "kiln-linear", "version": 1, "kind": "mlp", "n_features": 2,
	  "classes": ["false", "true"],
	  "layers": [
	    {"weights": [[1, 1], [1, 1]], "bias": [0, -1], "activation": "relu"},
	    {"weights": [[10, -20]], "bias": [-5], "activation": "sigmoid"}
	  ]
	}`
	m, err := linear.Load(strings.NewReader(xor))
	if err != nil {
		fmt.Println(err)
		return
	}
	out, err := m.Predict(context.Background(), []ml.Tensor{{
		Name:  "input",
		Shape: []int{4, 2},
		Data:  []float64{0, 0, 0, 1, 1, 0, 1, 1},
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.Schema().Outputs[0].Shape, out[0].Shape)
	for _, p := range out[0].Data {
		fmt.Printf("%.4f\n", p)
	}
	// Output:
	// [-1] [4]
	// 0.0067
	// 0.9933
	// 0.9933
	// 0.0067
}
