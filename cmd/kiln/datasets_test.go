package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseSchemaFlag_CompactAndJSON(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want string // JSON; "" when an error is expected
		msg  string // part of the error
	}{
		{"compact", "age:int,income:float", `[{"name":"age","type":"int"},{"name":"income","type":"float"}]`, ""},
		{"spaces around", " age : int , ok:bool ", `[{"name":"age","type":"int"},{"name":"ok","type":"bool"}]`, ""},
		{"last colon splits", "t:utc:timestamp,s:string", `[{"name":"t:utc","type":"timestamp"},{"name":"s","type":"string"}]`, ""},
		{"json array as is", `[{"name":"x","type":"float"}]`, `[{"name":"x","type":"float"}]`, ""},
		{"no colon", "age", "", `-schema column 1 "age": want NAME:TYPE`},
		{"empty entry", "a:int,,b:int", "", `-schema column 2 "": want NAME:TYPE`},
		{"no name", ":int", "", "-schema column 1 has no name"},
		{"unknown type", "age:integer", "", `-schema column "age" has type "integer": use int, float, bool, timestamp, string`},
		{"no type", "age:", "", `-schema column "age" has type ""`},
		{"twice", "a:int,a:float", "", `-schema names column "a" twice`},
		{"bad json", `[{"name":"x",}]`, "", "-schema is not a JSON array"},
		{"array of numbers", `[1]`, "", "-schema is not a JSON array"},
		{"empty json array", `[]`, "", "-schema names no columns"},
		{"json without type", `[{"name":"x"}]`, "", `-schema column "x" has type ""`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSchemaFlag(tc.in)
			if tc.want == "" {
				if err == nil || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("parseSchemaFlag(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.msg)
				}
				return
			}
			if err != nil || !sameJSON(t, []byte(got), tc.want) {
				t.Fatalf("parseSchemaFlag(%q) = %q, %v; want %s", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestParseDatasetRef_NameAndVersion(t *testing.T) {
	cases := []struct {
		in            string
		name, version string
		wantErr       bool
	}{
		{"iris", "iris", "", false},
		{"iris:3", "iris", "3", false},
		{"iris:latest", "iris", "latest", false},
		{"iris:", "", "", true},
		{"iris:0", "", "", true},
		{"iris:x", "", "", true},
		{"iris:-1", "", "", true},
		{":3", "", "", true},
		{"", "", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			name, version, err := parseDatasetRef(tc.in)
			if (err != nil) != tc.wantErr || name != tc.name || version != tc.version {
				t.Errorf("parseDatasetRef(%q) = %q, %q, %v; want %q, %q, error %v", tc.in, name, version, err, tc.name, tc.version, tc.wantErr)
			}
		})
	}
}

var datasetVersionRecord = map[string]any{
	"dataset": "iris", "version": 2, "format": "csv", "mode": "lenient",
	"digest": strings.Repeat("cd", 32), "size": 5 << 10, "holders": []string{"n1", "n2"},
	"rows": 148, "created_at": "2025-01-02T03:04:05Z", "create_index": 40,
	"columns": []any{
		map[string]any{"name": "sepal_length", "type": "float", "numeric": map[string]any{
			"count": 147, "nulls": 1, "min": 4.3, "max": 7.9, "mean": 5.8433333333, "std": 0.825301,
			"quantiles": []any{}, "histogram": map[string]any{"edges": []any{}, "counts": []any{}},
		}},
		map[string]any{"name": "species", "type": "string", "categorical": map[string]any{
			"count": 148, "nulls": 0, "distinct": 4, "exact": false, "top": []any{
				map[string]any{"value": "setosa", "count": 50},
				map[string]any{"value": "versicolor", "count": 49, "error": 2},
				map[string]any{"value": "virginica", "count": 48},
				map[string]any{"value": "unknown", "count": 1},
			},
		}},
	},
	"quarantine": map[string]any{
		"digest": strings.Repeat("ef", 32), "size": 80, "rows": 2, "holders": []string{"n1"},
		"sample": []any{map[string]any{"line": 7, "reason": `column sepal_length: "x" is not a float`}, map[string]any{"line": 9, "reason": "3 fields, want 2"}},
	},
}

func TestDatasetsPush_StreamsFileWithQuery(t *testing.T) {
	content := []byte("sepal_length,species\n5.1,setosa\nx,setosa\n")
	file := filepath.Join(t.TempDir(), "iris.csv")
	if err := os.WriteFile(file, content, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, got := recordingServer(t, func(w http.ResponseWriter, _ request) { writeJSONReply(w, 201, datasetVersionRecord) })

	var code int
	out, errOut := captureOutput(t, func() {
		code = run([]string{"datasets", "push", "-address", srv.URL, "-data-format", "csv", "-mode", "lenient",
			"-schema", "sepal_length:float,species:string", "iris", file})
	})
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	reqs := got()
	if len(reqs) != 1 {
		t.Fatalf("server got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != "POST" || r.Path != "/v1/datasets/iris/versions" {
		t.Errorf("request %s %s, want POST /v1/datasets/iris/versions", r.Method, r.Path)
	}
	if !bytes.Equal(r.Body, content) || r.ContentLength != int64(len(content)) || r.Chunked {
		t.Errorf("body %q (Content-Length %d, chunked %v), want the file's %d bytes", r.Body, r.ContentLength, r.Chunked, len(content))
	}
	if r.ContentType != "application/octet-stream" {
		t.Errorf("Content-Type %q", r.ContentType)
	}
	if r.Query.Get("format") != "csv" || r.Query.Get("mode") != "lenient" || len(r.Query) != 3 ||
		!sameJSON(t, []byte(r.Query.Get("schema")), `[{"name":"sepal_length","type":"float"},{"name":"species","type":"string"}]`) {
		t.Errorf("query %v", r.Query)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("output has %d lines, want header, row and quarantine line:\n%s", len(lines), out)
	}
	if f := strings.Fields(lines[0]); !slices.Equal(f, []string{"DATASET", "VERSION", "FORMAT", "ROWS", "BAD_ROWS", "COLUMNS", "SIZE", "DIGEST"}) {
		t.Errorf("header %q", lines[0])
	}
	if f := strings.Fields(lines[1]); !slices.Equal(f, []string{"iris", "2", "csv", "148", "2", "2", "5.0", "KiB", strings.Repeat("cd", 6)}) {
		t.Errorf("row %q", lines[1])
	}
	if want := `2 bad rows quarantined; first: line 7: column sepal_length: "x" is not a float`; lines[2] != want {
		t.Errorf("quarantine line %q, want %q", lines[2], want)
	}

	// Without flags the query is empty, so the node detects the format and
	// applies its default mode; -format json prints the node's answer.
	out, errOut = captureOutput(t, func() { code = run([]string{"datasets", "push", "-address", srv.URL, "-format", "json", "iris", file}) })
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if r := got()[1]; len(r.Query) != 0 {
		t.Errorf("query without flags %v, want none", r.Query)
	}
	if !strings.Contains(out, `"create_index": 40`) || !strings.Contains(out, `"reason": "3 fields, want 2"`) {
		t.Errorf("json output %q", out)
	}
}

func TestDatasetsPush_CleanVersionHasNoQuarantineLine(t *testing.T) {
	clean := map[string]any{"dataset": "iris", "version": 1, "format": "jsonl", "rows": 3, "size": 10, "digest": "ab",
		"columns": []any{map[string]any{"name": "x", "type": "int"}}}
	srv, _ := recordingServer(t, func(w http.ResponseWriter, _ request) { writeJSONReply(w, 201, clean) })
	file := filepath.Join(t.TempDir(), "d.jsonl")
	os.WriteFile(file, []byte("{\"x\":1}\n"), 0o600)
	var code int
	out, errOut := captureOutput(t, func() { code = run([]string{"datasets", "push", "-address", srv.URL, "iris", file}) })
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !slices.Equal(strings.Fields(lines[1]), []string{"iris", "1", "jsonl", "3", "0", "1", "10", "B", "ab"}) {
		t.Errorf("output %q", out)
	}
}

func TestDatasetsPush_BadFlags(t *testing.T) {
	srv, got := recordingServer(t, func(w http.ResponseWriter, _ request) { writeJSONReply(w, 201, datasetVersionRecord) })
	dir := t.TempDir()
	file := filepath.Join(dir, "d.csv")
	os.WriteFile(file, []byte("a\n1\n"), 0o600)
	cases := []struct {
		name string
		args []string
		msg  string
	}{
		{"no file", []string{"iris"}, "expected 2 argument(s), got 1"},
		{"too many", []string{"iris", file, file}, "expected 2 argument(s), got 3"},
		{"unknown data format", []string{"-data-format", "xlsx", "iris", file}, `-data-format "xlsx" is unknown: use one of csv, tsv, jsonl, libsvm, parquet`},
		{"unknown mode", []string{"-mode", "loose", "iris", file}, `-mode "loose" is unknown`},
		{"bad schema", []string{"-schema", "a:number", "iris", file}, `-schema column "a" has type "number"`},
		{"missing file", []string{"iris", file + ".nope"}, "no such file"},
		{"directory", []string{"iris", dir}, "is not a regular file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var code int
			_, errOut := captureOutput(t, func() { code = run(append([]string{"datasets", "push", "-address", srv.URL}, tc.args...)) })
			if code != 1 || !strings.Contains(errOut, tc.msg) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, errOut, tc.msg)
			}
		})
	}
	if n := len(got()); n != 0 {
		t.Errorf("bad flags still sent %d requests", n)
	}
}

func TestDatasetsPush_UndetectedFormatNamesTheFlag(t *testing.T) {
	srv, _ := recordingServer(t, func(w http.ResponseWriter, _ request) {
		writeJSONReply(w, 400, map[string]string{"error": "the file's format could not be detected; give ?format= (one of csv, tsv)", "code": "invalid_argument"})
	})
	file := filepath.Join(t.TempDir(), "d.bin")
	os.WriteFile(file, []byte{0, 1, 2}, 0o600)
	var code int
	_, errOut := captureOutput(t, func() { code = run([]string{"datasets", "push", "-address", srv.URL, "iris", file}) })
	if code != 1 || !strings.Contains(errOut, "could not be detected") || !strings.Contains(errOut, "Give the format with -data-format FORMAT") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestDatasetsDelete_PathAndForce(t *testing.T) {
	srv, got := recordingServer(t, func(w http.ResponseWriter, req request) {
		if strings.HasSuffix(req.Path, "/used") && req.Query.Get("force") != "true" {
			writeJSONReply(w, 409, map[string]string{"error": "dataset used:1 is the lineage of version 2 of model \"m\"; delete that first, or pass force", "code": "conflict"})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	cases := []struct {
		args      []string
		path      string
		force     bool
		out, fail string
	}{
		{[]string{"iris"}, "/v1/datasets/iris", false, "Deleted dataset iris", ""},
		{[]string{"-force", "iris"}, "/v1/datasets/iris", true, "Deleted dataset iris", ""},
		{[]string{"iris:3", "-force"}, "/v1/datasets/iris/versions/3", true, "Deleted version 3 of dataset iris", ""},
		{[]string{"iris:3"}, "/v1/datasets/iris/versions/3", false, "Deleted version 3 of dataset iris", ""},
		{[]string{"-format", "json", "iris:3"}, "/v1/datasets/iris/versions/3", false, `"deleted": "iris:3"`, ""},
		{[]string{"used"}, "/v1/datasets/used", false, "", "Give -force to delete it anyway"},
		{[]string{"iris:latest"}, "", false, "", "delete needs a version number, not latest"},
		{[]string{"iris:x"}, "", false, "", "must be a number from 1"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			before := len(got())
			var code int
			out, errOut := captureOutput(t, func() { code = run(append([]string{"datasets", "delete", "-address", srv.URL}, tc.args...)) })
			if tc.fail != "" {
				if code != 1 || !strings.Contains(errOut, tc.fail) {
					t.Errorf("exit %d, stderr %q; want 1 and %q", code, errOut, tc.fail)
				}
			} else if code != 0 || !strings.Contains(out, tc.out) {
				t.Errorf("exit %d, output %q, stderr %q; want 0 and %q", code, out, errOut, tc.out)
			}
			reqs := got()[before:]
			if tc.path == "" {
				if len(reqs) != 0 {
					t.Errorf("sent %d requests, want none", len(reqs))
				}
				return
			}
			if len(reqs) != 1 {
				t.Fatalf("sent %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			wantQuery := 0
			if tc.force {
				wantQuery = 1
			}
			if r.Method != "DELETE" || r.Path != tc.path || (r.Query.Get("force") == "true") != tc.force || len(r.Query) != wantQuery {
				t.Errorf("request %s %s?%s, want DELETE %s with force %v", r.Method, r.Path, r.Query.Encode(), tc.path, tc.force)
			}
		})
	}
}

func TestDatasetsReads_Tables(t *testing.T) {
	srv, got := recordingServer(t, func(w http.ResponseWriter, req request) {
		switch req.Path {
		case "/v1/datasets":
			writeJSONReply(w, 200, map[string]any{"items": []any{
				map[string]any{"name": "iris", "latest_version": 2, "updated_at": "2025-01-02T03:04:05Z"},
			}, "next_cursor": ""})
		case "/v1/datasets/iris/versions":
			writeJSONReply(w, 200, map[string]any{"items": []any{
				map[string]any{"dataset": "iris", "version": 1, "format": "csv", "rows": 150, "bad_rows": 0,
					"columns": []any{map[string]any{"name": "a", "type": "int"}}, "created_at": "2025-01-01T00:00:00Z"},
				map[string]any{"dataset": "iris", "version": 2, "format": "tsv", "rows": 148, "bad_rows": 2,
					"columns": []any{map[string]any{"name": "a", "type": "int"}, map[string]any{"name": "b", "type": "string"}}, "created_at": "2025-01-02T00:00:00Z"},
			}, "next_cursor": ""})
		case "/v1/datasets/iris/versions/latest", "/v1/datasets/iris/versions/2":
			writeJSONReply(w, 200, datasetVersionRecord)
		case "/v1/datasets/iris/versions/latest/rows":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"dataset":"iris","version":2,"columns":["id","name","ok"],"rows":[[9007199254740993,"a\tb",true],[1,null,false]]}`))
		default:
			writeJSONReply(w, 404, map[string]string{"error": "no route " + req.Path, "code": "not_found"})
		}
	})
	cases := []struct {
		args  []string
		lines [][]string // fields of output lines that must appear
	}{
		{[]string{"datasets", "list"}, [][]string{{"NAME", "LATEST", "UPDATED"}, {"iris", "2", "2025-01-02T03:04:05Z"}}},
		{[]string{"datasets", "versions", "iris"}, [][]string{
			{"VERSION", "FORMAT", "ROWS", "BAD_ROWS", "COLUMNS", "CREATED"},
			{"1", "csv", "150", "0", "1", "2025-01-01T00:00:00Z"},
			{"2", "tsv", "148", "2", "2", "2025-01-02T00:00:00Z"},
		}},
		{[]string{"datasets", "get", "iris"}, [][]string{
			{"Dataset:", "iris:2"},
			{"Format:", "csv", "(lenient)"},
			{"Bad", "rows:", "2"},
			{"NAME", "TYPE", "COUNT", "NULLS", "MIN", "MAX", "MEAN", "STD", "TOP"},
			{"sepal_length", "float", "147", "1", "4.3", "7.9", "5.84333", "0.825301", "-"},
			{"species", "string", "148", "0", "-", "-", "-", "-", "setosa(50),", "versicolor(~49),", "virginica(48)"},
		}},
		{[]string{"datasets", "get", "iris:2"}, [][]string{{"Dataset:", "iris:2"}}},
		{[]string{"datasets", "rows", "iris"}, [][]string{
			{"id", "name", "ok"},
			{"9007199254740993", `a\tb`, "true"},
			{"1", "-", "false"},
		}},
		{[]string{"datasets", "rows", "-format", "json", "iris"}, [][]string{{`9007199254740993,`}}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var code int
			out, errOut := captureOutput(t, func() { code = run(append(tc.args, "-address", srv.URL)) })
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			var have [][]string
			for _, l := range strings.Split(out, "\n") {
				have = append(have, strings.Fields(l))
			}
			for _, want := range tc.lines {
				if !slices.ContainsFunc(have, func(h []string) bool { return slices.Equal(h, want) }) {
					t.Errorf("output lacks a line %q:\n%s", want, out)
				}
			}
		})
	}

	// -limit goes to the node; the version after ':' picks the path.
	captureOutput(t, func() { run([]string{"datasets", "rows", "-address", srv.URL, "-limit", "5", "iris:latest"}) })
	var sawLimit bool
	for _, r := range got() {
		sawLimit = sawLimit || (r.Path == "/v1/datasets/iris/versions/latest/rows" && r.Query.Get("limit") == "5")
	}
	if !sawLimit {
		t.Errorf("no rows request with limit=5 among %v", got())
	}
}

func TestDatasetsCommands_ServerErrorIsExit1WithMessage(t *testing.T) {
	srv, _ := recordingServer(t, func(w http.ResponseWriter, _ request) {
		writeJSONReply(w, 404, map[string]string{"error": `dataset "iris" not found`, "code": "not_found"})
	})
	file := filepath.Join(t.TempDir(), "d.csv")
	os.WriteFile(file, []byte("a\n1\n"), 0o600)
	for _, args := range [][]string{
		{"datasets", "push", "iris", file},
		{"datasets", "list"},
		{"datasets", "versions", "iris"},
		{"datasets", "get", "iris"},
		{"datasets", "rows", "iris"},
		{"datasets", "delete", "iris"},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			var code int
			args := append(args[:len(args):len(args)], "-address", srv.URL)
			_, errOut := captureOutput(t, func() { code = run(args) })
			if code != 1 || !strings.Contains(errOut, `dataset "iris" not found (not_found, HTTP 404)`) {
				t.Errorf("run(%v) = %d, stderr %q", args, code, errOut)
			}
		})
	}
}
