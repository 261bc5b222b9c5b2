package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

const pipelineJSON = `{"max_parallel": 2, "params": {"min_auc": 0.85},
	"steps": [
		{"name": "ingest", "type": "ingest", "source": "txns"},
		{"name": "train", "type": "train", "depends_on": ["ingest"], "retries": 2, "timeout": "1h", "cache": true,
		 "job": {"name": "churn", "trainer": {"kind": "builtin", "algorithm": "gbdt"}, "dataset": "${steps.ingest.dataset}", "target": "y"}},
		{"name": "eval", "type": "evaluate", "depends_on": ["train"],
		 "evaluate": {"model": "churn", "version": "${steps.train.model_version}", "dataset": "holdout:1", "target": "y",
		              "gate": "metrics.auc >= 0.85 && metrics.auc >= champion.auc - 0.01"}}]}`

func TestAgent_PipelineAPI(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	r := call(t, a, "PUT", "/v1/pipelines/churn", pipelineJSON)
	if r.status != http.StatusOK || r.body["spec"].(map[string]any)["catch_up"] != "latest" {
		t.Fatalf("put = %d %s", r.status, r.raw)
	}
	if g := call(t, a, "GET", "/v1/pipelines/churn", ""); g.status != http.StatusOK || len(g.body["spec"].(map[string]any)["steps"].([]any)) != 3 {
		t.Fatalf("get = %d %s", g.status, g.raw)
	}
	if l := call(t, a, "GET", "/v1/pipelines", ""); len(l.body["items"].([]any)) != 1 {
		t.Fatalf("list = %s", l.raw)
	}
	bad := func(from, to string) string { return strings.Replace(pipelineJSON, from, to, 1) }
	for _, tt := range []struct{ name, body, text string }{
		{"cycle", bad(`"source": "txns"}`, `"source": "txns", "depends_on": ["eval"]}`), "cycle: ingest -> eval -> train -> ingest"},
		{"unknown dependency", bad(`"depends_on": ["train"]`, `"depends_on": ["train", "fit"]`), `steps.eval.depends_on[1]: no step is named "fit"`},
		{"unknown output", bad("${steps.train.model_version}", "${steps.train.version}"), `a train step has no output "version"`},
		{"unknown type", bad(`"type": "ingest"`, `"type": "load"`), `steps.ingest.type "load"`},
		{"gate that does not compile", bad("metrics.auc >= 0.85 &&", "metrics.auc >>"), "steps.eval.evaluate.gate"},
		{"gate that is not a condition", bad("metrics.auc >= 0.85 && metrics.auc >= champion.auc - 0.01", "metrics.auc + 1"), "steps.eval.evaluate.gate"},
		{"name that differs", bad(`{"max_parallel"`, `{"name": "other", "max_parallel"`), `differs from the path's "churn"`},
		{"bad cron", bad(`{"max_parallel"`, `{"schedule": "61 * * * *", "max_parallel"`), `schedule "61 * * * *"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, a, "PUT", "/v1/pipelines/churn", tt.body)
			if msg, _ := r.body["error"].(string); r.status != http.StatusBadRequest || !strings.Contains(msg, tt.text) {
				t.Fatalf("put = %d %s; want 400 naming %q", r.status, r.raw, tt.text)
			}
		})
	}
	if d := call(t, a, "DELETE", "/v1/pipelines/churn", ""); d.status != http.StatusNoContent {
		t.Fatalf("delete = %d %s", d.status, d.raw)
	}
}

// waitPipelineRun polls a run until it ends.
func waitPipelineRun(t *testing.T, a *Agent, pipeline, id string) map[string]any {
	t.Helper()
	var run map[string]any
	testutil.WaitFor(t, 60*time.Second, func() error {
		r := call(t, a, "GET", "/v1/pipelines/"+pipeline+"/runs/"+id, "")
		run = r.body
		switch run["state"] {
		case "succeeded", "failed", "cancelled":
			return nil
		}
		return fmt.Errorf("run is %v: %s", run["state"], r.raw)
	})
	return run
}

func stepsOf(run map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, s := range run["steps"].([]any) {
		m := s.(map[string]any)
		out[m["name"].(string)] = m
	}
	return out
}

// TestAgent_PipelineDiamond runs a -> (b, c) -> d of command steps: b and
// c run side by side after a, d after both, each once; then the same with
// c failing: d is skipped, the run fails, and c was retried.
func TestAgent_PipelineDiamond(t *testing.T) {
	a := testNode(t, withExec)
	waitLeader(t, a)
	waitRegistered(t, a)
	dir := t.TempDir()
	step := func(name, script string, retries int, deps ...string) string {
		d, _ := json.Marshal(deps)
		return fmt.Sprintf(`{"name": %q, "type": "command", "depends_on": %s, "retries": %d, "command": ["/bin/sh", "-c", %q]}`, name, d, retries, script)
	}
	// Each step appends its name and start and end times, so the test sees
	// the order and the overlap.
	mark := func(name string) string {
		return fmt.Sprintf(`echo "%s start $(date +%%s%%N)" >> %s/log; sleep 0.3; echo "%s end $(date +%%s%%N)" >> %s/log`, name, dir, name, dir)
	}
	spec := func(cScript string) string {
		return `{"max_parallel": 3, "steps": [` + strings.Join([]string{
			step("a", mark("a"), 0), step("b", mark("b"), 0, "a"), step("c", cScript, 1, "a"), step("d", mark("d"), 0, "b", "c"),
		}, ",") + `]}`
	}
	if r := call(t, a, "PUT", "/v1/pipelines/diamond", spec(mark("c"))); r.status != http.StatusOK {
		t.Fatalf("put = %d %s", r.status, r.raw)
	}
	r := call(t, a, "POST", "/v1/pipelines/diamond/runs", "")
	if r.status != http.StatusCreated {
		t.Fatalf("run = %d %s", r.status, r.raw)
	}
	run := waitPipelineRun(t, a, "diamond", r.body["id"].(string))
	steps := stepsOf(run)
	if run["state"] != "succeeded" {
		t.Fatalf("run = %v", run)
	}
	for _, name := range []string{"a", "b", "c", "d"} {
		if s := steps[name]; s["state"] != "succeeded" || s["attempts"] != 1.0 || s["outputs"].(map[string]any)["job_id"] == nil {
			t.Errorf("step %s = %v; want succeeded once, with its job", name, s)
		}
	}
	log, err := os.ReadFile(dir + "/log")
	if err != nil {
		t.Fatal(err)
	}
	at := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		f := strings.Fields(line)
		n, _ := strconv.ParseInt(f[2], 10, 64)
		if _, dup := at[f[0]+" "+f[1]]; dup {
			t.Fatalf("step %s ran twice:\n%s", f[0], log)
		}
		at[f[0]+" "+f[1]] = n
	}
	if at["b start"] < at["a end"] || at["c start"] < at["a end"] || at["d start"] < at["b end"] || at["d start"] < at["c end"] {
		t.Fatalf("a step started before its dependencies ended:\n%s", log)
	}
	if at["b start"] > at["c end"] || at["c start"] > at["b end"] {
		t.Fatalf("b and c did not run side by side:\n%s", log)
	}

	// A failing branch: c fails twice (one retry), d is skipped.
	if r := call(t, a, "PUT", "/v1/pipelines/diamond", spec("exit 3")); r.status != http.StatusOK {
		t.Fatalf("put = %d %s", r.status, r.raw)
	}
	r = call(t, a, "POST", "/v1/pipelines/diamond/runs", "")
	run = waitPipelineRun(t, a, "diamond", r.body["id"].(string))
	steps = stepsOf(run)
	if run["state"] != "failed" || steps["c"]["state"] != "failed" || steps["c"]["attempts"] != 2.0 || steps["d"]["state"] != "skipped" || steps["b"]["state"] != "succeeded" {
		t.Fatalf("run = %v; want c failed after 2 attempts, d skipped, b done", run)
	}
	if !strings.Contains(steps["c"]["error"].(string), "failed") {
		t.Fatalf("step c's error = %v", steps["c"]["error"])
	}
	failedID := run["id"].(string)

	// The step's log, through the run.
	logs := call(t, a, "GET", "/v1/pipelines/diamond/runs/"+failedID+"/steps/c/logs", "")
	if logs.status != http.StatusOK || !strings.Contains(logs.raw, "exit") {
		t.Fatalf("logs of c = %d %q", logs.status, logs.raw)
	}
	// c fixed, the run retried from c: a and b are carried over, c and d
	// run.
	if r := call(t, a, "PUT", "/v1/pipelines/diamond", spec("true")); r.status != http.StatusOK {
		t.Fatalf("put = %d %s", r.status, r.raw)
	}
	r = call(t, a, "POST", "/v1/pipelines/diamond/runs/"+failedID+"/retry", `{"from": "c"}`)
	if r.status != http.StatusCreated || r.body["retry_of"] != failedID {
		t.Fatalf("retry = %d %s", r.status, r.raw)
	}
	run = waitPipelineRun(t, a, "diamond", r.body["id"].(string))
	steps = stepsOf(run)
	if run["state"] != "succeeded" || steps["a"]["state"] != "cached" || steps["b"]["state"] != "cached" || steps["c"]["state"] != "succeeded" || steps["d"]["state"] != "succeeded" {
		t.Fatalf("retried run = %v; want a and b carried over, c and d run", run)
	}
	if r := call(t, a, "POST", "/v1/pipelines/diamond/runs/"+failedID+"/retry", `{"from": "z"}`); r.status != http.StatusBadRequest {
		t.Fatalf("retry from an unknown step = %d %s", r.status, r.raw)
	}
}

// TestAgent_PipelineTrainEvaluate trains on iris and evaluates the model
// with a gate: a reachable gate passes with the metrics as outputs; an
// unreachable one fails the step, once (no retry could pass it), naming
// the values it read, and the step after it is skipped.
func TestAgent_PipelineTrainEvaluate(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	waitRegistered(t, a)
	if r := pushDataset(t, a, "iris", "", readTestdata(t, irisCSV)); r.status != 201 {
		t.Fatalf("push: %d %v", r.status, r.body)
	}
	spec := func(gate string) string {
		return `{"steps": [
			{"name": "train", "type": "train", "job": {"name": "iris-p", "trainer": {"kind": "builtin", "algorithm": "softmax_regression"},
				"dataset": "iris:1", "target": "Species", "features": ["Sepal_Length", "Sepal_Width", "Petal_Length", "Petal_Width"],
				"resources": {"cpu": 1}, "register_as": "iris-p"}},
			{"name": "eval", "type": "evaluate", "depends_on": ["train"], "retries": 2,
				"evaluate": {"model": "iris-p", "version": "${steps.train.model_version}", "dataset": "iris:1", "target": "Species", "gate": ` + strconv.Quote(gate) + `}},
			{"name": "after", "type": "command", "depends_on": ["eval"], "command": ["/bin/true"]}]}`
	}
	run := func(gate string) map[string]any {
		if r := call(t, a, "PUT", "/v1/pipelines/iris", spec(gate)); r.status != http.StatusOK {
			t.Fatalf("put = %d %s", r.status, r.raw)
		}
		r := call(t, a, "POST", "/v1/pipelines/iris/runs", "")
		if r.status != http.StatusCreated {
			t.Fatalf("run = %d %s", r.status, r.raw)
		}
		return waitPipelineRun(t, a, "iris", r.body["id"].(string))
	}
	// A process step needs exec; the command step here is never reached
	// when the gate fails, and fails when it is: what is asserted is the
	// evaluation.
	ok := run("metrics.accuracy >= 0.9 && metrics.accuracy >= champion.accuracy - 0.01")
	steps := stepsOf(ok)
	eval := steps["eval"]
	out, _ := eval["outputs"].(map[string]any)
	if steps["train"]["state"] != "succeeded" || eval["state"] != "succeeded" || out["passed"] != "true" || out["metrics.accuracy"] == nil {
		t.Fatalf("run = %v; want train and a passing evaluation with its metrics", ok)
	}
	bad := run("metrics.accuracy > 1")
	steps = stepsOf(bad)
	eval = steps["eval"]
	if bad["state"] != "failed" || eval["state"] != "failed" || eval["attempts"] != 1.0 || steps["after"]["state"] != "skipped" ||
		!strings.Contains(eval["error"].(string), "did not hold (metrics.accuracy = ") {
		t.Fatalf("run = %v; want the gate to fail the evaluation once, naming the accuracy, and skip what follows", bad)
	}
	missing := run("metrics.f1 > 0.5")
	if e := stepsOf(missing)["eval"]["error"].(string); !strings.Contains(e, "reads metrics.f1, which the evaluation did not give") {
		t.Fatalf("evaluation error = %q; want it to name metrics.f1", e)
	}
}

// TestAgent_PipelineCanary puts a new version on a canary, watches it and
// promotes it; then a version whose latency breaches the bound is rolled
// back while the watch goes on.
func TestAgent_PipelineCanary(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	createModel(t, a, "iris")
	for range 3 {
		uploadOK(t, a, "iris", "format=linear", readTestdata(t, linearIrisFile))
	}
	if r := call(t, a, "PUT", "/v1/deployments/iris", `{"versions":[{"version":1,"weight":1}]}`); r.status != 200 {
		t.Fatalf("deploy = %d %s", r.status, r.raw)
	}
	traffic := func() string {
		d := call(t, a, "GET", "/v1/deployments/iris", "")
		b, _ := json.Marshal(d.body["traffic"].(map[string]any)["versions"])
		return string(b)
	}
	run := func(version, watch, bound string) string {
		spec := fmt.Sprintf(`{"steps": [{"name": "deploy", "type": "deploy", "deploy": {"model": "iris", "version": %q, "canary": 50, "watch": %q%s}}]}`, version, watch, bound)
		if r := call(t, a, "PUT", "/v1/pipelines/ship", spec); r.status != http.StatusOK {
			t.Fatalf("put = %d %s", r.status, r.raw)
		}
		r := call(t, a, "POST", "/v1/pipelines/ship/runs", "")
		if r.status != http.StatusCreated {
			t.Fatalf("run = %d %s", r.status, r.raw)
		}
		return r.body["id"].(string)
	}
	id := run("2", "1s", "")
	testutil.Until(t, 10*time.Second, "the canary", func() bool { return traffic() == `[{"version":1,"weight":50},{"version":2,"weight":50}]` })
	done := waitPipelineRun(t, a, "ship", id)
	if done["state"] != "succeeded" || traffic() != `[{"version":2,"weight":100}]` {
		t.Fatalf("run = %v, traffic %s; want version 2 promoted", done, traffic())
	}
	// Version 3 answers slower than a nanosecond: rolled back.
	id = run("3", "30s", `, "max_p99_ms": 0.000001`)
	testutil.Until(t, 10*time.Second, "the second canary", func() bool { return strings.Contains(traffic(), `{"version":3,"weight":50}`) })
	testutil.Until(t, 30*time.Second, "the rollback", func() bool {
		call(t, a, "POST", "/v1/models/iris:predict", `{"instances": [[5.1, 3.5, 1.4, 0.2]], "version": 3}`)
		r := call(t, a, "GET", "/v1/pipelines/ship/runs/"+id, "")
		return r.body["state"] == "failed"
	})
	done = waitPipelineRun(t, a, "ship", id)
	dep := stepsOf(done)["deploy"]
	if !strings.Contains(dep["error"].(string), "rolled back to version 2: p99 latency") || traffic() != `[{"version":2,"weight":100}]` {
		t.Fatalf("deploy step = %v, traffic %s; want a rollback to version 2", dep, traffic())
	}
}

// TestAgent_PipelineWaitForAndTune: a step waits for a dataset version
// made after the run started, and a tuning over it registers the best
// model, which the pipeline names.
func TestAgent_PipelineWaitForAndTune(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	waitRegistered(t, a)
	spec := `{"steps": [
		{"name": "wait", "type": "wait_for", "wait_for": {"dataset": "iris"}},
		{"name": "tune", "type": "tune", "depends_on": ["wait"], "tuning": {"name": "iris-t", "search": "grid",
			"job": {"name": "iris-t", "trainer": {"kind": "builtin", "algorithm": "softmax_regression"}, "dataset": "${steps.wait.dataset}",
				"target": "Species", "features": ["Sepal_Length", "Sepal_Width", "Petal_Length", "Petal_Width"], "validation": {"split": 0.3}, "resources": {"cpu": 1}},
			"space": {"l2": {"kind": "values", "values": [0.001, 0.1]}}, "metric": "accuracy", "goal": "maximize", "register_best_as": "iris-best"}}]}`
	if r := call(t, a, "PUT", "/v1/pipelines/tuned", spec); r.status != http.StatusOK {
		t.Fatalf("put = %d %s", r.status, r.raw)
	}
	r := call(t, a, "POST", "/v1/pipelines/tuned/runs", "")
	if r.status != http.StatusCreated {
		t.Fatalf("run = %d %s", r.status, r.raw)
	}
	id := r.body["id"].(string)
	if s := stepsOf(call(t, a, "GET", "/v1/pipelines/tuned/runs/"+id, "").body)["wait"]; s["state"] == "succeeded" {
		t.Fatalf("wait succeeded before the dataset existed: %v", s)
	}
	if r := pushDataset(t, a, "iris", "", readTestdata(t, irisCSV)); r.status != 201 {
		t.Fatalf("push: %d %v", r.status, r.body)
	}
	run := waitPipelineRun(t, a, "tuned", id)
	steps := stepsOf(run)
	out, _ := steps["tune"]["outputs"].(map[string]any)
	if run["state"] != "succeeded" || steps["wait"]["outputs"].(map[string]any)["dataset"] != "iris:1" || out["model"] != "iris-best" || out["model_version"] != "1" || out["best_job"] == nil {
		t.Fatalf("run = %v; want the wait to give iris:1 and the tuning to register iris-best version 1", run)
	}
}

// TestAgent_PipelineCache: a second run with the same inputs reuses the
// steps' outputs and says so; new data is a new input.
func TestAgent_PipelineCache(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	waitRegistered(t, a)
	if r := pushDataset(t, a, "iris", "", readTestdata(t, irisCSV)); r.status != 201 {
		t.Fatalf("push: %d %v", r.status, r.body)
	}
	spec := `{"params": {"l2": 0.01}, "steps": [
		{"name": "train", "type": "train", "cache": true, "job": {"name": "iris-c", "trainer": {"kind": "builtin", "algorithm": "softmax_regression"},
			"dataset": "iris", "target": "Species", "features": ["Sepal_Length", "Sepal_Width", "Petal_Length", "Petal_Width"],
			"params": {"l2": "${params.l2}"}, "resources": {"cpu": 1}, "register_as": "iris-c"}},
		{"name": "eval", "type": "evaluate", "depends_on": ["train"], "cache": true,
			"evaluate": {"model": "iris-c", "version": "${steps.train.model_version}", "dataset": "iris", "target": "Species"}}]}`
	if r := call(t, a, "PUT", "/v1/pipelines/cached", spec); r.status != http.StatusOK {
		t.Fatalf("put = %d %s", r.status, r.raw)
	}
	runOnce := func(params string) map[string]map[string]any {
		r := call(t, a, "POST", "/v1/pipelines/cached/runs", params)
		if r.status != http.StatusCreated {
			t.Fatalf("run = %d %s", r.status, r.raw)
		}
		run := waitPipelineRun(t, a, "cached", r.body["id"].(string))
		if run["state"] != "succeeded" {
			t.Fatalf("run = %v", run)
		}
		return stepsOf(run)
	}
	first := runOnce("")
	second := runOnce("")
	for _, name := range []string{"train", "eval"} {
		if first[name]["state"] != "succeeded" || second[name]["state"] != "cached" || second[name]["cached"] != true {
			t.Fatalf("step %s: first %v, second %v; want it run, then cached", name, first[name], second[name])
		}
	}
	if second["train"]["outputs"].(map[string]any)["job_id"] != first["train"]["outputs"].(map[string]any)["job_id"] {
		t.Fatalf("the cached train step names another job: %v", second["train"])
	}
	// Another param, or new data: the step runs.
	if third := runOnce(`{"params": {"l2": 0.5}}`); third["train"]["state"] != "succeeded" {
		t.Fatalf("with another l2, train = %v; want it run", third["train"])
	}
	iris := readTestdata(t, irisCSV)
	if r := pushDataset(t, a, "iris", "", iris[:bytes.LastIndexByte(iris[:4000], '\n')+1]); r.status != 201 {
		t.Fatalf("push: %d %v", r.status, r.body)
	}
	if fourth := runOnce(""); fourth["train"]["state"] != "succeeded" {
		t.Fatalf("on iris:2, train = %v; want it run", fourth["train"])
	}
}

// TestAgent_PipelineActsWithItsAuthorsRights: a pipeline's steps run with
// the rights of the token that applied it, as they are when each step
// starts: a command step of a token without exec fails naming the right;
// once the policy grants it, the next run's step runs.
func TestAgent_PipelineActsWithItsAuthorsRights(t *testing.T) {
	a, mgmt := aclSetup(t, withExec)
	testutil.Until(t, 30*time.Second, "this node's record", func() bool {
		return strings.Contains(callAs(t, a, mgmt, "GET", "/v1/nodes", "").raw, a.id)
	})
	rules := func(exec string) string {
		return `pipeline "*" { policy = "write" }
job "*" { policy = "write" }
` + exec
	}
	tok := tokenFor(t, a, mgmt, "piper", rules(""))
	spec := `{"steps": [{"name": "hello", "type": "command", "command": ["/bin/sh", "-c", "echo hello"]}]}`
	mustStatus(t, callAs(t, a, tok, "PUT", "/v1/pipelines/p", spec), 200, "apply")
	runAs := func() map[string]any {
		r := callAs(t, a, tok, "POST", "/v1/pipelines/p/runs", "")
		mustStatus(t, r, 201, "run")
		var run map[string]any
		testutil.WaitFor(t, 60*time.Second, func() error {
			run = callAs(t, a, tok, "GET", "/v1/pipelines/p/runs/"+r.body["id"].(string), "").body
			if s := run["state"]; s != "succeeded" && s != "failed" {
				return fmt.Errorf("run is %v", s)
			}
			return nil
		})
		return run
	}
	run := runAs()
	if s := stepsOf(run)["hello"]; run["state"] != "failed" || !strings.Contains(s["error"].(string), `lacks "allow" on exec`) {
		t.Fatalf("run = %v; want the step refused for want of exec", run)
	}
	body, _ := json.Marshal(map[string]string{"rules": rules(`exec { policy = "allow" }`)})
	mustStatus(t, callAs(t, a, mgmt, "PUT", "/v1/acl/policies/piper", string(body)), 200, "grant exec")
	if run := runAs(); run["state"] != "succeeded" {
		t.Fatalf("run after the grant = %v", run)
	}
}

// TestAgent_PipelineIngestTrainEvaluateDeploy is the whole way: a file
// source (the repo's copy of iris.csv) is ingested into a dataset version,
// a model is trained on it, evaluated with a gate, put on a canary beside
// the deployed version and promoted.
func TestAgent_PipelineIngestTrainEvaluateDeploy(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	waitRegistered(t, a)
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/iris.csv", readTestdata(t, irisCSV), 0o644); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`{"name": "flowers", "kind": "file", "file": {"path": %q},
		"schema": {"_index_": "int", "Sepal_Length": "float", "Sepal_Width": "float", "Petal_Length": "float", "Petal_Width": "float", "Species": "string"}}`, dir+"/*.csv")
	if r := call(t, a, "POST", "/v1/sources", src); r.status != http.StatusOK {
		t.Fatalf("source = %d %s", r.status, r.raw)
	}
	spec := `{"params": {"min_accuracy": 0.9}, "steps": [
		{"name": "ingest", "type": "ingest", "source": "flowers"},
		{"name": "train", "type": "train", "depends_on": ["ingest"], "job": {"name": "iris-e2e",
			"trainer": {"kind": "builtin", "algorithm": "softmax_regression"}, "dataset": "${steps.ingest.dataset}", "target": "Species",
			"features": ["Sepal_Length", "Sepal_Width", "Petal_Length", "Petal_Width"], "resources": {"cpu": 1}, "register_as": "iris-e2e"}},
		{"name": "evaluate", "type": "evaluate", "depends_on": ["train"], "evaluate": {"model": "iris-e2e",
			"version": "${steps.train.model_version}", "dataset": "${steps.ingest.dataset}", "target": "Species",
			"gate": "metrics.accuracy >= 0.9 && metrics.accuracy >= champion.accuracy - 0.05"}},
		{"name": "deploy", "type": "deploy", "depends_on": ["evaluate"], "deploy": {"model": "iris-e2e",
			"version": "${steps.train.model_version}", "canary": 10, "watch": "1s", "max_error_rate": 0.01}}]}`
	if r := call(t, a, "PUT", "/v1/pipelines/e2e", spec); r.status != http.StatusOK {
		t.Fatalf("put = %d %s", r.status, r.raw)
	}
	runOnce := func() map[string]map[string]any {
		r := call(t, a, "POST", "/v1/pipelines/e2e/runs", "")
		if r.status != http.StatusCreated {
			t.Fatalf("run = %d %s", r.status, r.raw)
		}
		run := waitPipelineRun(t, a, "e2e", r.body["id"].(string))
		if run["state"] != "succeeded" {
			t.Fatalf("run = %v", run)
		}
		return stepsOf(run)
	}
	// The first run deploys its model (there is no champion yet); the
	// second evaluates a new one against it, and canaries it.
	steps := runOnce()
	if out := steps["deploy"]["outputs"].(map[string]any); out["promoted"] != "true" || out["version"] != "1" {
		t.Fatalf("first deploy = %v", steps["deploy"])
	}
	steps = runOnce()
	if out := steps["ingest"]["outputs"].(map[string]any); out["dataset"] != "flowers:1" {
		t.Fatalf("ingest (nothing new) = %v; want the source's latest version", steps["ingest"])
	}
	if out := steps["deploy"]["outputs"].(map[string]any); out["promoted"] != "true" || out["version"] != "2" {
		t.Fatalf("deploy = %v", steps["deploy"])
	}
	d := call(t, a, "GET", "/v1/deployments/iris-e2e", "")
	if b, _ := json.Marshal(d.body["traffic"].(map[string]any)["versions"]); string(b) != `[{"version":2,"weight":100}]` {
		t.Fatalf("traffic = %s; want version 2 alone", b)
	}
	v := call(t, a, "GET", "/v1/models/iris-e2e/versions/2", "")
	if v.body["lineage"].(map[string]any)["dataset"] != "flowers:1" {
		t.Fatalf("version 2 lineage = %v", v.body["lineage"])
	}
}

// TestAgent_PipelineSourceTrigger: a source run that writes a dataset
// version starts one run of a pipeline it triggers; a source run that
// writes none starts nothing.
func TestAgent_PipelineSourceTrigger(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	waitRegistered(t, a)
	spec := `{"triggers": [{"source": "flowers"}], "steps": [{"name": "seen", "type": "wait_for", "wait_for": {"dataset": "flowers:1"}}]}`
	if r := call(t, a, "PUT", "/v1/pipelines/on-data", spec); r.status != http.StatusOK {
		t.Fatalf("put = %d %s", r.status, r.raw)
	}
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/iris.csv", readTestdata(t, irisCSV), 0o644); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`{"name": "flowers", "kind": "file", "file": {"path": %q}}`, dir+"/*.csv")
	if r := call(t, a, "POST", "/v1/sources", src); r.status != http.StatusOK {
		t.Fatalf("source = %d %s", r.status, r.raw)
	}
	runs := func() []any {
		return call(t, a, "GET", "/v1/pipelines/on-data/runs", "").body["items"].([]any)
	}
	call(t, a, "POST", "/v1/sources/flowers/run", "")
	testutil.Until(t, 20*time.Second, "a run started by the source", func() bool { return len(runs()) == 1 })
	r := runs()[0].(map[string]any)
	if r["trigger"] != "source flowers" {
		t.Fatalf("run = %v", r)
	}
	waitPipelineRun(t, a, "on-data", r["id"].(string))
	// The file is unchanged: the next source run writes nothing.
	call(t, a, "POST", "/v1/sources/flowers/run", "")
	testutil.Until(t, 20*time.Second, "the second source run", func() bool {
		lr, _ := call(t, a, "GET", "/v1/sources/flowers", "").body["last_run"].(map[string]any)
		return lr != nil && lr["seq"] == 2.0 && lr["state"] == "succeeded"
	})
	// The leader's loop passes every second: wait two, to be sure it
	// passed, then count.
	deadline := time.Now().Add(2 * time.Second)
	testutil.Until(t, 5*time.Second, "two passes of the leader", func() bool { return time.Now().After(deadline) })
	if n := len(runs()); n != 1 {
		t.Fatalf("%d runs; a source run that wrote nothing started one", n)
	}
}

// approvalPipeline: a command, then an approval, then a command that runs
// only once someone approves.
const approvalPipeline = `{"max_parallel": 2, "steps": [
	{"name": "build", "type": "command", "command": ["/bin/sh", "-c", "true"]},
	{"name": "signoff", "type": "approval", "depends_on": ["build"], "approval": {"message": "ship build ${params.tag}?"}},
	{"name": "ship", "type": "command", "depends_on": ["signoff"], "command": ["/bin/sh", "-c", "true"]}],
	"params": {"tag": "v1"}}`

// waitStep polls a run until its step is in state.
func waitStep(t *testing.T, a *Agent, pipeline, id, step, state string) map[string]any {
	t.Helper()
	var st map[string]any
	testutil.WaitFor(t, 60*time.Second, func() error {
		st = stepsOf(call(t, a, "GET", "/v1/pipelines/"+pipeline+"/runs/"+id, "").body)[step]
		if st["state"] != state {
			return fmt.Errorf("step %s: %v", step, st)
		}
		return nil
	})
	return st
}

// TestAgent_PipelineApproval: an approval step waits, saying what for,
// until a person approves (the run goes on) or rejects (the run fails, its
// dependents skipped); a decision is taken once, only on a waiting
// approval step.
func TestAgent_PipelineApproval(t *testing.T) {
	a := testNode(t, withExec)
	waitLeader(t, a)
	waitRegistered(t, a)
	mustStatus(t, call(t, a, "PUT", "/v1/pipelines/release", approvalPipeline), 200, "put")
	bad := strings.Replace(approvalPipeline, `"approval": {"message": "ship build ${params.tag}?"}`, `"approval": {"message": " "}`, 1)
	if r := call(t, a, "PUT", "/v1/pipelines/release", bad); r.status != 400 || !strings.Contains(r.raw, "steps.signoff.approval.message is required") {
		t.Fatalf("an empty message: %d %s", r.status, r.raw)
	}
	start := func() string {
		r := call(t, a, "POST", "/v1/pipelines/release/runs", `{}`)
		mustStatus(t, r, 201, "run")
		return r.body["id"].(string)
	}
	approve := func(id, step, body string) apiResp {
		return call(t, a, "POST", "/v1/pipelines/release/runs/"+id+"/steps/"+step+"/approve", body)
	}

	id := start()
	st := waitStep(t, a, "release", id, "signoff", "running")
	testutil.WaitFor(t, 10*time.Second, func() error {
		st = stepsOf(call(t, a, "GET", "/v1/pipelines/release/runs/"+id, "").body)["signoff"]
		if st["waiting"] != "awaiting approval: ship build v1?" {
			return fmt.Errorf("signoff %v", st)
		}
		return nil
	})
	pending := call(t, a, "GET", "/v1/approvals", "")
	items, _ := pending.body["items"].([]any)
	if len(items) != 1 || items[0].(map[string]any)["run_id"] != id || items[0].(map[string]any)["message"] != "ship build v1?" {
		t.Fatalf("pending approvals: %s", pending.raw)
	}
	if r := approve(id, "build", `{"approve": true}`); r.status != 400 || !strings.Contains(r.raw, "not an approval step") {
		t.Fatalf("approving a command step: %d %s", r.status, r.raw)
	}
	if r := approve(id, "signoff", `{"comment": "ok"}`); r.status != 400 || !strings.Contains(r.raw, "approve is required") {
		t.Fatalf("no decision: %d %s", r.status, r.raw)
	}
	if r := approve(id, "nosuch", `{"approve": true}`); r.status != 404 {
		t.Fatalf("an unknown step: %d %s", r.status, r.raw)
	}
	mustStatus(t, approve(id, "signoff", `{"approve": true, "comment": "looks good"}`), 200, "approve")
	if r := approve(id, "signoff", `{"approve": false}`); r.status != 409 || !strings.Contains(r.raw, "approved by anonymous already") {
		t.Fatalf("a second decision: %d %s", r.status, r.raw)
	}
	if r := call(t, a, "GET", "/v1/approvals", ""); !strings.Contains(r.raw, `"items":[]`) {
		t.Fatalf("pending approvals after the decision: %s", r.raw)
	}
	run := waitPipelineRun(t, a, "release", id)
	steps := stepsOf(run)
	dec, _ := steps["signoff"]["decision"].(map[string]any)
	if run["state"] != "succeeded" || steps["ship"]["state"] != "succeeded" || steps["signoff"]["outputs"].(map[string]any)["approved_by"] != "anonymous" ||
		dec["approved"] != true || dec["comment"] != "looks good" {
		t.Fatalf("approved run: %v", run)
	}

	id = start()
	waitStep(t, a, "release", id, "signoff", "running")
	mustStatus(t, approve(id, "signoff", `{"approve": false, "comment": "not this week"}`), 200, "reject")
	run = waitPipelineRun(t, a, "release", id)
	steps = stepsOf(run)
	if run["state"] != "failed" || steps["signoff"]["state"] != "failed" || steps["signoff"]["error"] != "rejected by anonymous: not this week" || steps["ship"]["state"] != "skipped" {
		t.Fatalf("rejected run: %v", run)
	}
	if r := approve(id, "signoff", `{"approve": true}`); r.status != 409 {
		t.Fatalf("a decision on an ended run: %d %s", r.status, r.raw)
	}
}
