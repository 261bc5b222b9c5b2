package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kilnml/kiln/node"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// The jobs noun: submit training jobs from a JSON or HCL file, follow them
// to the end, read their logs, cancel them (DESIGN.md §7).

const jobsConnUsage = `
  Every jobs command takes -address, -token (or KILN_TOKEN), -format
  (table or json: json prints the node's answer), and the HTTPS flags
  -ca-cert, -client-cert, -client-key.`

// jobPollInterval is how often submit -wait reads the job again, and
// jobWatchInterval how often watch does. Tests shorten them.
var (
	jobPollInterval  = 500 * time.Millisecond
	jobWatchInterval = time.Second
)

// jobFollowFailures is how many reads in a row may fail (a leader election,
// a node restarting) before following a job gives up; the job goes on.
const jobFollowFailures = 10

func jobsCommands() map[string]*command {
	return map[string]*command{
		"jobs":        groupCommand("Submit and follow training jobs", "kiln jobs <submit|list|status|logs|watch|cancel|retry>"),
		"jobs submit": jobsSubmitCommand(),
		"jobs list":   jobsListCommand(),
		"jobs status": jobsStatusCommand(),
		"jobs logs":   jobsLogsCommand(),
		"jobs watch":  jobsWatchCommand(),
		"jobs cancel": jobsCancelCommand(),
		"jobs retry":  jobsRetryCommand(),
	}
}

const jobsSubmitHelp = `Usage: kiln jobs submit [flags] FILE

  Submits the job FILE describes and prints its ID and state. FILE is a job
  spec in JSON, sent as written, or in HCL when its name ends in .hcl:

    job "iris-softmax" {                # the label is the job's name
      experiment = "iris"
      trainer {
        kind      = "builtin"           # or "process", with command = [...],
        algorithm = "softmax_regression" # args = [...] and env = { K = "V" }
      }
      dataset  = "iris:1"
      target   = "Species"
      features = ["Sepal_Length", "Petal_Length"]
      validation {
        split = 0.3                     # or k_fold = 5, or dataset = "NAME:VERSION"
      }
      params = { max_iter = 200, penalty = "l2" }  # numbers, strings, booleans
      resources {
        cpu       = 2
        memory_mb = 2048
        gpus      = 1                   # gpu_model and gpu_memory_mb need gpus
        gpu_model = "H100"
      }
      nodes       = 1
      placement   = "binpack"           # or "spread"
      priority    = 0
      retries     = 1
      timeout     = "1h"
      register_as = "iris-m"            # the trained model becomes a version of iris-m
    }

  Unknown fields are refused, by the node for JSON and here, with the file's
  line, for HCL. A block holds one argument per line.

  -wait   follow the job until it ends, printing its state changes on
          stderr, then its metrics and model version. The exit code is 0
          when the job succeeded, 1 otherwise (with its reason and last log
          lines). Ctrl-C stops following, not the job.` + jobsConnUsage

func jobsSubmitCommand() *command {
	return &command{synopsis: "Submit a training job from a JSON or HCL file", help: jobsSubmitHelp, run: runJobsSubmit}
}

func runJobsSubmit(args []string) int {
	fs, cf := newClientFlags("jobs submit")
	wait := fs.Bool("wait", false, "")
	c, err := connect(fs, cf, args, 1, jobsSubmitHelp)
	if err != nil {
		return fail(err)
	}
	spec, err := readJobFile(fs.Arg(0))
	if err != nil {
		return fail(err)
	}
	var j map[string]any
	if err := c.do("POST", "/v1/jobs", spec, &j); err != nil {
		return fail(err)
	}
	if !*wait {
		if cf.format == "json" {
			printJSON(j)
			return 0
		}
		printTable(jobSubmitHeaders, [][]string{jobSubmitRow(j)})
		return 0
	}
	fmt.Fprintf(os.Stderr, "Submitted job %s\n", str(j["id"]))
	final, err := followJob(c, str(j["id"]), jobPollInterval, j, printStateChanges(os.Stderr))
	if err != nil {
		return fail(err)
	}
	return reportFinal(cf, final)
}

var jobSubmitHeaders = []string{"ID", "NAME", "STATE"}

func jobSubmitRow(j map[string]any) []string {
	return []string{str(j["id"]), str(jobSpec(j)["name"]), str(j["state"])}
}

