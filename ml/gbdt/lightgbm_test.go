package gbdt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/dmitryikh/leaves"

	"github.com/kilnml/kiln/ml"
)

func TestLoadLightGBM_Schema(t *testing.T) {
	tests := []struct {
		path     string
		features int
		output   []int
	}{
		{lgMulticlass, 28, []int{-1, 5}},
		{lgBreastCancer, 30, []int{-1}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			s := load(t, LoadLightGBM, tt.path).Schema()
			if len(s.Inputs) != 1 || s.Inputs[0].Name != "input" || s.Inputs[0].DataType != ml.FP64 || !slices.Equal(s.Inputs[0].Shape, []int{-1, tt.features}) {
				t.Errorf("inputs %+v, want one FP64 \"input\" of shape [-1, %d]", s.Inputs, tt.features)
			}
			if len(s.Outputs) != 1 || s.Outputs[0].Name != "output" || s.Outputs[0].DataType != ml.FP64 || !slices.Equal(s.Outputs[0].Shape, tt.output) {
				t.Errorf("outputs %+v, want one FP64 \"output\" of shape %v", s.Outputs, tt.output)
			}
			// Both files were trained on unnamed columns.
			if len(s.FeatureNames) != tt.features || s.FeatureNames[0] != "Column_0" || s.FeatureNames[tt.features-1] != fmt.Sprintf("Column_%d", tt.features-1) {
				t.Errorf("feature names %v, want Column_0 ... Column_%d", s.FeatureNames, tt.features-1)
			}
		})
	}
}

func TestLightGBM_MatchesLightGBMPredictions(t *testing.T) {
	m := load(t, LoadLightGBM, lgMulticlass)
	rows := readRows(t, "../testdata/lightgbm/multiclass_test.tsv", 1) // column 0 is the label
	want := readRows(t, "../testdata/lightgbm/lgmulticlass_true_predictions.txt", 0)
	if len(rows) != 500 || len(rows[0]) != 28 || len(want) != 500 || len(want[0]) != 5 {
		t.Fatalf("test data: %d rows of %d, %d predictions of %d", len(rows), len(rows[0]), len(want), len(want[0]))
	}
	out := predict(t, m, rows)
	if !slices.Equal(out.Shape, []int{500, 5}) {
		t.Fatalf("output shape %v, want [500 5]", out.Shape)
	}
	assertClose(t, out.Data, flat(want), tolerance)
}

// No LightGBM output for lg_breast_cancer_data.txt is in testdata (leaves
// checks it against leaf indices), so this checks the shape, the range of a
// probability, and that a batch scores as leaves scores each row alone.
func TestLightGBM_BreastCancerScoresProbabilities(t *testing.T) {
	m := load(t, LoadLightGBM, lgBreastCancer)
	rows := readRows(t, "../testdata/lightgbm/lg_breast_cancer_data.txt", 0)
	out := predict(t, m, rows)
	if !slices.Equal(out.Shape, []int{len(rows)}) || len(rows) != 57 {
		t.Fatalf("output shape %v for %d rows, want [57]", out.Shape, len(rows))
	}
	direct := leavesLightGBM(t, lgBreastCancer)
	for i, row := range rows {
		if p := out.Data[i]; !(p > 0 && p < 1) {
			t.Errorf("row %d: %v is not a probability", i, p)
		}
		assertClose(t, out.Data[i:i+1], leavesPredict(t, direct, row), 0)
	}
}

