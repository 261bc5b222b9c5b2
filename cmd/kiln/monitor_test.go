package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/raftfsm/structs"
)

const (
	irisCSV    = "../../ml/testdata/datasets/iris.csv"
	irisLinear = "../../ml/testdata/linear/iris.json"
)

// kilnOK runs the CLI and fails t unless it exits 0; it returns stdout.
func kilnOK(t *testing.T, kiln func(args ...string) (int, string, string), args ...string) string {
	t.Helper()
	code, out, errOut := kiln(args...)
	if code != 0 {
		t.Fatalf("kiln %s = %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// irisRows reads iris.csv's four features, as JSON arrays, and its species
// as the linear model's class index (setosa 0, versicolor 1, virginica 2).
func irisRows(t *testing.T) (rows []string, classes []int) {
	t.Helper()
	f, err := os.Open(irisCSV)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	index := map[string]int{"setosa": 0, "versicolor": 1, "virginica": 2}
	for _, r := range recs[1:] {
		rows = append(rows, "["+strings.Join(r[1:5], ",")+"]")
		classes = append(classes, index[r[5]])
	}
	return rows, classes
}

// servedIris starts an agent serving the linear iris model, with dataset
// iris:1 its reference, and sends each row of iris.csv to it as a request
// of its own, with ID r<row>. It returns the agent's address once the
// node's prediction log holds every request.
func servedIris(t *testing.T) (addr string, classes []int) {
	t.Helper()
	addr = testAgent(t)
	kiln := kilnAt(t, addr)
	kilnOK(t, kiln, "datasets", "push", "iris", irisCSV)
	kilnOK(t, kiln, "models", "create", "iris")
	kilnOK(t, kiln, "models", "push", "iris", irisLinear)
	kilnOK(t, kiln, "deploy", "-version", "1", "-wait", "60s", "iris")
	rows, classes := irisRows(t)
	for i, row := range rows {
		body := fmt.Sprintf(`{"id":"r%d","instances":[%s]}`, i, row)
		resp, err := http.Post(addr+"/v1/models/iris:predict", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("predict row %d: HTTP %d", i, resp.StatusCode)
		}
	}
	// The log is written behind the requests.
	testutil.WaitFor(t, 20*time.Second, func() error {
		_, out, _ := kiln("monitor", "predictions", "-limit", "1000", "iris")
		if n := len(tableLines(out)) - 1; n != len(rows) {
			return fmt.Errorf("%d requests logged, want %d", n, len(rows))
		}
		return nil
	})
	return addr, classes
}

// mustMatch fails t unless out matches every pattern.
func mustMatch(t *testing.T, what, out string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(p).MatchString(out) {
			t.Errorf("%s lacks %s:\n%s", what, p, out)
		}
	}
}

var irisColumns = []string{"Sepal_Length", "Sepal_Width", "Petal_Length", "Petal_Width"}

// The monitor and alerts nouns against an agent serving the iris model:
// monitor set (from flags and a file), a drift check and the status it
// leaves, the prediction log, feedback and the live performance it gives,
// alert rules and their alerts.
func TestMonitor_AgainstAnAgent(t *testing.T) {
	addr, classes := servedIris(t)
	kiln := kilnAt(t, addr)

	t.Run("set", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"-reference", "iris:1", "-numeric-test", "t"}, `numeric_test "t" is unknown: use one of ks, psi, wasserstein`},
			{[]string{"-reference", "iris:1", "-columns", "Sepal_Length,nope,Petal_Length,Petal_Width"}, `feature_columns[1]: dataset iris:1 has no column "nope"`},
			{[]string{"-reference", "iris:1", "-sample-rate", "2"}, "sample_rate 2 is out of range"},
			{[]string{"-reference", "iris:9"}, `dataset "iris" has no version 9`},
		} {
			code, _, errOut := kiln(append([]string{"monitor", "set"}, append(tc.args, "iris")...)...)
			if code != 1 || !strings.Contains(errOut, "Error: monitor of iris: "+tc.want) {
				t.Errorf("monitor set %v = %d %q; want %q", tc.args, code, errOut, tc.want)
			}
		}
		out := kilnOK(t, kiln, "monitor", "set", "-reference", "iris:1", "-schedule", "1h", "-min-samples", "50", "iris")
		mustHaveLines(t, out,
			[]string{"Set", "the", "monitor", "of", "deployment", "iris"},
			[]string{"Reference:", "iris:1"},
			[]string{"Columns:", "Sepal_Length,", "Sepal_Width,", "Petal_Length,", "Petal_Width"},
			[]string{"Tests:", "ks", "(numeric),", "chi2", "(categorical),", "alpha", "0.05"},
			[]string{"Checks:", "every", "1h", "over", "the", "last", "1h,", "at", "least", "50", "samples"})

		// A file's fields, a flag over one of them; the latest version of
		// a reference named without one.
		file := writeTestFile(t, "monitor.json", `{"reference_dataset": "iris", "schedule": "1h", "min_samples": 50, "window": "1h"}`)
		out = kilnOK(t, kiln, "monitor", "set", "-file", file, "-window", "2h", "iris")
		mustHaveLines(t, out,
			[]string{"Reference:", "iris:1"},
			[]string{"Checks:", "every", "1h", "over", "the", "last", "2h,", "at", "least", "50", "samples"})
		bad := writeTestFile(t, "bad.json", "{\n  \"schedule\": \"1h\",\n  \"window\" \"2h\"\n}")
		if code, _, errOut := kiln("monitor", "set", "-file", bad, "iris"); code != 1 || !strings.Contains(errOut, "bad.json:3: ") {
			t.Errorf("monitor set -file of bad JSON = %d %q; want its line", code, errOut)
		}

		out = kilnOK(t, kiln, "monitor", "list")
		mustMatch(t, "monitor list", out, `(?m)^iris\s+iris:1\s+Sepal_Length,Sepal_Width,Petal_Length,Petal_Width\s+1h\s+2h\s+\S+$`)
	})

	t.Run("drift -check", func(t *testing.T) {
		out := kilnOK(t, kiln, "monitor", "drift", "-check", "-since", "1h", "iris")
		lines := tableLines(out)
		if !slices.Equal(lines[0], []string{"CHECKED_AT", "SAMPLES", "SHARE_DRIFTED", "DRIFTED", "PREDICTION_DRIFT"}) {
			t.Errorf("drift header %q", lines[0])
		}
		// The leader's scheduled check may be there too: the same rows.
		mustMatch(t, "monitor drift", out, `(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+150\s+0\.00\s+-\s+no$`)
		if code, _, errOut := kiln("monitor", "drift", "-since", "soon", "iris"); code != 1 || !strings.Contains(errOut, `since "soon"`) {
			t.Errorf("drift -since soon = %d %q", code, errOut)
		}
	})

	t.Run("status", func(t *testing.T) {
		out := kilnOK(t, kiln, "monitor", "status", "iris")
		mustHaveLines(t, out,
			[]string{"Deployment:", "iris"},
			[]string{"Reference:", "iris:1"},
			[]string{"Samples:", "150"},
			[]string{"Share", "drifted:", "0.00", "(0", "of", "4", "features)"},
			[]string{"FEATURE", "TEST", "STATISTIC", "P_VALUE", "THRESHOLD", "DRIFT"},
			strings.Fields("Live performance over the last 1h: no labelled predictions; kiln monitor feedback sends labels."))
		mustMatch(t, "monitor status", out, `(?m)^Prediction drift:\s+no \(chi2 statistic \S+, threshold \S+, p-value \S+\)$`)
		for _, col := range irisColumns {
			mustMatch(t, "monitor status", out, `(?m)^`+col+`\s+ks\s+[0-9.e-]+\s+[0-9.e-]+\s+[0-9.e-]+\s+no$`)
		}

		// -format json: the node's check and performance, as they came.
		var status struct {
			Check       structs.DriftCheck `json:"check"`
			Performance map[string]any     `json:"performance"`
		}
		out = kilnOK(t, kiln, "monitor", "status", "-format", "json", "iris")
		if err := json.Unmarshal([]byte(out), &status); err != nil || status.Check.Samples != 150 || len(status.Check.Features) != 4 || status.Performance["deployment"] != "iris" {
			t.Errorf("status -format json = %v %+v:\n%s", err, status, out)
		}
	})

	t.Run("predictions", func(t *testing.T) {
		code, out, errOut := kiln("monitor", "predictions", "-from", "1h", "-limit", "20", "iris")
		lines := tableLines(out)
		if code != 0 || len(lines) != 21 || !slices.Equal(lines[0], []string{"ID", "TIME", "VERSION", "LATENCY_MS", "LABELS"}) {
			t.Fatalf("predictions = %d, %d lines:\n%s", code, len(lines), out)
		}
		mustMatch(t, "monitor predictions", out, `(?m)^r0\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\s+1\s+\d+\.\d\d\s+-$`)
		if !strings.Contains(errOut, "Stopped at -limit (20 requests): the range may hold more") {
			t.Errorf("predictions stderr %q; want the truncation said", errOut)
		}
		if code, _, errOut := kiln("monitor", "predictions", "-limit", "0", "iris"); code != 1 || !strings.Contains(errOut, `limit "0" is out of range 1..10000`) {
			t.Errorf("predictions -limit 0 = %d %q", code, errOut)
		}
	})

	t.Run("feedback", func(t *testing.T) {
		// Labels of the even rows as JSON Lines, and one of a request
		// never logged; then two odd rows as a JSON array.
		var lines []string
		for i := 0; i < len(classes); i += 2 {
			lines = append(lines, fmt.Sprintf(`{"id": "r%d", "label": %d}`, i, classes[i]))
		}
		lines = append(lines, "", `{"id": "nobody", "label": 1}`)
		jsonl := writeTestFile(t, "labels.jsonl", strings.Join(lines, "\n")+"\n")
		out := kilnOK(t, kiln, "monitor", "feedback", "-deployment", "iris", jsonl)
		if !strings.Contains(out, "75 labels matched a logged request; 1 label matched none yet: it is kept until its request is logged") {
			t.Errorf("feedback of JSON Lines: %q", out)
		}
		array := writeTestFile(t, "labels.json", fmt.Sprintf(`[{"id": "r1", "label": %d}, {"id": "r3", "label": %d}]`, classes[1], classes[3]))
		out = kilnOK(t, kiln, "monitor", "feedback", array)
		if out != "2 labels matched a logged request\n" {
			t.Errorf("feedback of an array: %q", out)
		}
		for _, tc := range []struct{ content, want string }{
			{`{"id": "r5", "label": 0}` + "\n" + `{"id": "r7", "labels": 0}`, `, line 2: want {"id": "REQUEST_ID", "label": LABEL}: json: unknown field "labels"`},
			{`[{"id": "r5"}]`, ", item 1: want {\"id\": \"REQUEST_ID\", \"label\": LABEL}: the id or the label is missing"},
			{`{"id": "r5", "label": 7}`, "items[0].label: 7 is not a class index of this 3-class model"},
			{"\n\n", "holds no label"},
		} {
			file := writeTestFile(t, "bad.jsonl", tc.content)
			if code, _, errOut := kiln("monitor", "feedback", file); code != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("feedback of %q = %d %q; want %q", tc.content, code, errOut, tc.want)
			}
		}

		out = kilnOK(t, kiln, "monitor", "predictions", "-limit", "4", "iris")
		mustMatch(t, "monitor predictions", out,
			fmt.Sprintf(`(?m)^r0\s+\S+\s+1\s+\S+\s+%d$`, classes[0]),
			fmt.Sprintf(`(?m)^r1\s+\S+\s+1\s+\S+\s+%d$`, classes[1]),
			fmt.Sprintf(`(?m)^r2\s+\S+\s+1\s+\S+\s+%d$`, classes[2]),
			fmt.Sprintf(`(?m)^r3\s+\S+\s+1\s+\S+\s+%d$`, classes[3]))

		out = kilnOK(t, kiln, "monitor", "status", "-window", "2h", "iris")
		mustHaveLines(t, out,
			[]string{"Live", "performance", "over", "the", "last", "2h", "(classification):", "77", "labelled", "predictions;", "1", "label", "matched", "to", "no", "logged", "request", "yet"},
			[]string{"VERSION", "LABELED", "ACCURACY", "F1", "AUC", "LOGLOSS"})
		mustMatch(t, "monitor status", out, `(?m)^1\s+77\s+0\.9\d{3}\s+0\.\d{4}\s+\d\.\d{4}\s+\d\.\d{4}$`)
	})

	t.Run("alerts", func(t *testing.T) {
		rule := writeTestFile(t, "rule.json", `{
  "name": "drifted",
  "deployment": "iris",
  "condition": "drift.share_drifted > 0.5",
  "actions": [{"kind": "webhook", "url": "http://127.0.0.1:9/hook"}]
}`)
		out := kilnOK(t, kiln, "alerts", "apply", rule)
		if !strings.Contains(out, "Applied alert rule drifted on deployment iris (1 action)") {
			t.Errorf("alerts apply: %q", out)
		}
		for _, tc := range []struct{ content, want string }{
			{`{"name": "bad", "deployment": "iris", "condition": "drift.shared > 0.2"}`, "alert rule bad: condition \"drift.shared > 0.2\" does not compile"},
			{`{"name": "bad", "deployment": "iris", "condition": "requests > 1", "actions": [{"kind": "page"}]}`, `actions[0].kind "page" is unknown`},
			{`{"deployment": "iris", "condition": "requests > 1"}`, `the rule has no "name"`},
			{"{\n  \"name\": \"bad\",\n  \"deployment\": \"iris\"\n  \"condition\": \"requests > 1\"\n}", "rule.json:4: "},
		} {
			file := writeTestFile(t, "rule.json", tc.content)
			if code, _, errOut := kiln("alerts", "apply", file); code != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("alerts apply %s = %d %q; want %q", tc.content, code, errOut, tc.want)
			}
		}

		out = kilnOK(t, kiln, "alerts", "rules")
		mustMatch(t, "alerts rules", out, `(?m)^drifted\s+iris\s+drift\.share_drifted > 0\.5\s+0s\s+5m\s+webhook$`)
		out = kilnOK(t, kiln, "alerts", "list")
		if lines := tableLines(out); !slices.Equal(lines[0], []string{"RULE", "DEPLOYMENT", "STATE", "SINCE", "VALUE", "ACTIONS", "ACKED"}) {
			t.Errorf("alerts list header %q", lines[0])
		}
		mustMatch(t, "alerts list", out, `(?m)^drifted\s+iris\s+inactive\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+\S+\s+-\s+-$`)
		if out := kilnOK(t, kiln, "alerts", "list", "-state", "firing"); len(tableLines(out)) != 1 {
			t.Errorf("alerts list -state firing lists an alert that is not: %q", out)
		}
		code, _, errOut := kiln("alerts", "ack", "drifted")
		if code != 1 || !strings.Contains(errOut, `Error: alert "drifted" is inactive: only a firing alert is acknowledged (`) || !strings.Contains(errOut, "HTTP 409)") {
			t.Errorf("alerts ack of an inactive alert = %d %q; want the node's conflict", code, errOut)
		}
		if out := kilnOK(t, kiln, "alerts", "delete", "drifted"); !strings.Contains(out, "Deleted alert rule drifted") {
			t.Errorf("alerts delete: %q", out)
		}
		if out := kilnOK(t, kiln, "alerts", "rules"); len(tableLines(out)) != 1 {
			t.Errorf("alerts rules after delete: %q", out)
		}
		if code, _, errOut := kiln("alerts", "ack", "drifted"); code != 1 || !strings.Contains(errOut, "not found") {
			t.Errorf("alerts ack of a deleted rule = %d %q", code, errOut)
		}
	})

	t.Run("delete", func(t *testing.T) {
		if out := kilnOK(t, kiln, "monitor", "delete", "iris"); !strings.Contains(out, "Deleted the monitor of deployment iris") {
			t.Errorf("monitor delete: %q", out)
		}
		if code, _, errOut := kiln("monitor", "status", "iris"); code != 1 || !strings.Contains(errOut, `Error: monitor of iris: deployment "iris" has no monitor`) {
			t.Errorf("monitor status after delete = %d %q", code, errOut)
		}
		if out := kilnOK(t, kiln, "monitor", "list"); len(tableLines(out)) != 1 {
			t.Errorf("monitor list after delete: %q", out)
		}
	})
}

