package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kilnml/kiln/node"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// The pipelines noun: declare pipelines of steps from an HCL or JSON file,
// see their graph, run them and follow their runs step by step, read a
// step's job logs (DESIGN.md §8).

const pipelinesConnUsage = `
  Every pipelines command takes -address, -token (or KILN_TOKEN), -format
  (table or json: json prints the node's answer), and the HTTPS flags
  -ca-cert, -client-cert, -client-key.`

// pipelinePollInterval is how often run -wait reads the run again. Tests
// shorten it.
var pipelinePollInterval = 500 * time.Millisecond

// Widths of table cells; get, status and -format json have all of it.
const (
	pipelineCellWidth   = 60
	pipelineOutputWidth = 32 // one output's value
)

func pipelinesCommands() map[string]*command {
	return map[string]*command{
		"pipelines":         groupCommand("Declare pipelines of steps, run them, follow their runs", "kiln pipelines <apply|list|get|graph|delete|run|runs|status|logs|cancel|retry|approve>"),
		"pipelines apply":   pipelinesApplyCommand(),
		"pipelines list":    pipelinesListCommand(),
		"pipelines get":     pipelinesGetCommand(),
		"pipelines graph":   pipelinesGraphCommand(),
		"pipelines delete":  pipelinesDeleteCommand(),
		"pipelines run":     pipelinesRunCommand(),
		"pipelines runs":    pipelinesRunsCommand(),
		"pipelines status":  pipelinesStatusCommand(),
		"pipelines logs":    pipelinesLogsCommand(),
		"pipelines cancel":  pipelinesCancelCommand(),
		"pipelines retry":   pipelinesRetryCommand(),
		"pipelines approve": pipelinesApproveCommand(),
	}
}

const pipelinesApplyHelp = `Usage: kiln pipelines apply [flags] FILE

  Creates or replaces the pipeline FILE declares. FILE is the pipeline's
  JSON as the API takes it (with its "name") when its name ends in .json,
  else HCL:

    pipeline "churn" {                # the label is the name
      schedule     = "0 3 * * *"      # cron or an interval ("1h"); optional
      catch_up     = "latest"         # runs for ticks missed: latest, none, all
      max_parallel = 3                # steps of one run at once (default 4)
      param "lr" {                    # ${params.lr}; a run may override it
        default = 0.1
      }
      step "ingest" {
        type   = "ingest"             # runs a source
        source = "txns"
      }
      step "frame" {
        type       = "features"       # a point-in-time frame of a service
        depends_on = ["ingest"]
        features {
          service     = "churn"
          entity_rows = "${steps.ingest.dataset}"
          output      = "churn-frame"
        }
      }
      step "train" {
        type       = "train"
        depends_on = ["frame"]
        retries    = 2                # attempts after the first
        timeout    = "1h"             # per attempt
        cache      = true             # reuse the outputs of the same inputs
        job {                         # a job file's job, without its label
          trainer {
            kind      = "builtin"
            algorithm = "gbdt"
          }
          dataset     = "${steps.frame.dataset}"
          target      = "churned"
          params      = { learning_rate = "${params.lr}" }
          register_as = "churn"
        }
      }
      step "eval" {
        type       = "evaluate"       # scores a version; the gate must hold
        depends_on = ["train"]
        evaluate {
          model   = "churn"
          version = "${steps.train.model_version}"
          dataset = "holdout:3"
          target  = "churned"
          gate    = "metrics.auc >= 0.85 && metrics.auc >= champion.auc - 0.01"
        }
      }
      step "deploy" {
        type       = "deploy"         # a canary, watched, then promoted
        depends_on = ["eval"]         # or rolled back
        deploy {
          model          = "churn"
          version        = "${steps.train.model_version}"
          canary         = 10         # percent of traffic while watched
          watch          = "10m"
          max_error_rate = 0.01
          max_p99_ms     = 50
        }
      }
      step "report" {
        type       = "command"        # a process, on a node whose exec allows it
        depends_on = ["frame"]
        command    = ["/usr/bin/report", "${steps.frame.dataset}"]
        env        = { X = "1" }
      }
      step "labels" {
        type = "wait_for"             # a new version of a dataset, or an alert
        wait_for {
          dataset = "labels"
        }
      }
    }

  An approval step waits for a person: type = "approval" with an
  approval { message = "promote churn v${steps.train.model_version}?" }
  block; kiln pipelines approve (or -reject) decides it.

  A tune step takes a tuning block: a tuning file's tuning without its
  label. ${params.NAME} and ${steps.STEP.OUTPUT} are references, kept as
  written and resolved when the step starts; a step may refer to the steps
  it depends on (directly or not). Outputs: ingest run, dataset; features
  dataset; train job_id, run_id, model, model_version, dataset,
  metrics.NAME; tune tuning_id, best_job, model, model_version,
  metrics.NAME; evaluate passed, metrics.NAME; deploy model, version,
  promoted; command job_id, exit_code; wait_for dataset; approval
  approved_by.

  An unknown field is refused here, with the file's line; the node checks
  the rest (types, the graph, references) and names the field at fault,
  as steps.train.depends_on[1]. An HCL block holds one argument per line.` + pipelinesConnUsage

