package linear

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	linearfmt "github.com/kilnml/kiln/ml/linear"
	"github.com/kilnml/kiln/ml/train"
)

func binaryInput(seed uint64, n int) *train.Input {
	coef := []float64{1.5, -2, 0, 0.7}
	return &train.Input{
		Task:    train.Binary,
		Classes: []string{"no", "yes"},
		Train:   binaryData(seed, n, -0.5, coef),
		Valid:   binaryData(seed+100, n/3, -0.5, coef),
		Threads: 2,
	}
}

func TestLogistic_Separates(t *testing.T) {
	in := binaryInput(1, 1500)
	steps := map[string][]train.Point{}
	in.Report = func(p train.Point) { steps[p.Name] = append(steps[p.Name], p) }
	out := mustTrain(t, Logistic, in)
	t.Logf("validation metrics %v after %d epochs", out.Metrics, len(steps["train_logloss"]))
	if out.Metrics[train.AUC] <= 0.95 {
		t.Fatalf("validation AUC %v, want > 0.95", out.Metrics[train.AUC])
	}
	tr, va := steps["train_logloss"], steps["valid_logloss"]
	if len(tr) < 2 || len(tr) != len(va) || len(tr) > 100 {
		t.Fatalf("%d train and %d valid points", len(tr), len(va))
	}
	for i, p := range tr {
		if p.Step != i+1 || va[i].Step != i+1 {
			t.Fatalf("point %d has steps %d and %d, want %d", i, p.Step, va[i].Step, i+1)
		}
		// The objective falls every epoch, and at this small penalty the
		// loss is nearly all of it.
		if i > 0 && p.Value > tr[i-1].Value+1e-9 {
			t.Fatalf("train log loss rose from %v to %v at epoch %d", tr[i-1].Value, p.Value, p.Step)
		}
	}
	// The last reported validation loss is the final model's.
	if last := va[len(va)-1].Value; math.Abs(last-out.Metrics[train.LogLoss]) > 1e-9 {
		t.Fatalf("last valid_logloss %v, final metric %v", last, out.Metrics[train.LogLoss])
	}
}

// TestClassifier_ReachesOptimum checks that the fit is the minimum of the
// penalized loss: the gradient vanishes.
func TestClassifier_ReachesOptimum(t *testing.T) {
	f, classes := iris(t)
	for _, tc := range []struct {
		name string
		in   *train.Input
	}{
		{"logistic", binaryInput(2, 600)},
		{"softmax", &train.Input{Task: train.Multiclass, Classes: classes, Train: f, Threads: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const l2 = 0.01
			tc.in.Params = train.Params{"l2": l2, "tol": 0.0, "max_epochs": 1000}
			c, err := fitClassifier(t.Context(), tc.in, tc.name, tc.in.Task, LogisticParams)
			if err != nil {
				t.Fatal(err)
			}
			pr := c.problem(tc.in.Train, 1)
			grad := make([]float64, len(c.params))
			if _, err := pr.eval(t.Context(), c.params, grad); err != nil {
				t.Fatal(err)
			}
			for i, w := range c.params[:c.k*c.p] {
				grad[i] += l2 * w
			}
			if g := maxAbs(grad); g > 1e-7 {
				t.Fatalf("gradient %v at the fit after %d epochs", g, c.epochs)
			}
		})
	}
}

