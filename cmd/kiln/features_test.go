package main

import (
	"encoding/csv"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/node"
)

// testAgent starts a one-node cluster on a loopback address of its own
// and returns its HTTP URL once it takes writes; the agent stops when the
// test ends. The address is drawn from 127.0.200-249.x, which no other
// package's tests use, and drawn again while it is taken (by another test
// process on this machine).
func testAgent(t *testing.T) string {
	t.Helper()
	var a *node.Agent
	for try := 0; ; try++ {
		cfg := node.DefaultConfig()
		cfg.NodeName = "cli-test"
		cfg.BindAddr = fmt.Sprintf("127.0.%d.%d", 200+rand.IntN(50), 1+rand.IntN(250))
		cfg.DataDir = t.TempDir()
		cfg.BootstrapExpect = 1
		cfg.ServerStabilization = 500 * time.Millisecond
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
	testutil.WaitFor(t, 20*time.Second, func() error {
		// A consistent read answers once this node leads and takes writes.
		resp, err := http.Get(addr + "/v1/sources?consistency=consistent")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /v1/sources = %d", resp.StatusCode)
		}
		return nil
	})
	return addr
}

// kilnAt returns a function that runs the CLI against addr and returns its
// exit code, stdout and stderr.
func kilnAt(t *testing.T, addr string) func(args ...string) (int, string, string) {
	return func(args ...string) (int, string, string) {
		t.Helper()
		var code int
		out, errOut := captureOutput(t, func() { code = run(append(args, "-address", addr)) })
		return code, out, errOut
	}
}

// writeTestFile writes content to name in a temporary directory.
func writeTestFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// featuresHCL declares a push source of card transactions, the user, a
// view of their amounts with the given TTL, and a service.
func featuresHCL(ttl string) string {
	return `source "txns" {
  kind   = "push"
  schema = { user_id = "int", ts = "timestamp", amount = "float", country = "string" }
  expect "range" {
    column = "amount"
    min    = 0
  }
}

entity "user" {
  join_keys = ["user_id"]
}

feature_view "txn_stats" {
  entity           = "user"
  source           = "txns"
  timestamp_column = "ts"
  ttl              = "` + ttl + `"
  feature "amount" {}
  feature "amount_cents" {
    type = "int"
    expr = "int(amount * 100)"
  }
  feature "amount_sum_1h" {
    expr   = "sum(amount)"
    window = "1h"
  }
}

feature_service "fraud" {
  features = ["txn_stats:amount", "txn_stats:amount_sum_1h"]
}
`
}

// mustHaveLines fails t unless every want (a line's fields) is a line of
// out.
func mustHaveLines(t *testing.T, out string, want ...[]string) {
	t.Helper()
	for _, w := range want {
		if !hasLine(out, w) {
			t.Errorf("output lacks a line %q:\n%s", w, out)
		}
	}
}

