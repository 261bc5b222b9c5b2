package stats

import (
	"math"
	"math/rand/v2"
	"slices"
)

// Defaults of a Numeric accumulator.
const (
	// DefaultSketchK is the KLL capacity of the top compactor: a rank error
	// under 1%.
	DefaultSketchK = 256
	// DefaultBins is the number of histogram bins.
	DefaultBins = 20
)

// DefaultQuantiles are the quantiles a Numeric accumulator reports.
var DefaultQuantiles = []float64{0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99}

// Numeric accumulates the statistics of a column of numbers. Its zero value
// is not ready: use NewNumeric.
type Numeric struct {
	count, nulls int64
	min, max     float64
	mean, m2     float64 // Welford: running mean and sum of squared deviations
	sketch       kll
	hist         histogram
}

// NewNumeric returns an accumulator with sketch capacity k and bins
// histogram bins (DefaultSketchK and DefaultBins when 0). seed makes the
// sketch's compactions repeatable.
func NewNumeric(k, bins int, seed uint64) *Numeric {
	if k <= 0 {
		k = DefaultSketchK
	}
	if bins <= 0 {
		bins = DefaultBins
	}
	return &Numeric{
		min: math.Inf(1), max: math.Inf(-1),
		sketch: kll{k: k, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))},
		hist:   histogram{counts: make([]int64, bins)},
	}
}

// Add counts one value; NaN and the infinities count as nulls (no mean,
// deviation or histogram holds them).
func (n *Numeric) Add(x float64) {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		n.nulls++
		return
	}
	n.count++
	n.min, n.max = min(n.min, x), max(n.max, x)
	d := x - n.mean
	n.mean += d / float64(n.count)
	n.m2 += d * (x - n.mean)
	n.sketch.add(x)
	n.hist.add(x)
}

// AddN counts count copies of x at the cost of about log2(count) single
// values: how a sparse column adds the zeros of the rows that lack it.
func (n *Numeric) AddN(x float64, count int64) {
	if count <= 0 {
		return
	}
	if math.IsNaN(x) || math.IsInf(x, 0) {
		n.nulls += count
		return
	}
	// Chan et al.'s pairwise update: merge a block of count equal values.
	total := n.count + count
	d := x - n.mean
	n.mean += d * float64(count) / float64(total)
	n.m2 += d * d * float64(n.count) * float64(count) / float64(total)
	n.count = total
	n.min, n.max = min(n.min, x), max(n.max, x)
	n.sketch.addWeighted(x, count)
	n.hist.addN(x, count)
}

// AddNull counts one missing value.
func (n *Numeric) AddNull() { n.nulls++ }

// NumericStats is what a Numeric accumulator reports. Min, Max, Mean and Std
// are 0 and Quantiles and Histogram empty when the column had no value.
type NumericStats struct {
	Count     int64      `json:"count" msgpack:"count"`
	Nulls     int64      `json:"nulls" msgpack:"nulls"`
	Min       float64    `json:"min" msgpack:"min"`
	Max       float64    `json:"max" msgpack:"max"`
	Mean      float64    `json:"mean" msgpack:"mean"`
	Std       float64    `json:"std" msgpack:"std"` // population standard deviation
	Quantiles []Quantile `json:"quantiles" msgpack:"quantiles"`
	Histogram Histogram  `json:"histogram" msgpack:"histogram"`
}

// Quantile is the value at rank Q (0 to 1).
type Quantile struct {
	Q     float64 `json:"q" msgpack:"q"`
	Value float64 `json:"value" msgpack:"value"`
}

// Histogram is Counts[i] values in [Edges[i], Edges[i+1]); the last bin also
// holds its upper edge. len(Edges) == len(Counts)+1.
type Histogram struct {
	Edges  []float64 `json:"edges" msgpack:"edges"`
	Counts []int64   `json:"counts" msgpack:"counts"`
}

// Result reports the statistics at the given quantiles (DefaultQuantiles
// when none).
func (n *Numeric) Result(qs ...float64) NumericStats {
	s := NumericStats{Count: n.count, Nulls: n.nulls, Quantiles: []Quantile{}, Histogram: Histogram{Edges: []float64{}, Counts: []int64{}}}
	if n.count == 0 {
		return s
	}
	if len(qs) == 0 {
		qs = DefaultQuantiles
	}
	s.Min, s.Max, s.Mean = n.min, n.max, n.mean
	s.Std = math.Sqrt(n.m2 / float64(n.count))
	for _, q := range qs {
		s.Quantiles = append(s.Quantiles, Quantile{Q: q, Value: n.sketch.quantile(q)})
	}
	s.Histogram = n.hist.result()
	return s
}

// kll is a KLL quantile sketch: levels[h] holds items of weight 2^h. The
// capacity of level h is k·(2/3)^(top-h), at least 2; a full level is sorted
// and halved into the level above.
type kll struct {
	k      int
	levels [][]float64
	rng    *rand.Rand
}

func (s *kll) capacity(h int) int {
	c := float64(s.k) * math.Pow(2.0/3.0, float64(len(s.levels)-1-h))
	return max(int(math.Ceil(c)), 2)
}

func (s *kll) add(x float64) {
	if len(s.levels) == 0 {
		s.levels = [][]float64{nil}
	}
	s.levels[0] = append(s.levels[0], x)
	for h := 0; h < len(s.levels); h++ {
		if len(s.levels[h]) < s.capacity(h) {
			break
		}
		s.compact(h)
	}
}

