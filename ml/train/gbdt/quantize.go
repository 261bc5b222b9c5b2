package gbdt

import (
	"math"

	"github.com/kilnml/kiln/ml/train"
)

// binMatrix is the training data quantized: every value of feature f is
// replaced by the index of its bin, a uint8, and the codes are stored column
// by column, so building a feature's histogram reads one byte per row.
//
// A bin is a range of values between two cuts: value v (as a float32) is in
// bin b of feature f when b is the number of cuts[f] at or below v. Cut
// cuts[f][b] is the split condition that sends bins 0..b left, since
// float32(x) < cuts[f][b] holds exactly for the values in those bins. A
// missing value (NaN) has code missCode[f], one past the last bin; a feature
// without missing training values has missCode -1 and no slot for them.
type binMatrix struct {
	rows, cols int
	codes      []uint8 // codes[f*rows+r]: the bin of row r's value of feature f
	// rowCodes holds the same codes row by row, rowCodes[r*cols+f], for
	// building histograms: a row's gradient pair is read once and added to
	// the slots of all its features, whose updates do not depend on each
	// other (column by column, runs of rows in one bin form a chain of
	// dependent additions).
	rowCodes []uint8
	cuts     [][]float32
	missCode []int32
	// low[f] is feature f's smallest training value. A split with
	// condition low[f] sends every training value right, so missing values
	// alone can go left. lowOK[f] is false when that split cannot be
	// written (no values, or the smallest is -Inf).
	low   []float32
	lowOK []bool
	// offset[f] is where feature f's slots start in a histogram, and
	// offset[cols] the length of a histogram: each feature has one slot per
	// bin and one for missing values if it has them.
	offset []int
}

// col returns the codes of feature f.
func (m *binMatrix) col(f int) []uint8 { return m.codes[f*m.rows : (f+1)*m.rows] }

// numBins returns the number of bins of feature f.
func (m *binMatrix) numBins(f int) int { return len(m.cuts[f]) + 1 }

// quantize bins the training frame. Each feature gets at most maxBin bins
// (255 when it has missing values and maxBin is 256, since the missing code
// must fit in a uint8 too), with cuts at quantiles of the feature's training
// values: every distinct value its own bin when there are few enough of
// them, else bins of about equal counts whose edges fall between distinct
// values. Features are binned in parallel.
func quantize(fr *train.Frame, maxBin int, w *workers) *binMatrix {
	rows, cols := fr.Rows, fr.Cols
	m := &binMatrix{
		rows:     rows,
		cols:     cols,
		codes:    make([]uint8, rows*cols),
		cuts:     make([][]float32, cols),
		missCode: make([]int32, cols),
		low:      make([]float32, cols),
		lowOK:    make([]bool, cols),
		offset:   make([]int, cols+1),
	}
	// The features are read column by column, so the frame is first copied
	// to float32 columns, a block of rows at a time.
	xs := make([]float32, rows*cols)
	w.run((rows+blockSize-1)/blockSize, func(b int) {
		for r := b * blockSize; r < min((b+1)*blockSize, rows); r++ {
			for f, v := range fr.X[r*cols : (r+1)*cols] {
				xs[f*rows+r] = float32(v)
			}
		}
	})
	// Sort buffers for each concurrent worker: at most w.threads features
	// are in flight, so a pool of that many, handed out through a channel,
	// bounds the memory at 2 * w.threads * rows uint64s.
	type buffers struct{ pairs, tmp []uint64 }
	bufs := make(chan *buffers, w.threads)
	for range w.threads {
		bufs <- &buffers{make([]uint64, 0, rows), make([]uint64, rows)}
	}
	w.run(cols, func(f int) {
		buf := <-bufs
		defer func() { bufs <- buf }()
		col := m.col(f)
		// Each value is sorted with its row (key in the high half, row in
		// the low), so that once the cuts are known the codes are written
		// in one walk over the sorted values.
		pairs := buf.pairs[:0]
		missing := false
		for r, v := range xs[f*rows : (f+1)*rows] {
			if v != v {
				missing = true
				continue
			}
			pairs = append(pairs, uint64(sortKey(v))<<32|uint64(r))
		}
		radixSort(pairs, buf.tmp[:len(pairs)])
		bins := maxBin
		if missing && bins > 255 {
			bins = 255
		}
		cuts := cutsOf(pairs, bins)
		m.cuts[f] = cuts
		m.missCode[f] = -1
		if missing {
			m.missCode[f] = int32(len(cuts) + 1)
			for r, v := range xs[f*rows : (f+1)*rows] {
				if v != v {
					col[r] = uint8(m.missCode[f])
				}
			}
		}
		if len(pairs) > 0 {
			if low := keyValue(uint32(pairs[0] >> 32)); !math.IsInf(float64(low), -1) {
				m.low[f], m.lowOK[f] = low, true
			}
		}
		cutKeys := make([]uint32, len(cuts))
		for i, c := range cuts {
			cutKeys[i] = sortKey(c)
		}
		bin := 0
		for _, p := range pairs {
			for k := uint32(p >> 32); bin < len(cutKeys) && cutKeys[bin] <= k; {
				bin++
			}
			col[uint32(p)] = uint8(bin)
		}
	})
	m.rowCodes = make([]uint8, rows*cols)
	blocks := (rows + blockSize - 1) / blockSize
	w.run(blocks, func(b int) {
		for r := b * blockSize; r < min((b+1)*blockSize, rows); r++ {
			dst := m.rowCodes[r*cols : (r+1)*cols]
			for f := range dst {
				dst[f] = m.codes[f*rows+r]
			}
		}
	})
	for f := range cols {
		slots := m.numBins(f)
		if m.missCode[f] >= 0 {
			slots++
		}
		m.offset[f+1] = m.offset[f] + slots
	}
	return m
}

