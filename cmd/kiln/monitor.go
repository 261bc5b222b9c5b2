package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kilnml/kiln/node"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// The monitor and alerts nouns: watch a deployment's live inputs for drift
// from a reference dataset, read its prediction log, feed labels back and
// see its live performance; declare alert rules over all of it, list the
// alerts and acknowledge them (DESIGN.md §8, "Monitoring").

const monitorConnUsage = `
  Every monitor command takes -address, -token (or KILN_TOKEN), -format
  (table or json: json prints the node's answer), and the HTTPS flags
  -ca-cert, -client-cert, -client-key.`

const alertsConnUsage = `
  Every alerts command takes -address, -token (or KILN_TOKEN), -format
  (table or json: json prints the node's answer), and the HTTPS flags
  -ca-cert, -client-cert, -client-key.`

// Widths of table cells; -format json has all of it.
const monitorCellWidth = 60

// maxFeedbackBatch is the most labels one POST /v1/feedback takes (the
// node's limit); feedback sends a longer file in several.
const maxFeedbackBatch = 10000

func monitoringCommands() map[string]*command {
	return map[string]*command{
		"monitor":             groupCommand("Watch deployments for drift, read their prediction logs, feed labels back", "kiln monitor <set|list|status|drift|predictions|feedback|delete>"),
		"monitor set":         monitorSetCommand(),
		"monitor list":        monitorListCommand(),
		"monitor status":      monitorStatusCommand(),
		"monitor drift":       monitorDriftCommand(),
		"monitor predictions": monitorPredictionsCommand(),
		"monitor feedback":    monitorFeedbackCommand(),
		"monitor delete":      monitorDeleteCommand(),
		"alerts":              groupCommand("Declare alert rules on deployments, list and acknowledge alerts", "kiln alerts <apply|rules|list|ack|delete>"),
		"alerts apply":        alertsApplyCommand(),
		"alerts rules":        alertsRulesCommand(),
		"alerts list":         alertsListCommand(),
		"alerts ack":          alertsAckCommand(),
		"alerts delete":       alertsDeleteCommand(),
	}
}

// monitorPath is the path of a deployment's monitor, or of something under
// it.
func monitorPath(deployment, suffix string) string {
	return "/v1/monitors/" + url.PathEscape(deployment) + suffix
}

// deploymentMonitoringPath is the path of a deployment's prediction log or
// performance.
func deploymentMonitoringPath(deployment, suffix string) string {
	return "/v1/deployments/" + url.PathEscape(deployment) + suffix
}

const monitorSetHelp = `Usage: kiln monitor set [flags] DEPLOYMENT

  Creates or replaces the monitor of a deployment: the reference dataset its
  logged inputs are compared with, how often and by which tests. Prints the
  reference version and the columns the node resolved. A field not given
  takes the node's default, shown in brackets.

  -reference NAME[:VERSION]  the reference dataset (its latest version
                             without :VERSION) [the dataset the deployed
                             version was trained on]
  -columns A,B,...           the reference's columns in the order of the
                             model's input values [those named like the
                             model's features, ignoring case]
  -sample-rate R             share of requests written to the prediction
                             log, above 0 and at most 1 [1]
  -schedule SPAN             interval between checks [1m]
  -window SPAN               how far back a check reads the log [1h]
  -min-samples N             fewest logged rows a check tests; with fewer it
                             is recorded as skipped [100]
  -numeric-test TEST         ks, psi or wasserstein [ks]
  -categorical-test TEST     chi2 or jensenshannon [chi2]
  -alpha A                   significance level, between 0 and 1 [0.05]
  -task TASK                 classification or regression: how labels are
                             scored [what the model's outputs imply]
  -file FILE                 the monitor as JSON, the body of PUT
                             /v1/monitors/DEPLOYMENT ({"reference_dataset":
                             "iris:1", "feature_columns": [...], ...});
                             a flag given with it replaces its field

  A SPAN is a duration such as 30s, 1h or 7d. The node checks the fields
  and names the one at fault.` + monitorConnUsage

