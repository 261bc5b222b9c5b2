package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnml/kiln/node"
)

// fastJobPolling shortens submit -wait's and watch's polling for a test.
func fastJobPolling(t *testing.T) {
	t.Helper()
	poll, watch := jobPollInterval, jobWatchInterval
	jobPollInterval, jobWatchInterval = time.Millisecond, time.Millisecond
	t.Cleanup(func() { jobPollInterval, jobWatchInterval = poll, watch })
}

// writeJobFile writes content to name in a temporary directory.
func writeJobFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const fullJobHCL = `# every field of a job
job "iris-softmax" {
  experiment = "iris"
  trainer {
    kind      = "builtin"
    algorithm = "softmax_regression"
  }
  dataset  = "iris:1"
  target   = "Species"
  features = ["Sepal_Length", "Petal_Length"]
  validation {
    split = 0.3
  }
  params = {
    max_iter = 200
    penalty  = "l2"
    fit_bias = true
    "eta0"   = -1e-3
  }
  resources {
    cpu           = 2.5
    memory_mb     = 2048
    gpus          = 1
    gpu_model     = "H100"
    gpu_memory_mb = 40000
  }
  nodes       = 1
  placement   = "binpack"
  priority    = -5
  retries     = 1
  timeout     = "1h"
  register_as = "iris-m"
}
`

const fullJobJSON = `{
  "name": "iris-softmax", "experiment": "iris",
  "trainer": {"kind": "builtin", "algorithm": "softmax_regression"},
  "dataset": "iris:1", "target": "Species", "features": ["Sepal_Length", "Petal_Length"],
  "validation": {"split": 0.3},
  "params": {"max_iter": 200, "penalty": "l2", "fit_bias": true, "eta0": -0.001},
  "resources": {"cpu": 2.5, "memory_mb": 2048, "gpus": 1, "gpu_model": "H100", "gpu_memory_mb": 40000},
  "nodes": 1, "placement": "binpack", "priority": -5, "retries": 1, "timeout": "1h", "register_as": "iris-m"
}`