// readJobFile reads a job spec file as the JSON body of a submit: HCL when
// the name ends in .hcl, else JSON, which goes out as written so that the
// node, not this binary's idea of the spec, judges its fields.
func readJobFile(path string) (json.RawMessage, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(path, ".hcl") {
		spec, err := node.ParseJobHCL(src, path)
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
		return nil, fmt.Errorf("%s: a job spec is a JSON object: %v", path, err)
	}
	if obj == nil {
		return nil, fmt.Errorf("%s: a job spec is a JSON object, not null", path)
	}
	return json.RawMessage(src), nil
}

// lineAt is the 1-based line of a byte offset in src.
func lineAt(src []byte, offset int64) int {
	offset = min(max(offset, 0), int64(len(src)))
	return 1 + bytes.Count(src[:offset], []byte("\n"))
}

// jobPath is the path of a job, or of one of its actions with suffix.
func jobPath(id, suffix string) string {
	return "/v1/jobs/" + url.PathEscape(id) + suffix
}

// jobSpec is the spec of a decoded job.
func jobSpec(j map[string]any) map[string]any {
	spec, _ := j["spec"].(map[string]any)
	return spec
}

// jobTerminal reports whether a decoded job will not change state again,
// by the registry's own definition.
func jobTerminal(j map[string]any) bool {
	return (&structs.Job{State: str(j["state"])}).Terminal()
}

// followJob reads job id every interval until it is terminal, handing each
// read (first being the one already made) to see, and returns the last. A
// refusal (4xx) ends it at once; other failures are retried
// jobFollowFailures times in a row, since the job goes on without us.
func followJob(c *client, id string, every time.Duration, first map[string]any, see func(map[string]any)) (map[string]any, error) {
	return follow(c, "job", id, jobPath(id, ""), "kiln jobs status "+id, every, first, jobTerminal, see)
}

// follow polls path every interval until done says the resource (a job, a
// tuning: what, id) ended, calling see with each state; first, when set,
// is the state already read. A 4xx answer other than 429, or
// jobFollowFailures failures in a row, stops it with an error saying the
// resource goes on (status is the command that shows it).
func follow(c *client, what, id, path, status string, every time.Duration, first map[string]any,
	done func(map[string]any) bool, see func(map[string]any)) (map[string]any, error) {
	cur, failures := first, 0
	for {
		if cur != nil {
			see(cur)
			if done(cur) {
				return cur, nil
			}
		}
		time.Sleep(every)
		var next map[string]any
		if err := c.do("GET", path, nil, &next); err != nil {
			var ae *apiError
			refused := errors.As(err, &ae) && ae.Status/100 == 4 && ae.Status != http.StatusTooManyRequests
			if failures++; refused || failures == jobFollowFailures {
				return nil, fmt.Errorf("following %s %s: %w\nThe %s goes on: see it with %s", what, id, err, what, status)
			}
			cur = nil
			continue
		}
		cur, failures = next, 0
	}
}

// printChanges returns a see function for follow that writes a timed line
// to w whenever line(state) changes.
func printChanges(w io.Writer, line func(map[string]any) string) func(map[string]any) {
	last := ""
	return func(v map[string]any) {
		if l := line(v); l != last {
			fmt.Fprintf(w, "%s %s\n", time.Now().Format("15:04:05"), l)
			last = l
		}
	}
}

// printStateChanges writes a job's state line whenever it changes.
func printStateChanges(w io.Writer) func(map[string]any) { return printChanges(w, jobStateLine) }

// jobStateLine says where a job stands in one line: state, attempt, where
// its members run, and why it waits or failed.
func jobStateLine(j map[string]any) string {
	s := str(j["state"])
	if num(j["attempt"]) > 0 {
		s += " (attempt " + str(j["attempt"]) + ")"
	}
	if where := allocationsSummary(j); where != "" && !jobTerminal(j) {
		s += " on " + where
	}
	if j["cancel_requested"] == true && !jobTerminal(j) {
		s += ", cancel requested"
	}
	if r := jobReason(j); r != "" {
		s += ": " + r
	}
	return s
}

// jobReason says why a job waits or ended, "" when the reason only repeats
// the state (a cancelled job's "cancelled").
func jobReason(j map[string]any) string {
	if r := str(j["reason"]); r != str(j["state"]) {
		return r
	}
	return ""
}