// addWeighted adds x with weight w: once at each level whose bit is set in
// w, each level's weight being 2^h.
func (s *kll) addWeighted(x float64, w int64) {
	for h := 0; w > 0; h, w = h+1, w>>1 {
		if w&1 == 0 {
			continue
		}
		for len(s.levels) <= h {
			s.levels = append(s.levels, nil)
		}
		s.levels[h] = append(s.levels[h], x)
	}
	for h := 0; h < len(s.levels); h++ {
		if len(s.levels[h]) >= s.capacity(h) {
			s.compact(h)
		}
	}
}

// compact sorts level h and moves every other item, from a random offset,
// to level h+1; the others are dropped (their weight passes to the kept).
func (s *kll) compact(h int) {
	if h+1 == len(s.levels) {
		s.levels = append(s.levels, nil)
	}
	items := s.levels[h]
	slices.Sort(items)
	keep := items
	if len(items)%2 == 1 { // an odd one out stays, at its weight
		keep = items[1:]
	}
	for i := s.rng.IntN(2); i < len(keep); i += 2 {
		s.levels[h+1] = append(s.levels[h+1], keep[i])
	}
	if len(items)%2 == 1 {
		s.levels[h] = items[:1:1]
	} else {
		s.levels[h] = items[:0]
	}
}

// quantile returns the smallest item whose weighted rank reaches q of the
// total weight.
func (s *kll) quantile(q float64) float64 {
	type weighted struct {
		x float64
		w int64
	}
	var all []weighted
	var total int64
	for h, items := range s.levels {
		for _, x := range items {
			all = append(all, weighted{x, 1 << h})
			total += 1 << h
		}
	}
	if len(all) == 0 {
		return math.NaN()
	}
	slices.SortFunc(all, func(a, b weighted) int {
		switch {
		case a.x < b.x:
			return -1
		case a.x > b.x:
			return 1
		}
		return 0
	})
	target := q * float64(total)
	var cum int64
	for _, it := range all {
		cum += it.w
		if float64(cum) >= target {
			return it.x
		}
	}
	return all[len(all)-1].x
}

// size is the number of items the sketch holds.
func (s *kll) size() int {
	n := 0
	for _, l := range s.levels {
		n += len(l)
	}
	return n
}

// histogram counts values in len(counts) bins of width w from lo. Until two
// distinct values have been seen it has no width: the values so far are all
// equal to lo and counted in first.
type histogram struct {
	lo, w  float64
	counts []int64
	first  int64 // values equal to lo before the width was known
	seeded bool  // lo is set
}

// addN counts n copies of x.
func (h *histogram) addN(x float64, n int64) {
	h.add(x)
	if n > 1 {
		if h.w == 0 {
			h.first += n - 1
		} else {
			h.counts[h.bin(x)] += n - 1
		}
	}
}

func (h *histogram) add(x float64) {
	switch {
	case !h.seeded:
		h.lo, h.seeded = x, true
		h.first++
		return
	case h.w == 0 && x == h.lo:
		h.first++
		return
	case h.w == 0:
		// The second distinct value sets the first range: from the lower
		// of the two, wide enough to hold the higher in the last bin.
		lo, hi := min(h.lo, x), max(h.lo, x)
		n := float64(len(h.counts))
		h.w = (hi - lo) / (n - 1)
		if h.w == 0 || math.IsInf(h.w, 0) {
			h.w = math.Max(math.Abs(hi-lo), math.SmallestNonzeroFloat64)
		}
		old := h.lo
		h.lo = lo
		h.counts[h.bin(old)] += h.first
		h.first = 0
	}
	for !h.covers(x) {
		h.grow(x)
	}
	h.counts[h.bin(x)]++
}

func (h *histogram) hi() float64 { return h.lo + h.w*float64(len(h.counts)) }

func (h *histogram) covers(x float64) bool { return x >= h.lo && x < h.hi() }

// bin is the bin of x, as the reported edges (lo + w·i) place it.
func (h *histogram) bin(x float64) int {
	n := len(h.counts)
	f := (x - h.lo) / h.w
	switch {
	case !(f > 0): // also NaN
		return 0
	case f >= float64(n):
		return n - 1
	}
	i := int(f)
	if i > 0 && x < h.lo+h.w*float64(i) {
		i--
	} else if i < n-1 && x >= h.lo+h.w*float64(i+1) {
		i++
	}
	return i
}

// grow doubles the width, toward x: to the right the range keeps its low
// edge, to the left it keeps its high edge. Pairs of bins merge; with an odd
// number of bins the odd one merges alone.
func (h *histogram) grow(x float64) {
	n := len(h.counts)
	merged := make([]int64, n)
	if x >= h.lo {
		for i, c := range h.counts {
			merged[i/2] += c
		}
	} else {
		h.lo -= h.w * float64(n)
		// Old bin i sits at new position n+i (of 2n), in new bin (n+i)/2.
		for i, c := range h.counts {
			merged[(n+i)/2] += c
		}
	}
	h.w *= 2
	h.counts = merged
}

func (h *histogram) result() Histogram {
	n := len(h.counts)
	if h.w == 0 { // one distinct value: one bin holds it all
		return Histogram{Edges: []float64{h.lo, h.lo}, Counts: []int64{h.first}}
	}
	out := Histogram{Edges: make([]float64, n+1), Counts: slices.Clone(h.counts)}
	for i := range out.Edges {
		out.Edges[i] = h.lo + h.w*float64(i)
	}
	return out
}