func TestParseJobHCL_ConvertsToJobSpecJSON(t *testing.T) {
	cases := []struct {
		name, hcl, want string
	}{
		{"every field", fullJobHCL, fullJobJSON},
		{"process trainer", `
job "torch-ddp" {
  trainer {
    kind    = "process"
    command = ["python3", "train.py"]
    args    = ["--epochs", "3"]
    env     = { WANDB_MODE = "offline", SEED = 7 }
  }
  validation {
    k_fold = 5
  }
  nodes     = 2
  placement = "spread"
}`, `{
  "name": "torch-ddp", "experiment": "",
  "trainer": {"kind": "process", "command": ["python3", "train.py"], "args": ["--epochs", "3"], "env": {"WANDB_MODE": "offline", "SEED": "7"}},
  "validation": {"k_fold": 5}, "resources": {"cpu": 0, "memory_mb": 0, "gpus": 0},
  "nodes": 2, "placement": "spread", "priority": 0, "retries": 0
}`},
		{"validation dataset, nothing else", `
job "m" {
  trainer {
    kind = "builtin"
  }
  validation {
    dataset = "iris:2"
  }
}`, `{
  "name": "m", "experiment": "", "trainer": {"kind": "builtin"}, "validation": {"dataset": "iris:2"},
  "resources": {"cpu": 0, "memory_mb": 0, "gpus": 0}, "nodes": 0, "placement": "", "priority": 0, "retries": 0
}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := node.ParseJobHCL([]byte(tc.hcl), "job.hcl")
			if err != nil {
				t.Fatalf("parseJobHCL: %v", err)
			}
			got, err := json.Marshal(spec)
			if err != nil {
				t.Fatal(err)
			}
			if !sameJSON(t, got, tc.want) {
				t.Errorf("spec JSON\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestParseJobHCL_ErrorsNameFileLineAndKey(t *testing.T) {
	const trainer = "  trainer {\n    kind = \"builtin\"\n  }\n"
	cases := []struct {
		name, hcl string
		msgs      []string // parts the error must hold
	}{
		{"unknown argument", "job \"a\" {\n" + trainer + "  colour = \"red\"\n}\n",
			[]string{"job.hcl:5,", "Unsupported argument", `"colour"`}},
		{"unknown argument in a block", "job \"a\" {\n" + trainer + "  resources {\n    tpus = 1\n  }\n}\n",
			[]string{"job.hcl:6,", "Unsupported argument", `"tpus"`}},
		{"unknown block", "job \"a\" {\n" + trainer + "  retry {\n  }\n}\n",
			[]string{"job.hcl:5,", "Unsupported block type", `"retry"`}},
		{"unknown top-level argument", "name = \"a\"\njob \"a\" {\n" + trainer + "}\n",
			[]string{"job.hcl:1,", "Unsupported argument", `"name"`}},
		{"wrong type", "job \"a\" {\n" + trainer + "  nodes = \"two\"\n}\n",
			[]string{"job.hcl:5,", "job.nodes", "a number is required"}},
		{"fraction for a count", "job \"a\" {\n" + trainer + "  resources {\n    gpus = 1.5\n  }\n}\n",
			[]string{"job.hcl:6,", "job.resources.gpus", "whole number"}},
		{"syntax", "job \"a\" {\n" + trainer + "  nodes = = 1\n}\n",
			[]string{"job.hcl:5,"}},
		{"one-line block with two arguments", "job \"a\" {\n  trainer { kind = \"builtin\"  algorithm = \"x\" }\n}\n",
			[]string{"job.hcl:2,", "single-argument block"}},
		{"missing trainer", "job \"a\" {\n  nodes = 1\n}\n",
			[]string{"job.hcl:", `Missing trainer block`}},
		{"missing label", "job {\n" + trainer + "}\n",
			[]string{"job.hcl:1,", "name"}},
		{"no job", "# nothing\n", []string{"job.hcl: no job block"}},
		{"two jobs", "job \"a\" {\n" + trainer + "}\n\njob \"b\" {\n" + trainer + "}\n",
			[]string{"job.hcl:7: a second job block"}},
		{"params list", "job \"a\" {\n" + trainer + "  params = {\n    depth = 3\n    layers = [1, 2]\n  }\n}\n",
			[]string{"job.hcl:7: params.layers must be a number, a string or a boolean, not type tuple"}},
		{"params object", "job \"a\" {\n" + trainer + "  params = { opt = { lr = 1 } }\n}\n",
			[]string{"job.hcl:5: params.opt must be a number, a string or a boolean, not type object"}},
		{"params null", "job \"a\" {\n" + trainer + "  params = { x = null }\n}\n",
			[]string{"job.hcl:5: params.x is null"}},
		{"params variable", "job \"a\" {\n" + trainer + "  params = { x = y }\n}\n",
			[]string{"job.hcl:5: params.x:", "Variables not allowed"}},
		{"params twice", "job \"a\" {\n" + trainer + "  params = {\n    x = 1\n    x = 2\n  }\n}\n",
			[]string{"job.hcl:7: params.x is given twice"}},
		{"params not an object", "job \"a\" {\n" + trainer + "  params = 3\n}\n",
			[]string{"job.hcl:5: params must be an object"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := node.ParseJobHCL([]byte(tc.hcl), "job.hcl")
			if err == nil {
				t.Fatalf("parseJobHCL = %+v, want an error", spec)
			}
			for _, m := range tc.msgs {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q lacks %q", err, m)
				}
			}
		})
	}
}

func TestParseJobHCL_ParamTypes(t *testing.T) {
	spec, err := node.ParseJobHCL([]byte(`job "p" {
  trainer {
    kind = "builtin"
  }
  params = {
    int      = 6
    float    = 0.25
    negative = -3
    big      = 1e20
    text     = "binary:logistic"
    numeric  = "6"
    yes      = true
    no       = false
    "quoted key" = "ok"
  }
}`), "p.hcl")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"int": 6.0, "float": 0.25, "negative": -3.0, "big": 1e20,
		"text": "binary:logistic", "numeric": "6", "yes": true, "no": false, "quoted key": "ok",
	}
	if !reflect.DeepEqual(spec.Params, want) {
		t.Errorf("params %#v\nwant %#v", spec.Params, want)
	}

	spec, err = node.ParseJobHCL([]byte("job \"p\" {\n  trainer {\n    kind = \"builtin\"\n  }\n  params = {}\n}\n"), "p.hcl")
	if err != nil || spec.Params == nil || len(spec.Params) != 0 {
		t.Errorf("empty params = %#v, %v; want an empty map", spec.Params, err)
	}
	spec, err = node.ParseJobHCL([]byte("job \"p\" {\n  trainer {\n    kind = \"builtin\"\n  }\n}\n"), "p.hcl")
	if err != nil || spec.Params != nil {
		t.Errorf("no params = %#v, %v; want nil", spec.Params, err)
	}
}

// jobRecord is a job as the node answers it, in state with extra fields.
func jobRecord(state string, extra map[string]any) map[string]any {
	j := map[string]any{
		"id": "01JOBID", "state": state, "attempt": 0, "allocations": []any{}, "history": []any{},
		"run_id": "", "submitted_at": "2025-01-02T03:04:05Z", "started_at": "0001-01-01T00:00:00Z",
		"finished_at": "0001-01-01T00:00:00Z", "duration_seconds": 0,
		"spec": map[string]any{
			"name": "iris-softmax", "experiment": "iris", "register_as": "iris-m", "retries": 1, "nodes": 1,
			"dataset": "iris:1", "target": "Species",
			"trainer":   map[string]any{"kind": "builtin", "algorithm": "softmax_regression"},
			"resources": map[string]any{"cpu": 2, "memory_mb": 2048, "gpus": 2},
		},
	}
	for k, v := range extra {
		j[k] = v
	}
	return j
}

var runningOnN1 = map[string]any{"attempt": 1, "allocations": []any{
	map[string]any{"rank": 0, "node_id": "node-1", "node_name": "n1", "gpus": []int{0, 1}, "cpu": 2, "memory_mb": 2048, "state": "running"},
}}

func TestJobsSubmit_PostsSpec(t *testing.T) {
	srv, got := recordingServer(t, func(w http.ResponseWriter, _ request) { writeJSONReply(w, 201, jobRecord("pending", nil)) })
	jsonSpec := `{"name": "iris-softmax", "trainer": {"kind": "builtin", "algorithm": "softmax_regression"}, "params": {"seed": 12345678901}}`
	cases := []struct {
		name, file, content, want string
	}{
		{"json as written", "job.json", jsonSpec, jsonSpec},
		{"json whatever the extension", "job.txt", jsonSpec, jsonSpec},
		{"hcl converted", "job.hcl", fullJobHCL, fullJobJSON},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := writeJobFile(t, tc.file, tc.content)
			before := len(got())
			var code int
			out, errOut := captureOutput(t, func() { code = run([]string{"jobs", "submit", "-address", srv.URL, file}) })
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			reqs := got()[before:]
			if len(reqs) != 1 {
				t.Fatalf("server got %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != "POST" || r.Path != "/v1/jobs" || r.ContentType != "application/json" {
				t.Errorf("request %s %s (%s), want POST /v1/jobs with JSON", r.Method, r.Path, r.ContentType)
			}
			if !sameJSON(t, r.Body, tc.want) {
				t.Errorf("body %s\nwant %s", r.Body, tc.want)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 2 || !slices.Equal(strings.Fields(lines[0]), []string{"ID", "NAME", "STATE"}) ||
				!slices.Equal(strings.Fields(lines[1]), []string{"01JOBID", "iris-softmax", "pending"}) {
				t.Errorf("output %q", out)
			}
		})
	}

	// -format json prints the node's answer.
	file := writeJobFile(t, "job.json", jsonSpec)
	out, _ := captureOutput(t, func() { run([]string{"jobs", "submit", "-address", srv.URL, "-format", "json", file}) })
	if !strings.Contains(out, `"id": "01JOBID"`) {
		t.Errorf("json output %q", out)
	}
}

func TestJobsSubmit_BadFileSendsNothing(t *testing.T) {
	srv, got := recordingServer(t, func(w http.ResponseWriter, _ request) { writeJSONReply(w, 201, jobRecord("pending", nil)) })
	cases := []struct {
		name, file, content, msg string
	}{
		{"json syntax", "job.json", "{\n  \"name\": \"a\",\n  \"nodes\": ,\n}", "job.json:3: invalid character ','"},
		{"json array", "job.json", `[1]`, "a job spec is a JSON object"},
		{"json null", "job.json", `null`, "a job spec is a JSON object, not null"},
		{"json trailing data", "job.json", "{}\n{}", "job.json:2: invalid character"},
		{"hcl unknown argument", "job.hcl", "job \"a\" {\n  trainer {\n    kind = \"builtin\"\n  }\n  gpu = 1\n}\n", `job.hcl:5,3: job.gpu: Unsupported argument: An argument named "gpu"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := writeJobFile(t, tc.file, tc.content)
			var code int
			_, errOut := captureOutput(t, func() { code = run([]string{"jobs", "submit", "-address", srv.URL, file}) })
			if code != 1 || !strings.Contains(errOut, tc.msg) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, errOut, tc.msg)
			}
		})
	}
	var code int
	_, errOut := captureOutput(t, func() { code = run([]string{"jobs", "submit", "-address", srv.URL, "/nonexistent/job.hcl"}) })
	if code != 1 || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: exit %d, stderr %q", code, errOut)
	}
	if n := len(got()); n != 0 {
		t.Errorf("bad files still sent %d requests", n)
	}
}

