package tensorjson

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// This file turns prediction JSON into tensors and back. Requests are
// decoded into generic JSON values, then checked against the version's
// schema here, so that every mistake is reported with the path of the value
// at fault (instances[3][1], inputs.age[7]) rather than as a shape error
// deep in a runtime.

// Request is the body of POST /v1/models/{name}:predict.
type Request struct {
	Instances json.RawMessage            `json:"instances"`
	Inputs    map[string]json.RawMessage `json:"inputs"`
	Version   uint64                     `json:"version"`
	Alias     string                     `json:"alias"`
	Key       string                     `json:"key"`
	ID        string                     `json:"id"`

	rows *ml.Tensor // the instances, when ParseFast read them
}

// Tensors checks the request's inputs against schema s and returns them:
// instances (through FastRows when they are plain rows of numbers for a
// model with at most one input), or inputs. It does not check that exactly
// one of the two is given.
func (r *Request) Tensors(s *structs.Schema) ([]ml.Tensor, error) {
	if r.Instances == nil {
		return FromColumns(r.Inputs, s)
	}
	if t, ok := r.rowsFor(len(s.Inputs)); ok {
		t.Name = inputName(s)
		return []ml.Tensor{t}, nil
	}
	if t, ok := FastRows(r.Instances); ok && len(s.Inputs) <= 1 {
		t.Name = inputName(s)
		return []ml.Tensor{t}, nil
	}
	return FromInstances(r.Instances, s)
}

// FromInstances reads "instances": a list with one element per
// instance. For a model with one input, each instance is that input's value
// (a row of features for a tabular model, a nested array for a tensor). An
// instance may also be an object naming inputs (or, for a tabular model with
// feature names, features; a feature it leaves out is missing).
func FromInstances(raw json.RawMessage, s *structs.Schema) ([]ml.Tensor, error) {
	var rows []any
	if err := json.Unmarshal(raw, &rows); err != nil {
		return nil, structs.Errorf(structs.CodeInvalid, "instances must be a JSON array with one element per instance")
	}
	if len(rows) == 0 {
		return nil, structs.Errorf(structs.CodeInvalid, "instances is empty")
	}
	if _, isObject := rows[0].(map[string]any); isObject {
		if len(s.FeatureNames) > 0 {
			return featureObjects(rows, s)
		}
		cols := map[string][]any{}
		for i, r := range rows {
			obj, ok := r.(map[string]any)
			if !ok {
				return nil, structs.Errorf(structs.CodeInvalid, "instances[%d] is not an object like instances[0]", i)
			}
			for k, v := range obj {
				if !slices.ContainsFunc(s.Inputs, func(t structs.TensorSpec) bool { return t.Name == k }) {
					return nil, structs.Errorf(structs.CodeInvalid, "instances[%d].%s: the model has no input %q (inputs: %s)", i, k, k, inputNames(s))
				}
				if len(cols[k]) != i {
					return nil, structs.Errorf(structs.CodeInvalid, "instances[%d] lacks input %q", i-1, k)
				}
				cols[k] = append(cols[k], v)
			}
		}
		var out []ml.Tensor
		for _, in := range s.Inputs {
			vals, ok := cols[in.Name]
			if !ok || len(vals) != len(rows) {
				return nil, structs.Errorf(structs.CodeInvalid, "instances: input %q is missing from some instances", in.Name)
			}
			t, err := tensorFromNested(in.Name, vals, "instances[*]."+in.Name)
			if err != nil {
				return nil, err
			}
			out = append(out, t)
		}
		return out, nil
	}
	name := ""
	if len(s.Inputs) == 1 {
		name = s.Inputs[0].Name
	} else if len(s.Inputs) > 1 {
		return nil, structs.Errorf(structs.CodeInvalid, "the model has %d inputs (%s): send each instance as an object naming them, or use \"inputs\"", len(s.Inputs), inputNames(s))
	}
	t, err := tensorFromNested(name, rows, "instances")
	if err != nil {
		return nil, err
	}
	return []ml.Tensor{t}, nil
}

