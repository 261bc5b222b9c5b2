package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kilnml/kiln/node"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// The tune noun: submit a search over a training job's params (a tuning,
// DESIGN.md §7), follow its trials, list tunings. Each trial is a job, so
// kiln jobs status, logs and watch work on it too.

const tuneConnUsage = `
  Every tune command takes -address, -token (or KILN_TOKEN), -format
  (table or json: json prints the node's answer), and the HTTPS flags
  -ca-cert, -client-cert, -client-key.`

// tunePollInterval is how often submit -wait reads the tuning again; a
// tuning's trials are jobs that take seconds at least. Tests shorten it.
var tunePollInterval = time.Second

// stopReasonWidth is how many characters of an early stop's reason the
// trials table shows; status -format json has the whole reason.
const stopReasonWidth = 40

func tuneCommands() map[string]*command {
	return map[string]*command{
		"tune":        groupCommand("Search a training job's params", "kiln tune <submit|list|status>"),
		"tune submit": tuneSubmitCommand(),
		"tune list":   tuneListCommand(),
		"tune status": tuneStatusCommand(),
	}
}

const tuneSubmitHelp = `Usage: kiln tune submit [flags] FILE

  Submits the tuning FILE describes, a search over a job's params, and
  prints its ID and state. Each trial runs the job with one point of the
  space as params; the best trial by metric wins. FILE is a tuning spec in
  JSON, sent as written, or in HCL when its name ends in .hcl:

    tuning "xgb-search" {               # the label is the tuning's name
      search      = "random"            # or "grid": every point, in order
      max_trials  = 20                  # a grid's default is its size
      parallelism = 2                   # trials at once (default 1)
      metric      = "auc"               # a final metric of the trials' jobs
      goal        = "maximize"          # or "minimize"
      job {                             # a job, as in kiln jobs submit, but
        trainer {                       # without a label (trials take the
          kind      = "builtin"         # tuning's name) or register_as
          algorithm = "gbdt"
        }
        dataset = "agaricus"
        target  = "label"
        params  = { objective = "binary:logistic" }  # fixed for every trial
        validation {
          split = 0.2
        }
      }
      param "max_depth" {               # one block per searched param
        kind   = "values"               # or "choice": a list; grid takes
        values = [3, 4, 6]              # only these
      }
      param "learning_rate" {
        kind = "loguniform"             # or "uniform", or "int"
        min  = 0.01
        max  = 0.3
      }
      early_stopping {                  # stop trials that fall behind, by
        kind   = "asha"                 # "median" or "asha", on a step
        metric = "valid_logloss"        # metric (default: metric and goal)
        goal   = "minimize"
      }
      register_best_as = "agaricus-best" # the best trial's model becomes
    }                                    # a version of agaricus-best

  early_stopping also takes min_steps and min_trials (median), min_resource
  and reduction (asha); the tuning takes seed for a repeatable random
  search. Unknown fields are refused, by the node for JSON and here, with
  the file's line, for HCL.

  -wait   follow the tuning until it ends, printing its progress on stderr,
          then its status and trials. The exit code is 0 when it
          succeeded, 1 otherwise. Ctrl-C stops following, not the tuning.` + tuneConnUsage

func tuneSubmitCommand() *command {
	return &command{synopsis: "Submit a search over a job's params from a JSON or HCL file", help: tuneSubmitHelp, run: runTuneSubmit}
}

func runTuneSubmit(args []string) int {
	fs, cf := newClientFlags("tune submit")
	wait := fs.Bool("wait", false, "")
	c, err := connect(fs, cf, args, 1, tuneSubmitHelp)
	if err != nil {
		return fail(err)
	}
	spec, err := readTuningFile(fs.Arg(0))
	if err != nil {
		return fail(err)
	}
	var tu map[string]any
	if err := c.do("POST", "/v1/tuning", spec, &tu); err != nil {
		return fail(err)
	}
	if !*wait {
		if cf.format == "json" {
			printJSON(tu)
			return 0
		}
		printTable([]string{"ID", "NAME", "STATE"}, [][]string{{str(tu["id"]), str(tuningSpec(tu)["name"]), str(tu["state"])}})
		return 0
	}
	fmt.Fprintf(os.Stderr, "Submitted tuning %s\n", str(tu["id"]))
	final, err := followTuning(c, str(tu["id"]), tunePollInterval, tu, printTuningChanges(os.Stderr))
	if err != nil {
		return fail(err)
	}
	if cf.format == "json" {
		printJSON(final)
	} else {
		writeTuningStatus(os.Stdout, final)
	}
	if str(final["state"]) == structs.TuningSucceeded {
		return 0
	}
	msg := fmt.Sprintf("tuning %s %s", str(final["id"]), str(final["state"]))
	if r := str(final["reason"]); r != "" {
		msg += ": " + r
	}
	return fail(errors.New(msg))
}

