package gbdt

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/dmitryikh/leaves"

	"github.com/kilnml/kiln/ml"
)

// MaxModelSize is the largest model file the loaders read: 512 MiB. The text
// and leaves' copy of the trees are in memory together while a model loads.
const MaxModelSize = 512 << 20

// sizeLimit is MaxModelSize; tests lower it.
var sizeLimit int64 = MaxModelSize

// model is a loaded ensemble. It is not changed after load.
type model struct {
	format   string // ml.FormatLightGBM or ml.FormatXGBoost, for errors
	ens      *leaves.Ensemble
	features int
	schema   ml.Schema
	outWidth int // output values per row
	// xgbSplits turns on the input rounding that gives XGBoost's split
	// rule (see the package doc).
	xgbSplits bool
	// finish turns one row of leaves' values into the row's output; nil
	// keeps leaves' values (LightGBM, where leaves applies the output
	// function itself).
	finish func(raw, out []float64)
}

func newModel(format string, ens *leaves.Ensemble, features, outWidth int, names []string) *model {
	out := ml.TensorSpec{Name: "output", DataType: ml.FP64, Shape: []int{-1}}
	if outWidth > 1 {
		out.Shape = []int{-1, outWidth}
	}
	return &model{
		format:   format,
		ens:      ens,
		features: features,
		outWidth: outWidth,
		schema: ml.Schema{
			Inputs:       []ml.TensorSpec{{Name: "input", DataType: ml.FP64, Shape: []int{-1, features}}},
			Outputs:      []ml.TensorSpec{out},
			FeatureNames: names,
		},
	}
}

// Schema implements ml.Model.
func (m *model) Schema() ml.Schema { return m.schema }

// Predict implements ml.Model.
func (m *model) Predict(ctx context.Context, inputs []ml.Tensor) ([]ml.Tensor, error) {
	rows, data, err := ml.TabularInput(inputs, m.schema.Inputs[0], m.features)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if m.xgbSplits {
		data = xgbSplitInputs(data)
	}
	raw := make([]float64, rows*m.ens.NOutputGroups())
	if err := m.predictDense(data, rows, raw); err != nil {
		return nil, err
	}
	out := raw
	if m.finish != nil {
		out = make([]float64, rows*m.outWidth)
		w := m.ens.NOutputGroups()
		for i := range rows {
			m.finish(raw[i*w:(i+1)*w], out[i*m.outWidth:(i+1)*m.outWidth])
		}
	}
	shape := []int{rows}
	if m.outWidth > 1 {
		shape = append(shape, m.outWidth)
	}
	return []ml.Tensor{{Name: "output", Shape: shape, Data: out}}, nil
}

// predictDense calls leaves, turning a panic into an error.
func (m *model) predictDense(data []float64, rows int, raw []float64) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: gbdt: %s: prediction panicked: %v", ml.ErrRuntime, m.format, r)
		}
	}()
	if err := m.ens.PredictDense(data, rows, m.features, raw, 0, 1); err != nil {
		return fmt.Errorf("%w: gbdt: %s: %v", ml.ErrRuntime, m.format, err)
	}
	return nil
}

func badModel(format, reason string, args ...any) error {
	return fmt.Errorf("%w: gbdt: %s: %s", ml.ErrBadModel, format, fmt.Sprintf(reason, args...))
}

// readModel reads a whole model file, at most sizeLimit bytes.
func readModel(r io.Reader, format string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, sizeLimit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: gbdt: %s: reading the model: %w", ml.ErrBadModel, format, err)
	}
	if int64(len(data)) > sizeLimit {
		return nil, badModel(format, "the model is larger than %d bytes", sizeLimit)
	}
	if len(data) == 0 {
		return nil, badModel(format, "the model file is empty")
	}
	return data, nil
}

// loadEnsemble runs one of leaves' loaders on data, turning its errors and
// panics into errors wrapping ml.ErrBadModel.
func loadEnsemble(format string, load func(*bufio.Reader, bool) (*leaves.Ensemble, error), data []byte, transform bool) (ens *leaves.Ensemble, err error) {
	defer func() {
		if r := recover(); r != nil {
			ens, err = nil, badModel(format, "the loader panicked: %v", r)
		}
	}()
	ens, err = load(bufio.NewReader(bytes.NewReader(data)), transform)
	if err != nil {
		return nil, badModel(format, "%v", err)
	}
	return ens, nil
}

// checkTree walks the internal nodes reachable from node 0 of a tree with n
// internal nodes (XGBoost counts its leaves in n, LightGBM does not; either
// way they are not walked). children checks internal node i and returns its
// children, -1 for a leaf. It fails on a child out of [1, n) or a node reached
// twice: leaves follows child links unchecked, and a link back up the tree
// would loop its prediction for ever.
func checkTree(n int, children func(i int) (left, right int, err error)) error {
	seen := make([]bool, n)
	seen[0] = true
	stack := []int{0}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		left, right, err := children(i)
		if err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		for _, c := range [2]int{left, right} {
			switch {
			case c == -1:
				continue
			case c <= 0 || c >= n:
				return fmt.Errorf("node %d: child %d is out of range [1, %d)", i, c, n)
			case seen[c]:
				return fmt.Errorf("node %d is reached twice", c)
			}
			seen[c] = true
			stack = append(stack, c)
		}
	}
	return nil
}