// featureObjects reads instances given as {"feature": value} objects for a
// tabular model.
func featureObjects(rows []any, s *structs.Schema) ([]ml.Tensor, error) {
	index := make(map[string]int, len(s.FeatureNames))
	for i, f := range s.FeatureNames {
		index[f] = i
	}
	nf := len(s.FeatureNames)
	data := make([]float64, len(rows)*nf)
	for i := range data {
		data[i] = math.NaN()
	}
	for i, r := range rows {
		obj, ok := r.(map[string]any)
		if !ok {
			return nil, structs.Errorf(structs.CodeInvalid, "instances[%d] is not an object like instances[0]", i)
		}
		for k, v := range obj {
			j, ok := index[k]
			if !ok {
				return nil, structs.Errorf(structs.CodeInvalid, "instances[%d].%s: the model has no feature %q", i, k, k)
			}
			x, err := number(v, fmt.Sprintf("instances[%d].%s", i, k))
			if err != nil {
				return nil, err
			}
			data[i*nf+j] = x
		}
	}
	return []ml.Tensor{{Name: inputName(s), Shape: []int{len(rows), nf}, Data: data}}, nil
}

// FromColumns reads "inputs": {"name": values}. For a tabular model
// with feature names, names are features and values one per instance; else
// names are the model's inputs and values nested arrays, batch first.
func FromColumns(cols map[string]json.RawMessage, s *structs.Schema) ([]ml.Tensor, error) {
	if len(cols) == 0 {
		return nil, structs.Errorf(structs.CodeInvalid, "inputs is empty")
	}
	decoded := make(map[string][]any, len(cols))
	for k, raw := range cols {
		var vals []any
		if err := json.Unmarshal(raw, &vals); err != nil {
			return nil, structs.Errorf(structs.CodeInvalid, "inputs.%s must be an array with one value per instance", k)
		}
		decoded[k] = vals
	}
	if len(s.FeatureNames) > 0 && !(len(s.Inputs) == 1 && decoded[s.Inputs[0].Name] != nil) {
		n := -1
		for _, f := range s.FeatureNames {
			vals, ok := decoded[f]
			if !ok {
				return nil, structs.Errorf(structs.CodeInvalid, "inputs lacks feature %q (send null values for missing ones)", f)
			}
			if n >= 0 && len(vals) != n {
				return nil, structs.Errorf(structs.CodeInvalid, "inputs.%s has %d values, other features have %d", f, len(vals), n)
			}
			n = len(vals)
		}
		for k := range decoded {
			if !slices.Contains(s.FeatureNames, k) {
				return nil, structs.Errorf(structs.CodeInvalid, "inputs.%s: the model has no feature %q", k, k)
			}
		}
		nf := len(s.FeatureNames)
		data := make([]float64, n*nf)
		for j, f := range s.FeatureNames {
			for i, v := range decoded[f] {
				x, err := number(v, fmt.Sprintf("inputs.%s[%d]", f, i))
				if err != nil {
					return nil, err
				}
				data[i*nf+j] = x
			}
		}
		return []ml.Tensor{{Name: inputName(s), Shape: []int{n, nf}, Data: data}}, nil
	}
	var out []ml.Tensor
	for _, in := range s.Inputs {
		vals, ok := decoded[in.Name]
		if !ok {
			return nil, structs.Errorf(structs.CodeInvalid, "inputs lacks the model's input %q", in.Name)
		}
		t, err := tensorFromNested(in.Name, vals, "inputs."+in.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	for k := range decoded {
		if !slices.ContainsFunc(s.Inputs, func(t structs.TensorSpec) bool { return t.Name == k }) {
			return nil, structs.Errorf(structs.CodeInvalid, "inputs.%s: the model has no input %q (inputs: %s)", k, k, inputNames(s))
		}
	}
	return out, nil
}

func inputName(s *structs.Schema) string {
	if len(s.Inputs) == 1 {
		return s.Inputs[0].Name
	}
	return ""
}

func inputNames(s *structs.Schema) string {
	names := make([]string, len(s.Inputs))
	for i, t := range s.Inputs {
		names[i] = t.Name
	}
	return strings.Join(names, ", ")
}

// maxPreallocValues bounds what tensorFromNested reserves up front: the
// values of a request as large as max_body_bytes' default (8 MiB), at two
// bytes a value.
const maxPreallocValues = 4 << 20

// tensorFromNested flattens a rectangular nested array (batch first) into a
// tensor. Numbers and null (missing, NaN) are the only leaves allowed.
func tensorFromNested(name string, rows []any, path string) (ml.Tensor, error) {
	t := ml.Tensor{Name: name, Shape: []int{len(rows)}}
	if len(rows) == 0 {
		return t, structs.Errorf(structs.CodeInvalid, "%s is empty", path)
	}
	// The first element fixes the shape of every instance.
	for v := rows[0]; ; {
		arr, ok := v.([]any)
		if !ok {
			break
		}
		t.Shape = append(t.Shape, len(arr))
		if len(arr) == 0 {
			break
		}
		v = arr[0]
	}
	// The first element's shape is only a claim until every element is
	// walked: [[[0 x 2000], [], ...], ...] claims billions of values in a
	// few KiB. Reserve no more than the request can hold.
	if n, ok := ShapeElements(t.Shape); ok {
		t.Data = make([]float64, 0, min(n, maxPreallocValues))
	}
	var walk func(v any, depth int, at string) error
	walk = func(v any, depth int, at string) error {
		if depth == len(t.Shape) {
			x, err := number(v, at)
			if err != nil {
				return err
			}
			t.Data = append(t.Data, x)
			return nil
		}
		arr, ok := v.([]any)
		if !ok || len(arr) != t.Shape[depth] {
			return structs.Errorf(structs.CodeInvalid, "%s: every instance must have shape %v (as the first one has); this one differs", at, t.Shape[1:])
		}
		for i, x := range arr {
			if err := walk(x, depth+1, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(rows, 0, path); err != nil {
		return t, err
	}
	return t, nil
}

// number reads one leaf value: a JSON number, or null for a missing value.
func number(v any, at string) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case nil:
		return math.NaN(), nil
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	case string:
		return 0, structs.Errorf(structs.CodeInvalid, "%s is the string %.40q, not a number", at, x)
	}
	return 0, structs.Errorf(structs.CodeInvalid, "%s is not a number", at)
}

// Predictions turns outputs into one JSON value per instance: a scalar
// for [n] outputs, nested arrays for more dimensions, and an object naming
// the outputs when the model has several. NaN becomes null.
func Predictions(out []ml.Tensor) ([]any, error) {
	if len(out) == 0 {
		return nil, structs.Errorf(structs.CodeInternal, "the model returned no outputs")
	}
	if len(out[0].Shape) == 0 {
		return nil, structs.Errorf(structs.CodeInternal, "output %q has no batch dimension", out[0].Name)
	}
	n := out[0].Shape[0]
	per := make([][]any, len(out))
	for k, t := range out {
		if len(t.Shape) == 0 || t.Shape[0] != n {
			return nil, structs.Errorf(structs.CodeInternal, "output %q has shape %v, not a batch of %d", t.Name, t.Shape, n)
		}
		if err := t.Check(); err != nil {
			return nil, structs.Errorf(structs.CodeInternal, "the model returned a malformed output: %v", err)
		}
		per[k] = make([]any, n)
		stride := len(t.Data) / max(n, 1)
		for i := range n {
			per[k][i] = nest(t.Data[i*stride:(i+1)*stride], t.Shape[1:])
		}
	}
	preds := make([]any, n)
	for i := range n {
		if len(out) == 1 {
			preds[i] = per[0][i]
			continue
		}
		obj := make(map[string]any, len(out))
		for k, t := range out {
			obj[t.Name] = per[k][i]
		}
		preds[i] = obj
	}
	return preds, nil
}

func nest(data []float64, shape []int) any {
	if len(shape) == 0 {
		return jsonNumber(data[0])
	}
	out := make([]any, shape[0])
	stride := len(data) / max(shape[0], 1)
	for i := range shape[0] {
		out[i] = nest(data[i*stride:(i+1)*stride], shape[1:])
	}
	return out
}

func jsonNumber(x float64) any {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return x
}

// NormalizeTabular gives a tabular model's input its batch dimension: one
// instance sent as a flat row, or single-feature instances sent as scalars.
func NormalizeTabular(inputs []ml.Tensor, s *structs.Schema) {
	if len(inputs) != 1 || len(s.Inputs) != 1 || len(s.Inputs[0].Shape) != 2 || len(inputs[0].Shape) != 1 {
		return
	}
	features := s.Inputs[0].Shape[1]
	switch {
	case features == 1:
		inputs[0].Shape = []int{inputs[0].Shape[0], 1}
	case inputs[0].Shape[0] == features:
		inputs[0].Shape = []int{1, features}
	}
}