// readTuningFile reads a tuning spec file as the JSON body of a submit, as
// readJobFile does a job's: HCL when the name ends in .hcl, else JSON as
// written, for the node to judge.
func readTuningFile(path string) (json.RawMessage, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(path, ".hcl") {
		spec, err := node.ParseTuningHCL(src, path)
		if err != nil {
			return nil, err
		}
		return json.Marshal(spec)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(src, &obj); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("%s:%d: %v", path, lineAt(src, se.Offset), err)
		}
		return nil, fmt.Errorf("%s: a tuning spec is a JSON object: %v", path, err)
	}
	if obj == nil {
		return nil, fmt.Errorf("%s: a tuning spec is a JSON object, not null", path)
	}
	return json.RawMessage(src), nil
}

// tuningPath is the path of a tuning.
func tuningPath(id string) string {
	return "/v1/tuning/" + url.PathEscape(id)
}

// tuningSpec is the spec of a decoded tuning.
func tuningSpec(tu map[string]any) map[string]any {
	spec, _ := tu["spec"].(map[string]any)
	return spec
}

// followTuning reads tuning id every interval until it is no longer
// running, handing each read (first being the one already made) to see,
// and returns the last. Failures are treated as followJob treats them.
func followTuning(c *client, id string, every time.Duration, first map[string]any, see func(map[string]any)) (map[string]any, error) {
	return follow(c, "tuning", id, tuningPath(id), "kiln tune status "+id, every, first,
		func(tu map[string]any) bool { return str(tu["state"]) != structs.TuningRunning }, see)
}

// printTuningChanges writes a tuning's progress line whenever it changes.
func printTuningChanges(w io.Writer) func(map[string]any) { return printChanges(w, tuningProgressLine) }

// tuningProgressLine says where a tuning stands in one line: its state,
// trials started, running and stopped, the best so far and why it ended.
func tuningProgressLine(tu map[string]any) string {
	trials := asMaps(tu["trials"])
	s := fmt.Sprintf("%s: %d of %s trials", str(tu["state"]), len(trials), dash(str(tuningSpec(tu)["max_trials"])))
	var running, stopped int
	for _, tr := range trials {
		if !(&structs.Job{State: str(tr["state"])}).Terminal() {
			running++
		}
		if tr["stopped_early"] == true {
			stopped++
		}
	}
	if running > 0 {
		s += fmt.Sprintf(", %d running", running)
	}
	if stopped > 0 {
		s += fmt.Sprintf(", %d stopped early", stopped)
	}
	if best := bestTrialLine(tu); best != "-" {
		s += "; best " + best
	}
	if r := str(tu["reason"]); r != "" {
		s += ": " + r
	}
	return s
}

// bestTrialLine names the best trial so far with its value and job, "-"
// while none has finished with the metric.
func bestTrialLine(tu map[string]any) string {
	if str(tu["best_job"]) == "" {
		return "-"
	}
	return fmt.Sprintf("trial %s, %s %s, job %s", str(tu["best_trial"]), str(tuningSpec(tu)["metric"]),
		formatValue(tu["best_value"]), str(tu["best_job"]))
}

// formatValue renders a metric value or a number param to 6 digits.
func formatValue(v any) string {
	return strconv.FormatFloat(num(v), 'g', 6, 64)
}