func monitorSetCommand() *command {
	return &command{synopsis: "Create or replace a deployment's monitor", help: monitorSetHelp, run: func(args []string) int {
		fs, cf := newClientFlags("monitor set")
		fs.String("reference", "", "")
		fs.String("columns", "", "")
		fs.Float64("sample-rate", 0, "")
		fs.String("schedule", "", "")
		fs.String("window", "", "")
		fs.Int("min-samples", 0, "")
		fs.String("numeric-test", "", "")
		fs.String("categorical-test", "", "")
		fs.Float64("alpha", 0, "")
		fs.String("task", "", "")
		file := fs.String("file", "", "")
		c, err := connect(fs, cf, args, 1, monitorSetHelp)
		if err != nil {
			return fail(err)
		}
		body, err := monitorBody(fs, *file)
		if err != nil {
			return fail(err)
		}
		deployment := fs.Arg(0)
		var raw json.RawMessage
		if err := c.do("PUT", monitorPath(deployment, ""), body, &raw); err != nil {
			return fail(fmt.Errorf("monitor of %s: %w", deployment, err))
		}
		if cf.format == "json" {
			printJSON(raw)
			return 0
		}
		var m structs.Monitor
		if err := json.Unmarshal(raw, &m); err != nil {
			return fail(fmt.Errorf("monitor of %s: %w", deployment, err))
		}
		fmt.Printf("Set the monitor of deployment %s\n", deployment)
		writeMonitor(os.Stdout, &m)
		return 0
	}}
}

// monitorFields maps monitor set's field flags to the JSON fields they set.
var monitorFields = []struct{ flag, field string }{
	{"reference", "reference_dataset"},
	{"columns", "feature_columns"},
	{"sample-rate", "sample_rate"},
	{"schedule", "schedule"},
	{"window", "window"},
	{"min-samples", "min_samples"},
	{"numeric-test", "numeric_test"},
	{"categorical-test", "categorical_test"},
	{"alpha", "alpha"},
	{"task", "task"},
}

// monitorBody is the body of a monitor's PUT: the fields of -file (as
// written: the node judges them), with those of the flags given over them.
// A flag not given sends nothing, so that the node's default applies.
func monitorBody(fs *flag.FlagSet, file string) (map[string]json.RawMessage, error) {
	body := map[string]json.RawMessage{}
	if file != "" {
		src, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(src, &body); err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				return nil, fmt.Errorf("%s:%d: %v", file, lineAt(src, se.Offset), err)
			}
			return nil, fmt.Errorf("%s: a monitor is a JSON object: %v", file, err)
		}
		if body == nil {
			return nil, fmt.Errorf("%s: a monitor is a JSON object, not null", file)
		}
	}
	for _, f := range monitorFields {
		if !isFlagSet(fs, f.flag) {
			continue
		}
		g := fs.Lookup(f.flag).Value.(flag.Getter).Get()
		if f.flag == "columns" {
			var cols []string
			for _, c := range strings.Split(g.(string), ",") {
				cols = append(cols, strings.TrimSpace(c))
			}
			g = cols
		}
		b, err := json.Marshal(g)
		if err != nil {
			return nil, fmt.Errorf("-%s: %w", f.flag, err)
		}
		body[f.field] = b
	}
	return body, nil
}

// writeMonitor writes a monitor as lines of fields.
func writeMonitor(w io.Writer, m *structs.Monitor) {
	s := &m.Spec
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Reference:\t%s\n", m.Reference)
	fmt.Fprintf(tw, "Columns:\t%s\n", strings.Join(m.Columns, ", "))
	fmt.Fprintf(tw, "Tests:\t%s (numeric), %s (categorical), alpha %s\n", s.NumericTest, s.CategoricalTest, statText(s.Alpha))
	fmt.Fprintf(tw, "Checks:\tevery %s over the last %s, at least %s\n", s.Schedule, s.Window, plural(s.MinSamples, "sample", "samples"))
	fmt.Fprintf(tw, "Sample rate:\t%s\n", statText(s.SampleRate))
	if s.Task != "" {
		fmt.Fprintf(tw, "Task:\t%s\n", s.Task)
	}
	tw.Flush()
}

// statText renders a statistic, p-value or threshold to four significant
// digits.
func statText(v float64) string {
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// spanText drops a Go duration's zero tail: 1h0m0s is 1h, 1m30s stays.
func spanText(d string) string {
	if strings.HasSuffix(d, "m0s") {
		d = strings.TrimSuffix(d, "0s")
	}
	if strings.HasSuffix(d, "h0m") {
		d = strings.TrimSuffix(d, "0m")
	}
	return d
}

// checkTime renders a check's time to the second; "-" for none.
func checkTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func monitorListCommand() *command {
	usage := "Usage: kiln monitor list [flags]\n\n  Lists monitors: their deployment, reference, columns, schedule and last\n  check." + monitorConnUsage
	return &command{synopsis: "List monitors", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("monitor list")
		c, err := connect(fs, cf, args, 0, usage)
		if err != nil {
			return fail(err)
		}
		return printList(c, cf, "/v1/monitors", []string{"DEPLOYMENT", "REFERENCE", "COLUMNS", "SCHEDULE", "WINDOW", "LAST_CHECK"}, func(m map[string]any) []string {
			spec, _ := m["spec"].(map[string]any)
			return []string{str(spec["deployment"]), str(m["reference"]), cutText(strings.Join(stringsOf(m["columns"]), ","), monitorCellWidth),
				str(spec["schedule"]), str(spec["window"]), jobTime(m["last_check_at"])}
		})
	}}
}

