package drift

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
)

// scipyFile holds values computed by SciPy 1.10.1; see gen.py beside it.
const scipyFile = "../testdata/drift/scipy.json"

// sampleSpec is a sample stored in scipy.json, or the recipe gen.py used to
// make it.
type sampleSpec struct {
	Values []float64 `json:"values"`
	Gen    *struct {
		Seed    uint64 `json:"seed"`
		N       int    `json:"n"`
		Terms   int    `json:"terms"`
		Offset  int64  `json:"offset"`
		Quantum uint   `json:"quantum"`
	} `json:"gen"`
}

// sorted returns the sample, rebuilt bit for bit as gen.py built it, sorted.
func (s sampleSpec) sorted() []float64 {
	x := slices.Clone(s.Values)
	if g := s.Gen; g != nil {
		state := g.Seed
		next := func() uint64 {
			state += 0x9E3779B97F4A7C15
			z := state
			z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
			z = (z ^ (z >> 27)) * 0x94D049BB133111EB
			return z ^ (z >> 31)
		}
		for range g.N {
			var total int64
			for range g.Terms {
				total += int64(next() >> 40)
			}
			total = total >> g.Quantum << g.Quantum
			x = append(x, float64(total+g.Offset)/(1<<24))
		}
	}
	return SortClean(x)
}

type scipyData struct {
	Scipy string `json:"scipy"`
	KS    []struct {
		Name      string     `json:"name"`
		A         sampleSpec `json:"a"`
		B         sampleSpec `json:"b"`
		Mode      string     `json:"mode"`
		Statistic float64    `json:"statistic"`
		PValue    float64    `json:"pvalue"`
	} `json:"ks"`
	KSTwo []struct {
		N  int     `json:"n"`
		X  float64 `json:"x"`
		SF float64 `json:"sf"`
	} `json:"kstwo"`
	Wasserstein []struct {
		Name     string     `json:"name"`
		A        sampleSpec `json:"a"`
		B        sampleSpec `json:"b"`
		Distance float64    `json:"distance"`
	} `json:"wasserstein"`
	Chi2Contingency []struct {
		Name      string       `json:"name"`
		Table     [2][]float64 `json:"table"`
		Statistic float64      `json:"statistic"`
		PValue    float64      `json:"pvalue"`
		DOF       int          `json:"dof"`
	} `json:"chi2_contingency"`
	JensenShannon []struct {
		Name     string    `json:"name"`
		P        []float64 `json:"p"`
		Q        []float64 `json:"q"`
		Distance float64   `json:"distance"`
	} `json:"jensenshannon"`
	Chi2 []struct {
		K   int      `json:"k"`
		X   float64  `json:"x"`
		SF  *float64 `json:"sf"`
		Q   float64  `json:"q"`
		PPF *float64 `json:"ppf"`
	} `json:"chi2"`
}

func loadScipy(t *testing.T) scipyData {
	t.Helper()
	b, err := os.ReadFile(scipyFile)
	if err != nil {
		t.Fatal(err)
	}
	var d scipyData
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.Scipy != "1.10.1" {
		t.Fatalf("%s was made by SciPy %s, want 1.10.1", scipyFile, d.Scipy)
	}
	return d
}

// agree reports whether got is within a relative 1e-6 of want (so tiny
// p-values are compared on their own scale), or both are 0.
func agree(got, want float64) bool {
	if want == 0 {
		return got == 0
	}
	return math.Abs(got-want) <= 1e-6*math.Abs(want)
}

func TestKSTwoSample_MatchesScipy(t *testing.T) {
	for _, c := range loadScipy(t).KS {
		t.Run(c.Name, func(t *testing.T) {
			a, b := c.A.sorted(), c.B.sorted()
			if exact := max(len(a), len(b)) <= maxExactKS; exact != (c.Mode == "exact") {
				t.Fatalf("sizes %d, %d: scipy used %s mode", len(a), len(b), c.Mode)
			}
			d, p := KSTwoSample(a, b)
			if !agree(d, c.Statistic) || !agree(p, c.PValue) {
				t.Errorf("n=%d m=%d: D=%v p=%v, scipy D=%v p=%v", len(a), len(b), d, p, c.Statistic, c.PValue)
			}
		})
	}
}

