package main

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnml/kiln/node"
)

// fastTunePolling shortens submit -wait's polling for a test.
func fastTunePolling(t *testing.T) {
	t.Helper()
	poll := tunePollInterval
	tunePollInterval = time.Millisecond
	t.Cleanup(func() { tunePollInterval = poll })
}

const tuningHCL = `tuning "xgb-search" {
  search      = "random"
  max_trials  = 20
  parallelism = 2
  metric      = "auc"
  goal        = "maximize"
  job {
    trainer {
      kind      = "builtin"
      algorithm = "gbdt"
    }
    dataset = "agaricus"
    target  = "label"
    params  = { objective = "binary:logistic" }
    validation {
      split = 0.2
    }
  }
  param "max_depth" {
    kind   = "values"
    values = [3, 4, 6]
  }
  param "learning_rate" {
    kind = "loguniform"
    min  = 0.01
    max  = 0.3
  }
  early_stopping {
    kind   = "asha"
    metric = "valid_logloss"
    goal   = "minimize"
  }
  register_best_as = "agaricus-best"
}
`

// tuningHCLJSON is tuningHCL as the node gets it.
const tuningHCLJSON = `{
  "name": "xgb-search",
  "job": {
    "name": "", "experiment": "",
    "trainer": {"kind": "builtin", "algorithm": "gbdt"},
    "dataset": "agaricus", "target": "label",
    "validation": {"split": 0.2},
    "params": {"objective": "binary:logistic"},
    "resources": {"cpu": 0, "memory_mb": 0, "gpus": 0},
    "nodes": 0, "placement": "", "priority": 0, "retries": 0
  },
  "search": "random",
  "space": {
    "max_depth": {"kind": "values", "values": [3, 4, 6]},
    "learning_rate": {"kind": "loguniform", "min": 0.01, "max": 0.3}
  },
  "max_trials": 20, "parallelism": 2, "metric": "auc", "goal": "maximize",
  "early_stopping": {"kind": "asha", "metric": "valid_logloss", "goal": "minimize"},
  "register_best_as": "agaricus-best",
  "seed": 0
}`

// tuningRecord is a tuning as the node answers it, in state with extra
// fields.
func tuningRecord(state string, extra map[string]any) map[string]any {
	tu := map[string]any{
		"id": "01TUNE", "state": state, "trials": []any{}, "best_trial": -1, "best_value": 0,
		"created_at": "2025-01-02T03:04:05Z", "finished_at": "0001-01-01T00:00:00Z",
		"spec": map[string]any{
			"name": "xgb-search", "search": "random", "max_trials": 4, "parallelism": 2,
			"metric": "auc", "goal": "maximize", "register_best_as": "agaricus-best",
			"space": map[string]any{"max_depth": map[string]any{"kind": "values", "values": []any{3, 6}}},
			"job":   map[string]any{"name": "xgb-search", "trainer": map[string]any{"kind": "builtin", "algorithm": "gbdt"}},
		},
	}
	for k, v := range extra {
		tu[k] = v
	}
	return tu
}

// trial is a trial as the node answers it; value nil when it has none.
func trial(index int, job, state string, value any, params map[string]any) map[string]any {
	tr := map[string]any{"index": index, "job_id": job, "state": state, "params": params}
	if value != nil {
		tr["value"] = value
	}
	return tr
}

// twoTrials has a finished trial that is the best and one running.
var twoTrials = map[string]any{
	"trials": []any{
		trial(0, "01JOB0", "succeeded", 0.91, map[string]any{"max_depth": 3, "learning_rate": 0.0123456789}),
		trial(1, "01JOB1", "running", nil, map[string]any{"max_depth": 6, "learning_rate": 0.2}),
	},
	"best_trial": 0, "best_value": 0.91, "best_job": "01JOB0",
}