func monitorDeleteCommand() *command {
	return deleteCommand("monitor delete", "Delete a deployment's monitor",
		"Usage: kiln monitor delete [flags] DEPLOYMENT\n\n  Deletes a deployment's monitor and its drift checks. The deployment goes\n  on serving, and logging at the node's monitoring.sample_rate."+monitorConnUsage,
		func(name string) string { return monitorPath(name, "") }, "the monitor of deployment")
}

// driftList is GET /v1/monitors/NAME/drift.
type driftList struct {
	Deployment string                `json:"deployment"`
	Items      []*structs.DriftCheck `json:"items"`
}

// driftPath is the path of a monitor's checks since a time or span.
func driftPath(deployment, since string) string {
	return monitorPath(deployment, "/drift?"+url.Values{"since": {since}}.Encode())
}

// getDrift reads a monitor's checks since a time or span, typed and as the
// node's JSON.
func getDrift(c *client, deployment, since string) (*driftList, json.RawMessage, error) {
	var raw json.RawMessage
	if err := c.do("GET", driftPath(deployment, since), nil, &raw); err != nil {
		return nil, nil, err
	}
	var l driftList
	if err := json.Unmarshal(raw, &l); err != nil {
		return nil, nil, fmt.Errorf("drift checks of %s: %w", deployment, err)
	}
	return &l, raw, nil
}

// performanceView is GET /v1/deployments/NAME/performance.
type performanceView struct {
	Deployment   string                    `json:"deployment"`
	Task         string                    `json:"task"`
	Window       string                    `json:"window"`
	Versions     []node.VersionPerformance `json:"versions"`
	All          *node.VersionPerformance  `json:"all"`
	Unmatched    int                       `json:"unmatched"`
	NodesMissing int                       `json:"nodes_missing"`
}

const monitorStatusHelp = `Usage: kiln monitor status [flags] DEPLOYMENT

  Shows the latest drift check of a deployment's monitor: when it ran, the
  logged rows it tested, the share of features that drifted and whether the
  predictions did; then each feature's test, its statistic, p-value (- for
  a test without one), the threshold the statistic is compared with and
  whether it drifted. Then the live performance of the labelled
  predictions, per version.

  -window SPAN   how far back the performance reads labels (default 1h)` + monitorConnUsage

func monitorStatusCommand() *command {
	return &command{synopsis: "Show a deployment's latest drift check and live performance", help: monitorStatusHelp, run: func(args []string) int {
		fs, cf := newClientFlags("monitor status")
		window := fs.String("window", "1h", "")
		c, err := connect(fs, cf, args, 1, monitorStatusHelp)
		if err != nil {
			return fail(err)
		}
		deployment := fs.Arg(0)
		var m structs.Monitor
		if err := c.do("GET", monitorPath(deployment, ""), nil, &m); err != nil {
			return fail(fmt.Errorf("monitor of %s: %w", deployment, err))
		}
		// The checks since the monitor's last one: that check alone.
		var check *structs.DriftCheck
		var checkRaw json.RawMessage
		if !m.LastCheckAt.IsZero() {
			var l struct {
				Items []json.RawMessage `json:"items"`
			}
			if err := c.do("GET", driftPath(deployment, m.LastCheckAt.UTC().Format(time.RFC3339Nano)), nil, &l); err != nil {
				return fail(err)
			}
			if n := len(l.Items); n > 0 {
				checkRaw, check = l.Items[n-1], &structs.DriftCheck{}
				if err := json.Unmarshal(checkRaw, check); err != nil {
					return fail(fmt.Errorf("drift check of %s: %w", deployment, err))
				}
			}
		}
		var perfRaw json.RawMessage
		if err := c.do("GET", deploymentMonitoringPath(deployment, "/performance?"+url.Values{"window": {*window}}.Encode()), nil, &perfRaw); err != nil {
			return fail(fmt.Errorf("performance of %s: %w", deployment, err))
		}
		if cf.format == "json" {
			if checkRaw == nil {
				checkRaw = json.RawMessage("null")
			}
			printJSON(map[string]json.RawMessage{"check": checkRaw, "performance": perfRaw})
			return 0
		}
		var perf performanceView
		if err := json.Unmarshal(perfRaw, &perf); err != nil {
			return fail(fmt.Errorf("performance of %s: %w", deployment, err))
		}
		if check == nil {
			fmt.Printf("No drift check of deployment %s yet: the leader runs one shortly, then every %s; kiln monitor drift -check %s runs one now.\n", deployment, m.Spec.Schedule, deployment)
		} else {
			writeDriftCheck(os.Stdout, check)
		}
		fmt.Println()
		writePerformance(os.Stdout, &perf)
		return 0
	}}
}

