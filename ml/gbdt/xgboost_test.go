package gbdt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/dmitryikh/leaves"

	"github.com/kilnml/kiln/ml"
)

func TestLoadXGBoost_Schema(t *testing.T) {
	s := load(t, LoadXGBoost, xgAgaricus).Schema()
	if len(s.Inputs) != 1 || s.Inputs[0].Name != "input" || s.Inputs[0].DataType != ml.FP64 || !slices.Equal(s.Inputs[0].Shape, []int{-1, 127}) {
		t.Errorf("inputs %+v, want one FP64 \"input\" of shape [-1, 127]", s.Inputs)
	}
	if len(s.Outputs) != 1 || s.Outputs[0].Name != "output" || !slices.Equal(s.Outputs[0].Shape, []int{-1}) {
		t.Errorf("outputs %+v, want one \"output\" of shape [-1]", s.Outputs)
	}
	if s.FeatureNames != nil {
		t.Errorf("feature names %v; the legacy binary format has none", s.FeatureNames)
	}
}

func TestXGBoost_MatchesXGBoostPredictions(t *testing.T) {
	m := load(t, LoadXGBoost, xgAgaricus)
	// Features absent from a libsvm line are missing to XGBoost: NaN here.
	rows := readLibsvm(t, "../testdata/xgboost/agaricus_test.libsvm", 127)
	want := readRows(t, "../testdata/xgboost/xgagaricus_true_predictions.txt", 0)
	if len(rows) != 1611 || len(want) != 1611 {
		t.Fatalf("test data: %d rows, %d predictions", len(rows), len(want))
	}
	out := predict(t, m, rows)
	if !slices.Equal(out.Shape, []int{1611}) {
		t.Fatalf("output shape %v, want [1611]", out.Shape)
	}
	assertClose(t, out.Data, flat(want), tolerance)
}

func TestXGBoost_MissingValues(t *testing.T) {
	m := load(t, LoadXGBoost, xgAgaricus)
	direct, err := leaves.XGEnsembleFromFile(xgAgaricus, true)
	if err != nil {
		t.Fatal(err)
	}
	// Dense rows of 0 and 1 (agaricus features are indicators) with some
	// features missing; leaves routes NaN to each split's default side.
	rows := readLibsvm(t, "../testdata/xgboost/agaricus_test.libsvm", 127)
	var missing [][]float64
	for i, row := range rows[:20] {
		dense := make([]float64, len(row))
		for j, v := range row {
			if !math.IsNaN(v) {
				dense[j] = v
			}
		}
		missing = append(missing, withNaN(dense, i, 20+i, 29, 56, 60+i, 100-i, 108))
	}
	missing = append(missing, withNaN(rows[0]))
	out := predict(t, m, missing)
	for i, row := range missing {
		assertClose(t, out.Data[i:i+1], leavesPredict(t, direct, row), 1e-12)
	}
}

// xgbNode is a node of a handmade legacy binary model.
type xgbNode struct {
	left, right int32 // -1 for a leaf
	feature     uint32
	defaultLeft bool
	value       float32 // split threshold or leaf value
}

func xgbLeaf(v float32) xgbNode { return xgbNode{left: -1, right: -1, value: v} }

func xgbSplit(feature uint32, threshold float32, left, right int32, defaultLeft bool) xgbNode {
	return xgbNode{left: left, right: right, feature: feature, value: threshold, defaultLeft: defaultLeft}
}

// xgbSpec describes a handmade model; bytes writes it in the layout of
// XGBoost's legacy binary format.
type xgbSpec struct {
	objective    string
	booster      string // gbtree when empty
	features     uint32
	numClass     int32
	groups       int32 // num_output_group; 1 when 0
	major, minor uint32
	baseScore    float32
	trees        [][]xgbNode // tree i adds to group i % groups
}