func TestTuneSubmit_PostsSpec(t *testing.T) {
	srv, got := recordingServer(t, func(w http.ResponseWriter, _ request) { writeJSONReply(w, 201, tuningRecord("running", nil)) })
	jsonSpec := `{"name": "xgb-search", "job": {"trainer": {"kind": "builtin"}}, "space": {"x": {"kind": "int", "min": 1, "max": 9}}, "seed": 12345678901234567}`
	cases := []struct {
		name, file, content, want string
	}{
		{"json as written", "tune.json", jsonSpec, jsonSpec},
		{"hcl converted", "tune.hcl", tuningHCL, tuningHCLJSON},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := writeJobFile(t, tc.file, tc.content)
			before := len(got())
			var code int
			out, errOut := captureOutput(t, func() { code = run([]string{"tune", "submit", "-address", srv.URL, file}) })
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			reqs := got()[before:]
			if len(reqs) != 1 {
				t.Fatalf("server got %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != "POST" || r.Path != "/v1/tuning" || r.ContentType != "application/json" {
				t.Errorf("request %s %s (%s), want POST /v1/tuning with JSON", r.Method, r.Path, r.ContentType)
			}
			if !sameJSON(t, r.Body, tc.want) {
				t.Errorf("body %s\nwant %s", r.Body, tc.want)
			}
			// JSON goes out as written: a big seed keeps its digits.
			if tc.file == "tune.json" && !strings.Contains(string(r.Body), `"seed":12345678901234567}`) {
				t.Errorf("body %s, want the seed as written", r.Body)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 2 || !slices.Equal(strings.Fields(lines[0]), []string{"ID", "NAME", "STATE"}) ||
				!slices.Equal(strings.Fields(lines[1]), []string{"01TUNE", "xgb-search", "running"}) {
				t.Errorf("output %q", out)
			}
		})
	}

	file := writeJobFile(t, "tune.json", jsonSpec)
	out, _ := captureOutput(t, func() { run([]string{"tune", "submit", "-address", srv.URL, "-format", "json", file}) })
	if !strings.Contains(out, `"id": "01TUNE"`) {
		t.Errorf("json output %q", out)
	}
}

