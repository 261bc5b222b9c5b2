package drift

import "math"

// psiFloor is the smallest share PopulationStability gives a bin: an empty
// bin would make its logarithm infinite. 10⁻⁴ is Evidently's choice; a bin
// holding less than that share of both samples adds nothing.
const psiFloor = 1e-4

// PopulationStability returns the population stability index of two sorted
// samples, Σ (c_i - r_i)·ln(c_i/r_i) over bins, r_i and c_i the shares of
// the reference and the current sample in bin i, each raised to at least
// 10⁻⁴ so that an empty bin counts as nearly empty.
//
// The bins are equal-frequency in the reference: right-closed, with edges at
// its j/bins quantiles (the order statistic ⌈j·n/bins⌉), j = 1..bins-1.
// Repeated edges, and an edge at the reference's maximum, are dropped, so
// with ties there are fewer bins but every one holds reference values; the
// outer bins reach to ±∞. A constant reference has a single bin and a PSI of
// 0, whatever the current sample: KS and Wasserstein see that change. An
// empty sample gives NaN.
func PopulationStability(ref, cur []float64, bins int) float64 {
	psi, _ := populationStability(ref, cur, bins)
	return psi
}

// populationStability also returns the number of bins used.
func populationStability(ref, cur []float64, bins int) (float64, int) {
	n, m := len(ref), len(cur)
	if n == 0 || m == 0 {
		return math.NaN(), 0
	}
	var edges []float64
	for j := 1; j < bins; j++ {
		e := ref[(j*n+bins-1)/bins-1]
		if e < ref[n-1] && (len(edges) == 0 || e > edges[len(edges)-1]) {
			edges = append(edges, e)
		}
	}
	psi := 0.0
	add := func(refCount, curCount int) {
		r := max(float64(refCount)/float64(n), psiFloor)
		c := max(float64(curCount)/float64(m), psiFloor)
		psi += (c - r) * math.Log(c/r)
	}
	refBelow, curBelow := 0, 0
	for _, e := range edges {
		r, c := countAtOrBelow(ref, e), countAtOrBelow(cur, e)
		add(r-refBelow, c-curBelow)
		refBelow, curBelow = r, c
	}
	add(n-refBelow, m-curBelow)
	return psi, len(edges) + 1
}
