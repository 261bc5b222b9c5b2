package gbdt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/dmitryikh/leaves"

	"github.com/kilnml/kiln/ml"
)

// LoadLightGBM reads a LightGBM text model (Booster.save_model, versions v2
// to v4 of the format) from r. Errors wrap ml.ErrBadModel.
func LoadLightGBM(r io.Reader) (ml.Model, error) {
	const format = ml.FormatLightGBM
	data, err := readModel(r, format)
	if err != nil {
		return nil, err
	}
	data = v4AsV3(data)
	info, err := checkLightGBM(string(data))
	if err != nil {
		return nil, badModel(format, "%v", err)
	}
	ens, err := loadEnsemble(format, leaves.LGEnsembleFromReader, data, true)
	if err != nil {
		return nil, err
	}
	// A logistic or exp output function takes one raw value per row; leaves
	// would ignore the others and leave the output unwritten.
	if ens.NOutputGroups() != ens.NRawOutputGroups() {
		return nil, badModel(format, "objective with output function %s does not fit %d trees per iteration",
			ens.Transformation().Name(), ens.NRawOutputGroups())
	}
	m := newModel(format, ens, info.features, ens.NOutputGroups(), info.names)
	// reg_sqrt trains on sqrt(label); LightGBM squares the score back (keeping
	// its sign), leaves treats it as a plain regression.
	if obj := strings.Fields(info.objective); len(obj) == 2 && strings.HasPrefix(obj[0], "regression") && obj[1] == "sqrt" {
		m.finish = func(raw, out []float64) {
			for k, v := range raw {
				out[k] = v * math.Abs(v)
			}
		}
	}
	return m, nil
}

// v4AsV3 relabels a version=v4 model (LightGBM 4.x) as v3, the newest
// version leaves reads. LightGBM bumped the version when it added an
// optional "parser:" section after the parameters (microsoft/LightGBM
// commit b0137de, #4782); trees and header are written as in v3, and the
// trailing sections are not read for prediction.
func v4AsV3(data []byte) []byte {
	const v4 = "version=v4\n"
	i := bytes.Index(data, []byte(v4))
	if i < 0 || bytes.Contains(data[:i], []byte("\n\n")) {
		return data // not in the header block
	}
	out := bytes.Clone(data)
	copy(out[i:], "version=v3\n")
	return out
}

// lgInfo is what LoadLightGBM needs from a text model's header.
type lgInfo struct {
	features  int
	names     []string // nil when the file has no feature_names
	objective string
}

// checkLightGBM reads the text block by block exactly as leaves will (see
// lgLines) and checks what leaves does not: the feature count, the names,
// and each tree's sizes and links.
func checkLightGBM(text string) (info lgInfo, err error) {
	lines := lgLines{rest: text}
	header, err := lines.block()
	if err != nil {
		return info, fmt.Errorf("header: %w", err)
	}
	maxIdx, err := strconv.Atoi(header["max_feature_idx"])
	if err != nil || maxIdx < 0 || maxIdx >= math.MaxInt32 {
		return info, fmt.Errorf("max_feature_idx = %q: want an integer in [0, %d)", header["max_feature_idx"], math.MaxInt32)
	}
	info.features = maxIdx + 1
	info.objective = header["objective"]
	if s, ok := header["feature_names"]; ok {
		info.names = strings.Fields(s)
		if len(info.names) != info.features {
			return info, fmt.Errorf("feature_names has %d names for %d features", len(info.names), info.features)
		}
	}
	sizes, ok := header["tree_sizes"]
	if !ok {
		return info, errors.New("no tree_sizes field")
	}
	trees := strings.Count(sizes, " ") + 1 // leaves counts the trees so
	for i := range trees {
		tree, err := lines.block()
		if err != nil {
			return info, fmt.Errorf("tree %d: %w", i, err)
		}
		if err := checkLightGBMTree(tree, info.features); err != nil {
			return info, fmt.Errorf("tree %d: %w", i, err)
		}
	}
	return info, nil
}

