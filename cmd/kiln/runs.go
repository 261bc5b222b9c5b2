package main

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The runs noun: search the runs training jobs and MLflow clients record,
// show one, and compare several side by side (DESIGN.md §7).

const runsConnUsage = `
  Every runs command takes -address, -token (or KILN_TOKEN), -format
  (table or json: json prints the node's answer), and the HTTPS flags
  -ca-cert, -client-cert, -client-key.`

// runListMetricColumns is how many metric columns runs list shows at most;
// more would not fit a terminal next to the fixed ones.
const runListMetricColumns = 6

// runIDLength is the length of a full run ID (32 hex digits, as MLflow's);
// a shorter one given to get or compare is taken as a prefix.
const runIDLength = 32

func runsCommands() map[string]*command {
	return map[string]*command{
		"runs":         groupCommand("Search and compare training runs", "kiln runs <list|get|compare>"),
		"runs list":    runsListCommand(),
		"runs get":     runsGetCommand(),
		"runs compare": runsCompareCommand(),
	}
}

const runsListHelp = `Usage: kiln runs list [flags]

  Lists active runs, newest first unless -order-by says otherwise: ID,
  name, experiment, status, duration, and a column per metric the listed
  runs have (at most 6: those -filter and -order-by name first, then the
  others by name; -format json shows them all).

  -experiment NAME   only the runs of this experiment
  -filter EXPR       MLflow's search syntax, such as
                     'metrics.auc > 0.9 and params.max_depth > 4'
  -order-by CLAUSES  comma-separated, such as 'metrics.auc desc'
  -limit N           only the first N runs (1 to 10000); without it every
                     matching run is listed` + runsConnUsage

func runsListCommand() *command {
	return &command{synopsis: "Search training runs", help: runsListHelp, run: runRunsList}
}

func runRunsList(args []string) int {
	fs, cf := newClientFlags("runs list")
	experiment := fs.String("experiment", "", "")
	filter := fs.String("filter", "", "")
	orderBy := fs.String("order-by", "", "")
	limit := fs.Int("limit", 0, "")
	c, err := connect(fs, cf, args, 0, runsListHelp)
	if err != nil {
		return fail(err)
	}
	if isFlagSet(fs, "limit") && (*limit < 1 || *limit > 10000) {
		return fail(fmt.Errorf("-limit must be a number of runs from 1 to 10000, not %d", *limit))
	}
	q := runListQuery(*experiment, *filter, *orderBy)
	var runs []map[string]any
	more := false
	if *limit > 0 {
		// One page: the node's order decides which runs are the first N.
		q.Set("limit", strconv.Itoa(*limit))
		var page map[string]any
		if err := c.do("GET", "/v1/runs?"+q.Encode(), nil, &page); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(page)
			return 0
		}
		runs, more = items(page), str(page["next_cursor"]) != ""
	} else {
		path := "/v1/runs"
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		if runs, err = listAll(c, path); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(map[string]any{"items": runs})
			return 0
		}
	}
	metrics, hidden := runListMetrics(runs, *filter+" "+*orderBy)
	headers := []string{"ID", "NAME", "EXPERIMENT", "STATUS", "DURATION"}
	for _, k := range metrics {
		headers = append(headers, tableCell(k))
	}
	rows := make([][]string, len(runs))
	for i, r := range runs {
		row := []string{shortRunID(str(r["id"])), dash(tableCell(str(r["name"]))), tableCell(str(r["experiment"])), str(r["status"]), jobDuration(r)}
		m, _ := r["metrics"].(map[string]any)
		for _, k := range metrics {
			cell := "-"
			if v, ok := m[k].(float64); ok {
				cell = fmt.Sprintf("%.4g", v)
			}
			row = append(row, cell)
		}
		rows[i] = row
	}
	printTable(headers, rows)
	if len(hidden) > 0 {
		fmt.Fprintf(os.Stderr, "%d more metric(s) not shown: %s (kiln runs get ID shows them all)\n", len(hidden), strings.Join(hidden, ", "))
	}
	if more {
		fmt.Fprintf(os.Stderr, "More runs match: these are the first %d\n", *limit)
	}
	return 0
}

// runListQuery builds the search's query parameters from list's flags;
// the node checks the filter and order_by syntax.
func runListQuery(experiment, filter, orderBy string) url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"experiment": experiment, "filter": filter, "order_by": orderBy} {
		if v = strings.TrimSpace(v); v != "" {
			q.Set(k, v)
		}
	}
	return q
}