// jobSequence answers POST /v1/jobs with the first of states and each GET of
// the job with the next, staying on the last; it counts the GETs.
func jobSequence(t *testing.T, states ...map[string]any) (url string, gets *atomic.Int32) {
	t.Helper()
	gets = new(atomic.Int32)
	srv, _ := recordingServer(t, func(w http.ResponseWriter, req request) {
		switch {
		case req.Method == "POST" && req.Path == "/v1/jobs":
			writeJSONReply(w, 201, states[0])
		case req.Method == "GET" && req.Path == "/v1/jobs/01JOBID":
			n := int(gets.Add(1))
			writeJSONReply(w, 200, states[min(n, len(states)-1)])
		default:
			writeJSONReply(w, 404, map[string]string{"error": "no route " + req.Method + " " + req.Path, "code": "not_found"})
		}
	})
	return srv.URL, gets
}

func TestJobsSubmit_WaitFollowsToSuccess(t *testing.T) {
	fastJobPolling(t)
	addr, gets := jobSequence(t,
		jobRecord("pending", map[string]any{"reason": "no node has 2 free GPUs"}),
		jobRecord("pending", map[string]any{"reason": "no node has 2 free GPUs"}),
		jobRecord("running", runningOnN1),
		jobRecord("succeeded", map[string]any{"attempt": 1, "duration_seconds": 65.4, "model_version": 3,
			"metrics": map[string]any{"accuracy": 0.9666666666, "log_loss": 0.1}}),
	)
	file := writeJobFile(t, "job.json", `{"name": "iris-softmax"}`)
	var code int
	out, errOut := captureOutput(t, func() { code = run([]string{"jobs", "submit", "-wait", "-address", addr, file}) })
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if n := gets.Load(); n != 3 {
		t.Errorf("GET the job %d times, want 3 (until it succeeded)", n)
	}
	// Each state change once, on stderr, in order.
	var changes []string
	for _, l := range strings.Split(strings.TrimSpace(errOut), "\n")[1:] {
		_, change, _ := strings.Cut(l, " ")
		changes = append(changes, change)
	}
	want := []string{"pending: no node has 2 free GPUs", "running (attempt 1) on n1[0,1]", "succeeded (attempt 1)"}
	if !strings.HasPrefix(errOut, "Submitted job 01JOBID\n") || !slices.Equal(changes, want) {
		t.Errorf("stderr %q\nwant the changes %q", errOut, want)
	}
	for _, line := range [][]string{
		{"01JOBID", "iris-softmax", "succeeded"},
		{"Model:", "iris-m", "version", "3"},
		{"Duration:", "1m5s"},
		{"accuracy", "0.966667"},
		{"log_loss", "0.1"},
	} {
		if !hasLine(out, line) {
			t.Errorf("output lacks a line %q:\n%s", line, out)
		}
	}
}