func pipelinesApplyCommand() *command {
	return &command{synopsis: "Create or replace a pipeline from an HCL or JSON file", help: pipelinesApplyHelp, run: func(args []string) int {
		fs, cf := newClientFlags("pipelines apply")
		c, err := connect(fs, cf, args, 1, pipelinesApplyHelp)
		if err != nil {
			return fail(err)
		}
		name, body, err := readPipelineFile(fs.Arg(0))
		if err != nil {
			return fail(err)
		}
		var p struct {
			Spec structs.PipelineSpec `json:"spec"`
		}
		var raw json.RawMessage
		if err := c.do("PUT", pipelinePath(name, ""), body, &raw); err != nil {
			return fail(fmt.Errorf("pipeline %s: %w", name, err))
		}
		if cf.format == "json" {
			printJSON(raw)
			return 0
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return fail(err)
		}
		fmt.Printf("Applied pipeline %s (%s)\n", name, plural(len(p.Spec.Steps), "step", "steps"))
		return 0
	}}
}

// readPipelineFile reads a pipeline file as the name and body of its PUT:
// the HCL's spec, or the JSON as written, once read here for its name and
// for the line of an unknown field.
func readPipelineFile(path string) (string, any, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return "", nil, err
	}
	spec, err := node.ParsePipelineHCL(src, path)
	if err != nil {
		return "", nil, err
	}
	if strings.HasSuffix(path, ".json") {
		return spec.Name, json.RawMessage(src), nil
	}
	return spec.Name, spec, nil
}

// pipelinePath is the path of a pipeline, or of something under it.
func pipelinePath(name, suffix string) string {
	return "/v1/pipelines/" + url.PathEscape(name) + suffix
}

// runPath is the path of a run, or of one of its actions.
func runPath(name, id, suffix string) string {
	return pipelinePath(name, "/runs/"+url.PathEscape(id)+suffix)
}

// plural counts things: "1 step", "2 steps".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

func pipelinesListCommand() *command {
	usage := "Usage: kiln pipelines list [flags]\n\n  Lists pipelines: their steps, schedule and when they were last applied." + pipelinesConnUsage
	return &command{synopsis: "List pipelines", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("pipelines list")
		c, err := connect(fs, cf, args, 0, usage)
		if err != nil {
			return fail(err)
		}
		return printList(c, cf, "/v1/pipelines", []string{"NAME", "STEPS", "SCHEDULE", "UPDATED"}, func(p map[string]any) []string {
			spec, _ := p["spec"].(map[string]any)
			steps, _ := spec["steps"].([]any)
			return []string{str(spec["name"]), strconv.Itoa(len(steps)), dash(str(spec["schedule"])), jobTime(p["updated_at"])}
		})
	}}
}

// pipelineView is a pipeline as GET /v1/pipelines/NAME answers it.
type pipelineView struct {
	Spec      structs.PipelineSpec `json:"spec"`
	AppliedBy string               `json:"applied_by"`
	LastTick  time.Time            `json:"last_tick"`
	UpdatedAt time.Time            `json:"updated_at"`
}

// getPipeline reads a pipeline, typed and as the node's JSON.
func getPipeline(c *client, name string) (*pipelineView, json.RawMessage, error) {
	var raw json.RawMessage
	if err := c.do("GET", pipelinePath(name, ""), nil, &raw); err != nil {
		return nil, nil, err
	}
	var p pipelineView
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, nil, fmt.Errorf("pipeline %s: %w", name, err)
	}
	return &p, raw, nil
}

func pipelinesGetCommand() *command {
	usage := `Usage: kiln pipelines get [flags] NAME

  Shows a pipeline: its schedule and params, then its steps, each with its
  type, the steps it depends on, its options and what it does.` + pipelinesConnUsage
	return &command{synopsis: "Show a pipeline", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("pipelines get")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		p, raw, err := getPipeline(c, fs.Arg(0))
		if err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(raw)
			return 0
		}
		writePipeline(os.Stdout, p)
		return 0
	}}
}

