package xgbjson

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kilnml/kiln/ml"
)

const testdata = "../testdata/xgboost/"

// TestLoad_ToyCategoricalMatchesXGBoost is the reference check: a model with
// categorical splits written by XGBoost 1.4.0, its inputs (libsvm: a label,
// then index:value pairs; an absent feature is missing) and XGBoost's own
// predictions, from dmlc/treelite's tests. A prediction matches when it is
// within 1e-5 absolute for |want| <= 1 and 1e-5 relative above.
func TestLoad_ToyCategoricalMatchesXGBoost(t *testing.T) {
	m := loadFile(t, "xgb_toy_categorical_model.json")
	rows := readLibSVM(t, testdata+"xgb_toy_categorical.test", 2)
	want := readFloats(t, testdata+"xgb_toy_categorical.test.pred")
	if len(rows) != len(want) || len(rows) == 0 {
		t.Fatalf("%d rows, %d predictions", len(rows), len(want))
	}
	got := predictRows(t, m, rows)
	if !slices.Equal(got.Shape, []int{len(rows)}) {
		t.Fatalf("output shape %v, want [%d]", got.Shape, len(rows))
	}
	for i, w := range want {
		if g := got.Data[i]; math.Abs(g-w) > 1e-5*math.Max(1, math.Abs(w)) {
			t.Errorf("row %d %v: got %.9g, XGBoost %.9g", i, rows[i], g, w)
		}
	}
}