func TestJobsSubmit_WaitExits1WhenTheJobDoesNotSucceed(t *testing.T) {
	fastJobPolling(t)
	cases := []struct {
		name  string
		final map[string]any
		msgs  []string
	}{
		{"failed", jobRecord("failed", map[string]any{"attempt": 2, "reason": "rank 0 exited with code 2", "exit_code": 2,
			"log_tail": []string{"Traceback (most recent call last):", "ValueError: bad input"}}),
			[]string{"Error: job 01JOBID failed: rank 0 exited with code 2\nLast log lines:\n  Traceback (most recent call last):\n  ValueError: bad input"}},
		{"cancelled", jobRecord("cancelled", map[string]any{"reason": "cancelled"}), []string{"Error: job 01JOBID cancelled\n"}},
		{"failed without a reason", jobRecord("failed", map[string]any{"exit_code": 137}), []string{"Error: job 01JOBID failed (exit code 137)\n"}},
		{"lost", jobRecord("lost", map[string]any{"reason": "node n1 left"}), []string{"Error: job 01JOBID lost: node n1 left"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := jobSequence(t, jobRecord("pending", nil), jobRecord("running", runningOnN1), tc.final)
			file := writeJobFile(t, "job.json", `{"name": "iris-softmax"}`)
			var code int
			out, errOut := captureOutput(t, func() { code = run([]string{"jobs", "submit", "-address", addr, file, "-wait"}) })
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			for _, m := range tc.msgs {
				if !strings.Contains(errOut, m) {
					t.Errorf("stderr lacks %q:\n%s", m, errOut)
				}
			}
			if !hasLine(out, []string{"01JOBID", "iris-softmax", str(tc.final["state"])}) {
				t.Errorf("output lacks the final state:\n%s", out)
			}
		})
	}
}

