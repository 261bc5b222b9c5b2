package gbdt

import (
	"math"

	"github.com/kilnml/kiln/ml/train"
)

// Clamps, as XGBoost and package train use them.
const (
	hessFloor = 1e-16 // XGBoost's kRtEps-like floor on a logistic hessian
	probFloor = 1e-15 // train.Evaluate's clamp of a probability in log loss
)

// TaskOf returns the task of an XGBoost objective Train takes
// (reg:squarederror, binary:logistic, multi:softprob), and false for any
// other: a caller that lets a job name its objective picks the task with it.
func TaskOf(objective string) (train.Task, bool) {
	for _, t := range []train.Task{train.Regression, train.Binary, train.Multiclass} {
		if o, _, _ := objectiveOf(t); o == objective {
			return t, true
		}
	}
	return "", false
}

// objectiveOf returns XGBoost's objective for a task, and the name of the
// loss the trainer reports for it.
func objectiveOf(task train.Task) (objective, loss string, ok bool) {
	switch task {
	case train.Regression:
		return "reg:squarederror", "rmse", true
	case train.Binary:
		return "binary:logistic", "logloss", true
	case train.Multiclass:
		return "multi:softprob", "logloss", true
	}
	return "", "", false
}

// lossAndGrad returns the loss of margins (k per row) against targets y:
// RMSE for regression, mean log loss (clamped as train.Evaluate clamps it)
// for classification. When gh is not nil it also stores each row's gradient
// pair for each output, gh[c][r], as XGBoost's objectives define them:
//
//	reg:squarederror  g = m - y,       h = 1
//	binary:logistic   g = p - y,       h = max(p(1-p), 1e-16),   p = sigmoid(m)
//	multi:softprob    g = p_c - [y=c], h = max(2p_c(1-p_c), 1e-16), p = softmax(m)
func lossAndGrad(task train.Task, k int, margins, y []float64, gh [][]ghPair, w *workers) float64 {
	n := len(y)
	var sum float64
	switch task {
	case train.Regression:
		sum = w.sumBlocks(n, func(lo, hi int) float64 {
			var s float64
			for r := lo; r < hi; r++ {
				d := margins[r] - y[r]
				s += d * d
				if gh != nil {
					gh[0][r] = ghPair{d, 1}
				}
			}
			return s
		})
		return math.Sqrt(sum / float64(n))
	case train.Binary:
		sum = w.sumBlocks(n, func(lo, hi int) float64 {
			var lp logProduct
			for r := lo; r < hi; r++ {
				p := 1 / (1 + math.Exp(-margins[r]))
				if gh != nil {
					gh[0][r] = ghPair{p - y[r], max(p*(1-p), hessFloor)}
				}
				pc := min(max(p, probFloor), 1-probFloor)
				if y[r] != 1 {
					pc = 1 - pc
				}
				lp.mul(pc)
			}
			return -lp.log()
		})
	default:
		sum = w.sumBlocks(n, func(lo, hi int) float64 {
			var lp logProduct
			p := make([]float64, k)
			for r := lo; r < hi; r++ {
				m := margins[r*k : (r+1)*k]
				top := m[0]
				for _, v := range m[1:] {
					top = max(top, v)
				}
				var z float64
				for c, v := range m {
					p[c] = math.Exp(v - top)
					z += p[c]
				}
				label := int(y[r])
				for c := range p {
					p[c] /= z
					if gh != nil {
						g := p[c]
						if c == label {
							g--
						}
						gh[c][r] = ghPair{g, max(2*p[c]*(1-p[c]), hessFloor)}
					}
				}
				lp.mul(min(max(p[label], probFloor), 1-probFloor))
			}
			return -lp.log()
		})
	}
	return sum / float64(n)
}

// logProduct accumulates the log of a product of probabilities without a
// log per factor: factors are multiplied in float64 and every 16 the
// binary exponent is moved out (16 factors of at least probFloor cannot
// underflow), so a block of rows takes one math.Log instead of one per row,
// which would cost about as much as the rest of the gradient pass. The
// result differs from a sum of logs by rounding only (about 1e-13 for a
// block of 4096 rows).
type logProduct struct {
	frac  float64 // 0 means 1, so the zero value is the empty product
	exp   int
	count int
}

func (l *logProduct) mul(p float64) {
	if l.count == 0 && l.frac == 0 {
		l.frac = 1
	}
	l.frac *= p
	l.count++
	if l.count%16 == 0 {
		var e int
		l.frac, e = math.Frexp(l.frac)
		l.exp += e
	}
}

// log returns the natural log of the product.
func (l *logProduct) log() float64 {
	if l.count == 0 {
		return 0
	}
	return math.Log(l.frac) + float64(l.exp)*math.Ln2
}