func TestModel_Schema(t *testing.T) {
	doc := modelDoc("multi:softprob", "5E-1", 3, []testTree{stump(0, 0.5, 1, 2, true), stump(1, 0.5, 1, 2, true), stump(0, 0.5, 1, 2, true)}, []int{0, 1, 2})
	at(doc, "learner")["feature_names"] = []string{"age", "income"}
	softmax := modelDoc("multi:softmax", "5E-1", 3, []testTree{stump(0, 0.5, 1, 2, true)}, []int{0})
	tests := []struct {
		name  string
		doc   []byte
		want  ml.Schema
		names []string
	}{
		{"regression", readFile(t, testdata+"xgb_toy_categorical_model.json"), ml.Schema{
			Inputs:  []ml.TensorSpec{{Name: "input", DataType: ml.FP64, Shape: []int{-1, 2}}},
			Outputs: []ml.TensorSpec{{Name: "output", DataType: ml.FP64, Shape: []int{-1}}},
		}, nil},
		{"softprob with feature names", encode(t, doc), ml.Schema{
			Inputs:  []ml.TensorSpec{{Name: "input", DataType: ml.FP64, Shape: []int{-1, 2}}},
			Outputs: []ml.TensorSpec{{Name: "output", DataType: ml.FP64, Shape: []int{-1, 3}}},
		}, []string{"age", "income"}},
		{"softmax gives one class index", encode(t, softmax), ml.Schema{
			Inputs:  []ml.TensorSpec{{Name: "input", DataType: ml.FP64, Shape: []int{-1, 2}}},
			Outputs: []ml.TensorSpec{{Name: "output", DataType: ml.FP64, Shape: []int{-1}}},
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Load(bytes.NewReader(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			s := m.Schema()
			if !specsEqual(s.Inputs, tt.want.Inputs) || !specsEqual(s.Outputs, tt.want.Outputs) {
				t.Errorf("schema %+v, want %+v", s, tt.want)
			}
			if !slices.Equal(s.FeatureNames, tt.names) {
				t.Errorf("feature names %q, want %q", s.FeatureNames, tt.names)
			}
		})
	}
}

func TestPredict_BaseScoreToMargin(t *testing.T) {
	logit := func(p float64) float64 { return math.Log(p / (1 - p)) }
	sigmoid := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	// One stump: feature 0 < 0.5 gives -1, else 2. x is feature 0.
	tests := []struct {
		name      string
		objective string
		baseScore string
		version   []int
		x         float64
		want      float64
	}{
		{"binary:logistic takes the logit of base_score", "binary:logistic", "6E-1", nil, 0, sigmoid(logit(0.6) - 1)},
		{"base_score as a one-element array (XGBoost 3.1)", "binary:logistic", "[6E-1]", nil, 1, sigmoid(logit(0.6) + 2)},
		{"logistic base_score 0 is clamped to 1e-6", "binary:logistic", "0E0", nil, 1, sigmoid(logit(1e-6) + 2)},
		{"reg:logistic", "reg:logistic", "2.5E-1", nil, 0, sigmoid(logit(0.25) - 1)},
		{"binary:logitraw since 1.4 keeps base_score", "binary:logitraw", "6E-1", []int{2, 0, 0}, 0, 0.6 - 1},
		{"binary:logitraw before 1.4 took the logit", "binary:logitraw", "6E-1", []int{1, 3, 0}, 0, logit(0.6) - 1},
		{"reg:squarederror adds base_score", "reg:squarederror", "5E-1", nil, 1, 2.5},
		{"reg:linear", "reg:linear", "5E-1", nil, 0, -0.5},
		{"reg:absoluteerror", "reg:absoluteerror", "1.5E0", nil, 0, 0.5},
		{"reg:pseudohubererror", "reg:pseudohubererror", "0", nil, 1, 2},
		{"count:poisson takes the log of base_score", "count:poisson", "2E0", nil, 1, 2 * math.Exp(2)},
		{"reg:gamma", "reg:gamma", "5E-1", nil, 0, 0.5 * math.Exp(-1)},
		{"reg:tweedie", "reg:tweedie", "[3E0]", nil, 0, 3 * math.Exp(-1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := modelDoc(tt.objective, tt.baseScore, 0, []testTree{stump(0, 0.5, -1, 2, true)}, []int{0})
			if tt.version != nil {
				doc["version"] = tt.version
			}
			m := mustLoad(t, doc)
			got := predictRows(t, m, [][]float64{{tt.x, 0}})
			if math.Abs(got.Data[0]-tt.want) > 1e-12 {
				t.Errorf("got %.15g, want %.15g", got.Data[0], tt.want)
			}
		})
	}
}

func TestPredict_MultiClass(t *testing.T) {
	trees := []testTree{
		stump(0, 0.5, 1, -1, true),  // class 0
		stump(1, 0.5, 0.5, 2, true), // class 1
		stump(0, 1.5, 0, 1, true),   // class 2
	}
	rows := [][]float64{{0, 1}, {2, 0}}
	softmax := func(m ...float64) []float64 {
		var sum float64
		out := make([]float64, len(m))
		for k, v := range m {
			out[k] = math.Exp(v)
			sum += out[k]
		}
		for k := range out {
			out[k] /= sum
		}
		return out
	}
	tests := []struct {
		name      string
		objective string
		baseScore string
		wantShape []int
		want      []float64
	}{
		// Margins, base_score 0.5 (not transformed): row 0: 1.5, 2.5, 0.5; row 1: -0.5, 1, 1.5.
		{"softprob gives a probability per class", "multi:softprob", "5E-1", []int{2, 3},
			slices.Concat(softmax(1.5, 2.5, 0.5), softmax(-0.5, 1, 1.5))},
		{"softmax gives the class index", "multi:softmax", "5E-1", []int{2}, []float64{1, 2}},
		// Per-class base_score: row 0: 2, 2, -1 (a tie: the first class wins); row 1: 0, 0.5, 0.
		{"softmax tie goes to the first class", "multi:softmax", "[1E0,0E0,-1E0]", []int{2}, []float64{0, 1}},
		{"softprob with per-class base_score", "multi:softprob", "[1E0,0E0,-1E0]", []int{2, 3},
			slices.Concat(softmax(2, 2, -1), softmax(0, 0.5, 0))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustLoad(t, modelDoc(tt.objective, tt.baseScore, 3, trees, []int{0, 1, 2}))
			got := predictRows(t, m, rows)
			if !slices.Equal(got.Shape, tt.wantShape) {
				t.Fatalf("shape %v, want %v", got.Shape, tt.wantShape)
			}
			for i := range tt.want {
				if math.Abs(got.Data[i]-tt.want[i]) > 1e-12 {
					t.Errorf("output %v, want %v", got.Data, tt.want)
					break
				}
			}
		})
	}
}

func TestPredict_MissingFollowsDefaultLeft(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name string
		tree testTree
		x    float64
		want float64
	}{
		{"numerical, default left", stump(0, 0.5, -1, 1, true), nan, -1},
		{"numerical, default right", stump(0, 0.5, -1, 1, false), nan, 1},
		{"numerical, present value ignores the default", stump(0, 0.5, -1, 1, false), 0, -1},
		{"categorical, default left", catStump(0, []int{1}, -1, 1, true), nan, -1},
		{"categorical, default right", catStump(0, []int{1}, -1, 1, false), nan, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustLoad(t, modelDoc("reg:squarederror", "0", 0, []testTree{tt.tree}, []int{0}))
			if got := predictRows(t, m, [][]float64{{tt.x, 0}}).Data[0]; got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPredict_CategoricalSplit(t *testing.T) {
	// Categories 1 and 3 go right (leaf 1); everything else goes left (leaf -1).
	m := mustLoad(t, modelDoc("reg:squarederror", "0", 0, []testTree{catStump(0, []int{3, 1}, -1, 1, true)}, []int{0}))
	tests := []struct {
		name string
		x    float64
		want float64
	}{
		{"listed category goes right", 1, 1},
		{"other listed category goes right", 3, 1},
		{"unlisted category goes left", 2, -1},
		{"category 0 goes left", 0, -1},
		{"category above the set goes left", 4, -1},
		{"fraction is truncated", 1.7, 1},
		{"fraction below a listed category", 0.99, -1},
		{"negative goes left", -1, -1},
		{"small negative goes left", -0.5, -1},
		{"2^24 and above go left", 1 << 24, -1},
		{"+Inf goes left", math.Inf(1), -1},
		{"-Inf goes left", math.Inf(-1), -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := predictRows(t, m, [][]float64{{tt.x, 0}}).Data[0]; got != tt.want {
				t.Errorf("x=%v: got %v, want %v", tt.x, got, tt.want)
			}
		})
	}
}

func TestPredict_ThresholdComparedInFloat32(t *testing.T) {
	// XGBoost stores 0.1 as float32(0.1) and converts its input to float32, so
	// x = 0.1 is not below the threshold although 0.1 < float32(0.1) in float64.
	m := mustLoad(t, modelDoc("reg:squarederror", "0", 0, []testTree{stump(0, 0.1, -1, 1, true)}, []int{0}))
	tests := []struct {
		x, want float64
	}{{0.1, 1}, {0.0999999, -1}, {math.Inf(1), 1}, {math.Inf(-1), -1}}
	for _, tt := range tests {
		if got := predictRows(t, m, [][]float64{{tt.x, 0}}).Data[0]; got != tt.want {
			t.Errorf("x=%v: got %v, want %v", tt.x, got, tt.want)
		}
	}
}

func TestPredict_DartWeights(t *testing.T) {
	trees := []testTree{stump(0, 0.5, -1, 2, true), stump(1, 0.5, 4, 8, true)}
	dart := modelDoc("reg:squarederror", "5E-1", 0, trees, []int{0, 0})
	gb := at(dart, "learner", "gradient_booster")
	at(dart, "learner")["gradient_booster"] = map[string]any{
		"name": "dart", "gbtree": gb, "weight_drop": []float64{0.5, 0.25},
	}
	gbtree34 := modelDoc("reg:squarederror", "5E-1", 0, trees, []int{0, 0})
	at(gbtree34, "learner", "gradient_booster", "model")["weight_drop"] = []float64{0.5, 0.25}
	for name, doc := range map[string]map[string]any{"dart booster": dart, "gbtree with weight_drop (XGBoost 3.4)": gbtree34} {
		t.Run(name, func(t *testing.T) {
			m := mustLoad(t, doc)
			got := predictRows(t, m, [][]float64{{0, 1}})
			if want := 0.5 + 0.5*-1 + 0.25*8; got.Data[0] != want {
				t.Errorf("got %v, want %v", got.Data[0], want)
			}
		})
	}
}

func TestPredict_BadInput(t *testing.T) {
	m := loadFile(t, "xgb_toy_categorical_model.json")
	tests := []struct {
		name   string
		inputs []ml.Tensor
		want   string
	}{
		{"too few features", []ml.Tensor{{Name: "input", Shape: []int{1, 1}, Data: []float64{0}}}, "[n, 2]"},
		{"too many features", []ml.Tensor{{Shape: []int{1, 3}, Data: []float64{0, 1, 2}}}, "[n, 2]"},
		{"unknown input name", []ml.Tensor{{Name: "x", Shape: []int{1, 2}, Data: []float64{0, 1}}}, `unknown input "x"`},
		{"data does not fill the shape", []ml.Tensor{{Shape: []int{2, 2}, Data: []float64{0, 1}}}, "needs 4 values"},
		{"two inputs", []ml.Tensor{{Shape: []int{1, 2}, Data: []float64{0, 1}}, {Shape: []int{1, 2}, Data: []float64{0, 1}}}, "got 2 inputs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Predict(context.Background(), tt.inputs)
			if !errors.Is(err, ml.ErrBadInput) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want ErrBadInput naming %q", err, tt.want)
			}
		})
	}
	t.Run("one row without a batch dimension", func(t *testing.T) {
		out, err := m.Predict(context.Background(), []ml.Tensor{{Shape: []int{2}, Data: []float64{2, 1}}})
		if err != nil || !slices.Equal(out[0].Shape, []int{1}) {
			t.Errorf("got %v, %v; want one prediction", out, err)
		}
	})
}

