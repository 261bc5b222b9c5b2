package train

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// Split divides f's rows into a training and a validation set, with
// round(validFraction × Rows) validation rows, and returns each set's row
// indices in ascending order (so f.Subset keeps the frame's row order). The
// rows are shuffled first; the same seed gives the same split.
//
// With stratify, Y is taken as a class index (a classification frame) and the
// validation rows are spread over the classes in proportion: each class
// contributes within one row of validFraction × its row count. Without it the
// split ignores Y.
//
// Split panics when validFraction is not in [0, 1]: it is the caller's
// constant, not data.
func Split(f *Frame, validFraction float64, seed uint64, stratify bool) (trainRows, validRows []int) {
	if !(validFraction >= 0 && validFraction <= 1) {
		panic(fmt.Sprintf("train: Split with validFraction %v; it must be from 0 to 1", validFraction))
	}
	// Systematic sampling over the (stratified) shuffled order: position i
	// is a validation row when round(x·validFraction) steps up between i and
	// i+1. That takes exactly round(n·validFraction) rows in all, and, as
	// each class is one run of the order, within one row of its share from
	// each class.
	for i, r := range shuffledRows(f, seed, stratify) {
		if math.Floor(float64(i+1)*validFraction+0.5) > math.Floor(float64(i)*validFraction+0.5) {
			validRows = append(validRows, r)
		} else {
			trainRows = append(trainRows, r)
		}
	}
	slices.Sort(trainRows)
	slices.Sort(validRows)
	return trainRows, validRows
}

// KFold divides f's rows into k folds and returns each fold's rows (its
// validation rows when the others train), each in ascending order. The folds
// partition the rows and their sizes differ by at most one. The rows are
// shuffled first; the same seed gives the same folds. With stratify, Y is
// taken as a class index and each class is dealt out evenly: its count in any
// two folds differs by at most one.
//
// KFold panics unless 2 ≤ k ≤ f.Rows; CrossValidate checks k first and
// returns an error instead.
func KFold(f *Frame, k int, seed uint64, stratify bool) [][]int {
	if k < 2 || k > f.Rows {
		panic(fmt.Sprintf("train: KFold with k = %d over %d rows; k must be from 2 to the row count", k, f.Rows))
	}
	folds := make([][]int, k)
	// Dealing the shuffled order round-robin: every class is one run of it,
	// so each class goes round the folds as evenly as the whole.
	for i, r := range shuffledRows(f, seed, stratify) {
		folds[i%k] = append(folds[i%k], r)
	}
	for _, fold := range folds {
		slices.Sort(fold)
	}
	return folds
}

// CrossValidate estimates how well tr generalizes on in.Train by k-fold cross
// validation: it trains k times, each time with one fold of KFold (seeded by
// in.Seed, stratified unless the task is Regression) as Valid and the other
// rows as Train, and returns the mean over the folds of each final metric
// (Output.Metrics). A metric a fold does not report (AUC on a fold with one
// class) is averaged over the folds that do. in.Valid is not used: the folds
// are the validation sets. The folds run one after another, each given
// in.Threads.
//
// The step metrics of fold i reach in.Report with their names prefixed
// "fold<i>_", i counting from 0 as KFold's result does: "fold2_valid_logloss".
//
// It returns an error wrapping ErrParam when k < 2, ErrData when in.Train has
// fewer than k rows, the first fold's error (naming the fold) when a fold
// fails, and ctx.Err() when ctx is done.
func CrossValidate(ctx context.Context, tr Trainer, in *Input, k int) (map[string]float64, error) {
	if k < 2 {
		return nil, fmt.Errorf("%w: cross validation needs k of at least 2 folds, not %d", ErrParam, k)
	}
	if in == nil || in.Train == nil {
		return nil, fmt.Errorf("%w: cross validation needs training rows", ErrData)
	}
	if in.Train.Rows < k {
		return nil, fmt.Errorf("%w: %d-fold cross validation needs at least %d rows; there are %d", ErrData, k, k, in.Train.Rows)
	}
	folds := KFold(in.Train, k, in.Seed, in.Task != Regression)
	sums := make(map[string]float64)
	counts := make(map[string]int)
	inFold := make([]bool, in.Train.Rows)
	for i, validRows := range folds {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		clear(inFold)
		for _, r := range validRows {
			inFold[r] = true
		}
		trainRows := make([]int, 0, in.Train.Rows-len(validRows))
		for r, v := range inFold {
			if !v {
				trainRows = append(trainRows, r)
			}
		}
		fold := *in
		fold.Train = in.Train.Subset(trainRows)
		fold.Valid = in.Train.Subset(validRows)
		fold.Report = prefixReport(in.Report, fmt.Sprintf("fold%d_", i))
		out, err := tr(ctx, &fold)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, ctxErr
			}
			return nil, fmt.Errorf("train: fold %d of %d: %w", i, k, err)
		}
		for name, v := range out.Metrics {
			sums[name] += v
			counts[name]++
		}
	}
	mean := make(map[string]float64, len(sums))
	for name, s := range sums {
		mean[name] = s / float64(counts[name])
	}
	return mean, nil
}

// prefixReport passes points on to report with prefix before their names; nil
// stays nil.
func prefixReport(report func(Point), prefix string) func(Point) {
	if report == nil {
		return nil
	}
	return func(p Point) {
		p.Name = prefix + p.Name
		report(p)
	}
}

// shuffledRows returns f's row indices in an order fixed by seed. With
// stratify the rows are grouped by Y, in increasing Y, each group shuffled.
func shuffledRows(f *Frame, seed uint64, stratify bool) []int {
	rows := make([]int, f.Rows)
	for i := range rows {
		rows[i] = i
	}
	rng := splitMix{state: seed}
	for i := len(rows) - 1; i > 0; i-- { // Fisher–Yates
		j := rng.below(i + 1)
		rows[i], rows[j] = rows[j], rows[i]
	}
	if stratify {
		// A stable sort keeps the shuffled order within each class.
		slices.SortStableFunc(rows, func(a, b int) int { return cmp.Compare(f.Y[a], f.Y[b]) })
	}
	return rows
}

// splitMix is the SplitMix64 generator, written out here so that a seed gives
// the same split on every Go release: math/rand/v2 fixes its generators'
// streams but not how Shuffle or IntN consume them.
type splitMix struct{ state uint64 }

func (r *splitMix) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	z := r.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// below returns a number in [0, n) by multiply-shift: its bias, under n/2⁶⁴,
// is far below anything a split could show.
func (r *splitMix) below(n int) int {
	hi, _ := bits.Mul64(r.next(), uint64(n))
	return int(hi)
}