func TestJobsSubmit_WaitRetriesUnavailableAndStopsOnRefusal(t *testing.T) {
	fastJobPolling(t)
	var gets, status atomic.Int32
	status.Store(503)
	srv, _ := recordingServer(t, func(w http.ResponseWriter, req request) {
		if req.Method == "POST" {
			writeJSONReply(w, 201, jobRecord("pending", nil))
			return
		}
		if gets.Add(1) < 3 {
			writeJSONReply(w, int(status.Load()), map[string]string{"error": "no leader", "code": "unavailable"})
			return
		}
		writeJSONReply(w, 200, jobRecord("succeeded", nil))
	})
	file := writeJobFile(t, "job.json", `{"name": "iris-softmax"}`)
	var code int
	_, errOut := captureOutput(t, func() { code = run([]string{"jobs", "submit", "-wait", "-address", srv.URL, file}) })
	if code != 0 || gets.Load() != 3 {
		t.Errorf("through two 503s: exit %d after %d reads, stderr %q; want 0 after 3", code, gets.Load(), errOut)
	}

	gets.Store(0)
	status.Store(403)
	_, errOut = captureOutput(t, func() { code = run([]string{"jobs", "submit", "-wait", "-address", srv.URL, file}) })
	if code != 1 || gets.Load() != 1 || !strings.Contains(errOut, "following job 01JOBID: no leader") ||
		!strings.Contains(errOut, "kiln jobs status 01JOBID") {
		t.Errorf("on a 403: exit %d after %d reads, stderr %q; want 1 after 1", code, gets.Load(), errOut)
	}
}

