package stats

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol*math.Max(1, math.Abs(b)) }

// Count, nulls, min, max, mean and std are exact; NaN and infinities are
// nulls.
func TestNumeric_Moments(t *testing.T) {
	n := NewNumeric(0, 0, 1)
	for _, x := range []float64{2, 4, 4, 4, 5, 5, 7, 9, math.NaN(), math.Inf(1)} {
		n.Add(x)
	}
	n.AddNull()
	s := n.Result()
	if s.Count != 8 || s.Nulls != 3 || s.Min != 2 || s.Max != 9 || s.Mean != 5 || s.Std != 2 {
		t.Fatalf("stats = %+v, want count 8, nulls 3, min 2, max 9, mean 5, std 2", s)
	}
	var total int64
	for _, c := range s.Histogram.Counts {
		total += c
	}
	if total != 8 {
		t.Fatalf("histogram holds %d values, want 8: %+v", total, s.Histogram)
	}
}

// Welford's update keeps the variance of values far from zero exact enough,
// where the naive sum of squares would lose it.
func TestNumeric_StdOfLargeValues(t *testing.T) {
	n := NewNumeric(0, 0, 1)
	for i := range 100000 {
		n.Add(1e9 + float64(i%2)) // alternating 1e9 and 1e9+1: std 0.5
	}
	if s := n.Result(); !near(s.Std, 0.5, 1e-9) || !near(s.Mean, 1e9+0.5, 1e-12) {
		t.Fatalf("std %v mean %v, want 0.5 and 1e9+0.5", s.Std, s.Mean)
	}
}

// The sketch's quantiles are within 1% of rank of the exact ones, for
// several distributions and sizes, in bounded memory.
func TestNumeric_Quantiles(t *testing.T) {
	gens := map[string]func(r *rand.Rand) float64{
		"uniform":     func(r *rand.Rand) float64 { return r.Float64() },
		"normal":      func(r *rand.Rand) float64 { return r.NormFloat64()*10 + 3 },
		"exponential": func(r *rand.Rand) float64 { return r.ExpFloat64() },
		"sorted":      nil, // ascending 0..n-1: the adversarial order for compaction
	}
	for name, gen := range gens {
		for _, size := range []int{100, 10000, 300000} {
			t.Run(fmt.Sprintf("%s/%d", name, size), func(t *testing.T) {
				r := rand.New(rand.NewPCG(7, 11))
				n := NewNumeric(0, 0, 42)
				xs := make([]float64, size)
				for i := range xs {
					if gen == nil {
						xs[i] = float64(i)
					} else {
						xs[i] = gen(r)
					}
					n.Add(xs[i])
				}
				sorted := slices.Clone(xs)
				slices.Sort(sorted)
				for _, q := range n.Result().Quantiles {
					// The share of the values at or below the reported one.
					rank := float64(sort.Search(size, func(i int) bool { return sorted[i] > q.Value })) / float64(size)
					if math.Abs(rank-q.Q) > 0.01 {
						t.Errorf("q%.2f = %v has rank %.4f, more than 1%% off", q.Q, q.Value, rank)
					}
				}
				if held := n.sketch.size(); held > 3*DefaultSketchK+int(4*math.Log2(float64(size))) {
					t.Errorf("the sketch holds %d items for %d values", held, size)
				}
			})
		}
	}
}

// The same rows give the same quantiles: compaction offsets are seeded.
func TestNumeric_Repeatable(t *testing.T) {
	run := func() []Quantile {
		n := NewNumeric(32, 0, 5)
		for i := range 50000 {
			n.Add(float64((i * 7919) % 50000))
		}
		return n.Result().Quantiles
	}
	if a, b := run(), run(); !slices.Equal(a, b) {
		t.Fatalf("two passes over the same rows: %v and %v", a, b)
	}
}

// The histogram's counts are exact (but for a value on an edge), its range
// covers [min, max] and is at most about four times as wide, whatever order
// the values come in.
func TestNumeric_Histogram(t *testing.T) {
	cases := map[string][]float64{
		"ascending":  seq(0, 1000, 1),
		"descending": seq(1000, 0, -1),
		"outliers":   append(seq(0, 100, 1), -1e6, 1e6),
		"negative":   seq(-50, -10, 0.5),
		"two values": {3, 8, 3, 8, 8},
		"tiny range": {1, 1 + 1e-12, 1 + 2e-12},
	}
	for name, xs := range cases {
		t.Run(name, func(t *testing.T) {
			n := NewNumeric(0, 10, 1)
			for _, x := range xs {
				n.Add(x)
			}
			h := n.Result().Histogram
			lo, hi := slices.Min(xs), slices.Max(xs)
			if len(h.Edges) != len(h.Counts)+1 || len(h.Counts) != 10 {
				t.Fatalf("%d edges for %d counts, want 11 and 10", len(h.Edges), len(h.Counts))
			}
			first, last := h.Edges[0], h.Edges[len(h.Edges)-1]
			if first > lo || last < hi {
				t.Fatalf("range [%v, %v] does not cover [%v, %v]", first, last, lo, hi)
			}
			if hi > lo && last-first > 4.5*(hi-lo) {
				t.Fatalf("range [%v, %v] is over four times as wide as [%v, %v]", first, last, lo, hi)
			}
			// Every value is counted in the bin its edges say.
			want := make([]int64, len(h.Counts))
			for _, x := range xs {
				i := sort.SearchFloat64s(h.Edges, x)
				if i == len(h.Edges) || h.Edges[i] > x {
					i--
				}
				want[min(i, len(want)-1)]++
			}
			// A value that lies on an edge (within float rounding of the
			// edges moved by a growth to the left) may sit on either side.
			var total, off int64
			for i := range want {
				total += h.Counts[i]
				off += max(h.Counts[i]-want[i], want[i]-h.Counts[i])
			}
			if total != int64(len(xs)) || off > 2 {
				t.Fatalf("counts %v, want %v (edges %v)", h.Counts, want, h.Edges)
			}
		})
	}
}