// TestClassifier_ModelPredictsAsTrained checks that the model file, loaded by
// ml/linear, gives the probabilities the trainer computed from its own
// weights, on the raw features, and that the final metrics are its.
func TestClassifier_ModelPredictsAsTrained(t *testing.T) {
	f, classes := iris(t)
	for _, tc := range []struct {
		name string
		in   *train.Input
		kind linearfmt.Kind
	}{
		{"logistic", binaryInput(3, 400), linearfmt.KindLogistic},
		{"logistic unscaled", binaryInput(4, 400), linearfmt.KindLogistic},
		{"softmax", &train.Input{Task: train.Multiclass, Classes: classes, Train: f, Threads: 1}, linearfmt.KindSoftmax},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.HasSuffix(tc.name, "unscaled") {
				tc.in.Params = train.Params{"standardize": false}
			}
			name := strings.Fields(tc.name)[0]
			c, err := fitClassifier(t.Context(), tc.in, name, tc.in.Task, LogisticParams)
			if err != nil {
				t.Fatal(err)
			}
			out, err := output(t.Context(), name, tc.in, c.model(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			m, rt := load(t, out)
			if m.Kind != tc.kind || fmt.Sprint(m.Classes) != fmt.Sprint(tc.in.Classes) || (m.Scaler != nil) != (c.mean != nil) {
				t.Fatalf("model kind %q, classes %v, scaler %v", m.Kind, m.Classes, m.Scaler)
			}
			eval := tc.in.Valid
			if eval == nil {
				eval = tc.in.Train
			}
			got := scores(t, rt, eval)
			pr := c.problem(eval, 1)
			want := make([]float64, c.k)
			for i := range eval.Rows {
				pr.probabilities(c.params, pr.z[i*c.p:(i+1)*c.p], want)
				for j, w := range want {
					if g := got[i*c.k+j]; math.Abs(g-w) > 1e-12 {
						t.Fatalf("row %d output %d: loaded model %v, trainer %v", i, j, g, w)
					}
				}
			}
			k := len(tc.in.Classes)
			if fmt.Sprint(out.Metrics) != fmt.Sprint(train.Evaluate(tc.in.Task, k, eval.Y, got)) {
				t.Fatalf("metrics %v are not the loaded model's", out.Metrics)
			}
		})
	}
}

func TestSoftmax_Iris(t *testing.T) {
	f, classes := iris(t)
	in := &train.Input{Task: train.Multiclass, Classes: classes, Train: f, Threads: 2, Seed: 1}
	var points int
	in.Report = func(p train.Point) {
		if !strings.HasPrefix(p.Name, "fold") {
			t.Errorf("point %q has no fold prefix", p.Name)
		}
		points++
	}
	got, err := train.CrossValidate(t.Context(), Softmax, in, 5)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("iris 5-fold: accuracy %.4f, log loss %.4f, AUC %.4f (%d step points)", got[train.Accuracy], got[train.LogLoss], got[train.AUC], points)
	if got[train.Accuracy] < 0.93 {
		t.Fatalf("iris 5-fold accuracy %v, want at least 0.93", got[train.Accuracy])
	}
	if points == 0 {
		t.Fatal("no step metrics reached Report")
	}
	// All rows: the model names the species and the measurements.
	out := mustTrain(t, Softmax, &train.Input{Task: train.Multiclass, Classes: classes, Train: f, Threads: 1})
	m, _ := load(t, out)
	if fmt.Sprint(m.Classes) != "[setosa versicolor virginica]" || fmt.Sprint(m.FeatureNames) != "[Sepal_Length Sepal_Width Petal_Length Petal_Width]" {
		t.Fatalf("classes %v, feature names %v", m.Classes, m.FeatureNames)
	}
	if out.Metrics[train.Accuracy] < 0.95 {
		t.Fatalf("training accuracy %v", out.Metrics[train.Accuracy])
	}
}

func TestTrainers_SameForAnyThreads(t *testing.T) {
	f, classes := iris(t)
	// Enough rows for several row blocks.
	big := &train.Frame{Cols: f.Cols, FeatureNames: f.FeatureNames}
	for range 12 {
		big.X = append(big.X, f.X...)
		big.Y = append(big.Y, f.Y...)
		big.Rows += f.Rows
	}
	reg := linearData(7, 3000, 1, []float64{1, 2, 3}, 1)
	for _, tc := range []struct {
		name string
		tr   train.Trainer
		in   train.Input
	}{
		{"ridge", Ridge, train.Input{Task: train.Regression, Train: reg}},
		{"logistic", Logistic, *binaryInput(5, 3000)},
		{"softmax", Softmax, train.Input{Task: train.Multiclass, Classes: classes, Train: big}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var models [][]byte
			for _, threads := range []int{1, 2, 5} {
				in := tc.in
				in.Threads = threads
				models = append(models, mustTrain(t, tc.tr, &in).Model)
			}
			if !bytes.Equal(models[0], models[1]) || !bytes.Equal(models[0], models[2]) {
				t.Fatal("the model depends on Threads")
			}
		})
	}
}