// allocationsSummary names each member's node and GPUs, as n1[0,1] n2[0].
func allocationsSummary(j map[string]any) string {
	var parts []string
	for _, a := range asMaps(j["allocations"]) {
		part := allocationNode(a)
		if gpus := stringsOf(a["gpus"]); len(gpus) > 0 {
			part += "[" + strings.Join(gpus, ",") + "]"
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, " ")
}

// allocationNode names an allocation's node, by ID when it has no name.
func allocationNode(a map[string]any) string {
	if n := str(a["node_name"]); n != "" {
		return n
	}
	return str(a["node_id"])
}

// reportFinal prints a finished job (table ID NAME STATE, its model version
// and metrics; or the node's JSON) and returns the exit code: 0 when it
// succeeded, else 1 with its reason and last log lines on stderr.
func reportFinal(cf *clientFlags, j map[string]any) int {
	if cf.format == "json" {
		printJSON(j)
	} else {
		printTable(jobSubmitHeaders, [][]string{jobSubmitRow(j)})
		if line := modelLine(j); line != "" {
			fmt.Println("Model:", line)
		}
		if d := jobDuration(j); d != "-" {
			fmt.Println("Duration:", d)
		}
		writeMetrics(os.Stdout, j["metrics"])
	}
	return jobExit(j, true)
}

// jobExit is 0 for a job that succeeded; otherwise it prints why the job
// ended (with its last log lines when withTail) and returns 1.
func jobExit(j map[string]any, withTail bool) int {
	if str(j["state"]) == structs.JobSucceeded {
		return 0
	}
	msg := fmt.Sprintf("job %s %s", str(j["id"]), str(j["state"]))
	if r := jobReason(j); r != "" {
		msg += ": " + r
	}
	if code, ok := j["exit_code"].(float64); ok && jobReason(j) == "" {
		msg += fmt.Sprintf(" (exit code %g)", code)
	}
	if tail := stringsOf(j["log_tail"]); withTail && len(tail) > 0 {
		msg += "\nLast log lines:\n  " + strings.Join(tail, "\n  ")
	}
	return fail(errors.New(msg))
}

// modelLine names the model version a job registered, "" when none.
func modelLine(j map[string]any) string {
	if num(j["model_version"]) == 0 {
		return ""
	}
	return str(jobSpec(j)["register_as"]) + " version " + str(j["model_version"])
}

// jobDuration renders the seconds a job ran (so far), "-" before it starts.
func jobDuration(j map[string]any) string {
	s := num(j["duration_seconds"])
	if s <= 0 {
		return "-"
	}
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// jobTime renders a job's timestamp to the second (durations are shown on
// their own); the zero time the node writes for one not reached yet is "-".
func jobTime(v any) string {
	s := str(v)
	t, err := time.Parse(time.RFC3339Nano, s)
	switch {
	case err != nil:
		return dash(s)
	case t.IsZero():
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// writeMetrics writes a job's final metrics as a table, by name; nothing
// when it has none.
func writeMetrics(w io.Writer, v any) {
	m, _ := v.(map[string]any)
	if len(m) == 0 {
		return
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	rows := make([][]string, len(names))
	for i, k := range names {
		rows[i] = []string{tableCell(k), strconv.FormatFloat(num(m[k]), 'g', 6, 64)}
	}
	fmt.Fprintln(w)
	writeTable(w, []string{"METRIC", "VALUE"}, rows)
}

// writeJobStatus renders a job as status shows it: header lines, then its
// members' allocations, its history, its final metrics, and the last log
// lines of a failed job.
func writeJobStatus(w io.Writer, j map[string]any) {
	spec := jobSpec(j)
	trainer, _ := spec["trainer"].(map[string]any)
	state := str(j["state"])
	if j["cancel_requested"] == true && !jobTerminal(j) {
		state += " (cancel requested)"
	}
	if r := jobReason(j); r != "" {
		state += ": " + r
	}
	header := [][2]string{
		{"ID", str(j["id"])},
		{"Name", str(spec["name"])},
		{"Experiment", str(spec["experiment"])},
		{"Trainer", trainerLine(trainer)},
		{"Dataset", datasetLine(spec)},
		{"Resources", resourcesLine(spec)},
		{"State", state},
		{"Attempt", fmt.Sprintf("%s of %g", str(j["attempt"]), num(spec["retries"])+1)},
		{"Submitted", jobTime(j["submitted_at"])},
		{"Started", jobTime(j["started_at"])},
		{"Finished", jobTime(j["finished_at"])},
		{"Duration", jobDuration(j)},
	}
	if code, ok := j["exit_code"].(float64); ok {
		header = append(header, [2]string{"Exit code", fmt.Sprintf("%g", code)})
	}
	if r := str(j["run_id"]); r != "" {
		header = append(header, [2]string{"Run", r})
	}
	if line := modelLine(j); line != "" {
		header = append(header, [2]string{"Model", line})
	}
	for _, h := range header {
		fmt.Fprintf(w, "%-12s%s\n", h[0]+":", h[1])
	}
	if allocs := asMaps(j["allocations"]); len(allocs) > 0 {
		rows := make([][]string, len(allocs))
		for i, a := range allocs {
			rows[i] = []string{str(a["rank"]), allocationNode(a), dash(strings.Join(stringsOf(a["gpus"]), ",")), str(a["state"])}
		}
		fmt.Fprintln(w)
		writeTable(w, []string{"RANK", "NODE", "GPUS", "STATE"}, rows)
	}
	if history := asMaps(j["history"]); len(history) > 0 {
		rows := make([][]string, len(history))
		for i, e := range history {
			rows[i] = []string{str(e["state"]), jobTime(e["at"]), dash(tableCell(str(e["reason"])))}
		}
		fmt.Fprintln(w)
		writeTable(w, []string{"STATE", "AT", "REASON"}, rows)
	}
	writeMetrics(w, j["metrics"])
	if tail := stringsOf(j["log_tail"]); len(tail) > 0 && str(j["state"]) == structs.JobFailed {
		fmt.Fprintln(w, "\nLast log lines:")
		for _, l := range tail {
			fmt.Fprintln(w, "  "+l)
		}
	}
}

// trainerLine renders a trainer: builtin ALGORITHM, or process COMMAND ARGS.
func trainerLine(t map[string]any) string {
	kind := str(t["kind"])
	if kind == structs.TrainerProcess {
		return strings.TrimSpace(kind + " " + strings.Join(append(stringsOf(t["command"]), stringsOf(t["args"])...), " "))
	}
	return strings.TrimSpace(kind + " " + str(t["algorithm"]))
}

// datasetLine renders a spec's data: the dataset version and its target.
func datasetLine(spec map[string]any) string {
	s := str(spec["dataset"])
	if s == "" {
		return "-"
	}
	if t := str(spec["target"]); t != "" {
		s += ", target " + t
	}
	return s
}

// resourcesLine renders what each member holds, and how many members.
func resourcesLine(spec map[string]any) string {
	r, _ := spec["resources"].(map[string]any)
	s := fmt.Sprintf("cpu %s, memory %s MB, gpus %s", dash(str(r["cpu"])), dash(str(r["memory_mb"])), dash(str(r["gpus"])))
	if m := str(r["gpu_model"]); m != "" {
		s += " " + m
	}
	if mb := num(r["gpu_memory_mb"]); mb > 0 {
		s += fmt.Sprintf(" (>= %g MB)", mb)
	}
	if n := num(spec["nodes"]); n > 1 {
		s += fmt.Sprintf(", on each of %g nodes", n)
	}
	return s
}

func jobsListCommand() *command {
	usage := "Usage: kiln jobs list [flags]\n\n  Lists jobs with their state, attempt and the nodes they run on." + jobsConnUsage
	return &command{synopsis: "List training jobs", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("jobs list")
		c, err := connect(fs, cf, args, 0, usage)
		if err != nil {
			return fail(err)
		}
		return printList(c, cf, "/v1/jobs", []string{"ID", "NAME", "STATE", "ATTEMPT", "NODES", "SUBMITTED"}, func(j map[string]any) []string {
			var nodes []string
			for _, a := range asMaps(j["allocations"]) {
				nodes = append(nodes, allocationNode(a))
			}
			return []string{
				str(j["id"]), str(jobSpec(j)["name"]), str(j["state"]), str(j["attempt"]),
				dash(strings.Join(nodes, ",")), jobTime(j["submitted_at"]),
			}
		})
	}}
}

func jobsStatusCommand() *command {
	usage := `Usage: kiln jobs status [flags] ID

  Shows a job: its spec in brief, state, attempt and times, then where its
  members run (node and GPUs), its history, its final metrics, and the
  last log lines of a failed job.` + jobsConnUsage
	return &command{synopsis: "Show a training job", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("jobs status")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		var j map[string]any
		if err := c.do("GET", jobPath(fs.Arg(0), ""), nil, &j); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(j)
			return 0
		}
		writeJobStatus(os.Stdout, j)
		return 0
	}}
}

func jobsLogsCommand() *command {
	usage := `Usage: kiln jobs logs [flags] ID

  Prints a job member's log (stdout and stderr of its process, or a
  builtin trainer's progress) as the node that runs it keeps it.

  -f           follow: keep printing as the log grows, until the attempt
               ends
  -rank N      the member (0 by default: the only one of a one-node job)
  -attempt N   an earlier attempt (the current one by default); only the
               current attempt's node is known, so older logs may be gone` + jobsConnUsage
	return &command{synopsis: "Print or follow a training job's log", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("jobs logs")
		follow := fs.Bool("f", false, "")
		rank := fs.Int("rank", 0, "")
		attempt := fs.Int("attempt", 0, "")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		if *rank < 0 || *attempt < 0 {
			return fail(fmt.Errorf("-rank and -attempt must not be negative\n%s", usage))
		}
		q := url.Values{}
		if *follow {
			q.Set("follow", "true")
			c.http.Timeout = 0 // a followed log lasts as long as the job
		}
		if *rank > 0 {
			q.Set("rank", strconv.Itoa(*rank))
		}
		if *attempt > 0 {
			q.Set("attempt", strconv.Itoa(*attempt))
		}
		path := jobPath(fs.Arg(0), "/logs")
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		resp, err := c.raw("GET", path, nil)
		if err != nil {
			return fail(err)
		}
		defer resp.Body.Close()
		if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
			return fail(fmt.Errorf("reading the log: %w", err))
		}
		return 0
	}}
}

