package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/ml/formats"
)

// lgFirstRow is the first row of LightGBM's multiclass test set and the
// class probabilities LightGBM itself predicts for it.
func lgFirstRow(t *testing.T) (features, want []float64) {
	t.Helper()
	parse := func(path string, skip int) []float64 {
		line, _, _ := strings.Cut(string(readTestdata(t, path)), "\n")
		var out []float64
		for i, f := range strings.Fields(line) {
			if i < skip {
				continue
			}
			x, err := strconv.ParseFloat(f, 64)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			out = append(out, x)
		}
		return out
	}
	features = parse("../ml/testdata/lightgbm/multiclass_test.tsv", 1) // column 0 is the label
	want = parse("../ml/testdata/lightgbm/lgmulticlass_true_predictions.txt", 0)
	if len(features) != 28 || len(want) != 5 {
		t.Fatalf("testdata: %d features, %d classes", len(features), len(want))
	}
	return features, want
}

// floats reads a JSON array of numbers (null is NaN).
func floats(t *testing.T, v any) []float64 {
	t.Helper()
	arr, ok := v.([]any)
	if !ok {
		t.Fatalf("%v is not an array", v)
	}
	out := make([]float64, len(arr))
	for i, x := range arr {
		switch x := x.(type) {
		case float64:
			out[i] = x
		case nil:
			out[i] = math.NaN()
		default:
			t.Fatalf("%v is not an array of numbers", v)
		}
	}
	return out
}

func checkClose(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d values %v, want %d", what, len(got), got, len(want))
		return
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-6 {
			t.Errorf("%s: [%d] = %.9f, want %.9f", what, i, got[i], want[i])
		}
	}
}

func jsonArray(xs []float64) string {
	b, _ := json.Marshal(xs)
	return string(b)
}

