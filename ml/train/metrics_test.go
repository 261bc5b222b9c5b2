package train

import (
	"math"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestEvaluate_Regression(t *testing.T) {
	got := Evaluate(Regression, 0, []float64{1, 2, 3, 4}, []float64{1, 2, 3, 6})
	// errors 0,0,0,2: RMSE 1, MAE 0.5; SS_tot 5, SS_res 4: R² 0.2
	if !near(got[RMSE], 1) || !near(got[MAE], 0.5) || !near(got[R2], 0.2) {
		t.Fatalf("regression metrics %v", got)
	}
}

func TestEvaluate_Binary(t *testing.T) {
	y := []float64{0, 0, 1, 1}
	p := []float64{0.1, 0.6, 0.35, 0.8}
	got := Evaluate(Binary, 2, y, p)
	// pairs (pos, neg): (0.35,0.1) yes, (0.35,0.6) no, (0.8,0.1) yes, (0.8,0.6) yes: 3/4
	wantLL := -(math.Log(0.9) + math.Log(0.4) + math.Log(0.35) + math.Log(0.8)) / 4
	if !near(got[AUC], 0.75) || !near(got[Accuracy], 0.5) || !near(got[LogLoss], wantLL) {
		t.Fatalf("binary metrics %v, want auc 0.75, accuracy 0.5, logloss %g", got, wantLL)
	}
	// Ties count half.
	if got := Evaluate(Binary, 2, []float64{0, 1}, []float64{0.5, 0.5}); !near(got[AUC], 0.5) {
		t.Fatalf("tied AUC %v, want 0.5", got[AUC])
	}
	// One class only: no AUC.
	if got := Evaluate(Binary, 2, []float64{1, 1}, []float64{0.5, 0.7}); got[AUC] != 0 {
		t.Fatalf("AUC with one class %v, want none", got)
	} else if _, ok := got[AUC]; ok {
		t.Fatal("AUC reported with one class")
	}
}

func TestEvaluate_Multiclass(t *testing.T) {
	y := []float64{0, 1, 2}
	p := []float64{
		0.7, 0.2, 0.1,
		0.1, 0.3, 0.6, // wrong: class 2
		0.2, 0.2, 0.6,
	}
	got := Evaluate(Multiclass, 3, y, p)
	wantLL := -(math.Log(0.7) + math.Log(0.3) + math.Log(0.6)) / 3
	if !near(got[Accuracy], 2.0/3) || !near(got[LogLoss], wantLL) {
		t.Fatalf("multiclass metrics %v", got)
	}
	// Class 0: 0.7 vs 0.1, 0.2 -> 1; class 1: 0.3 vs 0.2, 0.2 -> 1;
	// class 2: 0.6 vs 0.1, 0.6 -> 0.75.
	if want := (1 + 1 + 0.75) / 3; !near(got[AUC], want) {
		t.Fatalf("macro AUC %v, want %v", got[AUC], want)
	}
}

func TestParams(t *testing.T) {
	p := Params{"eta": 0.3, "depth": 6.0, "obj": "binary:logistic", "bad": "x"}
	if err := p.Check("eta", "depth", "obj"); err == nil {
		t.Fatal("an unknown parameter passed Check")
	}
	if v, err := p.Float("eta", 0.1, 0, 1); err != nil || v != 0.3 {
		t.Fatalf("Float = %v, %v", v, err)
	}
	if _, err := p.Float("eta", 0.1, 0.5, 1); err == nil {
		t.Fatal("an out-of-range float passed")
	}
	if v, err := p.Int("depth", 3, 1, 16); err != nil || v != 6 {
		t.Fatalf("Int = %v, %v", v, err)
	}
	if _, err := (Params{"depth": 6.5}).Int("depth", 3, 1, 16); err == nil {
		t.Fatal("a fractional integer passed")
	}
	if v, err := p.Int("missing", 3, 1, 16); err != nil || v != 3 {
		t.Fatalf("default Int = %v, %v", v, err)
	}
	if _, err := p.String("obj", "", "reg:squarederror"); err == nil {
		t.Fatal("a string outside the allowed set passed")
	}
}

func TestF1(t *testing.T) {
	// Binary: predicted 1,1,0,0 for truths 1,0,1,0: tp 1, fp 1, fn 1.
	if got := F1(Binary, 1, []float64{1, 0, 1, 0}, []float64{0.9, 0.6, 0.2, 0.1}); math.Abs(got-0.5) > 1e-12 {
		t.Errorf("binary F1 = %v, want 0.5", got)
	}
	// Multiclass, scikit-learn's f1_score(average="macro") of
	// y=[0,1,2,2], p=[0,2,2,1] is (1 + 0 + 0.5)/3.
	y := []float64{0, 1, 2, 2}
	p := []float64{1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0}
	if got := F1(Multiclass, 3, y, p); math.Abs(got-0.5) > 1e-12 {
		t.Errorf("macro F1 = %v, want 0.5", got)
	}
	if !math.IsNaN(F1(Regression, 1, y, y)) {
		t.Error("F1 of a regression is not NaN")
	}
}
