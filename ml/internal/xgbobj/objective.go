package xgbobj

import (
	"errors"
	"math"
	"slices"
	"strings"
)

// Objective is what an XGBoost objective means for prediction: how base_score
// becomes a margin and how margins become the output.
type Objective int

const (
	Identity Objective = iota // output = margin; base_score as is
	Logistic                  // output = sigmoid(margin); base_score through logit
	LogitRaw                  // output = margin; base_score through logit before XGBoost 1.4
	Log                       // output = exp(margin); base_score through log
	Softprob                  // output = softmax over the class margins
	Softmax                   // output = index of the largest class margin
)

var byName = map[string]Objective{
	"reg:squarederror":     Identity,
	"reg:linear":           Identity,
	"reg:absoluteerror":    Identity,
	"reg:pseudohubererror": Identity,
	"reg:logistic":         Logistic,
	"binary:logistic":      Logistic,
	"binary:logitraw":      LogitRaw,
	"count:poisson":        Log,
	"reg:gamma":            Log,
	"reg:tweedie":          Log,
	"multi:softprob":       Softprob,
	"multi:softmax":        Softmax,
}

// ByName returns the objective XGBoost calls name ("binary:logistic"), and
// false for an objective Kiln does not score.
func ByName(name string) (Objective, bool) {
	o, ok := byName[name]
	return o, ok
}

// Supported returns the names ByName knows, sorted and separated by ", ",
// for an error message that rejects some other objective.
func Supported() string {
	names := make([]string, 0, len(byName))
	for name := range byName {
		names = append(names, name)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// BaseMargin converts a base_score written in the objective's output space to
// a margin, as XGBoost's ObjFunction::ProbToMargin does when it loads a
// model: logit (after clamping to [1e-6, 1-1e-6]) for a logistic objective,
// log for a log link, unchanged otherwise. major.minor is the version of
// XGBoost that wrote the file: binary:logitraw took the logit up to 1.3 and
// keeps base_score as it is from 1.4 on. The error is a fragment, such as
// "must be finite", for the caller to put after the value it names.
func (o Objective) BaseMargin(v float64, major, minor int) (float64, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, errors.New("must be finite")
	}
	if o == LogitRaw && (major > 1 || major == 1 && minor >= 4) {
		return v, nil // dmlc/xgboost#6517: logitraw keeps base_score as a margin
	}
	switch o {
	case Logistic, LogitRaw:
		if v < 0 || v > 1 {
			return 0, errors.New("must be in [0, 1] for a logistic objective")
		}
		const eps = 1e-6 // XGBoost's kRtEps
		v = min(max(v, eps), 1-eps)
		return math.Log(v / (1 - v)), nil
	case Log:
		if v <= 0 {
			return 0, errors.New("must be positive for an objective with a log link")
		}
		return math.Log(v), nil
	}
	return v, nil
}

// Width returns the number of output values for a row of the given number
// of margins: one for multi:softmax, which returns a class index, else one
// per margin.
func (o Objective) Width(margins int) int {
	if o == Softmax {
		return 1
	}
	return margins
}

// Transform turns one row's margins into its output values. out has
// o.Width(len(margin)) elements; it may be margin itself.
func (o Objective) Transform(margin, out []float64) {
	switch o {
	case Logistic:
		// exp(-v) overflows to +Inf for v below about -709, which still
		// gives 0, so no branch on the sign is needed.
		for k, v := range margin {
			out[k] = 1 / (1 + math.Exp(-v))
		}
	case Log:
		for k, v := range margin {
			out[k] = math.Exp(v)
		}
	case Softprob:
		// Subtracting the largest margin keeps every exp in (0, 1].
		top := slices.Max(margin)
		sum := 0.0
		for k, v := range margin {
			out[k] = math.Exp(v - top)
			sum += out[k]
		}
		for k := range out {
			out[k] /= sum
		}
	case Softmax:
		best := 0 // first on ties, as XGBoost
		for k, v := range margin {
			if v > margin[best] {
				best = k
			}
		}
		out[0] = float64(best)
	default:
		copy(out, margin)
	}
}