// getText GETs path and returns the body as text.
func getText(t *testing.T, a *Agent, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + a.HTTPAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// deployAndWait deploys version 1 of model with one replica and waits until
// the replica runs.
func deployAndWait(t testing.TB, a *Agent, model string) {
	t.Helper()
	r := call(t, a, "PUT", "/v1/deployments/"+model, `{"versions":[{"version":1,"weight":1}],"replicas":1}`)
	if r.status != 200 {
		t.Fatalf("deploy: %d %v", r.status, r.body)
	}
	var last apiResp
	testutil.Until(t, 20*time.Second, "a running replica", func() bool {
		last = call(t, a, "GET", "/v1/deployments/"+model, "")
		reps, _ := last.body["replica_states"].([]any)
		for _, rep := range reps {
			if rep.(map[string]any)["state"] == "running" {
				return true
			}
		}
		return false
	})
}

func TestAgent_ServingPredict(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	createModel(t, a, "m")
	file := readTestdata(t, lgMulticlassFile)
	uploadOK(t, a, "m", "", file)

	// Before deployment: a known model that is not deployed is a conflict.
	if r := call(t, a, "POST", "/v1/models/m:predict", `{"instances":[[1]]}`); r.status != 409 {
		t.Errorf("predict before deploy: %d %v, want 409", r.status, r.body)
	}
	deployAndWait(t, a, "m")
	r := call(t, a, "GET", "/v1/deployments/m", "")
	rep := r.body["replica_states"].([]any)[0].(map[string]any)
	if rep["node_id"] != a.ID() || rep["version"] != float64(1) {
		t.Errorf("replica %v", rep)
	}

	row, want := lgFirstRow(t)
	// The same model loaded directly is the reference for rows with
	// missing values, which the test set has none of.
	direct, err := formats.Load("lightgbm", lgMulticlassFile)
	if err != nil {
		t.Fatal(err)
	}
	withMissing := append([]float64(nil), row...)
	for _, j := range []int{0, 5, 27} {
		withMissing[j] = math.NaN()
	}
	out, err := direct.Predict(context.Background(), []ml.Tensor{{Name: "input", Shape: []int{1, 28}, Data: withMissing}})
	if err != nil {
		t.Fatal(err)
	}
	wantMissing := out[0].Data

	// The request forms of row: by column, and (missing three features) as
	// an object and as a row with nulls.
	columns := make([]string, 28)
	nullRow := make([]string, 28)
	objectMissing := make([]string, 0, 25)
	for j, x := range row {
		columns[j] = fmt.Sprintf(`"Column_%d":[%v]`, j, x)
		nullRow[j] = "null"
		if !math.IsNaN(withMissing[j]) {
			nullRow[j] = strconv.FormatFloat(x, 'g', -1, 64)
			objectMissing = append(objectMissing, fmt.Sprintf(`"Column_%d":%v`, j, x))
		}
	}
	sent := 0
	predict := func(t *testing.T, body string) []any {
		t.Helper()
		r := call(t, a, "POST", "/v1/models/m:predict", body)
		if r.status != 200 {
			t.Fatalf("predict: %d %v", r.status, r.body)
		}
		sent++
		if r.body["model"] != "m" || r.body["version"] != float64(1) || r.body["id"] == "" {
			t.Errorf("predict answer %v", r.body)
		}
		preds, _ := r.body["predictions"].([]any)
		return preds
	}
	cases := []struct {
		name string
		body string
		want [][]float64
	}{
		{"instances as rows", `{"instances":[` + jsonArray(row) + `]}`, [][]float64{want}},
		{"two rows", `{"instances":[` + jsonArray(row) + `,` + jsonArray(row) + `]}`, [][]float64{want, want}},
		{"one flat row", `{"instances":` + jsonArray(row) + `}`, [][]float64{want}},
		{"columns by feature name", `{"inputs":{` + strings.Join(columns, ",") + `}}`, [][]float64{want}},
		{"input by name", `{"inputs":{"input":[` + jsonArray(row) + `]}}`, [][]float64{want}},
		{"objects by feature name, some omitted", `{"instances":[{` + strings.Join(objectMissing, ",") + `}]}`, [][]float64{wantMissing}},
		{"null for missing", `{"instances":[[` + strings.Join(nullRow, ",") + `]]}`, [][]float64{wantMissing}},
		{"by version", `{"instances":[` + jsonArray(row) + `],"version":1}`, [][]float64{want}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			preds := predict(t, tc.body)
			if len(preds) != len(tc.want) {
				t.Fatalf("%d predictions, want %d", len(preds), len(tc.want))
			}
			for i := range tc.want {
				checkClose(t, fmt.Sprintf("predictions[%d]", i), floats(t, preds[i]), tc.want[i])
			}
		})
	}

	t.Run("v2 infer", func(t *testing.T) {
		for _, data := range []string{jsonArray(row), "[" + jsonArray(row) + "]"} {
			r := call(t, a, "POST", "/v2/models/m/infer", `{"id":"r1","inputs":[{"name":"input","shape":[1,28],"datatype":"FP64","data":`+data+`}]}`)
			if r.status != 200 {
				t.Fatalf("infer: %d %v", r.status, r.body)
			}
			sent++
			if r.body["model_name"] != "m" || r.body["model_version"] != "1" || r.body["id"] != "r1" {
				t.Errorf("infer answer %v", r.body)
			}
			outs, _ := r.body["outputs"].([]any)
			if len(outs) != 1 {
				t.Fatalf("outputs %v", r.body["outputs"])
			}
			o := outs[0].(map[string]any)
			if o["name"] != "output" || o["datatype"] != "FP64" || fmt.Sprint(o["shape"]) != "[1 5]" {
				t.Errorf("output %v", o)
			}
			checkClose(t, "v2 output", floats(t, o["data"]), want)
		}
		r := call(t, a, "POST", "/v2/models/m/versions/1/infer", `{"inputs":[{"name":"anything","shape":[28],"datatype":"FP32","data":`+jsonArray(row)+`}]}`)
		if r.status != 200 {
			t.Fatalf("infer by version: %d %v", r.status, r.body)
		}
		sent++
		checkClose(t, "v2 output by version", floats(t, r.body["outputs"].([]any)[0].(map[string]any)["data"]), want)
	})

	t.Run("v2 metadata and readiness", func(t *testing.T) {
		r := call(t, a, "GET", "/v2/models/m", "")
		if r.status != 200 || r.body["name"] != "m" || r.body["platform"] != "kiln-lightgbm" || fmt.Sprint(r.body["versions"]) != "[1]" {
			t.Fatalf("metadata: %d %v", r.status, r.body)
		}
		in := r.body["inputs"].([]any)[0].(map[string]any)
		if in["name"] != "input" || in["datatype"] != "FP64" || fmt.Sprint(in["shape"]) != "[-1 28]" {
			t.Errorf("metadata input %v", in)
		}
		out := r.body["outputs"].([]any)[0].(map[string]any)
		if fmt.Sprint(out["shape"]) != "[-1 5]" {
			t.Errorf("metadata output %v", out)
		}
		for _, tc := range []struct {
			path   string
			status int
			ready  any
		}{
			{"/v2/health/live", 200, nil},
			{"/v2/health/ready", 200, true},
			{"/v2/models/m/ready", 200, true},
			{"/v2/models/m/versions/1/ready", 200, true},
			{"/v2/models/m/versions/7/ready", 404, nil},
			{"/v2/models/nope/ready", 404, nil},
			{"/v2/models/m/versions/1", 200, nil},
			{"/v2/models/m/versions/7", 404, nil},
			{"/v2/models/nope", 404, nil},
		} {
			r := call(t, a, "GET", tc.path, "")
			if r.status != tc.status || (tc.ready != nil && r.body["ready"] != tc.ready) {
				t.Errorf("GET %s: %d %v, want %d", tc.path, r.status, r.body, tc.status)
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		createModel(t, a, "idle") // exists, not deployed
		short := jsonArray(row[:27])
		cases := []struct {
			name, path, body string
			status           int
			mention          string
		}{
			{"both instances and inputs", "/v1/models/m:predict", `{"instances":[` + jsonArray(row) + `],"inputs":{"input":[]}}`, 400, "exactly one"},
			{"neither", "/v1/models/m:predict", `{}`, 400, "exactly one"},
			{"non-numeric", "/v1/models/m:predict", `{"instances":[[1,2,3,"four"` + strings.Repeat(",0", 24) + `]]}`, 400, "instances[0][3]"},
			{"object value non-numeric", "/v1/models/m:predict", `{"instances":[{"Column_2":"x"}]}`, 400, "instances[0].Column_2"},
			{"unknown feature", "/v1/models/m:predict", `{"instances":[{"Column_99":1}]}`, 400, "Column_99"},
			{"wrong width", "/v1/models/m:predict", `{"instances":[` + short + `,` + short + `]}`, 400, "[n, 28]"},
			{"ragged rows", "/v1/models/m:predict", `{"instances":[` + jsonArray(row) + `,` + short + `]}`, 400, "instances[1]"},
			{"missing column", "/v1/models/m:predict", `{"inputs":{"Column_0":[1]}}`, 400, "Column_1"},
			{"unknown field", "/v1/models/m:predict", `{"instances":[[1]],"colour":1}`, 400, "colour"},
			{"unknown model", "/v1/models/nope:predict", `{"instances":[[1]]}`, 404, "nope"},
			{"not deployed", "/v1/models/idle:predict", `{"instances":[[1]]}`, 409, "not deployed"},
			{"version not deployed", "/v1/models/m:predict", `{"instances":[[1]],"version":2}`, 404, "2"},
			{"unknown alias", "/v1/models/m:predict", `{"instances":[[1]],"alias":"gold"}`, 404, "gold"},
			{"bad index", "/v1/models/m:predict?index=abc", `{"instances":[[1]]}`, 400, "index"},
			{"unknown action", "/v1/models/m:explain", `{"instances":[[1]]}`, 404, "predict"},
			{"v2 shape mismatch", "/v2/models/m/infer", `{"inputs":[{"name":"input","shape":[2,28],"datatype":"FP64","data":` + jsonArray(row) + `}]}`, 400, "needs 56 values"},
			{"v2 bytes", "/v2/models/m/infer", `{"inputs":[{"name":"input","shape":[1],"datatype":"BYTES","data":["x"]}]}`, 400, "BYTES"},
			{"v2 no inputs", "/v2/models/m/infer", `{"inputs":[]}`, 400, "inputs"},
			{"v2 overflowing shape", "/v2/models/m/infer", `{"inputs":[{"name":"input","shape":[4611686018427387904,28],"datatype":"FP64","data":[]}]}`, 400, "shape"},
			{"v2 unknown model", "/v2/models/nope/infer", `{"inputs":[{"name":"input","shape":[1],"datatype":"FP64","data":[1]}]}`, 404, "nope"},
			{"v2 bad version", "/v2/models/m/versions/x/infer", `{"inputs":[{"name":"input","shape":[1],"datatype":"FP64","data":[1]}]}`, 400, "version"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := call(t, a, "POST", tc.path, tc.body)
				msg, _ := r.body["error"].(string)
				if r.status != tc.status || !strings.Contains(msg, tc.mention) || r.body["code"] == "" {
					t.Errorf("got %d %v, want %d mentioning %q", r.status, r.body, tc.status, tc.mention)
				}
			})
		}
		// The replica survived every bad request.
		checkClose(t, "after errors", floats(t, predict(t, `{"instances":[`+jsonArray(row)+`]}`)[0]), want)
	})

	t.Run("metrics", func(t *testing.T) {
		status, text := getText(t, a, "/metrics")
		if status != 200 || !strings.Contains(text, `kiln_predict_requests_total{model="m",version="1"}`) {
			t.Errorf("/metrics: %d, no request counter for m v1", status)
		}
		for _, line := range strings.Split(text, "\n") {
			if v, ok := strings.CutPrefix(line, `kiln_predict_requests_total{model="m",version="1"} `); ok {
				if n, err := strconv.ParseFloat(v, 64); err != nil || int(n) < sent {
					t.Errorf("counter %s, want at least %d", v, sent)
				}
			}
		}
		if !strings.Contains(text, `kiln_serving_replicas_local 1`) {
			t.Errorf("/metrics lacks kiln_serving_replicas_local 1")
		}
		for _, path := range []string{"/v1/models/m/metrics", "/v1/models/m/metrics?scope=local"} {
			r := call(t, a, "GET", path, "")
			vs, _ := r.body["versions"].([]any)
			if r.status != 200 || len(vs) != 1 || r.body["nodes_missing"] != float64(0) {
				t.Fatalf("GET %s: %d %v", path, r.status, r.body)
			}
			v := vs[0].(map[string]any)
			if v["version"] != float64(1) || v["requests"].(float64) < float64(sent) || !(v["p50_ms"].(float64) > 0) {
				t.Errorf("GET %s: %v, want requests >= %d and p50_ms > 0", path, v, sent)
			}
			if !(v["p99_ms"].(float64) >= v["p50_ms"].(float64)) {
				t.Errorf("GET %s: p99 %v below p50 %v", path, v["p99_ms"], v["p50_ms"])
			}
		}
		for _, tc := range []struct {
			path   string
			status int
		}{{"/v1/models/nope/metrics", 404}, {"/v1/models/m/metrics?scope=world", 400}} {
			if r := call(t, a, "GET", tc.path, ""); r.status != tc.status {
				t.Errorf("GET %s: %d %v, want %d", tc.path, r.status, r.body, tc.status)
			}
		}
	})
}