func TestKolmogorovSF_MatchesScipy(t *testing.T) {
	for _, c := range loadScipy(t).KSTwo {
		if got := kolmogorovSF(c.N, c.X); !agree(got, c.SF) {
			t.Errorf("kstwo.sf(%v, %d) = %v, scipy %v", c.X, c.N, got, c.SF)
		}
	}
}

func TestWassersteinDistance_MatchesScipy(t *testing.T) {
	for _, c := range loadScipy(t).Wasserstein {
		t.Run(c.Name, func(t *testing.T) {
			a, b := c.A.sorted(), c.B.sorted()
			if got := WassersteinDistance(a, b); !agree(got, c.Distance) {
				t.Errorf("got %v, scipy %v", got, c.Distance)
			}
			// The distance is symmetric.
			if got := WassersteinDistance(b, a); !agree(got, c.Distance) {
				t.Errorf("swapped: got %v, scipy %v", got, c.Distance)
			}
		})
	}
}

func TestChi2Contingency_MatchesScipy(t *testing.T) {
	for _, c := range loadScipy(t).Chi2Contingency {
		t.Run(c.Name, func(t *testing.T) {
			stat, p, dof := Chi2Contingency(c.Table)
			if !agree(stat, c.Statistic) || !agree(p, c.PValue) || dof != c.DOF {
				t.Errorf("got %v, %v, %d; scipy %v, %v, %d", stat, p, dof, c.Statistic, c.PValue, c.DOF)
			}
		})
	}
}

func TestJensenShannonDistance_MatchesScipy(t *testing.T) {
	for _, c := range loadScipy(t).JensenShannon {
		t.Run(c.Name, func(t *testing.T) {
			if got := JensenShannonDistance(c.P, c.Q); !agree(got, c.Distance) {
				t.Errorf("got %v, scipy %v", got, c.Distance)
			}
		})
	}
}

func TestChiSquare_MatchesScipy(t *testing.T) {
	for _, c := range loadScipy(t).Chi2 {
		if c.SF != nil {
			if got := chiSquareSF(c.X, c.K); !agree(got, *c.SF) {
				t.Errorf("chi2.sf(%v, %d) = %v, scipy %v", c.X, c.K, got, *c.SF)
			}
		}
		if c.PPF != nil {
			if got := chiSquareISF(1-c.Q, c.K); !agree(got, *c.PPF) {
				t.Errorf("chi2.ppf(%v, %d) = %v, scipy %v", c.Q, c.K, got, *c.PPF)
			}
		}
	}
}

// The exact null distribution of D for two samples of 10: P(D ≥ h/10) is
// 2·C(20, 10-h)/C(20, 10) when 2h > 10 (Hodges 1958, eq. 2.4), so the
// two-sided 5% critical value is D = 7/10, as in Massey's (1951) table.
func TestKSTwoSample_PublishedValues(t *testing.T) {
	a := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct {
		shift float64
		d, p  float64
	}{
		{6, 0.6, 2 * 4845.0 / 184756},
		{7, 0.7, 2 * 1140.0 / 184756},
		{10, 1, 2 * 1.0 / 184756},
	} {
		b := make([]float64, len(a))
		for i, v := range a {
			b[i] = v + tc.shift
		}
		d, p := KSTwoSample(a, b)
		if d != tc.d || math.Abs(p-tc.p) > 1e-15 {
			t.Errorf("shift %v: D=%v p=%v, want D=%v p=%v", tc.shift, d, p, tc.d, tc.p)
		}
	}
	if _, p := KSTwoSample(a, []float64{7, 8, 9, 10, 11, 12, 13, 14, 15, 16}); p < 0.05 {
		t.Errorf("D = 0.6 is significant at 5%% (p = %v); Massey's critical value is 0.7", p)
	}
}

