package drift

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Test names.
const (
	KS            = "ks"
	PSI           = "psi"
	Wasserstein   = "wasserstein"
	Chi2          = "chi2"
	JensenShannon = "jensenshannon"
)

// NumericTests are the tests CompareNumeric runs; CategoricalTests those
// CompareCategorical runs.
var (
	NumericTests     = []string{KS, PSI, Wasserstein}
	CategoricalTests = []string{Chi2, JensenShannon}
)

// Errors, wrapped with the test, sample or category at fault.
var (
	// ErrUnknownTest is a test name this package does not know, or one of
	// the other kind (a categorical test asked of CompareNumeric).
	ErrUnknownTest = errors.New("drift: unknown test")
	// ErrBadSample is an empty or unsorted sample, or a negative or
	// non-finite category count.
	ErrBadSample = errors.New("drift: bad sample")
	// ErrBadAlpha is a significance level outside (0, 1).
	ErrBadAlpha = errors.New("drift: alpha must lie strictly between 0 and 1")
)

// psiBins is the number of equal-frequency bins CompareNumeric asks of
// PopulationStability.
const psiBins = 10

// Result of one test on one feature.
type Result struct {
	Test      string   `json:"test" msgpack:"test"`
	Statistic float64  `json:"statistic" msgpack:"statistic"`
	PValue    *float64 `json:"p_value" msgpack:"p_value"`     // nil for a test without one
	Threshold float64  `json:"threshold" msgpack:"threshold"` // the statistic above which Drift is true, for these sample sizes and alpha
	Drift     bool     `json:"drift" msgpack:"drift"`
	Reference int      `json:"reference" msgpack:"reference"` // sample sizes used
	Current   int      `json:"current" msgpack:"current"`
}

// CompareNumeric runs test (KS, PSI or Wasserstein) on two samples that are
// already sorted and clean (as SortClean returns). alpha is the significance
// level (0<alpha<1). An unknown test or an empty sample is an error naming it;
// so is a sample that is not sorted or holds NaN or an infinity (one O(n)
// pass checks, against the O(n) of the tests themselves).
func CompareNumeric(test string, ref, cur []float64, alpha float64) (Result, error) {
	if !slices.Contains(NumericTests, test) {
		return Result{}, fmt.Errorf("%w %q (numeric tests: %v)", ErrUnknownTest, test, NumericTests)
	}
	if err := checkAlpha(alpha); err != nil {
		return Result{}, err
	}
	if err := checkSorted("reference", ref); err != nil {
		return Result{}, err
	}
	if err := checkSorted("current", cur); err != nil {
		return Result{}, err
	}
	n, m := float64(len(ref)), float64(len(cur))
	r := Result{Test: test, Reference: len(ref), Current: len(cur)}
	var p float64
	switch test {
	case KS:
		r.Statistic, p = KSTwoSample(ref, cur)
		r.Threshold = math.Sqrt(-math.Log(alpha/2)/2) * math.Sqrt((n+m)/(n*m))
	case PSI:
		var bins int
		r.Statistic, bins = populationStability(ref, cur, psiBins)
		r.Threshold, p = chiSquareScaled(r.Statistic, bins-1, n*m/(n+m), alpha)
	case Wasserstein:
		r.Statistic = WassersteinDistance(ref, cur)
		r.Threshold, p = bridgeThreshold(mergeSorted(ref, cur), r.Statistic, math.Sqrt(n*m/(n+m)), alpha)
	}
	r.PValue = &p
	r.Drift = p < alpha
	return r, nil
}