// A monitor that has not checked yet says so, and how to run one, and
// still shows the live performance.
func TestMonitorStatus_NoCheckYet(t *testing.T) {
	srv, got := recordingServer(t, func(w http.ResponseWriter, req request) {
		switch req.Path {
		case "/v1/monitors/iris":
			writeJSONReply(w, 200, map[string]any{"spec": map[string]any{"deployment": "iris", "schedule": "5m"},
				"reference": "iris:1", "columns": irisColumns, "last_check_at": "0001-01-01T00:00:00Z"})
		case "/v1/deployments/iris/performance":
			writeJSONReply(w, 200, map[string]any{"deployment": "iris", "task": "regression", "window": "30m0s",
				"versions": []any{map[string]any{"version": 2, "labeled": 4, "rmse": 0.5, "mae": 0.25}}, "unmatched": 0, "nodes_missing": 0})
		default:
			writeJSONReply(w, 404, map[string]string{"error": "not found", "code": "not_found"})
		}
	})
	var code int
	out, errOut := captureOutput(t, func() { code = run([]string{"monitor", "status", "-window", "30m", "-address", srv.URL, "iris"}) })
	if code != 0 {
		t.Fatalf("status = %d %q", code, errOut)
	}
	mustHaveLines(t, out,
		strings.Fields("No drift check of deployment iris yet: the leader runs one shortly, then every 5m; kiln monitor drift -check iris runs one now."),
		strings.Fields("Live performance over the last 30m (regression): 4 labelled predictions"),
		[]string{"VERSION", "LABELED", "RMSE", "MAE"},
		[]string{"2", "4", "0.5000", "0.2500"})
	for _, r := range got() {
		if r.Path == "/v1/deployments/iris/performance" && r.Query.Get("window") != "30m" {
			t.Errorf("performance asked with window %q", r.Query.Get("window"))
		}
		if strings.HasSuffix(r.Path, "/drift") {
			t.Errorf("status read the drift checks of a monitor that has none")
		}
	}
}

