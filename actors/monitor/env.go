package monitor

import (
	"fmt"
	"strconv"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Env is what a condition is evaluated over. Values that are not known
// (no drift check yet, no labels in the window) are 0.
type Env struct {
	Drift       Drift       `expr:"drift"`
	Performance Performance `expr:"performance"`
	Latency     Latency     `expr:"latency"`
	Errors      Errors      `expr:"errors"`
	// Requests is the deployment's requests in the window.
	Requests float64 `expr:"requests"`
	// Canary is the newest version of a split with more than one version;
	// all zero without one.
	Canary Canary `expr:"canary"`
}

// Drift is the latest drift check.
type Drift struct {
	ShareDrifted float64            `expr:"share_drifted"`
	Drifted      int                `expr:"drifted"`
	Samples      int                `expr:"samples"`
	Features     map[string]Feature `expr:"features"`
	Prediction   Feature            `expr:"prediction"`
	// AgeSeconds is how old the check is; a large number when there is none.
	AgeSeconds float64 `expr:"age_seconds"`
}

// Feature is one feature's test.
type Feature struct {
	Statistic float64 `expr:"statistic"`
	PValue    float64 `expr:"p_value"`
	Drift     bool    `expr:"drift"`
}

// Performance is the live quality of the labelled predictions in the
// window, over every version.
type Performance struct {
	Labeled  float64 `expr:"labeled"`
	Accuracy float64 `expr:"accuracy"`
	F1       float64 `expr:"f1"`
	AUC      float64 `expr:"auc"`
	LogLoss  float64 `expr:"logloss"`
	RMSE     float64 `expr:"rmse"`
	MAE      float64 `expr:"mae"`
}

// Latency is the window's latency percentiles, in milliseconds.
type Latency struct {
	P50MS float64 `expr:"p50_ms"`
	P95MS float64 `expr:"p95_ms"`
	P99MS float64 `expr:"p99_ms"`
}

// Errors is the window's failed requests.
type Errors struct {
	Rate  float64 `expr:"rate"`
	Count float64 `expr:"count"`
}

// Canary is a canary version's share of the window.
type Canary struct {
	Version  int     `expr:"version"`
	Weight   int     `expr:"weight"`
	Requests float64 `expr:"requests"`
	Errors   Errors  `expr:"errors"`
	Latency  Latency `expr:"latency"`
}

// Condition is a compiled condition, and its left-hand side when it is a
// comparison (the value an alert shows).
type Condition struct {
	cond  *vm.Program
	value *vm.Program
	// UsesPerformance is true when the condition reads performance, which
	// costs a fan-out to compute.
	UsesPerformance bool
}

// Compile checks a condition against Env. features are the features the
// deployment's monitor tests: drift.features["x"] must name one of them.
func Compile(condition string, features []string) (*Condition, error) {
	tree, err := expr.Compile(condition, expr.Env(Env{}), expr.AsBool())
	if err != nil {
		return nil, structs.Errorf(structs.CodeInvalid, "condition %q does not compile: %v", condition, err)
	}
	c := &Condition{cond: tree}
	known := map[string]bool{}
	for _, f := range features {
		known[f] = true
	}
	var bad error
	ast.Find(tree.Node(), func(n ast.Node) bool {
		m, ok := n.(*ast.MemberNode)
		if !ok {
			return false
		}
		if id, ok := m.Node.(*ast.IdentifierNode); ok && id.Value == "performance" {
			c.UsesPerformance = true
		}
		inner, ok := m.Node.(*ast.MemberNode)
		if !ok {
			return false
		}
		prop, ok1 := inner.Property.(*ast.StringNode)
		root, ok2 := inner.Node.(*ast.IdentifierNode)
		if !ok1 || !ok2 || root.Value != "drift" || prop.Value != "features" {
			return false
		}
		name, ok := m.Property.(*ast.StringNode)
		if !ok {
			bad = structs.Errorf(structs.CodeInvalid, "condition %q: name a feature of drift.features by a string", condition)
		} else if !known[name.Value] {
			bad = structs.Errorf(structs.CodeInvalid, "condition %q: the deployment's monitor tests no feature %q (it tests %v)", condition, name.Value, features)
		}
		return false
	})
	if bad != nil {
		return nil, bad
	}
	if b, ok := tree.Node().(*ast.BinaryNode); ok {
		switch b.Operator {
		case ">", ">=", "<", "<=", "==", "!=":
			if v, err := expr.Compile(b.Left.String(), expr.Env(Env{})); err == nil {
				c.value = v
			}
		}
	}
	return c, nil
}

// Eval runs the condition over env, and returns its value too.
func (c *Condition) Eval(env Env) (bool, float64, error) {
	out, err := expr.Run(c.cond, env)
	if err != nil {
		return false, 0, err
	}
	holds, _ := out.(bool)
	var value float64
	if c.value != nil {
		if v, err := expr.Run(c.value, env); err == nil {
			value = toFloat(v)
		}
	} else if holds {
		value = 1
	}
	return holds, value, nil
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case int:
		return float64(x)
	case bool:
		if x {
			return 1
		}
		return 0
	}
	f, _ := strconv.ParseFloat(fmt.Sprint(v), 64)
	return f
}
