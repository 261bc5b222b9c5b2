package clustertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// Monitoring (DESIGN.md §8) on real clusters: every node logs what it
// serves, and reads of the log, drift checks, feedback and performance
// gather it from all of them; the leader's evaluator turns drift and a
// canary's errors into alerts whose actions start a pipeline run, call a
// webhook in this test process, and roll a deployment back.

// monitoringHCL makes the leader evaluate alert rules every 500 ms instead
// of every 10 s, so that an alert follows its condition within a second.
const monitoringHCL = `monitoring {
  alert_interval = "500ms"
}`

// irisFeatures are iris.csv's feature columns, in the linear model's order.
var irisFeatures = []string{"Sepal_Length", "Sepal_Width", "Petal_Length", "Petal_Width"}

// irisClass is a species' class index in the linear iris model's outputs.
var irisClass = map[string]int{"setosa": 0, "versicolor": 1, "virginica": 2}

// alertAction is the status of one action of an alert's current firing.
type alertAction struct {
	Kind     string `json:"kind"`
	Status   string `json:"status"`
	Error    string `json:"error"`
	Attempts int    `json:"attempts"`
	Result   string `json:"result"`
}

// alertState is the part of an alert the tests read.
type alertState struct {
	Rule       string        `json:"rule"`
	Deployment string        `json:"deployment"`
	State      string        `json:"state"`
	Value      float64       `json:"value"`
	Fired      int           `json:"fired"`
	Actions    []alertAction `json:"actions"`
}

func (a alertState) String() string {
	parts := make([]string, len(a.Actions))
	for i, act := range a.Actions {
		parts[i] = fmt.Sprintf("%s %s after %d attempts (result %q, error %q)", act.Kind, act.Status, act.Attempts, act.Result, act.Error)
	}
	return fmt.Sprintf("alert %s is %s (value %v, fired %d): [%s]", a.Rule, a.State, a.Value, a.Fired, strings.Join(parts, "; "))
}

// action returns the status of the rule's action of kind.
func (a alertState) action(kind string) alertAction {
	for _, act := range a.Actions {
		if act.Kind == kind {
			return act
		}
	}
	return alertAction{}
}

// alert reads rule's alert through nd, consistently.
func (nd *node) alert(rule string) (alertState, error) {
	var out struct {
		Items []alertState `json:"items"`
	}
	if err := nd.getJSON("/v1/alerts?consistency=consistent", &out); err != nil {
		return alertState{}, err
	}
	for _, a := range out.Items {
		if a.Rule == rule {
			return a, nil
		}
	}
	return alertState{}, fmt.Errorf("no alert for rule %s among %d", rule, len(out.Items))
}

// featureDrift is one feature's test in a drift check.
type featureDrift struct {
	Name   string   `json:"name"`
	Test   string   `json:"test"`
	PValue *float64 `json:"p_value"`
	Drift  bool     `json:"drift"`
	Error  string   `json:"error"`
}

// driftCheck is the part of a drift check the tests read.
type driftCheck struct {
	CheckedAt    time.Time      `json:"checked_at"`
	Samples      int            `json:"samples"`
	NodesMissing int            `json:"nodes_missing"`
	Features     []featureDrift `json:"features"`
	ShareDrifted float64        `json:"share_drifted"`
	Skipped      string         `json:"skipped"`
}

func (c driftCheck) String() string {
	if c.Skipped != "" {
		return fmt.Sprintf("check at %s skipped: %s", c.CheckedAt.Format("15:04:05.000"), c.Skipped)
	}
	var drifted []string
	for _, f := range c.Features {
		if f.Drift {
			drifted = append(drifted, f.Name)
		}
	}
	return fmt.Sprintf("check at %s of %d rows (%d nodes missing): share %v, drifted %v", c.CheckedAt.Format("15:04:05.000"), c.Samples, c.NodesMissing, c.ShareDrifted, drifted)
}

// driftChecks reads a deployment's recorded checks through nd.
func (nd *node) driftChecks(deployment string) ([]driftCheck, error) {
	var out struct {
		Items []driftCheck `json:"items"`
	}
	err := nd.getJSON("/v1/monitors/"+deployment+"/drift?since=1h&consistency=consistent", &out)
	return out.Items, err
}