// runListMetrics picks the metric columns of a list: every key some run
// has, those that search (the filter and order_by text) names first, then
// the others by name, at most runListMetricColumns; the shown ones are
// sorted by name. hidden are the keys left out, by name.
func runListMetrics(runs []map[string]any, search string) (shown, hidden []string) {
	var keys []string
	for _, r := range runs {
		m, _ := r["metrics"].(map[string]any)
		for k := range m {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	named := func(k string) bool { return searchNamesMetric(search, k) }
	ranked := append(slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return !named(k) }),
		slices.DeleteFunc(slices.Clone(keys), named)...)
	if len(ranked) <= runListMetricColumns {
		return keys, nil
	}
	shown, hidden = ranked[:runListMetricColumns], ranked[runListMetricColumns:]
	slices.Sort(shown)
	slices.Sort(hidden)
	return shown, hidden
}

// searchNamesMetric reports whether a filter or order_by text names metric
// key, bare or quoted, after one of the metric prefixes.
func searchNamesMetric(search, key string) bool {
	for _, prefix := range []string{"metrics.", "metric."} {
		for _, form := range []string{"`" + key + "`", `"` + key + `"`, key} {
			needle := prefix + form
			for rest := search; ; {
				i := strings.Index(rest, needle)
				if i < 0 {
					break
				}
				// A bare key must end there, not run on into a longer one
				// (metrics.loss is not metrics.loss_val).
				after := rest[i+len(needle):]
				if form != key || after == "" || !isKeyByte(after[0]) {
					return true
				}
				rest = after
			}
		}
	}
	return false
}

// isKeyByte reports whether c may continue a bare metric key in a search.
func isKeyByte(c byte) bool {
	return c == '_' || c == '.' || c == '-' || c >= 0x80 ||
		('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// shortRunID is the first 12 characters of a run ID, enough to tell runs
// apart in a table; get and compare take it as a prefix.
func shortRunID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// getRun reads a run by ID, or by a prefix of one (as list shows it) when
// no run has that ID: the prefix must match exactly one active run.
func getRun(c *client, ref string) (map[string]any, error) {
	var r map[string]any
	err := c.do("GET", "/v1/runs/"+url.PathEscape(ref), nil, &r)
	var ae *apiError
	if err == nil || len(ref) >= runIDLength || !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		return r, err
	}
	all, lerr := listAll(c, "/v1/runs")
	if lerr != nil {
		return nil, err
	}
	var matches []map[string]any
	for _, run := range all {
		if strings.HasPrefix(str(run["id"]), ref) {
			matches = append(matches, run)
		}
	}
	switch len(matches) {
	case 0:
		return nil, err
	case 1:
		return matches[0], nil
	}
	ids := make([]string, len(matches))
	for i, m := range matches {
		ids[i] = str(m["id"])
	}
	return nil, fmt.Errorf("run ID prefix %q matches %d runs (%s): give more of the ID", ref, len(matches), strings.Join(ids, ", "))
}

func runsGetCommand() *command {
	usage := `Usage: kiln runs get [flags] ID

  Shows a run: its experiment, status, job and times, then its params, its
  metrics (each key's latest value), its tags and its artifacts. ID may be
  the 12-character prefix runs list shows.` + runsConnUsage
	return &command{synopsis: "Show a training run", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("runs get")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		r, err := getRun(c, fs.Arg(0))
		if err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(r)
			return 0
		}
		writeRun(r)
		return 0
	}}
}

// writeRun prints a run as get shows it: header lines, then a table each of
// its params, metrics and tags, and its artifacts; an empty one is left out.
func writeRun(r map[string]any) {
	status := str(r["status"])
	if stage := str(r["lifecycle_stage"]); stage != "" && stage != "active" {
		status += " (" + stage + ")"
	}
	header := [][2]string{
		{"ID", str(r["id"])},
		{"Name", dash(str(r["name"]))},
		{"Experiment", dash(str(r["experiment"]))},
		{"Status", status},
		{"Job", dash(str(r["job_id"]))},
		{"Start", runTime(r["start_time"])},
		{"End", runTime(r["end_time"])},
		{"Duration", jobDuration(r)},
	}
	for _, h := range header {
		fmt.Printf("%-12s%s\n", h[0]+":", h[1])
	}
	params, _ := r["params"].(map[string]any)
	writeKeyValues("PARAM", params, str)
	metrics, _ := r["metrics"].(map[string]any)
	writeKeyValues("METRIC", metrics, func(v any) string { return strconv.FormatFloat(num(v), 'g', 6, 64) })
	tags, _ := r["tags"].(map[string]any)
	writeKeyValues("TAG", tags, str)
	if arts := stringsOf(r["artifacts"]); len(arts) > 0 {
		fmt.Println("\nARTIFACTS")
		for _, a := range arts {
			fmt.Println("  " + tableCell(a))
		}
	}
}