// A test without a p-value shows a dash; a feature that could not be
// tested shows dashes and, in a column of their own, why.
func TestMonitorDriftCheck_NoPValueAndErrors(t *testing.T) {
	p := 0.01
	c := &structs.DriftCheck{
		Deployment: "iris", CheckedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Reference: "iris:1", Samples: 120, ShareDrifted: 0.5,
		Features: []structs.FeatureDrift{
			{Name: "a", Test: "psi", Statistic: 0.31234, Threshold: 0.2, Drift: true},
			{Name: "b", Test: "ks", Error: "no values in the window"},
		},
		Prediction: &structs.FeatureDrift{Name: "prediction", Test: "chi2", Statistic: 12.5, PValue: &p, Threshold: 5.991, Drift: true},
	}
	var b strings.Builder
	writeDriftCheck(&b, c)
	mustHaveLines(t, b.String(),
		strings.Fields("Share drifted: 0.50 (1 of 2 features)"),
		strings.Fields("Prediction drift: yes (chi2 statistic 12.5, threshold 5.991, p-value 0.01)"),
		[]string{"FEATURE", "TEST", "STATISTIC", "P_VALUE", "THRESHOLD", "DRIFT", "ERROR"},
		[]string{"a", "psi", "0.3123", "-", "0.2", "yes", "-"},
		strings.Fields("b ks - - - - no values in the window"))
	if got := driftCheckRow(c); !slices.Equal(got, []string{"2026-01-02T03:04:05Z", "120", "0.50", "a", "yes"}) {
		t.Errorf("driftCheckRow = %q", got)
	}
	c.Skipped = "50 rows in the window, fewer than min_samples 100"
	if got := driftCheckRow(c); !slices.Equal(got, []string{"2026-01-02T03:04:05Z", "120", "-", "skipped: 50 rows in the window, fewer than min_samples 100", "-"}) {
		t.Errorf("driftCheckRow of a skipped check = %q", got)
	}
}

