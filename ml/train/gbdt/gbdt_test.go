package gbdt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/ml/train"
	"github.com/kilnml/kiln/ml/xgbjson"
)

// synthClean returns a binary dataset with a clear nonlinear boundary,
// y = [x0*x1 + sin(2 x2) + 0.5 x3 > 0] with 5% of labels flipped, over 6
// normal features.
func synthClean(n int, seed uint64) *train.Frame {
	rng := rand.New(rand.NewPCG(seed, 4))
	f := &train.Frame{Rows: n, Cols: 6, X: make([]float64, n*6), Y: make([]float64, n)}
	for r := range n {
		x := f.X[r*6 : (r+1)*6]
		for j := range x {
			x[j] = rng.NormFloat64()
		}
		y := x[0]*x[1]+math.Sin(2*x[2])+0.5*x[3] > 0
		if rng.Float64() < 0.05 {
			y = !y
		}
		f.Y[r] = boolf(y)
	}
	return f
}

// fileModel is the part of the JSON model the tests look at.
type fileModel struct {
	Learner struct {
		GradientBooster struct {
			Model struct {
				Param struct {
					NumTrees string `json:"num_trees"`
				} `json:"gbtree_model_param"`
				Trees []struct {
					LeftChildren    []int     `json:"left_children"`
					RightChildren   []int     `json:"right_children"`
					SplitIndices    []int     `json:"split_indices"`
					SplitConditions []float64 `json:"split_conditions"`
					DefaultLeft     []int     `json:"default_left"`
				} `json:"trees"`
				TreeInfo []int `json:"tree_info"`
			} `json:"model"`
		} `json:"gradient_booster"`
		ModelParam map[string]string `json:"learner_model_param"`
		Objective  map[string]any    `json:"objective"`
	} `json:"learner"`
	Version []int `json:"version"`
}

func decodeModel(t *testing.T, model []byte) *fileModel {
	t.Helper()
	var m fileModel
	if err := json.Unmarshal(model, &m); err != nil {
		t.Fatalf("the model is not JSON: %v", err)
	}
	return &m
}

// loadedPredict scores fr with the model as Kiln serves it (package
// xgbjson).
func loadedPredict(t *testing.T, model []byte, fr *train.Frame) []float64 {
	t.Helper()
	m, err := xgbjson.Load(bytes.NewReader(model))
	if err != nil {
		t.Fatalf("xgbjson.Load: %v", err)
	}
	out, err := m.Predict(context.Background(), []ml.Tensor{{Name: "input", Shape: []int{fr.Rows, fr.Cols}, Data: fr.X}})
	if err != nil {
		t.Fatalf("Predict: %v", err)
	}
	return out[0].Data
}

func maxAbsDiff(t *testing.T, a, b []float64) float64 {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d predictions against %d", len(a), len(b))
	}
	var d float64
	for i := range a {
		d = max(d, math.Abs(a[i]-b[i]))
	}
	return d
}

func mustTrain(t *testing.T, in *train.Input) *train.Output {
	t.Helper()
	out, err := Train(context.Background(), in)
	if err != nil {
		t.Fatalf("Train: %v", err)
	}
	if out.Format != Format {
		t.Fatalf("Format = %q, want %q", out.Format, Format)
	}
	return out
}

func TestTrain_RegressionLearnsFunction(t *testing.T) {
	tr := synthRegression(4000, 6, 0.1, 1)
	va := synthRegression(2000, 6, 0.1, 2)
	out := mustTrain(t, &train.Input{
		Task: train.Regression, Train: tr, Valid: va, Threads: 2,
		Params: train.Params{"n_estimators": 300.0, "learning_rate": 0.1, "max_depth": 4.0},
	})
	t.Logf("held-out metrics: %v", out.Metrics)
	// y has a standard deviation of about 1.1 and noise 0.1.
	if rmse := out.Metrics[train.RMSE]; rmse > 0.25 {
		t.Errorf("held-out RMSE = %.4f, want at most 0.25", rmse)
	}
	if r2 := out.Metrics[train.R2]; r2 < 0.95 {
		t.Errorf("held-out R² = %.4f, want at least 0.95", r2)
	}
	pred := loadedPredict(t, out.Model, va)
	got := train.Evaluate(train.Regression, 1, va.Y, pred)[train.RMSE]
	if math.Abs(got-out.Metrics[train.RMSE]) > 1e-9 {
		t.Errorf("RMSE of the loaded model = %v, Metrics say %v", got, out.Metrics[train.RMSE])
	}
}

