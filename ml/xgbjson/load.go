package xgbjson

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/ml/internal/xgbobj"
)

// MaxModelSize is the largest model file Load reads: 512 MiB. XGBoost's JSON
// takes about 100 to 200 bytes per tree node, so this admits models of a few
// million nodes; Load holds the file and the decoded model in memory at once.
const MaxModelSize = 512 << 20

// sizeLimit is MaxModelSize; tests lower it.
var sizeLimit int64 = MaxModelSize

const (
	// maxOutputs bounds num_class and num_target: Predict allocates one
	// value per output and row.
	maxOutputs = 1 << 16
	// maxCategory is XGBoost's OutOfRangeCat, 2^24: categories are stored
	// in float32 inputs, which hold integers exactly only below it.
	maxCategory = 1 << 24
)

// Load reads an XGBoost JSON model from r. Errors wrap ml.ErrBadModel and say
// which field is at fault.
func Load(r io.Reader) (ml.Model, error) {
	data, err := io.ReadAll(io.LimitReader(r, sizeLimit+1))
	if err != nil {
		return nil, badModel("reading the model: %v", err)
	}
	if int64(len(data)) > sizeLimit {
		return nil, badModel("the model is larger than %d bytes", sizeLimit)
	}
	var f fileModel
	if err := json.Unmarshal(withNonFinite(data), &f); err != nil {
		return nil, badModel("not a valid XGBoost JSON model: %v", err)
	}
	m, err := build(&f)
	if err != nil {
		return nil, badModel("%v", err)
	}
	return m, nil
}

func badModel(format string, args ...any) error {
	return fmt.Errorf("%w: xgbjson: %s", ml.ErrBadModel, fmt.Sprintf(format, args...))
}

// build checks the decoded file and turns it into a model. Its errors, and
// those of the helpers below, are plain sentences; Load wraps them.
func build(f *fileModel) (*model, error) {
	l := f.Learner
	if l == nil {
		return nil, fmt.Errorf("field learner is missing")
	}
	if l.Objective == nil || l.Objective.Name == "" {
		return nil, fmt.Errorf("field learner.objective.name is missing")
	}
	obj, ok := xgbobj.ByName(l.Objective.Name)
	if !ok {
		return nil, fmt.Errorf("objective %q is not supported (supported: %s)", l.Objective.Name, xgbobj.Supported())
	}
	mp := l.ModelParam
	if mp == nil {
		return nil, fmt.Errorf("field learner.learner_model_param is missing")
	}
	const pp = "learner.learner_model_param."
	numFeature, err := intParam(pp+"num_feature", mp.NumFeature, -1, 1, math.MaxInt32)
	if err != nil {
		return nil, err
	}
	numClass, err := intParam(pp+"num_class", mp.NumClass, 0, 0, maxOutputs)
	if err != nil {
		return nil, err
	}
	numTarget, err := intParam(pp+"num_target", mp.NumTarget, 1, 1, maxOutputs)
	if err != nil {
		return nil, err
	}
	if numClass > 1 && numTarget > 1 {
		return nil, fmt.Errorf("num_class %d and num_target %d: a model cannot have both", numClass, numTarget)
	}
	outputs := max(numClass, numTarget, 1)
	if len(l.FeatureNames) != 0 && len(l.FeatureNames) != numFeature {
		return nil, fmt.Errorf("learner.feature_names has %d names for num_feature %d", len(l.FeatureNames), numFeature)
	}
	base, err := baseMargin(mp.BaseScore, obj, outputs, f.Version)
	if err != nil {
		return nil, err
	}

	gbt, weights, path, err := treeBooster(l.GradientBooster)
	if err != nil {
		return nil, err
	}
	if gbt.Param == nil || gbt.Param.NumTrees == nil {
		return nil, fmt.Errorf("field %s.gbtree_model_param.num_trees is missing", path)
	}
	numTrees, err := intParam(path+".gbtree_model_param.num_trees", gbt.Param.NumTrees, -1, 0, math.MaxInt32)
	if err != nil {
		return nil, err
	}
	if len(gbt.Trees) != numTrees {
		return nil, fmt.Errorf("%s.trees has %d trees, num_trees is %d", path, len(gbt.Trees), numTrees)
	}
	if len(gbt.TreeInfo) != numTrees {
		return nil, fmt.Errorf("%s.tree_info has %d entries for %d trees", path, len(gbt.TreeInfo), numTrees)
	}
	if len(weights) != 0 && len(weights) != numTrees {
		return nil, fmt.Errorf("weight_drop has %d entries for %d trees", len(weights), numTrees)
	}

	m := &model{
		obj:          obj,
		numFeature:   numFeature,
		outputs:      outputs,
		base:         base,
		trees:        make([]tree, numTrees),
		featureNames: slices.Clone(l.FeatureNames),
	}
	for i := range gbt.Trees {
		group := gbt.TreeInfo[i]
		if group < 0 || group >= outputs {
			return nil, fmt.Errorf("tree_info[%d] = %d is out of range for %d outputs", i, group, outputs)
		}
		weight := 1.0
		if len(weights) != 0 {
			weight = float64(weights[i])
			if math.IsNaN(weight) || math.IsInf(weight, 0) {
				return nil, fmt.Errorf("weight_drop[%d] is %v", i, weight)
			}
		}
		nodes, err := buildTree(&gbt.Trees[i], numFeature)
		if err != nil {
			return nil, fmt.Errorf("tree %d: %w", i, err)
		}
		m.trees[i] = tree{nodes: nodes, group: group, weight: weight}
	}
	return m, nil
}

