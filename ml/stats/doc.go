// Package stats computes the statistics of a dataset's columns in one
// streaming pass with bounded memory, whatever the number of rows: they are
// stored with a dataset version and are the reference that drift monitoring
// compares live traffic against (DESIGN.md §7, §8).
//
// A Numeric accumulator keeps, for a column of numbers:
//   - count, nulls, min, max, mean and standard deviation, exactly (Welford's
//     update, so the variance of a long column does not lose its precision);
//   - quantiles from a KLL sketch (Karnin, Lang, Liberty 2016): levels of
//     compactors that, when full, sort and keep every other item at double
//     weight. With capacity k its rank error is about 1.7/k (k = 256: under
//     1%) and it holds O(k·log(n/k)) items. Compaction offsets come from a
//     generator seeded per accumulator, so a pass over the same rows gives
//     the same answer;
//   - a fixed-bin histogram: Bins bins of equal width over a range that
//     starts at the first two distinct values and doubles (merging
//     neighbouring bins) when a value falls outside, so the edges need no
//     second pass and the counts are exact, but for a value lying on an edge
//     within float rounding, which may be counted on either side. The range
//     covers [min, max]; doubling toward one side can leave it up to about
//     four times as wide as the data, with the outer bins empty.
//
// A Categorical accumulator keeps count, nulls, the number of distinct values
// while it is below its capacity, and the top values with their counts, by
// the SpaceSaving algorithm (Metwally et al. 2005): at most Capacity counters;
// a value seen when they are all taken replaces the least-counted one and
// inherits its count as its error bound. While fewer than Capacity distinct
// values have been seen, every count is exact (Exact is true).
//
// NaN or an infinity passed to a Numeric accumulator counts as a null. Nothing here knows
// files or the cluster: the dataset reader feeds values, the node stores the
// results.
package stats