func TestTuneSubmit_BadFileSendsNothing(t *testing.T) {
	srv, got := recordingServer(t, func(w http.ResponseWriter, _ request) { writeJSONReply(w, 201, tuningRecord("running", nil)) })
	cases := []struct {
		name, file, content, msg string
	}{
		{"json syntax", "tune.json", "{\n  \"name\": \"a\",\n  \"max_trials\": ,\n}", "tune.json:3: invalid character ','"},
		{"json array", "tune.json", `[1]`, "a tuning spec is a JSON object"},
		{"json null", "tune.json", `null`, "a tuning spec is a JSON object, not null"},
		{"hcl unknown argument", "tune.hcl", strings.Replace(tuningHCL, "  parallelism = 2\n", "  parallelism = 2\n  budget = 3\n", 1),
			`tune.hcl:5,3: tuning.budget: Unsupported argument`},
		{"hcl job register_as", "tune.hcl", strings.Replace(tuningHCL, "    target  = \"label\"\n", "    target  = \"label\"\n    register_as = \"m\"\n", 1),
			"tune.hcl:14: job.register_as is not for trials"},
		{"a job file", "tune.hcl", fullJobHCL, `tune.hcl:2,1: Unsupported block type: Blocks of type "job"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := writeJobFile(t, tc.file, tc.content)
			var code int
			_, errOut := captureOutput(t, func() { code = run([]string{"tune", "submit", "-address", srv.URL, file}) })
			if code != 1 || !strings.Contains(errOut, tc.msg) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, errOut, tc.msg)
			}
		})
	}
	var code int
	_, errOut := captureOutput(t, func() { code = run([]string{"tune", "submit", "-address", srv.URL, "/nonexistent/tune.hcl"}) })
	if code != 1 || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: exit %d, stderr %q", code, errOut)
	}
	if n := len(got()); n != 0 {
		t.Errorf("bad files still sent %d requests", n)
	}
}

// tuningSequence answers POST /v1/tuning with the first of states and each
// GET of the tuning with the next, staying on the last; it counts the GETs.
func tuningSequence(t *testing.T, states ...map[string]any) (url string, gets *atomic.Int32) {
	t.Helper()
	gets = new(atomic.Int32)
	srv, _ := recordingServer(t, func(w http.ResponseWriter, req request) {
		switch {
		case req.Method == "POST" && req.Path == "/v1/tuning":
			writeJSONReply(w, 201, states[0])
		case req.Method == "GET" && req.Path == "/v1/tuning/01TUNE":
			n := int(gets.Add(1))
			writeJSONReply(w, 200, states[min(n, len(states)-1)])
		default:
			writeJSONReply(w, 404, map[string]string{"error": "no route " + req.Method + " " + req.Path, "code": "not_found"})
		}
	})
	return srv.URL, gets
}

func TestTuneSubmit_WaitFollowsToTheEnd(t *testing.T) {
	fastTunePolling(t)
	succeeded := tuningRecord("succeeded", map[string]any{
		"trials": []any{
			trial(0, "01JOB0", "succeeded", 0.91, map[string]any{"max_depth": 3}),
			trial(1, "01JOB1", "succeeded", 0.95, map[string]any{"max_depth": 6}),
		},
		"best_trial": 1, "best_value": 0.95, "best_job": "01JOB1", "best_version": 2,
	})
	failed := tuningRecord("failed", map[string]any{"reason": `no trial finished with metric "auc"`,
		"trials": []any{trial(0, "01JOB0", "failed", nil, map[string]any{"max_depth": 3})}})
	cases := []struct {
		name    string
		final   map[string]any
		code    int
		changes []string
		lines   [][]string
		errMsg  string
	}{
		{"succeeded", succeeded, 0, []string{
			"running: 0 of 4 trials",
			"running: 2 of 4 trials, 1 running; best trial 0, auc 0.91, job 01JOB0",
			"succeeded: 2 of 4 trials; best trial 1, auc 0.95, job 01JOB1",
		}, [][]string{
			{"State:", "succeeded"},
			{"Best:", "trial", "1,", "auc", "0.95,", "job", "01JOB1"},
			{"Best", "version:", "agaricus-best", "version", "2"},
			{"1", "01JOB1", "succeeded", "max_depth=6", "0.95", "-"},
		}, ""},
		{"failed", failed, 1, []string{
			"running: 0 of 4 trials",
			"running: 2 of 4 trials, 1 running; best trial 0, auc 0.91, job 01JOB0",
			`failed: 1 of 4 trials: no trial finished with metric "auc"`,
		}, [][]string{
			{"State:", "failed:", "no", "trial", "finished", "with", "metric", `"auc"`},
			{"Best:", "-"},
			{"Best", "version:", "-"},
			{"0", "01JOB0", "failed", "max_depth=3", "-", "-"},
		}, `Error: tuning 01TUNE failed: no trial finished with metric "auc"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			running := tuningRecord("running", nil)
			addr, gets := tuningSequence(t, running, running, tuningRecord("running", twoTrials), tc.final)
			file := writeJobFile(t, "tune.hcl", tuningHCL)
			var code int
			out, errOut := captureOutput(t, func() { code = run([]string{"tune", "submit", "-wait", "-address", addr, file}) })
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tc.code, errOut)
			}
			if n := gets.Load(); n != 3 {
				t.Errorf("GET the tuning %d times, want 3 (until it ended)", n)
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			var changes []string
			for _, l := range lines[1:] {
				if _, change, ok := strings.Cut(l, " "); ok && !strings.HasPrefix(l, "Error:") {
					changes = append(changes, change)
				}
			}
			if lines[0] != "Submitted tuning 01TUNE" || !slices.Equal(changes, tc.changes) {
				t.Errorf("stderr %q\nwant the changes %q", errOut, tc.changes)
			}
			for _, want := range tc.lines {
				if !hasLine(out, want) {
					t.Errorf("output lacks a line %q:\n%s", want, out)
				}
			}
			if !strings.Contains(errOut, tc.errMsg) {
				t.Errorf("stderr lacks %q:\n%s", tc.errMsg, errOut)
			}
		})
	}
}