// writePipeline writes a pipeline as lines of fields, then a table of its
// steps.
func writePipeline(w io.Writer, p *pipelineView) {
	s := &p.Spec
	schedule := "-"
	if s.Schedule != "" {
		schedule = s.Schedule + " (catch up: " + s.CatchUp + ")"
		if !p.LastTick.IsZero() {
			schedule += ", last tick " + p.LastTick.UTC().Format(time.RFC3339)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Name:\t%s\n", s.Name)
	if s.Description != "" {
		fmt.Fprintf(tw, "Description:\t%s\n", tableCell(s.Description))
	}
	fmt.Fprintf(tw, "Schedule:\t%s\n", schedule)
	fmt.Fprintf(tw, "Max parallel:\t%d\n", s.MaxParallel)
	fmt.Fprintf(tw, "Params:\t%s\n", dash(paramsLine(s.Params)))
	fmt.Fprintf(tw, "Applied by:\t%s\n", dash(p.AppliedBy))
	fmt.Fprintf(tw, "Updated:\t%s\n", p.UpdatedAt.UTC().Format(time.RFC3339))
	tw.Flush()
	fmt.Fprintln(w)
	rows := make([][]string, 0, len(s.Steps))
	for i := range s.Steps {
		st := &s.Steps[i]
		rows = append(rows, []string{st.Name, st.Type, dash(strings.Join(st.DependsOn, ",")), dash(stepOptions(st)), cutText(stepDetail(st), pipelineCellWidth)})
	}
	writeTable(w, []string{"STEP", "TYPE", "DEPENDS_ON", "OPTIONS", "DETAIL"}, rows)
}

// paramsLine renders params as k=v, by name.
func paramsLine(params map[string]any) string {
	parts := make([]string, 0, len(params))
	for _, k := range slices.Sorted(maps.Keys(params)) {
		v := params[k]
		if v == nil {
			v = "null"
		}
		parts = append(parts, k+"="+str(v))
	}
	return strings.Join(parts, ", ")
}

// stepOptions renders a step's retries, timeout and cache.
func stepOptions(s *structs.StepSpec) string {
	var parts []string
	if s.Retries > 0 {
		parts = append(parts, "retries="+strconv.Itoa(s.Retries))
	}
	if s.Timeout != "" {
		parts = append(parts, "timeout="+s.Timeout)
	}
	if s.Cache {
		parts = append(parts, "cache")
	}
	return strings.Join(parts, " ")
}

// stepDetail says in a line what a step does.
func stepDetail(s *structs.StepSpec) string {
	switch {
	case s.Source != "":
		return "source " + s.Source
	case s.Features != nil:
		return fmt.Sprintf("service %s for %s -> %s", s.Features.Service, s.Features.EntityRows, dash(s.Features.Output))
	case s.Job != nil:
		return jobDetail(s.Job)
	case s.Tuning != nil:
		t := s.Tuning
		d := fmt.Sprintf("%s search of %s over %s", dash(t.Search), dash(t.Metric), jobDetail(&t.Job))
		if t.RegisterBestAs != "" {
			d += ", best as " + t.RegisterBestAs
		}
		return d
	case s.Evaluate != nil:
		e := s.Evaluate
		d := fmt.Sprintf("%s:%s on %s", e.Model, e.Version, e.Dataset)
		if e.Gate != "" {
			d += ", gate " + e.Gate
		}
		return d
	case s.Deploy != nil:
		d := s.Deploy
		return fmt.Sprintf("%s:%s, canary %d%% watched %s", d.Model, d.Version, d.Canary, d.Watch)
	case len(s.Command) > 0:
		return strings.Join(s.Command, " ")
	case s.WaitFor != nil:
		if s.WaitFor.Alert != "" {
			return "alert " + s.WaitFor.Alert
		}
		return "dataset " + s.WaitFor.Dataset
	}
	return ""
}

// jobDetail says what a step's job trains on.
func jobDetail(j *structs.JobSpec) string {
	d := j.Trainer.Kind
	if j.Trainer.Algorithm != "" {
		d += " " + j.Trainer.Algorithm
	}
	switch {
	case j.Dataset != "":
		d += " on " + j.Dataset
	case j.FeatureFrame != nil:
		d += " on a frame of " + j.FeatureFrame.Service
	}
	if j.RegisterAs != "" {
		d += " -> " + j.RegisterAs
	}
	return d
}

func pipelinesDeleteCommand() *command {
	return deleteCommand("pipelines delete", "Delete a pipeline",
		"Usage: kiln pipelines delete [flags] NAME\n\n  Deletes a pipeline: its schedule stops; runs already started go on."+pipelinesConnUsage,
		func(name string) string { return pipelinePath(name, "") }, "pipeline")
}

// deleteCommand is a command that DELETEs the path of its one argument and
// says so: "Deleted <what> NAME".
func deleteCommand(name, synopsis, usage string, path func(string) string, what string) *command {
	return &command{synopsis: synopsis, help: usage, run: func(args []string) int {
		fs, cf := newClientFlags(name)
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		if err := c.do("DELETE", path(fs.Arg(0)), nil, nil); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(map[string]any{"deleted": fs.Arg(0)})
			return 0
		}
		fmt.Printf("Deleted %s %s\n", what, fs.Arg(0))
		return 0
	}}
}

// graphStep is a step of a pipeline's graph, with its layer: 1 for a step
// that depends on none, else one more than its dependencies' highest.
type graphStep struct {
	Name      string   `json:"name"`
	Type      string   `json:"type"`
	DependsOn []string `json:"depends_on"`
	Layer     int      `json:"layer"`
}

// pipelineGraph lays a pipeline's steps out in layers, in the order of
// their layers and, within one, of the spec. A dependency the spec lacks
// (or a cycle, which the node refuses) counts as nothing.
func pipelineGraph(spec *structs.PipelineSpec) []graphStep {
	index := make(map[string]int, len(spec.Steps))
	for i, s := range spec.Steps {
		index[s.Name] = i
	}
	layer := make([]int, len(spec.Steps)) // 0: not known yet, -1: being found
	var find func(i int) int
	find = func(i int) int {
		switch layer[i] {
		case -1:
			return 0
		case 0:
			layer[i] = -1
			l := 1
			for _, d := range spec.Steps[i].DependsOn {
				if j, ok := index[d]; ok {
					l = max(l, find(j)+1)
				}
			}
			layer[i] = l
		}
		return layer[i]
	}
	out := make([]graphStep, len(spec.Steps))
	for i, s := range spec.Steps {
		deps := s.DependsOn
		if deps == nil {
			deps = []string{}
		}
		out[i] = graphStep{Name: s.Name, Type: s.Type, DependsOn: deps, Layer: find(i)}
	}
	slices.SortStableFunc(out, func(a, b graphStep) int { return a.Layer - b.Layer })
	return out
}

// writeGraphText writes the graph one step a line, by layer: the layer's
// number on its first step, then the step, its type and what it follows.
func writeGraphText(w io.Writer, name string, steps []graphStep) {
	layers := 0
	if len(steps) > 0 {
		layers = steps[len(steps)-1].Layer
	}
	fmt.Fprintf(w, "Pipeline %s: %s in %s; the steps of a layer may run side by side.\n\n", name,
		plural(len(steps), "step", "steps"), plural(layers, "layer", "layers"))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	last := 0
	for _, s := range steps {
		num := ""
		if s.Layer != last {
			num, last = strconv.Itoa(s.Layer), s.Layer
		}
		fmt.Fprintf(tw, "%s\t%s (%s)", num, s.Name, s.Type)
		if len(s.DependsOn) > 0 {
			fmt.Fprintf(tw, "\t<- %s", strings.Join(s.DependsOn, ", "))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

// writeGraphDOT writes the graph in Graphviz's DOT language, each node
// labelled with its step's name and type.
func writeGraphDOT(w io.Writer, name string, steps []graphStep) {
	fmt.Fprintf(w, "digraph %s {\n  rankdir=\"LR\";\n  node [shape=\"box\"];\n", dotQuote(name))
	for _, s := range steps {
		fmt.Fprintf(w, "  %s [label=%s];\n", dotQuote(s.Name), dotQuote(s.Name+"\n("+s.Type+")"))
	}
	for _, s := range steps {
		for _, d := range s.DependsOn {
			fmt.Fprintf(w, "  %s -> %s;\n", dotQuote(d), dotQuote(s.Name))
		}
	}
	fmt.Fprintln(w, "}")
}

// dotQuote is a DOT quoted string; a newline becomes DOT's \n, which
// breaks a label's line.
func dotQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

func pipelinesGraphCommand() *command {
	usage := `Usage: kiln pipelines graph [flags] NAME

  Shows a pipeline's steps as a graph. As text (the default), one step a
  line by layer: a step is in the layer after the highest of those it
  depends on, listed after <-; the steps of one layer may run side by
  side. As DOT, for Graphviz:

    kiln pipelines graph -format dot churn | dot -Tsvg > churn.svg

  -format FORMAT   text, dot or json (default text)

  Every pipelines command also takes -address, -token (or KILN_TOKEN) and
  the HTTPS flags -ca-cert, -client-cert, -client-key.`
	return &command{synopsis: "Show a pipeline's graph of steps, as text or DOT", help: usage, run: func(args []string) int {
		// -format takes dot here, which the other commands refuse: the
		// flags are checked here rather than by connect.
		fs, cf := newClientFlags("pipelines graph")
		fs.SetOutput(io.Discard)
		if err := parseInterspersed(fs, args); err != nil {
			return fail(fmt.Errorf("%v\n%s", err, usage))
		}
		format := cf.format
		switch format {
		case "table", "text":
			format = "text"
		case "dot", "json":
		default:
			return fail(fmt.Errorf("-format must be text, dot or json, not %q", cf.format))
		}
		if fs.NArg() != 1 {
			return fail(fmt.Errorf("expected 1 argument(s), got %d\n%s", fs.NArg(), usage))
		}
		c, err := newClient(cf.address, cf)
		if err != nil {
			return fail(err)
		}
		p, _, err := getPipeline(c, fs.Arg(0))
		if err != nil {
			return fail(err)
		}
		steps := pipelineGraph(&p.Spec)
		switch format {
		case "dot":
			writeGraphDOT(os.Stdout, p.Spec.Name, steps)
		case "json":
			printJSON(map[string]any{"pipeline": p.Spec.Name, "steps": steps})
		default:
			writeGraphText(os.Stdout, p.Spec.Name, steps)
		}
		return 0
	}}
}

// paramFlags collects -param k=v flags, in order.
type paramFlags []string

func (p *paramFlags) String() string     { return strings.Join(*p, " ") }
func (p *paramFlags) Set(v string) error { *p = append(*p, v); return nil }

// runParams reads -param k=v flags: a value JSON reads as a number or a
// boolean is sent as one (lr=0.1, dry_run=true), any other as a string
// (region=eu, zip=01234).
func runParams(given []string) (map[string]any, error) {
	params := map[string]any{}
	for _, kv := range given {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-param %q: want NAME=VALUE", kv)
		}
		if _, dup := params[k]; dup {
			return nil, fmt.Errorf("-param %s is given twice", k)
		}
		params[k] = paramValue(v)
	}
	return params, nil
}

// paramValue is a -param's value: a JSON number or boolean as such,
// anything else as the string it is.
func paramValue(s string) any {
	var v any
	if json.Unmarshal([]byte(s), &v) == nil {
		switch v.(type) {
		case float64, bool:
			return v
		}
	}
	return s
}

// runView is a run as GET /v1/pipelines/NAME/runs/ID answers it.
type runView struct {
	structs.PipelineRun
	DurationSeconds float64 `json:"duration_seconds"`
}

// decodeRun reads a decoded run into a runView.
func decodeRun(m map[string]any) (*runView, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var r runView
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("reading the run: %w", err)
	}
	return &r, nil
}

const pipelinesRunHelp = `Usage: kiln pipelines run [flags] NAME

  Starts a run of a pipeline and prints its ID. Its steps start as those
  they depend on succeed; kiln pipelines status NAME ID shows where they
  stand.

  -param NAME=VALUE   a param for this run, over the pipeline's default;
                      repeat it for several. A number or true/false is
                      sent as one, anything else as a string.
  -wait               follow the run until it ends, printing each step's
                      transitions on stderr (12:00:01 train running
                      (attempt 1)), then its status. The exit code is 0
                      when the run succeeded, 1 otherwise. Ctrl-C stops
                      following, not the run.` + pipelinesConnUsage

func pipelinesRunCommand() *command {
	return &command{synopsis: "Start a run of a pipeline, and follow it", help: pipelinesRunHelp, run: func(args []string) int {
		fs, cf := newClientFlags("pipelines run")
		var given paramFlags
		fs.Var(&given, "param", "")
		wait := fs.Bool("wait", false, "")
		c, err := connect(fs, cf, args, 1, pipelinesRunHelp)
		if err != nil {
			return fail(err)
		}
		params, err := runParams(given)
		if err != nil {
			return fail(fmt.Errorf("%v\n%s", err, pipelinesRunHelp))
		}
		name := fs.Arg(0)
		var run map[string]any
		if err := c.do("POST", pipelinePath(name, "/runs"), map[string]any{"params": params}, &run); err != nil {
			return fail(err)
		}
		return reportRun(c, cf, name, run, *wait)
	}}
}

const pipelinesRetryHelp = `Usage: kiln pipelines retry [flags] -from STEP NAME RUN_ID

  Runs an ended run again from one of its steps, as a new run with the same
  params: STEP and every step after it run again; the steps before it that
  succeeded are carried over as cached, with their outputs.

  -from STEP   the step to run again from
  -wait        follow the new run to its end (exit 0 if it succeeded)` + pipelinesConnUsage

func pipelinesRetryCommand() *command {
	return &command{synopsis: "Run an ended run again from a step", help: pipelinesRetryHelp, run: func(args []string) int {
		fs, cf := newClientFlags("pipelines retry")
		from := fs.String("from", "", "")
		wait := fs.Bool("wait", false, "")
		c, err := connect(fs, cf, args, 2, pipelinesRetryHelp)
		if err != nil {
			return fail(err)
		}
		if *from == "" {
			return fail(fmt.Errorf("-from STEP is required\n%s", pipelinesRetryHelp))
		}
		name := fs.Arg(0)
		var run map[string]any
		if err := c.do("POST", runPath(name, fs.Arg(1), "/retry"), map[string]any{"from": *from}, &run); err != nil {
			return fail(err)
		}
		return reportRun(c, cf, name, run, *wait)
	}}
}

// reportRun prints a run just started, or follows it with -wait.
func reportRun(c *client, cf *clientFlags, name string, run map[string]any, wait bool) int {
	id := str(run["id"])
	if !wait {
		if cf.format == "json" {
			printJSON(run)
		} else {
			fmt.Printf("Started run %s of pipeline %s\n", id, name)
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "Started run %s of pipeline %s\n", id, name)
	see := stepTransitions(os.Stderr)
	final, err := follow(c, "pipeline run", id, runPath(name, id, ""), "kiln pipelines status "+name+" "+id,
		pipelinePollInterval, run, runTerminal, func(m map[string]any) {
			// A read that does not decode shows nothing; the final one
			// reports it.
			if r, err := decodeRun(m); err == nil {
				see(r)
			}
		})
	if err != nil {
		return fail(err)
	}
	r, err := decodeRun(final)
	if err != nil {
		return fail(err)
	}
	if cf.format == "json" {
		printJSON(final)
	} else {
		writeRunStatus(os.Stdout, r)
	}
	return runExit(r)
}

// runTerminal reports whether a decoded run has ended.
func runTerminal(m map[string]any) bool {
	return (&structs.PipelineRun{State: str(m["state"])}).Terminal()
}

// runExit is 0 for a run that succeeded; otherwise it prints why the run
// ended (the steps that failed, with their errors) and returns 1.
func runExit(r *runView) int {
	if r.State == structs.PipelineSucceeded {
		return 0
	}
	msg := fmt.Sprintf("run %s of pipeline %s %s", r.ID, r.Pipeline, r.State)
	var failed []string
	for _, s := range r.Steps {
		if s.State == structs.StepFailed {
			f := "step " + s.Name + " failed"
			if s.Error != "" {
				f += ": " + s.Error
			}
			failed = append(failed, f)
		}
	}
	if len(failed) > 0 {
		msg += ":\n  " + strings.Join(failed, "\n  ")
	}
	return fail(errors.New(msg))
}

// stepTransitions returns a function that writes, for each read of a run,
// the step transitions since the last read, one timed line each: a step's
// start (one per attempt, written even when the read comes after the
// step ended), a change of why it waits, and its end. A step's line is
// timed by the step's own start or end where the run has it.
func stepTransitions(w io.Writer) func(*runView) {
	type seen struct {
		attempt int    // the last attempt whose start was written
		line    string // the last line written
	}
	steps := map[string]*seen{}
	cancelSeen, endSeen := false, false
	write := func(at time.Time, line string) {
		if at.IsZero() {
			at = time.Now()
		}
		fmt.Fprintf(w, "%s %s\n", at.Local().Format("15:04:05"), line)
	}
	return func(r *runView) {
		for _, s := range r.Steps {
			st := steps[s.Name]
			if st == nil {
				st = &seen{}
				steps[s.Name] = st
			}
			if s.State == structs.StepWaiting {
				continue
			}
			if s.Attempts > st.attempt && !s.StartedAt.IsZero() && s.State != structs.StepCached && s.State != structs.StepSkipped {
				st.attempt = s.Attempts
				st.line = stepRunningLine(&s)
				write(s.StartedAt, st.line)
			}
			line, at := stepStateLine(&s), s.FinishedAt
			if s.State == structs.StepRunning {
				line, at = stepRunningLine(&s), time.Time{}
			}
			if line != st.line {
				st.line = line
				write(at, line)
			}
		}
		if r.CancelRequested && !cancelSeen && !r.Terminal() {
			cancelSeen = true
			write(time.Time{}, "run "+r.ID+": cancel requested")
		}
		if r.Terminal() && !endSeen {
			endSeen = true
			write(r.FinishedAt, fmt.Sprintf("run %s %s in %s", r.ID, r.State, secondsText(r.DurationSeconds)))
		}
	}
}

// stepRunningLine says a running step's attempt, its node and what it
// waits for.
func stepRunningLine(s *structs.StepStatus) string {
	line := fmt.Sprintf("%s running (attempt %d)", s.Name, s.Attempts)
	if s.NodeName != "" {
		line += " on " + s.NodeName
	}
	if s.Waiting != "" {
		line += ": " + s.Waiting // the job's reason, as "waiting for its first placement"
	}
	return line
}

// stepStateLine says how a step that is not running stands: how long it
// ran, its outputs (its job aside, which status shows) and its error.
func stepStateLine(s *structs.StepStatus) string {
	line := s.Name + " " + s.State
	switch s.State {
	case structs.StepCached:
		line += " (outputs of an earlier run of the same inputs)"
	case structs.StepFailed:
		if s.Attempts > 0 {
			line += fmt.Sprintf(" (attempt %d)", s.Attempts)
		}
	}
	if d := stepDuration(s); d != "-" && s.State != structs.StepCached {
		line += " in " + d
	}
	outputs := maps.Clone(s.Outputs)
	delete(outputs, "job_id")
	if o := outputsLine(outputs); o != "" && (s.State == structs.StepSucceeded || s.State == structs.StepCached) {
		line += ": " + o
	}
	if s.Error != "" {
		line += ": " + tableCell(s.Error)
	}
	return line
}

// stepDuration is how long a step ran, or has run so far; "-" before it
// starts.
func stepDuration(s *structs.StepStatus) string {
	if s.StartedAt.IsZero() {
		return "-"
	}
	end := s.FinishedAt
	if end.IsZero() || end.Before(s.StartedAt) {
		if s.State != structs.StepRunning {
			return "-"
		}
		end = time.Now()
	}
	return secondsText(end.Sub(s.StartedAt).Seconds())
}

// secondsText renders a duration in seconds to a precision that fits it.
func secondsText(s float64) string {
	return jobDuration(map[string]any{"duration_seconds": s})
}

// outputsLine renders outputs as k=v by name, each value cut to fit a
// table.
func outputsLine(outputs map[string]string) string {
	parts := make([]string, 0, len(outputs))
	for _, k := range slices.Sorted(maps.Keys(outputs)) {
		parts = append(parts, k+"="+cutText(outputs[k], pipelineOutputWidth))
	}
	return strings.Join(parts, ", ")
}

// getPipelineRun reads a run.
func getPipelineRun(c *client, name, id string) (*runView, map[string]any, error) {
	var m map[string]any
	if err := c.do("GET", runPath(name, id, ""), nil, &m); err != nil {
		return nil, nil, err
	}
	r, err := decodeRun(m)
	return r, m, err
}

func pipelinesStatusCommand() *command {
	usage := `Usage: kiln pipelines status [flags] NAME RUN_ID

  Shows a run: its state, trigger, params and duration, then each step's
  state, attempts, duration, outputs and error.` + pipelinesConnUsage
	return &command{synopsis: "Show a run of a pipeline, step by step", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("pipelines status")
		c, err := connect(fs, cf, args, 2, usage)
		if err != nil {
			return fail(err)
		}
		r, m, err := getPipelineRun(c, fs.Arg(0), fs.Arg(1))
		if err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(m)
			return 0
		}
		writeRunStatus(os.Stdout, r)
		return 0
	}}
}

// writeRunStatus writes a run as lines of fields, then a table of its
// steps.
func writeRunStatus(w io.Writer, r *runView) {
	state := r.State
	if r.CancelRequested && !r.Terminal() {
		state += ", cancel requested"
	}
	trigger := r.Trigger
	if !r.Tick.IsZero() {
		trigger += " (tick " + r.Tick.UTC().Format(time.RFC3339) + ")"
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Run:\t%s\n", r.ID)
	fmt.Fprintf(tw, "Pipeline:\t%s\n", r.Pipeline)
	fmt.Fprintf(tw, "State:\t%s\n", state)
	fmt.Fprintf(tw, "Trigger:\t%s\n", trigger)
	fmt.Fprintf(tw, "Params:\t%s\n", dash(paramsLine(r.Params)))
	fmt.Fprintf(tw, "Started:\t%s\n", r.CreatedAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(tw, "Duration:\t%s\n", secondsText(r.DurationSeconds))
	tw.Flush()
	fmt.Fprintln(w)
	rows := make([][]string, 0, len(r.Steps))
	for i := range r.Steps {
		s := &r.Steps[i]
		note := s.Error
		if s.Waiting != "" && note == "" {
			note = "(" + s.Waiting + ")"
		}
		rows = append(rows, []string{
			s.Name, s.State, strconv.Itoa(s.Attempts), stepDuration(s),
			dash(cutText(outputsLine(s.Outputs), pipelineCellWidth)), dash(cutText(note, pipelineCellWidth)),
		})
	}
	writeTable(w, []string{"STEP", "STATE", "ATTEMPTS", "DURATION", "OUTPUTS", "ERROR"}, rows)
}

func pipelinesRunsCommand() *command {
	usage := "Usage: kiln pipelines runs [flags] NAME\n\n  Lists the runs of a pipeline: state, trigger, start and duration." + pipelinesConnUsage
	return &command{synopsis: "List the runs of a pipeline", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("pipelines runs")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		return printList(c, cf, pipelinePath(fs.Arg(0), "/runs"), []string{"ID", "STATE", "TRIGGER", "STARTED", "DURATION"}, func(r map[string]any) []string {
			return []string{str(r["id"]), str(r["state"]), str(r["trigger"]), jobTime(r["created_at"]), secondsText(num(r["duration_seconds"]))}
		})
	}}
}

func pipelinesCancelCommand() *command {
	usage := `Usage: kiln pipelines cancel [flags] NAME RUN_ID

  Cancels a run: its running steps' work is stopped and the steps not
  started yet never start. kiln pipelines status NAME RUN_ID shows it end.` + pipelinesConnUsage
	return &command{synopsis: "Cancel a run of a pipeline", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("pipelines cancel")
		c, err := connect(fs, cf, args, 2, usage)
		if err != nil {
			return fail(err)
		}
		name, id := fs.Arg(0), fs.Arg(1)
		var m map[string]any
		if err := c.do("POST", runPath(name, id, "/cancel"), nil, &m); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(m)
			return 0
		}
		if runTerminal(m) {
			fmt.Printf("Run %s of pipeline %s has ended: %s\n", id, name, str(m["state"]))
			return 0
		}
		fmt.Printf("Cancelling run %s of pipeline %s; kiln pipelines status %s %s shows it end.\n", id, name, name, id)
		return 0
	}}
}