// The bridge quadrature is exact for a path constant in F or linear in F:
// the weights sum to the sample's range, and Σ w·u is ∫F.
func TestBridgeGrid_Integrates(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, n := range []int{1, 2, 7, 500, 50000} {
		x := make([]float64, n)
		for i := range x {
			x[i] = math.Round(math.Exp(2*rng.NormFloat64())*10) / 10 // heavy tail, ties
		}
		x = SortClean(x)
		us, weights := bridgeGrid(x)
		var sumW, sumWU, integral float64
		for k, w := range weights {
			sumW += w
			sumWU += w * us[k]
		}
		for i := 0; i+1 < n; i++ {
			integral += float64(i+1) / float64(n) * (x[i+1] - x[i])
		}
		if span := x[n-1] - x[0]; math.Abs(sumW-span) > 1e-9*span || math.Abs(sumWU-integral) > 1e-9*integral {
			t.Errorf("n=%d: Σw = %v, want %v; Σw·u = %v, want %v", n, sumW, span, sumWU, integral)
		}
		if us[len(us)-1] != 1 || len(us) > bridgeCells+80 {
			t.Errorf("n=%d: %d points ending at F = %v", n, len(us), us[len(us)-1])
		}
	}
}

func TestPopulationStability(t *testing.T) {
	ref := make([]float64, 100)
	for i := range ref {
		ref[i] = float64(i + 1)
	}
	// Half the current sample in the lowest decile, half in the highest:
	// the eight empty bins count as 10⁻⁴.
	cur := make([]float64, 100)
	for i := range cur {
		cur[i] = 0.5
		if i >= 50 {
			cur[i] = 95
		}
	}
	slices.Sort(cur)
	want := 2*0.4*math.Log(5) + 8*(0.1-1e-4)*math.Log(0.1/1e-4)
	if psi, bins := populationStability(ref, cur, 10); math.Abs(psi-want) > 1e-12 || bins != 10 {
		t.Errorf("PSI = %v over %d bins, want %v over 10", psi, bins, want)
	}
	if psi := PopulationStability(ref, ref, 10); psi != 0 {
		t.Errorf("PSI of a sample with itself = %v", psi)
	}

	// 70 zeros and 30 ones: the deciles are 0 or 1, the maximum; two bins.
	tied := make([]float64, 100)
	for i := 70; i < 100; i++ {
		tied[i] = 1
	}
	half := make([]float64, 100)
	for i := 50; i < 100; i++ {
		half[i] = 1
	}
	want = (0.5-0.7)*math.Log(0.5/0.7) + (0.5-0.3)*math.Log(0.5/0.3)
	if psi, bins := populationStability(tied, half, 10); math.Abs(psi-want) > 1e-12 || bins != 2 {
		t.Errorf("tied: PSI = %v over %d bins, want %v over 2", psi, bins, want)
	}
	if psi, bins := populationStability([]float64{3, 3, 3}, []float64{5, 6}, 10); psi != 0 || bins != 1 {
		t.Errorf("constant reference: PSI = %v over %d bins, want 0 over 1", psi, bins)
	}
}

