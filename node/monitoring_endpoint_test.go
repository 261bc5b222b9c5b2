package node

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/raftfsm/structs"
)

func withFastAlerts(c *Config) { c.Monitoring.AlertInterval = 200 * time.Millisecond }

// irisRows reads iris.csv's four features and its species as a class
// index (setosa 0, versicolor 1, virginica 2, the model's order).
func irisRows(t testing.TB) ([][]float64, []int) {
	t.Helper()
	f, err := os.Open(irisCSV)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	classes := map[string]int{"setosa": 0, "versicolor": 1, "virginica": 2}
	var x [][]float64
	var y []int
	for _, r := range recs[1:] {
		row := make([]float64, 4)
		for j := range row {
			row[j], _ = strconv.ParseFloat(r[1+j], 64)
		}
		x = append(x, row)
		y = append(y, classes[r[5]])
	}
	return x, y
}

// servedIris is a node serving the linear iris model, trained (as its
// lineage would say) on iris:1.
func servedIris(t testing.TB, opts ...testOpt) *Agent {
	t.Helper()
	a := testNode(t, opts...)
	waitLeader(t, a)
	if r := pushDataset(t, a, "iris", "", readTestdata(t, irisCSV)); r.status != 201 {
		t.Fatalf("dataset: %d %v", r.status, r.body)
	}
	createModel(t, a, "iris")
	uploadOK(t, a, "iris", "", readTestdata(t, linearIrisFile))
	deployAndWait(t, a, "iris")
	return a
}

// predictRows sends each row as its own request, with ID prefix<i>, and
// shift added to petal length.
func predictRows(t *testing.T, a *Agent, x [][]float64, prefix string, shift float64) {
	t.Helper()
	for i, row := range x {
		body := fmt.Sprintf(`{"id":"%s%d","instances":[[%v,%v,%v,%v]]}`, prefix, i, row[0], row[1], row[2]+shift, row[3])
		if r := call(t, a, "POST", "/v1/models/iris:predict", body); r.status != 200 {
			t.Fatalf("predict %d: %d %v", i, r.status, r.body)
		}
	}
	a.monitoring.log.Sync()
}

