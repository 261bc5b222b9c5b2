package drift

import "math"

// Radix sort digits: 13 bits, so five passes cover 64 bits (the top digit
// has 12) while a pass's 8192 counters stay near the L1 cache; measured
// faster than six passes of 11 bits or four of 16. SortClean's counting
// loop is written out for five passes.
const (
	radixBits   = 13
	radixPasses = 5
	radixSize   = 1 << radixBits
)

// SortClean returns x's finite values sorted ascending (NaN and ±Inf
// dropped), in a new slice; x is left as it was. -0 sorts before +0.
//
// It is an LSD radix sort on the float64 bit patterns, mapped to unsigned
// keys that order as the numbers do (a negative number's bits inverted, a
// positive number's sign bit set): one pass to map the values and count
// every digit, then five scatter passes, skipping any whose digit is the same
// for every key. O(n) time and one scratch slice of n values; the keys ride
// in float64 slices (math.Float64frombits is free) so that the last pass
// can turn them back into numbers in place.
func SortClean(x []float64) []float64 {
	keys := make([]float64, len(x))
	var counts [radixPasses][radixSize]int
	n := 0
	for _, v := range x {
		if v-v != 0 { // NaN or ±Inf
			continue
		}
		k := floatKey(v)
		keys[n] = math.Float64frombits(k)
		n++
		counts[0][k&(radixSize-1)]++
		counts[1][(k>>radixBits)&(radixSize-1)]++
		counts[2][(k>>(2*radixBits))&(radixSize-1)]++
		counts[3][(k>>(3*radixBits))&(radixSize-1)]++
		counts[4][(k>>(4*radixBits))&(radixSize-1)]++
	}
	src, dst := keys[:n], make([]float64, n)
	for p := range radixPasses {
		c := &counts[p]
		shift := uint(p * radixBits)
		if n == 0 || c[(math.Float64bits(src[0])>>shift)&(radixSize-1)] == n {
			continue
		}
		// Counts become each digit's first index in dst.
		sum := 0
		for d, cnt := range c {
			c[d] = sum
			sum += cnt
		}
		for _, v := range src {
			d := (math.Float64bits(v) >> shift) & (radixSize - 1)
			dst[c[d]] = v
			c[d]++
		}
		src, dst = dst, src
	}
	for i, v := range src {
		src[i] = keyFloat(math.Float64bits(v))
	}
	return src
}

func floatKey(v float64) uint64 {
	b := math.Float64bits(v)
	if b>>63 == 1 {
		return ^b
	}
	return b | 1<<63
}

func keyFloat(k uint64) float64 {
	if k>>63 == 1 {
		return math.Float64frombits(k &^ (1 << 63))
	}
	return math.Float64frombits(^k)
}
