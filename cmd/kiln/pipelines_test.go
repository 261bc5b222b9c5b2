package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/node"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// fastPipelinePolling shortens run -wait's polling for a test.
func fastPipelinePolling(t *testing.T) {
	t.Helper()
	old := pipelinePollInterval
	pipelinePollInterval = 20 * time.Millisecond
	t.Cleanup(func() { pipelinePollInterval = old })
}

// pipelineAgent is testAgent with exec allowed for /bin/sh, so that
// command steps run: a one-node cluster on a loopback address of its own
// (127.0.200-249.x), returned once it is registered (jobs are placed on
// it) and stopped when the test ends.
func pipelineAgent(t *testing.T) string {
	t.Helper()
	var a *node.Agent
	for try := 0; ; try++ {
		cfg := node.DefaultConfig()
		cfg.NodeName = "cli-test"
		cfg.BindAddr = fmt.Sprintf("127.0.%d.%d", 200+rand.IntN(50), 1+rand.IntN(250))
		cfg.DataDir = t.TempDir()
		cfg.BootstrapExpect = 1
		cfg.ServerStabilization = 500 * time.Millisecond
		cfg.Exec = node.ExecConfig{Enabled: true, AllowedCommands: []string{"/bin/sh"}}
		var err error
		a, err = node.New(cfg, hclog.NewNullLogger())
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "address already in use") || try == 10 {
			t.Fatalf("start agent: %v", err)
		}
	}
	t.Cleanup(func() { a.Shutdown() })
	addr := "http://" + a.HTTPAddr()
	testutil.WaitFor(t, 30*time.Second, func() error {
		// A consistent read answers once this node leads and takes writes;
		// a job is placed once the node is registered.
		resp, err := http.Get(addr + "/v1/nodes?consistency=consistent")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"cli-test"`) {
			return fmt.Errorf("GET /v1/nodes = %d %s", resp.StatusCode, body)
		}
		return nil
	})
	return addr
}

// helloJSON is a pipeline of two command steps, the second after the
// first, reading its job's ID.
const helloJSON = `{
  "name": "hello",
  "steps": [
    {"name": "greet", "type": "command", "command": ["/bin/sh", "-c", "echo hello from greet"]},
    {"name": "after", "type": "command", "depends_on": ["greet"], "command": ["/bin/sh", "-c", "echo greet was job ${steps.greet.job_id}"]}
  ]
}`

// helloHCL is helloJSON in HCL, with a param.
const helloHCL = `pipeline "hello-hcl" {
  param "who" {
    default = "world"
  }
  step "greet" {
    type    = "command"
    command = ["/bin/sh", "-c", "echo hello ${params.who}"]
  }
  step "after" {
    type       = "command"
    depends_on = ["greet"]
    command    = ["/bin/sh", "-c", "echo greet was job ${steps.greet.job_id}"]
  }
}
`

// startedRun is the run ID of run's "Started run ID of pipeline" line.
func startedRun(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`Started run (\S+) of pipeline`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no run ID in %q", out)
	}
	return m[1]
}

// The pipelines noun against a real agent: apply from JSON and HCL, run
// and follow, status, graph, logs, runs, a failing step, a refused spec,
// and a step without a job.
func TestPipelines_AgainstAnAgent(t *testing.T) {
	fastPipelinePolling(t)
	kiln := kilnAt(t, pipelineAgent(t))
	jsonFile := writeTestFile(t, "hello.json", helloJSON)
	hclFile := writeTestFile(t, "hello.hcl", helloHCL)

	t.Run("apply", func(t *testing.T) {
		for _, tc := range []struct{ file, want string }{
			{jsonFile, "Applied pipeline hello (2 steps)"},
			{hclFile, "Applied pipeline hello-hcl (2 steps)"},
		} {
			if code, out, errOut := kiln("pipelines", "apply", tc.file); code != 0 || !strings.Contains(out, tc.want) {
				t.Fatalf("apply %s = %d %q %q; want %q", tc.file, code, out, errOut, tc.want)
			}
		}
		code, out, _ := kiln("pipelines", "list")
		if code != 0 || !regexp.MustCompile(`(?m)^hello\s+2\s+-`).MatchString(out) || !strings.Contains(out, "hello-hcl") {
			t.Errorf("list = %d %q; want both pipelines", code, out)
		}
		code, out, _ = kiln("pipelines", "get", "hello-hcl")
		if code != 0 || !strings.Contains(out, "who=world") || !regexp.MustCompile(`(?m)^after\s+command\s+greet\s+-\s+/bin/sh -c echo greet was job \$\{steps\.greet\.job_id\}`).MatchString(out) {
			t.Errorf("get = %d %q; want the param and the steps with their references", code, out)
		}
	})

	var runID string
	t.Run("run -wait succeeds", func(t *testing.T) {
		code, out, errOut := kiln("pipelines", "run", "-wait", "-param", "who=kiln", "hello-hcl")
		if code != 0 {
			t.Fatalf("run -wait = %d %q %q", code, out, errOut)
		}
		runID = startedRun(t, errOut)
		for _, want := range []*regexp.Regexp{
			regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d greet running \(attempt 1\)`),
			regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d greet succeeded in \S+`),
			regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d after running \(attempt 1\)`),
			regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d after succeeded`),
			regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d run ` + runID + ` succeeded in `),
		} {
			if !want.MatchString(errOut) {
				t.Errorf("transitions %q lack %s", errOut, want)
			}
		}
		if strings.Index(errOut, "greet succeeded") > strings.Index(errOut, "after running") {
			t.Errorf("transitions out of order: %q", errOut)
		}
		if !strings.Contains(out, "State:     succeeded") || !strings.Contains(out, "who=kiln") {
			t.Errorf("final status %q", out)
		}
	})
	if runID == "" {
		t.FailNow()
	}

	t.Run("status", func(t *testing.T) {
		code, out, _ := kiln("pipelines", "status", "hello-hcl", runID)
		if code != 0 || !strings.Contains(out, "Run:       "+runID) || !strings.Contains(out, "Trigger:   manual") {
			t.Fatalf("status = %d %q", code, out)
		}
		for _, step := range []string{"greet", "after"} {
			re := regexp.MustCompile(`(?m)^` + step + `\s+succeeded\s+1\s+\S+\s+.*job_id=\S+.*\s+-$`)
			if !re.MatchString(out) {
				t.Errorf("status %q has no succeeded line for %s", out, step)
			}
		}
		code, out, _ = kiln("pipelines", "runs", "hello-hcl")
		if code != 0 || !regexp.MustCompile(`(?m)^`+runID+`\s+succeeded\s+manual\s+\S+Z\s+\S+$`).MatchString(out) {
			t.Errorf("runs = %d %q", code, out)
		}
	})

	t.Run("logs", func(t *testing.T) {
		for _, tc := range []struct{ step, want string }{{"greet", `(?m)^hello kiln$`}, {"after", `(?m)^greet was job [0-9a-z]{26}$`}} {
			code, out, errOut := kiln("pipelines", "logs", "hello-hcl", runID, tc.step)
			if code != 0 || !regexp.MustCompile(tc.want).MatchString(out) {
				t.Errorf("logs %s = %d %q %q; want %s", tc.step, code, out, errOut, tc.want)
			}
		}
		if code, out, _ := kiln("pipelines", "logs", "-f", "hello-hcl", runID, "greet"); code != 0 || !strings.Contains(out, "\nhello kiln\n") {
			t.Errorf("logs -f of an ended step = %d %q", code, out)
		}
		if code, _, errOut := kiln("pipelines", "logs", "hello-hcl", runID, "nope"); code != 1 || !strings.Contains(errOut, "has no step nope (its steps: greet, after)") {
			t.Errorf("logs of a missing step = %d %q", code, errOut)
		}
	})

	t.Run("graph", func(t *testing.T) {
		code, out, _ := kiln("pipelines", "graph", "hello-hcl")
		if code != 0 || !strings.Contains(out, "Pipeline hello-hcl: 2 steps in 2 layers") ||
			!regexp.MustCompile(`(?m)^1\s+greet \(command\)\s*$`).MatchString(out) ||
			!regexp.MustCompile(`(?m)^2\s+after \(command\)\s+<- greet$`).MatchString(out) {
			t.Errorf("graph = %d %q", code, out)
		}
		code, out, _ = kiln("pipelines", "graph", "-format", "dot", "hello-hcl")
		for _, want := range []string{`digraph "hello-hcl" {`, `"greet" [label="greet\n(command)"];`, `"greet" -> "after";`} {
			if code != 0 || !strings.Contains(out, want) {
				t.Errorf("graph -format dot = %d %q; want %q", code, out, want)
			}
		}
		if code, _, errOut := kiln("pipelines", "graph", "-format", "svg", "hello-hcl"); code != 1 || !strings.Contains(errOut, "text, dot or json") {
			t.Errorf("graph -format svg = %d %q", code, errOut)
		}
	})

	t.Run("run without -wait, JSON pipeline", func(t *testing.T) {
		code, out, errOut := kiln("pipelines", "run", "hello")
		if code != 0 {
			t.Fatalf("run = %d %q %q", code, out, errOut)
		}
		id := startedRun(t, out)
		testutil.WaitFor(t, 30*time.Second, func() error {
			_, out, _ := kiln("pipelines", "status", "hello", id)
			if !strings.Contains(out, "State:     succeeded") {
				return fmt.Errorf("status %q", out)
			}
			return nil
		})
		if code, out, _ := kiln("pipelines", "logs", "hello", id, "after"); code != 0 || !strings.Contains(out, "\ngreet was job ") {
			t.Errorf("logs = %d %q", code, out)
		}
	})

	t.Run("a failing step exits 1", func(t *testing.T) {
		file := writeTestFile(t, "fail.json", `{"name": "fails", "steps": [
			{"name": "boom", "type": "command", "command": ["/bin/sh", "-c", "echo going down; exit 3"]},
			{"name": "never", "type": "command", "depends_on": ["boom"], "command": ["/bin/sh", "-c", "true"]}]}`)
		if code, out, errOut := kiln("pipelines", "apply", file); code != 0 {
			t.Fatalf("apply = %d %q %q", code, out, errOut)
		}
		code, out, errOut := kiln("pipelines", "run", "-wait", "fails")
		if code != 1 {
			t.Fatalf("run -wait = %d %q %q; want 1", code, out, errOut)
		}
		for _, want := range []string{"boom running (attempt 1)", "boom failed (attempt 1)", "never skipped", "run " + startedRun(t, errOut) + " failed", "Error: run ", "step boom failed: "} {
			if !strings.Contains(errOut, want) {
				t.Errorf("stderr %q lacks %q", errOut, want)
			}
		}
		if !regexp.MustCompile(`(?m)^never\s+skipped\s+0\s+`).MatchString(out) {
			t.Errorf("final status %q", out)
		}
		// Fixed, and retried from the failed step: it and what follows run.
		fixed := writeTestFile(t, "fixed.json", `{"name": "fails", "steps": [
			{"name": "boom", "type": "command", "command": ["/bin/sh", "-c", "true"]},
			{"name": "never", "type": "command", "depends_on": ["boom"], "command": ["/bin/sh", "-c", "true"]}]}`)
		if code, out, errOut := kiln("pipelines", "apply", fixed); code != 0 {
			t.Fatalf("apply = %d %q %q", code, out, errOut)
		}
		code, out, errOut = kiln("pipelines", "retry", "-wait", "-from", "boom", "fails", startedRun(t, errOut))
		if code != 0 || !regexp.MustCompile(`(?m)^never\s+succeeded\s+1\s+`).MatchString(out) {
			t.Errorf("retry -wait = %d %q %q; want the run from boom to succeed", code, out, errOut)
		}
	})

	t.Run("a refused spec prints the node's path", func(t *testing.T) {
		file := writeTestFile(t, "bad.json", `{"name": "bad", "steps": [
			{"name": "a", "type": "command", "command": ["/bin/true"]},
			{"name": "b", "type": "command", "depends_on": ["a", "nope"], "command": ["/bin/true"]}]}`)
		code, _, errOut := kiln("pipelines", "apply", file)
		if code != 1 || !strings.Contains(errOut, `steps.b.depends_on[1]: no step is named "nope"`) {
			t.Errorf("apply = %d %q; want the node's error naming the field", code, errOut)
		}
		file = writeTestFile(t, "bad.hcl", "pipeline \"bad\" {\n  step \"a\" {\n    type = \"command\"\n    image = \"x\"\n  }\n}\n")
		code, _, errOut = kiln("pipelines", "apply", file)
		if code != 1 || !strings.Contains(errOut, "bad.hcl:4,") || !strings.Contains(errOut, `"image"`) {
			t.Errorf("apply = %d %q; want the file's line and key", code, errOut)
		}
		if code, _, errOut := kiln("pipelines", "run", "-param", "x", "hello"); code != 1 || !strings.Contains(errOut, `-param "x": want NAME=VALUE`) {
			t.Errorf("run -param x = %d %q", code, errOut)
		}
		if code, _, errOut := kiln("pipelines", "run", "-param", "who=x", "hello"); code != 1 || !strings.Contains(errOut, "params.who") {
			t.Errorf("run with an undeclared param = %d %q; want the node's refusal", code, errOut)
		}
	})

	t.Run("a step without a job, cancel", func(t *testing.T) {
		file := writeTestFile(t, "wait.hcl", "pipeline \"waits\" {\n  step \"labels\" {\n    type = \"wait_for\"\n    wait_for {\n      dataset = \"labels\"\n    }\n  }\n}\n")
		if code, out, errOut := kiln("pipelines", "apply", file); code != 0 {
			t.Fatalf("apply = %d %q %q", code, out, errOut)
		}
		code, out, _ := kiln("pipelines", "run", "waits")
		if code != 0 {
			t.Fatalf("run = %d %q", code, out)
		}
		id := startedRun(t, out)
		if code, _, errOut := kiln("pipelines", "logs", "waits", id, "labels"); code != 1 || !strings.Contains(errOut, "step labels has no job (a wait_for step)") {
			t.Errorf("logs = %d %q", code, errOut)
		}
		if code, out, _ := kiln("pipelines", "cancel", "waits", id); code != 0 || !strings.Contains(out, id) {
			t.Errorf("cancel = %d %q", code, out)
		}
		testutil.WaitFor(t, 30*time.Second, func() error {
			_, out, _ := kiln("pipelines", "status", "waits", id)
			if !strings.Contains(out, "State:     cancelled") {
				return fmt.Errorf("status %q", out)
			}
			return nil
		})
	})
}