// sortKey maps a float32 that is not NaN to a uint32 whose unsigned
// order is the float's order. -0 is first made +0, the same value for
// every comparison a split makes.
func sortKey(v float32) uint32 {
	if v == 0 {
		v = 0
	}
	b := math.Float32bits(v)
	if b>>31 != 0 {
		return ^b
	}
	return b | 1<<31
}

// keyValue inverts sortKey.
func keyValue(k uint32) float32 {
	if k>>31 != 0 {
		return math.Float32frombits(k &^ (1 << 31))
	}
	return math.Float32frombits(^k)
}

// radixSort sorts pairs by their high 32 bits (the sort key), keeping the
// order of equal keys, with tmp (as long as pairs) as scratch: an LSD radix
// sort of four 8-bit digits, several times faster than a comparison sort
// of a feature's values. Passes whose digit is the same for every key are
// skipped.
func radixSort(pairs, tmp []uint64) {
	var counts [4][256]int
	for _, p := range pairs {
		k := uint32(p >> 32)
		counts[0][k&0xff]++
		counts[1][k>>8&0xff]++
		counts[2][k>>16&0xff]++
		counts[3][k>>24]++
	}
	src, dst := pairs, tmp
	for pass := range 4 {
		c := &counts[pass]
		shift := 32 + 8*pass
		if len(src) == 0 || c[src[0]>>shift&0xff] == len(src) {
			continue
		}
		sum := 0
		for d := range c {
			c[d], sum = sum, sum+c[d]
		}
		for _, p := range src {
			d := p >> shift & 0xff
			dst[c[d]] = p
			c[d]++
		}
		src, dst = dst, src
	}
	if len(src) > 0 && &src[0] != &pairs[0] {
		copy(pairs, src)
	}
}

// cutsOf returns at most maxBins-1 ascending cuts for a feature's values,
// pairs sorted by radixSort. When there are at most maxBins distinct values
// each gets its own bin; otherwise a cut is placed at the first change of
// value at or after each k*len(pairs)/maxBins-th value, so bins hold about
// equal counts and a run of equal values is never split.
func cutsOf(pairs []uint64, maxBins int) []float32 {
	n := len(pairs)
	if n == 0 {
		return nil
	}
	key := func(i int) uint32 { return uint32(pairs[i] >> 32) }
	distinct := 1
	for i := 1; i < n; i++ {
		if key(i) != key(i-1) {
			distinct++
		}
	}
	var cuts []float32
	if distinct <= maxBins {
		cuts = make([]float32, 0, distinct-1)
		for i := 1; i < n; i++ {
			if a, b := key(i-1), key(i); a != b {
				cuts = appendCut(cuts, keyValue(a), keyValue(b))
			}
		}
		return cuts
	}
	cuts = make([]float32, 0, maxBins-1)
	k := 1 // the next cut is due at the k-th quantile
	for i := 1; i < n && k < maxBins; i++ {
		a, b := key(i-1), key(i)
		if a == b || float64(i) < float64(k)*float64(n)/float64(maxBins) {
			continue
		}
		cuts = appendCut(cuts, keyValue(a), keyValue(b))
		k = i*maxBins/n + 1
	}
	return cuts
}

// appendCut appends a cut between the adjacent distinct values a < b: a
// float32 c with a < c <= b, the midpoint when float32 has one strictly above
// a, else b. A cut below +Inf cannot be found when b is +Inf (JSON cannot
// write Infinity as a split condition), so then no cut is made and +Inf
// shares the top bin with the largest finite values.
func appendCut(cuts []float32, a, b float32) []float32 {
	if math.IsInf(float64(b), 1) {
		return cuts
	}
	c := float32((float64(a) + float64(b)) / 2)
	if !(c > a) {
		c = b
	}
	if c == 0 {
		c = 0 // not -0
	}
	return append(cuts, c)
}