// loggedPrediction is the part of a logged request the tests read.
type loggedPrediction struct {
	ID      string `json:"id"`
	Node    string `json:"node"`
	Version uint64 `json:"version"`
	Inputs  []struct {
		Data []float64 `json:"data"`
	} `json:"inputs"`
	Labels []float64 `json:"labels"`
}

// loggedPredictions reads a deployment's log of the last hour through nd,
// gathered from every node, and fails unless every node answered.
func (nd *node) loggedPredictions(deployment string) (map[string]loggedPrediction, error) {
	var out struct {
		Items        []loggedPrediction `json:"items"`
		Truncated    bool               `json:"truncated"`
		NodesMissing int                `json:"nodes_missing"`
	}
	if err := nd.getJSON("/v1/deployments/"+deployment+"/predictions?from=1h&limit=10000", &out); err != nil {
		return nil, err
	}
	if out.Truncated || out.NodesMissing != 0 {
		return nil, fmt.Errorf("predictions of %s through %s: truncated %v, %d nodes missing", deployment, nd.name, out.Truncated, out.NodesMissing)
	}
	byID := make(map[string]loggedPrediction, len(out.Items))
	for _, p := range out.Items {
		byID[p.ID] = p
	}
	return byID, nil
}

// waitLogged waits until the deployment's log, read through nd, holds
// every one of ids.
func (nd *node) waitLogged(deployment string, ids []string) map[string]loggedPrediction {
	nd.t.Helper()
	var logged map[string]loggedPrediction
	testutil.WaitFor(nd.t, 20*time.Second, func() error {
		var err error
		if logged, err = nd.loggedPredictions(deployment); err != nil {
			return err
		}
		for _, id := range ids {
			if _, ok := logged[id]; !ok {
				return fmt.Errorf("%d requests logged, %s not among them", len(logged), id)
			}
		}
		return nil
	})
	return logged
}

// versionPerformance is one version's live quality.
type versionPerformance struct {
	Version  uint64   `json:"version"`
	Labeled  int      `json:"labeled"`
	Accuracy *float64 `json:"accuracy"`
	F1       *float64 `json:"f1"`
	AUC      *float64 `json:"auc"`
	LogLoss  *float64 `json:"logloss"`
}

type performance struct {
	Task         string               `json:"task"`
	Versions     []versionPerformance `json:"versions"`
	Unmatched    int                  `json:"unmatched"`
	NodesMissing int                  `json:"nodes_missing"`
}

func (nd *node) performance(deployment string) (performance, error) {
	var p performance
	err := nd.getJSON("/v1/deployments/"+deployment+"/performance?window=1h", &p)
	if err == nil && p.NodesMissing != 0 {
		err = fmt.Errorf("performance of %s through %s: %d nodes missing", deployment, nd.name, p.NodesMissing)
	}
	return p, err
}