func TestMonitoring_LogFeedbackPerformance(t *testing.T) {
	a := servedIris(t)
	x, y := irisRows(t)
	predictRows(t, a, x, "r", 0)

	r := call(t, a, "GET", "/v1/deployments/iris/predictions?from=1h&limit=1000", "")
	items, _ := r.body["items"].([]any)
	if r.status != 200 || len(items) != len(x) {
		t.Fatalf("predictions: %d, %d items, want %d: %v", r.status, len(items), len(x), r.raw[:min(len(r.raw), 300)])
	}
	first := items[0].(map[string]any)
	if first["id"] != "r0" || first["version"] != float64(1) || first["node"] != a.cfg.NodeName {
		t.Errorf("first logged record %v", first)
	}
	in := first["inputs"].([]any)[0].(map[string]any)["data"].([]any)
	if in[0] != x[0][0] || in[3] != x[0][3] {
		t.Errorf("logged inputs %v, sent %v", in, x[0])
	}

	// A label of the wrong type is refused, naming it; nothing is taken.
	bad := `{"items":[{"id":"r0","label":0},{"id":"r1","label":"setosa"}]}`
	if r := call(t, a, "POST", "/v1/feedback", bad); r.status != 400 || !strings.Contains(r.raw, "items[1].label") {
		t.Errorf("bad label: %d %s", r.status, r.raw)
	}
	if r := call(t, a, "POST", "/v1/feedback", `{"items":[{"id":"r0","label":7}]}`); r.status != 400 || !strings.Contains(r.raw, "class index") {
		t.Errorf("class out of range: %d %s", r.status, r.raw)
	}
	// Labels for every even row, and one for a request never logged.
	var fb []string
	for i := 0; i < len(x); i += 2 {
		fb = append(fb, fmt.Sprintf(`{"id":"r%d","label":%d}`, i, y[i]))
	}
	fb = append(fb, `{"id":"nobody","label":1}`)
	r = call(t, a, "POST", "/v1/feedback", `{"deployment":"iris","items":[`+strings.Join(fb, ",")+`]}`)
	if r.status != 200 || r.body["matched"] != float64(75) || r.body["unmatched"] != float64(1) {
		t.Fatalf("feedback: %d %v", r.status, r.body)
	}
	r = call(t, a, "GET", "/v1/deployments/iris/performance?window=1h", "")
	vs, _ := r.body["versions"].([]any)
	if r.status != 200 || len(vs) != 1 || r.body["unmatched"] != float64(1) || r.body["task"] != "classification" {
		t.Fatalf("performance: %d %v", r.status, r.body)
	}
	v := vs[0].(map[string]any)
	if v["labeled"] != float64(75) || v["accuracy"].(float64) < 0.9 || v["f1"] == nil || v["auc"] == nil || v["logloss"] == nil {
		t.Errorf("version 1's performance %v", v)
	}
	// Over time: six steps of ten minutes, oldest first, whose labelled
	// rows add up to the window's, each scored on its own.
	r = call(t, a, "GET", "/v1/deployments/iris/performance?window=1h&step=10m", "")
	series, _ := r.body["series"].([]any)
	if r.status != 200 || len(series) != 6 {
		t.Fatalf("performance over time: %d %v", r.status, r.raw)
	}
	labeled, prev := 0.0, ""
	for _, st := range series {
		st := st.(map[string]any)
		if from := st["from"].(string); from <= prev {
			t.Errorf("steps out of order: %v after %v", from, prev)
		} else {
			prev = from
		}
		for _, sv := range st["versions"].([]any) {
			sv := sv.(map[string]any)
			labeled += sv["labeled"].(float64)
			if sv["accuracy"] == nil {
				t.Errorf("a step with rows has no accuracy: %v", sv)
			}
		}
	}
	if labeled != 75 {
		t.Errorf("the steps hold %v labelled rows, want 75: %s", labeled, r.raw)
	}
	for _, q := range []string{"window=1h&step=2h", "window=1h&step=1s", "step=soon"} {
		if r := call(t, a, "GET", "/v1/deployments/iris/performance?"+q, ""); r.status != 400 || !strings.Contains(r.raw, "step") {
			t.Errorf("performance?%s: %d %s, want 400 naming step", q, r.status, r.raw)
		}
	}

	// A label that arrives before its request is logged waits, and is
	// joined once the request is served.
	if r := call(t, a, "POST", "/v1/feedback", `{"deployment":"iris","items":[{"id":"early","label":0}]}`); r.body["unmatched"] != float64(1) {
		t.Fatalf("early label: %v", r.body)
	}
	body := fmt.Sprintf(`{"id":"early","instances":[[%v,%v,%v,%v]]}`, x[0][0], x[0][1], x[0][2], x[0][3])
	if r := call(t, a, "POST", "/v1/models/iris:predict", body); r.status != 200 {
		t.Fatal(r.raw)
	}
	a.monitoring.log.Sync()
	testutil.Until(t, 15*time.Second, "the early label joined", func() bool {
		r := call(t, a, "GET", "/v1/deployments/iris/performance?window=1h", "")
		vs, _ := r.body["versions"].([]any)
		return len(vs) == 1 && vs[0].(map[string]any)["labeled"] == float64(76)
	})
}