func leavesLightGBM(t *testing.T, path string) *leaves.Ensemble {
	t.Helper()
	e, err := leaves.LGEnsembleFromFile(path, true)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func leavesPredict(t *testing.T, e *leaves.Ensemble, row []float64) []float64 {
	t.Helper()
	out := make([]float64, e.NOutputGroups())
	if err := e.Predict(row, 0, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// withNaN returns a copy of row with the listed features missing; no list
// means all of them.
func withNaN(row []float64, features ...int) []float64 {
	out := append([]float64(nil), row...)
	if len(features) == 0 {
		for i := range out {
			features = append(features, i)
		}
	}
	for _, f := range features {
		out[f] = math.NaN()
	}
	return out
}

func TestLightGBM_MissingValues(t *testing.T) {
	tests := []struct {
		path, data string
		skip       int
	}{
		{lgMulticlass, "../testdata/lightgbm/multiclass_test.tsv", 1},
		{lgBreastCancer, "../testdata/lightgbm/lg_breast_cancer_data.txt", 0},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			m := load(t, LoadLightGBM, tt.path)
			direct := leavesLightGBM(t, tt.path)
			rows := readRows(t, tt.data, tt.skip)
			missing := [][]float64{
				withNaN(rows[0]),
				withNaN(rows[1], 0),
				withNaN(rows[2], 0, 3, 5, 7, 11, 13, 17, 19, 23),
				withNaN(rows[3], 1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26),
			}
			out := predict(t, m, missing)
			w := len(out.Data) / len(missing)
			for i, row := range missing {
				assertClose(t, out.Data[i*w:(i+1)*w], leavesPredict(t, direct, row), 0)
				// Every split in these files has missing type None, where
				// LightGBM reads a missing value as 0.
				zeroed := append([]float64(nil), row...)
				for j, v := range zeroed {
					if math.IsNaN(v) {
						zeroed[j] = 0
					}
				}
				assertClose(t, out.Data[i*w:(i+1)*w], predict(t, m, [][]float64{zeroed}).Data, 0)
			}
		})
	}
}

// lgSmall is a handmade LightGBM model with one tree over features a, b:
//
//	a <= 0.5 ? (b <= 0.5 ? 1 : 3) : 2
//
// Its decision_type line is filled in by lgSmallModel.
const lgSmall = `tree
version=v2
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=1
objective=regression
feature_names=a b
feature_infos=[0:1] [0:1]
tree_sizes=300

Tree=0
num_leaves=3
num_cat=0
split_feature=0 1
split_gain=1 1
threshold=0.5 0.5
decision_type=%s
left_child=1 -1
right_child=-2 -3
leaf_value=1 2 3
leaf_count=1 1 1
internal_value=0 0
internal_count=3 2
shrinkage=1


end of trees
`

func lgSmallModel(decisionType string) string { return fmt.Sprintf(lgSmall, decisionType) }

func TestLightGBM_SplitsAndMissingTypes(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name         string
		decisionType string // per node: bit 1 default left, bits 2-3 missing type
		row          []float64
		want         float64
	}{
		{"left", "2 2", []float64{0, 0}, 1},
		{"equal to the threshold goes left", "2 2", []float64{0.5, 0.5}, 1},
		{"right then right", "2 2", []float64{0.4, 0.7}, 3},
		{"right", "2 2", []float64{0.6, 0}, 2},
		{"missing type None reads NaN as 0", "2 2", []float64{nan, nan}, 1},
		{"missing type None, NaN and 0.7", "0 0", []float64{nan, 0.7}, 3},
		{"missing type NaN, default right", "8 8", []float64{nan, 0}, 2},
		{"missing type NaN, default left", "10 10", []float64{nan, nan}, 1},
		{"missing type NaN, default left then right", "10 8", []float64{nan, nan}, 3},
		{"missing type Zero, 0 takes default right", "4 4", []float64{0, 0}, 2},
		{"missing type Zero, NaN takes default right", "4 4", []float64{nan, 0}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := LoadLightGBM(strings.NewReader(lgSmallModel(tt.decisionType)))
			if err != nil {
				t.Fatal(err)
			}
			if names := m.Schema().FeatureNames; len(names) != 2 || names[0] != "a" || names[1] != "b" {
				t.Errorf("feature names %q, want [a b]", names)
			}
			out := predict(t, m, [][]float64{tt.row})
			if !slices.Equal(out.Shape, []int{1}) || out.Data[0] != tt.want {
				t.Errorf("row %v: got %v (shape %v), want [%v]", tt.row, out.Data, out.Shape, tt.want)
			}
		})
	}
}

func TestLightGBM_Objectives(t *testing.T) {
	// The row (0.6, 0) reaches the leaf of value 2.
	tests := []struct {
		objective string
		want      float64
	}{
		{"regression", 2},
		{"regression_l1", 2},
		{"regression sqrt", 4}, // LightGBM squares the score of a reg_sqrt model
		{"binary sigmoid:1", 1 / (1 + math.Exp(-2))},
		{"poisson", math.Exp(2)},
		{"gamma", math.Exp(2)},
		{"tweedie", math.Exp(2)},
	}
	for _, tt := range tests {
		t.Run(tt.objective, func(t *testing.T) {
			text := strings.Replace(lgSmallModel("2 2"), "objective=regression", "objective="+tt.objective, 1)
			m, err := LoadLightGBM(strings.NewReader(text))
			if err != nil {
				t.Fatal(err)
			}
			assertClose(t, predict(t, m, [][]float64{{0.6, 0}}).Data, []float64{tt.want}, 1e-12)
		})
	}
}

