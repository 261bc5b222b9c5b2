package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnml/kiln/node"
)

// fastSourcePolling shortens run -wait's polling for a test.
func fastSourcePolling(t *testing.T) {
	t.Helper()
	poll := sourcePollInterval
	sourcePollInterval = 10 * time.Millisecond
	t.Cleanup(func() { sourcePollInterval = poll })
}

func TestSourcesCLI_ApplyRunWaitPause(t *testing.T) {
	fastSourcePolling(t)
	var failing atomic.Bool
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "the API is down", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, `{"items": [
			{"user_id": 1, "ts": "2026-01-01T10:00:00Z", "amount": 5},
			{"user_id": 2, "ts": "2026-01-01T10:00:00Z", "amount": -6}]}`)
	}))
	defer api.Close()
	kiln := kilnAt(t, testAgent(t))
	file := writeTestFile(t, "api.hcl", fmt.Sprintf(`source "api" {
  kind   = "http"
  schema = { user_id = "int", ts = "timestamp", amount = "float" }
  http {
    url           = %q
    records_field = "items"
  }
  expect "range" {
    column = "amount"
    min    = 0
  }
}
entity "user" {
  join_keys = ["user_id"]
}
`, api.URL))

	code, out, errOut := kiln("sources", "apply", file)
	if code != 0 || !hasLine(out, []string{"Applied", "source", "api", "(http)"}) {
		t.Fatalf("apply = %d, stdout %q, stderr %q", code, out, errOut)
	}
	if !strings.Contains(errOut, "also declares 1 entity, not applied: apply them with kiln features apply") {
		t.Errorf("apply did not say what it left out: %q", errOut)
	}
	if code, _, _ := kiln("features", "list", "-kind", "entities"); code != 0 {
		t.Fatal("list entities failed")
	} else if _, out, _ := kiln("features", "list", "-kind", "entities"); strings.Contains(out, "user_id") {
		t.Errorf("sources apply applied the entity:\n%s", out)
	}

	// The node's defaults (format, dataset) are not taken for changes.
	code, out, _ = kiln("features", "apply", "-plan", file)
	if code != 0 || !hasLine(out, []string{"=", "source", "api", "(unchanged)"}) || !hasLine(out, []string{"+", "entity", "user"}) {
		t.Errorf("plan after sources apply = %d\n%s", code, out)
	}

	code, out, _ = kiln("sources", "list")
	if code != 0 {
		t.Fatalf("list: exit %d", code)
	}
	lines := tableLines(out)
	if len(lines) != 2 || strings.Join(lines[0], " ") != "NAME KIND NODE STATE READ ACCEPTED QUARANTINED LAST_RUN LAST_ERROR" {
		t.Fatalf("list:\n%s", out)
	}
	if row := lines[1]; len(row) != 9 || row[0] != "api" || row[1] != "http" || row[3] != "active" || strings.Join(row[4:], " ") != "0 0 0 - -" {
		t.Errorf("list row %q", row)
	}

	code, out, errOut = kiln("sources", "run", "-wait", "api")
	if code != 0 {
		t.Fatalf("run -wait: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	lines = tableLines(out)
	if strings.Join(lines[0], " ") != "SEQ STATE STARTED DURATION READ ACCEPTED QUARANTINED DATASET ERROR" {
		t.Fatalf("run -wait output:\n%s", out)
	}
	if row := lines[1]; len(row) != 9 || row[0] != "1" || row[1] != "succeeded" || strings.Join(row[4:], " ") != "2 1 1 api:1 -" {
		t.Errorf("run row %q", row)
	}
	if !strings.Contains(out, "range") || !strings.Contains(errOut, "Triggered a run of source api (trigger 1)") {
		t.Errorf("run -wait: stdout %q, stderr %q; want the quarantined record and the trigger", out, errOut)
	}

	code, out, _ = kiln("sources", "get", "api")
	if code != 0 {
		t.Fatalf("get: exit %d", code)
	}
	mustHaveLines(t, out, []string{"Source:", "api", "(http)"}, []string{"State:", "active"}, []string{"Dataset:", "api"},
		[]string{"Schema:", "amount:float,", "ts:timestamp,", "user_id:int"}, []string{"Expectations:", "range(amount)"},
		[]string{"Totals:", "read", "2,", "accepted", "1,", "quarantined", "1"}, []string{"Runs:", "1", "(triggers", "1)"})
	if !strings.Contains(out, "Last run:     #1(succeeded), started ") || !strings.Contains(out, "into api:1") {
		t.Errorf("get lacks the last run:\n%s", out)
	}

	code, out, _ = kiln("sources", "runs", "api")
	if lines := tableLines(out); code != 0 || len(lines) != 2 || lines[1][0] != "1" || lines[1][1] != "succeeded" {
		t.Errorf("runs = %d\n%s", code, out)
	}

	// A paused source runs no more until resumed.
	if code, out, _ := kiln("sources", "pause", "api"); code != 0 || !strings.Contains(out, "Paused source api") {
		t.Fatalf("pause = %d %q", code, out)
	}
	if code, _, errOut := kiln("sources", "run", "api"); code != 1 || !strings.Contains(errOut, `source "api" is paused`) {
		t.Errorf("run of a paused source = %d %q", code, errOut)
	}
	if _, out, _ := kiln("sources", "list"); tableLines(out)[1][3] != "paused" {
		t.Errorf("list of a paused source:\n%s", out)
	}
	if code, out, _ := kiln("sources", "resume", "api"); code != 0 || !strings.Contains(out, "Resumed source api") {
		t.Fatalf("resume = %d %q", code, out)
	}

	// A run that fails is exit 1 with its error.
	failing.Store(true)
	code, out, errOut = kiln("sources", "run", "-wait", "api")
	if code != 1 || !strings.Contains(errOut, "source api run #2 failed") || !strings.Contains(errOut, "500") {
		t.Fatalf("failing run -wait = %d, stdout %q, stderr %q", code, out, errOut)
	}
	// (The source may be retrying by now: its last run is #2 or a later one.)
	if _, out, _ := kiln("sources", "list"); len(tableLines(out)[1]) < 9 || tableLines(out)[1][8] == "-" {
		t.Errorf("list after a failed run shows no error:\n%s", out)
	}
}

func TestSourcesPush_FailurePartwaySaysWhatIsCommitted(t *testing.T) {
	srv, got := recordingServer(t, func(w http.ResponseWriter, _ request) {
		writeJSONReply(w, 503, map[string]any{
			"read": 4000, "accepted": 3999, "quarantined": 1, "committed_lines": 4001,
			"quarantine": []any{map[string]any{"offset": "line 7", "rule": "not_null", "reason": "user_id is null", "raw": `{"a":1}`}},
			"error":      "no leader", "code": "no_leader",
		})
	})
	file := writeTestFile(t, "r.ndjson", "{\"a\":1}\n")
	var code int
	out, errOut := captureOutput(t, func() { code = run([]string{"sources", "push", "-address", srv.URL, "txns", file}) })
	if code != 1 || !strings.Contains(errOut, "no leader (no_leader, HTTP 503)") || !strings.Contains(errOut, "Lines 1-4001 of "+file+" are committed") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	mustHaveLines(t, out, []string{"4000", "3999", "1", "4001"}, []string{"line", "7", "not_null", "user_id", "is", "null", `{"a":1}`})
	r := got()[0]
	if r.Method != "POST" || r.Path != "/v1/sources/txns/records" || string(r.Body) != "{\"a\":1}\n" || r.ContentType != "application/x-ndjson" || r.Chunked {
		t.Errorf("request %+v", r)
	}
}

func TestSourcesCommands_ServerErrorIsExit1WithMessage(t *testing.T) {
	srv, _ := recordingServer(t, func(w http.ResponseWriter, _ request) {
		writeJSONReply(w, 404, map[string]string{"error": `source "txns" not found`, "code": "not_found"})
	})
	file := writeTestFile(t, "s.hcl", featuresHCL("1h"))
	records := writeTestFile(t, "r.ndjson", "{}\n")
	for _, args := range [][]string{
		{"sources", "apply", file},
		{"sources", "list"},
		{"sources", "get", "txns"},
		{"sources", "run", "txns"},
		{"sources", "run", "-wait", "txns"},
		{"sources", "pause", "txns"},
		{"sources", "resume", "txns"},
		{"sources", "runs", "txns"},
		{"sources", "push", "txns", records},
	} {
		t.Run(strings.Join(args[1:], " "), func(t *testing.T) {
			var code int
			_, errOut := captureOutput(t, func() { code = run(append(args, "-address", srv.URL)) })
			if code != 1 || !strings.Contains(errOut, `source "txns" not found (not_found, HTTP 404)`) {
				t.Errorf("run(%v) = %d, stderr %q", args, code, errOut)
			}
		})
	}
}

// The help's HCL is a file the parser takes: the source example, and each
// other kind's block inside a source.
func TestSourcesApplyHelp_ExamplesParse(t *testing.T) {
	start := strings.Index(sourcesApplyHelp, `    source "txns" {`)
	end := strings.Index(sourcesApplyHelp[max(start, 0):], "\n    }\n")
	if start < 0 || end < 0 {
		t.Fatal("the help has no source example")
	}
	f, err := node.ParseFeaturesHCL([]byte(sourcesApplyHelp[start:start+end+6]), "help.hcl")
	if err != nil || len(f.Sources) != 1 || f.Sources[0].Postgres == nil || len(f.Sources[0].Expectations) != 4 {
		t.Fatalf("the source example: %+v, %v", f, err)
	}
	start = strings.Index(sourcesApplyHelp, "The other kinds' blocks:")
	end = strings.Index(sourcesApplyHelp, "A push source has no block")
	if start < 0 || end < 0 {
		t.Fatal("the help has no kinds' blocks")
	}
	blocks := sourcesApplyHelp[start+len("The other kinds' blocks:") : end]
	f, err = node.ParseFeaturesHCL([]byte("source \"x\" {\n  kind = \"http\"\n"+blocks+"}\n"), "help.hcl")
	if err != nil {
		t.Fatalf("the kinds' blocks: %v", err)
	}
	if s := f.Sources[0]; s.HTTP == nil || s.HTTP.Pagination == nil || s.File == nil || s.Kafka == nil || s.NATS == nil || s.NATS.Token.Env != "NATS_TOKEN" {
		t.Errorf("the kinds' blocks: %+v", s)
	}
}
