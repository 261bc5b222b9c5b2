package node

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/kilnml/kiln/actors/serving"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/node/internal/tensorjson"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// Serving with features (DESIGN.md §8): a deployment that names a feature
// service takes {"entities": ...} on :predict. The node that takes the
// request looks the entities' features up in its own registry (or the
// Redis online store), as of now, and builds the model's input in the
// order of the version's feature names.

// featureRequest is the part of a :predict body about features.
type featureRequest struct {
	// Entities is {"user_id": 7}, {"user_id": [7, 8]} or
	// [{"user_id": 7}, {"user_id": 8}].
	Entities json.RawMessage `json:"entities"`
	// Features overrides looked-up values: one object for every entity, or
	// a list with one object per entity; keys are the model's feature
	// names or "view:feature".
	Features json.RawMessage `json:"features"`
	// ReturnFeatures echoes the features each prediction used.
	ReturnFeatures bool `json:"return_features"`
}

// formatTakesMissing reports whether a model format routes missing values
// (NaN) itself, as tree models do; the others get a 400 naming the feature.
func formatTakesMissing(format string) bool {
	switch format {
	case "lightgbm", "xgboost", "xgboost-json":
		return true
	}
	return false
}

// parseEntities reads the entities of a :predict request into rows of join
// keys.
func parseEntities(raw json.RawMessage) ([]map[string]any, error) {
	var list []map[string]any
	if err := json.Unmarshal(raw, &list); err == nil {
		if len(list) == 0 || len(list) > maxOnlineRows {
			return nil, structs.Errorf(structs.CodeInvalid, "entities must list 1 to %d entities", maxOnlineRows)
		}
		return list, nil
	}
	var cols map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cols); err != nil {
		return nil, structs.Errorf(structs.CodeInvalid, "entities must be an object of join keys (a value or a list each) or a list of such objects")
	}
	return entityRows(cols)
}

// parseOverrides reads the features a request overrides, one map per row.
func parseOverrides(raw json.RawMessage, n int) ([]map[string]any, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var one map[string]any
	if err := json.Unmarshal(raw, &one); err == nil {
		out := make([]map[string]any, n)
		for i := range out {
			out[i] = one
		}
		return out, nil
	}
	var list []map[string]any
	if err := json.Unmarshal(raw, &list); err != nil || len(list) != n {
		return nil, structs.Errorf(structs.CodeInvalid, "features must be an object of feature values, or a list of %d such objects, one per entity", n)
	}
	return list, nil
}

// featureColumns maps the model's feature names to the query's features:
// the same "view:feature" name, else the only feature of the service named
// so. It returns, for each model feature, its place in the query.
func featureColumns(modelFeatures []string, q *featureQuery, service string) ([]int, error) {
	cols := make([]int, len(modelFeatures))
	for i, f := range modelFeatures {
		cols[i] = -1
		for j, name := range q.names {
			if name == f {
				cols[i] = j
				break
			}
		}
		if cols[i] >= 0 {
			continue
		}
		for j, name := range q.names {
			if _, feat, _ := strings.Cut(name, ":"); feat == f {
				if cols[i] >= 0 {
					return nil, structs.Errorf(structs.CodeInvalid, "the model's feature %q matches both %s and %s of feature service %s; name the model's features view:feature", f, q.names[cols[i]], name, service)
				}
				cols[i] = j
			}
		}
		if cols[i] < 0 {
			return nil, structs.Errorf(structs.CodeInvalid, "the model's feature %q is not in feature service %s (%s)", f, service, strings.Join(q.names, ", "))
		}
	}
	return cols, nil
}

