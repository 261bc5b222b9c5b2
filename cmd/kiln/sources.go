package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
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

// The sources noun: declare data sources from an HCL file, run them, feed
// push sources, and see what they read (DESIGN.md §8).

const sourcesConnUsage = `
  Every sources command takes -address, -token (or KILN_TOKEN), -format
  (table or json: json prints the node's answer), and the HTTPS flags
  -ca-cert, -client-cert, -client-key.`

// sourcePollInterval is how often run -wait reads the source again. Tests
// shorten it.
var sourcePollInterval = 500 * time.Millisecond

// sourceErrorWidth is how many characters of an error a table shows; get
// and -format json have all of it.
const sourceErrorWidth = 60

func sourcesCommands() map[string]*command {
	return map[string]*command{
		"sources":        groupCommand("Declare data sources, run them, push records", "kiln sources <apply|list|get|run|pause|resume|reset|runs|push>"),
		"sources apply":  sourcesApplyCommand(),
		"sources list":   sourcesListCommand(),
		"sources get":    sourcesGetCommand(),
		"sources run":    sourcesRunCommand(),
		"sources pause":  sourcesStateCommand("pause", "Paused", "Pause a source: it is not read and refuses pushes"),
		"sources resume": sourcesStateCommand("resume", "Resumed", "Resume a paused source"),
		"sources reset":  sourcesStateCommand("reset", "Reset", "Reset a file, dataset or snapshot HTTP source: its next run reads everything again, identical rows stored once (fills a view declared after the fact)"),
		"sources runs":   sourcesRunsCommand(),
		"sources push":   sourcesPushCommand(),
	}
}

const sourcesApplyHelp = `Usage: kiln sources apply [flags] FILE.hcl

  Creates or replaces each source FILE declares and prints it. A source
  keeps where it has read to when its spec is replaced; its kind may not
  change. Entities, feature views and feature services in FILE are left
  out: kiln features apply FILE applies all of them with a plan.

    source "txns" {                   # the label is the name
      kind        = "postgres"        # postgres, http, file, kafka, nats, push
      schedule    = "5m"              # an interval or a cron expression, for
                                      # postgres, http and file; kafka, nats
                                      # and push read continuously
      dataset     = "txns"            # the dataset the runs write (default:
                                      # the source's name)
      description = "card transactions"
      schema = { user_id = "int", ts = "timestamp", amount = "float" }
                                      # required for kafka, nats and push;
                                      # else inferred from the first records
      postgres {
        conn               = "postgres://kiln@db/shop"   # no password here:
        password {                                       # a file or a variable
          env = "PGPASSWORD"                             # on the node that
        }                                                # reads the source
        query              = "SELECT user_id, ts, amount FROM txns"
        incremental_column = "ts"     # only rows past the last run's
      }
      expect "not_null" {             # records failing a rule are quarantined
        column = "user_id"
      }
      expect "range" {
        column = "amount"
        min    = 0
        max    = 10000
      }
      expect "allowed" {
        column = "country"
        values = ["fr", "de"]
      }
      expect "row_count_between" {    # a run failing it is failed_validation
        min = 1
      }
    }

  The other kinds' blocks:

    http {
      url           = "https://api.example.com/txns"
      format        = "json"          # json, ndjson or csv
      records_field = "items"         # the array in a JSON object answer
      token {
        file = "/etc/kiln/tok"        # sent as a bearer token
      }
      pagination {
        type         = "cursor"       # or "page"
        param        = "cursor"
        cursor_field = "next"
      }
    }
    file {
      path   = "/data/*.csv"          # a glob on the node
      format = "csv"                  # csv, tsv, jsonl or parquet
      node   = "node-1"               # the node the files are on
    }
    kafka {
      brokers      = ["k:9092"]
      topics       = ["txns"]
      group        = "kiln-txns"
      start_offset = "earliest"       # or "latest"
    }
    nats {
      url      = "nats://n:4222"
      stream   = "TXNS"
      subjects = ["txns.>"]
      durable  = "kiln-txns"
      token {
        env = "NATS_TOKEN"
      }
    }

  A push source has no block: producers send it records with kiln sources
  push.` + sourcesConnUsage