func TestTrain_BinaryAUC(t *testing.T) {
	tr, va := synthClean(8000, 1), synthClean(4000, 2)
	out := mustTrain(t, &train.Input{
		Task: train.Binary, Classes: []string{"no", "yes"}, Train: tr, Valid: va, Threads: 2,
		Params: train.Params{"n_estimators": 150.0, "learning_rate": 0.1},
	})
	t.Logf("held-out metrics: %v", out.Metrics)
	// 5% of labels are flipped, so about 0.95 accuracy is the ceiling.
	if auc := out.Metrics[train.AUC]; auc < 0.92 {
		t.Errorf("held-out AUC = %.4f, want at least 0.92", auc)
	}
	if acc := out.Metrics[train.Accuracy]; acc < 0.88 {
		t.Errorf("held-out accuracy = %.4f, want at least 0.88", acc)
	}
	m := decodeModel(t, out.Model)
	if m.Learner.Objective["name"] != "binary:logistic" || m.Learner.ModelParam["num_class"] != "0" {
		t.Errorf("objective %v, num_class %q; want binary:logistic and 0", m.Learner.Objective["name"], m.Learner.ModelParam["num_class"])
	}
	if n := len(m.Learner.GradientBooster.Model.Trees); n != 150 {
		t.Errorf("%d trees, want 150", n)
	}
}

func TestTrain_MulticlassAccuracy(t *testing.T) {
	const k = 4
	tr, va := synthMulticlass(6000, 6, k, 1), synthMulticlass(3000, 6, k, 2)
	out := mustTrain(t, &train.Input{
		Task: train.Multiclass, Classes: []string{"a", "b", "c", "d"}, Train: tr, Valid: va, Threads: 2,
		Params: train.Params{"n_estimators": 100.0, "learning_rate": 0.2, "objective": "multi:softprob"},
	})
	t.Logf("held-out metrics: %v", out.Metrics)
	if acc := out.Metrics[train.Accuracy]; acc < 0.8 {
		t.Errorf("held-out accuracy = %.4f, want at least 0.8", acc)
	}
	if auc := out.Metrics[train.AUC]; auc < 0.93 {
		t.Errorf("held-out AUC = %.4f, want at least 0.93", auc)
	}
	m := decodeModel(t, out.Model)
	gb := m.Learner.GradientBooster.Model
	if len(gb.Trees) != 100*k || m.Learner.ModelParam["num_class"] != "4" {
		t.Fatalf("%d trees and num_class %q, want %d and 4", len(gb.Trees), m.Learner.ModelParam["num_class"], 100*k)
	}
	for i, g := range gb.TreeInfo {
		if g != i%k {
			t.Fatalf("tree_info[%d] = %d, want %d (one tree per class per round)", i, g, i%k)
		}
	}
	pred := loadedPredict(t, out.Model, va)
	for r := range va.Rows {
		var sum float64
		for _, p := range pred[r*k : (r+1)*k] {
			sum += p
		}
		if math.Abs(sum-1) > 1e-9 {
			t.Fatalf("row %d: probabilities sum to %v", r, sum)
		}
	}
}

// missingFrame returns one feature x0 uniform in [-1, 1], y = [x0 > 0.5]
// when side is "right" (or [x0 < -0.5] when "left"), and a fifth of the rows
// with x0 missing and y = 1: the missing rows belong with the rows of the
// given side.
func missingFrame(n int, side string, seed uint64) *train.Frame {
	rng := rand.New(rand.NewPCG(seed, 5))
	f := &train.Frame{Rows: n, Cols: 1, X: make([]float64, n), Y: make([]float64, n)}
	for r := range n {
		x := rng.Float64()*2 - 1
		if side == "right" {
			f.Y[r] = boolf(x > 0.5)
		} else {
			f.Y[r] = boolf(x < -0.5)
		}
		if rng.Float64() < 0.2 {
			x, f.Y[r] = math.NaN(), 1
		}
		f.X[r] = x
	}
	return f
}

