package gbdt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/kilnml/kiln/ml"
)

// tolerance for comparisons with the training library's own predictions.
const tolerance = 1e-6

const (
	lgMulticlass   = "../testdata/lightgbm/lgmulticlass.model"
	lgBreastCancer = "../testdata/lightgbm/lg_breast_cancer.txt"
	xgAgaricus     = "../testdata/xgboost/xgagaricus.model"
)

type loader func(io.Reader) (ml.Model, error)

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func load(t *testing.T, l loader, path string) ml.Model {
	t.Helper()
	m, err := l(bytes.NewReader(readFile(t, path)))
	if err != nil {
		t.Fatalf("loading %s: %v", path, err)
	}
	return m
}

// readRows reads a whitespace-separated table of numbers, dropping the
// first skip columns.
func readRows(t *testing.T, path string, skip int) [][]float64 {
	t.Helper()
	var rows [][]float64
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, path)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		row := make([]float64, 0, len(fields)-skip)
		for _, f := range fields[skip:] {
			v, err := strconv.ParseFloat(f, 64)
			if err != nil {
				t.Fatalf("%s line %d: %v", path, len(rows)+1, err)
			}
			row = append(row, v)
		}
		rows = append(rows, row)
	}
	return rows
}

// readLibsvm reads "label index:value ..." lines into dense rows of the
// given width; a feature a line does not list is missing (NaN), as it is to
// XGBoost.
func readLibsvm(t *testing.T, path string, features int) [][]float64 {
	t.Helper()
	var rows [][]float64
	for _, line := range strings.Split(strings.TrimSpace(string(readFile(t, path))), "\n") {
		row := make([]float64, features)
		for i := range row {
			row[i] = math.NaN()
		}
		for _, pair := range strings.Fields(line)[1:] {
			k, v, _ := strings.Cut(pair, ":")
			i, err1 := strconv.Atoi(k)
			x, err2 := strconv.ParseFloat(v, 64)
			if err1 != nil || err2 != nil || i < 0 || i >= features {
				t.Fatalf("%s line %d: bad pair %q", path, len(rows)+1, pair)
			}
			row[i] = x
		}
		rows = append(rows, row)
	}
	return rows
}

func batch(rows [][]float64) ml.Tensor {
	in := ml.Tensor{Name: "input", Shape: []int{len(rows), len(rows[0])}}
	for _, r := range rows {
		in.Data = append(in.Data, r...)
	}
	return in
}

func predict(t *testing.T, m ml.Model, rows [][]float64) ml.Tensor {
	t.Helper()
	out, err := m.Predict(context.Background(), []ml.Tensor{batch(rows)})
	if err != nil {
		t.Fatalf("Predict: %v", err)
	}
	if len(out) != 1 || out[0].Name != "output" {
		t.Fatalf("Predict returned %d tensors (%+v), want one named output", len(out), out)
	}
	if err := out[0].Check(); err != nil {
		t.Fatalf("output: %v", err)
	}
	return out[0]
}

func assertClose(t *testing.T, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d values, want %d", len(got), len(want))
	}
	for i := range got {
		if !(math.Abs(got[i]-want[i]) <= tol) {
			t.Fatalf("value %d: got %v, want %v (tolerance %g)", i, got[i], want[i], tol)
		}
	}
}