func TestFeaturesCLI_ApplyPlanPushGetHistorical(t *testing.T) {
	kiln := kilnAt(t, testAgent(t))
	file := writeTestFile(t, "features.hcl", featuresHCL("24h"))

	// A plan against an empty node creates everything, and changes nothing.
	code, out, errOut := kiln("features", "apply", "-plan", file)
	if code != 0 {
		t.Fatalf("apply -plan: exit %d, stderr %q", code, errOut)
	}
	mustHaveLines(t, out,
		[]string{"+", "source", "txns"}, []string{"+", "entity", "user"},
		[]string{"+", "feature_view", "txn_stats"}, []string{"+", "feature_service", "fraud"},
		strings.Fields("Plan: 4 to create, 0 to change, 0 unchanged."))
	if code, out, _ := kiln("features", "list", "-kind", "views", "-format", "json"); code != 0 || !strings.Contains(out, `"items": []`) {
		t.Fatalf("after -plan, views = %d %s; want none", code, out)
	}

	code, out, errOut = kiln("features", "apply", file)
	if code != 0 {
		t.Fatalf("apply: exit %d, stdout %s, stderr %q", code, out, errOut)
	}
	mustHaveLines(t, out,
		[]string{"Created", "source", "txns"}, []string{"Created", "entity", "user"},
		[]string{"Created", "feature_view", "txn_stats"}, []string{"Created", "feature_service", "fraud"})

	// Applied, the same file is no change: the view's untyped features
	// are not taken for changes though the node stored their types.
	unchanged := func() {
		t.Helper()
		code, out, errOut := kiln("features", "apply", "-plan", file)
		if code != 0 {
			t.Fatalf("apply -plan: exit %d, stderr %q", code, errOut)
		}
		mustHaveLines(t, out,
			[]string{"=", "source", "txns", "(unchanged)"}, []string{"=", "entity", "user", "(unchanged)"},
			[]string{"=", "feature_view", "txn_stats", "(unchanged)"}, []string{"=", "feature_service", "fraud", "(unchanged)"},
			strings.Fields("Plan: 0 to create, 0 to change, 4 unchanged."))
	}
	unchanged()
	if code, out, _ := kiln("features", "apply", file); code != 0 || !strings.Contains(out, "Nothing to apply.") {
		t.Fatalf("apply unchanged = %d %s", code, out)
	}

	// A changed TTL is one field of one view.
	if err := os.WriteFile(file, []byte(featuresHCL("48h")), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = kiln("features", "apply", "-plan", file)
	if code != 0 {
		t.Fatalf("apply -plan: exit %d", code)
	}
	mustHaveLines(t, out, []string{"~", "feature_view", "txn_stats"}, []string{"ttl:", `"24h"`, "->", `"48h"`},
		strings.Fields("Plan: 0 to create, 1 to change, 3 unchanged."))
	if strings.Count(out, "->") != 1 {
		t.Errorf("plan shows more than the ttl's change:\n%s", out)
	}
	code, out, _ = kiln("features", "apply", file)
	if code != 0 || !hasLine(out, []string{"Updated", "feature_view", "txn_stats"}) || strings.Contains(out, "Created") {
		t.Fatalf("apply = %d\n%s", code, out)
	}
	unchanged()

	code, out, _ = kiln("features", "list")
	if code != 0 {
		t.Fatalf("list: exit %d", code)
	}
	mustHaveLines(t, out, []string{"Entities"}, []string{"user", "user_id", "-"},
		[]string{"Feature", "views"}, []string{"txn_stats", "user", "txns", "ts", "48h", "-", "amount,amount_cents,amount_sum_1h"},
		[]string{"Feature", "services"}, []string{"fraud", "txn_stats:amount,txn_stats:amount_sum_1h", "-"})

	// Records pushed now are read online; one breaks the range rule.
	now := time.Now().UTC().Truncate(time.Second)
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	records := writeTestFile(t, "txns.ndjson", strings.Join([]string{
		`{"user_id": 1, "ts": "` + at(-20*time.Minute) + `", "amount": 10, "country": "fr"}`,
		`{"user_id": 1, "ts": "` + at(-10*time.Minute) + `", "amount": 2.5, "country": "de"}`,
		`{"user_id": 2, "ts": "` + at(-10*time.Minute) + `", "amount": 7, "country": "fr"}`,
		`{"user_id": 3, "ts": "` + at(-10*time.Minute) + `", "amount": -5, "country": "fr"}`,
	}, "\n")+"\n")
	code, out, errOut = kiln("sources", "push", "txns", records)
	if code != 0 {
		t.Fatalf("push: exit %d, stderr %q", code, errOut)
	}
	mustHaveLines(t, out, []string{"READ", "ACCEPTED", "QUARANTINED", "COMMITTED_LINES"}, []string{"4", "3", "1", "4"})
	if !strings.Contains(out, "line 4") || !strings.Contains(out, "range") {
		t.Errorf("push output lacks the quarantined line 4:\n%s", out)
	}

	code, out, errOut = kiln("features", "get", "-service", "fraud", "-entity", "user_id=1", "-entity", "user_id=42")
	if code != 0 {
		t.Fatalf("get: exit %d, stderr %q", code, errOut)
	}
	mustHaveLines(t, out, []string{"user_id", "txn_stats:amount", "txn_stats:amount_sum_1h"},
		[]string{"1", "2.5", "12.5"}, []string{"42", "-", "0"},
		strings.Fields("Missing: 1 of 2 entities have no values"))
	code, out, _ = kiln("features", "get", "-features", "txn_stats:amount_cents,txn_stats:amount", "-entity", "user_id=2")
	if code != 0 {
		t.Fatalf("get -features: exit %d", code)
	}
	mustHaveLines(t, out, []string{"user_id", "txn_stats:amount_cents", "txn_stats:amount"}, []string{"2", "700", "7"})

	// Point in time: each row sees only what came before it.
	rows := writeTestFile(t, "rows.csv", "user_id,ts,label\n"+
		"1,"+at(-15*time.Minute)+",1\n"+
		"1,"+at(-time.Minute)+",0\n"+
		"2,"+at(-30*time.Minute)+",1\n")
	outFile := filepath.Join(t.TempDir(), "train.csv")
	code, out, errOut = kiln("features", "historical", "-service", "fraud", "-entities", rows, "-out", outFile)
	if code != 0 {
		t.Fatalf("historical: exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, "Wrote 3 rows with 2 features to "+outFile) {
		t.Errorf("historical output %q", out)
	}
	f, err := os.Open(outFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"user_id", "ts", "label", "txn_stats:amount", "txn_stats:amount_sum_1h"},
		{"1", at(-15 * time.Minute), "1", "10", "10"},
		{"1", at(-time.Minute), "0", "2.5", "12.5"},
		{"2", at(-30 * time.Minute), "1", "", "0"},
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("historical CSV\n%q\nwant\n%q", got, want)
	}

	code, out, _ = kiln("features", "historical", "-format", "json", "-service", "fraud", "-entities", rows)
	if code != 0 || strings.Count(out, `"values"`) != 3 || !strings.Contains(out, `"txn_stats:amount_sum_1h": 12.5`) {
		t.Errorf("historical -format json = %d\n%s", code, out)
	}

	// The same frame, written by the node as a dataset version.
	if code, _, errOut := kiln("datasets", "push", "labels", rows); code != 0 {
		t.Fatalf("datasets push: %q", errOut)
	}
	code, out, errOut = kiln("features", "historical", "-service", "fraud", "-entity-dataset", "labels:1", "-output", "train")
	if code != 0 || !strings.Contains(out, "Wrote train:1: 3 rows, features txn_stats:amount, txn_stats:amount_sum_1h") {
		t.Errorf("historical into a dataset = %d %q %q", code, out, errOut)
	}

	// A push source has no runs; the node says so.
	if code, _, errOut := kiln("sources", "run", "txns"); code != 1 || !strings.Contains(errOut, "no runs") {
		t.Errorf("run of a push source = %d %q", code, errOut)
	}

	// Apply stops at the first refusal with the node's message, after what
	// it already applied.
	bad := writeTestFile(t, "bad.hcl", `entity "merchant" {
  join_keys = ["merchant_id"]
}
feature_view "bad" {
  entity           = "user"
  source           = "txns"
  timestamp_column = "ts"
  feature "price" {}
}
feature_service "never" {
  features = ["bad:*"]
}
`)
	code, out, errOut = kiln("features", "apply", bad)
	if code != 1 || !strings.Contains(errOut, "feature_view bad:") || !strings.Contains(errOut, "(price) is not a column") {
		t.Fatalf("apply of a bad view = %d, stderr %q", code, errOut)
	}
	if !hasLine(out, []string{"Created", "entity", "merchant"}) || strings.Contains(out, "Created feature_service") {
		t.Errorf("apply output:\n%s", out)
	}
	if _, out, _ := kiln("features", "list", "-kind", "services"); strings.Contains(out, "never") {
		t.Errorf("the service after the refused view was applied:\n%s", out)
	}
}

func TestParseEntityFlags_RowsOfJoinKeys(t *testing.T) {
	cases := []struct {
		name  string
		flags []string
		keys  []string
		ents  map[string][]any
		msg   string // part of the error; "" for none
	}{
		{"ints and text", []string{"user_id=7", "user_id=abc", "user_id=9007199254740993"}, []string{"user_id"},
			map[string][]any{"user_id": {int64(7), "abc", int64(9007199254740993)}}, ""},
		{"two keys in any order", []string{"card=1,shop=a", "shop=b, card=2"}, []string{"card", "shop"},
			map[string][]any{"card": {int64(1), int64(2)}, "shop": {"a", "b"}}, ""},
		{"a float is text", []string{"k=1.5"}, []string{"k"}, map[string][]any{"k": {"1.5"}}, ""},
		{"none", nil, nil, nil, "at least one -entity"},
		{"no value", []string{"user_id"}, nil, nil, `-entity "user_id": want KEY=VALUE`},
		{"no key", []string{"=7"}, nil, nil, "want KEY=VALUE"},
		{"key twice", []string{"a=1,a=2"}, nil, nil, "gives a twice"},
		{"other keys", []string{"a=1", "b=2"}, nil, nil, "every entity needs the same join keys"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keys, ents, err := parseEntityFlags(tc.flags)
			if tc.msg != "" {
				if err == nil || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("error %v, want one with %q", err, tc.msg)
				}
				return
			}
			if err != nil || !slices.Equal(keys, tc.keys) || fmt.Sprint(ents) != fmt.Sprint(tc.ents) {
				t.Errorf("parseEntityFlags = %v, %v, %v; want %v, %v", keys, ents, err, tc.keys, tc.ents)
			}
		})
	}
}