func TestTrain_MissingValuesLearnDefaultDirection(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		side        string
		defaultLeft int
		like        float64 // a value whose rows the missing ones should join
		unlike      float64
	}{
		{"right", 0, 0.9, 0},
		{"left", 1, -0.9, 0},
	} {
		t.Run(tc.side, func(t *testing.T) {
			tr := missingFrame(4000, tc.side, 1)
			out := mustTrain(t, &train.Input{
				Task: train.Binary, Train: tr, Threads: 1,
				Params: train.Params{"n_estimators": 1.0, "max_depth": 1.0},
			})
			tree := decodeModel(t, out.Model).Learner.GradientBooster.Model.Trees[0]
			if len(tree.LeftChildren) != 3 {
				t.Fatalf("the stump has %d nodes, want 3", len(tree.LeftChildren))
			}
			if tree.DefaultLeft[0] != tc.defaultLeft {
				t.Errorf("default_left = %d, want %d", tree.DefaultLeft[0], tc.defaultLeft)
			}
			probe := &train.Frame{Rows: 3, Cols: 1, X: []float64{nan, tc.like, tc.unlike}, Y: make([]float64, 3)}
			p := loadedPredict(t, out.Model, probe)
			if p[0] != p[1] || p[0] == p[2] {
				t.Errorf("P(missing) = %v, P(%v) = %v, P(%v) = %v: missing rows should join the %s side",
					p[0], tc.like, p[1], tc.unlike, p[2], tc.side)
			}
		})
	}
	t.Run("missing against every value", func(t *testing.T) {
		// The feature is 1 or missing and y says which: the only split
		// sends the missing rows one way and every value the other.
		fr := &train.Frame{Rows: 200, Cols: 1, X: make([]float64, 200), Y: make([]float64, 200)}
		for r := range fr.Rows {
			fr.X[r] = 1
			if r%3 == 0 {
				fr.X[r], fr.Y[r] = nan, 1
			}
		}
		out := mustTrain(t, &train.Input{Task: train.Binary, Train: fr, Threads: 1,
			Params: train.Params{"n_estimators": 3.0}})
		p := loadedPredict(t, out.Model, &train.Frame{Rows: 2, Cols: 1, X: []float64{nan, 1}})
		if !(p[0] > 0.6 && p[1] < 0.4) {
			t.Errorf("P(missing) = %v, P(1) = %v; want high and low", p[0], p[1])
		}
	})
}

func TestTrain_EarlyStoppingKeepsBestRound(t *testing.T) {
	// Few noisy rows and a high learning rate: the validation loss turns
	// up after a few rounds.
	tr, va := synthBinary(600, 12, 1), synthBinary(600, 12, 2)
	var points []train.Point
	const patience = 5
	out := mustTrain(t, &train.Input{
		Task: train.Binary, Train: tr, Valid: va, Threads: 2,
		Params: train.Params{"n_estimators": 500.0, "learning_rate": 0.5, "early_stopping_rounds": float64(patience)},
		Report: func(p train.Point) { points = append(points, p) },
	})
	var valid []float64
	for _, p := range points {
		if p.Name == "valid_logloss" {
			if p.Step != len(valid)+1 {
				t.Fatalf("valid_logloss step %d after %d steps", p.Step, len(valid))
			}
			valid = append(valid, p.Value)
		}
	}
	best := 0
	for i, v := range valid {
		if v < valid[best] {
			best = i
		}
	}
	if len(valid) >= 500 {
		t.Fatalf("ran all %d rounds; the validation loss never stopped improving", len(valid))
	}
	if len(valid) != best+1+patience {
		t.Errorf("stopped after %d rounds; the best was round %d, so want %d", len(valid), best+1, best+1+patience)
	}
	m := decodeModel(t, out.Model)
	if n := len(m.Learner.GradientBooster.Model.Trees); n != best+1 {
		t.Errorf("the model has %d trees, want the best round's %d", n, best+1)
	}
	if ll := out.Metrics[train.LogLoss]; math.Abs(ll-valid[best]) > 1e-9 {
		t.Errorf("final log loss %v, want the best round's %v", ll, valid[best])
	}
	pred := loadedPredict(t, out.Model, va)
	if ll := train.Evaluate(train.Binary, 2, va.Y, pred)[train.LogLoss]; math.Abs(ll-valid[best]) > 1e-9 {
		t.Errorf("the loaded model's log loss %v, want the best round's %v", ll, valid[best])
	}
}