func checkLightGBMTree(tree map[string]string, features int) error {
	if tree["is_linear"] == "1" {
		return errors.New("linear trees (is_linear=1) are not supported")
	}
	leafCount, err := strconv.Atoi(tree["num_leaves"])
	if err != nil || leafCount < 1 {
		return fmt.Errorf("num_leaves = %q: want a positive integer", tree["num_leaves"])
	}
	// num_leaves sizes leaves' allocations; leaf_value bounds it by the file.
	if n := strings.Count(tree["leaf_value"], " ") + 1; n != leafCount {
		return fmt.Errorf("leaf_value has %d values for num_leaves %d", n, leafCount)
	}
	if leafCount == 1 {
		return nil
	}
	n := leafCount - 1 // internal nodes
	left, err := lgInts(tree, "left_child", n, true)
	if err != nil {
		return err
	}
	right, err := lgInts(tree, "right_child", n, true)
	if err != nil {
		return err
	}
	split, err := lgInts(tree, "split_feature", n, false)
	if err != nil {
		return err
	}
	// A LightGBM child >= 0 is an internal node, ~leaf for a leaf.
	child := func(c int64) (int, error) {
		if c >= 0 {
			return int(c), nil
		}
		if leaf := ^c; leaf >= int64(leafCount) {
			return 0, fmt.Errorf("leaf %d is out of range [0, %d)", leaf, leafCount)
		}
		return -1, nil
	}
	return checkTree(n, func(i int) (int, int, error) {
		if split[i] >= int64(features) {
			return 0, 0, fmt.Errorf("split_feature %d is out of range for %d features", split[i], features)
		}
		l, err := child(left[i])
		if err != nil {
			return 0, 0, err
		}
		r, err := child(right[i])
		return l, r, err
	})
}

// lgInts parses a space-separated list of n int32 or uint32 values as
// leaves does.
func lgInts(tree map[string]string, key string, n int, signed bool) ([]int64, error) {
	s, ok := tree[key]
	if !ok {
		return nil, fmt.Errorf("no %s field", key)
	}
	fields := strings.Split(s, " ")
	if len(fields) != n {
		return nil, fmt.Errorf("%s has %d values for %d nodes", key, len(fields), n)
	}
	out := make([]int64, n)
	for i, f := range fields {
		var err error
		if signed {
			out[i], err = strconv.ParseInt(f, 10, 32)
		} else {
			var u uint64
			u, err = strconv.ParseUint(f, 10, 32)
			out[i] = int64(u)
		}
		if err != nil {
			return nil, fmt.Errorf("%s[%d] = %q is not an integer", key, i, f)
		}
	}
	return out, nil
}

// lgLines splits a LightGBM text model into blocks of key=value lines the
// way leaves' util.ReadParamsUntilBlank does, so that the checks see the
// trees leaves will build: a block starts with the next line, whatever it
// is (it must end in a newline), and runs to the next blank line or the end.
type lgLines struct {
	rest string
}

func (l *lgLines) line() (line string, complete bool) {
	i := strings.IndexByte(l.rest, '\n')
	if i < 0 {
		line, l.rest = l.rest, ""
		return line, false
	}
	line, l.rest = l.rest[:i+1], l.rest[i+1:]
	return line, true
}

func (l *lgLines) block() (map[string]string, error) {
	line, complete := l.line()
	if !complete {
		return nil, io.ErrUnexpectedEOF
	}
	params := make(map[string]string)
	for {
		key, value, _ := strings.Cut(strings.TrimSpace(line), "=")
		if strings.Contains(value, "=") {
			return nil, fmt.Errorf("line %q has more than one '='", strings.TrimSpace(line))
		}
		params[key] = value
		line, _ = l.line()
		if strings.TrimSpace(line) == "" {
			return params, nil
		}
	}
}