func TestJobsLogs_StreamsBodyWithQuery(t *testing.T) {
	const log = "epoch 1 loss 0.9\nepoch 2 loss 0.4\n"
	srv, got := recordingServer(t, func(w http.ResponseWriter, _ request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		for _, line := range strings.SplitAfter(log, "\n") {
			w.Write([]byte(line))
			w.(http.Flusher).Flush()
		}
	})
	cases := []struct {
		args  []string
		query string
	}{
		{[]string{"01JOBID"}, ""},
		{[]string{"-f", "01JOBID"}, "follow=true"},
		{[]string{"01JOBID", "-f", "-rank", "1"}, "follow=true&rank=1"},
		{[]string{"-attempt", "2", "01JOBID"}, "attempt=2"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			before := len(got())
			var code int
			out, errOut := captureOutput(t, func() { code = run(append([]string{"jobs", "logs", "-address", srv.URL}, tc.args...)) })
			if code != 0 || out != log {
				t.Errorf("exit %d, stdout %q, stderr %q; want 0 and the log", code, out, errOut)
			}
			reqs := got()[before:]
			if len(reqs) != 1 || reqs[0].Method != "GET" || reqs[0].Path != "/v1/jobs/01JOBID/logs" || reqs[0].Query.Encode() != tc.query {
				t.Errorf("requests %+v, want one GET /v1/jobs/01JOBID/logs?%s", reqs, tc.query)
			}
		})
	}
	var code int
	_, errOut := captureOutput(t, func() { code = run([]string{"jobs", "logs", "-address", srv.URL, "-rank", "-1", "01JOBID"}) })
	if code != 1 || !strings.Contains(errOut, "must not be negative") {
		t.Errorf("-rank -1: exit %d, stderr %q", code, errOut)
	}
}

func TestJobsCancel_PostsToCancelPath(t *testing.T) {
	cases := []struct {
		state    string
		stopping bool
	}{
		{"cancelled", false},
		{"running", true},
	}
	for _, tc := range cases {
		t.Run(tc.state, func(t *testing.T) {
			srv, got := recordingServer(t, func(w http.ResponseWriter, _ request) {
				writeJSONReply(w, 200, jobRecord(tc.state, map[string]any{"cancel_requested": tc.stopping}))
			})
			var code int
			out, errOut := captureOutput(t, func() { code = run([]string{"jobs", "cancel", "-address", srv.URL, "01JOBID"}) })
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			reqs := got()
			if len(reqs) != 1 || reqs[0].Method != "POST" || reqs[0].Path != "/v1/jobs/01JOBID/cancel" {
				t.Errorf("requests %+v, want one POST /v1/jobs/01JOBID/cancel", reqs)
			}
			if !hasLine(out, []string{"01JOBID", "iris-softmax", tc.state}) {
				t.Errorf("output lacks the job's state:\n%s", out)
			}
			if strings.Contains(out, "Its nodes are stopping it") != tc.stopping {
				t.Errorf("output %q: stopping note should show: %v", out, tc.stopping)
			}
		})
	}
}