// writeDriftCheck writes a check as lines of fields, then a table of its
// features' tests.
func writeDriftCheck(w io.Writer, c *structs.DriftCheck) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Deployment:\t%s\n", c.Deployment)
	fmt.Fprintf(tw, "Checked at:\t%s (in %d ms)\n", checkTime(c.CheckedAt), c.DurationMS)
	fmt.Fprintf(tw, "Window:\t%s to %s\n", checkTime(c.From), checkTime(c.To))
	fmt.Fprintf(tw, "Reference:\t%s\n", c.Reference)
	samples := strconv.Itoa(c.Samples)
	if c.NodesMissing > 0 {
		samples += fmt.Sprintf(" (%s did not answer: their rows are not counted)", plural(c.NodesMissing, "node", "nodes"))
	}
	fmt.Fprintf(tw, "Samples:\t%s\n", samples)
	if c.Skipped != "" {
		fmt.Fprintf(tw, "Skipped:\t%s\n", tableCell(c.Skipped))
		tw.Flush()
		return
	}
	drifted := 0
	for _, f := range c.Features {
		if f.Drift {
			drifted++
		}
	}
	fmt.Fprintf(tw, "Share drifted:\t%.2f (%d of %s)\n", c.ShareDrifted, drifted, plural(len(c.Features), "feature", "features"))
	fmt.Fprintf(tw, "Prediction drift:\t%s\n", predictionDrift(c.Prediction))
	tw.Flush()
	if len(c.Features) == 0 {
		return
	}
	fmt.Fprintln(w)
	headers := []string{"FEATURE", "TEST", "STATISTIC", "P_VALUE", "THRESHOLD", "DRIFT"}
	withErrors := false
	for _, f := range c.Features {
		withErrors = withErrors || f.Error != ""
	}
	if withErrors {
		headers = append(headers, "ERROR")
	}
	rows := make([][]string, 0, len(c.Features))
	for i := range c.Features {
		row := featureDriftRow(&c.Features[i])
		if withErrors {
			row = append(row, dash(cutText(c.Features[i].Error, monitorCellWidth)))
		}
		rows = append(rows, row)
	}
	writeTable(w, headers, rows)
}

// featureDriftRow is a feature's test as table cells; a feature that could
// not be tested has dashes.
func featureDriftRow(f *structs.FeatureDrift) []string {
	if f.Error != "" {
		return []string{f.Name, dash(f.Test), "-", "-", "-", "-"}
	}
	p := "-"
	if f.PValue != nil {
		p = statText(*f.PValue)
	}
	return []string{f.Name, f.Test, statText(f.Statistic), p, statText(f.Threshold), yesNo(f.Drift)}
}

// predictionDrift says whether the predictions drifted, by which test.
func predictionDrift(p *structs.FeatureDrift) string {
	switch {
	case p == nil:
		return "- (not tested)"
	case p.Error != "":
		return "- (" + tableCell(p.Error) + ")"
	}
	s := fmt.Sprintf("%s (%s statistic %s, threshold %s", yesNo(p.Drift), p.Test, statText(p.Statistic), statText(p.Threshold))
	if p.PValue != nil {
		s += ", p-value " + statText(*p.PValue)
	}
	return s + ")"
}

// writePerformance writes a deployment's live performance, a line and a
// table of its versions' metrics: those of its task.
func writePerformance(w io.Writer, p *performanceView) {
	labeled := 0
	for _, v := range p.Versions {
		labeled += v.Labeled
	}
	if p.NodesMissing > 0 {
		fmt.Fprintf(os.Stderr, "Warning: %s did not answer; their predictions are not counted\n", plural(p.NodesMissing, "node", "nodes"))
	}
	unmatched := ""
	if p.Unmatched > 0 {
		unmatched = fmt.Sprintf("; %s matched to no logged request yet", plural(p.Unmatched, "label", "labels"))
	}
	if labeled == 0 {
		// Without labels the node cannot tell the task from their width.
		fmt.Fprintf(w, "Live performance over the last %s: no labelled predictions%s; kiln monitor feedback sends labels.\n", spanText(p.Window), unmatched)
		return
	}
	fmt.Fprintf(w, "Live performance over the last %s (%s): %s%s\n", spanText(p.Window), p.Task,
		plural(labeled, "labelled prediction", "labelled predictions"), unmatched)
	headers := []string{"VERSION", "LABELED", "ACCURACY", "F1", "AUC", "LOGLOSS"}
	metrics := func(v *node.VersionPerformance) []*float64 { return []*float64{v.Accuracy, v.F1, v.AUC, v.LogLoss} }
	if p.Task == structs.TaskRegression {
		headers = []string{"VERSION", "LABELED", "RMSE", "MAE"}
		metrics = func(v *node.VersionPerformance) []*float64 { return []*float64{v.RMSE, v.MAE} }
	}
	row := func(name string, v *node.VersionPerformance) []string {
		r := []string{name, strconv.Itoa(v.Labeled)}
		for _, m := range metrics(v) {
			if m == nil {
				r = append(r, "-")
			} else {
				r = append(r, strconv.FormatFloat(*m, 'f', 4, 64))
			}
		}
		return r
	}
	rows := make([][]string, 0, len(p.Versions)+1)
	for i := range p.Versions {
		rows = append(rows, row(strconv.FormatUint(p.Versions[i].Version, 10), &p.Versions[i]))
	}
	if p.All != nil && len(p.Versions) > 1 {
		rows = append(rows, row("all", p.All))
	}
	fmt.Fprintln(w)
	writeTable(w, headers, rows)
}

