package node

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// waitJob polls a job until it is terminal and returns it.
func waitJob(t *testing.T, a *Agent, id string) map[string]any {
	t.Helper()
	var j map[string]any
	testutil.WaitFor(t, 60*time.Second, func() error {
		r := call(t, a, "GET", "/v1/jobs/"+id, "")
		if r.status != 200 {
			return fmt.Errorf("GET job: %d %v", r.status, r.body)
		}
		j = r.body
		switch j["state"] {
		case "succeeded", "failed", "cancelled", "lost":
			return nil
		}
		return fmt.Errorf("job is %v (%v)", j["state"], j["reason"])
	})
	return j
}

// waitRegistered waits until the node's own record is in the registry: a
// job is refused while no node could hold it.
func waitRegistered(t *testing.T, a *Agent) {
	t.Helper()
	testutil.WaitFor(t, 30*time.Second, func() error {
		if r := call(t, a, "GET", "/v1/nodes", ""); !strings.Contains(r.raw, a.id) {
			return fmt.Errorf("node %s not registered yet", a.id)
		}
		return nil
	})
}

func TestAgent_BuiltinJob(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	waitRegistered(t, a)
	if r := pushDataset(t, a, "iris", "", readTestdata(t, irisCSV)); r.status != 201 {
		t.Fatalf("push: %d %v", r.status, r.body)
	}
	spec := `{"name": "iris-softmax", "experiment": "iris", "trainer": {"kind": "builtin", "algorithm": "softmax_regression"},
		"dataset": "iris", "target": "Species", "features": ["Sepal_Length", "Sepal_Width", "Petal_Length", "Petal_Width"],
		"validation": {"split": 0.3}, "resources": {"cpu": 1}, "register_as": "iris-m"}`
	r := call(t, a, "POST", "/v1/jobs", spec)
	if r.status != 201 || r.body["state"] != "pending" {
		t.Fatalf("submit: %d %v", r.status, r.body)
	}
	id := r.body["id"].(string)
	j := waitJob(t, a, id)
	metrics, _ := j["metrics"].(map[string]any)
	if j["state"] != "succeeded" || j["model_version"] != 1.0 {
		t.Fatalf("job %v", j)
	}
	if acc, _ := metrics["accuracy"].(float64); acc < 0.85 {
		t.Fatalf("validation accuracy %v, want at least 0.85", metrics)
	}
	spec2, _ := j["spec"].(map[string]any)
	if spec2["dataset"] != "iris:1" {
		t.Fatalf("the job's dataset is %v, want it pinned to iris:1", spec2["dataset"])
	}
	allocs, _ := j["allocations"].([]any)
	if len(allocs) != 1 || allocs[0].(map[string]any)["node_id"] != a.id {
		t.Fatalf("allocations %v", allocs)
	}
	// The model is registered with its lineage, and serves.
	v := call(t, a, "GET", "/v1/models/iris-m/versions/1", "")
	lineage, _ := v.body["lineage"].(map[string]any)
	if v.status != 200 || lineage["job_id"] != id || lineage["dataset"] != "iris:1" || v.body["format"] != "linear" {
		t.Fatalf("registered version: %d %v", v.status, v.body)
	}
	// The log tells the story.
	logs := call(t, a, "GET", "/v1/jobs/"+id+"/logs", "")
	if logs.status != 200 || !strings.Contains(logs.raw, "registered as version 1 of model iris-m") || !strings.Contains(logs.raw, "train_logloss") {
		t.Fatalf("logs: %d %q", logs.status, logs.raw)
	}
	// The job is a run in its experiment, with its step metrics' history.
	runs := call(t, a, "GET", "/v1/runs?experiment=iris&filter="+url.QueryEscape("metrics.accuracy > 0.5")+"&order_by=metrics.accuracy+desc", "")
	items, _ := runs.body["items"].([]any)
	if runs.status != 200 || len(items) != 1 || items[0].(map[string]any)["id"] != id || items[0].(map[string]any)["status"] != "FINISHED" {
		t.Fatalf("runs: %d %v", runs.status, runs.body)
	}
	if none := call(t, a, "GET", "/v1/runs?filter="+url.QueryEscape("metrics.accuracy > 2"), ""); len(none.body["items"].([]any)) != 0 {
		t.Fatalf("a filter no run passes: %v", none.body)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		h := call(t, a, "GET", "/v1/runs/"+id+"/metrics/train_logloss", "")
		if points, _ := h.body["points"].([]any); len(points) < 2 {
			return fmt.Errorf("train_logloss history %v, want one point per epoch", h.body)
		}
		return nil
	})
	if bad := call(t, a, "GET", "/v1/runs?filter="+url.QueryEscape("metrics.accuracy >"), ""); bad.status != 400 {
		t.Fatalf("a bad filter: %d %v", bad.status, bad.body)
	}

	// The dataset it was trained on cannot go while the model's lineage names it.
	if d := call(t, a, "DELETE", "/v1/datasets/iris/versions/1", ""); d.status != 409 {
		t.Fatalf("delete of a dataset in a lineage: %d %v", d.status, d.body)
	}
}