// featureInput builds the model's input for a request with entities. It
// returns the input and, per row, the features used (model name to value).
func (a *Agent) featureInput(r *http.Request, target *serving.Target, fr *featureRequest) ([]ml.Tensor, []map[string]any, error) {
	d, v := target.Deployment, target.Version
	if d == nil || d.FeatureService == "" {
		return nil, nil, structs.Errorf(structs.CodeInvalid, "entities: deployment %s names no feature_service; send instances or inputs", target.Version.Model)
	}
	rows, err := parseEntities(fr.Entities)
	if err != nil {
		return nil, nil, err
	}
	overrides, err := parseOverrides(fr.Features, len(rows))
	if err != nil {
		return nil, nil, err
	}
	txn := a.fsm.ReadTxn()
	defer txn.Discard()
	q, err := a.features.resolve(txn, d.FeatureService, nil)
	if err != nil {
		return nil, nil, err
	}
	names := v.Schema.FeatureNames
	if len(names) == 0 {
		// A model without feature names takes the service's features in
		// the service's order, if it is as wide.
		if len(v.Schema.Inputs) != 1 || len(v.Schema.Inputs[0].Shape) != 2 || v.Schema.Inputs[0].Shape[1] != len(q.names) {
			return nil, nil, structs.Errorf(structs.CodeInvalid, "version %d of %s has no feature names, and its input is not %d wide like feature service %s", v.Version, v.Model, len(q.names), d.FeatureService)
		}
		names = q.names
	}
	cols, err := featureColumns(names, q, d.FeatureService)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	times := make([]time.Time, len(rows))
	for i := range times {
		times[i] = now
	}
	frame, err := q.read(txn, rows, times, a.redisLatest(r))
	if err != nil {
		return nil, nil, err
	}
	nf := len(names)
	data := make([]float64, len(rows)*nf)
	used := make([]map[string]any, len(rows))
	missingOK := formatTakesMissing(v.Format)
	for i := range rows {
		used[i] = make(map[string]any, nf)
		for j, name := range names {
			val := frame.values[i][cols[j]]
			if o := overrides; o != nil {
				if x, ok := o[i][name]; ok {
					val = x
				} else if x, ok := o[i][q.names[cols[j]]]; ok {
					val = x
				}
			}
			used[i][name] = val
			x, err := featureNumber(val)
			if err != nil {
				return nil, nil, structs.Errorf(structs.CodeInvalid, "entity %d: feature %s: %v", i, name, err)
			}
			if math.IsNaN(x) && !missingOK {
				return nil, nil, structs.Errorf(structs.CodeInvalid, "entity %d has no value for feature %s, and a %s model cannot take a missing value; give it in features", i, name, v.Format)
			}
			data[i*nf+j] = x
		}
	}
	if o := overrides; o != nil {
		for i, m := range o {
			for k := range m {
				if !containsName(names, k) && !containsName(q.names, k) {
					return nil, nil, structs.Errorf(structs.CodeInvalid, "features[%d].%s: neither a feature of the model nor of feature service %s", i, k, d.FeatureService)
				}
			}
		}
	}
	name := ""
	if len(v.Schema.Inputs) > 0 {
		name = v.Schema.Inputs[0].Name
	}
	return []ml.Tensor{{Name: name, Shape: []int{len(rows), nf}, Data: data}}, used, nil
}

func containsName(names []string, n string) bool {
	for _, x := range names {
		if x == n {
			return true
		}
	}
	return false
}

// featureNumber turns a feature value into a model input: numbers as
// they are, booleans 0 or 1, null NaN (missing); text cannot be one.
func featureNumber(v any) (float64, error) {
	switch x := v.(type) {
	case nil:
		return math.NaN(), nil
	case float64:
		return x, nil
	case int64:
		return float64(x), nil
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	case json.Number:
		return x.Float64()
	}
	return 0, fmt.Errorf("%v is a %T, not a number a model takes", v, v)
}

// redisLatest is the Redis mirror as a latestRows, nil without one.
func (a *Agent) redisLatest(r *http.Request) latestRows {
	if a.redis == nil {
		return nil
	}
	return func(view string, keys []structs.EntityKey) ([]*structs.FeatureRow, error) {
		rows, err := a.redis.latest(r.Context(), view, keys)
		if err != nil {
			return nil, structs.Errorf(structs.CodeUnavailable, "the Redis online store: %v", err)
		}
		return rows, nil
	}
}

// writePredictionsWithFeatures answers a prediction from features, with
// the features used when the request asked for them.
func writePredictionsWithFeatures(w http.ResponseWriter, name string, version uint64, id string, out []ml.Tensor, used []map[string]any) {
	preds, err := tensorjson.Predictions(out)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"predictions": preds, "model": name, "version": version, "id": id, "features": used})
}