func TestPipelinesGraph_Layers(t *testing.T) {
	step := func(name string, deps ...string) structs.StepSpec {
		return structs.StepSpec{Name: name, Type: "command", DependsOn: deps}
	}
	cases := []struct {
		name  string
		steps []structs.StepSpec
		want  map[string]int
		order []string
	}{
		{"chain", []structs.StepSpec{step("c", "b"), step("b", "a"), step("a")},
			map[string]int{"a": 1, "b": 2, "c": 3}, []string{"a", "b", "c"}},
		{"diamond and a loner", []structs.StepSpec{step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c"), step("e")},
			map[string]int{"a": 1, "b": 2, "c": 2, "d": 3, "e": 1}, []string{"a", "e", "b", "c", "d"}},
		{"longest path wins", []structs.StepSpec{step("a"), step("b", "a"), step("c", "b"), step("d", "a", "c")},
			map[string]int{"a": 1, "b": 2, "c": 3, "d": 4}, []string{"a", "b", "c", "d"}},
		{"unknown dependency and a cycle count as nothing", []structs.StepSpec{step("a", "ghost"), step("b", "c"), step("c", "b")},
			map[string]int{"a": 1, "b": 2, "c": 1}, []string{"a", "c", "b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := pipelineGraph(&structs.PipelineSpec{Name: "p", Steps: tc.steps})
			layers, order := map[string]int{}, []string{}
			for _, s := range got {
				layers[s.Name] = s.Layer
				order = append(order, s.Name)
			}
			if !reflect.DeepEqual(layers, tc.want) || !reflect.DeepEqual(order, tc.order) {
				t.Errorf("layers %v order %v; want %v %v", layers, order, tc.want, tc.order)
			}
		})
	}
}

func TestPipelinesGraph_TextAndDOT(t *testing.T) {
	spec := helpPipeline(t)
	steps := pipelineGraph(spec)
	var text, dot bytes.Buffer
	writeGraphText(&text, "churn", steps)
	wantText := `Pipeline churn: 7 steps in 5 layers; the steps of a layer may run side by side.

1  ingest (ingest)
   labels (wait_for)
2  frame (features)  <- ingest
3  train (train)     <- frame
   report (command)  <- frame
4  eval (evaluate)   <- train
5  deploy (deploy)   <- eval
`
	if text.String() != wantText {
		t.Errorf("text\n%s\nwant\n%s", text.String(), wantText)
	}
	writeGraphDOT(&dot, "churn", steps)
	for _, want := range []string{
		"digraph \"churn\" {\n", `  "train" [label="train\n(train)"];`, `  "ingest" -> "frame";`, `  "frame" -> "report";`, `  "eval" -> "deploy";`,
	} {
		if !strings.Contains(dot.String(), want) {
			t.Errorf("dot\n%s\nlacks %q", dot.String(), want)
		}
	}
	if n := strings.Count(dot.String(), "->"); n != 5 {
		t.Errorf("dot has %d edges, want 5", n)
	}
}

// helpPipeline is the pipeline of apply's help.
func helpPipeline(t *testing.T) *structs.PipelineSpec {
	t.Helper()
	start := strings.Index(pipelinesApplyHelp, `    pipeline "`)
	end := strings.Index(pipelinesApplyHelp[start:], "\n    }\n")
	if start < 0 || end < 0 {
		t.Fatal("the help has no pipeline example")
	}
	spec, err := node.ParsePipelineHCL([]byte(pipelinesApplyHelp[start:start+end+6]), "help.hcl")
	if err != nil {
		t.Fatalf("the help's example does not parse: %v", err)
	}
	return spec
}

func TestPipelinesApplyHelp_ExampleParses(t *testing.T) {
	spec := helpPipeline(t)
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		t.Fatalf("the help's example does not validate: %v", err)
	}
	if spec.Name != "churn" || len(spec.Steps) != 7 || spec.Steps[2].Job.Params["learning_rate"] != "${params.lr}" {
		t.Errorf("the help's example reads as %+v", spec)
	}
}