func flat(rows [][]float64) []float64 {
	var out []float64
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

func TestLoad_BadModelIsAnError(t *testing.T) {
	lg := readFile(t, lgMulticlass)
	bc := readFile(t, lgBreastCancer)
	xg := readFile(t, xgAgaricus)
	xgJSON := readFile(t, "../testdata/xgboost/xgb_toy_categorical_model.json")
	tests := []struct {
		name string
		load loader
		data []byte
		want string // in the error message
	}{
		{"lightgbm empty", LoadLightGBM, nil, "empty"},
		{"lightgbm garbage", LoadLightGBM, []byte("hello, world\n"), ""},
		{"lightgbm binary garbage", LoadLightGBM, []byte{0, 1, 2, 0xff, '\n', '=', '=', '\n'}, ""},
		{"lightgbm first line only", LoadLightGBM, lg[:5], ""},
		{"lightgbm header only", LoadLightGBM, lg[:bytes.Index(lg, []byte("Tree=0"))], ""},
		{"lightgbm cut in half", LoadLightGBM, lg[:len(lg)/2], ""},
		{"lightgbm cut in the last leaf_value", LoadLightGBM, bc[:bytes.LastIndex(bc, []byte("leaf_value="))+30], "leaf_value has"},
		{"lightgbm second half", LoadLightGBM, lg[len(lg)/2:], ""},
		{"lightgbm given an xgboost model", LoadLightGBM, xg, ""},
		{"xgboost empty", LoadXGBoost, []byte{}, "empty"},
		{"xgboost garbage", LoadXGBoost, []byte("hello, world\n"), "bytes needed"},
		{"xgboost header cut", LoadXGBoost, xg[:100], "learner parameters"},
		{"xgboost cut in half", LoadXGBoost, xg[:len(xg)/2], "bytes needed"},
		{"xgboost one byte short", LoadXGBoost, xg[:len(xg)-1], "tree_info"},
		{"xgboost second half", LoadXGBoost, xg[len(xg)/2:], ""},
		{"xgboost given a lightgbm model", LoadXGBoost, lg, ""},
		{"xgboost given a JSON model", LoadXGBoost, xgJSON, ml.FormatXGBoostJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := tt.load(bytes.NewReader(tt.data))
			if !errors.Is(err, ml.ErrBadModel) {
				t.Fatalf("got model %v, error %v; want an error wrapping ml.ErrBadModel", m, err)
			}
			if m != nil {
				t.Errorf("got a model with the error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestLoad_SizeLimit(t *testing.T) {
	sizeLimit = 1000
	t.Cleanup(func() { sizeLimit = MaxModelSize })
	xg := readFile(t, xgAgaricus) // 1473 bytes
	lg := readFile(t, lgBreastCancer)
	for _, tt := range []struct {
		name string
		load loader
		data []byte
	}{
		{"lightgbm", LoadLightGBM, lg},
		{"xgboost", LoadXGBoost, xg},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.load(bytes.NewReader(tt.data))
			if !errors.Is(err, ml.ErrBadModel) || !strings.Contains(err.Error(), "larger than 1000 bytes") {
				t.Fatalf("got %v, want ml.ErrBadModel naming the limit", err)
			}
		})
	}
}

func TestLoad_ReadErrorIsBadModel(t *testing.T) {
	disk := errors.New("disk gone")
	for _, l := range []loader{LoadLightGBM, LoadXGBoost} {
		_, err := l(iotest.ErrReader(disk))
		if !errors.Is(err, ml.ErrBadModel) || !errors.Is(err, disk) {
			t.Errorf("got %v, want an error wrapping ml.ErrBadModel and the read error", err)
		}
	}
}

func TestPredict_BadInput(t *testing.T) {
	lg := load(t, LoadLightGBM, lgMulticlass) // 28 features
	xg := load(t, LoadXGBoost, xgAgaricus)    // 127 features
	tests := []struct {
		name   string
		model  ml.Model
		inputs []ml.Tensor
		want   string
	}{
		{"lightgbm too few features", lg, []ml.Tensor{{Name: "input", Shape: []int{2, 27}, Data: make([]float64, 54)}}, "[n, 28]"},
		{"lightgbm too many features", lg, []ml.Tensor{{Shape: []int{1, 29}, Data: make([]float64, 29)}}, "[n, 28]"},
		{"lightgbm three dimensions", lg, []ml.Tensor{{Shape: []int{1, 1, 28}, Data: make([]float64, 28)}}, "[n, 28]"},
		{"lightgbm data shorter than shape", lg, []ml.Tensor{{Shape: []int{2, 28}, Data: make([]float64, 28)}}, "needs 56 values"},
		{"lightgbm unknown name", lg, []ml.Tensor{{Name: "x", Shape: []int{1, 28}, Data: make([]float64, 28)}}, `unknown input "x"`},
		{"lightgbm two inputs", lg, []ml.Tensor{{Shape: []int{1, 28}, Data: make([]float64, 28)}, {Shape: []int{1, 28}, Data: make([]float64, 28)}}, "got 2 inputs"},
		{"lightgbm no inputs", lg, nil, "got 0 inputs"},
		{"xgboost wrong feature count", xg, []ml.Tensor{{Shape: []int{1, 126}, Data: make([]float64, 126)}}, "[n, 127]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tt.model.Predict(context.Background(), tt.inputs)
			if !errors.Is(err, ml.ErrBadInput) {
				t.Fatalf("got %v, %v; want an error wrapping ml.ErrBadInput", out, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestPredict_Shapes(t *testing.T) {
	lg := load(t, LoadLightGBM, lgMulticlass)
	xg := load(t, LoadXGBoost, xgAgaricus)
	tests := []struct {
		name  string
		model ml.Model
		in    ml.Tensor
		want  []int
	}{
		{"multiclass batch", lg, ml.Tensor{Name: "input", Shape: []int{3, 28}, Data: make([]float64, 84)}, []int{3, 5}},
		{"multiclass one row without batch dimension", lg, ml.Tensor{Shape: []int{28}, Data: make([]float64, 28)}, []int{1, 5}},
		{"multiclass empty batch", lg, ml.Tensor{Shape: []int{0, 28}, Data: []float64{}}, []int{0, 5}},
		{"binary batch", xg, ml.Tensor{Shape: []int{2, 127}, Data: make([]float64, 254)}, []int{2}},
		{"binary empty batch", xg, ml.Tensor{Shape: []int{0, 127}}, []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tt.model.Predict(context.Background(), []ml.Tensor{tt.in})
			if err != nil {
				t.Fatal(err)
			}
			if got := out[0].Shape; !slices.Equal(got, tt.want) {
				t.Errorf("output shape %v, want %v", got, tt.want)
			}
			if err := out[0].Check(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestPredict_CanceledContext(t *testing.T) {
	m := load(t, LoadXGBoost, xgAgaricus)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := m.Predict(ctx, []ml.Tensor{{Shape: []int{1, 127}, Data: make([]float64, 127)}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
