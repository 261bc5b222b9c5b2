package xgbjson

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
)

// The file's structure, as far as prediction needs it. Fields the predictor
// does not use (loss_changes, sum_hessian, parents, base_weights, ...) are not
// declared, so encoding/json skips them without building them.

type fileModel struct {
	Version []int        `json:"version"`
	Learner *fileLearner `json:"learner"`
}

type fileLearner struct {
	FeatureNames    []string         `json:"feature_names"`
	GradientBooster *fileBooster     `json:"gradient_booster"`
	ModelParam      *fileModelParams `json:"learner_model_param"`
	Objective       *struct {
		Name string `json:"name"`
	} `json:"objective"`
}

type fileModelParams struct {
	BaseScore  *param `json:"base_score"`
	NumClass   *param `json:"num_class"`
	NumFeature *param `json:"num_feature"`
	NumTarget  *param `json:"num_target"`
}

// fileBooster holds gbtree ({"name": "gbtree", "model": ...}) and dart
// ({"name": "dart", "gbtree": {"model": ...}, "weight_drop": [...]}).
type fileBooster struct {
	Name       string       `json:"name"`
	Model      *fileGBTree  `json:"model"`
	GBTree     *fileBooster `json:"gbtree"`
	WeightDrop []num        `json:"weight_drop"`
}

type fileGBTree struct {
	Param *struct {
		NumTrees *param `json:"num_trees"`
	} `json:"gbtree_model_param"`
	Trees      []fileTree `json:"trees"`
	TreeInfo   []int      `json:"tree_info"`
	WeightDrop []num      `json:"weight_drop"` // XGBoost >= 3.4 keeps DART weights here
}

type fileTree struct {
	Param *struct {
		NumNodes       *param `json:"num_nodes"`
		SizeLeafVector *param `json:"size_leaf_vector"`
	} `json:"tree_param"`
	LeftChildren    []int  `json:"left_children"`
	RightChildren   []int  `json:"right_children"`
	SplitIndices    []int  `json:"split_indices"`
	SplitConditions []num  `json:"split_conditions"`
	DefaultLeft     []flag `json:"default_left"`
	// Absent in files written before categorical support (XGBoost < 1.4):
	// every split is numerical then.
	SplitType          []int `json:"split_type"`
	Categories         []int `json:"categories"`
	CategoriesNodes    []int `json:"categories_nodes"`
	CategoriesSegments []int `json:"categories_segments"`
	CategoriesSizes    []int `json:"categories_sizes"`
}

// num is a float that also takes the non-standard NaN, Infinity and -Infinity
// XGBoost writes (categorical nodes have split_condition NaN). withNonFinite
// quotes those tokens, so they reach UnmarshalJSON as strings.
type num float64

func (f *num) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `"NaN"`:
		*f = num(math.NaN())
		return nil
	case `"Infinity"`:
		*f = num(math.Inf(1))
		return nil
	case `"-Infinity"`:
		*f = num(math.Inf(-1))
		return nil
	}
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return fmt.Errorf("want a number, got %.40s", b)
	}
	// encoding/json has checked b is a JSON number, a subset of ParseFloat's syntax.
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("number %.40s: %w", b, err)
	}
	*f = num(v)
	return nil
}

// param is an XGBoost parameter value. XGBoost writes parameters as JSON
// strings ("2", "5E-1", "[5E-1]"); a JSON number is taken as well.
type param string

func (p *param) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		s, err := strconv.Unquote(string(b))
		if err != nil {
			return err
		}
		*p = param(s)
		return nil
	}
	var f num
	if err := f.UnmarshalJSON(b); err != nil {
		return err
	}
	*p = param(b)
	return nil
}

// flag is an element of default_left: XGBoost writes booleans in older
// versions and 0/1 in newer ones.
type flag bool

func (f *flag) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "true", "1":
		*f = true
	case "false", "0":
		*f = false
	default:
		return fmt.Errorf("default_left: want a boolean or 0/1, got %.40s", b)
	}
	return nil
}

// withNonFinite returns data with the bare tokens NaN, Infinity and -Infinity
// outside strings replaced by the strings "NaN", "Infinity" and "-Infinity",
// which encoding/json accepts. It returns data itself when there are none.
func withNonFinite(data []byte) []byte {
	var out []byte // nil until a token is replaced
	last := 0      // data[last:i] not yet copied to out
	inString := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inString {
			switch c {
			case '\\':
				i++ // skip the escaped byte
			case '"':
				inString = false
			}
			continue
		}
		var token string
		switch {
		case c == '"':
			inString = true
			continue
		case c == 'N' && bytes.HasPrefix(data[i:], []byte("NaN")):
			token = "NaN"
		case c == 'I' && bytes.HasPrefix(data[i:], []byte("Infinity")):
			token = "Infinity"
		case c == '-' && bytes.HasPrefix(data[i:], []byte("-Infinity")):
			token = "-Infinity"
		default:
			continue
		}
		if out == nil {
			out = make([]byte, 0, len(data)+len(data)/16)
		}
		out = append(out, data[last:i]...)
		out = append(out, '"')
		out = append(out, token...)
		out = append(out, '"')
		i += len(token) - 1
		last = i + 1
	}
	if out == nil {
		return data
	}
	return append(out, data[last:]...)
}