const monitorDriftHelp = `Usage: kiln monitor drift [flags] DEPLOYMENT

  Lists the drift checks of a deployment's monitor, oldest first: when each
  ran, the logged rows it tested, the share of features that drifted and
  their names, and whether the predictions drifted. A skipped check (too
  few rows) says why. kiln monitor status shows the latest in full.

  -since SPAN|TIME   the checks since a duration back from now (1h, 7d) or
                     an RFC 3339 time (default 24h)
  -check             run a check now, then list` + monitorConnUsage

func monitorDriftCommand() *command {
	return &command{synopsis: "List a deployment's drift checks, or run one", help: monitorDriftHelp, run: func(args []string) int {
		fs, cf := newClientFlags("monitor drift")
		since := fs.String("since", "24h", "")
		check := fs.Bool("check", false, "")
		c, err := connect(fs, cf, args, 1, monitorDriftHelp)
		if err != nil {
			return fail(err)
		}
		deployment := fs.Arg(0)
		if *check {
			if err := c.do("POST", monitorPath(deployment, "/check"), nil, nil); err != nil {
				return fail(fmt.Errorf("drift check of %s: %w", deployment, err))
			}
		}
		l, raw, err := getDrift(c, deployment, *since)
		if err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(raw)
			return 0
		}
		rows := make([][]string, 0, len(l.Items))
		for _, ch := range l.Items {
			rows = append(rows, driftCheckRow(ch))
		}
		printTable([]string{"CHECKED_AT", "SAMPLES", "SHARE_DRIFTED", "DRIFTED", "PREDICTION_DRIFT"}, rows)
		return 0
	}}
}

// driftCheckRow is a check as the cells of drift's table.
func driftCheckRow(c *structs.DriftCheck) []string {
	if c.Skipped != "" {
		return []string{checkTime(c.CheckedAt), strconv.Itoa(c.Samples), "-", cutText("skipped: "+c.Skipped, monitorCellWidth), "-"}
	}
	var drifted []string
	for _, f := range c.Features {
		if f.Drift {
			drifted = append(drifted, f.Name)
		}
	}
	prediction := "-"
	if p := c.Prediction; p != nil && p.Error == "" {
		prediction = yesNo(p.Drift)
	}
	return []string{checkTime(c.CheckedAt), strconv.Itoa(c.Samples), fmt.Sprintf("%.2f", c.ShareDrifted),
		dash(cutText(strings.Join(drifted, ","), monitorCellWidth)), prediction}
}

// predictionsView is GET /v1/deployments/NAME/predictions, without the
// tensors, which -format json shows.
type predictionsView struct {
	Items []struct {
		ID        string    `json:"id"`
		Time      time.Time `json:"time"`
		Node      string    `json:"node"`
		Version   uint64    `json:"version"`
		LatencyMS float64   `json:"latency_ms"`
		Labels    []float64 `json:"labels"`
	} `json:"items"`
	Truncated    bool `json:"truncated"`
	NodesMissing int  `json:"nodes_missing"`
}

const monitorPredictionsHelp = `Usage: kiln monitor predictions [flags] DEPLOYMENT

  Lists the requests a deployment logged, on every node, oldest first: the
  request ID (the one feedback labels name), time, version, latency and
  the labels fed back for it. -format json adds their inputs and outputs.

  -from SPAN|TIME   the start: a duration back from now (1h) or an RFC 3339
                    time (default 1h)
  -to SPAN|TIME     the end (default now)
  -limit N          at most N requests, 1 to 10000 (default 20)` + monitorConnUsage