func TestMonitoring_DriftAlertWebhook(t *testing.T) {
	var hooks atomic.Int32
	var last atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		last.Store(string(b))
		if hooks.Add(1) == 1 {
			w.WriteHeader(503) // the first call fails: the action retries
			return
		}
		w.WriteHeader(204)
	}))
	defer srv.Close()
	a := servedIris(t, withFastAlerts)
	x, _ := irisRows(t)

	// Monitors and rules are checked when applied.
	for _, tc := range []struct{ body, want string }{
		{`{"numeric_test":"t"}`, "numeric_test"},
		{`{"reference_dataset":"iris:1","feature_columns":["nope"]}`, "no column"},
		{`{"reference_dataset":"iris:9"}`, "has no version 9"},
		{`{}`, "reference_dataset is required"},
	} {
		if r := call(t, a, "PUT", "/v1/monitors/iris", tc.body); r.status/100 != 4 || !strings.Contains(r.raw, tc.want) {
			t.Errorf("monitor %s: %d %s", tc.body, r.status, r.raw)
		}
	}
	r := call(t, a, "PUT", "/v1/monitors/iris", `{"reference_dataset":"iris:1","schedule":"1h","min_samples":50}`)
	if r.status != 200 {
		t.Fatalf("monitor: %d %v", r.status, r.body)
	}
	cols, _ := json.Marshal(r.body["columns"])
	if string(cols) != `["Sepal_Length","Sepal_Width","Petal_Length","Petal_Width"]` {
		t.Errorf("columns %s", cols)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"deployment":"nope","condition":"drift.share_drifted > 0.2"}`, "not found"},
		{`{"deployment":"iris","condition":"drift.shared > 0.2"}`, "does not compile"},
		{`{"deployment":"iris","condition":"drift.features[\"Petal\"].drift"}`, `no feature`},
		{`{"deployment":"iris","condition":"performance.accuracy < 0.5","actions":[{"kind":"run_pipeline","pipeline":"none"}]}`, "pipeline"},
	} {
		if r := call(t, a, "PUT", "/v1/alert-rules/r", tc.body); r.status/100 != 4 || !strings.Contains(r.raw, tc.want) {
			t.Errorf("rule %s: %d %s", tc.body, r.status, r.raw)
		}
	}

	// Unshifted traffic: no drift.
	predictRows(t, a, x, "a", 0)
	r = call(t, a, "POST", "/v1/monitors/iris/check", "")
	if r.status != 200 || r.body["samples"] != float64(150) || r.body["share_drifted"] != float64(0) {
		t.Fatalf("check: %d %s", r.status, r.raw)
	}
	feats := r.body["features"].([]any)
	if len(feats) != 4 || feats[0].(map[string]any)["test"] != "ks" || feats[0].(map[string]any)["p_value"].(float64) < 0.5 {
		t.Errorf("features %v", feats)
	}
	if p, _ := r.body["prediction"].(map[string]any); p == nil || p["test"] != "chi2" || p["drift"] != false {
		t.Errorf("prediction drift %v", r.body["prediction"])
	}

	rule := fmt.Sprintf(`{"deployment":"iris","condition":"drift.share_drifted > 0.2","actions":[{"kind":"webhook","url":%q}]}`, srv.URL)
	if r := call(t, a, "PUT", "/v1/alert-rules/drifted", rule); r.status != 200 {
		t.Fatalf("rule: %d %s", r.status, r.raw)
	}
	// As many rows again with petal length shifted: it drifts, the rest
	// does not.
	predictRows(t, a, x, "b", 3)
	r = call(t, a, "POST", "/v1/monitors/iris/check", "")
	if r.status != 200 || r.body["share_drifted"] != 0.25 || r.body["samples"] != float64(300) {
		t.Fatalf("shifted check: %d %s", r.status, r.raw)
	}
	for _, f := range r.body["features"].([]any) {
		f := f.(map[string]any)
		if f["drift"] != (f["name"] == "Petal_Length") {
			t.Errorf("feature %v", f)
		}
	}
	var alert map[string]any
	testutil.Until(t, 20*time.Second, "the alert fires and its webhook succeeds", func() bool {
		r := call(t, a, "GET", "/v1/alerts", "")
		items, _ := r.body["items"].([]any)
		if len(items) != 1 {
			return false
		}
		alert = items[0].(map[string]any)
		acts, _ := alert["actions"].([]any)
		return alert["state"] == "firing" && len(acts) == 1 && acts[0].(map[string]any)["status"] == "done"
	})
	act := alert["actions"].([]any)[0].(map[string]any)
	if act["attempts"] != float64(2) || alert["value"].(float64) < 0.25 {
		t.Errorf("alert %v", alert)
	}
	if !strings.Contains(last.Load().(string), `"rule":"drifted"`) {
		t.Errorf("webhook body %v", last.Load())
	}
	if r := call(t, a, "GET", "/v1/monitors/iris/drift?since=1h", ""); len(r.body["items"].([]any)) != 2 {
		t.Errorf("drift history: %s", r.raw)
	}
	if _, body := getText(t, a, "/metrics"); !strings.Contains(body, `kiln_alert_state{deployment="iris",rule="drifted",state="firing"} 1`) {
		t.Errorf("metrics lack the firing alert")
	}
	if r := call(t, a, "POST", "/v1/alerts/drifted/ack", ""); r.status != 200 || r.body["acked_by"] != "anonymous" {
		t.Errorf("ack: %d %s", r.status, r.raw)
	}
}

// TestMonitoring_PipelineWaitsForAlert: a wait_for step waits for its
// alert to fire after the run started; one naming no rule fails.
func TestMonitoring_PipelineWaitsForAlert(t *testing.T) {
	a := servedIris(t, withFastAlerts)
	spec := `{"steps": [{"name": "paged", "type": "wait_for", "wait_for": {"alert": "always"}}]}`
	if r := call(t, a, "PUT", "/v1/pipelines/paged", spec); r.status != http.StatusOK {
		t.Fatalf("put = %d %s", r.status, r.raw)
	}
	r := call(t, a, "POST", "/v1/pipelines/paged/runs", "")
	if r.status != http.StatusCreated {
		t.Fatalf("run = %d %s", r.status, r.raw)
	}
	id := r.body["id"].(string)
	run := waitPipelineRun(t, a, "paged", id)
	if s := stepsOf(run)["paged"]; run["state"] != "failed" || !strings.Contains(s["error"].(string), `alert rule "always" does not exist`) {
		t.Fatalf("run without the rule = %v", run)
	}
	if r := call(t, a, "PUT", "/v1/alert-rules/always", `{"deployment":"iris","condition":"requests >= 0"}`); r.status != 200 {
		t.Fatalf("rule: %d %s", r.status, r.raw)
	}
	testutil.Until(t, 10*time.Second, "the alert fires", func() bool {
		items, _ := call(t, a, "GET", "/v1/alerts?state=firing", "").body["items"].([]any)
		return len(items) == 1
	})
	// Fired before this run started: the step waits for the next firing.
	r = call(t, a, "POST", "/v1/pipelines/paged/runs", "")
	id = r.body["id"].(string)
	time.Sleep(time.Second) // several evaluations, none of which may end the wait
	if s := stepsOf(call(t, a, "GET", "/v1/pipelines/paged/runs/"+id, "").body)["paged"]; s["state"] == "succeeded" {
		t.Fatalf("the wait ended on a firing before its run: %v", s)
	}
	// The rule replaced: its alert starts from inactive and fires again.
	if r := call(t, a, "PUT", "/v1/alert-rules/always", `{"deployment":"iris","condition":"requests >= 0","for":"0s"}`); r.status != 200 {
		t.Fatal(r.raw)
	}
	run = waitPipelineRun(t, a, "paged", id)
	if out, _ := stepsOf(run)["paged"]["outputs"].(map[string]any); run["state"] != "succeeded" || out["alert"] != "always" {
		t.Fatalf("run = %v", run)
	}
}

// TestScore: live metrics by task and output width, as Evaluate reads them.
func TestScore(t *testing.T) {
	reg := score(2, structs.TaskRegression, 2, 1, []float64{1, 2, 3}, []float64{1, 2, 5})
	if reg.Labeled != 3 || reg.RMSE == nil || math.Abs(*reg.RMSE-math.Sqrt(4.0/3)) > 1e-12 || math.Abs(*reg.MAE-2.0/3) > 1e-12 || reg.Accuracy != nil {
		t.Errorf("regression %+v", reg)
	}
	// A binary classifier giving P(class 1) per row, and one giving a
	// column per class: the same scores.
	y := []float64{1, 0, 1, 0}
	one := score(1, structs.TaskClassification, 2, 1, y, []float64{0.9, 0.2, 0.4, 0.1})
	two := score(1, structs.TaskClassification, 2, 2, y, []float64{0.1, 0.9, 0.8, 0.2, 0.6, 0.4, 0.9, 0.1})
	for _, p := range []VersionPerformance{one, two} {
		if p.Accuracy == nil || *p.Accuracy != 0.75 || *p.AUC != 1 || math.Abs(*p.F1-2.0/3) > 1e-12 || p.RMSE != nil {
			t.Errorf("binary %+v", p)
		}
	}
	// Labels of more classes than a binary model gives are not scored.
	if p := score(1, structs.TaskClassification, 2, 1, []float64{2}, []float64{0.5}); p.Accuracy != nil {
		t.Errorf("class 2 of a binary model scored: %+v", p)
	}
}

// TestParseLabel: labels by task, one per row of the request.
func TestParseLabel(t *testing.T) {
	for _, tc := range []struct {
		raw     string
		task    string
		classes int
		rows    int
		want    []float64
		err     string
	}{
		{`2.5`, structs.TaskRegression, 2, 1, []float64{2.5}, ""},
		{`[1, 2]`, structs.TaskRegression, 2, 2, []float64{1, 2}, ""},
		{`true`, structs.TaskRegression, 2, 1, nil, "a boolean label is for a classifier of two classes"},
		{`"a"`, structs.TaskRegression, 2, 1, nil, "give a number"},
		{`1`, structs.TaskClassification, 3, 1, []float64{1}, ""},
		{`true`, structs.TaskClassification, 2, 1, []float64{1}, ""},
		{`true`, structs.TaskClassification, 3, 1, nil, "two classes"},
		{`1.5`, structs.TaskClassification, 3, 1, nil, "not a class index"},
		{`3`, structs.TaskClassification, 3, 1, nil, "0 to 2"},
		{`1`, structs.TaskClassification, 3, 2, nil, "the request had 2 rows"},
		{`[0, "x"]`, structs.TaskClassification, 3, 2, nil, "label[1]"},
	} {
		got, err := parseLabel("label", json.RawMessage(tc.raw), tc.task, tc.classes, tc.rows)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s (%s): %v, want an error with %q", tc.raw, tc.task, err, tc.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s (%s) = %v, %v; want %v", tc.raw, tc.task, got, err, tc.want)
		}
	}
}