func TestTrain_ReportsEveryRound(t *testing.T) {
	for _, tc := range []struct {
		task    train.Task
		classes []string
		frame   *train.Frame
		loss    string
	}{
		{train.Regression, nil, synthRegression(500, 4, 0.1, 1), "rmse"},
		{train.Binary, []string{"0", "1"}, synthClean(500, 1), "logloss"},
		{train.Multiclass, []string{"a", "b", "c"}, synthMulticlass(500, 4, 3, 1), "logloss"},
	} {
		t.Run(string(tc.task), func(t *testing.T) {
			tr, va := splitFrame(tc.frame, 0.8)
			got := map[string][]float64{}
			mustTrain(t, &train.Input{
				Task: tc.task, Classes: tc.classes, Train: tr, Valid: va, Threads: 2,
				Params: train.Params{"n_estimators": 20.0},
				Report: func(p train.Point) { got[p.Name] = append(got[p.Name], p.Value) },
			})
			for _, name := range []string{"train_" + tc.loss, "valid_" + tc.loss} {
				if len(got[name]) != 20 {
					t.Fatalf("%d points of %s, want 20; got %v", len(got[name]), name, got)
				}
			}
			tl := got["train_"+tc.loss]
			for i := 1; i < len(tl); i++ {
				if tl[i] > tl[i-1]+1e-12 {
					t.Errorf("training loss rose from %v to %v at step %d", tl[i-1], tl[i], i+1)
				}
			}
		})
	}
}

func TestTrain_BadParameters(t *testing.T) {
	fr := synthClean(100, 1)
	for _, tc := range []struct {
		name   string
		params train.Params
		valid  bool
		want   string // in the error
	}{
		{"unknown", train.Params{"max_dept": 3.0}, false, `"max_dept"`},
		{"objective of another task", train.Params{"objective": "reg:squarederror"}, false, "objective"},
		{"unsupported objective", train.Params{"objective": "rank:pairwise"}, false, "objective"},
		{"zero learning rate", train.Params{"learning_rate": 0.0}, false, "learning_rate"},
		{"learning rate above 1", train.Params{"learning_rate": 1.5}, false, "learning_rate"},
		{"fractional depth", train.Params{"max_depth": 2.5}, false, "max_depth"},
		{"no depth limit without max_leaves", train.Params{"max_depth": 0.0}, false, "max_leaves"},
		{"negative lambda", train.Params{"lambda": -1.0}, false, "lambda"},
		{"subsample 0", train.Params{"subsample": 0.0}, false, "subsample"},
		{"colsample above 1", train.Params{"colsample": 1.2}, false, "colsample"},
		{"max_bin 1", train.Params{"max_bin": 1.0}, false, "max_bin"},
		{"max_bin 1000", train.Params{"max_bin": 1000.0}, false, "max_bin"},
		{"n_estimators as a string", train.Params{"n_estimators": "ten"}, false, "n_estimators"},
		{"early stopping without validation", train.Params{"early_stopping_rounds": 5.0}, false, "validation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &train.Input{Task: train.Binary, Train: fr, Params: tc.params, Threads: 1}
			_, err := Train(context.Background(), in)
			if !errors.Is(err, train.ErrParam) {
				t.Fatalf("err = %v, want one wrapping train.ErrParam", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to name %s", err, tc.want)
			}
		})
	}
}