func monitorPredictionsCommand() *command {
	return &command{synopsis: "List a deployment's logged requests", help: monitorPredictionsHelp, run: func(args []string) int {
		fs, cf := newClientFlags("monitor predictions")
		from := fs.String("from", "1h", "")
		to := fs.String("to", "", "")
		limit := fs.Int("limit", 20, "")
		c, err := connect(fs, cf, args, 1, monitorPredictionsHelp)
		if err != nil {
			return fail(err)
		}
		q := url.Values{"from": {*from}, "limit": {strconv.Itoa(*limit)}}
		if *to != "" {
			q.Set("to", *to)
		}
		deployment := fs.Arg(0)
		var raw json.RawMessage
		if err := c.do("GET", deploymentMonitoringPath(deployment, "/predictions?"+q.Encode()), nil, &raw); err != nil {
			return fail(fmt.Errorf("predictions of %s: %w", deployment, err))
		}
		if cf.format == "json" {
			printJSON(raw)
			return 0
		}
		var p predictionsView
		if err := json.Unmarshal(raw, &p); err != nil {
			return fail(fmt.Errorf("predictions of %s: %w", deployment, err))
		}
		rows := make([][]string, 0, len(p.Items))
		for _, it := range p.Items {
			labels := make([]string, len(it.Labels))
			for i, l := range it.Labels {
				labels[i] = strconv.FormatFloat(l, 'g', -1, 64)
			}
			rows = append(rows, []string{tableCell(it.ID), it.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
				strconv.FormatUint(it.Version, 10), strconv.FormatFloat(it.LatencyMS, 'f', 2, 64), dash(cutText(strings.Join(labels, ","), monitorCellWidth))})
		}
		printTable([]string{"ID", "TIME", "VERSION", "LATENCY_MS", "LABELS"}, rows)
		if p.Truncated || len(p.Items) == *limit {
			fmt.Fprintf(os.Stderr, "Stopped at -limit (%s): the range may hold more; raise -limit or narrow -from and -to\n", plural(*limit, "request", "requests"))
		}
		if p.NodesMissing > 0 {
			fmt.Fprintf(os.Stderr, "Warning: %s did not answer; their requests are not shown\n", plural(p.NodesMissing, "node", "nodes"))
		}
		return 0
	}}
}

const monitorFeedbackHelp = `Usage: kiln monitor feedback [flags] FILE

  Sends ground-truth labels of logged requests, joined to them by request
  ID, and prints how many matched a logged request. FILE (- for stdin)
  holds {"id": "REQUEST_ID", "label": LABEL} objects, one a line (JSON
  Lines) or in one JSON array. A classifier's label is a class index (or
  true/false for two classes), a regression's a number; a request of
  several rows takes an array of one label per row.

  A label whose request is not logged yet is kept, and joined when it is
  (for the node's monitoring.label_grace). The labels go in batches of
  10000; the node takes a batch whole or, when a label is bad, none of it.

  -deployment NAME   the deployment the labels are for: a label that
                     matches no logged request yet is checked against its
                     model now, and kept for it` + monitorConnUsage

// feedbackLabel is one label of a feedback file, with where it is.
type feedbackLabel struct {
	ID    string          `json:"id"`
	Label json.RawMessage `json:"label"`
	where string          // "line 3" or "item 3"
}

func monitorFeedbackCommand() *command {
	return &command{synopsis: "Send labels of logged requests", help: monitorFeedbackHelp, run: func(args []string) int {
		fs, cf := newClientFlags("monitor feedback")
		deployment := fs.String("deployment", "", "")
		c, err := connect(fs, cf, args, 1, monitorFeedbackHelp)
		if err != nil {
			return fail(err)
		}
		file := fs.Arg(0)
		labels, err := readFeedbackFile(file)
		if err != nil {
			return fail(err)
		}
		matched, unmatched := 0, 0
		for start := 0; start < len(labels); start += maxFeedbackBatch {
			batch := labels[start:min(start+maxFeedbackBatch, len(labels))]
			var ans struct {
				Matched   int `json:"matched"`
				Unmatched int `json:"unmatched"`
			}
			err := c.do("POST", "/v1/feedback", map[string]any{"deployment": *deployment, "items": batch}, &ans)
			if err != nil {
				if start > 0 {
					err = fmt.Errorf("%w\nThe labels up to %s of %s are taken: send the ones after it again", err, labels[start-1].where, file)
				}
				return fail(err)
			}
			matched += ans.Matched
			unmatched += ans.Unmatched
		}
		if cf.format == "json" {
			printJSON(map[string]int{"matched": matched, "unmatched": unmatched})
			return 0
		}
		line := plural(matched, "label", "labels") + " matched a logged request"
		switch {
		case unmatched == 1:
			line += "; 1 label matched none yet: it is kept until its request is logged"
		case unmatched > 1:
			line += fmt.Sprintf("; %d labels matched none yet: each is kept until its request is logged", unmatched)
		}
		fmt.Println(line)
		return 0
	}}
}