func sourcesApplyCommand() *command {
	return &command{synopsis: "Create or replace the sources an HCL file declares", help: sourcesApplyHelp, run: func(args []string) int {
		fs, cf := newClientFlags("sources apply")
		c, err := connect(fs, cf, args, 1, sourcesApplyHelp)
		if err != nil {
			return fail(err)
		}
		path := fs.Arg(0)
		file, err := readFeaturesFile(path)
		if err != nil {
			return fail(err)
		}
		rest := featureObjectsLine(file)
		if len(file.Sources) == 0 {
			return fail(fmt.Errorf("%s declares no source, but %s: apply them with kiln features apply %s", path, rest, path))
		}
		applied := make([]map[string]any, 0, len(file.Sources))
		for _, spec := range file.Sources {
			var s map[string]any
			if err := c.do("POST", "/v1/sources", spec, &s); err != nil {
				return fail(fmt.Errorf("source %s: %w", spec.Name, err))
			}
			applied = append(applied, s)
			if cf.format != "json" {
				fmt.Printf("Applied source %s (%s)\n", spec.Name, spec.Kind)
			}
		}
		if cf.format == "json" {
			printJSON(map[string]any{"items": applied})
		}
		if rest != "" {
			fmt.Fprintf(os.Stderr, "%s also declares %s, not applied: apply them with kiln features apply %s\n", path, rest, path)
		}
		return 0
	}}
}

// featureObjectsLine counts a file's entities, views and services, as
// "1 entity, 2 feature views"; "" when it has none.
func featureObjectsLine(f *node.FeaturesFile) string {
	var parts []string
	for _, k := range []struct {
		n           int
		one, plural string
	}{
		{len(f.Entities), "entity", "entities"},
		{len(f.Views), "feature view", "feature views"},
		{len(f.Services), "feature service", "feature services"},
	} {
		switch {
		case k.n == 1:
			parts = append(parts, "1 "+k.one)
		case k.n > 1:
			parts = append(parts, strconv.Itoa(k.n)+" "+k.plural)
		}
	}
	return strings.Join(parts, ", ")
}

func sourcePath(name, suffix string) string {
	return "/v1/sources/" + url.PathEscape(name) + suffix
}

func sourcesListCommand() *command {
	usage := "Usage: kiln sources list [flags]\n\n  Lists sources: where each runs, whether it is paused, its totals, its last\n  run and its last error." + sourcesConnUsage
	return &command{synopsis: "List sources", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("sources list")
		c, err := connect(fs, cf, args, 0, usage)
		if err != nil {
			return fail(err)
		}
		return printList(c, cf, "/v1/sources",
			[]string{"NAME", "KIND", "NODE", "STATE", "READ", "ACCEPTED", "QUARANTINED", "LAST_RUN", "LAST_ERROR"},
			func(s map[string]any) []string {
				spec, _ := s["spec"].(map[string]any)
				return []string{
					str(spec["name"]), str(spec["kind"]), dash(str(s["node"])), sourceState(s),
					str(s["read"]), str(s["accepted"]), str(s["quarantined"]),
					dash(runLabel(lastRun(s))), dash(cutText(str(s["last_error"]), sourceErrorWidth)),
				}
			})
	}}
}

// sourceState is paused or active.
func sourceState(s map[string]any) string {
	if s["paused"] == true {
		return "paused"
	}
	return "active"
}

// lastRun is a decoded source's last run; nil when it has none.
func lastRun(s map[string]any) map[string]any {
	r, _ := s["last_run"].(map[string]any)
	return r
}

// runLabel names a run and its state, as #3(succeeded); "" for none.
func runLabel(r map[string]any) string {
	if r == nil {
		return ""
	}
	return "#" + str(r["seq"]) + "(" + str(r["state"]) + ")"
}

// cutText fits text to a table cell of n characters.
func cutText(s string, n int) string {
	s = tableCell(s)
	if utf8.RuneCountInString(s) > n {
		s = string([]rune(s)[:n-3]) + "..."
	}
	return s
}

// sourceTime renders a decoded time, "-" for none (Go's zero time).
func sourceTime(v any) string {
	s := str(v)
	if s == "" || strings.HasPrefix(s, "0001-01-01") {
		return "-"
	}
	return s
}

// runDuration renders a run's length, "-" while it runs.
func runDuration(r map[string]any) string {
	if str(r["state"]) == structs.SourceRunRunning {
		return "-"
	}
	return (time.Duration(num(r["duration_ms"])) * time.Millisecond).String()
}

