package train

import (
	"math"
	"slices"
)

// Metric names, as Evaluate keys them and runs record them.
const (
	Accuracy = "accuracy"
	LogLoss  = "logloss"
	AUC      = "auc"
	RMSE     = "rmse"
	MAE      = "mae"
	R2       = "r2"
)

// probFloor keeps log loss finite for a confident wrong prediction, as
// scikit-learn and XGBoost clip.
const probFloor = 1e-15

// Evaluate scores predictions against targets y:
//   - Regression: pred[i] is row i's prediction; RMSE, MAE and R².
//   - Binary: pred[i] is row i's probability of class 1; accuracy (at 0.5),
//     log loss and AUC.
//   - Multiclass with k classes: pred[i*k+c] is row i's probability of class
//     c; accuracy (the most probable class, first on ties), log loss, and AUC
//     as the mean of each class's one-against-the-rest AUC (classes absent
//     from y, or present in every row, are left out).
//
// It returns an empty map for no rows.
func Evaluate(task Task, k int, y, pred []float64) map[string]float64 {
	n := len(y)
	if n == 0 {
		return map[string]float64{}
	}
	switch task {
	case Regression:
		var se, ae, mean, ss float64
		for _, v := range y {
			mean += v
		}
		mean /= float64(n)
		for i, v := range y {
			d := pred[i] - v
			se += d * d
			ae += math.Abs(d)
			ss += (v - mean) * (v - mean)
		}
		r2 := 0.0
		if ss > 0 {
			r2 = 1 - se/ss
		}
		return map[string]float64{RMSE: math.Sqrt(se / float64(n)), MAE: ae / float64(n), R2: r2}
	case Binary:
		var correct, ll float64
		pos := make([]bool, n)
		for i, v := range y {
			p := clampProb(pred[i])
			pos[i] = v == 1
			if (p >= 0.5) == pos[i] {
				correct++
			}
			if pos[i] {
				ll -= math.Log(p)
			} else {
				ll -= math.Log(1 - p)
			}
		}
		out := map[string]float64{Accuracy: correct / float64(n), LogLoss: ll / float64(n)}
		if auc, ok := binaryAUC(pred, pos); ok {
			out[AUC] = auc
		}
		return out
	}
	var correct, ll float64
	for i, v := range y {
		row := pred[i*k : (i+1)*k]
		best := 0
		for c := 1; c < k; c++ {
			if row[c] > row[best] {
				best = c
			}
		}
		if best == int(v) {
			correct++
		}
		ll -= math.Log(clampProb(row[int(v)]))
	}
	out := map[string]float64{Accuracy: correct / float64(n), LogLoss: ll / float64(n)}
	var sum float64
	var classes int
	score := make([]float64, n)
	pos := make([]bool, n)
	for c := range k {
		for i, v := range y {
			score[i], pos[i] = pred[i*k+c], int(v) == c
		}
		if auc, ok := binaryAUC(score, pos); ok {
			sum += auc
			classes++
		}
	}
	if classes > 0 {
		out[AUC] = sum / float64(classes)
	}
	return out
}

func clampProb(p float64) float64 { return min(max(p, probFloor), 1-probFloor) }

// binaryAUC is the area under the ROC curve: the probability that a random
// positive scores above a random negative, ties counting half (the
// Mann-Whitney statistic over ranks, with tied scores sharing their mean
// rank). ok is false when the rows are all positive or all negative.
func binaryAUC(score []float64, pos []bool) (float64, bool) {
	n := len(score)
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case score[a] < score[b]:
			return -1
		case score[a] > score[b]:
			return 1
		}
		return 0
	})
	var nPos, rankSum float64
	for i := 0; i < n; {
		j := i
		for j < n && score[idx[j]] == score[idx[i]] {
			j++
		}
		mean := float64(i+j+1) / 2 // ranks i+1..j
		for _, r := range idx[i:j] {
			if pos[r] {
				nPos++
				rankSum += mean
			}
		}
		i = j
	}
	nNeg := float64(n) - nPos
	if nPos == 0 || nNeg == 0 {
		return 0, false
	}
	return (rankSum - nPos*(nPos+1)/2) / (nPos * nNeg), true
}

// F1 is the F1 score of a classifier's predictions, as Evaluate reads
// them: for Binary the positive class's (class 1 when its probability is
// at least 0.5), for Multiclass the mean over the classes present in y or
// predicted (macro F1). It is NaN for a regression or no rows.
func F1(task Task, k int, y, pred []float64) float64 {
	n := len(y)
	if n == 0 || task == Regression {
		return math.NaN()
	}
	predicted := func(i int) int {
		if task == Binary {
			if pred[i] >= 0.5 {
				return 1
			}
			return 0
		}
		row := pred[i*k : (i+1)*k]
		best := 0
		for c := 1; c < k; c++ {
			if row[c] > row[best] {
				best = c
			}
		}
		return best
	}
	classes := max(k, 2)
	tp, fp, fn := make([]float64, classes), make([]float64, classes), make([]float64, classes)
	for i, v := range y {
		p, t := predicted(i), int(v)
		if t < 0 || t >= classes {
			continue
		}
		if p == t {
			tp[t]++
		} else {
			fp[p]++
			fn[t]++
		}
	}
	score := func(c int) float64 {
		if d := 2*tp[c] + fp[c] + fn[c]; d > 0 {
			return 2 * tp[c] / d
		}
		return 0
	}
	if task == Binary {
		return score(1)
	}
	var sum float64
	used := 0
	for c := range classes {
		if tp[c]+fp[c]+fn[c] > 0 {
			sum += score(c)
			used++
		}
	}
	return sum / float64(max(used, 1))
}