func (s xgbSpec) bytes() []byte {
	var b bytes.Buffer
	w := func(v any) {
		if err := binary.Write(&b, binary.LittleEndian, v); err != nil {
			panic(err)
		}
	}
	str := func(s string) { w(uint64(len(s))); b.WriteString(s) }
	groups := max(s.groups, 1)
	booster := s.booster
	if booster == "" {
		booster = "gbtree"
	}
	// LearnerModelParam
	w(s.baseScore)
	w(s.features)
	w(s.numClass)
	w([2]int32{})
	w([2]uint32{s.major, s.minor})
	w([27]int32{})
	str(s.objective)
	str(booster)
	// GBTreeModelParam
	w([4]int32{int32(len(s.trees)), 1, int32(s.features), 0})
	w(int64(0))
	w([2]int32{groups, 0})
	w([32]int32{})
	for _, tree := range s.trees {
		// TreeParam
		w([6]int32{1, int32(len(tree)), 0, 0, int32(s.features), 0})
		w([31]int32{})
		for _, n := range tree {
			sindex := n.feature
			if n.defaultLeft {
				sindex |= 1 << 31
			}
			w(struct {
				parent, left, right int32
				sindex              uint32
				value               float32
			}{0, n.left, n.right, sindex, n.value})
		}
		w(make([]byte, 16*len(tree))) // node statistics
	}
	for i := range s.trees {
		w(int32(i % int(groups)))
	}
	if booster == "dart" {
		w(uint64(len(s.trees)))
		for range s.trees {
			w(float32(1))
		}
	}
	return b.Bytes()
}

// oneSplit is a tree: feature 0 < threshold ? -1 : +1, missing goes left.
func oneSplit(threshold float32) []xgbNode {
	return []xgbNode{xgbSplit(0, threshold, 1, 2, true), xgbLeaf(-1), xgbLeaf(1)}
}

func TestXGBoost_SplitRuleIsXGBoosts(t *testing.T) {
	tenth := float32(0.1) // 0.100000001490116...
	tests := []struct {
		name      string
		threshold float32
		x, want   float64
	}{
		{"below", 0.5, 0.4999, -1},
		{"equal goes right", 0.5, 0.5, 1},
		{"above", 0.5, 0.6, 1},
		{"missing takes the default", 0.5, math.NaN(), -1},
		{"rounds to the float32 threshold: right", tenth, 0.1, 1},
		{"just below in float32: left", tenth, float64(math.Nextafter32(tenth, 0)), -1},
		{"minus infinity", 0.5, math.Inf(-1), -1},
		{"plus infinity", 0.5, math.Inf(1), 1},
		{"too large for float32", 0.5, 1e300, 1},
		{"negative zero below a positive threshold", 1e-30, math.Copysign(0, -1), -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := xgbSpec{objective: "reg:squarederror", features: 1, trees: [][]xgbNode{oneSplit(tt.threshold)}}
			m, err := LoadXGBoost(bytes.NewReader(spec.bytes()))
			if err != nil {
				t.Fatal(err)
			}
			out := predict(t, m, [][]float64{{tt.x}})
			if out.Data[0] != tt.want {
				t.Errorf("x = %v, threshold %v: got %v, want %v", tt.x, tt.threshold, out.Data[0], tt.want)
			}
		})
	}
	// leaves alone uses x <= threshold, which is why Predict adjusts x.
	e, err := leaves.XGEnsembleFromReader(bufioReader(xgbSpec{objective: "reg:squarederror", features: 1, trees: [][]xgbNode{oneSplit(0.5)}}.bytes()), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.PredictSingle([]float64{0.5}, 0); got != -1 {
		t.Errorf("leaves sends 0.5 to %v; the adjustment may no longer be needed", got)
	}
}