// readFeedbackFile reads labels from JSON Lines or a JSON array ("-":
// stdin). Each needs an id and a label, and nothing else; the node judges
// the label against its request's model.
func readFeedbackFile(file string) ([]feedbackLabel, error) {
	var src []byte
	var err error
	if file == "-" {
		src, err = io.ReadAll(os.Stdin)
	} else {
		src, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, err
	}
	decode := func(b []byte, where string) (feedbackLabel, error) {
		l := feedbackLabel{where: where}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			return l, fmt.Errorf("%s, %s: want {\"id\": \"REQUEST_ID\", \"label\": LABEL}: %v", file, where, err)
		}
		if l.ID == "" || len(l.Label) == 0 || string(l.Label) == "null" {
			return l, fmt.Errorf("%s, %s: want {\"id\": \"REQUEST_ID\", \"label\": LABEL}: the id or the label is missing", file, where)
		}
		return l, nil
	}
	var labels []feedbackLabel
	if trimmed := bytes.TrimSpace(src); len(trimmed) > 0 && trimmed[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(trimmed, &items); err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				return nil, fmt.Errorf("%s:%d: %v", file, lineAt(trimmed, se.Offset), err)
			}
			return nil, fmt.Errorf("%s: %v", file, err)
		}
		for i, it := range items {
			l, err := decode(it, "item "+strconv.Itoa(i+1))
			if err != nil {
				return nil, err
			}
			labels = append(labels, l)
		}
	} else {
		sc := bufio.NewScanner(bytes.NewReader(src))
		sc.Buffer(make([]byte, 64*1024), len(src)+1)
		for n := 1; sc.Scan(); n++ {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			l, err := decode(line, "line "+strconv.Itoa(n))
			if err != nil {
				return nil, err
			}
			labels = append(labels, l)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	}
	if len(labels) == 0 {
		return nil, fmt.Errorf("%s holds no label", file)
	}
	return labels, nil
}

// Alert rules and alerts.

// alertRulePath is the path of an alert rule.
func alertRulePath(name string) string {
	return "/v1/alert-rules/" + url.PathEscape(name)
}

const alertsApplyHelp = `Usage: kiln alerts apply [flags] FILE

  Creates or replaces the alert rule FILE declares, as JSON. A replaced
  rule's alert starts again from inactive.

    {
      "name": "iris-drift",
      "deployment": "iris",
      "condition": "drift.share_drifted > 0.25 && drift.samples >= 100",
      "for": "5m",
      "window": "5m",
      "actions": [
        {"kind": "webhook", "url": "https://hooks.example.com/kiln"},
        {"kind": "rollback"},
        {"kind": "run_pipeline", "pipeline": "retrain", "params": {"why": "drift"}}
      ]
    }

  condition is true while the alert should be active. It reads the latest
  drift check (drift.share_drifted, drift.drifted, drift.samples,
  drift.age_seconds, drift.features["COLUMN"].statistic, .p_value and
  .drift, drift.prediction.drift ...), the live performance over window
  (performance.labeled, .accuracy, .f1, .auc, .logloss, .rmse, .mae), and
  the window's serving stats (latency.p50_ms, .p95_ms, .p99_ms,
  errors.rate, errors.count, requests, and canary.version, .weight,
  .requests, .errors.rate, .latency.p99_ms ... of a canary). The alert fires
  once the condition has held for "for" (default 0s); "window" defaults to
  5m. Its actions then run, with the permissions of the token that applied
  the rule: a webhook is POSTed the alert, rollback restores the
  deployment's previous traffic, run_pipeline starts a run with params.

  The node checks the rule (the condition against the names above and the
  monitor's columns) and names the field at fault.` + alertsConnUsage

func alertsApplyCommand() *command {
	return &command{synopsis: "Create or replace an alert rule from a JSON file", help: alertsApplyHelp, run: func(args []string) int {
		fs, cf := newClientFlags("alerts apply")
		c, err := connect(fs, cf, args, 1, alertsApplyHelp)
		if err != nil {
			return fail(err)
		}
		name, body, err := readAlertRuleFile(fs.Arg(0))
		if err != nil {
			return fail(err)
		}
		var raw json.RawMessage
		if err := c.do("PUT", alertRulePath(name), body, &raw); err != nil {
			return fail(fmt.Errorf("alert rule %s: %w", name, err))
		}
		if cf.format == "json" {
			printJSON(raw)
			return 0
		}
		var r structs.AlertRule
		if err := json.Unmarshal(raw, &r); err != nil {
			return fail(fmt.Errorf("alert rule %s: %w", name, err))
		}
		fmt.Printf("Applied alert rule %s on deployment %s (%s)\n", name, r.Spec.Deployment, plural(len(r.Spec.Actions), "action", "actions"))
		return 0
	}}
}