// CompareCategorical runs test (Chi2 or JensenShannon) on the category
// counts of the reference and the current window (maps from category to
// count). A category missing from one map has count 0 there. Counts need
// not be whole numbers; Reference and Current are the totals, rounded.
func CompareCategorical(test string, ref, cur map[string]float64, alpha float64) (Result, error) {
	if !slices.Contains(CategoricalTests, test) {
		return Result{}, fmt.Errorf("%w %q (categorical tests: %v)", ErrUnknownTest, test, CategoricalTests)
	}
	if err := checkAlpha(alpha); err != nil {
		return Result{}, err
	}
	if err := checkCounts("reference", ref); err != nil {
		return Result{}, err
	}
	if err := checkCounts("current", cur); err != nil {
		return Result{}, err
	}
	// Sorted categories make the sums, and so the result, repeatable.
	var cats []string
	for c, v := range ref {
		if v > 0 {
			cats = append(cats, c)
		}
	}
	for c, v := range cur {
		if v > 0 && !(ref[c] > 0) {
			cats = append(cats, c)
		}
	}
	slices.Sort(cats)
	table := [2][]float64{make([]float64, len(cats)), make([]float64, len(cats))}
	var n, m float64
	for j, c := range cats {
		table[0][j], table[1][j] = ref[c], cur[c]
		n += ref[c]
		m += cur[c]
	}

	r := Result{Test: test, Reference: int(math.Round(n)), Current: int(math.Round(m))}
	var p float64
	switch test {
	case Chi2:
		var dof int
		r.Statistic, p, dof = Chi2Contingency(table)
		if dof > 0 {
			r.Threshold = chiSquareISF(alpha, dof)
		}
	case JensenShannon:
		r.Statistic = JensenShannonDistance(table[0], table[1])
		// JSD ≈ X²/(8·n·m/(n+m)) on the divergence, the square of the distance.
		scale := 8 * n * m / (n + m)
		var t2 float64
		t2, p = chiSquareScaled(r.Statistic*r.Statistic, len(cats)-1, scale, alpha)
		r.Threshold = math.Sqrt(t2)
	}
	r.PValue = &p
	r.Drift = p < alpha
	return r, nil
}

// chiSquareScaled treats stat·scale as chi-square with dof degrees of
// freedom: it returns the threshold on stat at alpha and stat's p-value.
// With no degree of freedom the statistic is 0 by construction: threshold
// 0, p-value 1.
func chiSquareScaled(stat float64, dof int, scale, alpha float64) (threshold, p float64) {
	if dof < 1 {
		return 0, 1
	}
	return chiSquareISF(alpha, dof) / scale, chiSquareSF(stat*scale, dof)
}

func checkAlpha(alpha float64) error {
	if !(alpha > 0 && alpha < 1) {
		return fmt.Errorf("%w: alpha is %v", ErrBadAlpha, alpha)
	}
	return nil
}

// checkSorted reports an empty sample, or one that is not sorted ascending
// or holds NaN or an infinity.
func checkSorted(name string, x []float64) error {
	if len(x) == 0 {
		return fmt.Errorf("%w: the %s sample is empty", ErrBadSample, name)
	}
	if math.IsInf(x[0], 0) || math.IsInf(x[len(x)-1], 0) {
		return fmt.Errorf("%w: the %s sample holds an infinity (use SortClean)", ErrBadSample, name)
	}
	for i := 1; i < len(x); i++ {
		// Also false when either is NaN.
		if !(x[i-1] <= x[i]) {
			return fmt.Errorf("%w: the %s sample is not sorted or holds NaN at index %d (use SortClean)", ErrBadSample, name, i)
		}
	}
	if math.IsNaN(x[0]) {
		return fmt.Errorf("%w: the %s sample holds NaN (use SortClean)", ErrBadSample, name)
	}
	return nil
}

// checkCounts reports a negative or non-finite count, naming its category,
// or a sample with no positive count.
func checkCounts(name string, counts map[string]float64) error {
	empty := true
	for c, v := range counts {
		if !(v >= 0) || math.IsInf(v, 1) {
			return fmt.Errorf("%w: the %s count of category %q is %v", ErrBadSample, name, c, v)
		}
		empty = empty && v == 0
	}
	if empty {
		return fmt.Errorf("%w: the %s sample is empty", ErrBadSample, name)
	}
	return nil
}