func TestFeaturesGet_SendsExactNumbersAndPrintsThem(t *testing.T) {
	srv, got := recordingServer(t, func(w http.ResponseWriter, _ request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"features": ["v:n", "v:s", "v:b"], "rows": [
			{"id": 9007199254740993, "values": {"v:n": 12345678901234567, "v:s": "a\tb", "v:b": true}, "timestamps": {}},
			{"id": "x", "values": {"v:n": null, "v:s": null, "v:b": null}, "timestamps": {}}], "missing": 1}`))
	})
	var code int
	out, errOut := captureOutput(t, func() {
		code = run([]string{"features", "get", "-address", srv.URL, "-features", "v:n, v:s,v:b", "-entity", "id=9007199254740993", "-entity", "id=x"})
	})
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if r := got()[0]; r.Path != "/v1/features/online" || string(r.Body) != `{"entities":{"id":[9007199254740993,"x"]},"features":["v:n","v:s","v:b"]}` {
		t.Errorf("request %s %s", r.Path, r.Body)
	}
	mustHaveLines(t, out, []string{"id", "v:n", "v:s", "v:b"}, []string{"9007199254740993", "12345678901234567", `a\tb`, "true"},
		[]string{"x", "-", "-", "-"}, strings.Fields("Missing: 1 of 2 entities have no values"))
}

func TestFeaturesCommands_BadFlagsSendNothing(t *testing.T) {
	srv, got := recordingServer(t, func(w http.ResponseWriter, _ request) { writeJSONReply(w, 200, map[string]any{}) })
	noTS := writeTestFile(t, "rows.csv", "user_id,time\n1,2026-01-01T00:00:00Z\n")
	empty := writeTestFile(t, "empty.csv", "user_id,ts\n")
	notHCL := writeTestFile(t, "f.hcl", "entity \"e\" {\n  join_keys = [\"k\"]\n  colour = 1\n}\n")
	onlyFeatures := writeTestFile(t, "only.hcl", "entity \"e\" {\n  join_keys = [\"k\"]\n}\n")
	cases := []struct {
		name string
		args []string
		msg  string
	}{
		{"get without features", []string{"features", "get", "-entity", "a=1"}, "-service NAME or -features"},
		{"get with both", []string{"features", "get", "-service", "s", "-features", "v:x", "-entity", "a=1"}, "not both"},
		{"get without entity", []string{"features", "get", "-service", "s"}, "at least one -entity"},
		{"historical without rows", []string{"features", "historical", "-service", "s"}, "-entities ROWS.csv"},
		{"historical without the time column", []string{"features", "historical", "-service", "s", "-entities", noTS}, "has no ts column"},
		{"historical without rows in the file", []string{"features", "historical", "-service", "s", "-entities", empty}, "want a header"},
		{"list of an unknown kind", []string{"features", "list", "-kind", "tables"}, `-kind "tables": use entities, views or services`},
		{"apply of bad HCL", []string{"features", "apply", notHCL}, `f.hcl:3,3: entity.colour: Unsupported argument`},
		{"sources apply without sources", []string{"sources", "apply", onlyFeatures}, "declares no source, but 1 entity: apply them with kiln features apply"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var code int
			_, errOut := captureOutput(t, func() { code = run(append(tc.args, "-address", srv.URL)) })
			if code != 1 || !strings.Contains(errOut, tc.msg) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, errOut, tc.msg)
			}
		})
	}
	if n := len(got()); n != 0 {
		t.Errorf("bad flags still sent %d requests", n)
	}
}

func TestFeaturesCommands_ServerErrorIsExit1WithMessage(t *testing.T) {
	srv, _ := recordingServer(t, func(w http.ResponseWriter, _ request) {
		writeJSONReply(w, 403, map[string]string{"error": "permission denied: feature fraud", "code": "permission_denied"})
	})
	file := writeTestFile(t, "f.hcl", featuresHCL("1h"))
	rows := writeTestFile(t, "rows.csv", "user_id,ts\n1,2026-01-01T00:00:00Z\n")
	for _, args := range [][]string{
		{"features", "apply", file},
		{"features", "apply", "-plan", file},
		{"features", "list"},
		{"features", "get", "-service", "fraud", "-entity", "user_id=1"},
		{"features", "historical", "-service", "fraud", "-entities", rows},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			var code int
			_, errOut := captureOutput(t, func() { code = run(append(args, "-address", srv.URL)) })
			if code != 1 || !strings.Contains(errOut, "permission denied: feature fraud (permission_denied, HTTP 403)") {
				t.Errorf("run(%v) = %d, stderr %q", args, code, errOut)
			}
		})
	}
}

// The help's HCL is a file the parser takes, one object of each kind.
func TestFeaturesApplyHelp_ExampleParses(t *testing.T) {
	start := strings.Index(featuresApplyHelp, `    source "txns" {`)
	end := strings.Index(featuresApplyHelp, "\n\n  kiln sources apply -help")
	if start < 0 || end < 0 {
		t.Fatal("the help has no example")
	}
	f, err := node.ParseFeaturesHCL([]byte(featuresApplyHelp[start:end]), "help.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Sources) != 1 || len(f.Entities) != 1 || len(f.Views) != 1 || len(f.Views[0].Features) != 3 || len(f.Services) != 1 {
		t.Errorf("the example holds %+v", f)
	}
}