// predictIris sends one iris row as its own request with the given ID, in
// the body or, with asHeader, as X-Request-Id.
func (nd *node) predictIris(model, id string, row []float64, asHeader bool) (*response, prediction, error) {
	body := map[string]any{"instances": [][]float64{row}}
	if !asHeader {
		body["id"] = id
		r, p, err := nd.predict(model, body)
		return r, p, err
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequest("POST", nd.baseURL()+"/v1/models/"+model+":predict", bytes.NewReader(b))
	if err != nil {
		return nil, prediction{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", id)
	resp, err := nd.c.client().Do(req)
	if err != nil {
		return nil, prediction{}, err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, prediction{}, err
	}
	r := &response{status: resp.StatusCode, header: resp.Header, body: rb}
	var p prediction
	if r.status == http.StatusOK {
		err = json.Unmarshal(rb, &p)
	}
	return r, p, err
}

// mustPredictIris is predictIris that fails the test unless the answer is
// 200 with the request's ID.
func (nd *node) mustPredictIris(model, id string, row []float64, asHeader bool) prediction {
	nd.t.Helper()
	r, p, err := nd.predictIris(model, id, row, asHeader)
	if err != nil || r.status != http.StatusOK {
		nd.t.Fatalf("predict %s (%s) through %s: %v %v", model, id, nd.name, r, err)
	}
	if p.ID != id {
		nd.t.Fatalf("predict %s through %s: answer's id %q, want %q", model, nd.name, p.ID, id)
	}
	return p
}

// deployIris registers the linear iris model as model and deploys its
// version 1 on one replica.
func deployIris(c *cluster, via *node, model string) {
	c.t.Helper()
	via.createModel(model, nil)
	if v := via.push(model, filepath.Join(testdataDir, "linear", "iris.json"), ""); v.Version != 1 {
		c.t.Fatalf("pushed the linear iris model as version %d of %s, want 1", v.Version, model)
	}
	via.write("PUT", "/v1/deployments/"+model, map[string]any{"versions": []map[string]any{{"version": 1, "weight": 100}}, "replicas": 1}, http.StatusOK)
	c.waitRunning(via, model, 1, 1)
}

// webhookRecorder is an HTTP server in the test process that records the
// JSON bodies POSTed to it and answers 204.
type webhookRecorder struct {
	srv *httptest.Server

	mu     sync.Mutex
	bodies []map[string]any // guarded by mu
}

func newWebhookRecorder(t *testing.T) *webhookRecorder {
	w := &webhookRecorder{}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || r.Method != http.MethodPost {
			rw.WriteHeader(http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.bodies = append(w.bodies, body)
		w.mu.Unlock()
		rw.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhookRecorder) calls() []map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.bodies)
}

// Drift seen across the cluster starts retraining: a monitor compares the
// iris deployment's logged requests, gathered from every node, with the iris
// dataset each second. Unshifted rows served by node 1 drift nowhere and
// the rule stays inactive; rows with petal length + 3 served by nodes 2 and
// 3 make Petal_Length drift, the alert fires, a webhook in this process
// hears of it, and a pipeline run triggered by the alert trains and
// registers a new model.
//
// The rule is drift.share_drifted >= 0.25: the shift moves one feature of
// four, so the share of drifted features is exactly 0.25 (the sepal and
// petal width rows are the reference's own), which > 0.25 would never see.
func TestCluster_MonitorDriftTriggersRetraining(t *testing.T) {
	const rule = "iris-drift"
	hooks := newWebhookRecorder(t)
	c := newCluster(t, 3, withHCL(monitoringHCL))
	nodes := c.all()
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	c.waitRegistered(n1, 3)

	irisPath := filepath.Join(testdataDir, "datasets", "iris.csv")
	var ds datasetVersion
	n1.upload("/v1/datasets/iris/versions", "", irisPath, &ds)
	if ds.Version != 1 || ds.Rows != 150 {
		t.Fatalf("dataset iris uploaded as %+v, want version 1 of 150 rows", ds)
	}
	deployIris(c, n1, "iris")
	n1.write("PUT", "/v1/pipelines/retrain", map[string]any{
		"params": map[string]any{"register_as": "iris-manual"},
		"steps": []map[string]any{{"name": "train", "type": "train", "job": map[string]any{
			"name": "iris-retrain", "trainer": map[string]any{"kind": "builtin", "algorithm": "softmax_regression"},
			"dataset": "iris:1", "target": "Species", "features": irisFeatures, "resources": map[string]any{"cpu": 1},
			"register_as": "${params.register_as}",
		}}},
	}, http.StatusOK)
	n3.write("PUT", "/v1/alert-rules/"+rule, map[string]any{
		"deployment": "iris", "condition": "drift.share_drifted >= 0.25",
		"actions": []map[string]any{
			{"kind": "run_pipeline", "pipeline": "retrain", "params": map[string]any{"register_as": "iris-retrained"}},
			{"kind": "webhook", "url": hooks.srv.URL},
		},
	}, http.StatusOK)

	rows, _ := readIris(t, irisPath)
	var baseIDs, shiftedIDs []string
	for i := range rows {
		baseIDs = append(baseIDs, fmt.Sprintf("base-%d", i))
		shiftedIDs = append(shiftedIDs, fmt.Sprintf("shifted-%d", i))
	}

	// Unshifted rows through node 1. The monitor is put once they are all
	// logged, so that no check reads a part of them: iris.csv is sorted by
	// species, and its first rows alone would drift.
	inParallel(t, 4, len(rows), func(i int) error {
		r, p, err := n1.predictIris("iris", baseIDs[i], rows[i], false)
		if err != nil || r.status != http.StatusOK || p.ID != baseIDs[i] {
			return fmt.Errorf("predict %s through %s: %v %+v %v", baseIDs[i], n1.name, r, p, err)
		}
		return nil
	})
	n2.waitLogged("iris", baseIDs)
	r := n2.write("PUT", "/v1/monitors/iris", map[string]any{"reference_dataset": "iris:1", "schedule": "1s", "window": "1m", "min_samples": 50}, http.StatusOK)
	var mon struct {
		Reference string   `json:"reference"`
		Columns   []string `json:"columns"`
	}
	if err := json.Unmarshal(r.body, &mon); err != nil || mon.Reference != "iris:1" || !slices.Equal(mon.Columns, irisFeatures) {
		t.Fatalf("monitor %s (%v): want reference iris:1 and columns %v, matched to the model's features", r, err, irisFeatures)
	}

	// A check over them finds no drift, nor do the scheduled ones, and the
	// alert stays inactive. The check goes to the node that took the
	// monitor, which reads its own write as any client does, with ?index=.
	r = n2.write("POST", fmt.Sprintf("/v1/monitors/iris/check?index=%d", r.index()), nil, http.StatusOK)
	var check driftCheck
	if err := json.Unmarshal(r.body, &check); err != nil {
		t.Fatal(err)
	}
	if check.Skipped != "" || check.Samples != len(rows) || check.NodesMissing != 0 || check.ShareDrifted != 0 || len(check.Features) != 4 {
		t.Fatalf("check of the unshifted rows: %s (%s), want all %d rows tested with no drift", check, r, len(rows))
	}
	for _, f := range check.Features {
		if f.Drift || f.Error != "" || f.Test != "ks" || f.PValue == nil {
			t.Errorf("unshifted %s: %+v, want a KS test without drift", f.Name, f)
		}
	}
	testutil.WaitFor(t, 20*time.Second, func() error {
		checks, err := n1.driftChecks("iris")
		if err != nil {
			return err
		}
		tested := 0
		for _, ck := range checks {
			if ck.Skipped != "" || ck.Samples != len(rows) || ck.ShareDrifted != 0 {
				t.Fatalf("before the shift, %s; want every check to test all %d rows and find no drift", ck, len(rows))
			}
			tested++
		}
		if tested < 2 {
			return fmt.Errorf("%d checks recorded, want the manual one and a scheduled one", tested)
		}
		return nil
	})
	holdsFor(t, 2*time.Second, func() error {
		a, err := n3.alert(rule)
		if err != nil {
			return err
		}
		if a.State != "inactive" || a.Fired != 0 {
			return fmt.Errorf("no drift yet, but %s", a)
		}
		return nil
	})

	// Shifted rows through nodes 2 and 3, in a stride order so that a
	// check that reads a part of them reads every species: the alert fires
	// and both of its actions are done.
	inParallel(t, 4, len(rows), func(k int) error {
		i := k * 37 % len(rows) // 37 is prime to 150: every row once
		nd := []*node{n2, n3}[i%2]
		row := slices.Clone(rows[i])
		row[2] += 3
		r, p, err := nd.predictIris("iris", shiftedIDs[i], row, false)
		if err != nil || r.status != http.StatusOK || p.ID != shiftedIDs[i] {
			return fmt.Errorf("predict %s through %s: %v %+v %v", shiftedIDs[i], nd.name, r, p, err)
		}
		return nil
	})
	var fired alertState
	testutil.WaitFor(t, 60*time.Second, func() error {
		a, err := n1.alert(rule)
		if err != nil {
			return err
		}
		fired = a
		if a.State != "firing" || len(a.Actions) != 2 || a.Actions[0].Status != "done" || a.Actions[1].Status != "done" {
			return fmt.Errorf("waiting for the alert to fire and its actions to be done: %s", a)
		}
		return nil
	})
	if fired.Fired != 1 || fired.Value < 0.25 || fired.Deployment != "iris" {
		t.Errorf("%s: want fired once for iris with a share of at least 0.25", fired)
	}

	// The webhook was called with the rule.
	calls := hooks.calls()
	if len(calls) != 1 || calls[0]["rule"] != rule || calls[0]["deployment"] != "iris" || calls[0]["state"] != "firing" {
		t.Errorf("webhook calls %v: want one, for rule %s of iris, firing", calls, rule)
	}

	// The alert's run of retrain succeeds and registers the model its
	// params name.
	runs, err := n2.pipelineRuns("retrain")
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].Trigger != "alert:"+rule {
		t.Fatalf("runs of retrain %+v: want one, triggered by alert:%s", runs, rule)
	}
	if res := fired.action("run_pipeline").Result; res != "run "+runs[0].ID {
		t.Errorf("the run_pipeline action's result is %q, want %q", res, "run "+runs[0].ID)
	}
	run := n2.waitPipelineRun("retrain", runs[0].ID, 90*time.Second)
	train := run.step("train")
	if run.State != "succeeded" || train.Outputs["model"] != "iris-retrained" || train.Outputs["model_version"] != "1" {
		t.Fatalf("run %s is %s: %s, outputs %v; want it to succeed registering iris-retrained version 1", run.ID, run.State, describeSteps(run.Steps), train.Outputs)
	}
	var v version
	if err := n3.getJSON("/v1/models/iris-retrained/versions/1?consistency=consistent", &v); err != nil {
		t.Fatalf("the retrained model: %v", err)
	}

	// A check over the whole window (both sets, 300 rows from three nodes)
	// finds Petal_Length, and only it, drifted.
	testutil.WaitFor(t, 20*time.Second, func() error {
		checks, err := n3.driftChecks("iris")
		if err != nil {
			return err
		}
		for _, ck := range checks {
			if ck.Skipped == "" && ck.Samples == 2*len(rows) {
				check = ck
				return nil
			}
		}
		return fmt.Errorf("no recorded check of all %d rows yet among %v", 2*len(rows), checks)
	})
	if check.ShareDrifted != 0.25 || check.NodesMissing != 0 {
		t.Errorf("the check of both sets: %s, want share 0.25 from every node", check)
	}
	for _, f := range check.Features {
		if f.Drift != (f.Name == "Petal_Length") {
			t.Errorf("after the shift, %s: %+v; want only Petal_Length drifted", f.Name, f)
		}
	}

	// Any node's read of the log gathers the rows logged on all three.
	logged, err := n3.loggedPredictions("iris")
	if err != nil {
		t.Fatal(err)
	}
	if len(logged) != 2*len(rows) {
		t.Errorf("the log through %s holds %d requests, want %d", n3.name, len(logged), 2*len(rows))
	}
	for i := range rows {
		for _, tc := range []struct {
			id    string
			node  *node
			shift float64
		}{{baseIDs[i], n1, 0}, {shiftedIDs[i], []*node{n2, n3}[i%2], 3}} {
			p, ok := logged[tc.id]
			if !ok {
				t.Errorf("request %s is not in the log", tc.id)
				continue
			}
			if p.Node != tc.node.name || p.Version != 1 || len(p.Inputs) != 1 || len(p.Inputs[0].Data) != 4 ||
				math.Abs(p.Inputs[0].Data[2]-(rows[i][2]+tc.shift)) > 1e-9 {
				t.Errorf("request %s logged as %+v, want it from %s, version 1, petal length %v", tc.id, p, tc.node.name, rows[i][2]+tc.shift)
			}
		}
	}
}

// A canary that refuses its input is rolled back by its alert: model m's
// version 2 is the 28-feature LightGBM model, put beside the 4-feature iris
// model at 50/50. Iris rows routed to it are refused (400) and count as its
// errors; the rule sees the canary's error rate, fires, and its rollback
// action pops the traffic back to version 1 alone, after which every
// request succeeds and the alert resolves without acting again.
func TestCluster_CanaryErrorRateRolledBack(t *testing.T) {
	const rule = "canary-errors"
	c := newCluster(t, 3, withHCL(monitoringHCL))
	nodes := c.all()
	n1 := nodes[0]
	n1.createModel("m", nil)
	v1 := n1.push("m", filepath.Join(testdataDir, "linear", "iris.json"), "")
	v2 := n1.push("m", filepath.Join(testdataDir, "lightgbm", "lgmulticlass.model"), "")
	if v1.Version != 1 || v2.Version != 2 || v2.Format != "lightgbm" {
		t.Fatalf("pushed %+v and %+v: want versions 1 and 2, the second a lightgbm model", v1, v2)
	}
	n1.write("PUT", "/v1/deployments/m", map[string]any{"versions": []map[string]any{{"version": 1, "weight": 100}}, "replicas": 1}, http.StatusOK)
	c.waitRunning(n1, "m", 1, 1)
	n1.write("PUT", "/v1/deployments/m", map[string]any{
		"versions": []map[string]any{{"version": 1, "weight": 50}, {"version": 2, "weight": 50}}, "replicas": 1,
	}, http.StatusOK)
	c.waitRunning(n1, "m", 1, 1, 2)
	nodes[1].write("PUT", "/v1/alert-rules/"+rule, map[string]any{
		"deployment": "m", "condition": "canary.errors.rate > 0.2 && canary.requests >= 10",
		"actions": []map[string]any{{"kind": "rollback"}},
	}, http.StatusOK)
	// Every node routes by the split before the load starts.
	waitTraffic(c, "m", 2)

	rows, _ := readIris(t, filepath.Join(testdataDir, "datasets", "iris.csv"))
	var mu sync.Mutex
	byStatus := map[int]int{}
	inParallel(t, 3, 60, func(i int) error {
		nd := nodes[i%3]
		r, p, err := nd.predictIris("m", fmt.Sprintf("split-%d", i), rows[i], false)
		if err != nil {
			return err
		}
		switch {
		case r.status == http.StatusOK && p.Version != 1:
			return fmt.Errorf("version %d answered an iris row through %s; only version 1 takes 4 features", p.Version, nd.name)
		case r.status == http.StatusBadRequest && !strings.Contains(string(r.body), "28"):
			return fmt.Errorf("refused through %s with %s; want the canary's 28-feature schema named", nd.name, r)
		case r.status != http.StatusOK && r.status != http.StatusBadRequest:
			return fmt.Errorf("predict through %s: %s", nd.name, r)
		}
		mu.Lock()
		byStatus[r.status]++
		mu.Unlock()
		return nil
	})
	t.Logf("60 iris rows on the 50/50 split: %d answered by version 1, %d refused by version 2", byStatus[http.StatusOK], byStatus[http.StatusBadRequest])
	if byStatus[http.StatusBadRequest] < 10 {
		t.Fatalf("only %d of 60 requests reached the canary; the rule needs 10", byStatus[http.StatusBadRequest])
	}

	var a alertState
	testutil.WaitFor(t, 30*time.Second, func() error {
		var err error
		if a, err = nodes[2].alert(rule); err != nil {
			return err
		}
		if a.Fired != 1 || len(a.Actions) != 1 || a.Actions[0].Status != "done" {
			return fmt.Errorf("waiting for the alert to fire and roll back: %s", a)
		}
		return nil
	})
	if act := a.Actions[0]; act.Kind != "rollback" || act.Attempts != 1 {
		t.Errorf("%s: want one rollback, done at the first attempt", a)
	}
	var d deployment
	if err := nodes[2].getJSON("/v1/deployments/m?consistency=consistent", &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Traffic.Versions) != 1 || d.Traffic.Versions[0].Version != 1 || d.Traffic.Versions[0].Weight != 100 {
		t.Fatalf("after the rollback the traffic is %+v, want version 1 alone", d.Traffic)
	}

	// Every node routes to version 1 alone, and every request succeeds.
	waitTraffic(c, "m", 1)
	inParallel(t, 3, 30, func(i int) error {
		nd := nodes[i%3]
		r, p, err := nd.predictIris("m", fmt.Sprintf("after-%d", i), rows[i], false)
		if err != nil || r.status != http.StatusOK || p.Version != 1 {
			return fmt.Errorf("after the rollback, predict through %s: %v %+v %v; want version 1 to answer", nd.name, r, p, err)
		}
		return nil
	})

	// Without a canary the condition no longer holds: the alert resolves,
	// and the rollback is not run again.
	testutil.WaitFor(t, 20*time.Second, func() error {
		var err error
		if a, err = n1.alert(rule); err != nil {
			return err
		}
		if a.State != "resolved" {
			return fmt.Errorf("waiting for the alert to resolve: %s", a)
		}
		return nil
	})
	if a.Fired != 1 || len(a.Actions) != 1 || a.Actions[0].Attempts != 1 {
		t.Errorf("%s: want one firing with one rollback", a)
	}
	if err := n1.getJSON("/v1/deployments/m?consistency=consistent", &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Traffic.Versions) != 1 || d.Traffic.Versions[0].Version != 1 {
		t.Errorf("once resolved, the traffic is %+v, want version 1 alone", d.Traffic)
	}
}

// waitTraffic waits until every node's own registry routes the
// deployment over n versions.
func waitTraffic(c *cluster, name string, n int) {
	c.t.Helper()
	testutil.WaitFor(c.t, 20*time.Second, func() error {
		for _, nd := range c.running() {
			var d deployment
			if err := nd.getJSON("/v1/deployments/"+name+"?consistency=stale", &d); err != nil {
				return err
			}
			if len(d.Traffic.Versions) != n {
				return fmt.Errorf("%s routes %s over %+v, want %d versions", nd.name, name, d.Traffic.Versions, n)
			}
		}
		return nil
	})
}

// Labels meet their requests wherever each was handled: labels sent to node
// 3 join requests node 1 logged; a label sent to node 2 before its request
// is served waits there as unmatched and joins once node 1 logs the
// request; performance read through node 3 scores them all; and a batch
// with one label of the wrong type is refused whole.
func TestCluster_FeedbackAcrossNodesOutOfOrder(t *testing.T) {
	c := newCluster(t, 3)
	nodes := c.all()
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	deployIris(c, n1, "iris")
	rows, species := readIris(t, filepath.Join(testdataDir, "datasets", "iris.csv"))

	// Every row through node 1, each its own request.
	ids := make([]string, len(rows))
	probs := make([][]float64, len(rows))
	inParallel(t, 4, len(rows), func(i int) error {
		ids[i] = fmt.Sprintf("fb-%d", i)
		r, p, err := n1.predictIris("iris", ids[i], rows[i], false)
		if err != nil || r.status != http.StatusOK || p.ID != ids[i] || len(p.Predictions) != 1 {
			return fmt.Errorf("predict %s through %s: %v %+v %v", ids[i], n1.name, r, p, err)
		}
		probs[i] = flatten(p.Predictions[0])
		return nil
	})
	n3.waitLogged("iris", ids)

	// Labels of the even rows through node 3: matched on node 1.
	var items []map[string]any
	var labeled []int // rows labelled, in the order scored below
	for i := 0; i < len(rows); i += 2 {
		items = append(items, map[string]any{"id": ids[i], "label": irisClass[species[i]]})
		labeled = append(labeled, i)
	}
	var fb struct {
		Matched   int `json:"matched"`
		Unmatched int `json:"unmatched"`
	}
	r := n3.write("POST", "/v1/feedback", map[string]any{"items": items}, http.StatusOK)
	if err := json.Unmarshal(r.body, &fb); err != nil || fb.Matched != len(items) || fb.Unmatched != 0 {
		t.Fatalf("feedback through %s: %s (%v), want %d matched", n3.name, r, err, len(items))
	}
	logged, err := n2.loggedPredictions("iris")
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, 100} {
		p := logged[ids[i]]
		want := []float64(nil)
		if i%2 == 0 {
			want = []float64{float64(irisClass[species[i]])}
		}
		if p.Node != n1.name || !slices.Equal(p.Labels, want) {
			t.Errorf("request %s logged as %+v, want it on %s with labels %v", ids[i], p, n1.name, want)
		}
	}

	// A batch with a label of the wrong type is refused, naming it, and
	// nothing of it is kept: neither the good label before it nor the
	// unmatched one.
	r = n3.write("POST", "/v1/feedback", map[string]any{"deployment": "iris", "items": []map[string]any{
		{"id": ids[1], "label": irisClass[species[1]]},
		{"id": "never-served", "label": 0},
		{"id": ids[3], "label": species[3]},
	}}, http.StatusBadRequest)
	if !strings.Contains(string(r.body), "items[2].label") {
		t.Errorf("a string label for a classifier: %s, want the error to name items[2].label", r)
	}
	perf, err := n3.performance("iris")
	if err != nil {
		t.Fatal(err)
	}
	if len(perf.Versions) != 1 || perf.Versions[0].Labeled != len(labeled) || perf.Unmatched != 0 {
		t.Fatalf("after the refused batch, performance %+v; want %d labelled and nothing unmatched", perf, len(labeled))
	}

	// A label through node 2 before its request exists: kept as unmatched.
	early := "early-1"
	r = n2.write("POST", "/v1/feedback", map[string]any{"deployment": "iris", "items": []map[string]any{
		{"id": early, "label": irisClass[species[0]]},
	}}, http.StatusOK)
	if err := json.Unmarshal(r.body, &fb); err != nil || fb.Matched != 0 || fb.Unmatched != 1 {
		t.Fatalf("an early label through %s: %s (%v), want 1 unmatched", n2.name, r, err)
	}
	if perf, err = n3.performance("iris"); err != nil || perf.Unmatched != 1 {
		t.Fatalf("performance through %s with the early label pending: %+v (%v), want 1 unmatched", n3.name, perf, err)
	}
	// The request is served on node 1, its ID in X-Request-Id; node 2's
	// sweep (every 5 s) joins the label to it.
	p := n1.mustPredictIris("iris", early, rows[0], true)
	ids = append(ids, early)
	probs = append(probs, flatten(p.Predictions[0]))
	labeled = append(labeled, len(ids)-1)
	species = append(species, species[0])
	testutil.WaitFor(t, 20*time.Second, func() error {
		var err error
		if perf, err = n3.performance("iris"); err != nil {
			return err
		}
		if len(perf.Versions) != 1 || perf.Versions[0].Labeled != len(labeled) || perf.Unmatched != 0 {
			return fmt.Errorf("performance %+v: want %d labelled, none unmatched", perf, len(labeled))
		}
		return nil
	})
	if logged, err = n3.loggedPredictions("iris"); err != nil {
		t.Fatal(err)
	}
	if got := logged[early]; got.Node != n1.name || !slices.Equal(got.Labels, []float64{float64(irisClass[species[0]])}) {
		t.Errorf("the early request logged as %+v, want it on %s with its label", got, n1.name)
	}

	// The accuracy is that of the answers the labelled requests got.
	correct := 0
	for _, i := range labeled {
		if slices.Index(probs[i], slices.Max(probs[i])) == irisClass[species[i]] {
			correct++
		}
	}
	want := float64(correct) / float64(len(labeled))
	vp := perf.Versions[0]
	if perf.Task != "classification" || vp.Version != 1 || vp.Accuracy == nil || math.Abs(*vp.Accuracy-want) > 1e-9 || *vp.Accuracy <= 0.9 ||
		vp.F1 == nil || vp.AUC == nil || vp.LogLoss == nil {
		t.Errorf("performance %+v (accuracy %v): want a classification's metrics for version 1, accuracy %v (above 0.9)", perf, deref(vp.Accuracy), want)
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