// writeKeyValues prints a map as a KIND VALUE table by key, after a blank
// line; nothing when it is empty.
func writeKeyValues(kind string, m map[string]any, render func(any) string) {
	if len(m) == 0 {
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	rows := make([][]string, len(keys))
	for i, k := range keys {
		rows[i] = []string{tableCell(k), tableCell(render(m[k]))}
	}
	fmt.Println()
	printTable([]string{kind, "VALUE"}, rows)
}

// runTime renders a run's time to the second; a run not ended, or one
// whose client gave no start, is "-".
func runTime(v any) string {
	if t, err := time.Parse(time.RFC3339Nano, str(v)); err == nil && t.UnixMilli() == 0 {
		return "-"
	}
	return jobTime(v)
}

func runsCompareCommand() *command {
	usage := `Usage: kiln runs compare [flags] ID ID...

  Compares two or more runs side by side: a row per param, then per
  metric, a column per run (headed by its name, or its short ID when runs
  share a name). In each metric row where the runs differ, '*' marks the
  best value: the lowest for keys holding loss, mse, mae or error, the
  highest for the others. IDs may be the prefixes runs list shows.` + runsConnUsage
	return &command{synopsis: "Compare training runs side by side", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("runs compare")
		c, err := connect(fs, cf, args, -2, usage)
		if err != nil {
			return fail(err)
		}
		runs := make([]map[string]any, fs.NArg())
		for i, ref := range fs.Args() {
			if runs[i], err = getRun(c, ref); err != nil {
				return fail(fmt.Errorf("run %s: %w", ref, err))
			}
		}
		if cf.format == "json" {
			printJSON(map[string]any{"items": runs})
			return 0
		}
		headers, rows := compareRuns(runs)
		printTable(headers, rows)
		return 0
	}}
}

// compareRuns lays runs out side by side: the params (param.KEY), then the
// metrics (metric.KEY), each the union of the runs' keys by name, "-"
// where a run lacks one, '*' after the best value of a metric row.
func compareRuns(runs []map[string]any) (headers []string, rows [][]string) {
	headers = append([]string{"KEY"}, compareHeaders(runs)...)
	for _, k := range unionKeys(runs, "params") {
		row := []string{"param." + tableCell(k)}
		for _, r := range runs {
			p, _ := r["params"].(map[string]any)
			if v, ok := p[k]; ok {
				row = append(row, dash(tableCell(str(v))))
			} else {
				row = append(row, "-")
			}
		}
		rows = append(rows, row)
	}
	for _, k := range unionKeys(runs, "metrics") {
		values := make([]*float64, len(runs))
		for i, r := range runs {
			m, _ := r["metrics"].(map[string]any)
			if v, ok := m[k].(float64); ok {
				values[i] = &v
			}
		}
		best := bestValues(values, lowerIsBetter(k))
		row := []string{"metric." + tableCell(k)}
		for i, v := range values {
			switch {
			case v == nil:
				row = append(row, "-")
			case best[i]:
				row = append(row, strconv.FormatFloat(*v, 'g', 6, 64)+"*")
			default:
				row = append(row, strconv.FormatFloat(*v, 'g', 6, 64))
			}
		}
		rows = append(rows, row)
	}
	return headers, rows
}

// compareHeaders heads each run's column with its name, or with its short
// ID when it has none or shares it with another compared run.
func compareHeaders(runs []map[string]any) []string {
	count := map[string]int{}
	for _, r := range runs {
		count[str(r["name"])]++
	}
	out := make([]string, len(runs))
	for i, r := range runs {
		name := str(r["name"])
		if name == "" || count[name] > 1 {
			name = shortRunID(str(r["id"]))
		}
		out[i] = tableCell(name)
	}
	return out
}

// unionKeys is every key of the field (params or metrics) some run has,
// by name.
func unionKeys(runs []map[string]any, field string) []string {
	var keys []string
	for _, r := range runs {
		m, _ := r[field].(map[string]any)
		for k := range m {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// lowerIsBetter reports whether a metric is an error or a loss, whose best
// value is the lowest.
func lowerIsBetter(key string) bool {
	k := strings.ToLower(key)
	for _, s := range []string{"loss", "mse", "mae", "error"} { // mse covers rmse
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// bestValues marks the values equal to the best (the lowest when lower,
// else the highest), ties all marked. A row where fewer than two runs have
// a value, or every value is the same, has no best.
func bestValues(values []*float64, lower bool) []bool {
	best := make([]bool, len(values))
	var have []float64
	for _, v := range values {
		if v != nil && !math.IsNaN(*v) {
			have = append(have, *v)
		}
	}
	if len(have) < 2 || slices.Min(have) == slices.Max(have) {
		return best
	}
	target := slices.Max(have)
	if lower {
		target = slices.Min(have)
	}
	for i, v := range values {
		best[i] = v != nil && *v == target
	}
	return best
}
