package gbdt

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"

	"github.com/kilnml/kiln/ml/internal/xgbobj"
	"github.com/kilnml/kiln/ml/train"
)

// treeNode is a node of a trained tree. A leaf has left == -1 and its
// output in value; a split sends a row left when float32(x) < cond, or,
// during training, when the row's bin code is at most bin; a missing value
// goes left when defaultLeft.
type treeNode struct {
	left, right int32
	parent      int32 // -1 at the root
	feature     int32
	bin         int32
	defaultLeft bool
	cond        float32
	value       float32 // the node's weight times the learning rate; a leaf's output
	gain        float32
	hess        float32
}

// tree is one regression tree; it adds to the margin of output group.
type tree struct {
	nodes []treeNode
	group int
}

// leaf returns the output of the leaf row falls in, comparing in float32 as
// XGBoost and package xgbjson do.
func (t *tree) leaf(row []float32) float32 {
	i := int32(0)
	for {
		n := &t.nodes[i]
		if n.left < 0 {
			return n.value
		}
		x := row[n.feature]
		var left bool
		if x != x {
			left = n.defaultLeft
		} else {
			left = x < n.cond
		}
		if left {
			i = n.left
		} else {
			i = n.right
		}
	}
}

// leafByCode is leaf for training row r of m, routed by its bin codes.
func (t *tree) leafByCode(m *binMatrix, r int) float32 {
	i := int32(0)
	for {
		n := &t.nodes[i]
		if n.left < 0 {
			return n.value
		}
		c := int32(m.codes[int(n.feature)*m.rows+r])
		left := c <= n.bin
		if c == m.missCode[n.feature] {
			left = n.defaultLeft
		}
		if left {
			i = n.left
		} else {
			i = n.right
		}
	}
}

// ensemble is a trained model: what the JSON file says, and how the trainer
// itself predicts with it.
type ensemble struct {
	task       train.Task
	objective  string
	numClass   int // outputs per row: 1, or the classes of a multiclass model
	numFeature int
	// baseScore is base_score as written in the file, in output space;
	// baseMargin is the margin it means (xgbobj's BaseMargin of the number
	// the string parses to, exactly as package xgbjson computes it).
	baseScore    string
	baseMargin   float64
	trees        []*tree
	featureNames []string
}

// predict returns the model's outputs for the rows of fr: a value per row,
// or numClass probabilities per row for a multiclass model. It accumulates
// in float64 from float32 leaves in tree order, as package xgbjson does.
func (e *ensemble) predict(fr *train.Frame) []float64 {
	obj, _ := xgbobj.ByName(e.objective)
	k := e.numClass
	out := make([]float64, fr.Rows*k)
	row := make([]float32, fr.Cols)
	margin := make([]float64, k)
	for r := range fr.Rows {
		for j, v := range fr.Row(r) {
			row[j] = float32(v)
		}
		for j := range margin {
			margin[j] = e.baseMargin
		}
		for _, t := range e.trees {
			margin[t.group] += float64(t.leaf(row))
		}
		obj.Transform(margin, out[r*k:(r+1)*k])
	}
	return out
}

// The JSON file, as XGBoost 1.7 writes it (Booster.save_model("m.json")).
// XGBoost writes parameters as strings, so these are strings too.

type jsonModel struct {
	Learner jsonLearner `json:"learner"`
	Version [3]int      `json:"version"`
}

type jsonLearner struct {
	Attributes      map[string]string `json:"attributes"`
	FeatureNames    []string          `json:"feature_names"`
	FeatureTypes    []string          `json:"feature_types"`
	GradientBooster jsonBooster       `json:"gradient_booster"`
	ModelParam      jsonModelParam    `json:"learner_model_param"`
	Objective       map[string]any    `json:"objective"`
}

type jsonBooster struct {
	Model jsonGBTree `json:"model"`
	Name  string     `json:"name"`
}

type jsonGBTree struct {
	Param    map[string]string `json:"gbtree_model_param"`
	TreeInfo []int             `json:"tree_info"`
	Trees    []jsonTree        `json:"trees"`
}

type jsonModelParam struct {
	BaseScore        string `json:"base_score"`
	BoostFromAverage string `json:"boost_from_average"`
	NumClass         string `json:"num_class"`
	NumFeature       string `json:"num_feature"`
	NumTarget        string `json:"num_target"`
}

type jsonTree struct {
	BaseWeights        float32s          `json:"base_weights"`
	Categories         []int             `json:"categories"`
	CategoriesNodes    []int             `json:"categories_nodes"`
	CategoriesSegments []int             `json:"categories_segments"`
	CategoriesSizes    []int             `json:"categories_sizes"`
	DefaultLeft        []int             `json:"default_left"`
	ID                 int               `json:"id"`
	LeftChildren       []int32           `json:"left_children"`
	LossChanges        float32s          `json:"loss_changes"`
	Parents            []int32           `json:"parents"`
	RightChildren      []int32           `json:"right_children"`
	SplitConditions    float32s          `json:"split_conditions"`
	SplitIndices       []int32           `json:"split_indices"`
	SplitType          []int             `json:"split_type"`
	SumHessian         float32s          `json:"sum_hessian"`
	TreeParam          map[string]string `json:"tree_param"`
}