func TestLoadLightGBM_RejectsBadTrees(t *testing.T) {
	good := lgSmallModel("2 2")
	tree := good[strings.Index(good, "Tree=0"):strings.Index(good, "end of trees")]
	tests := []struct {
		name, old, new string
		want           string
	}{
		{"child links back to the root", "left_child=1 -1", "left_child=0 -1", "out of range"},
		{"node reached twice", "right_child=-2 -3", "right_child=1 -3", "reached twice"},
		{"child beyond the nodes", "left_child=1 -1", "left_child=7 -1", "out of range"},
		{"leaf beyond the leaves", "left_child=1 -1", "left_child=1 -9", "leaf 8 is out of range"},
		{"split feature beyond max_feature_idx", "split_feature=0 1", "split_feature=0 2", "split_feature 2"},
		{"fewer leaf values than leaves", "leaf_value=1 2 3", "leaf_value=1 2", "leaf_value has 2 values"},
		{"huge num_leaves", "num_leaves=3", "num_leaves=2000000000", "leaf_value has 3 values"},
		{"negative num_leaves", "num_leaves=3", "num_leaves=-3", "num_leaves"},
		{"short child list", "right_child=-2 -3", "right_child=-2", "right_child has 1 values"},
		{"child not a number", "right_child=-2 -3", "right_child=-2 x", "not an integer"},
		{"linear tree", "num_cat=0", "num_cat=0\nis_linear=1", "linear trees"},
		{"feature names do not match", "feature_names=a b", "feature_names=a", "feature_names has 1 names"},
		{"negative max_feature_idx", "max_feature_idx=1", "max_feature_idx=-1", "max_feature_idx"},
		{"huge max_feature_idx", "max_feature_idx=1", "max_feature_idx=99999999999", "max_feature_idx"},
		{"no tree_sizes", "tree_sizes=300", "", "tree_sizes"},
		{"more tree_sizes than trees", "tree_sizes=300", "tree_sizes=300 300", "tree 1"},
		{"two '=' on a line", "label_index=0", "label_index=0=1", "more than one '='"},
		{"unsupported objective", "objective=regression", "objective=lambdarank", "lambdarank"},
		{"unsupported version", "version=v2", "version=v9", "version"},
		{"no classes", "num_class=1\nnum_tree_per_iteration=1", "num_class=0\nnum_tree_per_iteration=0", "num_class"},
		{"binary output over two trees per iteration", "num_class=1\nnum_tree_per_iteration=1\n", "num_class=2\nnum_tree_per_iteration=2\n", "output function logistic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := strings.Replace(good, tt.old, tt.new, 1)
			if text == good {
				t.Fatalf("%q is not in the model", tt.old)
			}
			if tt.name == "binary output over two trees per iteration" {
				text = strings.NewReplacer("objective=regression", "objective=binary sigmoid:1", "tree_sizes=300", "tree_sizes=300 300", "end of trees", tree+"end of trees").Replace(text)
			}
			m, err := LoadLightGBM(strings.NewReader(text))
			if !errors.Is(err, ml.ErrBadModel) {
				t.Fatalf("got %v, %v; want an error wrapping ml.ErrBadModel", m, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// A LightGBM 4.x file says version=v4 and may end with a parser section;
// its trees are as in v3, so it predicts exactly as the v3 file does.
func TestLoadLightGBM_AcceptsVersion4(t *testing.T) {
	v3, err := os.ReadFile("../testdata/lightgbm/lg_breast_cancer.txt")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(v3, []byte("version=v3\n")) {
		t.Fatal("test file is not a v3 model")
	}
	v4 := bytes.Replace(v3, []byte("version=v3\n"), []byte("version=v4\n"), 1)
	v4 = append(v4, "\nparser:\n{\"className\": \"x\"}\nend of parser\n"...)
	m3, err := LoadLightGBM(bytes.NewReader(v3))
	if err != nil {
		t.Fatal(err)
	}
	m4, err := LoadLightGBM(bytes.NewReader(v4))
	if err != nil {
		t.Fatalf("v4 model: %v", err)
	}
	in := []ml.Tensor{{Name: "input", Shape: []int{1, 30}, Data: make([]float64, 30)}}
	for i := range in[0].Data {
		in[0].Data[i] = float64(i%5) * 3.7
	}
	o3, err3 := m3.Predict(context.Background(), in)
	o4, err4 := m4.Predict(context.Background(), in)
	if err3 != nil || err4 != nil || o3[0].Data[0] != o4[0].Data[0] {
		t.Fatalf("v3 %v (%v), v4 %v (%v): want the same prediction", o3, err3, o4, err4)
	}
	// Only the header's version line is relabelled.
	if _, err := LoadLightGBM(bytes.NewReader(bytes.Replace(v3, []byte("version=v3\n"), []byte("version=v5\n"), 1))); !errors.Is(err, ml.ErrBadModel) {
		t.Errorf("a v5 model: %v, want ml.ErrBadModel", err)
	}
}