func sourcesGetCommand() *command {
	usage := "Usage: kiln sources get [flags] NAME\n\n  Shows a source: its spec, where it has read to, its totals, its last run\n  with a sample of what it quarantined, and its last error." + sourcesConnUsage
	return &command{synopsis: "Show a source", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("sources get")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		var s map[string]any
		if err := c.do("GET", sourcePath(fs.Arg(0), ""), nil, &s); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(s)
			return 0
		}
		var sample []map[string]any
		if r := lastRun(s); r != nil {
			full, err := sourceRun(c, fs.Arg(0), r["seq"])
			if err != nil {
				return fail(err)
			}
			sample = asMaps(full["quarantine"])
		}
		printSource(os.Stdout, s, sample)
		return 0
	}}
}

// sourceRun reads run seq of a source with its quarantine sample, which
// the source's last_run leaves out; nil when the source no longer keeps
// it.
func sourceRun(c *client, name string, seq any) (map[string]any, error) {
	runs, err := listAll(c, sourcePath(name, "/runs"))
	if err != nil {
		return nil, err
	}
	for _, r := range runs {
		if num(r["seq"]) == num(seq) {
			return r, nil
		}
	}
	return nil, nil
}

// printSource writes a decoded source as lines of fields, then its last
// run's quarantine sample.
func printSource(w io.Writer, s map[string]any, sample []map[string]any) {
	spec, _ := s["spec"].(map[string]any)
	kind := str(spec["kind"])
	schedule := dash(str(spec["schedule"]))
	if structs.StreamingKind(kind) {
		schedule = "continuous"
	}
	var schema []string
	if m, ok := spec["schema"].(map[string]any); ok {
		for _, col := range slices.Sorted(maps.Keys(m)) {
			schema = append(schema, col+":"+str(m[col]))
		}
	}
	var rules []string
	for _, e := range asMaps(spec["expectations"]) {
		rule := str(e["rule"])
		if col := str(e["column"]); col != "" {
			rule += "(" + col + ")"
		}
		rules = append(rules, rule)
	}
	var position []string
	if m, ok := s["position"].(map[string]any); ok {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			position = append(position, k+"="+str(m[k]))
		}
	}
	fields := [][2]string{
		{"Source", str(spec["name"]) + " (" + kind + ")"},
		{"State", sourceState(s)},
		{"Dataset", dash(str(spec["dataset"]))},
		{"Schedule", schedule},
		{"Node", dash(str(s["node"]))},
		{"Schema", dash(strings.Join(schema, ", "))},
		{"Expectations", dash(strings.Join(rules, ", "))},
		{"Position", dash(strings.Join(position, ", "))},
		{"Totals", fmt.Sprintf("read %s, accepted %s, quarantined %s", str(s["read"]), str(s["accepted"]), str(s["quarantined"]))},
		{"Last ingest", sourceTime(s["last_ingest_at"])},
		{"Runs", fmt.Sprintf("%s (triggers %s)", str(s["runs"]), str(s["triggers"]))},
	}
	r := lastRun(s)
	if r != nil {
		line := fmt.Sprintf("%s, started %s, took %s: read %s, accepted %s, quarantined %s",
			runLabel(r), sourceTime(r["started_at"]), runDuration(r), str(r["read"]), str(r["accepted"]), str(r["quarantined"]))
		if d := str(r["dataset"]); d != "" {
			line += " into " + d
		}
		fields = append(fields, [2]string{"Last run", line})
		if failed := stringsOf(r["failed"]); len(failed) > 0 {
			fields = append(fields, [2]string{"Failed checks", strings.Join(failed, ", ")})
		}
	} else {
		fields = append(fields, [2]string{"Last run", "-"})
	}
	if e := str(s["last_error"]); e != "" {
		fields = append(fields, [2]string{"Last error", tableCell(e) + " (at " + sourceTime(s["last_error_at"]) + ")"})
	}
	if n := num(s["failures"]); n > 0 {
		fields = append(fields, [2]string{"Failures", str(s["failures"]) + " in a row"})
	}
	for _, f := range fields {
		fmt.Fprintf(w, "%-14s%s\n", f[0]+":", f[1])
	}
	if len(sample) > 0 {
		fmt.Fprintln(w)
		writeQuarantine(w, sample)
	}
}