func TestSortClean(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float64, 100000)
	for i := range x {
		switch i % 10 {
		case 0:
			x[i] = rng.NormFloat64() * 1e-300
		case 1:
			x[i] = float64(rng.IntN(5)) - 2 // ties, and ±0
		default:
			x[i] = rng.NormFloat64() * math.Exp(rng.NormFloat64()*20)
		}
	}
	x[3], x[5], x[7], x[9] = math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1)
	in := slices.Clone(x)
	got := SortClean(x)

	var want []float64
	for _, v := range x {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			want = append(want, v)
		}
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatal("SortClean differs from slices.Sort of the finite values")
	}
	// slices.Equal takes -0 for +0; the keys tell them apart.
	for i := 1; i < len(got); i++ {
		if floatKey(got[i-1]) > floatKey(got[i]) {
			t.Fatalf("%v sorts before %v", got[i-1], got[i])
		}
	}
	if !slices.EqualFunc(in, x, func(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }) {
		t.Error("SortClean changed its input")
	}
	for _, tc := range []struct{ in, want []float64 }{
		{nil, []float64{}},
		{[]float64{math.NaN(), math.Inf(-1)}, []float64{}},
		{[]float64{3, 3, math.NaN(), 3}, []float64{3, 3, 3}},       // every pass skipped
		{[]float64{4, 2, 1, 4, 0, 2}, []float64{0, 1, 2, 2, 4, 4}}, // low passes skipped
		{[]float64{4, -2, 1, 4, 0, -2}, []float64{-2, -2, 0, 1, 4, 4}},
	} {
		if got := SortClean(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("SortClean(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// normal returns n draws of N(mu, 1) from a fixed seed, sorted.
func normal(seed uint64, n int, mu float64) []float64 {
	rng := rand.New(rand.NewPCG(seed, seed))
	x := make([]float64, n)
	for i := range x {
		x[i] = mu + rng.NormFloat64()
	}
	return SortClean(x)
}

func TestCompareNumeric_NoDriftOnSameDistribution(t *testing.T) {
	ref, cur := normal(1, 100000, 0), normal(2, 100000, 0)
	for _, test := range NumericTests {
		r, err := CompareNumeric(test, ref, cur, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		if r.Drift {
			t.Errorf("%s: drift on samples of one distribution: %+v, p=%v", test, r, *r.PValue)
		}
	}
}

func TestCompareNumeric_DetectsSmallShift(t *testing.T) {
	if testing.Short() {
		t.Skip("a million rows")
	}
	ref, cur := normal(3, 100000, 0), normal(4, 1000000, 0.1)
	for _, test := range NumericTests {
		r, err := CompareNumeric(test, ref, cur, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Drift || r.Statistic <= r.Threshold {
			t.Errorf("%s: a shift of 0.1 sd missed: %+v", test, r)
		}
	}
}

// Under no drift each test should flag about alpha of the windows, whatever
// the distribution; a fixed cut-off would not, as it ignores the sizes.
func TestCompareNumeric_FalseAlarmRate(t *testing.T) {
	const runs, alpha = 200, 0.05
	for _, tc := range []struct {
		name string
		draw func(*rand.Rand) float64
		// KS on ties is conservative, as in scipy: it may flag none.
		tied bool
	}{
		{"normal", (*rand.Rand).NormFloat64, false},
		{"lognormal", func(r *rand.Rand) float64 { return math.Exp(1.5 * r.NormFloat64()) }, false},
		{"six values", func(r *rand.Rand) float64 { return float64(r.IntN(6)) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(11, 12))
			sample := func(n int) []float64 {
				x := make([]float64, n)
				for i := range x {
					x[i] = tc.draw(rng)
				}
				return SortClean(x)
			}
			flagged := map[string]int{}
			for range runs {
				ref, cur := sample(2000), sample(3000)
				for _, test := range NumericTests {
					r, err := CompareNumeric(test, ref, cur, alpha)
					if err != nil {
						t.Fatal(err)
					}
					if r.Drift {
						flagged[test]++
					}
				}
			}
			// 10 expected; 2..20 holds with probability above 99.9%.
			for _, test := range NumericTests {
				low := 2
				if test == KS && tc.tied {
					low = 0
				}
				if n := flagged[test]; n < low || n > 20 {
					t.Errorf("%s flagged %d of %d windows of one distribution at alpha %v", test, n, runs, alpha)
				}
			}
		})
	}
}

// KSTwoSample's D and WassersteinDistance, which walk the samples in one
// merge, against their definitions evaluated at every pooled value, on
// samples full of ties.
func TestKSTwoSample_TiesMatchDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for range 200 {
		a := make([]float64, 1+rng.IntN(30))
		b := make([]float64, 1+rng.IntN(30))
		for i := range a {
			a[i] = float64(rng.IntN(8))
		}
		for i := range b {
			b[i] = float64(rng.IntN(8)) + 0.5*float64(rng.IntN(2))
		}
		a, b = SortClean(a), SortClean(b)
		pooled := SortClean(append(slices.Clone(a), b...))
		cdf := func(x []float64, v float64) float64 {
			return float64(countAtOrBelow(x, v)) / float64(len(x))
		}
		var d, w float64
		for i, v := range pooled {
			gap := math.Abs(cdf(a, v) - cdf(b, v))
			d = max(d, gap)
			if i+1 < len(pooled) {
				w += gap * (pooled[i+1] - v)
			}
		}
		if got, _ := KSTwoSample(a, b); math.Abs(got-d) > 1e-12 {
			t.Fatalf("KS D of %v and %v = %v, want %v", a, b, got, d)
		}
		if got := WassersteinDistance(a, b); math.Abs(got-w) > 1e-12 {
			t.Fatalf("W of %v and %v = %v, want %v", a, b, got, w)
		}
	}
}

func TestCompareNumeric_Thresholds(t *testing.T) {
	ref, cur := normal(5, 4000, 0), normal(6, 1000, 0.05)
	const alpha = 0.05
	n, m := 4000.0, 1000.0
	const chi2ppf95df9 = 16.918977604620448 // scipy.stats.chi2.ppf(0.95, 9)
	for _, tc := range []struct {
		test      string
		threshold float64
	}{
		{KS, math.Sqrt(-math.Log(alpha/2)/2) * math.Sqrt((n+m)/(n*m))},
		{PSI, chi2ppf95df9 * (1/n + 1/m)},
		{Wasserstein, 0}, // checked for consistency only
	} {
		t.Run(tc.test, func(t *testing.T) {
			r, err := CompareNumeric(tc.test, ref, cur, alpha)
			if err != nil {
				t.Fatal(err)
			}
			if r.Reference != 4000 || r.Current != 1000 || r.Test != tc.test || r.PValue == nil {
				t.Errorf("result %+v", r)
			}
			if tc.threshold != 0 && math.Abs(r.Threshold-tc.threshold) > 1e-9*tc.threshold {
				t.Errorf("threshold %v, want %v", r.Threshold, tc.threshold)
			}
			if tc.test != KS && r.Drift != (r.Statistic > r.Threshold) {
				t.Errorf("drift %v but statistic %v, threshold %v", r.Drift, r.Statistic, r.Threshold)
			}
			if _, err := json.Marshal(r); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestCompareCategorical(t *testing.T) {
	ref := map[string]float64{"a": 5000, "b": 3000, "c": 2000}
	same := map[string]float64{"a": 2480, "b": 1530, "c": 990}
	moved := map[string]float64{"a": 2300, "b": 1600, "c": 1000, "new": 100}
	for _, test := range CategoricalTests {
		t.Run(test, func(t *testing.T) {
			r, err := CompareCategorical(test, ref, same, 0.05)
			if err != nil {
				t.Fatal(err)
			}
			if r.Drift || r.Reference != 10000 || r.Current != 5000 {
				t.Errorf("same proportions: %+v", r)
			}
			r, err = CompareCategorical(test, ref, moved, 0.05)
			if err != nil {
				t.Fatal(err)
			}
			if !r.Drift || r.Statistic <= r.Threshold {
				t.Errorf("moved proportions: %+v", r)
			}
		})
	}

	// Chi2 reports Chi2Contingency on the table of sorted categories.
	r, _ := CompareCategorical(Chi2, ref, moved, 0.05)
	stat, p, _ := Chi2Contingency([2][]float64{{5000, 3000, 2000, 0}, {2300, 1600, 1000, 100}})
	if r.Statistic != stat || *r.PValue != p {
		t.Errorf("chi2: %+v, want statistic %v p %v", r, stat, p)
	}
	// The JS p-value and threshold follow from JSD ≈ X²/(8nm/(n+m)).
	r, _ = CompareCategorical(JensenShannon, ref, same, 0.05)
	scale := 8 * 10000.0 * 5000 / 15000
	if want := math.Sqrt(chiSquareISF(0.05, 2) / scale); math.Abs(r.Threshold-want) > 1e-12 {
		t.Errorf("jensenshannon threshold %v, want %v", r.Threshold, want)
	}
	if want := chiSquareSF(r.Statistic*r.Statistic*scale, 2); *r.PValue != want {
		t.Errorf("jensenshannon p %v, want %v", *r.PValue, want)
	}
}

func TestCompare_Errors(t *testing.T) {
	ok := []float64{1, 2, 3}
	numeric := []struct {
		name, test string
		ref, cur   []float64
		alpha      float64
		want       error
		mention    string
	}{
		{"unknown test", "anderson", ok, ok, 0.05, ErrUnknownTest, `"anderson"`},
		{"categorical test", Chi2, ok, ok, 0.05, ErrUnknownTest, `"chi2"`},
		{"empty reference", KS, nil, ok, 0.05, ErrBadSample, "reference"},
		{"empty current", PSI, ok, nil, 0.05, ErrBadSample, "current"},
		{"unsorted", Wasserstein, ok, []float64{2, 1}, 0.05, ErrBadSample, "current"},
		{"NaN", KS, []float64{1, math.NaN()}, ok, 0.05, ErrBadSample, "reference"},
		{"lone NaN", KS, ok, []float64{math.NaN()}, 0.05, ErrBadSample, "current"},
		{"infinity", KS, ok, []float64{1, math.Inf(1)}, 0.05, ErrBadSample, "current"},
		{"alpha 0", KS, ok, ok, 0, ErrBadAlpha, "alpha"},
		{"alpha 1", KS, ok, ok, 1, ErrBadAlpha, "alpha"},
		{"alpha NaN", KS, ok, ok, math.NaN(), ErrBadAlpha, "alpha"},
	}
	for _, tc := range numeric {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CompareNumeric(tc.test, tc.ref, tc.cur, tc.alpha)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %v, want %v naming %s", err, tc.want, tc.mention)
			}
		})
	}

	counts := map[string]float64{"x": 3}
	categorical := []struct {
		name, test string
		ref, cur   map[string]float64
		want       error
		mention    string
	}{
		{"numeric test", KS, counts, counts, ErrUnknownTest, `"ks"`},
		{"negative count", Chi2, counts, map[string]float64{"y": -1}, ErrBadSample, `current count of category "y"`},
		{"NaN count", JensenShannon, map[string]float64{"z": math.NaN()}, counts, ErrBadSample, `"z"`},
		{"empty reference", Chi2, map[string]float64{"x": 0}, counts, ErrBadSample, "reference"},
		{"empty current", JensenShannon, counts, nil, ErrBadSample, "current"},
	}
	for _, tc := range categorical {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CompareCategorical(tc.test, tc.ref, tc.cur, 0.05)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %v, want %v naming %s", err, tc.want, tc.mention)
			}
		})
	}
}

// BenchmarkDrift_1Mx20 is one monitoring pass over 20 numeric features:
// each current window of a million unsorted rows is cleaned and sorted, then
// compared with its sorted reference of 100,000 rows by KS, Wasserstein and
// PSI, one feature after another.
func BenchmarkDrift_1Mx20(b *testing.B) {
	const features = 20
	refs := make([][]float64, features)
	curs := make([][]float64, features)
	rng := rand.New(rand.NewPCG(7, 8))
	for f := range features {
		refs[f] = normal(uint64(1000+f), 100000, 0)
		curs[f] = make([]float64, 1000000)
		for i := range curs[f] {
			curs[f][i] = rng.NormFloat64() + 0.01*float64(f)
		}
	}
	b.ResetTimer()
	for range b.N {
		for f := range features {
			cur := SortClean(curs[f])
			for _, test := range NumericTests {
				if _, err := CompareNumeric(test, refs[f], cur, 0.05); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}

func BenchmarkSortClean_1M(b *testing.B) {
	rng := rand.New(rand.NewPCG(9, 10))
	x := make([]float64, 1000000)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	b.ResetTimer()
	for range b.N {
		SortClean(x)
	}
}