func TestAgent_JobSubmitRefusals(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	waitRegistered(t, a)
	if r := pushDataset(t, a, "iris", "", readTestdata(t, irisCSV)); r.status != 201 {
		t.Fatalf("push: %d %v", r.status, r.body)
	}
	base := `"name": "j", "trainer": {"kind": "builtin", "algorithm": "softmax_regression"}, "dataset": "iris", "target": "Species"`
	for _, tc := range []struct{ name, body, want string }{
		{"unknown field", `{` + base + `, "gpu": 1}`, `unknown field "gpu"`},
		{"unknown algorithm", `{"name": "j", "trainer": {"kind": "builtin", "algorithm": "svm"}, "dataset": "iris", "target": "Species"}`, `"svm" is unknown`},
		{"unknown param", `{` + base + `, "params": {"depth": 3}}`, `unknown parameter "depth"`},
		{"missing dataset", `{"name": "j", "trainer": {"kind": "builtin", "algorithm": "softmax_regression"}, "dataset": "wine", "target": "x"}`, `dataset "wine" not found`},
		{"missing target", `{"name": "j", "trainer": {"kind": "builtin", "algorithm": "softmax_regression"}, "dataset": "iris", "target": "Color"}`, `"Color" is not a column`},
		{"target type", `{"name": "j", "trainer": {"kind": "builtin", "algorithm": "linear_regression"}, "dataset": "iris", "target": "Species"}`, "a regression needs numbers"},
		{"binary target", `{"name": "j", "trainer": {"kind": "builtin", "algorithm": "logistic_regression"}, "dataset": "iris", "target": "Species"}`, "needs 2"},
		{"impossible resources", `{` + base + `, "resources": {"gpus": 4}}`, "no placement could ever hold this job"},
		{"process without exec", `{"name": "j", "trainer": {"kind": "process", "command": ["python3", "train.py"]}}`, "does not allow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, a, "POST", "/v1/jobs", tc.body)
			if msg, _ := r.body["error"].(string); r.status != 400 || !strings.Contains(msg, tc.want) {
				t.Fatalf("%d %v, want 400 containing %q", r.status, r.body, tc.want)
			}
		})
	}
	if l := call(t, a, "GET", "/v1/jobs", ""); len(l.body["items"].([]any)) != 0 {
		t.Fatalf("refused submits left jobs: %v", l.body)
	}
}

// withExec lets the node run /bin/sh jobs.
func withExec(c *Config) {
	c.Exec = ExecConfig{Enabled: true, AllowedCommands: []string{"/bin/sh"}}
}