// treeBooster finds the tree ensemble of a gbtree or dart booster, with the
// DART tree weights if any, and the JSON path of the ensemble for errors.
func treeBooster(gb *fileBooster) (gbt *fileGBTree, weights []num, path string, err error) {
	path = "learner.gradient_booster"
	if gb == nil {
		return nil, nil, "", fmt.Errorf("field %s is missing", path)
	}
	switch gb.Name {
	case "gbtree":
		path += ".model"
		gbt = gb.Model
	case "dart":
		if gb.GBTree == nil {
			return nil, nil, "", fmt.Errorf("field %s.gbtree is missing", path)
		}
		path += ".gbtree.model"
		gbt = gb.GBTree.Model
		weights = gb.WeightDrop
	case "":
		return nil, nil, "", fmt.Errorf("field %s.name is missing", path)
	default:
		return nil, nil, "", fmt.Errorf("booster %q is not supported (supported: gbtree, dart)", gb.Name)
	}
	if gbt == nil {
		return nil, nil, "", fmt.Errorf("field %s is missing", path)
	}
	if len(weights) == 0 {
		weights = gbt.WeightDrop
	}
	return gbt, weights, path, nil
}

// intParam parses an integer parameter. A nil p is missing: an error when
// def is negative, else def.
func intParam(name string, p *param, def, lo, hi int) (int, error) {
	if p == nil {
		if def < 0 {
			return 0, fmt.Errorf("field %s is missing", name)
		}
		return def, nil
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(*p)))
	if err != nil {
		return 0, fmt.Errorf("%s = %q is not an integer", name, string(*p))
	}
	if v < lo || v > hi {
		return 0, fmt.Errorf("%s = %d is out of range [%d, %d]", name, v, lo, hi)
	}
	return v, nil
}

// baseMargin parses base_score, written in the objective's output space as
// "5E-1" or, since XGBoost 3.1, "[5E-1]" (one value, or one per output), and
// converts it to margins, one per output.
func baseMargin(p *param, obj xgbobj.Objective, outputs int, version []int) ([]float64, error) {
	const name = "learner.learner_model_param.base_score"
	if p == nil {
		return nil, fmt.Errorf("field %s is missing", name)
	}
	s := strings.TrimSpace(string(*p))
	var values []float64
	if strings.HasPrefix(s, "[") || strings.HasPrefix(s, "(") {
		s = "[" + strings.TrimSuffix(strings.TrimSuffix(s[1:], "]"), ")") + "]"
		var arr []num
		if err := json.Unmarshal(withNonFinite([]byte(s)), &arr); err != nil {
			return nil, fmt.Errorf("%s = %q is not a number or an array of numbers", name, string(*p))
		}
		for _, v := range arr {
			values = append(values, float64(v))
		}
	} else {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("%s = %q is not a number", name, string(*p))
		}
		values = []float64{v}
	}
	switch len(values) {
	case 1:
		values = slices.Repeat(values, outputs)
	case outputs:
	default:
		return nil, fmt.Errorf("%s has %d values for %d outputs", name, len(values), outputs)
	}
	major, minor := fileVersion(version)
	for i, v := range values {
		margin, err := obj.BaseMargin(v, major, minor)
		if err != nil {
			return nil, fmt.Errorf("%s = %v: base_score %w", name, v, err)
		}
		values[i] = margin
	}
	return values, nil
}

// fileVersion returns the XGBoost version that wrote the file from its
// "version" ([major, minor, patch]). A file without one counts as new.
func fileVersion(version []int) (major, minor int) {
	if len(version) < 2 {
		return math.MaxInt, 0
	}
	return version[0], version[1]
}

