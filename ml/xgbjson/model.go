package xgbjson

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"

	"github.com/kilnml/kiln/ml"
)

// objective is what an XGBoost objective means for prediction: how base_score
// becomes a margin and how margins become the output.
type objective int

const (
	objIdentity objective = iota // output = margin; base_score as is
	objLogistic                  // output = sigmoid(margin); base_score through logit
	objLogitRaw                  // output = margin; base_score through logit before XGBoost 1.4
	objLog                       // output = exp(margin); base_score through log
	objSoftprob                  // output = softmax over the class margins
	objSoftmax                   // output = index of the largest class margin
)

var objectives = map[string]objective{
	"reg:squarederror":     objIdentity,
	"reg:linear":           objIdentity,
	"reg:absoluteerror":    objIdentity,
	"reg:pseudohubererror": objIdentity,
	"reg:logistic":         objLogistic,
	"binary:logistic":      objLogistic,
	"binary:logitraw":      objLogitRaw,
	"count:poisson":        objLog,
	"reg:gamma":            objLog,
	"reg:tweedie":          objLog,
	"multi:softprob":       objSoftprob,
	"multi:softmax":        objSoftmax,
}

func supportedObjectives() string {
	names := make([]string, 0, len(objectives))
	for name := range objectives {
		names = append(names, name)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// baseToMargin converts one base_score value, as XGBoost's
// ObjFunction::ProbToMargin does when it loads a model.
func (o objective) baseToMargin(v float64, version []int) (float64, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, errors.New("base_score must be finite")
	}
	if o == objLogitRaw && !versionBefore(version, 1, 4) {
		return v, nil // dmlc/xgboost#6517: logitraw keeps base_score as a margin
	}
	switch o {
	case objLogistic, objLogitRaw:
		if v < 0 || v > 1 {
			return 0, errors.New("base_score must be in [0, 1] for a logistic objective")
		}
		const eps = 1e-6 // XGBoost's kRtEps
		v = min(max(v, eps), 1-eps)
		return math.Log(v / (1 - v)), nil
	case objLog:
		if v <= 0 {
			return 0, errors.New("base_score must be positive for an objective with a log link")
		}
		return math.Log(v), nil
	}
	return v, nil
}

// versionBefore reports whether the file's version [major, minor, patch] is
// older than major.minor. A file without a version counts as new.
func versionBefore(version []int, major, minor int) bool {
	if len(version) < 2 {
		return false
	}
	return version[0] < major || (version[0] == major && version[1] < minor)
}

// transform turns one row's margins into its output values.
func (o objective) transform(margin, out []float64) {
	switch o {
	case objLogistic:
		for k, v := range margin {
			out[k] = 1 / (1 + math.Exp(-v))
		}
	case objLog:
		for k, v := range margin {
			out[k] = math.Exp(v)
		}
	case objSoftprob:
		top := slices.Max(margin)
		sum := 0.0
		for k, v := range margin {
			out[k] = math.Exp(v - top)
			sum += out[k]
		}
		for k := range out {
			out[k] /= sum
		}
	case objSoftmax:
		best := 0
		for k, v := range margin {
			if v > margin[best] {
				best = k
			}
		}
		out[0] = float64(best)
	default:
		copy(out, margin)
	}
}

// model is a loaded XGBoost JSON model. It is not changed after Load.
type model struct {
	obj          objective
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
	if m.obj == objSoftmax {
		return 1
	}
	return m.outputs
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
		m.obj.transform(margin, out[r*width:(r+1)*width])
	}
	shape := []int{rows}
	if width > 1 {
		shape = []int{rows, width}
	}
	return []ml.Tensor{{Name: "output", Shape: shape, Data: out}}, nil
}