func pipelinesApproveCommand() *command {
	usage := `Usage: kiln pipelines approve [flags] NAME RUN_ID STEP

  Approves an approval step of a run that waits for one, and the run goes
  on; with -reject, rejects it, and the run fails there (the steps after it
  are skipped). The decision records the token's description and accessor
  ("anonymous" with access control off).

  -reject        reject instead of approving
  -comment TEXT  why, kept with the decision` + pipelinesConnUsage
	return &command{synopsis: "Approve or reject an approval step of a run", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("pipelines approve")
		reject := fs.Bool("reject", false, "")
		comment := fs.String("comment", "", "")
		c, err := connect(fs, cf, args, 3, usage)
		if err != nil {
			return fail(err)
		}
		name, id, step := fs.Arg(0), fs.Arg(1), fs.Arg(2)
		var m map[string]any
		body := map[string]any{"approve": !*reject, "comment": *comment}
		if err := c.do("POST", runPath(name, id, "/steps/"+url.PathEscape(step)+"/approve"), body, &m); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(m)
			return 0
		}
		verb := "Approved"
		if *reject {
			verb = "Rejected"
		}
		fmt.Printf("%s step %s of run %s of pipeline %s; kiln pipelines status %s %s follows the run.\n", verb, step, id, name, name, id)
		return 0
	}}
}

