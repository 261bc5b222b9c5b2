package gbdt

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/kilnml/kiln/ml"
)

// addSeeds adds b and truncations of it, at the given cut points and at
// fractions of its length.
func addSeeds(f *testing.F, b []byte, cuts ...int) {
	f.Add(b)
	for _, n := range cuts {
		if n < len(b) {
			f.Add(b[:n])
		}
	}
	for _, frac := range []float64{0.1, 0.25, 0.5, 0.75, 0.9} {
		f.Add(b[:int(frac*float64(len(b)))])
	}
	f.Add(b[:len(b)-1])
	f.Add(b[len(b)/2:])
}

// checkLoad loads data with l: an error must wrap ml.ErrBadModel, and a
// model that loads must score any row, missing values and infinities
// included.
func checkLoad(t *testing.T, l loader, data []byte) {
	m, err := l(bytes.NewReader(data))
	if err != nil {
		if !errors.Is(err, ml.ErrBadModel) {
			t.Fatalf("error %v does not wrap ml.ErrBadModel", err)
		}
		return
	}
	features := m.Schema().Inputs[0].Shape[1]
	if features < 1 {
		t.Fatalf("model with %d features", features)
	}
	if features > 1<<16 {
		return // too wide to score cheaply; the shape is all we check
	}
	var rows []float64
	for _, v := range []float64{0, 1, -1, 0.5, math.NaN(), math.Inf(1), math.Inf(-1), 1e300} {
		for range features {
			rows = append(rows, v)
		}
	}
	in := ml.Tensor{Shape: []int{len(rows) / features, features}, Data: rows}
	out, err := m.Predict(context.Background(), []ml.Tensor{in})
	if err != nil {
		t.Fatalf("a model that loaded does not score: %v", err)
	}
	if err := out[0].Check(); err != nil || out[0].Shape[0] != in.Shape[0] {
		t.Fatalf("output %v for %d rows: %v", out[0].Shape, in.Shape[0], err)
	}
}

func FuzzLoadLightGBM(f *testing.F) {
	f.Add([]byte{})
	addSeeds(f, []byte(lgSmallModel("2 2")), 5, 100, 200, 300)
	addSeeds(f, []byte(lgSmallModel("10 8")))
	addSeeds(f, []byte(lgCategorical))
	addSeeds(f, readFile(f, lgBreastCancer))
	addSeeds(f, readFile(f, lgMulticlass))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkLoad(t, LoadLightGBM, data)
	})
}

func FuzzLoadXGBoost(f *testing.F) {
	f.Add([]byte{})
	small := xgbSpec{objective: "binary:logistic", features: 2, trees: [][]xgbNode{
		{xgbSplit(0, 0.5, 1, 2, true), xgbSplit(1, 0.5, 3, 4, false), xgbLeaf(1), xgbLeaf(2), xgbLeaf(3)},
		{xgbLeaf(0.5)},
	}}
	addSeeds(f, small.bytes(), 136, 160, 180, 340)
	multi := xgbSpec{objective: "multi:softprob", booster: "dart", features: 1, numClass: 2, groups: 2, major: 1,
		trees: [][]xgbNode{oneSplit(0.5), oneSplit(0.25)}}
	addSeeds(f, multi.bytes())
	xg := readFile(f, xgAgaricus)
	cuts := []int{4, 136, 144}
	for n := 200; n < len(xg); n += 97 {
		cuts = append(cuts, n)
	}
	addSeeds(f, xg, cuts...)
	addSeeds(f, append([]byte("binf"), xg...))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkLoad(t, LoadXGBoost, data)
	})
}

// lgCategorical is lgSmall with a categorical root split: categories 1 and
// 2 of feature a go left, the others right.
var lgCategorical = strings.NewReplacer(
	"num_cat=0", "num_cat=1",
	"threshold=0.5 0.5", "threshold=0 0.5",
	"decision_type=2 2", "decision_type=1 2\ncat_boundaries=0 1\ncat_threshold=6",
).Replace(lgSmallModel("2 2"))
