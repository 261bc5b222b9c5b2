package linear

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/kilnml/kiln/ml"
	linearfmt "github.com/kilnml/kiln/ml/linear"
	"github.com/kilnml/kiln/ml/train"
)

// checkInput checks what every trainer here needs of in: the task it fits,
// a training frame, complete finite features, targets that fit the task,
// and labels the model file can carry. Messages start with the trainer's
// name.
func checkInput(name string, in *train.Input, task train.Task) error {
	if in.Task != task {
		return fmt.Errorf("%w: %s fits %s tasks, not %q", train.ErrParam, name, task, in.Task)
	}
	if in.Train == nil || in.Train.Rows < 1 {
		return fmt.Errorf("%w: %s: no training rows", train.ErrData, name)
	}
	f := in.Train
	if f.Cols < 1 {
		return fmt.Errorf("%w: %s: the training rows have no feature columns", train.ErrData, name)
	}
	if len(f.FeatureNames) > 0 {
		if len(f.FeatureNames) != f.Cols {
			return fmt.Errorf("%w: %s: %d feature names for %d columns", train.ErrData, name, len(f.FeatureNames), f.Cols)
		}
		if err := checkLabels(name, "feature name", f.FeatureNames); err != nil {
			return err
		}
	}
	k := len(in.Classes)
	switch task {
	case train.Binary:
		if k != 2 {
			return fmt.Errorf("%w: %s: a binary task has 2 classes; got %d labels", train.ErrData, name, k)
		}
	case train.Multiclass:
		if k < 2 {
			return fmt.Errorf("%w: %s: a multiclass task needs its class labels; got %d", train.ErrData, name, k)
		}
	}
	if task != train.Regression {
		if err := checkLabels(name, "class label", in.Classes); err != nil {
			return err
		}
	}
	if err := checkFrame(name, "training", f, f.Cols, task, k); err != nil {
		return err
	}
	if in.Valid != nil {
		if in.Valid.Rows < 1 {
			return fmt.Errorf("%w: %s: the validation frame has no rows; leave Valid nil for none", train.ErrData, name)
		}
		return checkFrame(name, "validation", in.Valid, f.Cols, task, k)
	}
	return nil
}

// checkFrame checks f's shape against cols, its features for missing and
// infinite values, and its targets against the task.
func checkFrame(name, which string, f *train.Frame, cols int, task train.Task, k int) error {
	if f.Cols != cols {
		return fmt.Errorf("%w: %s: the %s rows have %d columns; the training rows have %d", train.ErrData, name, which, f.Cols, cols)
	}
	if len(f.X) != f.Rows*f.Cols || len(f.Y) != f.Rows {
		return fmt.Errorf("%w: %s: the %s frame holds %d values and %d targets for %d rows of %d columns", train.ErrData, name, which, len(f.X), len(f.Y), f.Rows, f.Cols)
	}
	for i, v := range f.X {
		switch {
		case math.IsNaN(v):
			return fmt.Errorf("%w: %s: %s has a missing value (NaN) in %s row %d; linear models need complete rows: drop or impute them first",
				train.ErrData, name, columnName(f, i%f.Cols), which, i/f.Cols)
		case math.IsInf(v, 0):
			return fmt.Errorf("%w: %s: %s is %v in %s row %d; linear models take finite values only",
				train.ErrData, name, columnName(f, i%f.Cols), v, which, i/f.Cols)
		}
	}
	for i, y := range f.Y {
		if task == train.Regression {
			if math.IsNaN(y) || math.IsInf(y, 0) {
				return fmt.Errorf("%w: %s: the target of %s row %d is %v; it must be a finite number", train.ErrData, name, which, i, y)
			}
			continue
		}
		if !(y >= 0 && y < float64(k) && y == math.Trunc(y)) {
			return fmt.Errorf("%w: %s: the target of %s row %d is %v; it must be a class index from 0 to %d", train.ErrData, name, which, i, y, k-1)
		}
	}
	return nil
}

// columnName names column j for an error: by its name when the frame has
// names.
func columnName(f *train.Frame, j int) string {
	if len(f.FeatureNames) == f.Cols {
		return fmt.Sprintf("column %q (%d)", f.FeatureNames[j], j)
	}
	return fmt.Sprintf("column %d", j)
}