// readAlertRuleFile reads a rule file for its name; the JSON goes out as
// written, for the node to judge.
func readAlertRuleFile(path string) (string, json.RawMessage, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return "", nil, err
	}
	var rule *struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(src, &rule); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return "", nil, fmt.Errorf("%s:%d: %v", path, lineAt(src, se.Offset), err)
		}
		return "", nil, fmt.Errorf("%s: an alert rule is a JSON object with a string name: %v", path, err)
	}
	if rule == nil || rule.Name == "" {
		return "", nil, fmt.Errorf("%s: the rule has no \"name\"", path)
	}
	return rule.Name, json.RawMessage(src), nil
}

func alertsRulesCommand() *command {
	usage := "Usage: kiln alerts rules [flags]\n\n  Lists alert rules: their deployment, condition, for, window and actions." + alertsConnUsage
	return &command{synopsis: "List alert rules", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("alerts rules")
		c, err := connect(fs, cf, args, 0, usage)
		if err != nil {
			return fail(err)
		}
		return printList(c, cf, "/v1/alert-rules", []string{"NAME", "DEPLOYMENT", "CONDITION", "FOR", "WINDOW", "ACTIONS"}, func(r map[string]any) []string {
			spec, _ := r["spec"].(map[string]any)
			var kinds []string
			for _, a := range asMaps(spec["actions"]) {
				kinds = append(kinds, str(a["kind"]))
			}
			return []string{str(spec["name"]), str(spec["deployment"]), cutText(str(spec["condition"]), monitorCellWidth),
				str(spec["for"]), str(spec["window"]), dash(strings.Join(kinds, ","))}
		})
	}}
}

const alertsListHelp = `Usage: kiln alerts list [flags]

  Lists the alerts of the rules, firing first: the state (inactive, pending
  while the condition has held for less than the rule's for, firing,
  resolved), since when, the condition's value when last evaluated, how
  each action of the current firing went (kind:status), and who
  acknowledged it.

  -state STATE   only the alerts in STATE` + alertsConnUsage

func alertsListCommand() *command {
	return &command{synopsis: "List alerts and their actions", help: alertsListHelp, run: func(args []string) int {
		fs, cf := newClientFlags("alerts list")
		state := fs.String("state", "", "")
		c, err := connect(fs, cf, args, 0, alertsListHelp)
		if err != nil {
			return fail(err)
		}
		path := "/v1/alerts"
		if *state != "" {
			path += "?" + url.Values{"state": {*state}}.Encode()
		}
		return printList(c, cf, path, []string{"RULE", "DEPLOYMENT", "STATE", "SINCE", "VALUE", "ACTIONS", "ACKED"}, alertRow)
	}}
}

// alertRow is an alert as the cells of list's table.
func alertRow(a map[string]any) []string {
	var actions []string
	for _, act := range asMaps(a["actions"]) {
		actions = append(actions, str(act["kind"])+":"+str(act["status"]))
	}
	acked := "-"
	if by := str(a["acked_by"]); by != "" {
		acked = by + " " + jobTime(a["acked_at"])
	}
	return []string{str(a["rule"]), str(a["deployment"]), str(a["state"]), jobTime(a["since"]),
		statText(num(a["value"])), dash(strings.Join(actions, ",")), acked}
}

func alertsAckCommand() *command {
	usage := `Usage: kiln alerts ack [flags] RULE

  Acknowledges a rule's firing alert: it shows who has seen it until it
  fires again. Only a firing alert is acknowledged.` + alertsConnUsage
	return &command{synopsis: "Acknowledge a firing alert", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("alerts ack")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		rule := fs.Arg(0)
		var raw json.RawMessage
		if err := c.do("POST", "/v1/alerts/"+url.PathEscape(rule)+"/ack", nil, &raw); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(raw)
			return 0
		}
		var a structs.Alert
		if err := json.Unmarshal(raw, &a); err != nil {
			return fail(fmt.Errorf("alert %s: %w", rule, err))
		}
		fmt.Printf("Acknowledged alert %s of deployment %s, firing since %s, as %s\n", rule, a.Deployment, checkTime(a.Since), a.AckedBy)
		return 0
	}}
}

func alertsDeleteCommand() *command {
	return deleteCommand("alerts delete", "Delete an alert rule",
		"Usage: kiln alerts delete [flags] RULE\n\n  Deletes an alert rule and its alert."+alertsConnUsage, alertRulePath, "alert rule")
}
