//go:build ignore

// fit_iris fits the softmax regression in iris.json to ../datasets/iris.csv:
// standardized features, full-batch gradient descent on the cross-entropy
// with a little L2, 3000 steps. Run from this directory:
//
//	go run fit_iris.go > iris.json
//
// The built-in trainers of a later capability replace this; the file is test
// data for the serving benchmarks and tests.
package main

import (
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"strconv"

	"github.com/kilnml/kiln/ml/linear"
)

func main() {
	f, err := os.Open("../datasets/iris.csv")
	if err != nil {
		panic(err)
	}
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		panic(err)
	}
	classes := []string{"setosa", "versicolor", "virginica"}
	var x [][]float64
	var y []int
	for _, r := range recs[1:] {
		row := make([]float64, 4)
		for j := range 4 {
			row[j], _ = strconv.ParseFloat(r[j+1], 64)
		}
		for k, c := range classes {
			if r[5] == c {
				y = append(y, k)
			}
		}
		x = append(x, row)
	}
	mean, scale := make([]float64, 4), make([]float64, 4)
	for j := range 4 {
		for _, r := range x {
			mean[j] += r[j] / float64(len(x))
		}
		for _, r := range x {
			scale[j] += (r[j] - mean[j]) * (r[j] - mean[j]) / float64(len(x))
		}
		scale[j] = math.Sqrt(scale[j])
	}
	w := make([][]float64, 3)
	for k := range w {
		w[k] = make([]float64, 4)
	}
	b := make([]float64, 3)
	const lr, l2 = 0.5, 1e-3
	for range 3000 {
		gw := [3][4]float64{}
		gb := [3]float64{}
		for i, r := range x {
			z := [3]float64{}
			for k := range 3 {
				z[k] = b[k]
				for j := range 4 {
					z[k] += w[k][j] * (r[j] - mean[j]) / scale[j]
				}
			}
			m := math.Max(z[0], math.Max(z[1], z[2]))
			s := 0.0
			for k := range 3 {
				z[k] = math.Exp(z[k] - m)
				s += z[k]
			}
			for k := range 3 {
				p := z[k] / s
				if k == y[i] {
					p--
				}
				gb[k] += p / float64(len(x))
				for j := range 4 {
					gw[k][j] += p * (r[j] - mean[j]) / scale[j] / float64(len(x))
				}
			}
		}
		for k := range 3 {
			b[k] -= lr * gb[k]
			for j := range 4 {
				w[k][j] -= lr * (gw[k][j] + l2*w[k][j])
			}
		}
	}
	m := &linear.Model{
		Kind: linear.KindSoftmax, NFeatures: 4,
		FeatureNames: []string{"sepal_length", "sepal_width", "petal_length", "petal_width"},
		Classes:      classes,
		Scaler:       &linear.Scaler{Mean: mean, Scale: scale},
		Layers:       []linear.Layer{{Weights: w, Bias: b}},
	}
	if err := m.Encode(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