func TestTrain_BadData(t *testing.T) {
	good := synthClean(50, 1)
	for _, tc := range []struct {
		name string
		in   train.Input
	}{
		{"no rows", train.Input{Task: train.Regression, Train: &train.Frame{Cols: 2}}},
		{"no features", train.Input{Task: train.Regression, Train: &train.Frame{Rows: 2, X: []float64{}, Y: []float64{1, 2}}}},
		{"short X", train.Input{Task: train.Regression, Train: &train.Frame{Rows: 2, Cols: 2, X: []float64{1}, Y: []float64{1, 2}}}},
		{"NaN target", train.Input{Task: train.Regression, Train: &train.Frame{Rows: 1, Cols: 1, X: []float64{1}, Y: []float64{math.NaN()}}}},
		{"binary target 2", train.Input{Task: train.Binary, Train: &train.Frame{Rows: 1, Cols: 1, X: []float64{1}, Y: []float64{2}}}},
		{"class out of range", train.Input{Task: train.Multiclass, Classes: []string{"a", "b", "c"}, Train: &train.Frame{Rows: 1, Cols: 1, X: []float64{1}, Y: []float64{3}}}},
		{"multiclass without classes", train.Input{Task: train.Multiclass, Train: good}},
		{"validation of other width", train.Input{Task: train.Binary, Train: good, Valid: &train.Frame{Rows: 1, Cols: 1, X: []float64{1}, Y: []float64{0}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Train(context.Background(), &tc.in)
			if !errors.Is(err, train.ErrData) {
				t.Fatalf("err = %v, want one wrapping train.ErrData", err)
			}
		})
	}
}

func TestTrain_Cancel(t *testing.T) {
	fr := synthBinary(5000, 12, 1)
	t.Run("before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Train(ctx, &train.Input{Task: train.Binary, Train: fr, Threads: 2}); err != context.Canceled {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("during", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		steps := 0
		_, err := Train(ctx, &train.Input{
			Task: train.Binary, Train: fr, Threads: 2,
			Params: train.Params{"n_estimators": 1000.0},
			Report: func(p train.Point) {
				steps = p.Step
				if p.Step == 3 {
					cancel()
				}
			},
		})
		if err != context.Canceled {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if steps != 3 {
			t.Errorf("reported step %d after cancelling at step 3", steps)
		}
	})
}

func TestTrain_DeterministicForSeed(t *testing.T) {
	tr, va := splitFrame(synthBinary(3000, 12, 1), 0.8)
	run := func(seed uint64, threads int) []byte {
		return mustTrain(t, &train.Input{
			Task: train.Binary, Train: tr, Valid: va, Threads: threads, Seed: seed,
			Params: train.Params{"n_estimators": 30.0, "subsample": 0.7, "colsample": 0.6, "max_leaves": 12.0},
		}).Model
	}
	a := run(7, 1)
	if b := run(7, 1); !bytes.Equal(a, b) {
		t.Error("two runs with seed 7 wrote different models")
	}
	if b := run(7, 4); !bytes.Equal(a, b) {
		t.Error("seed 7 with 4 threads wrote a different model than with 1")
	}
	if b := run(8, 1); bytes.Equal(a, b) {
		t.Error("seeds 7 and 8 wrote the same model; sampling ignores the seed")
	}
}

// treeShape returns each tree's leaf count and depth.
func treeShape(left, right []int) (leaves, depth int) {
	var walk func(i, d int)
	walk = func(i, d int) {
		if left[i] < 0 {
			leaves++
			depth = max(depth, d)
			return
		}
		walk(left[i], d+1)
		walk(right[i], d+1)
	}
	walk(0, 0)
	return leaves, depth
}

func TestTrain_TreeShapeLimits(t *testing.T) {
	fr := synthBinary(4000, 12, 1)
	for _, tc := range []struct {
		name               string
		params             train.Params
		maxLeaves, maxDeep int
	}{
		{"depthwise", train.Params{"max_depth": 3.0}, 8, 3},
		{"lossguide", train.Params{"max_leaves": 5.0, "max_depth": 0.0}, 5, 4},
		{"lossguide within depth", train.Params{"max_leaves": 20.0, "max_depth": 3.0}, 8, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.params["n_estimators"] = 10.0
			out := mustTrain(t, &train.Input{Task: train.Binary, Train: fr, Threads: 2, Params: tc.params})
			sawMax := false
			for i, tr := range decodeModel(t, out.Model).Learner.GradientBooster.Model.Trees {
				leaves, depth := treeShape(tr.LeftChildren, tr.RightChildren)
				if leaves > tc.maxLeaves || depth > tc.maxDeep {
					t.Errorf("tree %d has %d leaves and depth %d; limits %d and %d", i, leaves, depth, tc.maxLeaves, tc.maxDeep)
				}
				sawMax = sawMax || leaves == tc.maxLeaves
			}
			if !sawMax {
				t.Errorf("no tree reached %d leaves", tc.maxLeaves)
			}
		})
	}
}

// awkwardFrame has values that test the float32 thresholds: many ties,
// values equal in float32 but not in float64, ±0, infinities, values beyond
// float32's range, subnormals and missing values.
func awkwardFrame(n int, seed uint64) *train.Frame {
	rng := rand.New(rand.NewPCG(seed, 6))
	special := []float64{0, math.Copysign(0, -1), 1, 1 + 1e-12, math.Nextafter(1, 2), 1e-40, -1e-40,
		math.Inf(1), math.Inf(-1), 1e300, -1e300, 3.4e38, math.NaN(), 0.1, 0.1 + 1e-17, -7.5}
	f := &train.Frame{Rows: n, Cols: 3, X: make([]float64, n*3), Y: make([]float64, n)}
	for r := range n {
		x := f.X[r*3 : (r+1)*3]
		x[0] = special[rng.IntN(len(special))]
		x[1] = float64(float32(rng.NormFloat64()))
		x[2] = rng.NormFloat64() * 1e-30
		score := x[1] + x[2]*1e30
		switch {
		case math.IsNaN(x[0]):
			score += 2
		case x[0] > 1:
			score -= 1
		case x[0] < 0:
			score += 1
		}
		f.Y[r] = score + 0.1*rng.NormFloat64()
	}
	return f
}

