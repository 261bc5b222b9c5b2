package drift

import "math"

// Chi2Contingency returns Pearson's chi-square statistic of homogeneity for
// a table of two rows of counts, its p-value and its degrees of freedom, as
// scipy.stats.chi2_contingency with its default correction=True: Yates'
// continuity correction (each count moved toward its expected value by at
// most 0.5) when there is one degree of freedom. Columns where both rows are
// 0 are dropped first (scipy would reject their zero expected counts). With
// one column left there is no degree of freedom: statistic 0, p-value 1. A
// row with no counts gives NaN. Rows of different lengths make it panic.
func Chi2Contingency(table [2][]float64) (stat, p float64, dof int) {
	if len(table[0]) != len(table[1]) {
		panic("drift: Chi2Contingency rows differ in length")
	}
	var obs [2][]float64
	var rows [2]float64
	var cols []float64
	for j := range table[0] {
		a, b := table[0][j], table[1][j]
		if a == 0 && b == 0 {
			continue
		}
		obs[0], obs[1] = append(obs[0], a), append(obs[1], b)
		cols = append(cols, a+b)
		rows[0] += a
		rows[1] += b
	}
	if rows[0] == 0 || rows[1] == 0 {
		return math.NaN(), math.NaN(), 0
	}
	dof = len(cols) - 1
	if dof == 0 {
		return 0, 1, 0
	}
	total := rows[0] + rows[1]
	for i, row := range obs {
		for j, o := range row {
			e := rows[i] * cols[j] / total
			if dof == 1 {
				o += math.Copysign(min(0.5, math.Abs(e-o)), e-o)
			}
			stat += (o - e) * (o - e) / e
		}
	}
	return stat, chiSquareSF(stat, dof), dof
}

// JensenShannonDistance returns the Jensen-Shannon distance between two
// discrete distributions given as non-negative weights over the same
// categories, as scipy.spatial.distance.jensenshannon: each is normalised to
// sum to 1, and the distance is the square root of the divergence
// ½KL(p‖m) + ½KL(q‖m), m = (p+q)/2, in natural logarithms. It lies in
// [0, √ln 2]. Weights that sum to 0 give NaN; p and q of different
// lengths make it panic.
func JensenShannonDistance(p, q []float64) float64 {
	if len(p) != len(q) {
		panic("drift: JensenShannonDistance lengths differ")
	}
	var sp, sq float64
	for i := range p {
		sp += p[i]
		sq += q[i]
	}
	js := 0.0
	for i := range p {
		a, b := p[i]/sp, q[i]/sq
		m := (a + b) / 2
		js += relEntropy(a, m) + relEntropy(b, m)
	}
	return math.Sqrt(js / 2)
}

// relEntropy is x·ln(x/y), 0 where x is 0.
func relEntropy(x, y float64) float64 {
	if x == 0 {
		return 0
	}
	return x * math.Log(x/y)
}