func TestXGBoost_Objectives(t *testing.T) {
	sigmoid := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	logit := func(p float64) float64 { return math.Log(p / (1 - p)) }
	// Three one-leaf trees, one per class.
	classes := func(a, b, c float32) [][]xgbNode { return [][]xgbNode{{xgbLeaf(a)}, {xgbLeaf(b)}, {xgbLeaf(c)}} }
	softmax := func(x ...float64) []float64 {
		var sum float64
		out := make([]float64, len(x))
		for i, v := range x {
			out[i] = math.Exp(v)
			sum += out[i]
		}
		for i := range out {
			out[i] /= sum
		}
		return out
	}
	split := [][]xgbNode{oneSplit(0.5)} // x = 0 gives margin -1 before base_score
	tests := []struct {
		name  string
		spec  xgbSpec
		want  []float64
		shape []int
	}{
		{"squarederror, 0.x stores a margin", xgbSpec{objective: "reg:squarederror", baseScore: 0.5, trees: split}, []float64{-0.5}, []int{1}},
		{"squarederror, 1.x", xgbSpec{objective: "reg:squarederror", major: 1, minor: 7, baseScore: 0.5, trees: split}, []float64{-0.5}, []int{1}},
		{"reg:linear", xgbSpec{objective: "reg:linear", trees: split}, []float64{-1}, []int{1}},
		{"logistic, 0.x margin 0", xgbSpec{objective: "binary:logistic", trees: split}, []float64{sigmoid(-1)}, []int{1}},
		{"logistic, 0.x margin 0.5", xgbSpec{objective: "binary:logistic", baseScore: 0.5, trees: split}, []float64{sigmoid(-0.5)}, []int{1}},
		{"logistic, 1.x probability 0.5", xgbSpec{objective: "binary:logistic", major: 1, baseScore: 0.5, trees: split}, []float64{sigmoid(-1)}, []int{1}},
		{"reg:logistic, 1.x probability 0.2", xgbSpec{objective: "reg:logistic", major: 1, baseScore: 0.2, trees: split}, []float64{sigmoid(-1 + logit(float64(float32(0.2))))}, []int{1}},
		{"logitraw, 1.3 converts base_score", xgbSpec{objective: "binary:logitraw", major: 1, minor: 3, baseScore: 0.2, trees: split}, []float64{-1 + logit(float64(float32(0.2)))}, []int{1}},
		{"logitraw, 1.4 keeps base_score", xgbSpec{objective: "binary:logitraw", major: 1, minor: 4, baseScore: 0.2, trees: split}, []float64{-1 + float64(float32(0.2))}, []int{1}},
		{"poisson, 0.x", xgbSpec{objective: "count:poisson", baseScore: 0.5, trees: split}, []float64{math.Exp(-0.5)}, []int{1}},
		{"gamma, 1.x", xgbSpec{objective: "reg:gamma", major: 1, baseScore: 2, trees: split}, []float64{math.Exp(-1 + math.Log(2))}, []int{1}},
		{"softprob", xgbSpec{objective: "multi:softprob", numClass: 3, groups: 3, baseScore: 0.5, trees: classes(1, 2, 3)}, softmax(1.5, 2.5, 3.5), []int{1, 3}},
		{"softprob, large margins", xgbSpec{objective: "multi:softprob", numClass: 3, groups: 3, trees: classes(1000, 1000, -1000)}, []float64{0.5, 0.5, 0}, []int{1, 3}},
		{"softprob, dart", xgbSpec{objective: "multi:softprob", booster: "dart", numClass: 3, groups: 3, trees: classes(0, 0, 0)}, []float64{1. / 3, 1. / 3, 1. / 3}, []int{1, 3}},
		{"softmax gives the class index", xgbSpec{objective: "multi:softmax", numClass: 3, groups: 3, trees: classes(1, 3, 2)}, []float64{1}, []int{1}},
		{"softmax, first of a tie", xgbSpec{objective: "multi:softmax", numClass: 3, groups: 3, trees: classes(1, 3, 3)}, []float64{1}, []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.features = 1
			m, err := LoadXGBoost(bytes.NewReader(tt.spec.bytes()))
			if err != nil {
				t.Fatal(err)
			}
			wantSchema := append([]int{-1}, tt.shape[1:]...)
			if got := m.Schema().Outputs[0].Shape; !slices.Equal(got, wantSchema) {
				t.Errorf("schema output shape %v, want %v", got, wantSchema)
			}
			out := predict(t, m, [][]float64{{0}})
			if !slices.Equal(out.Shape, tt.shape) {
				t.Errorf("output shape %v, want %v", out.Shape, tt.shape)
			}
			assertClose(t, out.Data, tt.want, 1e-7)
		})
	}
}

