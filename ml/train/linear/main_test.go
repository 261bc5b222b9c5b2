package linear

import (
	"bytes"
	"context"
	"encoding/csv"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/ml"
	linearfmt "github.com/kilnml/kiln/ml/linear"
	"github.com/kilnml/kiln/ml/train"
)

// TestMain fails the run if a test leaves a goroutine behind (STYLE.md rule 6).
func TestMain(m *testing.M) { testutil.Main(m) }

// frame builds a frame from rows and targets.
func frame(names []string, rows [][]float64, y []float64) *train.Frame {
	f := &train.Frame{Rows: len(rows), Cols: len(rows[0]), Y: y, FeatureNames: names}
	for _, r := range rows {
		f.X = append(f.X, r...)
	}
	return f
}

// linearData returns n rows of columns of very different scales and
// y = intercept + coef·x + noise·N(0, 1).
func linearData(seed uint64, n int, intercept float64, coef []float64, noise float64) *train.Frame {
	rng := rand.New(rand.NewPCG(seed, 1))
	rows := make([][]float64, n)
	y := make([]float64, n)
	names := make([]string, len(coef))
	for j := range names {
		names[j] = "x" + strconv.Itoa(j)
	}
	for i := range rows {
		rows[i] = make([]float64, len(coef))
		y[i] = intercept + noise*rng.NormFloat64()
		for j := range coef {
			// Column j has mean 5j and deviation 10^(1-j).
			rows[i][j] = 5*float64(j) + math.Pow(10, 1-float64(j))*rng.NormFloat64()
			y[i] += coef[j] * rows[i][j]
		}
	}
	return frame(names, rows, y)
}

// binaryData returns n rows of p standard normal features with class 1
// drawn with probability sigmoid(bias + coef·x).
func binaryData(seed uint64, n int, bias float64, coef []float64) *train.Frame {
	rng := rand.New(rand.NewPCG(seed, 2))
	rows := make([][]float64, n)
	y := make([]float64, n)
	for i := range rows {
		rows[i] = make([]float64, len(coef))
		s := bias
		for j := range coef {
			rows[i][j] = rng.NormFloat64()*2 + 1
			s += coef[j] * rows[i][j]
		}
		if rng.Float64() < sigmoid(s) {
			y[i] = 1
		}
	}
	return frame(nil, rows, y)
}

// iris reads ml/testdata/datasets/iris.csv: four measurements and the
// species, as class indices in order of first appearance.
func iris(t *testing.T) (*train.Frame, []string) {
	t.Helper()
	file, err := os.Open("../../testdata/datasets/iris.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	recs, err := csv.NewReader(file).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	header := recs[0]
	if len(header) != 6 || header[0] != "_index_" || header[5] != "Species" {
		t.Fatalf("iris.csv header %v", header)
	}
	var classes []string
	classOf := map[string]int{}
	f := &train.Frame{Cols: 4, FeatureNames: header[1:5]}
	for _, rec := range recs[1:] {
		for _, s := range rec[1:5] {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				t.Fatal(err)
			}
			f.X = append(f.X, v)
		}
		c, ok := classOf[rec[5]]
		if !ok {
			c = len(classes)
			classOf[rec[5]] = c
			classes = append(classes, rec[5])
		}
		f.Y = append(f.Y, float64(c))
		f.Rows++
	}
	return f, classes
}

// load loads a trainer's model file with ml/linear.
func load(t *testing.T, out *train.Output) (*linearfmt.Model, ml.Model) {
	t.Helper()
	if out.Format != ml.FormatLinear {
		t.Fatalf("format %q, want %q", out.Format, ml.FormatLinear)
	}
	m, err := linearfmt.Decode(bytes.NewReader(out.Model))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := linearfmt.Load(bytes.NewReader(out.Model))
	if err != nil {
		t.Fatal(err)
	}
	return m, rt
}

// scores predicts f's rows with a loaded model.
func scores(t *testing.T, m ml.Model, f *train.Frame) []float64 {
	t.Helper()
	pred, err := predict(context.Background(), m, f)
	if err != nil {
		t.Fatal(err)
	}
	return pred
}

func mustTrain(t *testing.T, tr train.Trainer, in *train.Input) *train.Output {
	t.Helper()
	out, err := tr(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
