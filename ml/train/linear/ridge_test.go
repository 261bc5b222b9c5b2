package linear

import (
	"errors"
	"fmt"
	"math"
	"testing"

	linearfmt "github.com/kilnml/kiln/ml/linear"
	"github.com/kilnml/kiln/ml/train"
)

// rawCoefficients reads a fitted model's intercept and coefficients on the
// raw features off its predictions: at the origin and at each unit vector.
func rawCoefficients(t *testing.T, out *train.Output, p int) (float64, []float64) {
	t.Helper()
	_, rt := load(t, out)
	rows := make([][]float64, p+1)
	for i := range rows {
		rows[i] = make([]float64, p)
		if i > 0 {
			rows[i][i-1] = 1
		}
	}
	pred := scores(t, rt, frame(nil, rows, make([]float64, p+1)))
	coef := make([]float64, p)
	for j := range coef {
		coef[j] = pred[j+1] - pred[0]
	}
	return pred[0], coef
}

func TestRidge_RecoversCoefficients(t *testing.T) {
	want := []float64{2, -1, 0.5}
	f := linearData(1, 400, 3, want, 0.001)
	for _, tc := range []struct{ standardize, intercept bool }{
		{true, true}, {false, true}, {true, false}, {false, false},
	} {
		t.Run(fmt.Sprintf("standardize=%v/intercept=%v", tc.standardize, tc.intercept), func(t *testing.T) {
			data := f
			wantB := 3.0
			if !tc.intercept {
				// Through the origin: drop the intercept from the targets.
				data = &train.Frame{Rows: f.Rows, Cols: f.Cols, X: f.X, FeatureNames: f.FeatureNames, Y: make([]float64, f.Rows)}
				for i, y := range f.Y {
					data.Y[i] = y - 3
				}
				wantB = 0
			}
			out := mustTrain(t, Ridge, &train.Input{
				Task: train.Regression, Train: data, Threads: 2,
				Params: train.Params{"l2": 0.0, "standardize": tc.standardize, "fit_intercept": tc.intercept},
			})
			b, coef := rawCoefficients(t, out, 3)
			if math.Abs(b-wantB) > 0.01 {
				t.Errorf("intercept %v, want %v", b, wantB)
			}
			for j := range want {
				if math.Abs(coef[j]-want[j]) > 0.02 {
					t.Errorf("coefficient %d is %v, want %v", j, coef[j], want[j])
				}
			}
			if out.Metrics[train.R2] < 0.9999 {
				t.Errorf("R² %v on nearly noiseless data", out.Metrics[train.R2])
			}
		})
	}
}

// TestRidge_SolvesNormalEquations checks the fitted model against the
// optimality conditions of ‖y − Zw − b‖² + l2‖w‖² in the space the model
// says it was fitted in (its scaler's): Zᵀr = l2·w and, with an intercept,
// Σr = 0, for the residuals r.
func TestRidge_SolvesNormalEquations(t *testing.T) {
	f := linearData(2, 300, -4, []float64{1, 3, -2, 0.25}, 2)
	const l2 = 7.5
	for _, tc := range []struct{ standardize, intercept bool }{
		{true, true}, {false, true}, {true, false}, {false, false},
	} {
		t.Run(fmt.Sprintf("standardize=%v/intercept=%v", tc.standardize, tc.intercept), func(t *testing.T) {
			out := mustTrain(t, Ridge, &train.Input{
				Task: train.Regression, Train: f, Threads: 1,
				Params: train.Params{"l2": l2, "standardize": tc.standardize, "fit_intercept": tc.intercept},
			})
			m, _ := load(t, out)
			if (m.Scaler != nil) != tc.standardize {
				t.Fatalf("scaler %v with standardize %v", m.Scaler, tc.standardize)
			}
			var mean, scale []float64
			if m.Scaler != nil {
				mean, scale = m.Scaler.Mean, m.Scaler.Scale
				for j, mu := range mean {
					if !tc.intercept && mu != 0 {
						t.Fatalf("scaler mean[%d] = %v without an intercept; the model must predict 0 at the origin", j, mu)
					}
				}
			}
			z := transform(f, mean, scale)
			w, b := m.Layers[0].Weights[0], m.Layers[0].Bias[0]
			if !tc.intercept && b != 0 {
				t.Fatalf("intercept %v with fit_intercept false", b)
			}
			p := f.Cols
			// Each condition is checked to rounding of the size of its terms.
			grad := make([]float64, p)
			terms := make([]float64, p)
			var sumR, sumAbs float64
			for i := range f.Rows {
				row := z[i*p : (i+1)*p]
				r := f.Y[i] - dot(w, row) - b
				sumR += r
				sumAbs += math.Abs(r)
				for j, v := range row {
					grad[j] += r * v
					terms[j] += math.Abs(r * v)
				}
			}
			for j := range grad {
				if d := grad[j] - l2*w[j]; math.Abs(d) > 1e-9*(terms[j]+l2*math.Abs(w[j])) {
					t.Errorf("Zᵀr − l2·w [%d] = %v; its terms sum to %v in size", j, d, terms[j])
				}
			}
			if tc.intercept && math.Abs(sumR) > 1e-9*sumAbs {
				t.Errorf("residuals sum to %v with an intercept", sumR)
			}
		})
	}
}

