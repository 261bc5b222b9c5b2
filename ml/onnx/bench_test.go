package onnx

import (
	"context"
	"testing"
)

// BenchmarkPredict scores the sample models one request at a time; the
// figures include the per-call copies of weights and nodes (see run).
func BenchmarkPredict(b *testing.B) {
	samples := readExpected(b)
	for _, name := range sampleModels {
		b.Run(name, func(b *testing.B) {
			m := loadBytes(b, readModel(b, name))
			inputs := samples[name].inputsOf()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Predict(context.Background(), inputs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