func TestTrainers_RefuseBadInput(t *testing.T) {
	reg := linearData(8, 30, 0, []float64{1, 1}, 1)
	withNaN := func(f *train.Frame, row, col int) *train.Frame {
		g := *f
		g.X = append([]float64(nil), f.X...)
		g.X[row*f.Cols+col] = math.NaN()
		return &g
	}
	bin := binaryInput(9, 60)
	_, classes := iris(t)
	threeClass := &train.Frame{Rows: 3, Cols: 1, X: []float64{1, 2, 3}, Y: []float64{0, 1, 3}}
	for _, tc := range []struct {
		name     string
		tr       train.Trainer
		in       train.Input
		want     error
		contains string
	}{
		{"ridge NaN", Ridge, train.Input{Task: train.Regression, Train: withNaN(reg, 4, 1)}, train.ErrData, `column "x1" (1) has a missing value (NaN) in training row 4`},
		{"logistic NaN in valid", Logistic, train.Input{Task: train.Binary, Classes: bin.Classes, Train: bin.Train, Valid: withNaN(bin.Valid, 2, 3)}, train.ErrData, "column 3 has a missing value (NaN) in validation row 2"},
		{"ridge inf", Ridge, train.Input{Task: train.Regression, Train: func() *train.Frame { g := withNaN(reg, 0, 0); g.X[0] = math.Inf(1); return g }()}, train.ErrData, "+Inf"},
		{"ridge unknown param", Ridge, train.Input{Task: train.Regression, Train: reg, Params: train.Params{"alpha": 1.0}}, train.ErrParam, `"alpha"`},
		{"logistic unknown param", Logistic, train.Input{Task: train.Binary, Classes: bin.Classes, Train: bin.Train, Params: train.Params{"fit_intercept": true}}, train.ErrParam, `"fit_intercept"`},
		{"negative l2", Ridge, train.Input{Task: train.Regression, Train: reg, Params: train.Params{"l2": -1.0}}, train.ErrParam, "l2"},
		{"zero epochs", Softmax, train.Input{Task: train.Multiclass, Classes: classes, Train: threeClass, Params: train.Params{"max_epochs": 0.0}}, train.ErrParam, "max_epochs"},
		{"bool as string", Ridge, train.Input{Task: train.Regression, Train: reg, Params: train.Params{"standardize": "yes"}}, train.ErrParam, "standardize must be true or false"},
		{"wrong task", Ridge, train.Input{Task: train.Binary, Classes: bin.Classes, Train: bin.Train}, train.ErrParam, "regression"},
		{"softmax on binary", Softmax, *bin, train.ErrParam, "multiclass"},
		{"class out of range", Softmax, train.Input{Task: train.Multiclass, Classes: classes, Train: threeClass}, train.ErrData, "row 2 is 3"},
		{"binary with 3 labels", Logistic, train.Input{Task: train.Binary, Classes: classes, Train: bin.Train}, train.ErrData, "2 classes"},
		{"no rows", Logistic, train.Input{Task: train.Binary, Classes: bin.Classes, Train: &train.Frame{Cols: 2}}, train.ErrData, "no training rows"},
		{"repeated feature name", Ridge, train.Input{Task: train.Regression, Train: &train.Frame{Rows: 1, Cols: 2, X: []float64{1, 2}, Y: []float64{1}, FeatureNames: []string{"a", "a"}}}, train.ErrData, "repeats"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.tr(t.Context(), &tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("error %q does not say %q", err, tc.contains)
			}
		})
	}
}

func TestTrainers_HonorCancel(t *testing.T) {
	f, classes := iris(t)
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	for name, tr := range map[string]train.Trainer{"ridge": Ridge, "logistic": Logistic, "softmax": Softmax} {
		in := binaryInput(10, 300)
		switch name {
		case "ridge":
			in = &train.Input{Task: train.Regression, Train: in.Train, Threads: 2}
		case "softmax":
			in = &train.Input{Task: train.Multiclass, Classes: classes, Train: f, Threads: 2}
		}
		if _, err := tr(cancelled, in); !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with a cancelled context: %v", name, err)
		}
	}
	// Cancelled during epoch 3: training stops there.
	for name, tr := range map[string]train.Trainer{"logistic": Logistic, "softmax": Softmax} {
		in := binaryInput(11, 300)
		if name == "softmax" {
			in = &train.Input{Task: train.Multiclass, Classes: classes, Train: f, Threads: 2}
		}
		in.Params = train.Params{"tol": 0.0}
		ctx, cancel := context.WithCancel(t.Context())
		last := 0
		in.Report = func(p train.Point) {
			last = max(last, p.Step)
			if p.Step == 3 {
				cancel()
			}
		}
		_, err := tr(ctx, in)
		cancel()
		if !errors.Is(err, context.Canceled) || last != 3 {
			t.Fatalf("%s cancelled at epoch 3: error %v, last step %d", name, err, last)
		}
	}
}
