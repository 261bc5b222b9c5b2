package linear

import (
	"context"
	"fmt"
	"math"

	linearfmt "github.com/kilnml/kiln/ml/linear"
	"github.com/kilnml/kiln/ml/train"
)

// RidgeParams are the parameters Ridge takes; see the package doc.
var RidgeParams = []string{"l2", "fit_intercept", "standardize"}

// Ridge fits a linear regression with an L2 penalty by solving its normal
// equations; see the package doc for the objective and parameters. The task
// must be train.Regression.
func Ridge(ctx context.Context, in *train.Input) (*train.Output, error) {
	const name = "ridge"
	if err := in.Params.Check(RidgeParams...); err != nil {
		return nil, err
	}
	l2, err := in.Params.Float("l2", 1, 0, math.MaxFloat64)
	if err != nil {
		return nil, err
	}
	intercept, err := boolParam(in.Params, "fit_intercept", true)
	if err != nil {
		return nil, err
	}
	standardize, err := boolParam(in.Params, "standardize", true)
	if err != nil {
		return nil, err
	}
	if err := checkInput(name, in, train.Regression); err != nil {
		return nil, err
	}
	f := in.Train
	var mean, scale []float64
	if standardize {
		mean, scale = columnStats(f)
		if !intercept {
			// A model without intercept predicts 0 at the raw origin, so the
			// scaler may scale but must not shift.
			clear(mean)
		}
	}
	w, b, err := solveRidge(ctx, in.Threads, f, transform(f, mean, scale), l2, intercept)
	if err != nil {
		return nil, err
	}
	m := &linearfmt.Model{
		Kind:         linearfmt.KindLinear,
		NFeatures:    f.Cols,
		FeatureNames: f.FeatureNames,
		Scaler:       scaler(mean, scale),
		Layers:       []linearfmt.Layer{{Weights: [][]float64{w}, Bias: []float64{b}}},
	}
	return output(ctx, name, in, m)
}

// solveRidge returns the weights and intercept minimizing
// ‖y − zw − b‖² + l2‖w‖² for z (f's rows, transformed, row-major), with b = 0
// unless intercept.
func solveRidge(ctx context.Context, threads int, f *train.Frame, z []float64, l2 float64, intercept bool) ([]float64, float64, error) {
	n, p := f.Rows, f.Cols
	// Column-major, centered when there is an intercept: the unpenalized
	// intercept is then ȳ − z̄·w, and the rest is a ridge without one.
	zbar := make([]float64, p)
	var ybar float64
	if intercept {
		for i := range n {
			for j, v := range z[i*p : (i+1)*p] {
				zbar[j] += v
			}
			ybar += f.Y[i]
		}
		for j := range zbar {
			zbar[j] /= float64(n)
		}
		ybar /= float64(n)
	}
	cols := make([]float64, n*p)
	for i := range n {
		for j, v := range z[i*p : (i+1)*p] {
			cols[j*n+i] = v - zbar[j]
		}
	}
	y := make([]float64, n)
	for i, v := range f.Y {
		y[i] = v - ybar
	}
	col := func(j int) []float64 { return cols[j*n : (j+1)*n] }

	// gram is ZᵀZ + l2·I, row-major; rhs is Zᵀy. Each entry is one dot
	// product over the rows in order, whichever goroutine computes it.
	gram := make([]float64, p*p)
	rhs := make([]float64, p)
	err := parallel(ctx, threads, p, func(j int) {
		cj := col(j)
		for k := j; k < p; k++ {
			s := dot(cj, col(k))
			gram[j*p+k], gram[k*p+j] = s, s
		}
		rhs[j] = dot(cj, y)
	})
	if err != nil {
		return nil, 0, err
	}
	for j := range p {
		if gram[j*p+j] == 0 {
			// A column of zeros (a constant column, centered) has a zero row
			// and column in ZᵀZ and a zero in Zᵀy: a 1 on the diagonal gives
			// it weight 0 and leaves the other equations as they are.
			gram[j*p+j] = 1
			continue
		}
		gram[j*p+j] += l2
	}
	w, err := choleskySolve(ctx, gram, rhs, p)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: ridge: %v; with l2 = %g the features must not be collinear (set l2 > 0, or drop the redundant column)", train.ErrData, err, l2)
	}
	b := ybar - dot(zbar, w)
	return w, b, nil
}

// choleskySolve solves a·x = b for a symmetric positive definite p×p matrix
// a (row-major, overwritten by its Cholesky factor) and returns x. It fails
// when a pivot is not clearly positive: a is singular, or nearly so.
func choleskySolve(ctx context.Context, a, b []float64, p int) ([]float64, error) {
	// Factor a = LLᵀ, L in the lower triangle, column by column.
	for j := range p {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rowJ := a[j*p : j*p+j]
		d := a[j*p+j] - dot(rowJ, rowJ)
		// A pivot at rounding-error size of its diagonal means the column is
		// a combination of the earlier ones.
		if !(d > 1e-12*a[j*p+j]) {
			return nil, fmt.Errorf("feature %d is (nearly) a linear combination of the features before it", j)
		}
		d = math.Sqrt(d)
		a[j*p+j] = d
		for i := j + 1; i < p; i++ {
			a[i*p+j] = (a[i*p+j] - dot(a[i*p:i*p+j], rowJ)) / d
		}
	}
	// Forward: L·u = b, then back: Lᵀ·x = u.
	x := make([]float64, p)
	for i := range p {
		x[i] = (b[i] - dot(a[i*p:i*p+i], x[:i])) / a[i*p+i]
	}
	for i := p - 1; i >= 0; i-- {
		s := x[i]
		for k := i + 1; k < p; k++ {
			s -= a[k*p+i] * x[k]
		}
		x[i] = s / a[i*p+i]
	}
	return x, nil
}

func dot(a, b []float64) float64 {
	var s float64
	for i, v := range a {
		s += v * b[i]
	}
	return s
}