// writeTuningStatus renders a tuning as status shows it: header lines, then
// its trials.
func writeTuningStatus(w io.Writer, tu map[string]any) {
	spec := tuningSpec(tu)
	state := str(tu["state"])
	if r := str(tu["reason"]); r != "" {
		state += ": " + r
	}
	search := fmt.Sprintf("%s, %d of %s trials, %s at a time", str(spec["search"]), len(asMaps(tu["trials"])),
		dash(str(spec["max_trials"])), dash(str(spec["parallelism"])))
	header := [][2]string{
		{"ID", str(tu["id"])},
		{"Name", str(spec["name"])},
		{"State", state},
		{"Search", search},
		{"Metric", fmt.Sprintf("%s (%s)", str(spec["metric"]), str(spec["goal"]))},
	}
	if es, ok := spec["early_stopping"].(map[string]any); ok {
		header = append(header, [2]string{"Early stop", fmt.Sprintf("%s on %s (%s)", str(es["kind"]), str(es["metric"]), str(es["goal"]))})
	}
	header = append(header, [2]string{"Best", bestTrialLine(tu)})
	if name := str(spec["register_best_as"]); name != "" {
		version := "-"
		if num(tu["best_version"]) > 0 {
			version = name + " version " + str(tu["best_version"])
		}
		header = append(header, [2]string{"Best version", version})
	}
	header = append(header, [2]string{"Created", jobTime(tu["created_at"])}, [2]string{"Finished", jobTime(tu["finished_at"])})
	for _, h := range header {
		fmt.Fprintf(w, "%-14s%s\n", h[0]+":", h[1])
	}
	trials := asMaps(tu["trials"])
	if len(trials) == 0 {
		return
	}
	rows := make([][]string, len(trials))
	for i, tr := range trials {
		value := "-"
		if _, ok := tr["value"].(float64); ok {
			value = formatValue(tr["value"])
		}
		stopped := "-"
		if tr["stopped_early"] == true {
			stopped = shortStopReason(str(tr["stop_reason"]))
		}
		rows[i] = []string{str(tr["index"]), dash(str(tr["job_id"])), dash(str(tr["state"])), paramsCell(tr["params"]), value, stopped}
	}
	fmt.Fprintln(w)
	writeTable(w, []string{"INDEX", "JOB", "STATE", "PARAMS", "VALUE", "STOPPED"}, rows)
}

// paramsCell renders a trial's params as name=value by name.
func paramsCell(v any) string {
	m, _ := v.(map[string]any)
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, k := range names {
		val := str(m[k])
		if _, ok := m[k].(float64); ok {
			val = formatValue(m[k])
		}
		parts[i] = tableCell(k + "=" + val)
	}
	return dash(strings.Join(parts, " "))
}

// shortStopReason cuts an early stop's reason ("asha: loss 0.5 at step 3
// is not in the best 1 of ...") to what it measured, at most
// stopReasonWidth characters; "yes" when the node gave none.
func shortStopReason(r string) string {
	if r == "" {
		return "yes"
	}
	r, _, _ = strings.Cut(tableCell(r), " is ")
	if utf8.RuneCountInString(r) > stopReasonWidth {
		r = string([]rune(r)[:stopReasonWidth-3]) + "..."
	}
	return r
}

func tuneListCommand() *command {
	usage := "Usage: kiln tune list [flags]\n\n  Lists tunings with their state, trials started and best value." + tuneConnUsage
	return &command{synopsis: "List tunings", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("tune list")
		c, err := connect(fs, cf, args, 0, usage)
		if err != nil {
			return fail(err)
		}
		return printList(c, cf, "/v1/tuning", []string{"ID", "NAME", "STATE", "TRIALS", "METRIC", "GOAL", "BEST", "CREATED"}, func(tu map[string]any) []string {
			spec := tuningSpec(tu)
			best := "-"
			if str(tu["best_job"]) != "" {
				best = formatValue(tu["best_value"])
			}
			return []string{
				str(tu["id"]), str(spec["name"]), str(tu["state"]),
				fmt.Sprintf("%d/%s", len(asMaps(tu["trials"])), dash(str(spec["max_trials"]))),
				dash(str(spec["metric"])), dash(str(spec["goal"])), best, jobTime(tu["created_at"]),
			}
		})
	}}
}

func tuneStatusCommand() *command {
	usage := `Usage: kiln tune status [flags] ID

  Shows a tuning: its search, metric and goal, state, the best trial with
  its value and job and the model version it became, then each trial's
  job, state, params, value and why early stopping stopped it (the whole
  reason is in -format json).` + tuneConnUsage
	return &command{synopsis: "Show a tuning and its trials", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("tune status")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		var tu map[string]any
		if err := c.do("GET", tuningPath(fs.Arg(0)), nil, &tu); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(tu)
			return 0
		}
		writeTuningStatus(os.Stdout, tu)
		return 0
	}}
}