func TestLoad_RejectsMalformed(t *testing.T) {
	base := func() map[string]any {
		trees := []testTree{deepTree(), catStump(1, []int{0, 2}, -1, 1, true)}
		return modelDoc("binary:logistic", "5E-1", 0, trees, []int{0, 0})
	}
	tree := func(doc map[string]any, i int) map[string]any {
		return at(doc, "learner", "gradient_booster", "model")["trees"].([]map[string]any)[i]
	}
	tests := []struct {
		name   string
		mutate func(doc map[string]any)
		want   string
	}{
		{"unknown objective", func(d map[string]any) { at(d, "learner", "objective")["name"] = "rank:pairwise" },
			`objective "rank:pairwise" is not supported`},
		{"gblinear booster", func(d map[string]any) { at(d, "learner", "gradient_booster")["name"] = "gblinear" },
			`booster "gblinear" is not supported`},
		{"missing learner", func(d map[string]any) { delete(d, "learner") }, "field learner is missing"},
		{"missing num_feature", func(d map[string]any) { delete(at(d, "learner", "learner_model_param"), "num_feature") },
			"learner.learner_model_param.num_feature is missing"},
		{"missing base_score", func(d map[string]any) { delete(at(d, "learner", "learner_model_param"), "base_score") },
			"base_score is missing"},
		{"base_score out of range for logistic", func(d map[string]any) { at(d, "learner", "learner_model_param")["base_score"] = "1.5E0" },
			"must be in [0, 1]"},
		{"base_score with too many values", func(d map[string]any) { at(d, "learner", "learner_model_param")["base_score"] = "[5E-1,5E-1]" },
			"base_score has 2 values for 1 outputs"},
		{"base_score not a number", func(d map[string]any) { at(d, "learner", "learner_model_param")["base_score"] = "half" },
			`base_score = "half" is not a number`},
		{"feature_names of the wrong length", func(d map[string]any) { at(d, "learner")["feature_names"] = []string{"a"} },
			"feature_names has 1 names for num_feature 2"},
		{"num_trees disagrees with trees", func(d map[string]any) {
			at(d, "learner", "gradient_booster", "model", "gbtree_model_param")["num_trees"] = "3"
		},
			"trees has 2 trees, num_trees is 3"},
		{"tree_info of the wrong length", func(d map[string]any) { at(d, "learner", "gradient_booster", "model")["tree_info"] = []int{0} },
			"tree_info has 1 entries for 2 trees"},
		{"tree_info class out of range", func(d map[string]any) { at(d, "learner", "gradient_booster", "model")["tree_info"] = []int{0, 1} },
			"tree_info[1] = 1 is out of range for 1 outputs"},
		{"child index out of range", func(d map[string]any) { tree(d, 0)["left_children"] = []int{1, 9, -1, -1, -1} },
			"tree 0: left_children[1] = 9 is out of range [0, 5)"},
		{"negative child of a split", func(d map[string]any) { tree(d, 0)["right_children"] = []int{2, -4, -1, -1, -1} },
			"tree 0: right_children[1] = -4 is out of range [0, 5)"},
		{"cycle back to the root", func(d map[string]any) { tree(d, 0)["right_children"] = []int{2, 0, -1, -1, -1} },
			"tree 0: right_children[1] = 0: node 0 is reached twice (a cycle or a shared subtree)"},
		{"node that is its own child", func(d map[string]any) { tree(d, 0)["left_children"] = []int{1, 1, -1, -1, -1} },
			"tree 0: left_children[1] = 1: node 1 is reached twice"},
		{"shared subtree", func(d map[string]any) { tree(d, 0)["right_children"] = []int{2, 2, -1, -1, -1} },
			"node 2 is reached twice"},
		{"leaf with a right child", func(d map[string]any) { tree(d, 0)["right_children"] = []int{2, 4, 3, -1, -1} },
			"tree 0: node 2: left child is -1 (a leaf) but right child is 3"},
		{"split_conditions too short", func(d map[string]any) { tree(d, 0)["split_conditions"] = []float64{0.5, 0.5, 1} },
			"tree 0: split_conditions has 3 entries, tree_param.num_nodes is 5"},
		{"default_left too long", func(d map[string]any) { tree(d, 1)["default_left"] = []int{1, 0, 0, 0} },
			"tree 1: default_left has 4 entries, tree_param.num_nodes is 3"},
		{"split_type of the wrong length", func(d map[string]any) { tree(d, 1)["split_type"] = []int{1} },
			"tree 1: split_type has 1 entries"},
		{"missing right_children", func(d map[string]any) { delete(tree(d, 0), "right_children") },
			"tree 0: right_children has 0 entries"},
		{"missing tree_param", func(d map[string]any) { delete(tree(d, 0), "tree_param") },
			"tree 0: field tree_param is missing"},
		{"split feature out of range", func(d map[string]any) { tree(d, 0)["split_indices"] = []int{0, 2, 0, 0, 0} },
			"tree 0: split_indices[1] = 2 is out of range for num_feature 2"},
		{"unknown split type", func(d map[string]any) { tree(d, 0)["split_type"] = []int{0, 3, 0, 0, 0} },
			"tree 0: split_type[1] = 3 is unknown"},
		{"categorical split without categories", func(d map[string]any) {
			t := tree(d, 1)
			t["categories_nodes"], t["categories_segments"], t["categories_sizes"], t["categories"] = []int{}, []int{}, []int{}, []int{}
		}, "tree 1: node 0 is a categorical split but categories_nodes does not list it"},
		{"category arrays disagree", func(d map[string]any) { tree(d, 1)["categories_sizes"] = []int{2, 1} },
			"tree 1: categories_nodes, categories_segments and categories_sizes have 1, 1 and 2 entries"},
		{"category segment outside categories", func(d map[string]any) { tree(d, 1)["categories_sizes"] = []int{3} },
			"tree 1: categories_segments[0] = 0 with categories_sizes[0] = 3 is outside categories (2 entries)"},
		{"negative category", func(d map[string]any) { tree(d, 1)["categories"] = []int{0, -2} },
			"tree 1: categories[1] = -2 is out of range"},
		{"categories for a numerical node", func(d map[string]any) { tree(d, 1)["split_type"] = []int{0, 0, 0} },
			"tree 1: categories_nodes[0] = 0 is not a categorical split"},
		{"vector leaves", func(d map[string]any) { tree(d, 0)["tree_param"].(map[string]any)["size_leaf_vector"] = "3" },
			"tree 0: vector leaves (size_leaf_vector 3"},
		{"num_nodes not an integer", func(d map[string]any) { tree(d, 0)["tree_param"].(map[string]any)["num_nodes"] = "five" },
			`tree 0: tree_param.num_nodes = "five" is not an integer`},
		{"dart weight_drop of the wrong length", func(d map[string]any) {
			gb := at(d, "learner", "gradient_booster")
			at(d, "learner")["gradient_booster"] = map[string]any{"name": "dart", "gbtree": gb, "weight_drop": []float64{1}}
		}, "weight_drop has 1 entries for 2 trees"},
		{"array where an object belongs", func(d map[string]any) { at(d, "learner")["objective"] = []int{1} },
			"not a valid XGBoost JSON model"},
		{"default_left of strings", func(d map[string]any) { tree(d, 1)["default_left"] = []string{"yes", "no", "no"} },
			"default_left: want a boolean or 0/1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := base()
			if _, err := Load(bytes.NewReader(encode(t, doc))); err != nil {
				t.Fatalf("the unchanged model does not load: %v", err)
			}
			tt.mutate(doc)
			checkBadModel(t, encode(t, doc), tt.want)
		})
	}

	raw := encode(t, base())
	rawTests := []struct {
		name string
		data []byte
		want string
	}{
		{"truncated JSON", raw[:len(raw)/2], "unexpected end of JSON input"},
		{"empty input", nil, "not a valid XGBoost JSON model"},
		{"not JSON", []byte("booster[0]:\n0:[f0<0.5]"), "not a valid XGBoost JSON model"},
		{"bare NaN where an object belongs", []byte(`{"learner": NaN}`), "not a valid XGBoost JSON model"},
	}
	for _, tt := range rawTests {
		t.Run(tt.name, func(t *testing.T) { checkBadModel(t, tt.data, tt.want) })
	}

	t.Run("larger than the size limit", func(t *testing.T) {
		defer func(old int64) { sizeLimit = old }(sizeLimit)
		sizeLimit = int64(len(raw) - 1)
		checkBadModel(t, raw, "the model is larger than")
	})
}

