package node

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// TestAgent_PredictWithFeatures deploys the iris softmax model with a
// feature service: :predict takes entities, looks their features up, and
// predicts as the same features sent as an instance do; overrides replace
// looked-up values; return_features echoes them; an entity without values
// is a 400 naming the feature, since a linear model cannot take a missing
// value.
// flatFloats flattens a JSON array of rows of numbers.
func flatFloats(t *testing.T, v any) []float64 {
	t.Helper()
	var out []float64
	for _, row := range v.([]any) {
		out = append(out, floats(t, row)...)
	}
	return out
}

func TestAgent_PredictWithFeatures(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/sources", `{"name": "measures", "kind": "push", "schema": {"plant_id": "int", "ts": "timestamp", "sepal_length": "float", "sepal_width": "float", "petal_length": "float", "petal_width": "float"}}`},
		{"PUT", "/v1/entities/plant", `{"join_keys": ["plant_id"]}`},
		{"PUT", "/v1/feature-views/flower", `{"entity": "plant", "source": "measures", "timestamp_column": "ts", "features": [{"name": "petal_width"}, {"name": "petal_length"}, {"name": "sepal_width"}, {"name": "sepal_length"}]}`},
		{"PUT", "/v1/feature-services/iris", `{"features": ["flower:*"]}`},
	} {
		if res := call(t, a, c.method, c.path, c.body); res.status != http.StatusOK {
			t.Fatalf("%s %s = %d %s", c.method, c.path, res.status, res.raw)
		}
	}
	ts := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339)
	push := fmt.Sprintf(`{"plant_id": 1, "ts": %q, "sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
{"plant_id": 2, "ts": %q, "sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}`, ts, ts)
	if res := call(t, a, "POST", "/v1/sources/measures/records", push); res.status != http.StatusOK || res.body["accepted"] != 2.0 {
		t.Fatalf("push = %d %s", res.status, res.raw)
	}
	createModel(t, a, "iris")
	uploadOK(t, a, "iris", "format=linear", readTestdata(t, linearIrisFile))
	if r := call(t, a, "PUT", "/v1/deployments/iris", `{"versions":[{"version":1,"weight":1}],"feature_service":"nope"}`); r.status != 400 || !strings.Contains(r.raw, "nope") {
		t.Fatalf("deploy with an unknown service = %d %s", r.status, r.raw)
	}
	if r := call(t, a, "PUT", "/v1/deployments/iris", `{"versions":[{"version":1,"weight":1}],"feature_service":"iris"}`); r.status != 200 || r.body["feature_service"] != "iris" {
		t.Fatalf("deploy = %d %s", r.status, r.raw)
	}
	testutil.Until(t, 20*time.Second, "a running replica", func() bool {
		return strings.Contains(call(t, a, "GET", "/v1/deployments/iris", "").raw, `"state":"running"`)
	})
	predict := func(body string) apiResp {
		return call(t, a, "POST", "/v1/models/iris:predict", body)
	}
	direct := predict(`{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}`)
	byEntity := predict(`{"entities": {"plant_id": [1, 2]}}`)
	if direct.status != 200 || byEntity.status != 200 {
		t.Fatalf("predict = %d %s / %d %s", direct.status, direct.raw, byEntity.status, byEntity.raw)
	}
	checkClose(t, "predictions from features", flatFloats(t, byEntity.body["predictions"]), flatFloats(t, direct.body["predictions"]))
	// An override replaces a looked-up value: plant 1 with plant 2's petals
	// predicts as plant 2's measures with plant 1's sepals.
	over := predict(`{"entities": [{"plant_id": 1}], "features": {"petal_length": 5.2, "flower:petal_width": 2.3}, "return_features": true}`)
	mixed := predict(`{"instances": [[5.1, 3.5, 5.2, 2.3]]}`)
	if over.status != 200 {
		t.Fatalf("predict with overrides = %d %s", over.status, over.raw)
	}
	checkClose(t, "predictions with overrides", flatFloats(t, over.body["predictions"]), flatFloats(t, mixed.body["predictions"]))
	used := over.body["features"].([]any)[0].(map[string]any)
	if used["sepal_length"] != 5.1 || used["petal_length"] != 5.2 || used["petal_width"] != 2.3 {
		t.Fatalf("features used = %v; want plant 1's sepals and the overrides", used)
	}
	for _, tt := range []struct{ body, text string }{
		{`{"entities": {"plant_id": 9}}`, "no value for feature sepal_length"},
		{`{"entities": {"plant_id": 1}, "features": {"colour": 1}}`, "features[0].colour"},
		{`{"entities": {"plant_id": 1}, "instances": [[1,2,3,4]]}`, "exactly one of"},
		{`{"instances": [[1,2,3,4]], "return_features": true}`, "go with entities"},
		{`{"entities": {"tree_id": 1}}`, "no plant_id"},
	} {
		if r := predict(tt.body); r.status != 400 || !strings.Contains(r.raw, tt.text) {
			t.Errorf("predict %s = %d %s; want 400 naming %q", tt.body, r.status, r.raw, tt.text)
		}
	}
	if r := call(t, a, "DELETE", "/v1/feature-services/iris", ""); r.status != 409 || !strings.Contains(r.raw, "iris") {
		t.Errorf("delete a service a deployment reads = %d %s; want 409", r.status, r.raw)
	}
}