func TestRidge_L2Shrinks(t *testing.T) {
	f := linearData(3, 200, 1, []float64{4, -3, 2}, 1)
	prev := math.Inf(1)
	for _, l2 := range []float64{0, 1, 10, 100, 1000, 1e4, 1e7} {
		out := mustTrain(t, Ridge, &train.Input{Task: train.Regression, Train: f, Threads: 1, Params: train.Params{"l2": l2}})
		m, _ := load(t, out)
		norm := math.Sqrt(dot(m.Layers[0].Weights[0], m.Layers[0].Weights[0]))
		if !(norm < prev) {
			t.Fatalf("l2 %v: weight norm %v, not below %v at the smaller l2", l2, norm, prev)
		}
		prev = norm
	}
	if prev > 0.01 {
		t.Fatalf("weight norm %v at l2 = 1e7; a huge penalty should leave the mean", prev)
	}
}

func TestRidge_DegenerateColumns(t *testing.T) {
	base := linearData(4, 100, 2, []float64{1, -1}, 0.1)
	withColumn := func(col func(i int, row []float64) float64) *train.Frame {
		f := &train.Frame{Rows: base.Rows, Cols: 3, Y: base.Y}
		for i := range base.Rows {
			row := base.Row(i)
			f.X = append(f.X, row[0], row[1], col(i, row))
		}
		return f
	}
	constant := withColumn(func(int, []float64) float64 { return 0.1 })
	copied := withColumn(func(_ int, row []float64) float64 { return row[0] })

	// A constant column gets weight 0, with or without a penalty.
	for _, l2 := range []float64{0, 1} {
		m, _ := load(t, mustTrain(t, Ridge, &train.Input{Task: train.Regression, Train: constant, Threads: 1, Params: train.Params{"l2": l2}}))
		if w := m.Layers[0].Weights[0][2]; w != 0 {
			t.Fatalf("l2 %v: constant column has weight %v", l2, w)
		}
	}
	// A copied column has no unique least-squares weight...
	_, err := Ridge(t.Context(), &train.Input{Task: train.Regression, Train: copied, Threads: 1, Params: train.Params{"l2": 0.0}})
	if !errors.Is(err, train.ErrData) {
		t.Fatalf("collinear columns with l2 = 0: error %v, want ErrData", err)
	}
	// ...but the penalty splits it evenly.
	m, _ := load(t, mustTrain(t, Ridge, &train.Input{Task: train.Regression, Train: copied, Threads: 1}))
	if w := m.Layers[0].Weights[0]; math.Abs(w[0]-w[2]) > 1e-9 {
		t.Fatalf("copied columns got weights %v and %v", w[0], w[2])
	}
}

func TestRidge_Model(t *testing.T) {
	f := linearData(5, 50, 0, []float64{1, 2}, 0.5)
	valid := linearData(6, 20, 0, []float64{1, 2}, 0.5)
	out := mustTrain(t, Ridge, &train.Input{Task: train.Regression, Train: f, Valid: valid, Threads: 1})
	m, rt := load(t, out)
	if m.Kind != linearfmt.KindLinear || m.NFeatures != 2 || len(m.Classes) != 0 {
		t.Fatalf("model kind %q, %d features, classes %v", m.Kind, m.NFeatures, m.Classes)
	}
	if fmt.Sprint(m.FeatureNames) != "[x0 x1]" {
		t.Fatalf("feature names %v", m.FeatureNames)
	}
	// The metrics are the validation rows', as the loaded model scores them.
	want := train.Evaluate(train.Regression, 0, valid.Y, scores(t, rt, valid))
	if fmt.Sprint(out.Metrics) != fmt.Sprint(want) {
		t.Fatalf("metrics %v, want %v", out.Metrics, want)
	}
}