// writeQuarantine writes quarantined records as a table.
func writeQuarantine(w io.Writer, sample []map[string]any) {
	rows := make([][]string, len(sample))
	for i, q := range sample {
		rows[i] = []string{tableCell(str(q["offset"])), str(q["rule"]), cutText(str(q["reason"]), sourceErrorWidth), cutText(str(q["raw"]), 40)}
	}
	writeTable(w, []string{"OFFSET", "RULE", "REASON", "RAW"}, rows)
}

const sourcesRunHelp = `Usage: kiln sources run [flags] NAME

  Asks for a run of a postgres, http or file source now, and prints the
  trigger it answers. A run already going on is followed by one more run,
  not one per request. Kafka, nats and push sources read continuously and
  have no runs to ask for.

  -wait   follow the source until a run that answers this request ends,
          then print it. The exit code is 0 when the run succeeded, 1
          otherwise (failed, or failed_validation: its records are kept but
          marked). Ctrl-C stops following, not the run.` + sourcesConnUsage

func sourcesRunCommand() *command {
	return &command{synopsis: "Run a source now", help: sourcesRunHelp, run: func(args []string) int {
		fs, cf := newClientFlags("sources run")
		wait := fs.Bool("wait", false, "")
		c, err := connect(fs, cf, args, 1, sourcesRunHelp)
		if err != nil {
			return fail(err)
		}
		name := fs.Arg(0)
		var trig map[string]any
		if err := c.do("POST", sourcePath(name, "/run"), nil, &trig); err != nil {
			return fail(err)
		}
		if !*wait {
			if cf.format == "json" {
				printJSON(trig)
			} else {
				fmt.Printf("Triggered a run of source %s (trigger %s)\n", name, str(trig["trigger"]))
			}
			return 0
		}
		trigger := num(trig["trigger"])
		fmt.Fprintf(os.Stderr, "Triggered a run of source %s (trigger %s)\n", name, str(trig["trigger"]))
		answers := func(s map[string]any) bool {
			r := lastRun(s)
			return r != nil && num(r["trigger"]) >= trigger
		}
		done := func(s map[string]any) bool {
			return answers(s) && str(lastRun(s)["state"]) != structs.SourceRunRunning
		}
		see := printChanges(os.Stderr, func(s map[string]any) string {
			if !answers(s) {
				return "waiting for the run to start"
			}
			r := lastRun(s)
			return fmt.Sprintf("run %s: read %s, accepted %s, quarantined %s", runLabel(r), str(r["read"]), str(r["accepted"]), str(r["quarantined"]))
		})
		s, err := follow(c, "source", name, sourcePath(name, ""), "kiln sources get "+name, sourcePollInterval, nil, done, see)
		if err != nil {
			return fail(err)
		}
		r := lastRun(s)
		if full, err := sourceRun(c, name, r["seq"]); err != nil {
			return fail(err)
		} else if full != nil {
			r = full
		}
		if cf.format == "json" {
			printJSON(r)
		} else {
			printTable(sourceRunHeaders, [][]string{sourceRunRow(r)})
			if sample := asMaps(r["quarantine"]); len(sample) > 0 {
				fmt.Println()
				writeQuarantine(os.Stdout, sample)
			}
		}
		if state := str(r["state"]); state != structs.SourceRunSucceeded {
			msg := fmt.Sprintf("source %s run #%s %s", name, str(r["seq"]), state)
			if e := str(r["error"]); e != "" {
				msg += ": " + e
			}
			if failed := stringsOf(r["failed"]); len(failed) > 0 {
				msg += " (failed checks: " + strings.Join(failed, ", ") + ")"
			}
			return fail(errors.New(msg))
		}
		return 0
	}}
}

var sourceRunHeaders = []string{"SEQ", "STATE", "STARTED", "DURATION", "READ", "ACCEPTED", "QUARANTINED", "DATASET", "ERROR"}

func sourceRunRow(r map[string]any) []string {
	return []string{
		str(r["seq"]), str(r["state"]), sourceTime(r["started_at"]), runDuration(r),
		str(r["read"]), str(r["accepted"]), str(r["quarantined"]), dash(str(r["dataset"])),
		dash(cutText(str(r["error"]), sourceErrorWidth)),
	}
}

