package xgbjson

import (
	"context"
	"math"
	"slices"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/ml/internal/xgbobj"
)

// model is a loaded XGBoost JSON model. It is not changed after Load.
type model struct {
	obj          xgbobj.Objective
	numFeature   int
	outputs      int       // margins per row: classes or targets, at least 1
	base         []float64 // base_score as margins, one per output
	trees        []tree
	featureNames []string
}

type tree struct {
	nodes  []node // nodes[0] is the root; unreachable nodes are zero
	group  int    // the output (class) this tree adds to
	weight float64
}

type node struct {
	left, right int32 // children; left < 0 marks a leaf
	feature     int32
	defaultLeft bool    // where a missing value goes
	cond        float32 // a numerical split goes left when float32(x) < cond
	cats        []int32 // non-nil at a categorical split: the sorted categories that go right
	leaf        float64 // a leaf's value
}

// predict returns the value of the leaf row falls in.
func (t *tree) predict(row []float64) float64 {
	i := int32(0)
	for {
		n := &t.nodes[i]
		if n.left < 0 {
			return n.leaf
		}
		x := row[n.feature]
		var left bool
		switch {
		case math.IsNaN(x):
			left = n.defaultLeft
		case n.cats != nil:
			left = !inCategories(n.cats, float32(x))
		default:
			left = float32(x) < n.cond
		}
		if left {
			i = n.left
		} else {
			i = n.right
		}
	}
}

// inCategories reports whether the category x is in the sorted set cats,
// with XGBoost's conversion: truncation toward zero, and a value below 0 or
// at or above 2^24 (infinities included) in no set.
func inCategories(cats []int32, x float32) bool {
	if !(x >= 0 && x < maxCategory) {
		return false
	}
	_, found := slices.BinarySearch(cats, int32(x))
	return found
}

// width is the number of output values per row.
func (m *model) width() int {
	return m.obj.Width(m.outputs)
}

// Schema implements ml.Model.
func (m *model) Schema() ml.Schema {
	out := []int{-1}
	if w := m.width(); w > 1 {
		out = []int{-1, w}
	}
	return ml.Schema{
		Inputs:       []ml.TensorSpec{m.inputSpec()},
		Outputs:      []ml.TensorSpec{{Name: "output", DataType: ml.FP64, Shape: out}},
		FeatureNames: slices.Clone(m.featureNames),
	}
}

func (m *model) inputSpec() ml.TensorSpec {
	return ml.TensorSpec{Name: "input", DataType: ml.FP64, Shape: []int{-1, m.numFeature}}
}

// Predict implements ml.Model. NaN in the input is a missing value.
func (m *model) Predict(ctx context.Context, inputs []ml.Tensor) ([]ml.Tensor, error) {
	rows, data, err := ml.TabularInput(inputs, m.inputSpec(), m.numFeature)
	if err != nil {
		return nil, err
	}
	width := m.width()
	out := make([]float64, rows*width)
	margin := make([]float64, m.outputs)
	for r := range rows {
		if r%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		row := data[r*m.numFeature : (r+1)*m.numFeature]
		copy(margin, m.base)
		for t := range m.trees {
			tr := &m.trees[t]
			margin[tr.group] += tr.weight * tr.predict(row)
		}
		m.obj.Transform(margin, out[r*width:(r+1)*width])
	}
	shape := []int{rows}
	if width > 1 {
		shape = []int{rows, width}
	}
	return []ml.Tensor{{Name: "output", Shape: shape, Data: out}}, nil
}
