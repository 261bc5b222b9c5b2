package drift

import (
	"math"
	"math/rand/v2"
	"sort"
)

// WassersteinDistance returns the 1-Wasserstein distance between the
// empirical distributions of two sorted samples, ∫|F(x) - G(x)| dx, as
// scipy.stats.wasserstein_distance: one merge, O(n+m). An empty sample
// gives NaN.
func WassersteinDistance(ref, cur []float64) float64 {
	n, m := len(ref), len(cur)
	if n == 0 || m == 0 {
		return math.NaN()
	}
	// Between consecutive pooled values the CDF gap is |i·m - j·n|/(n·m),
	// i and j the counts of ref and cur values at or below the lower one.
	// The walk goes by ref's values, running through cur's between them in
	// an inner loop.
	nm, mm := int64(n), int64(m)
	gap := func(i, j int64) float64 {
		d := i*mm - j*nm
		return float64(max(d, -d))
	}
	area := 0.0
	x := min(ref[0], cur[0])
	var i, j int64
	for i < nm {
		v := ref[i]
		for j < mm && cur[j] < v {
			area += gap(i, j) * (cur[j] - x)
			x = cur[j]
			j++
		}
		area += gap(i, j) * (v - x)
		x = v
		for i < nm && ref[i] == v {
			i++
		}
		for j < mm && cur[j] == v {
			j++
		}
	}
	for ; j < mm; j++ {
		area += gap(i, j) * (cur[j] - x)
		x = cur[j]
	}
	return area / (float64(n) * float64(m))
}

// The Monte Carlo null distribution of the Wasserstein distance: bridges
// drawn, and the number of equal-frequency cells in the bulk of the grid
// they are evaluated on. The seed is fixed so that the same samples give the
// same Result.
const (
	bridgeDraws = 2000
	bridgeCells = 200
	bridgeSeed  = 0x6b696c6e // "kiln"
)

// bridgeThreshold returns the threshold on the Wasserstein distance at level
// alpha, and the p-value of distance w, for samples of n and m values from
// one distribution, estimated by the sorted sample pooled; scale is
// √(n·m/(n+m)).
//
// Under no drift scale·W tends to ∫|B(F(x))| dx, B a Brownian bridge and F
// the common CDF (del Barrio, Giné, Matrán 1999). That integral is drawn
// bridgeDraws times on the grid of bridgeGrid. The p-value is the share of
// draws at or above scale·w, so its resolution is 1/bridgeDraws; the
// threshold is the draw above which that share falls below alpha.
func bridgeThreshold(pooled []float64, w, scale, alpha float64) (threshold, p float64) {
	us, weights := bridgeGrid(pooled)
	// sd[k] is the standard deviation of W(u_k) - W(u_{k-1}), W a Brownian
	// motion; us ends at 1, so the last point of a path is W(1).
	sd := make([]float64, len(us))
	prevU := 0.0
	for k, u := range us {
		sd[k] = math.Sqrt(u - prevU)
		prevU = u
	}
	rng := rand.New(rand.NewPCG(bridgeSeed, bridgeSeed))
	path := make([]float64, len(us))
	draws := make([]float64, bridgeDraws)
	for d := range draws {
		acc := 0.0
		for k, s := range sd {
			acc += s * rng.NormFloat64()
			path[k] = acc
		}
		w1 := path[len(path)-1]
		integral := 0.0
		for k, wk := range weights {
			integral += wk * math.Abs(path[k]-us[k]*w1)
		}
		draws[d] = integral
	}
	sort.Float64s(draws)
	above := bridgeDraws - sort.SearchFloat64s(draws, scale*w)
	// p < alpha exactly when at most c draws lie at or above scale·w.
	c := int(math.Ceil(alpha*bridgeDraws)) - 1
	return draws[bridgeDraws-c-1] / scale, float64(above) / bridgeDraws
}

// bridgeGrid returns points u_k of the sorted sample x's CDF F, ending at 1,
// and weights such that ∫|B(F(x))| dx ≈ Σ weights[k]·|B(u_k)| for any path B.
//
// The points are F at a grid of x's values: every value at the ends, then
// steps growing by a quarter of the distance to the nearer end, up to cells
// of n/bridgeCells values in the bulk: some 50 points more than
// bridgeCells for 100,000 values, 70 for a million. The tails need the fine steps: there |B| shrinks like
// √(u(1-u)) while the gaps between values may grow without bound. Between
// two points |B| is taken as linear in F, and each cell's length shared
// between its ends by the mean of F over it, computed exactly from x; so a
// cell holding a single step of F, where F is constant, is exact.
func bridgeGrid(x []float64) (us, weights []float64) {
	n := len(x)
	maxStep := max(1, n/bridgeCells)
	var idx []int
	for i := 0; ; {
		idx = append(idx, i)
		if i == n-1 {
			break
		}
		step := min(max(min(i+1, n-1-i)/4, 1), maxStep)
		i = min(i+step, n-1)
	}
	// Between distinct grid values xs[k-1] and xs[k], areas[k] is ∫F over
	// the cell, F being (i+1)/n from x[i] to x[i+1]. Grid values repeated
	// by ties enclose no area.
	var xs, areas []float64
	area := 0.0 // n·∫F since the last grid value
	for k, i := range idx {
		if k > 0 {
			for j := idx[k-1]; j < i; j++ {
				area += float64(j+1) * (x[j+1] - x[j])
			}
		}
		if k > 0 && x[i] == xs[len(xs)-1] {
			continue
		}
		xs = append(xs, x[i])
		areas = append(areas, area/float64(n))
		us = append(us, float64(countAtOrBelow(x, x[i]))/float64(n))
		area = 0
	}
	weights = make([]float64, len(us))
	for k := 1; k < len(us); k++ {
		length := xs[k] - xs[k-1]
		// F's mean over the cell is us[k-1] + upper/length·(us[k]-us[k-1]).
		upper := (areas[k] - us[k-1]*length) / (us[k] - us[k-1])
		upper = min(max(upper, 0), length)
		weights[k-1] += length - upper
		weights[k] += upper
	}
	return us, weights
}

// mergeSorted returns the sorted values of sorted a and b together.
func mergeSorted(a, b []float64) []float64 {
	out := make([]float64, 0, len(a)+len(b))
	j := 0
	for _, v := range a {
		k := j
		for k < len(b) && b[k] < v {
			k++
		}
		out = append(append(out, b[j:k]...), v)
		j = k
	}
	return append(out, b[j:]...)
}

// countAtOrBelow is the number of values of sorted x that are ≤ v.
func countAtOrBelow(x []float64, v float64) int {
	return sort.Search(len(x), func(i int) bool { return x[i] > v })
}
