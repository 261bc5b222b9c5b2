// Package train is the contract between Kiln's built-in trainers and the
// node that runs them: the data a trainer gets (Frame, Input), what it gives
// back (Output), its step metrics (Point), its parameters (Params), and the
// final metrics every trainer reports (Evaluate). It is pure computation: no
// files, no network. Each algorithm lives in its own package (linear models
// in ml/train/linear, gradient-boosted trees in ml/train/gbdt); package
// ml/train/algorithms names them.
package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Task is what a model predicts.
type Task string

// The tasks.
const (
	// Regression predicts a number.
	Regression Task = "regression"
	// Binary predicts the probability of class 1 of two.
	Binary Task = "binary"
	// Multiclass predicts a probability for each of K > 2 classes.
	Multiclass Task = "multiclass"
)

// Frame is a dense numeric table: Rows rows of Cols features, row-major in X,
// with NaN for a missing value, and the target of each row in Y. For a
// classification task Y holds the class index (0 to K-1) as a float64.
type Frame struct {
	Rows, Cols   int
	X            []float64
	Y            []float64
	FeatureNames []string
}

// Row returns row i's features.
func (f *Frame) Row(i int) []float64 { return f.X[i*f.Cols : (i+1)*f.Cols] }

// Subset returns a new frame of the given rows, in that order.
func (f *Frame) Subset(rows []int) *Frame {
	out := &Frame{Rows: len(rows), Cols: f.Cols, X: make([]float64, 0, len(rows)*f.Cols), Y: make([]float64, len(rows)), FeatureNames: f.FeatureNames}
	for i, r := range rows {
		out.X = append(out.X, f.Row(r)...)
		out.Y[i] = f.Y[r]
	}
	return out
}

// Point is one step metric: the loss after an epoch or a tree, on the
// training or the validation rows ("train_logloss", "valid_rmse").
type Point struct {
	Step  int
	Name  string
	Value float64
}

// Input is everything a trainer is given.
type Input struct {
	Task Task
	// Classes labels a classifier's classes, index i for Y == i; its length
	// is K (2 for Binary). Nil for Regression.
	Classes []string
	Train   *Frame
	// Valid, when set, is scored after every step and decides early stopping.
	Valid  *Frame
	Params Params
	// Threads is how many goroutines the trainer may keep busy (the cores
	// its allocation grants); at least 1.
	Threads int
	// Seed makes sampling repeatable.
	Seed uint64
	// Report receives step metrics as they are computed; it may be nil.
	Report func(Point)
}

// Output is a trained model.
type Output struct {
	// Model is the model file, in Format (an ml format name: "linear",
	// "xgboost-json").
	Model  []byte
	Format string
	// Metrics are the final metrics (Evaluate) on Valid, or on Train when
	// there is no validation set, keyed as Evaluate keys them.
	Metrics map[string]float64
}

// Trainer fits a model. It returns ctx.Err() soon after ctx is done, and an
// error wrapping ErrParam for a parameter it does not take or a value out
// of range.
type Trainer func(ctx context.Context, in *Input) (*Output, error)

// ErrParam is wrapped by errors about a trainer's parameters.
var ErrParam = errors.New("train: bad parameter")

// ErrData is wrapped by errors about the data (no rows, a target that does
// not fit the task).
var ErrData = errors.New("train: bad data")

// Params are a job's parameters as they come from JSON: numbers are
// float64, and a value may also be a string or a bool.
type Params map[string]any

// Check returns an error wrapping ErrParam naming the first parameter (in
// sorted order) that is not in known.
func (p Params) Check(known ...string) error {
	var unknown []string
	for k := range p {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return fmt.Errorf("%w: unknown parameter %q; this algorithm takes %v", ErrParam, unknown[0], known)
}

// Float returns the parameter name as a number in [lo, hi], or def when it
// is not set.
func (p Params) Float(name string, def, lo, hi float64) (float64, error) {
	v, ok := p[name]
	if !ok {
		return def, nil
	}
	f, ok := v.(float64)
	if !ok {
		if i, isInt := v.(int); isInt {
			f, ok = float64(i), true
		}
	}
	if !ok || math.IsNaN(f) || f < lo || f > hi {
		return 0, fmt.Errorf("%w: %s must be a number from %g to %g, not %v", ErrParam, name, lo, hi, v)
	}
	return f, nil
}

// Int returns the parameter name as an integer in [lo, hi], or def.
func (p Params) Int(name string, def, lo, hi int) (int, error) {
	v, ok := p[name]
	if !ok {
		return def, nil
	}
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case int:
		f = float64(x)
	default:
		return 0, fmt.Errorf("%w: %s must be an integer from %d to %d, not %v", ErrParam, name, lo, hi, v)
	}
	if f != math.Trunc(f) || f < float64(lo) || f > float64(hi) {
		return 0, fmt.Errorf("%w: %s must be an integer from %d to %d, not %v", ErrParam, name, lo, hi, v)
	}
	return int(f), nil
}

// String returns the parameter name as one of allowed, or def.
func (p Params) String(name, def string, allowed ...string) (string, error) {
	v, ok := p[name]
	if !ok {
		return def, nil
	}
	s, isStr := v.(string)
	for _, a := range allowed {
		if isStr && s == a {
			return s, nil
		}
	}
	return "", fmt.Errorf("%w: %s must be one of %v, not %v", ErrParam, name, allowed, v)
}
