// Package algorithms names Kiln's built-in trainers: what a job's
// trainer.algorithm may be, the task each one learns, and the parameters
// each one takes, so that a job with an unknown algorithm, an unknown
// parameter or a target that does not fit is refused when it is submitted,
// not when it runs.
package algorithms

import (
	"fmt"
	"slices"

	"github.com/kilnml/kiln/ml/train"
	"github.com/kilnml/kiln/ml/train/gbdt"
	"github.com/kilnml/kiln/ml/train/linear"
)

// Algorithm is one built-in trainer.
type Algorithm struct {
	Name  string
	Train train.Trainer
	// Params are the parameter names it takes.
	Params []string
	// task returns the task a job's params ask of it.
	task func(p train.Params) (train.Task, error)
}

func fixed(t train.Task) func(train.Params) (train.Task, error) {
	return func(train.Params) (train.Task, error) { return t, nil }
}

var all = []Algorithm{
	{Name: "linear_regression", Train: linear.Ridge, Params: linear.RidgeParams, task: fixed(train.Regression)},
	{Name: "logistic_regression", Train: linear.Logistic, Params: linear.LogisticParams, task: fixed(train.Binary)},
	{Name: "softmax_regression", Train: linear.Softmax, Params: linear.SoftmaxParams, task: fixed(train.Multiclass)},
	{Name: "gbdt", Train: gbdt.Train, Params: gbdt.Params, task: gbdtTask},
}

// gbdtTask reads params.objective in XGBoost's names; XGBoost's default,
// reg:squarederror, when it is not given.
func gbdtTask(p train.Params) (train.Task, error) {
	obj, err := p.String("objective", "reg:squarederror", "reg:squarederror", "binary:logistic", "multi:softprob")
	if err != nil {
		return "", err
	}
	task, _ := gbdt.TaskOf(obj)
	return task, nil
}

// Names lists the algorithms, for error messages.
func Names() []string {
	out := make([]string, len(all))
	for i, a := range all {
		out[i] = a.Name
	}
	return out
}

// Lookup returns the named algorithm.
func Lookup(name string) (Algorithm, bool) {
	i := slices.IndexFunc(all, func(a Algorithm) bool { return a.Name == name })
	if i < 0 {
		return Algorithm{}, false
	}
	return all[i], true
}

// Task checks params against the algorithm and returns the task they ask:
// an unknown parameter, or an objective the algorithm does not have, is an
// error wrapping train.ErrParam.
func (a Algorithm) Task(p train.Params) (train.Task, error) {
	if err := p.Check(a.Params...); err != nil {
		return "", fmt.Errorf("%s: %w", a.Name, err)
	}
	return a.task(p)
}