func TestJobsReads_Tables(t *testing.T) {
	failed := jobRecord("failed", map[string]any{
		"attempt": 2, "reason": "rank 0 exited with code 1", "exit_code": 1, "run_id": "run-7",
		"started_at": "2025-01-02T03:05:00.123456789Z", "finished_at": "2025-01-02T03:06:00Z", "duration_seconds": 60,
		"allocations": []any{
			map[string]any{"rank": 0, "node_id": "node-1", "node_name": "n1", "gpus": []int{0, 1}, "state": "failed"},
			map[string]any{"rank": 1, "node_id": "node-2", "node_name": "", "gpus": []int{}, "state": "succeeded"},
		},
		"history": []any{
			map[string]any{"state": "pending", "at": "2025-01-02T03:04:05.5Z"},
			map[string]any{"state": "failed", "at": "2025-01-02T03:06:00Z", "reason": "rank 0 exited with code 1"},
		},
		"metrics":  map[string]any{"accuracy": 0.5},
		"log_tail": []string{"CUDA out of memory"},
	})
	srv, _ := recordingServer(t, func(w http.ResponseWriter, req request) {
		switch req.Path {
		case "/v1/jobs":
			writeJSONReply(w, 200, map[string]any{"items": []any{jobRecord("pending", nil), failed}, "next_cursor": ""})
		case "/v1/jobs/01JOBID":
			writeJSONReply(w, 200, failed)
		case "/v1/jobs/01PEND":
			writeJSONReply(w, 200, jobRecord("pending", map[string]any{"reason": "no node has 2 free GPUs"}))
		default:
			writeJSONReply(w, 404, map[string]string{"error": "no route " + req.Path, "code": "not_found"})
		}
	})
	cases := []struct {
		args  []string
		lines [][]string
	}{
		{[]string{"jobs", "list"}, [][]string{
			{"ID", "NAME", "STATE", "ATTEMPT", "NODES", "SUBMITTED"},
			{"01JOBID", "iris-softmax", "pending", "0", "-", "2025-01-02T03:04:05Z"},
			{"01JOBID", "iris-softmax", "failed", "2", "n1,node-2", "2025-01-02T03:04:05Z"},
		}},
		{[]string{"jobs", "status", "01JOBID"}, [][]string{
			{"ID:", "01JOBID"},
			{"Trainer:", "builtin", "softmax_regression"},
			{"Dataset:", "iris:1,", "target", "Species"},
			{"State:", "failed:", "rank", "0", "exited", "with", "code", "1"},
			{"Attempt:", "2", "of", "2"},
			{"Started:", "2025-01-02T03:05:00Z"},
			{"Duration:", "1m0s"},
			{"Exit", "code:", "1"},
			{"Run:", "run-7"},
			{"RANK", "NODE", "GPUS", "STATE"},
			{"0", "n1", "0,1", "failed"},
			{"1", "node-2", "-", "succeeded"},
			{"STATE", "AT", "REASON"},
			{"pending", "2025-01-02T03:04:05Z", "-"},
			{"failed", "2025-01-02T03:06:00Z", "rank", "0", "exited", "with", "code", "1"},
			{"accuracy", "0.5"},
			{"Last", "log", "lines:"},
			{"CUDA", "out", "of", "memory"},
		}},
		// A pending job has not started: the node's zero times show as "-".
		{[]string{"jobs", "status", "01PEND"}, [][]string{
			{"State:", "pending:", "no", "node", "has", "2", "free", "GPUs"},
			{"Attempt:", "0", "of", "2"},
			{"Started:", "-"},
			{"Finished:", "-"},
			{"Duration:", "-"},
			{"Resources:", "cpu", "2,", "memory", "2048", "MB,", "gpus", "2"},
		}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var code int
			out, errOut := captureOutput(t, func() { code = run(append(tc.args, "-address", srv.URL)) })
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			for _, want := range tc.lines {
				if !hasLine(out, want) {
					t.Errorf("output lacks a line %q:\n%s", want, out)
				}
			}
		})
	}

	out := captureStdout(t, func() { run([]string{"jobs", "status", "-address", srv.URL, "01JOBID", "-format", "json"}) })
	if !strings.Contains(out, `"run_id": "run-7"`) {
		t.Errorf("json output %q", out)
	}
}

func TestJobsWatch_PrintsChangesUntilTheEnd(t *testing.T) {
	fastJobPolling(t)
	addr, gets := jobSequence(t,
		jobRecord("pending", nil), // the POST's, unused here
		jobRecord("pending", nil),
		jobRecord("running", runningOnN1),
		jobRecord("running", runningOnN1),
		jobRecord("succeeded", map[string]any{"attempt": 1, "duration_seconds": 0.0042, "metrics": map[string]any{"r2": 0.75}}),
	)
	var code int
	out, errOut := captureOutput(t, func() { code = run([]string{"jobs", "watch", "-address", addr, "01JOBID"}) })
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if n := gets.Load(); n != 4 {
		t.Errorf("GET the job %d times, want 4", n)
	}
	var changes []string
	for _, l := range strings.Split(out, "\n") {
		if _, change, ok := strings.Cut(l, " "); ok && len(l) > 8 && l[2] == ':' && l[5] == ':' {
			changes = append(changes, change)
		}
	}
	if want := []string{"pending", "running (attempt 1) on n1[0,1]", "succeeded (attempt 1)"}; !slices.Equal(changes, want) {
		t.Errorf("changes %q, want %q:\n%s", changes, want, out)
	}
	if !hasLine(out, []string{"r2", "0.75"}) || !hasLine(out, []string{"Duration:", "4ms"}) || !hasLine(out, []string{"01JOBID", "iris-softmax", "succeeded"}) {
		t.Errorf("output lacks the final state and metrics:\n%s", out)
	}

	addr, _ = jobSequence(t, jobRecord("pending", nil), jobRecord("failed", map[string]any{"reason": "timed out after 1h"}))
	_, errOut = captureOutput(t, func() { code = run([]string{"jobs", "watch", "-address", addr, "01JOBID"}) })
	if code != 1 || !strings.Contains(errOut, "job 01JOBID failed: timed out after 1h") {
		t.Errorf("failed job: exit %d, stderr %q", code, errOut)
	}
}