// buildTree checks one tree's arrays and the nodes reachable from its root.
func buildTree(ft *fileTree, numFeature int) ([]node, error) {
	if ft.Param == nil {
		return nil, fmt.Errorf("field tree_param is missing")
	}
	n, err := intParam("tree_param.num_nodes", ft.Param.NumNodes, -1, 1, math.MaxInt32)
	if err != nil {
		return nil, err
	}
	leafSize, err := intParam("tree_param.size_leaf_vector", ft.Param.SizeLeafVector, 0, 0, math.MaxInt32)
	if err != nil {
		return nil, err
	}
	if leafSize > 1 {
		return nil, fmt.Errorf("vector leaves (size_leaf_vector %d, multi_strategy multi_output_tree) are not supported", leafSize)
	}
	for _, a := range []struct {
		name string
		len  int
	}{
		{"left_children", len(ft.LeftChildren)},
		{"right_children", len(ft.RightChildren)},
		{"split_indices", len(ft.SplitIndices)},
		{"split_conditions", len(ft.SplitConditions)},
		{"default_left", len(ft.DefaultLeft)},
	} {
		if a.len != n {
			return nil, fmt.Errorf("%s has %d entries, tree_param.num_nodes is %d", a.name, a.len, n)
		}
	}
	if ft.SplitType != nil && len(ft.SplitType) != n {
		return nil, fmt.Errorf("split_type has %d entries, tree_param.num_nodes is %d", len(ft.SplitType), n)
	}
	cats, err := categorySets(ft, n)
	if err != nil {
		return nil, err
	}

	nodes := make([]node, n)
	reached := make([]bool, n)
	reached[0] = true
	stack := []int{0}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		left, right := ft.LeftChildren[i], ft.RightChildren[i]
		if left == -1 {
			if right != -1 {
				return nil, fmt.Errorf("node %d: left child is -1 (a leaf) but right child is %d", i, right)
			}
			v := float64(float32(ft.SplitConditions[i]))
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("leaf %d has value %v", i, v)
			}
			nodes[i] = node{left: -1, right: -1, leaf: v}
			continue
		}
		for _, c := range []struct {
			field string
			child int
		}{{"left_children", left}, {"right_children", right}} {
			if c.child < 0 || c.child >= n {
				return nil, fmt.Errorf("%s[%d] = %d is out of range [0, %d)", c.field, i, c.child, n)
			}
			if reached[c.child] {
				return nil, fmt.Errorf("%s[%d] = %d: node %d is reached twice (a cycle or a shared subtree)", c.field, i, c.child, c.child)
			}
			reached[c.child] = true
			stack = append(stack, c.child)
		}
		feature := ft.SplitIndices[i]
		if feature < 0 || feature >= numFeature {
			return nil, fmt.Errorf("split_indices[%d] = %d is out of range for num_feature %d", i, feature, numFeature)
		}
		nd := node{
			left:        int32(left),
			right:       int32(right),
			feature:     int32(feature),
			defaultLeft: bool(ft.DefaultLeft[i]),
		}
		splitType := 0
		if ft.SplitType != nil {
			splitType = ft.SplitType[i]
		}
		switch splitType {
		case 0:
			nd.cond = float32(ft.SplitConditions[i])
		case 1:
			nd.cats = cats[i]
			if nd.cats == nil {
				return nil, fmt.Errorf("node %d is a categorical split but categories_nodes does not list it", i)
			}
		default:
			return nil, fmt.Errorf("split_type[%d] = %d is unknown (0 numerical, 1 categorical)", i, splitType)
		}
		nodes[i] = nd
	}
	return nodes, nil
}

// categorySets reads the categories of each categorical node: node
// categories_nodes[k] has categories[categories_segments[k]:][:categories_sizes[k]].
// These are the categories that go to the right child.
func categorySets(ft *fileTree, n int) (map[int][]int32, error) {
	k := len(ft.CategoriesNodes)
	if len(ft.CategoriesSegments) != k || len(ft.CategoriesSizes) != k {
		return nil, fmt.Errorf("categories_nodes, categories_segments and categories_sizes have %d, %d and %d entries; they must agree",
			k, len(ft.CategoriesSegments), len(ft.CategoriesSizes))
	}
	if k == 0 {
		return nil, nil
	}
	sets := make(map[int][]int32, k)
	for j, nid := range ft.CategoriesNodes {
		if nid < 0 || nid >= n {
			return nil, fmt.Errorf("categories_nodes[%d] = %d is out of range [0, %d)", j, nid, n)
		}
		if ft.SplitType == nil || ft.SplitType[nid] != 1 {
			return nil, fmt.Errorf("categories_nodes[%d] = %d is not a categorical split (split_type 1)", j, nid)
		}
		if sets[nid] != nil {
			return nil, fmt.Errorf("categories_nodes lists node %d twice", nid)
		}
		beg, size := ft.CategoriesSegments[j], ft.CategoriesSizes[j]
		if beg < 0 || size < 1 || beg > len(ft.Categories) || size > len(ft.Categories)-beg {
			return nil, fmt.Errorf("categories_segments[%d] = %d with categories_sizes[%d] = %d is outside categories (%d entries)",
				j, beg, j, size, len(ft.Categories))
		}
		set := make([]int32, size)
		for c, v := range ft.Categories[beg : beg+size] {
			if v < 0 || v >= maxCategory {
				return nil, fmt.Errorf("categories[%d] = %d is out of range [0, %d)", beg+c, v, maxCategory)
			}
			set[c] = int32(v)
		}
		slices.Sort(set)
		sets[nid] = set
	}
	return sets, nil
}