// sourcesStateCommand is pause, resume or reset: a POST to the verb.
func sourcesStateCommand(verb, done, what string) *command {
	usage := "Usage: kiln sources " + verb + " [flags] NAME\n\n  " + what + "." + sourcesConnUsage
	return &command{synopsis: what, help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("sources " + verb)
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		var s map[string]any
		if err := c.do("POST", sourcePath(fs.Arg(0), "/"+verb), nil, &s); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(s)
			return 0
		}
		fmt.Printf("%s source %s\n", done, fs.Arg(0))
		return 0
	}}
}

func sourcesRunsCommand() *command {
	usage := "Usage: kiln sources runs [flags] NAME\n\n  Lists a source's runs (a stream's sessions) with what each read." + sourcesConnUsage
	return &command{synopsis: "List a source's runs", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("sources runs")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		return printList(c, cf, sourcePath(fs.Arg(0), "/runs"), sourceRunHeaders, sourceRunRow)
	}}
}

const sourcesPushHelp = `Usage: kiln sources push [flags] NAME FILE.ndjson

  Sends the records of FILE (- for stdin), one JSON object a line, to push
  source NAME, streamed. The node converts them to the source's schema,
  checks its expectations and commits them in batches with their feature
  values; a bad record is quarantined, never dropped silently, and never
  stops the push. Prints the counts and the quarantined records. When the
  push fails partway, it says how many lines were committed, so that the
  rest can be sent again.` + sourcesConnUsage

func sourcesPushCommand() *command {
	return &command{synopsis: "Send NDJSON records to a push source", help: sourcesPushHelp, run: func(args []string) int {
		fs, cf := newClientFlags("sources push")
		c, err := connect(fs, cf, args, 2, sourcesPushHelp)
		if err != nil {
			return fail(err)
		}
		name, file := fs.Arg(0), fs.Arg(1)
		raw, ans, err := pushRecords(c, name, file)
		if cf.format == "json" && raw != nil {
			printJSON(raw)
		} else if raw != nil && (err == nil || ans.CommittedLines > 0) {
			printTable([]string{"READ", "ACCEPTED", "QUARANTINED", "COMMITTED_LINES"}, [][]string{{
				str(ans.Read), str(ans.Accepted), str(ans.Quarantined), str(ans.CommittedLines),
			}})
			if len(ans.Quarantine) > 0 {
				fmt.Println()
				writeQuarantine(os.Stdout, ans.Quarantine)
			}
		}
		if err != nil {
			if ans.CommittedLines > 0 {
				err = fmt.Errorf("%w\nLines 1-%d of %s are committed: send the lines after them again", err, ans.CommittedLines, file)
			}
			return fail(err)
		}
		return 0
	}}
}

// pushAnswer is the node's answer to a push, also when it failed partway.
type pushAnswer struct {
	Read           float64          `json:"read"`
	Accepted       float64          `json:"accepted"`
	Quarantined    float64          `json:"quarantined"`
	CommittedLines int64            `json:"committed_lines"`
	Quarantine     []map[string]any `json:"quarantine"`
	Error          string           `json:"error"`
	Code           string           `json:"code"`
}

// pushRecords streams file ("-": stdin) to the source's records endpoint.
// A failed push's answer still says how far it got: it comes back with
// the error, and raw is the answer as it came (nil when there was none).
func pushRecords(c *client, name, file string) (raw json.RawMessage, ans pushAnswer, err error) {
	body, size := io.Reader(os.Stdin), int64(-1)
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, ans, err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return nil, ans, err
		}
		if !st.Mode().IsRegular() {
			return nil, ans, fmt.Errorf("%s is not a regular file", file)
		}
		body, size = f, st.Size()
	}
	req, err := http.NewRequest("POST", c.base+sourcePath(name, "/records"), body)
	if err != nil {
		return nil, ans, err
	}
	if size >= 0 {
		req.ContentLength = size
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if c.token != "" {
		req.Header.Set("X-Kiln-Token", c.token)
	}
	c.http.Timeout = 0 // a large push takes as long as it takes
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, ans, c.explainTransport(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, ans, err
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		if resp.StatusCode/100 != 2 {
			return nil, ans, c.explainStatus(resp, b, &apiError{Status: resp.StatusCode})
		}
		return nil, ans, c.notKiln(resp)
	}
	if resp.StatusCode/100 != 2 {
		msg := ans.Error
		if msg == "" {
			msg = strings.TrimSpace(string(b))
		}
		return b, ans, &apiError{Status: resp.StatusCode, Message: msg, Code: ans.Code}
	}
	return b, ans, nil
}
