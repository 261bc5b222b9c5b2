// Package drift holds the statistics with which Kiln's monitoring decides
// whether a feature has drifted: it compares a current window of logged
// inputs or outputs (up to about a million values) with a reference sample
// (up to 100,000 rows of the training dataset), one feature at a time. It is
// pure computation; the caller runs features in parallel.
//
// Numeric features go through CompareNumeric, on samples that SortClean has
// sorted (a radix sort: a million values in tens of milliseconds):
//   - KS, the two-sample Kolmogorov-Smirnov test: the largest gap between
//     the two empirical CDFs. It sees any change of shape or place, and its
//     p-value is exact for samples up to 10,000.
//   - PSI, the population stability index over ten equal-frequency bins of
//     the reference: the banking industry's measure, coarse but familiar.
//   - Wasserstein, the 1-Wasserstein (earth mover's) distance, in the
//     feature's own unit: how far the mass moved, not only whether it did.
//
// Categorical features go through CompareCategorical, on counts per
// category:
//   - Chi2, Pearson's chi-square test of homogeneity of the 2×k table;
//   - JensenShannon, the Jensen-Shannon distance between the two shares.
//
// # Thresholds
//
// Each statistic is a distance between two empirical distributions, and even
// with no drift that distance is not 0: it shrinks like 1/√N, with the
// effective size N = n·m/(n+m) of samples of n and m values. A fixed cut-off,
// such as Evidently's 0.1 for PSI, Wasserstein or Jensen-Shannon, ignores
// this: a window of a few hundred rows crosses it by chance, while a million
// rows against 100,000 hide real drift beneath it. So every Result carries a
// p-value and the Threshold the statistic reaches by chance with probability
// alpha at these sizes, and Drift is p < alpha:
//   - KS: the p-value is scipy's (see below). The Threshold reported is the
//     asymptotic critical value c(α)/√N, c(α) = √(-ln(α/2)/2) (Smirnov
//     1948); the decision is by the p-value.
//   - Chi2: the p-value is the chi-square tail with k-1 degrees of freedom,
//     and the Threshold its 1-α quantile, χ²(1-α, k-1).
//   - PSI: Σ(c-r)·ln(c/r) ≈ Σ(c-r)²/r for close shares c and r, so N·PSI is
//     asymptotically chi-square with B-1 degrees of freedom, B bins
//     (Yurdakul 2018, "Statistical properties of population stability
//     index"): Threshold χ²(1-α, B-1)·(1/n + 1/m), p-value P(χ² ≥ N·PSI).
//   - JensenShannon: to second order the divergence is ⅛·Σ(p-q)²/π, and
//     Pearson's X² = N·Σ(p-q)²/π, so JSD ≈ X²/(8N) with X² chi-square on
//     k-1 degrees of freedom: Threshold √(χ²(1-α, k-1)/(8N)) on the
//     distance, p-value P(χ² ≥ 8N·distance²).
//   - Wasserstein: √N·W tends to ∫|B(F(x))| dx, B a Brownian bridge and F
//     the common CDF (del Barrio, Giné, Matrán 1999). Its distribution is
//     drawn by Monte Carlo from a fixed seed, 2000 bridges on at most about
//     270 points of F, some 5 ms; the p-value is the share of draws at
//     or above √N·W and the Threshold the draw where that share falls below
//     alpha, divided by √N. F is estimated by the two samples pooled: under
//     no drift both come from it, and the pooled sample reaches further into
//     the tails, which the distance weighs by how far out they lie. With the
//     reference alone, a lognormal feature and a reference of 2000 rows gave
//     twice the nominal rate of false alarms.
//
// KS with ties (a discrete feature) is conservative, as in SciPy: it flags
// fewer windows than alpha under no drift. PSI cannot see a change of a
// constant reference, which has one bin; KS and Wasserstein do.
//
// # Agreement with SciPy
//
// KSTwoSample, WassersteinDistance, Chi2Contingency and JensenShannonDistance
// reproduce scipy.stats.ks_2samp (two-sided, method='auto'),
// scipy.stats.wasserstein_distance, scipy.stats.chi2_contingency and
// scipy.spatial.distance.jensenshannon of SciPy 1.10.1, and the chi-square
// and Kolmogorov distributions behind the p-values reproduce scipy.stats.chi2
// and scipy.stats.kstwo. The tests check them to a relative 1e-6 (they agree
// to about 1e-9 or better) against ml/testdata/drift/scipy.json, which
// gen.py beside it wrote with Debian's SciPy 1.10.1, from samples stored
// there or from a generator that the tests rebuild bit for bit.
package drift