// checkLabels refuses the labels the model file would refuse (empty or
// repeated) as a data error, before any training is spent on them.
func checkLabels(name, what string, labels []string) error {
	seen := make(map[string]int, len(labels))
	for i, l := range labels {
		if strings.TrimSpace(l) == "" {
			return fmt.Errorf("%w: %s: %s %d is empty", train.ErrData, name, what, i)
		}
		if j, ok := seen[l]; ok {
			return fmt.Errorf("%w: %s: %s %d, %q, repeats %s %d", train.ErrData, name, what, i, l, what, j)
		}
		seen[l] = i
	}
	return nil
}

// boolParam returns the parameter name as a bool, or def when it is not set.
// train.Params has no bool reader; JSON's true and false arrive as bools.
func boolParam(p train.Params, name string, def bool) (bool, error) {
	v, ok := p[name]
	if !ok {
		return def, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("%w: %s must be true or false, not %v", train.ErrParam, name, v)
	}
	return b, nil
}

// columnStats returns each column's mean and population standard deviation,
// with 1 in place of the deviation of a constant column, as scikit-learn's
// StandardScaler has it, so that dividing by it is harmless.
func columnStats(f *train.Frame) (mean, scale []float64) {
	n, p := f.Rows, f.Cols
	mean = make([]float64, p)
	scale = make([]float64, p)
	lo := make([]float64, p)
	hi := make([]float64, p)
	copy(lo, f.Row(0))
	copy(hi, f.Row(0))
	for i := range n {
		for j, v := range f.Row(i) {
			mean[j] += v
			lo[j], hi[j] = min(lo[j], v), max(hi[j], v)
		}
	}
	for j := range mean {
		mean[j] /= float64(n)
	}
	for i := range n {
		for j, v := range f.Row(i) {
			d := v - mean[j]
			scale[j] += d * d
		}
	}
	const eps = 0x1p-52
	for j := range scale {
		if lo[j] == hi[j] {
			// Exactly constant: the mean is the value, not a rounding of it.
			mean[j], scale[j] = lo[j], 1
			continue
		}
		v := scale[j] / float64(n)
		// scikit-learn's bound on the rounding error of the variance of a
		// column: below it the column is constant in all but rounding, and
		// dividing by its deviation would blow the rounding up.
		if bound := float64(n)*eps*v + math.Pow(float64(n)*mean[j]*eps, 2); v <= bound {
			scale[j] = 1
			continue
		}
		scale[j] = math.Sqrt(v)
	}
	return mean, scale
}

// transform returns f's features as (x − mean) / scale, row-major, computed
// exactly as the ml/linear runtime applies its scaler, or a copy of them when
// mean is nil.
func transform(f *train.Frame, mean, scale []float64) []float64 {
	z := make([]float64, len(f.X))
	if mean == nil {
		copy(z, f.X)
		return z
	}
	p := f.Cols
	for i, v := range f.X {
		z[i] = (v - mean[i%p]) / scale[i%p]
	}
	return z
}

// scaler returns the model's scaler, nil when there is none.
func scaler(mean, scale []float64) *linearfmt.Scaler {
	if mean == nil {
		return nil
	}
	return &linearfmt.Scaler{Mean: mean, Scale: scale}
}

// output encodes m, loads the encoded bytes back with ml/linear, and scores
// the validation rows (the training rows when there are none) with the
// loaded model, so the final metrics are those of the file as it will be
// served.
func output(ctx context.Context, name string, in *train.Input, m *linearfmt.Model) (*train.Output, error) {
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		return nil, fmt.Errorf("%s: encoding the fitted model: %w", name, err)
	}
	rt, err := linearfmt.Load(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return nil, fmt.Errorf("%s: loading the fitted model: %w", name, err)
	}
	eval := in.Valid
	if eval == nil {
		eval = in.Train
	}
	pred, err := predict(ctx, rt, eval)
	if err != nil {
		return nil, fmt.Errorf("%s: scoring the fitted model: %w", name, err)
	}
	return &train.Output{
		Model:   buf.Bytes(),
		Format:  ml.FormatLinear,
		Metrics: train.Evaluate(in.Task, len(in.Classes), eval.Y, pred),
	}, nil
}

// predict scores f's rows with a loaded model: one value per row, or k per
// row for a softmax model, as train.Evaluate takes them.
func predict(ctx context.Context, m ml.Model, f *train.Frame) ([]float64, error) {
	out, err := m.Predict(ctx, []ml.Tensor{{Name: linearfmt.InputName, Shape: []int{f.Rows, f.Cols}, Data: f.X}})
	if err != nil {
		return nil, err
	}
	return out[0].Data, nil
}