func TestAlertRow_ActionsAndAck(t *testing.T) {
	cases := []struct {
		name  string
		alert map[string]any
		want  []string
	}{
		{"inactive", map[string]any{"rule": "r", "deployment": "iris", "state": "inactive", "since": "2026-01-02T03:04:05.678Z", "value": 0.0,
			"actions": []any{}, "acked_at": "0001-01-01T00:00:00Z"},
			[]string{"r", "iris", "inactive", "2026-01-02T03:04:05Z", "0", "-", "-"}},
		{"firing and acknowledged", map[string]any{"rule": "r", "deployment": "iris", "state": "firing", "since": "2026-01-02T03:04:05Z", "value": 0.3333333,
			"actions":  []any{map[string]any{"kind": "webhook", "status": "done"}, map[string]any{"kind": "rollback", "status": "failed", "error": "no previous traffic"}},
			"acked_by": "anonymous", "acked_at": "2026-01-02T03:05:00Z"},
			[]string{"r", "iris", "firing", "2026-01-02T03:04:05Z", "0.3333", "webhook:done,rollback:failed", "anonymous 2026-01-02T03:05:00Z"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := alertRow(tc.alert); !slices.Equal(got, tc.want) {
				t.Errorf("alertRow = %q, want %q", got, tc.want)
			}
		})
	}
}