func TestTuneSubmit_WaitRetriesUnavailableAndStopsOnRefusal(t *testing.T) {
	fastTunePolling(t)
	var gets, status atomic.Int32
	status.Store(503)
	srv, _ := recordingServer(t, func(w http.ResponseWriter, req request) {
		if req.Method == "POST" {
			writeJSONReply(w, 201, tuningRecord("running", nil))
			return
		}
		if gets.Add(1) < 3 {
			writeJSONReply(w, int(status.Load()), map[string]string{"error": "no leader", "code": "unavailable"})
			return
		}
		writeJSONReply(w, 200, tuningRecord("succeeded", nil))
	})
	file := writeJobFile(t, "tune.hcl", tuningHCL)
	var code int
	_, errOut := captureOutput(t, func() { code = run([]string{"tune", "submit", "-wait", "-address", srv.URL, file}) })
	if code != 0 || gets.Load() != 3 {
		t.Errorf("through two 503s: exit %d after %d reads, stderr %q; want 0 after 3", code, gets.Load(), errOut)
	}

	gets.Store(0)
	status.Store(403)
	_, errOut = captureOutput(t, func() { code = run([]string{"tune", "submit", "-wait", "-address", srv.URL, file}) })
	if code != 1 || gets.Load() != 1 || !strings.Contains(errOut, "following tuning 01TUNE: no leader") ||
		!strings.Contains(errOut, "kiln tune status 01TUNE") {
		t.Errorf("on a 403: exit %d after %d reads, stderr %q; want 1 after 1", code, gets.Load(), errOut)
	}
}

func TestTuneReads_Tables(t *testing.T) {
	stopped := trial(2, "01JOB2", "cancelled", nil, map[string]any{"max_depth": 6, "learning_rate": 0.05, "booster": "dart"})
	stopped["stopped_early"] = true
	stopped["stop_reason"] = "asha: valid_logloss 0.693147 at step 3 is not in the best 1 of the 3 trials that reached it"
	running := tuningRecord("running", map[string]any{
		"trials":     append(slices.Clone(twoTrials["trials"].([]any)), stopped),
		"best_trial": 0, "best_value": 0.91, "best_job": "01JOB0",
		"spec": map[string]any{
			"name": "xgb-search", "search": "random", "max_trials": 20, "parallelism": 2, "metric": "auc", "goal": "maximize",
			"early_stopping": map[string]any{"kind": "asha", "metric": "valid_logloss", "goal": "minimize"},
		},
	})
	srv, _ := recordingServer(t, func(w http.ResponseWriter, req request) {
		switch req.Path {
		case "/v1/tuning":
			writeJSONReply(w, 200, map[string]any{"items": []any{running, tuningRecord("failed", nil)}})
		case "/v1/tuning/01TUNE":
			writeJSONReply(w, 200, running)
		default:
			writeJSONReply(w, 404, map[string]string{"error": "no route " + req.Path, "code": "not_found"})
		}
	})
	cases := []struct {
		args  []string
		lines [][]string
	}{
		{[]string{"tune", "list"}, [][]string{
			{"ID", "NAME", "STATE", "TRIALS", "METRIC", "GOAL", "BEST", "CREATED"},
			{"01TUNE", "xgb-search", "running", "3/20", "auc", "maximize", "0.91", "2025-01-02T03:04:05Z"},
			{"01TUNE", "xgb-search", "failed", "0/4", "auc", "maximize", "-", "2025-01-02T03:04:05Z"},
		}},
		{[]string{"tune", "status", "01TUNE"}, [][]string{
			{"ID:", "01TUNE"},
			{"Name:", "xgb-search"},
			{"State:", "running"},
			{"Search:", "random,", "3", "of", "20", "trials,", "2", "at", "a", "time"},
			{"Metric:", "auc", "(maximize)"},
			{"Early", "stop:", "asha", "on", "valid_logloss", "(minimize)"},
			{"Best:", "trial", "0,", "auc", "0.91,", "job", "01JOB0"},
			{"Created:", "2025-01-02T03:04:05Z"},
			{"Finished:", "-"},
			{"INDEX", "JOB", "STATE", "PARAMS", "VALUE", "STOPPED"},
			{"0", "01JOB0", "succeeded", "learning_rate=0.0123457", "max_depth=3", "0.91", "-"},
			{"1", "01JOB1", "running", "learning_rate=0.2", "max_depth=6", "-", "-"},
			{"2", "01JOB2", "cancelled", "booster=dart", "learning_rate=0.05", "max_depth=6", "-", "asha:", "valid_logloss", "0.693147", "at", "step", "3"},
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
			// No register_best_as: no best version line.
			if strings.Contains(out, "Best version") {
				t.Errorf("output has a best version line:\n%s", out)
			}
		})
	}

	out := captureStdout(t, func() { run([]string{"tune", "status", "-address", srv.URL, "01TUNE", "-format", "json"}) })
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil || str(asMaps(got["trials"])[2]["stop_reason"]) != str(stopped["stop_reason"]) {
		t.Errorf("json output %q (%v): want the node's answer, whole stop reason and all", out, err)
	}
}

