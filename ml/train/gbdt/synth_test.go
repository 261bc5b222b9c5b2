package gbdt

import (
	"math"
	"math/rand/v2"

	"github.com/kilnml/kiln/ml/train"
)

// synthBinary returns a deterministic binary dataset of n rows and cols
// features (cols >= 12), the one the comparison with XGBoost uses: features
// of several kinds (normal, uniform, skewed, small integers, a few
// correlated ones), about 5% missing values in four features (missingness
// itself carries signal in one of them), and a label drawn from the
// sigmoid of a nonlinear score with interactions, so it is noisy: no model
// reaches an AUC of 1.
func synthBinary(n, cols int, seed uint64) *train.Frame {
	rng := rand.New(rand.NewPCG(seed, 1))
	f := &train.Frame{Rows: n, Cols: cols, X: make([]float64, n*cols), Y: make([]float64, n)}
	for r := range n {
		x := f.X[r*cols : (r+1)*cols]
		for j := range x {
			switch j % 4 {
			case 0:
				x[j] = rng.NormFloat64()
			case 1:
				x[j] = rng.Float64()*4 - 2
			case 2:
				x[j] = rng.ExpFloat64()
			default:
				x[j] = float64(rng.IntN(6))
			}
		}
		x[10] = 0.7*x[0] + 0.3*rng.NormFloat64() // correlated with x0
		score := 1.2*math.Sin(1.5*x[0]*x[1]) +
			0.8*(x[2]-1) +
			0.6*float64(int(x[3])%3-1)*x[4] +
			0.9*math.Tanh(x[5]*x[6]) +
			0.5*x[8]*boolf(x[9] > 0) -
			0.4*math.Abs(x[10]) +
			0.3*x[11]
		// Missing values: x2 is missing for 5% of rows, and those rows lean
		// positive; x5, x7 and x9 miss at random.
		if rng.Float64() < 0.05 {
			x[2] = math.NaN()
			score += 1
		}
		for _, j := range []int{5, 7, 9} {
			if rng.Float64() < 0.05 {
				x[j] = math.NaN()
			}
		}
		if rng.Float64() < 1/(1+math.Exp(-score)) {
			f.Y[r] = 1
		}
	}
	return f
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// synthRegression returns n rows of y = sin(2 x0) + x1*x2 + 0.5 x3² plus
// noise of standard deviation noise, with cols >= 4 features uniform in
// [-1.5, 1.5] (the rest are distractors).
func synthRegression(n, cols int, noise float64, seed uint64) *train.Frame {
	rng := rand.New(rand.NewPCG(seed, 2))
	f := &train.Frame{Rows: n, Cols: cols, X: make([]float64, n*cols), Y: make([]float64, n)}
	for r := range n {
		x := f.X[r*cols : (r+1)*cols]
		for j := range x {
			x[j] = rng.Float64()*3 - 1.5
		}
		f.Y[r] = math.Sin(2*x[0]) + x[1]*x[2] + 0.5*x[3]*x[3] + noise*rng.NormFloat64()
	}
	return f
}

// synthMulticlass returns n rows of k <= 4 classes over cols >= 4 normal
// features: the class is the quadrant of (x0 + 0.5 sin(2 x2), x1 - 0.3 x3²
// + 0.3), folded onto k classes, with 5% of labels drawn at random.
func synthMulticlass(n, cols, k int, seed uint64) *train.Frame {
	rng := rand.New(rand.NewPCG(seed, 3))
	f := &train.Frame{Rows: n, Cols: cols, X: make([]float64, n*cols), Y: make([]float64, n)}
	for r := range n {
		x := f.X[r*cols : (r+1)*cols]
		for j := range x {
			x[j] = rng.NormFloat64()
		}
		a, b := x[0]+0.5*math.Sin(2*x[2]) > 0, x[1]-0.3*x[3]*x[3]+0.3 > 0
		c := 2*int(boolf(a)) + int(boolf(b))
		if rng.Float64() < 0.05 {
			c = rng.IntN(k)
		}
		f.Y[r] = float64(c % k)
	}
	return f
}

// splitFrame returns the first frac of fr's rows and the rest.
func splitFrame(fr *train.Frame, frac float64) (*train.Frame, *train.Frame) {
	cut := int(float64(fr.Rows) * frac)
	a, b := make([]int, cut), make([]int, fr.Rows-cut)
	for i := range a {
		a[i] = i
	}
	for i := range b {
		b[i] = cut + i
	}
	return fr.Subset(a), fr.Subset(b)
}