func TestAgent_ProcessJob(t *testing.T) {
	a := testNode(t, withExec)
	waitLeader(t, a)
	waitRegistered(t, a)
	if r := pushDataset(t, a, "iris", "", readTestdata(t, irisCSV)); r.status != 201 {
		t.Fatalf("push: %d %v", r.status, r.body)
	}
	linear := readTestdata(t, linearIrisFile)
	// The script sees its dataset, params and GPUs, writes metrics and a
	// model (the repo's iris linear model, copied), and says so on stdout.
	script := `set -e
test -s "$KILN_DATASET"
echo "params=$KILN_PARAMS gpus=[$CUDA_VISIBLE_DEVICES] run=$MLFLOW_RUN_ID"
printf '{"step":1,"name":"loss","value":0.5}\n{"step":2,"name":"loss","value":0.25}\n' > "$KILN_METRICS_FILE"
cat > "$KILN_OUTPUT_DIR/model.json" <<'MODEL'
` + string(linear) + `
MODEL
`
	spec := map[string]any{"name": "sh", "trainer": map[string]any{"kind": "process", "command": []string{"/bin/sh", "-c", script}},
		"dataset": "iris", "params": map[string]any{"lr": 0.1}, "register_as": "sh-model"}
	body, _ := json.Marshal(spec)
	r := call(t, a, "POST", "/v1/jobs", string(body))
	if r.status != 201 {
		t.Fatalf("submit: %d %v", r.status, r.body)
	}
	id := r.body["id"].(string)
	j := waitJob(t, a, id)
	if j["state"] != "succeeded" || j["model_version"] != 1.0 {
		t.Fatalf("job %v", j)
	}
	if m, _ := j["metrics"].(map[string]any); m["loss"] != 0.25 {
		t.Fatalf("metrics %v, want the last loss 0.25", j["metrics"])
	}
	logs := call(t, a, "GET", "/v1/jobs/"+id+"/logs", "")
	if !strings.Contains(logs.raw, `params={"lr":0.1} gpus=[] run=`+id) {
		t.Fatalf("log %q, want the script's view of its env", logs.raw)
	}

	// A failing script: its exit code and last lines are on the job.
	fail := map[string]any{"name": "bad", "trainer": map[string]any{"kind": "process", "command": []string{"/bin/sh", "-c", "echo one; echo two >&2; exit 3"}}}
	body, _ = json.Marshal(fail)
	r = call(t, a, "POST", "/v1/jobs", string(body))
	if r.status != 201 {
		t.Fatalf("submit: %d %v", r.status, r.body)
	}
	j = waitJob(t, a, r.body["id"].(string))
	tail, _ := j["log_tail"].([]any)
	joined := fmt.Sprint(tail)
	if j["state"] != "failed" || j["exit_code"] != 3.0 || !strings.Contains(joined, "one") || !strings.Contains(joined, "two") {
		t.Fatalf("failed job %v", j)
	}

	// Cancel stops a running job: SIGTERM reaches the script.
	long := map[string]any{"name": "long", "trainer": map[string]any{"kind": "process", "command": []string{"/bin/sh", "-c", "echo started; sleep 60"}}}
	body, _ = json.Marshal(long)
	r = call(t, a, "POST", "/v1/jobs", string(body))
	id = r.body["id"].(string)
	testutil.WaitFor(t, 30*time.Second, func() error {
		if r := call(t, a, "GET", "/v1/jobs/"+id, ""); r.body["state"] != "running" {
			return fmt.Errorf("job is %v", r.body["state"])
		}
		return nil
	})
	if c := call(t, a, "POST", "/v1/jobs/"+id+"/cancel", ""); c.status != 200 {
		t.Fatalf("cancel: %d %v", c.status, c.body)
	}
	if j := waitJob(t, a, id); j["state"] != "cancelled" {
		t.Fatalf("cancelled job %v", j)
	}
}

// irisTuning is a tuning of softmax regression on iris over two values of
// l2, with the extra fields given.
func irisTuning(name, extra string) string {
	return `{"name": "` + name + `", "job": {"trainer": {"kind": "builtin", "algorithm": "softmax_regression"}, "dataset": "iris", "target": "Species",
		"features": ["Sepal_Length", "Sepal_Width", "Petal_Length", "Petal_Width"], "validation": {"split": 0.3}},
		"space": {"l2": {"kind": "values", "values": [0.0001, 10]}}, "parallelism": 2, "metric": "accuracy"` + extra + `}`
}

// runTuning submits a tuning and waits for it to end.
func runTuning(t *testing.T, a *Agent, spec string) (string, map[string]any) {
	t.Helper()
	r := call(t, a, "POST", "/v1/tuning", spec)
	if r.status != 201 {
		t.Fatalf("submit: %d %v", r.status, r.body)
	}
	id := r.body["id"].(string)
	var tu map[string]any
	testutil.WaitFor(t, 60*time.Second, func() error {
		if tu = call(t, a, "GET", "/v1/tuning/"+id, "").body; tu["state"] == "running" {
			return fmt.Errorf("tuning running: %v", tu["trials"])
		}
		return nil
	})
	return id, tu
}