func TestShortStopReason(t *testing.T) {
	cases := []struct{ reason, want string }{
		{"", "yes"},
		{"median: auc 0.5 at step 4 is worse than the median 0.7 of 3 finished trials", "median: auc 0.5 at step 4"},
		{"stopped by hand", "stopped by hand"},
		{strings.Repeat("x", 60), strings.Repeat("x", 37) + "..."},
		{"tab\tand\nnewline", `tab\tand\nnewline`},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			if got := shortStopReason(tc.reason); got != tc.want {
				t.Errorf("shortStopReason(%q) = %q, want %q", tc.reason, got, tc.want)
			}
		})
	}
}

func TestTuneCommands_ServerErrorIsExit1WithMessage(t *testing.T) {
	srv, _ := recordingServer(t, func(w http.ResponseWriter, _ request) {
		writeJSONReply(w, 404, map[string]string{"error": `tuning "01NOPE" not found`, "code": "not_found"})
	})
	file := writeJobFile(t, "tune.json", `{"name": "x"}`)
	for _, args := range [][]string{
		{"tune", "submit", file},
		{"tune", "submit", "-wait", file},
		{"tune", "list"},
		{"tune", "status", "01NOPE"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var code int
			args := append(args[:len(args):len(args)], "-address", srv.URL)
			_, errOut := captureOutput(t, func() { code = run(args) })
			if code != 1 || !strings.Contains(errOut, `tuning "01NOPE" not found (not_found, HTTP 404)`) {
				t.Errorf("run(%v) = %d, stderr %q", args, code, errOut)
			}
		})
	}
}

func TestTuneSubmitHelp_ExampleParses(t *testing.T) {
	start := strings.Index(tuneSubmitHelp, `    tuning "`)
	end := strings.Index(tuneSubmitHelp[start+1:], "\n    }")
	if start < 0 || end < 0 {
		t.Fatal("the help has no tuning example")
	}
	spec, err := node.ParseTuningHCL([]byte(tuneSubmitHelp[start:start+1+end+6]), "help.hcl")
	if err != nil {
		t.Fatalf("the help's example does not parse: %v", err)
	}
	if spec.Name != "xgb-search" || spec.Job.Trainer.Algorithm != "gbdt" || len(spec.Space) != 2 ||
		spec.EarlyStopping == nil || spec.EarlyStopping.Kind != "asha" || spec.RegisterBestAs != "agaricus-best" {
		t.Errorf("the help's example reads as %+v", spec)
	}
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		t.Errorf("the help's example is not a spec the node takes: %v", err)
	}
}