func TestPipelinesRun_ParamTypes(t *testing.T) {
	got, err := runParams([]string{"lr=0.1", "n=-3", "big=1e3", "on=true", "off=false", "region=eu", "zip=01234", "nan=NaN", "hex=0x10", "null=null", "empty=", "eq=a=b"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"lr": 0.1, "n": -3.0, "big": 1000.0, "on": true, "off": false, "region": "eu", "zip": "01234",
		"nan": "NaN", "hex": "0x10", "null": "null", "empty": "", "eq": "a=b"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("params %#v\nwant %#v", got, want)
	}
	for _, bad := range [][]string{{"novalue"}, {"=1"}, {"a=1", "a=2"}} {
		if _, err := runParams(bad); err == nil {
			t.Errorf("runParams(%q) took it", bad)
		}
	}
}

// Each change of a step is written once, a start missed between two reads
// among them, and the run's end last.
func TestPipelinesRun_TransitionsWrittenOnce(t *testing.T) {
	at := func(sec int) time.Time { return time.Date(2026, 1, 2, 3, 4, sec, 0, time.UTC) }
	run := func(state string, steps ...structs.StepStatus) *runView {
		r := &runView{PipelineRun: structs.PipelineRun{ID: "r1", State: state, Steps: steps}, DurationSeconds: 9}
		if state == structs.PipelineFailed {
			r.FinishedAt = at(9)
		}
		return r
	}
	waiting := structs.StepStatus{Name: "a", State: structs.StepWaiting}
	running := structs.StepStatus{Name: "a", State: structs.StepRunning, Attempts: 1, StartedAt: at(1)}
	placed := running
	placed.Waiting = "no node has 2 free GPUs"
	failed := structs.StepStatus{Name: "a", State: structs.StepFailed, Attempts: 1, StartedAt: at(1), FinishedAt: at(2), Error: "exit code 3"}
	retried := structs.StepStatus{Name: "a", State: structs.StepRunning, Attempts: 2, StartedAt: at(3)}
	// b ran and succeeded between two reads.
	bDone := structs.StepStatus{Name: "b", State: structs.StepSucceeded, Attempts: 1, StartedAt: at(4), FinishedAt: at(6), Outputs: map[string]string{"job_id": "j", "exit_code": "0"}}
	aFailed := structs.StepStatus{Name: "a", State: structs.StepFailed, Attempts: 2, StartedAt: at(3), FinishedAt: at(7), Error: "exit code 3"}
	skipped := structs.StepStatus{Name: "c", State: structs.StepSkipped, FinishedAt: at(8), Error: "a dependency did not succeed"}

	var b bytes.Buffer
	see := stepTransitions(&b)
	for _, r := range []*runView{
		run("running", waiting),
		run("running", running),
		run("running", running),
		run("running", placed),
		run("running", failed),
		run("running", retried, bDone),
		run("running", retried, bDone),
		run(structs.PipelineFailed, aFailed, bDone, skipped),
		run(structs.PipelineFailed, aFailed, bDone, skipped),
	} {
		see(r)
	}
	clock := func(sec int) string { return at(sec).Local().Format("15:04:05") }
	want := []string{
		clock(1) + " a running (attempt 1)",
		"a running (attempt 1): no node has 2 free GPUs",
		clock(2) + " a failed (attempt 1) in 1s: exit code 3",
		clock(3) + " a running (attempt 2)",
		clock(4) + " b running (attempt 1)",
		clock(6) + " b succeeded in 2s: exit_code=0",
		clock(7) + " a failed (attempt 2) in 4s: exit code 3",
		clock(8) + " c skipped: a dependency did not succeed",
		clock(9) + " run r1 failed in 9s",
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("lines\n%s\nwant %d", b.String(), len(want))
	}
	for i, w := range want {
		if !strings.HasSuffix(lines[i], w) {
			t.Errorf("line %d = %q, want %q", i, lines[i], w)
		}
	}
}

func TestPipelinesApprove_PostsTheDecision(t *testing.T) {
	srv, got := recordingServer(t, func(w http.ResponseWriter, _ request) {
		writeJSONReply(w, 200, map[string]any{"id": "01RUN", "state": "running"})
	})
	for _, tc := range []struct {
		args []string
		body string
		says string
	}{
		{[]string{"nightly", "01RUN", "signoff"}, `{"approve":true,"comment":""}`, "Approved step signoff of run 01RUN"},
		{[]string{"-reject", "-comment", "not now", "nightly", "01RUN", "signoff"}, `{"approve":false,"comment":"not now"}`, "Rejected step signoff"},
	} {
		before := len(got())
		var code int
		out, errOut := captureOutput(t, func() {
			code = run(append([]string{"pipelines", "approve", "-address", srv.URL}, tc.args...))
		})
		reqs := got()[before:]
		if code != 0 || len(reqs) != 1 || reqs[0].Method != "POST" || reqs[0].Path != "/v1/pipelines/nightly/runs/01RUN/steps/signoff/approve" ||
			string(reqs[0].Body) != tc.body || !strings.Contains(out, tc.says) {
			t.Errorf("%v: exit %d, requests %+v, stdout %q, stderr %q", tc.args, code, reqs, out, errOut)
		}
	}
}