func TestWithNonFinite_QuotesTokensOutsideStrings(t *testing.T) {
	tests := []struct{ in, want string }{
		{`[NaN,1,-Infinity,Infinity]`, `["NaN",1,"-Infinity","Infinity"]`},
		{`{"a":"NaN \" Infinity","b":NaN}`, `{"a":"NaN \" Infinity","b":"NaN"}`},
		{`{"a\\":NaN}`, `{"a\\":"NaN"}`},
		{`[1,2]`, `[1,2]`},
	}
	for _, tt := range tests {
		if got := string(withNonFinite([]byte(tt.in))); got != tt.want {
			t.Errorf("withNonFinite(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func checkBadModel(t *testing.T, data []byte, want string) {
	t.Helper()
	m, err := Load(bytes.NewReader(data))
	if err == nil {
		t.Fatalf("loaded %v, want an error naming %q", m, want)
	}
	if !errors.Is(err, ml.ErrBadModel) || !strings.Contains(err.Error(), want) {
		t.Errorf("error %q, want ErrBadModel naming %q", err, want)
	}
}

// testTree is a hand-made tree in XGBoost's JSON array layout.
type testTree struct {
	left, right, feature []int
	cond                 []float64
	defaultLeft          []bool
	splitType            []int // nil: a file without categorical fields
	catNodes, cats       []int // one categorical node at most: its categories are all of cats
}

// stump splits on feature f < cond: leaf lo on the left, hi on the right.
func stump(f int, cond, lo, hi float64, defaultLeft bool) testTree {
	return testTree{
		left: []int{1, -1, -1}, right: []int{2, -1, -1}, feature: []int{f, 0, 0},
		cond: []float64{cond, lo, hi}, defaultLeft: []bool{defaultLeft, false, false},
	}
}

// catStump sends the categories cats of feature f right (leaf hi), others left (leaf lo).
func catStump(f int, cats []int, lo, hi float64, defaultLeft bool) testTree {
	tt := stump(f, 0, lo, hi, defaultLeft)
	tt.splitType = []int{1, 0, 0}
	tt.catNodes, tt.cats = []int{0}, cats
	return tt
}

// deepTree has two levels: f0 < 0.5 then f1 < 0.5 on the left.
func deepTree() testTree {
	return testTree{
		left: []int{1, 3, -1, -1, -1}, right: []int{2, 4, -1, -1, -1}, feature: []int{0, 1, 0, 0, 0},
		cond: []float64{0.5, 0.5, 1, 2, 3}, defaultLeft: []bool{true, false, false, false, false},
	}
}

func (tt testTree) doc() map[string]any {
	n := len(tt.left)
	d := map[string]any{
		"tree_param":       map[string]any{"num_nodes": strconv.Itoa(n), "num_feature": "2", "size_leaf_vector": "0"},
		"left_children":    tt.left,
		"right_children":   tt.right,
		"split_indices":    tt.feature,
		"split_conditions": tt.cond,
		"default_left":     tt.defaultLeft,
		"parents":          make([]int, n),
		"base_weights":     make([]float64, n),
	}
	if tt.splitType != nil {
		d["split_type"] = tt.splitType
		d["categories_nodes"] = tt.catNodes
		d["categories_segments"] = []int{0}
		d["categories_sizes"] = []int{len(tt.cats)}
		d["categories"] = tt.cats
	}
	return d
}

// modelDoc builds a model with two features as XGBoost 2.0 lays it out.
func modelDoc(objective, baseScore string, numClass int, trees []testTree, treeInfo []int) map[string]any {
	docs := make([]map[string]any, len(trees))
	for i, tt := range trees {
		docs[i] = tt.doc()
		docs[i]["id"] = i
	}
	return map[string]any{
		"version": []int{2, 0, 0},
		"learner": map[string]any{
			"attributes": map[string]any{},
			"gradient_booster": map[string]any{
				"name": "gbtree",
				"model": map[string]any{
					"gbtree_model_param": map[string]any{"num_trees": strconv.Itoa(len(trees)), "num_parallel_tree": "1"},
					"trees":              docs,
					"tree_info":          treeInfo,
				},
			},
			"learner_model_param": map[string]any{
				"base_score": baseScore, "num_class": strconv.Itoa(numClass), "num_feature": "2", "num_target": "1",
			},
			"objective": map[string]any{"name": objective},
		},
	}
}

// at walks a path of objects in doc.
func at(doc map[string]any, path ...string) map[string]any {
	for _, key := range path {
		doc = doc[key].(map[string]any)
	}
	return doc
}

func encode(t testing.TB, doc map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustLoad(t *testing.T, doc map[string]any) ml.Model {
	t.Helper()
	m, err := Load(bytes.NewReader(encode(t, doc)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func loadFile(t *testing.T, name string) ml.Model {
	t.Helper()
	m, err := Load(bytes.NewReader(readFile(t, testdata+name)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func predictRows(t *testing.T, m ml.Model, rows [][]float64) ml.Tensor {
	t.Helper()
	out, err := m.Predict(context.Background(), []ml.Tensor{{
		Name: "input", Shape: []int{len(rows), len(rows[0])}, Data: slices.Concat(rows...),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 {
		t.Fatalf("%d outputs, want 1", len(out))
	}
	return out[0]
}

// readLibSVM reads "label index:value ..." lines into rows of width features;
// an absent feature is missing (NaN).
func readLibSVM(t *testing.T, path string, features int) [][]float64 {
	t.Helper()
	var rows [][]float64
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, path)))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		row := slices.Repeat([]float64{math.NaN()}, features)
		for _, f := range fields[1:] {
			idx, val, ok := strings.Cut(f, ":")
			i, err1 := strconv.Atoi(idx)
			v, err2 := strconv.ParseFloat(val, 64)
			if !ok || err1 != nil || err2 != nil || i < 0 || i >= features {
				t.Fatalf("%s: bad field %q", path, f)
			}
			row[i] = v
		}
		rows = append(rows, row)
	}
	return rows
}

func readFloats(t *testing.T, path string) []float64 {
	t.Helper()
	var out []float64
	for _, line := range strings.Fields(string(readFile(t, path))) {
		v, err := strconv.ParseFloat(line, 64)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, v)
	}
	return out
}

func specsEqual(a, b []ml.TensorSpec) bool {
	return slices.EqualFunc(a, b, func(x, y ml.TensorSpec) bool {
		return x.Name == y.Name && x.DataType == y.DataType && slices.Equal(x.Shape, y.Shape)
	})
}