func seq(from, to, step float64) []float64 {
	var out []float64
	for x := from; (step > 0 && x < to) || (step < 0 && x > to); x += step {
		out = append(out, x)
	}
	return out
}

// A column with one distinct value has one bin, and an empty one none.
func TestNumeric_Degenerate(t *testing.T) {
	n := NewNumeric(0, 0, 1)
	for range 5 {
		n.Add(3)
	}
	if h := n.Result().Histogram; !slices.Equal(h.Counts, []int64{5}) || !slices.Equal(h.Edges, []float64{3, 3}) {
		t.Fatalf("one distinct value: %+v", h)
	}
	empty := NewNumeric(0, 0, 1)
	empty.AddNull()
	if s := empty.Result(); s.Count != 0 || s.Nulls != 1 || len(s.Quantiles) != 0 || len(s.Histogram.Counts) != 0 {
		t.Fatalf("only nulls: %+v", s)
	}
}

// Below capacity every count is exact and ordered by count then value;
// beyond it the heavy hitters are still found, each count an upper bound
// within its error.
func TestCategorical_TopK(t *testing.T) {
	c := NewCategorical(0)
	for _, v := range []string{"b", "a", "c", "a", "b", "a"} {
		c.Add(v)
	}
	c.AddNull()
	s := c.Result(2)
	want := []ValueCount{{Value: "a", Count: 3}, {Value: "b", Count: 2}}
	if !s.Exact || s.Distinct != 3 || s.Count != 6 || s.Nulls != 1 || !slices.Equal(s.Top, want) {
		t.Fatalf("stats = %+v, want exact, 3 distinct, top %v", s, want)
	}

	// 100 heavy values among 100000 distinct light ones, with capacity 512.
	c = NewCategorical(512)
	r := rand.New(rand.NewPCG(3, 4))
	truth := map[string]int64{}
	for i := range 300000 {
		var v string
		if i%3 == 0 {
			v = fmt.Sprintf("heavy-%d", r.IntN(100))
		} else {
			v = fmt.Sprintf("light-%d", r.IntN(100000))
		}
		truth[v]++
		c.Add(v)
	}
	s = c.Result(100)
	if s.Exact || s.Distinct != 0 {
		t.Fatalf("past capacity: exact %v distinct %d, want false and 0", s.Exact, s.Distinct)
	}
	for _, vc := range s.Top {
		if vc.Value[:5] != "heavy" {
			t.Errorf("a light value %q is among the top 100", vc.Value)
		}
		if tc := truth[vc.Value]; vc.Count < tc || vc.Count-vc.Error > tc {
			t.Errorf("%s: count %d error %d, true count %d", vc.Value, vc.Count, vc.Error, tc)
		}
	}
	if len(c.counters) != 512 || len(c.byCount) != 512 {
		t.Fatalf("%d counters held, capacity 512", len(c.counters))
	}
}

// A million distinct values go through in bounded memory and time.
func BenchmarkCategorical_Distinct(b *testing.B) {
	vals := make([]string, 1<<16)
	for i := range vals {
		vals[i] = fmt.Sprintf("id-%d", i)
	}
	c := NewCategorical(0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Add(vals[i%len(vals)])
	}
}

func BenchmarkNumeric_Add(b *testing.B) {
	n := NewNumeric(0, 0, 1)
	r := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	for b.Loop() {
		n.Add(r.NormFloat64())
	}
}

// AddN gives the same statistics as adding the value that many times: the
// moments and histogram exactly, the quantiles within the sketch's error.
func TestNumeric_AddN(t *testing.T) {
	one, bulk := NewNumeric(0, 10, 3), NewNumeric(0, 10, 3)
	r := rand.New(rand.NewPCG(5, 6))
	for range 2000 {
		x := r.NormFloat64()
		one.Add(x)
		bulk.Add(x)
	}
	for range 5000 {
		one.Add(0)
	}
	bulk.AddN(0, 5000)
	a, b := one.Result(), bulk.Result()
	if a.Count != b.Count || a.Min != b.Min || a.Max != b.Max || !near(a.Mean, b.Mean, 1e-12) || !near(a.Std, b.Std, 1e-12) {
		t.Fatalf("moments: one by one %+v, bulk %+v", a, b)
	}
	if !slices.Equal(a.Histogram.Counts, b.Histogram.Counts) || !slices.Equal(a.Histogram.Edges, b.Histogram.Edges) {
		t.Fatalf("histograms: one by one %+v, bulk %+v", a.Histogram, b.Histogram)
	}
	for i := range a.Quantiles {
		// 5000 of 7000 values are 0: q0.25 to q0.75 must be exactly 0.
		if q := b.Quantiles[i]; q.Q >= 0.25 && q.Q <= 0.75 && q.Value != 0 {
			t.Errorf("bulk q%.2f = %v, want 0", q.Q, q.Value)
		}
	}
	if held := bulk.sketch.size(); held > 3*DefaultSketchK {
		t.Fatalf("the sketch holds %d items", held)
	}
}