func TestRedrawJob_ClearsAndDrawsStatus(t *testing.T) {
	// The job as the client decodes it from the node's JSON.
	raw, err := json.Marshal(jobRecord("running", runningOnN1))
	if err != nil {
		t.Fatal(err)
	}
	var j map[string]any
	if err := json.Unmarshal(raw, &j); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	redrawJob(&b, j)
	out := b.String()
	if !strings.HasPrefix(out, "\x1b[H\x1b[2Jkiln jobs watch 01JOBID") || !hasLine(out, []string{"0", "n1", "0,1", "running"}) ||
		!hasLine(out, []string{"State:", "running"}) || !hasLine(out, []string{"Attempt:", "1", "of", "2"}) {
		t.Errorf("redraw %q", out)
	}
}

func TestJobsCommands_ServerErrorIsExit1WithMessage(t *testing.T) {
	srv, _ := recordingServer(t, func(w http.ResponseWriter, _ request) {
		writeJSONReply(w, 404, map[string]string{"error": `job "01NOPE" not found`, "code": "not_found"})
	})
	file := writeJobFile(t, "job.json", `{"name": "x"}`)
	for _, args := range [][]string{
		{"jobs", "submit", file},
		{"jobs", "list"},
		{"jobs", "status", "01NOPE"},
		{"jobs", "logs", "01NOPE"},
		{"jobs", "logs", "-f", "01NOPE"},
		{"jobs", "watch", "01NOPE"},
		{"jobs", "cancel", "01NOPE"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var code int
			args := append(args[:len(args):len(args)], "-address", srv.URL)
			_, errOut := captureOutput(t, func() { code = run(args) })
			if code != 1 || !strings.Contains(errOut, `job "01NOPE" not found (not_found, HTTP 404)`) {
				t.Errorf("run(%v) = %d, stderr %q", args, code, errOut)
			}
		})
	}
}

// hasLine reports whether out has a line whose fields are want.
func hasLine(out string, want []string) bool {
	for _, l := range strings.Split(out, "\n") {
		if slices.Equal(strings.Fields(l), want) {
			return true
		}
	}
	return false
}

func TestJobsSubmitHelp_ExampleParses(t *testing.T) {
	start := strings.Index(jobsSubmitHelp, `    job "`)
	end := strings.Index(jobsSubmitHelp[start:], "\n    }\n")
	if start < 0 || end < 0 {
		t.Fatal("the help has no job example")
	}
	spec, err := node.ParseJobHCL([]byte(jobsSubmitHelp[start:start+end+6]), "help.hcl")
	if err != nil {
		t.Fatalf("the help's example does not parse: %v", err)
	}
	if spec.Name != "iris-softmax" || spec.Trainer.Algorithm != "softmax_regression" || spec.Params["max_iter"] != 200.0 || spec.RegisterAs != "iris-m" {
		t.Errorf("the help's example reads as %+v", spec)
	}
}

func TestJobsRetry_PostsToRetryPath(t *testing.T) {
	srv, got := recordingServer(t, func(w http.ResponseWriter, _ request) {
		writeJSONReply(w, 201, jobRecord("pending", map[string]any{"id": "01NEWJOB", "retry_of": "01JOBID"}))
	})
	var code int
	out, errOut := captureOutput(t, func() { code = run([]string{"jobs", "retry", "-address", srv.URL, "01JOBID"}) })
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if reqs := got(); len(reqs) != 1 || reqs[0].Method != "POST" || reqs[0].Path != "/v1/jobs/01JOBID/retry" {
		t.Errorf("requests %+v, want one POST /v1/jobs/01JOBID/retry", reqs)
	}
	if !hasLine(out, []string{"01NEWJOB", "iris-softmax", "pending"}) || !strings.Contains(out, "kiln jobs watch 01NEWJOB") {
		t.Errorf("output lacks the new job:\n%s", out)
	}
}