// float32s is written with the shortest decimal that reads back as the same
// float32, so that XGBoost and Kiln load exactly the thresholds and leaf
// values the trainer used.
type float32s []float32

func (a float32s) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 2+len(a)*12)
	b = append(b, '[')
	for i, v := range a {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendFloat32(b, v)
	}
	return append(b, ']'), nil
}

// appendFloat32 appends v as a JSON number that XGBoost reads as a float:
// its parser takes a number without a fraction or exponent ("0", "3") for
// an integer and then refuses it where a float belongs, so such a number
// gets ".0". Non-finite values cannot occur in a model the trainer builds;
// they are written as 0 rather than as invalid JSON.
func appendFloat32(b []byte, v float32) []byte {
	if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
		v = 0
	}
	start := len(b)
	b = strconv.AppendFloat(b, float64(v), 'g', -1, 32)
	if !bytes.ContainsAny(b[start:], ".e") {
		b = append(b, ".0"...)
	}
	return b
}

// rootParent is the parent XGBoost writes for a root node.
const rootParent = math.MaxInt32

// marshal writes the model as XGBoost 1.7 JSON.
func (e *ensemble) marshal() ([]byte, error) {
	numClass := "0"
	if e.task == train.Multiclass {
		numClass = strconv.Itoa(e.numClass)
	}
	objective := map[string]any{"name": e.objective}
	if e.task == train.Multiclass {
		objective["softmax_multiclass_param"] = map[string]string{"num_class": numClass}
	} else {
		objective["reg_loss_param"] = map[string]string{"scale_pos_weight": "1"}
	}
	names, types := []string{}, []string{}
	if e.featureNames != nil {
		names = e.featureNames
		for range names {
			types = append(types, "float")
		}
	}
	gbt := jsonGBTree{
		Param: map[string]string{
			"num_parallel_tree": "1",
			"num_trees":         strconv.Itoa(len(e.trees)),
			"size_leaf_vector":  "0",
		},
		TreeInfo: make([]int, len(e.trees)),
		Trees:    make([]jsonTree, len(e.trees)),
	}
	numFeature := strconv.Itoa(e.numFeature)
	for i, t := range e.trees {
		gbt.TreeInfo[i] = t.group
		gbt.Trees[i] = t.json(i, numFeature)
	}
	m := jsonModel{
		Learner: jsonLearner{
			Attributes:      map[string]string{},
			FeatureNames:    names,
			FeatureTypes:    types,
			GradientBooster: jsonBooster{Model: gbt, Name: "gbtree"},
			ModelParam: jsonModelParam{
				BaseScore:        e.baseScore,
				BoostFromAverage: "1",
				NumClass:         numClass,
				NumFeature:       numFeature,
				NumTarget:        "1",
			},
			Objective: objective,
		},
		Version: [3]int{1, 7, 6},
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&m); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func (t *tree) json(id int, numFeature string) jsonTree {
	n := len(t.nodes)
	jt := jsonTree{
		BaseWeights:        make(float32s, n),
		Categories:         []int{},
		CategoriesNodes:    []int{},
		CategoriesSegments: []int{},
		CategoriesSizes:    []int{},
		DefaultLeft:        make([]int, n),
		ID:                 id,
		LeftChildren:       make([]int32, n),
		LossChanges:        make(float32s, n),
		Parents:            make([]int32, n),
		RightChildren:      make([]int32, n),
		SplitConditions:    make(float32s, n),
		SplitIndices:       make([]int32, n),
		SplitType:          make([]int, n),
		SumHessian:         make(float32s, n),
		TreeParam: map[string]string{
			"num_deleted":      "0",
			"num_feature":      numFeature,
			"num_nodes":        strconv.Itoa(n),
			"size_leaf_vector": "0",
		},
	}
	for i, nd := range t.nodes {
		jt.BaseWeights[i] = nd.value
		jt.LeftChildren[i], jt.RightChildren[i] = nd.left, nd.right
		jt.Parents[i] = nd.parent
		if nd.parent < 0 {
			jt.Parents[i] = rootParent
		}
		jt.SumHessian[i] = nd.hess
		if nd.left < 0 {
			jt.SplitConditions[i] = nd.value
			continue
		}
		jt.SplitConditions[i] = nd.cond
		jt.SplitIndices[i] = nd.feature
		jt.LossChanges[i] = nd.gain
		if nd.defaultLeft {
			jt.DefaultLeft[i] = 1
		}
	}
	return jt
}