func jobsWatchCommand() *command {
	usage := `Usage: kiln jobs watch [flags] ID

  Follows a job until it ends: its state, attempt, the nodes and GPUs its
  members hold, how long it has run, and its final metrics once it has
  them. On a terminal the view is redrawn every second; otherwise each
  change is printed as a line. The exit code is 0 when the job succeeded,
  1 otherwise. Ctrl-C stops watching, not the job.

  Step metrics as they are written (sparklines of loss and the like) come
  with the runs API; until then watch shows the job's state and final
  metrics, and kiln jobs logs -f its output.` + jobsConnUsage
	return &command{synopsis: "Follow a training job until it ends", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("jobs watch")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		id := fs.Arg(0)
		var j map[string]any
		if err := c.do("GET", jobPath(id, ""), nil, &j); err != nil {
			return fail(err)
		}
		redraw := cf.format == "table" && isTerminal(os.Stdout)
		var see func(map[string]any)
		switch {
		case redraw:
			see = func(j map[string]any) { redrawJob(os.Stdout, j) }
		case cf.format == "json":
			// stdout carries the final job alone.
			see = printStateChanges(os.Stderr)
		default:
			see = printStateChanges(os.Stdout)
		}
		final, err := followJob(c, id, jobWatchInterval, j, see)
		if err != nil {
			return fail(err)
		}
		if redraw {
			return jobExit(final, false) // the last view shows the log lines
		}
		return reportFinal(cf, final)
	}}
}