func TestLoadXGBoost_RejectsBadModels(t *testing.T) {
	good := xgbSpec{objective: "binary:logistic", features: 2, trees: [][]xgbNode{
		{xgbSplit(0, 0.5, 1, 2, true), xgbSplit(1, 0.5, 3, 4, false), xgbLeaf(1), xgbLeaf(2), xgbLeaf(3)},
	}}
	if _, err := LoadXGBoost(bytes.NewReader(good.bytes())); err != nil {
		t.Fatalf("the base model does not load: %v", err)
	}
	withTree := func(nodes ...xgbNode) xgbSpec {
		s := good
		s.trees = [][]xgbNode{nodes}
		return s
	}
	// Byte offsets in the layout bytes writes: the objective's length, then
	// the first tree's num_nodes.
	objLen := 136
	numNodes := objLen + 8 + len(good.objective) + 8 + len("gbtree") + 160 + 4
	patch := func(at int, v uint64, size int) []byte {
		b := good.bytes()
		if size == 4 {
			binary.LittleEndian.PutUint32(b[at:], uint32(v))
		} else {
			binary.LittleEndian.PutUint64(b[at:], v)
		}
		return b
	}
	spec := func(f func(*xgbSpec)) []byte {
		s := good
		f(&s)
		return s.bytes()
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"child links back to the root", withTree(xgbSplit(0, 0.5, 1, 2, true), xgbSplit(1, 0.5, 0, 2, false), xgbLeaf(1)).bytes(), "out of range"},
		{"node reached twice", withTree(xgbSplit(0, 0.5, 1, 1, true), xgbSplit(1, 0.5, 2, 3, false), xgbLeaf(1), xgbLeaf(2)).bytes(), "reached twice"},
		{"child beyond the nodes", withTree(xgbSplit(0, 0.5, 1, 9, true), xgbLeaf(1), xgbLeaf(2)).bytes(), "child 9 is out of range"},
		{"split feature beyond num_feature", withTree(xgbSplit(2, 0.5, 1, 2, true), xgbLeaf(1), xgbLeaf(2)).bytes(), "split feature 2"},
		{"root is a leaf of a larger tree", withTree(xgbLeaf(1), xgbLeaf(2)).bytes(), "root is a leaf"},
		{"huge objective length", patch(objLen, 1<<60, 8), "objective name"},
		{"huge num_nodes", patch(numNodes, math.MaxInt32, 4), "nodes"},
		{"negative num_nodes", patch(numNodes, uint64(1<<32-5), 4), "num_nodes is -5"},
		{"no features", spec(func(s *xgbSpec) { s.features = 0 }), "num_feature 0"},
		{"no trees", spec(func(s *xgbSpec) { s.trees = nil }), "num_trees is 0"},
		{"gblinear", spec(func(s *xgbSpec) { s.booster = "gblinear" }), `booster "gblinear"`},
		{"XGBoost 2 binary", spec(func(s *xgbSpec) { s.major = 2 }), "save the model as JSON"},
		{"unsupported objective", spec(func(s *xgbSpec) { s.objective = "rank:pairwise" }), `objective "rank:pairwise" is not supported`},
		{"multiclass with one group", spec(func(s *xgbSpec) { s.objective = "multi:softprob"; s.numClass = 3 }), "want num_class = groups >= 2"},
		{"num_class disagrees with groups", spec(func(s *xgbSpec) {
			s.objective, s.numClass, s.groups = "multi:softprob", 2, 3
			s.trees = append(s.trees, s.trees[0], s.trees[0])
		}), "want num_class = groups >= 2"},
		{"binary with three groups", spec(func(s *xgbSpec) { s.groups = 3; s.trees = append(s.trees, s.trees[0], s.trees[0]) }), "3 output groups: want 1"},
		{"probability base_score out of range", spec(func(s *xgbSpec) { s.major, s.baseScore = 1, 1.5 }), "must be in [0, 1]"},
		{"NaN base_score", spec(func(s *xgbSpec) { s.baseScore = float32(math.NaN()) }), "must be finite"},
		{"tree_info missing", good.bytes()[:len(good.bytes())-4], "tree_info"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := LoadXGBoost(bytes.NewReader(tt.data))
			if !errors.Is(err, ml.ErrBadModel) {
				t.Fatalf("got %v, %v; want an error wrapping ml.ErrBadModel", m, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestLoadXGBoost_BinfPrefix(t *testing.T) {
	b := readFile(t, xgAgaricus)
	m := load(t, LoadXGBoost, xgAgaricus)
	prefixed, err := LoadXGBoost(bytes.NewReader(append([]byte("binf"), b...)))
	if err != nil {
		t.Fatal(err)
	}
	rows := readLibsvm(t, "../testdata/xgboost/agaricus_test.libsvm", 127)[:50]
	assertClose(t, predict(t, prefixed, rows).Data, predict(t, m, rows).Data, 0)
}
