package gbdt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/dmitryikh/leaves"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/ml/internal/xgbobj"
)

// maxOutputs bounds the output groups (classes) of an XGBoost model: leaves
// allocates one value per group for every row it scores.
const maxOutputs = 1 << 16

// LoadXGBoost reads an XGBoost model in the legacy binary format (what
// Booster.save_model writes to a file not named .json before XGBoost 2.0)
// with a gbtree or dart booster from r. Errors wrap ml.ErrBadModel.
func LoadXGBoost(r io.Reader) (ml.Model, error) {
	const format = ml.FormatXGBoost
	data, err := readModel(r, format)
	if err != nil {
		return nil, err
	}
	if data[0] == '{' {
		return nil, badModel(format, "this is a JSON model; load it as format %q", ml.FormatXGBoostJSON)
	}
	// XGBoost skips this prefix, which some writers (the R package) put
	// before the model; leaves does not know it.
	data = bytes.TrimPrefix(data, []byte("binf"))
	h, err := checkXGBoost(data)
	if err != nil {
		return nil, badModel(format, "%v", err)
	}
	obj, ok := xgbobj.ByName(h.objective)
	if !ok {
		return nil, badModel(format, "objective %q is not supported (supported: %s)", h.objective, xgbobj.Supported())
	}
	multi := obj == xgbobj.Softprob || obj == xgbobj.Softmax
	switch {
	case multi && (h.groups < 2 || h.numClass != h.groups):
		return nil, badModel(format, "objective %s with num_class %d and %d output groups: want num_class = groups >= 2", h.objective, h.numClass, h.groups)
	case !multi && h.groups != 1:
		return nil, badModel(format, "objective %s with %d output groups: want 1", h.objective, h.groups)
	}
	offset, err := h.baseOffset(obj)
	if err != nil {
		return nil, badModel(format, "base_score %v: %v", h.baseScore, err)
	}
	// Raw margins: leaves' transformation knows binary:logistic only.
	ens, err := loadEnsemble(format, leaves.XGEnsembleFromReader, data, false)
	if err != nil {
		return nil, err
	}
	if ens.NRawOutputGroups() != h.groups {
		return nil, badModel(format, "leaves reads %d output groups, the header says %d", ens.NRawOutputGroups(), h.groups)
	}
	m := newModel(format, ens, h.features, obj.Width(h.groups), nil)
	m.xgbSplits = true
	m.finish = func(raw, out []float64) {
		for k := range raw {
			raw[k] += offset
		}
		obj.Transform(raw, out)
	}
	return m, nil
}

// xgbSplitInputs rounds each value to float32, as XGBoost stores features,
// and moves it one float32 step up, so that leaves' test x <= t sends a row
// left exactly when XGBoost's float32(x) < t does. NaN stays NaN.
func xgbSplitInputs(data []float64) []float64 {
	out := make([]float64, len(data))
	up := float32(math.Inf(1))
	for i, v := range data {
		out[i] = float64(math.Nextafter32(float32(v), up))
	}
	return out
}

// xgbHeader is what LoadXGBoost needs from a legacy binary model.
type xgbHeader struct {
	baseScore    float32 // as stored: a margin before XGBoost 1.0
	features     int
	numClass     int
	major, minor uint32 // XGBoost version that wrote the file; 0.0 before 1.0
	objective    string
	groups       int // output groups: 1, or the classes
}

// checkXGBoost walks a legacy binary model as leaves will read it (the
// layout of XGBoost's LearnerModelParam, GBTreeModelParam and RegTree) and
// checks every length against the bytes left and every tree's links.
func checkXGBoost(data []byte) (h xgbHeader, err error) {
	r := xgbReader{rest: data}
	p, err := r.next(136, "learner parameters")
	if err != nil {
		return h, err
	}
	h.baseScore = math.Float32frombits(le.Uint32(p[0:]))
	nf := le.Uint32(p[4:])
	if nf == 0 || nf > math.MaxInt32 {
		return h, fmt.Errorf("num_feature %d is out of range [1, %d]", nf, math.MaxInt32)
	}
	h.features = int(nf)
	h.numClass = max(int(int32(le.Uint32(p[8:]))), 0)
	h.major, h.minor = le.Uint32(p[20:]), le.Uint32(p[24:])
	if h.major >= 2 {
		return h, fmt.Errorf("binary models of XGBoost %d.%d are not supported; save the model as JSON", h.major, h.minor)
	}
	obj, err := r.vector(1, "objective name")
	if err != nil {
		return h, err
	}
	h.objective = string(obj)
	booster, err := r.vector(1, "booster name")
	if err != nil {
		return h, err
	}
	if b := string(booster); b != "gbtree" && b != "dart" {
		return h, fmt.Errorf("booster %q is not supported (supported: gbtree, dart)", b)
	}
	g, err := r.next(160, "gbtree parameters")
	if err != nil {
		return h, err
	}
	trees := int32(le.Uint32(g[0:]))
	groups := int32(le.Uint32(g[24:]))
	if trees < 1 {
		return h, fmt.Errorf("num_trees is %d", trees)
	}
	if groups < 1 || groups > maxOutputs {
		return h, fmt.Errorf("num_output_group %d is out of range [1, %d]", groups, maxOutputs)
	}
	h.groups = int(groups)
	for i := range int(trees) {
		if err := r.tree(h.features); err != nil {
			return h, fmt.Errorf("tree %d: %w", i, err)
		}
	}
	if _, err := r.next(4*uint64(trees), "tree_info"); err != nil {
		return h, err
	}
	if string(booster) == "dart" {
		if _, err := r.vector(4, "weight_drop"); err != nil {
			return h, err
		}
	}
	return h, nil
}

