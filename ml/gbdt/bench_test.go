package gbdt

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/kilnml/kiln/ml"
)

// BenchmarkLightGBM_MulticlassRows scores the 5-class LightGBM test model on
// batches of 1, 8 and 32 rows and reports the cost per row: what dynamic
// batching can save on the model call itself.
func BenchmarkLightGBM_MulticlassRows(b *testing.B) {
	f, err := os.Open("../testdata/lightgbm/lgmulticlass.model")
	if err != nil {
		b.Fatal(err)
	}
	m, err := LoadLightGBM(f)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	for _, rows := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			data := make([]float64, rows*28)
			for i := range data {
				data[i] = float64(i%7)*0.3 - 1
			}
			in := []ml.Tensor{{Name: "input", Shape: []int{rows, 28}, Data: data}}
			for b.Loop() {
				if _, err := m.Predict(context.Background(), in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
		})
	}
}