// TestTrain_ModelPredictsAsTrainerDid checks the chain the model file must
// keep: the trainer routes training rows by bin codes, and its own
// prediction, package xgbjson and XGBoost route by float32(x) <
// split_condition, so all must agree.
func TestTrain_ModelPredictsAsTrainerDid(t *testing.T) {
	for _, tc := range []struct {
		name    string
		task    train.Task
		classes []string
		frame   *train.Frame
		params  train.Params
	}{
		{"regression awkward values", train.Regression, nil, awkwardFrame(3000, 1), train.Params{"n_estimators": 40.0, "max_bin": 16.0}},
		{"regression subsampled", train.Regression, nil, synthRegression(2000, 5, 0.1, 1), train.Params{"n_estimators": 40.0, "subsample": 0.5, "colsample": 0.5}},
		{"binary", train.Binary, []string{"n", "y"}, synthBinary(3000, 14, 1), train.Params{"n_estimators": 40.0}},
		{"binary lossguide", train.Binary, []string{"n", "y"}, synthBinary(3000, 14, 2), train.Params{"n_estimators": 40.0, "max_leaves": 10.0}},
		{"multiclass", train.Multiclass, []string{"a", "b", "c"}, synthMulticlass(3000, 5, 3, 1), train.Params{"n_estimators": 30.0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, va := splitFrame(tc.frame, 0.7)
			in := &train.Input{Task: tc.task, Classes: tc.classes, Train: tr, Valid: va, Threads: 2, Params: tc.params}
			b, err := fit(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			out, err := Train(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []struct {
				name    string
				fr      *train.Frame
				margins []float64
			}{{"training", tr, b.margin}, {"validation", va, b.valid.margin}} {
				own := b.model.predict(s.fr)
				if d := maxAbsDiff(t, own, b.outputs(s.margins)); d != 0 {
					t.Errorf("%s rows: the trainer's predictions differ from its margins by %g", s.name, d)
				}
				if d := maxAbsDiff(t, own, loadedPredict(t, out.Model, s.fr)); d > 1e-6 {
					t.Errorf("%s rows: xgbjson's predictions differ from the trainer's by %g", s.name, d)
				}
			}
		})
	}
}

func TestTrain_FeatureNames(t *testing.T) {
	fr := synthClean(300, 1)
	fr.FeatureNames = []string{"a", "b", "c", "d", "e", "f"}
	out := mustTrain(t, &train.Input{Task: train.Binary, Train: fr, Threads: 1, Params: train.Params{"n_estimators": 2.0}})
	m, err := xgbjson.Load(bytes.NewReader(out.Model))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Schema().FeatureNames; strings.Join(got, ",") != "a,b,c,d,e,f" {
		t.Errorf("feature names %v", got)
	}
	fr.FeatureNames = []string{"a", "b", "c", "d", "e", "x[1]"} // XGBoost refuses [ and ]
	out = mustTrain(t, &train.Input{Task: train.Binary, Train: fr, Threads: 1, Params: train.Params{"n_estimators": 2.0}})
	if m, err = xgbjson.Load(bytes.NewReader(out.Model)); err != nil || len(m.Schema().FeatureNames) != 0 {
		t.Errorf("names XGBoost refuses were written: %v, %v", m.Schema().FeatureNames, err)
	}
}

func TestTaskOf_Objectives(t *testing.T) {
	for _, tc := range []struct {
		objective string
		task      train.Task
		ok        bool
	}{
		{"reg:squarederror", train.Regression, true},
		{"binary:logistic", train.Binary, true},
		{"multi:softprob", train.Multiclass, true},
		{"multi:softmax", "", false},
		{"", "", false},
	} {
		task, ok := TaskOf(tc.objective)
		if task != tc.task || ok != tc.ok {
			t.Errorf("TaskOf(%q) = %q, %v; want %q, %v", tc.objective, task, ok, tc.task, tc.ok)
		}
	}
}