var le = binary.LittleEndian

// xgbReader reads a legacy binary model with bounds checks.
type xgbReader struct {
	rest []byte
}

func (r *xgbReader) next(n uint64, what string) ([]byte, error) {
	if n > uint64(len(r.rest)) {
		return nil, fmt.Errorf("%s: %d bytes needed, %d left in the file", what, n, len(r.rest))
	}
	b := r.rest[:n]
	r.rest = r.rest[n:]
	return b, nil
}

// vector reads a dmlc vector: a uint64 count, then count items of size bytes.
func (r *xgbReader) vector(size uint64, what string) ([]byte, error) {
	b, err := r.next(8, what)
	if err != nil {
		return nil, err
	}
	n := le.Uint64(b)
	if n > uint64(len(r.rest))/size {
		return nil, fmt.Errorf("%s: %d items of %d bytes, %d bytes left in the file", what, n, size, len(r.rest))
	}
	return r.next(n*size, what)
}

// tree reads one RegTree: parameters, nodes, node statistics, leaf vector.
func (r *xgbReader) tree(features int) error {
	const nodeSize, statSize = 20, 16
	p, err := r.next(148, "tree parameters")
	if err != nil {
		return err
	}
	n := int32(le.Uint32(p[4:]))
	leafVector := int32(le.Uint32(p[20:]))
	if n < 1 {
		return fmt.Errorf("num_nodes is %d", n)
	}
	nodes, err := r.next(uint64(n)*nodeSize, "nodes")
	if err != nil {
		return err
	}
	if _, err := r.next(uint64(n)*statSize, "node statistics"); err != nil {
		return err
	}
	if leafVector > 0 {
		if _, err := r.vector(4, "leaf vector"); err != nil {
			return err
		}
	}
	if n == 1 {
		return nil // a single leaf; leaves takes its value
	}
	// A node is parent, cleft, cright int32, sindex uint32 (feature, and the
	// default direction in the top bit), value float32; cleft -1 is a leaf.
	cleft := func(i int) int32 { return int32(le.Uint32(nodes[i*nodeSize+4:])) }
	child := func(c int32) (int, error) {
		if c <= 0 || c >= n {
			return 0, fmt.Errorf("child %d is out of range [1, %d)", c, n)
		}
		if cleft(int(c)) == -1 {
			return -1, nil
		}
		return int(c), nil
	}
	return checkTree(int(n), func(i int) (int, int, error) {
		if cleft(i) == -1 {
			return 0, 0, errors.New("the root is a leaf in a tree of several nodes")
		}
		if f := le.Uint32(nodes[i*nodeSize+12:]) &^ (1 << 31); uint64(f) >= uint64(features) {
			return 0, 0, fmt.Errorf("split feature %d is out of range for %d features", f, features)
		}
		l, err := child(cleft(i))
		if err != nil {
			return 0, 0, err
		}
		rc, err := child(int32(le.Uint32(nodes[i*nodeSize+8:])))
		return l, rc, err
	})
}

// baseOffset is what to add to leaves' margins, which start from base_score
// as the file stores it, so that they start from base_score as XGBoost uses
// it: the same before 1.0, which stored a margin (XGBoost's binary loader
// takes it as it is, so it is not checked against the objective's range);
// converted by ObjFunction::ProbToMargin from 1.0 on.
func (h xgbHeader) baseOffset(obj xgbobj.Objective) (float64, error) {
	b := float64(h.baseScore)
	if h.major < 1 {
		if math.IsNaN(b) || math.IsInf(b, 0) {
			return 0, errors.New("must be finite")
		}
		return 0, nil
	}
	// major is 1 here (checkXGBoost rejects 2 and later); minor is clamped
	// so that a huge one stays large where int has 32 bits.
	margin, err := obj.BaseMargin(b, int(h.major), int(min(h.minor, math.MaxInt32)))
	if err != nil {
		return 0, err
	}
	return margin - b, nil
}
