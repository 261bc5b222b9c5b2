package linear

import (
	"context"
	"math"
)

// lbfgsMemory is how many correction pairs L-BFGS keeps, as in scipy's and
// scikit-learn's defaults.
const lbfgsMemory = 10

// objective computes f(x) and its gradient into grad. It returns loss, the
// part of f worth reporting (the data term), and an error only for a done
// context.
type objective func(x, grad []float64) (f, loss float64, err error)

// lbfgsSettings say when minimize stops and what it does after each
// iteration.
type lbfgsSettings struct {
	maxIter int
	tol     float64
	// after is called after iteration iter (from 1) with the loss at the new
	// point; an error from it stops the search and is returned.
	after func(iter int, loss float64) error
}

// minimize runs L-BFGS on fn from x, which it updates in place, and returns
// the number of iterations done. A line search that cannot lower f ends the
// search where it is: at a minimum to within rounding.
func minimize(ctx context.Context, fn objective, x []float64, set lbfgsSettings) (int, error) {
	n := len(x)
	g := make([]float64, n)
	f, _, err := fn(x, g)
	if err != nil {
		return 0, err
	}
	var (
		s, y  [][]float64 // the last corrections, oldest first
		rho   []float64   // 1 / (yᵀs) of each
		alpha = make([]float64, lbfgsMemory)
		d     = make([]float64, n)
		xNew  = make([]float64, n)
		gNew  = make([]float64, n)
		iter  int
	)
	for iter = 1; iter <= set.maxIter; iter++ {
		if err := ctx.Err(); err != nil {
			return iter - 1, err
		}
		if maxAbs(g) <= set.tol {
			return iter - 1, nil
		}
		// Two-loop recursion: d = −H·g, with H the L-BFGS inverse Hessian.
		for i := range d {
			d[i] = -g[i]
		}
		for i := len(s) - 1; i >= 0; i-- {
			alpha[i] = rho[i] * dot(s[i], d)
			axpy(-alpha[i], y[i], d)
		}
		if m := len(s); m > 0 {
			scale(dot(s[m-1], y[m-1])/dot(y[m-1], y[m-1]), d)
		}
		for i := range s {
			beta := rho[i] * dot(y[i], d)
			axpy(alpha[i]-beta, s[i], d)
		}
		slope := dot(g, d)
		if !(slope < 0) {
			// Not a descent direction (rounding in the history): start
			// afresh from steepest descent.
			s, y, rho = s[:0], y[:0], rho[:0]
			for i := range d {
				d[i] = -g[i]
			}
			slope = -dot(g, g)
		}
		// The quasi-Newton step is scaled right once there is history; a
		// steepest-descent step is first tried at unit length at most.
		step := 1.0
		if len(s) == 0 {
			step = 1 / math.Max(1, math.Sqrt(-slope))
		}
		var fNew, loss float64
		accepted := false
		for range 40 { // backtracking to the Armijo condition
			for i := range x {
				xNew[i] = x[i] + step*d[i]
			}
			fNew, loss, err = fn(xNew, gNew)
			if err != nil {
				return iter - 1, err
			}
			if fNew <= f+1e-4*step*slope {
				accepted = true
				break
			}
			// Minimum of the quadratic through f, the slope and fNew, kept
			// within [0.1, 0.5] of the step.
			q := -slope * step * step / (2 * (fNew - f - slope*step))
			if math.IsNaN(q) || math.IsInf(q, 0) {
				q = step / 2
			}
			step = min(max(q, 0.1*step), 0.5*step)
		}
		if !accepted {
			return iter - 1, nil
		}
		// Keep the correction pair when the curvature is positive; a convex
		// objective gives that bar rounding.
		sNew := make([]float64, n)
		yNew := make([]float64, n)
		for i := range x {
			sNew[i] = xNew[i] - x[i]
			yNew[i] = gNew[i] - g[i]
		}
		if sy := dot(sNew, yNew); sy > 1e-10*dot(yNew, yNew) {
			if len(s) == lbfgsMemory {
				s, y, rho = s[1:], y[1:], rho[1:]
			}
			s, y, rho = append(s, sNew), append(y, yNew), append(rho, 1/sy)
		}
		fPrev := f
		copy(x, xNew)
		copy(g, gNew)
		f = fNew
		if set.after != nil {
			if err := set.after(iter, loss); err != nil {
				return iter, err
			}
		}
		if fPrev-f <= set.tol*math.Max(1, math.Max(math.Abs(fPrev), math.Abs(f))) {
			return iter, nil
		}
	}
	return set.maxIter, nil
}

func maxAbs(v []float64) float64 {
	var m float64
	for _, x := range v {
		m = max(m, math.Abs(x))
	}
	return m
}

// axpy adds a·x to y.
func axpy(a float64, x, y []float64) {
	for i, v := range x {
		y[i] += a * v
	}
}

func scale(a float64, x []float64) {
	for i := range x {
		x[i] *= a
	}
}