// Every monitor and alerts command without its argument (or with one too
// many) prints its usage and exits 1, sending nothing.
func TestMonitorCommands_MissingArgumentPrintsUsage(t *testing.T) {
	srv, got := recordingServer(t, func(w http.ResponseWriter, _ request) { writeJSONReply(w, 200, map[string]any{}) })
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"monitor", "set", "-reference", "iris:1"}, "expected 1 argument(s), got 0"},
		{[]string{"monitor", "status"}, "expected 1 argument(s), got 0"},
		{[]string{"monitor", "drift", "-check"}, "expected 1 argument(s), got 0"},
		{[]string{"monitor", "predictions"}, "expected 1 argument(s), got 0"},
		{[]string{"monitor", "feedback", "-deployment", "iris"}, "expected 1 argument(s), got 0"},
		{[]string{"monitor", "delete"}, "expected 1 argument(s), got 0"},
		{[]string{"monitor", "list", "iris"}, "expected 0 argument(s), got 1"},
		{[]string{"alerts", "apply"}, "expected 1 argument(s), got 0"},
		{[]string{"alerts", "ack"}, "expected 1 argument(s), got 0"},
		{[]string{"alerts", "delete"}, "expected 1 argument(s), got 0"},
		{[]string{"alerts", "list", "drifted"}, "expected 0 argument(s), got 1"},
		{[]string{"alerts", "rules", "drifted"}, "expected 0 argument(s), got 1"},
	} {
		t.Run(strings.Join(tc.args[:2], " "), func(t *testing.T) {
			var code int
			args := append(slices.Clip(tc.args), "-address", srv.URL)
			_, errOut := captureOutput(t, func() { code = run(args) })
			usage := "Usage: kiln " + strings.Join(tc.args[:2], " ") + " [flags]"
			if code != 1 || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, usage) {
				t.Errorf("run(%v) = %d %q; want %q and the usage", args, code, errOut, tc.want)
			}
		})
	}
	if reqs := got(); len(reqs) > 0 {
		t.Errorf("a command without its argument sent %d request(s)", len(reqs))
	}
}