func pipelinesLogsCommand() *command {
	usage := `Usage: kiln pipelines logs [flags] NAME RUN_ID STEP

  Prints the log of a step's job (a command or train step's current
  attempt), as kiln jobs logs does.

  -f   follow: keep printing as the log grows, until the attempt ends` + pipelinesConnUsage
	return &command{synopsis: "Print or follow the log of a step of a run", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("pipelines logs")
		follow := fs.Bool("f", false, "")
		c, err := connect(fs, cf, args, 3, usage)
		if err != nil {
			return fail(err)
		}
		name, id, step := fs.Arg(0), fs.Arg(1), fs.Arg(2)
		jobID, err := stepJobID(c, name, id, step)
		if err != nil {
			return fail(err)
		}
		path := jobPath(jobID, "/logs")
		if *follow {
			path += "?follow=true"
			c.http.Timeout = 0 // a followed log lasts as long as the job
		}
		resp, err := c.raw("GET", path, nil)
		if err != nil {
			return fail(fmt.Errorf("step %s's job %s: %w", step, jobID, err))
		}
		defer resp.Body.Close()
		if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
			return fail(fmt.Errorf("reading the log: %w", err))
		}
		return 0
	}}
}

// stepJobID finds the job of a step of a run. A step without one is an
// error saying why: its type runs no job, or it has not started one yet.
func stepJobID(c *client, name, id, step string) (string, error) {
	r, _, err := getPipelineRun(c, name, id)
	if err != nil {
		return "", err
	}
	s := r.Step(step)
	if s == nil {
		names := make([]string, len(r.Steps))
		for i, st := range r.Steps {
			names[i] = st.Name
		}
		return "", fmt.Errorf("run %s has no step %s (its steps: %s)", id, step, strings.Join(names, ", "))
	}
	if j := s.Outputs["job_id"]; j != "" {
		return j, nil
	}
	// The run does not show its spec: the pipeline's says the type,
	// unless the step has left it since.
	p, _, err := getPipeline(c, name)
	if err != nil {
		return "", fmt.Errorf("step %s has no job: %w", step, err)
	}
	for _, st := range p.Spec.Steps {
		if st.Name != step {
			continue
		}
		switch st.Type {
		case structs.StepTrain, structs.StepCommand:
			return "", fmt.Errorf("step %s has no job yet: it is %s", step, s.State)
		case structs.StepTune:
			if t := s.Outputs["tuning_id"]; t != "" {
				return "", fmt.Errorf("step %s has no job (a tune step): its trials are jobs, listed by kiln tune status %s", step, t)
			}
		}
		return "", fmt.Errorf("step %s has no job (a %s step)", step, st.Type)
	}
	return "", fmt.Errorf("step %s has no job", step)
}