// redrawJob clears the terminal and draws the job's status view.
func redrawJob(w io.Writer, j map[string]any) {
	var b bytes.Buffer
	b.WriteString("\x1b[H\x1b[2J")
	fmt.Fprintf(&b, "kiln jobs watch %s    %s\n\n", str(j["id"]), time.Now().Format("15:04:05"))
	writeJobStatus(&b, j)
	_, _ = w.Write(b.Bytes())
}

func jobsCancelCommand() *command {
	usage := `Usage: kiln jobs cancel [flags] ID

  Cancels a job. A pending job is cancelled at once; a placed or running
  one once its nodes have stopped it (kiln jobs watch ID follows that).` + jobsConnUsage
	return &command{synopsis: "Cancel a training job", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("jobs cancel")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		var j map[string]any
		if err := c.do("POST", jobPath(fs.Arg(0), "/cancel"), nil, &j); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(j)
			return 0
		}
		printTable(jobSubmitHeaders, [][]string{jobSubmitRow(j)})
		if !jobTerminal(j) {
			fmt.Println("Its nodes are stopping it; kiln jobs watch " + str(j["id"]) + " follows it to the end.")
		}
		return 0
	}}
}

func jobsRetryCommand() *command {
	usage := `Usage: kiln jobs retry [flags] ID

  Submits a finished job (failed, cancelled, lost or succeeded) again, as a
  new job with the same spec and the same dataset version, and prints the
  new job's ID and state; its retry_of names ID. A job that has not
  finished is refused: cancel it first.` + jobsConnUsage
	return &command{synopsis: "Submit a finished training job again", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("jobs retry")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		var j map[string]any
		if err := c.do("POST", jobPath(fs.Arg(0), "/retry"), nil, &j); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(j)
			return 0
		}
		printTable(jobSubmitHeaders, [][]string{jobSubmitRow(j)})
		fmt.Println("kiln jobs watch " + str(j["id"]) + " follows it.")
		return 0
	}}
}