// A tuning of builtin trainers registers its best trial's model.
func TestAgent_TuningRegistersTheBest(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	waitRegistered(t, a)
	if r := pushDataset(t, a, "iris", "", readTestdata(t, irisCSV)); r.status != 201 {
		t.Fatalf("push: %d %v", r.status, r.body)
	}
	spec := irisTuning("l2", `, "register_best_as": "iris-best"`)
	id, tu := runTuning(t, a, spec)
	trials, _ := tu["trials"].([]any)
	if tu["state"] != "succeeded" || len(trials) != 2 || tu["best_version"] != 1.0 {
		t.Fatalf("tuning %v", tu)
	}
	best := trials[int(tu["best_trial"].(float64))].(map[string]any)
	for _, tr := range trials {
		if v := tr.(map[string]any)["value"].(float64); v > best["value"].(float64) {
			t.Fatalf("best trial %v, but trial %v scored higher", best, tr)
		}
	}
	v := call(t, a, "GET", "/v1/models/iris-best/versions/1", "")
	md, _ := v.body["metadata"].(map[string]any)
	lineage, _ := v.body["lineage"].(map[string]any)
	if v.status != 200 || md["tuning"] != id || lineage["job_id"] != best["job_id"] {
		t.Fatalf("registered best %d %v, want the best trial's model with its lineage", v.status, v.body)
	}
	// Unknown parameters of the space are refused at submit.
	bad := strings.Replace(spec, `"l2":`, `"depth":`, 1)
	if r := call(t, a, "POST", "/v1/tuning", bad); r.status != 400 || !strings.Contains(fmt.Sprint(r.body["error"]), "depth") {
		t.Fatalf("a space the algorithm does not take: %d %v", r.status, r.body)
	}
}

// A job past its timeout is stopped and failed, naming the timeout.
func TestAgent_JobTimeout(t *testing.T) {
	a := testNode(t, withExec)
	waitLeader(t, a)
	waitRegistered(t, a)
	body := `{"name": "slow", "timeout": "1s", "trainer": {"kind": "process", "command": ["/bin/sh", "-c", "sleep 60"]}}`
	r := call(t, a, "POST", "/v1/jobs", body)
	if r.status != 201 {
		t.Fatalf("submit: %d %v", r.status, r.body)
	}
	j := waitJob(t, a, r.body["id"].(string))
	if j["state"] != "failed" || !strings.Contains(fmt.Sprint(j["reason"]), "timed out after 1s") {
		t.Fatalf("job %v, want failed for its timeout", j)
	}
}

// A finished job is retried as a new job with its spec, naming the old one;
// a job still running is refused, naming its state.
func TestAgent_JobRetry(t *testing.T) {
	a := testNode(t, withExec)
	waitLeader(t, a)
	waitRegistered(t, a)
	slow := call(t, a, "POST", "/v1/jobs", `{"name": "slow", "trainer": {"kind": "process", "command": ["/bin/sh", "-c", "exec sleep 60"]}}`)
	mustStatus(t, slow, 201, "submit slow")
	slowID := slow.body["id"].(string)
	if r := call(t, a, "POST", "/v1/jobs/"+slowID+"/retry", ""); r.status != 409 || !strings.Contains(fmt.Sprint(r.body["error"]), "cancel it first") {
		t.Fatalf("retry of an unfinished job: %d %v", r.status, r.body)
	}
	mustStatus(t, call(t, a, "POST", "/v1/jobs/"+slowID+"/cancel", ""), 200, "cancel")
	waitJob(t, a, slowID)

	r := call(t, a, "POST", "/v1/jobs", `{"name": "flaky", "trainer": {"kind": "process", "command": ["/bin/sh", "-c", "echo try; exit 3"]}}`)
	mustStatus(t, r, 201, "submit")
	first := waitJob(t, a, r.body["id"].(string))
	if first["state"] != "failed" {
		t.Fatalf("first attempt: %v", first)
	}
	again := call(t, a, "POST", "/v1/jobs/"+first["id"].(string)+"/retry", "")
	mustStatus(t, again, 201, "retry")
	if again.body["id"] == first["id"] || again.body["retry_of"] != first["id"] || again.body["run_id"] == first["run_id"] {
		t.Fatalf("retry %v: want a new job and run naming %v", again.body, first["id"])
	}
	if fmt.Sprint(again.body["spec"]) != fmt.Sprint(first["spec"]) {
		t.Fatalf("retry's spec %v, want the first's %v", again.body["spec"], first["spec"])
	}
	if second := waitJob(t, a, again.body["id"].(string)); second["state"] != "failed" || !strings.Contains(fmt.Sprint(second["reason"]), "code 3") {
		t.Fatalf("the retry did not run the same command: %v", second)
	}
	if r := call(t, a, "POST", "/v1/jobs/01jzzzzzzzzzzzzzzzzzzzzzzz/retry", ""); r.status != 404 {
		t.Fatalf("retry of an unknown job: %d %v", r.status, r.body)
	}
}
