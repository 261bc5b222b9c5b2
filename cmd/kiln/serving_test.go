package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// captureOutput runs f and returns what it printed to stdout and stderr.
func captureOutput(t *testing.T, f func()) (stdout, stderr string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	var errOut strings.Builder
	done := make(chan struct{})
	go func() { defer close(done); io.Copy(&errOut, r) }()
	stdout = captureStdout(t, f)
	w.Close()
	os.Stderr = old
	<-done
	return stdout, errOut.String()
}

// request is what a test server saw of one request.
type request struct {
	Method        string
	Path          string
	Query         url.Values
	Body          []byte
	ContentLength int64
	ContentType   string
	Chunked       bool
}

// recordingServer answers with respond and keeps every request it got.
func recordingServer(t *testing.T, respond func(w http.ResponseWriter, req request)) (*httptest.Server, func() []request) {
	t.Helper()
	var mu sync.Mutex
	var got []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(400)
			return
		}
		req := request{
			Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Body: body,
			ContentLength: r.ContentLength, ContentType: r.Header.Get("Content-Type"),
			Chunked: slices.Contains(r.TransferEncoding, "chunked"),
		}
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		respond(w, req)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []request {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

func writeJSONReply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// sameJSON reports whether two JSON texts decode to equal values.
func sameJSON(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Errorf("body %q is not JSON: %v", got, err)
		return false
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expected JSON %q: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

var versionRecord = map[string]any{
	"model": "iris", "version": 3, "format": "onnx", "size": 3 << 20,
	"digest":  strings.Repeat("ab", 32),
	"holders": []string{"n1", "n2"},
	"schema": map[string]any{
		"inputs":  []any{map[string]any{"name": "x", "datatype": "FP32", "shape": []int{-1, 4}}},
		"outputs": []any{map[string]any{"name": "y", "datatype": "FP32", "shape": []int{-1, 3}}},
	},
}

func TestModelsPush_StreamsFileWithQuery(t *testing.T) {
	content := make([]byte, 3<<20+17)
	rand.Read(content)
	file := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(file, content, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, got := recordingServer(t, func(w http.ResponseWriter, _ request) { writeJSONReply(w, 201, versionRecord) })

	var code int
	out, errOut := captureOutput(t, func() {
		code = run([]string{"models", "push", "-address", srv.URL, "-model-format", "onnx", "-metadata", "team=ml", "-metadata", "note=a=b", "iris", file})
	})
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	reqs := posts(got())
	if len(reqs) != 1 {
		t.Fatalf("server got %d uploads, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != "POST" || r.Path != "/v1/models/iris/versions" {
		t.Errorf("request %s %s, want POST /v1/models/iris/versions", r.Method, r.Path)
	}
	if !bytes.Equal(r.Body, content) {
		t.Errorf("body is %d bytes and differs from the %d-byte file", len(r.Body), len(content))
	}
	if r.ContentLength != int64(len(content)) || r.Chunked {
		t.Errorf("Content-Length %d (chunked %v), want %d", r.ContentLength, r.Chunked, len(content))
	}
	if r.ContentType != "application/octet-stream" {
		t.Errorf("Content-Type %q", r.ContentType)
	}
	if r.Query.Get("format") != "onnx" || !sameJSON(t, []byte(r.Query.Get("metadata")), `{"team":"ml","note":"a=b"}`) || len(r.Query) != 2 {
		t.Errorf("query %v", r.Query)
	}
	for _, want := range []string{"MODEL", "iris", "onnx", "3.0 MiB", strings.Repeat("ab", 6), "n1,n2"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, strings.Repeat("ab", 7)) {
		t.Errorf("output %q shows more than 12 digest characters", out)
	}
}

// posts keeps the uploads of recorded requests: push first reads the model
// (GET) to create it when it is missing.
func posts(reqs []request) []request {
	var out []request
	for _, r := range reqs {
		if r.Method == "POST" {
			out = append(out, r)
		}
	}
	return out
}

func TestModelsPush_ProcessWithoutFile(t *testing.T) {
	srv, got := recordingServer(t, func(w http.ResponseWriter, _ request) {
		writeJSONReply(w, 201, map[string]any{"model": "iris", "version": 1, "format": "process", "size": 0, "digest": "", "holders": []string{}})
	})
	cases := []struct {
		name        string
		args        []string
		wantProcess string
		wantSchema  string
	}{
		{"command split on spaces", []string{"-process-command", "python serve.py --port 1", "iris"}, `{"command":["python","serve.py","--port","1"]}`, ""},
		{"dash for no file", []string{"-process", `{"command":["./srv"],"env":{"A":"1"}}`, "iris", "-"}, `{"command":["./srv"],"env":{"A":"1"}}`, ""},
		{"with schema", []string{"-process-command", "./srv", "-schema", `{"inputs":[],"outputs":[]}`, "iris"}, `{"command":["./srv"]}`, `{"inputs":[],"outputs":[]}`},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var code int
			_, errOut := captureOutput(t, func() { code = run(append([]string{"models", "push", "-address", srv.URL}, tc.args...)) })
			reqs := posts(got())
			if code != 0 || len(reqs) != i+1 {
				t.Fatalf("exit %d, %d requests, stderr %q", code, len(reqs), errOut)
			}
			r := reqs[i]
			if r.Query.Get("format") != "process" || !sameJSON(t, []byte(r.Query.Get("process")), tc.wantProcess) {
				t.Errorf("query %v", r.Query)
			}
			if s := r.Query.Get("schema"); (tc.wantSchema == "") != (s == "") || (s != "" && !sameJSON(t, []byte(s), tc.wantSchema)) {
				t.Errorf("schema %q, want %q", s, tc.wantSchema)
			}
			if len(r.Body) != 0 || r.ContentLength != 0 {
				t.Errorf("body %d bytes, Content-Length %d; want none", len(r.Body), r.ContentLength)
			}
		})
	}
}

func TestModelsPush_BadFlags(t *testing.T) {
	srv, got := recordingServer(t, func(w http.ResponseWriter, _ request) { writeJSONReply(w, 201, versionRecord) })
	file := filepath.Join(t.TempDir(), "m.txt")
	os.WriteFile(file, []byte("tree"), 0o600)
	cases := []struct {
		name string
		args []string
		msg  string
	}{
		{"no file", []string{"iris"}, "FILE is required"},
		{"both process flags", []string{"-process-command", "x", "-process", `{"command":["x"]}`, "iris"}, "not both"},
		{"process is not an object", []string{"-process", `["x"]`, "iris"}, "JSON object"},
		{"format contradicts process", []string{"-model-format", "onnx", "-process-command", "x", "iris"}, "cannot be served by a process"},
		{"schema without process", []string{"-schema", `{"inputs":[]}`, "iris", file}, "only for process"},
		{"process format without command", []string{"-model-format", "process", "iris"}, "needs -process-command"},
		{"metadata without =", []string{"-metadata", "team", "iris", file}, `-metadata "team" must be KEY=VALUE`},
		{"too many arguments", []string{"iris", file, "extra"}, "at most one FILE"},
		{"missing file", []string{"iris", file + ".nope"}, "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var code int
			_, errOut := captureOutput(t, func() { code = run(append([]string{"models", "push", "-address", srv.URL}, tc.args...)) })
			if code != 1 || !strings.Contains(errOut, tc.msg) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, errOut, tc.msg)
			}
		})
	}
	if n := len(got()); n != 0 {
		t.Errorf("bad flags still sent %d requests", n)
	}
}

func TestDeploy_RequestBody(t *testing.T) {
	srv, got := recordingServer(t, func(w http.ResponseWriter, _ request) {
		writeJSONReply(w, 200, map[string]any{
			"name": "iris", "replicas": 3, "updated_at": "2025-01-01T00:00:00Z",
			"traffic":  map[string]any{"versions": []any{map[string]any{"version": 3, "weight": 90}, map[string]any{"version": 4, "weight": 10}}, "shadow": 5},
			"batching": map[string]any{"max_batch": 32, "max_wait_ms": 2},
		})
	})
	cases := []struct {
		name string
		args []string
		body string
	}{
		{"main version only", []string{"-version", "3", "iris"}, `{"versions":[{"version":3,"weight":100}],"replicas":1}`},
		{"canary", []string{"-version", "3", "-canary", "4:10", "iris"}, `{"versions":[{"version":3,"weight":90},{"version":4,"weight":10}],"replicas":1}`},
		{"two canaries", []string{"-version", "3", "-canary", "4:10", "-canary", "6:5", "iris"},
			`{"versions":[{"version":3,"weight":85},{"version":4,"weight":10},{"version":6,"weight":5}],"replicas":1}`},
		{"everything", []string{"-version", "3", "-shadow", "5", "-replicas", "3", "-max-batch", "32", "-max-wait-ms", "2", "-memory-mb", "512", "-gpus", "1", "iris"},
			`{"versions":[{"version":3,"weight":100}],"shadow":5,"replicas":3,"batching":{"max_batch":32,"max_wait_ms":2},"resources":{"memory_mb":512,"gpus":1}}`},
		{"flags after the name", []string{"iris", "-version", "3", "-replicas", "2"}, `{"versions":[{"version":3,"weight":100}],"replicas":2}`},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var code int
			out, errOut := captureOutput(t, func() { code = run(append([]string{"deploy", "-address", srv.URL}, tc.args...)) })
			reqs := got()
			if code != 0 || len(reqs) != i+1 {
				t.Fatalf("exit %d, %d requests, stderr %q", code, len(reqs), errOut)
			}
			r := reqs[i]
			if r.Method != "PUT" || r.Path != "/v1/deployments/iris" {
				t.Errorf("request %s %s, want PUT /v1/deployments/iris", r.Method, r.Path)
			}
			if !sameJSON(t, r.Body, tc.body) {
				t.Errorf("body %s, want %s", r.Body, tc.body)
			}
			if !strings.Contains(out, "3:90,4:10") || !strings.Contains(out, "32/2ms") {
				t.Errorf("output %q does not show the deployment", out)
			}
		})
	}
}

func TestDeploy_BadFlags(t *testing.T) {
	srv, got := recordingServer(t, func(w http.ResponseWriter, _ request) { writeJSONReply(w, 200, map[string]any{}) })
	cases := []struct {
		name string
		args []string
		msg  string
	}{
		{"weights reach 100", []string{"-version", "3", "-canary", "4:60", "-canary", "5:40", "iris"}, "add up to 100%"},
		{"weight of 100", []string{"-version", "3", "-canary", "4:100", "iris"}, "from 1 to 99"},
		{"no version", []string{"-canary", "4:10", "iris"}, "-version is required"},
		{"canary without weight", []string{"-version", "3", "-canary", "4", "iris"}, "VERSION:WEIGHT"},
		{"canary is the main version", []string{"-version", "3", "-canary", "3:10", "iris"}, "already in the traffic split"},
		{"zero replicas", []string{"-version", "3", "-replicas", "0", "iris"}, "-replicas must be at least 1"},
		{"no name", []string{"-version", "3"}, "expected 1 argument"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var code int
			_, errOut := captureOutput(t, func() { code = run(append([]string{"deploy", "-address", srv.URL}, tc.args...)) })
			if code != 1 || !strings.Contains(errOut, tc.msg) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, errOut, tc.msg)
			}
		})
	}
	if n := len(got()); n != 0 {
		t.Errorf("bad flags still sent %d requests", n)
	}
}

// sumPredictions answers a predict request with the sum of each instance's
// numbers, so that a test can tell which instance a prediction belongs to.
func sumPredictions(w http.ResponseWriter, req request) {
	var body struct {
		Instances [][]float64 `json:"instances"`
	}
	if err := json.Unmarshal(req.Body, &body); err != nil {
		writeJSONReply(w, 400, map[string]string{"error": err.Error(), "code": "invalid_argument"})
		return
	}
	preds := make([]float64, len(body.Instances))
	for i, row := range body.Instances {
		for _, x := range row {
			preds[i] += x
		}
	}
	writeJSONReply(w, 200, map[string]any{"predictions": preds, "model": "iris", "version": 7, "id": "r1"})
}

func TestPredict_FileBatchesInOrder(t *testing.T) {
	srv, got := recordingServer(t, sumPredictions)
	var lines strings.Builder
	for i := 1; i <= 5; i++ {
		fmt.Fprintf(&lines, "[%d, %d]\n", i, 10*i)
		if i == 2 {
			lines.WriteString("\n") // blank lines are skipped
		}
	}
	file := filepath.Join(t.TempDir(), "rows.jsonl")
	os.WriteFile(file, []byte(lines.String()), 0o600)

	var code int
	out, errOut := captureOutput(t, func() {
		code = run([]string{"predict", "-address", srv.URL, "-file", file, "-batch", "2", "-key", "user-9", "-alias", "champion", "iris"})
	})
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	reqs := got()
	var sizes []int
	for _, r := range reqs {
		var body struct {
			Instances []json.RawMessage `json:"instances"`
			Key       string            `json:"key"`
			Alias     string            `json:"alias"`
			Version   *uint64           `json:"version"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil || body.Key != "user-9" || body.Alias != "champion" || body.Version != nil {
			t.Errorf("body %s", r.Body)
		}
		if r.Method != "POST" || r.Path != "/v1/models/iris:predict" {
			t.Errorf("request %s %s", r.Method, r.Path)
		}
		sizes = append(sizes, len(body.Instances))
	}
	if !slices.Equal(sizes, []int{2, 2, 1}) {
		t.Errorf("batch sizes %v, want [2 2 1]", sizes)
	}
	want := ""
	for i := 1; i <= 5; i++ {
		want += fmt.Sprintf(`{"prediction":%d,"version":7}`+"\n", 11*i)
	}
	if out != want {
		t.Errorf("output\n%s\nwant\n%s", out, want)
	}
}

func TestPredictLines_StopsAtTheFirstError(t *testing.T) {
	send := func(in []json.RawMessage) ([]json.RawMessage, uint64, error) {
		out := make([]json.RawMessage, len(in))
		for i := range in {
			out[i] = json.RawMessage(`1`)
		}
		return out, 2, nil
	}
	cases := []struct {
		name  string
		input string
		send  func([]json.RawMessage) ([]json.RawMessage, uint64, error)
		err   string
		lines int // predictions written before the error
	}{
		{"bad JSON on line 4", "[1]\n[2]\n[3]\n[4\n", send, "line 4 is not a JSON value", 2},
		{"server error names the lines", "[1]\n[2]\n[3]\n", func(in []json.RawMessage) ([]json.RawMessage, uint64, error) {
			if string(in[0]) == "[3]" {
				return nil, 0, &apiError{Status: 400, Message: "instances[0] is bad"}
			}
			return send(in)
		}, "lines 3 to 3: instances[0] is bad", 2},
		{"short answer", "[1]\n[2]\n", func([]json.RawMessage) ([]json.RawMessage, uint64, error) {
			return []json.RawMessage{json.RawMessage(`1`)}, 1, nil
		}, "sent 2 instances, got 1 predictions", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := predictLines(strings.NewReader(tc.input), 2, tc.send, &out)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
			if n := strings.Count(out.String(), "\n"); n != tc.lines {
				t.Errorf("wrote %d predictions before the error, want %d", n, tc.lines)
			}
		})
	}
}

func TestPredict_Data(t *testing.T) {
	srv, got := recordingServer(t, sumPredictions)
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"table", []string{"-data", "[[1,2],[3,4]]", "-version", "7", "iris"}, []string{"INSTANCE", "0 ", "1 ", "7", "3", "7"}},
		{"json", []string{"-format", "json", "-data", "[[1,2]]", "iris"}, []string{`"predictions": [`, `"id": "r1"`}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var code int
			out, errOut := captureOutput(t, func() { code = run(append([]string{"predict", "-address", srv.URL}, tc.args...)) })
			if code != 0 || len(got()) != i+1 {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output %q lacks %q", out, w)
				}
			}
		})
	}
	if r := got()[0]; !sameJSON(t, r.Body, `{"instances":[[1,2],[3,4]],"version":7}`) {
		t.Errorf("body %s", r.Body)
	}
	for _, args := range [][]string{{"iris"}, {"-data", "[[1]]", "-file", "x", "iris"}, {"-data", `{"a":1}`, "iris"}, {"-file", "x", "-batch", "0", "iris"}} {
		var code int
		captureOutput(t, func() { code = run(append([]string{"predict", "-address", srv.URL}, args...)) })
		if code != 1 {
			t.Errorf("predict %v: exit %d, want 1", args, code)
		}
	}
}

func TestCommands_ServerErrorIsExit1WithMessage(t *testing.T) {
	srv, _ := recordingServer(t, func(w http.ResponseWriter, _ request) {
		writeJSONReply(w, 409, map[string]string{"error": "version 3 is used by deployment iris", "code": "conflict"})
	})
	file := filepath.Join(t.TempDir(), "m.onnx")
	os.WriteFile(file, []byte("onnx"), 0o600)
	rows := filepath.Join(t.TempDir(), "rows.jsonl")
	os.WriteFile(rows, []byte("[1]\n"), 0o600)
	for _, args := range [][]string{
		{"models", "push", "iris", file},
		{"models", "versions", "iris"},
		{"models", "alias", "iris", "champion", "3"},
		{"models", "alias", "-delete", "iris", "champion"},
		{"models", "metrics", "iris"},
		{"deploy", "-version", "3", "iris"},
		{"deployments", "list"},
		{"deployments", "get", "iris"},
		{"deployments", "rollback", "iris"},
		{"deployments", "delete", "iris"},
		{"predict", "-data", "[[1]]", "iris"},
		{"predict", "-file", rows, "iris"},
		{"bench", "predict", "-data", "[[1]]", "-d", "10ms", "iris"},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			var code int
			args := append(args[:len(args):len(args)], "-address", srv.URL)
			_, errOut := captureOutput(t, func() { code = run(args) })
			if code != 1 || !strings.Contains(errOut, "version 3 is used by deployment iris (conflict, HTTP 409)") {
				t.Errorf("run(%v) = %d, stderr %q", args, code, errOut)
			}
		})
	}
}

func TestModelsReads_Tables(t *testing.T) {
	srv, got := recordingServer(t, func(w http.ResponseWriter, req request) {
		switch {
		case req.Path == "/v1/models/iris/versions" && req.Query.Get("cursor") == "":
			writeJSONReply(w, 200, map[string]any{"items": []any{versionRecord}, "next_cursor": "p2"})
		case req.Path == "/v1/models/iris/versions":
			v := map[string]any{"model": "iris", "version": 4, "format": "process", "size": 0, "schema": map[string]any{}}
			writeJSONReply(w, 200, map[string]any{"items": []any{v}, "next_cursor": ""})
		case req.Path == "/v1/models/iris/metrics":
			writeJSONReply(w, 200, map[string]any{"model": "iris", "nodes_missing": 0, "versions": []any{
				map[string]any{"version": 4, "requests": 10, "errors": 1, "p50_ms": 1.5, "p95_ms": 2.25, "p99_ms": 9},
				map[string]any{"version": 3, "requests": 90, "errors": 0, "p50_ms": 1, "p95_ms": 2, "p99_ms": 3},
			}})
		case req.Path == "/v1/models/iris/aliases/champion":
			writeJSONReply(w, 200, map[string]any{"name": "iris"})
		case req.Path == "/v1/deployments/iris":
			writeJSONReply(w, 200, map[string]any{
				"name": "iris", "replicas": 2, "traffic": map[string]any{"versions": []any{map[string]any{"version": 3, "weight": 100}}},
				"unplaced": map[string]any{
					"3": map[string]any{"replicas": 1},
					"5": map[string]any{"replicas": 2, "reason": `no alive node allows command "python3"`},
					"2": 1, // the bare count of an older agent
				},
				"replica_states": []any{
					map[string]any{"id": "a1", "version": 3, "node_id": "n1", "node_name": "node-1", "state": "running", "in_flight": 2, "served": 40},
					map[string]any{"id": "a2", "version": 3, "node_id": "n2", "state": "pending", "in_flight": -1, "served": -1, "message": "loading"},
				},
			})
		default:
			writeJSONReply(w, 404, map[string]string{"error": "no route " + req.Path, "code": "not_found"})
		}
	})
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"models", "versions", "iris"}, []string{"VERSION", "3.0 MiB", "x:FP32[-1,4]", "y:FP32[-1,3]", "process"}},
		{[]string{"models", "metrics", "iris"}, []string{"P95_MS", "2.25", "9.00"}},
		{[]string{"models", "alias", "iris", "champion", "3"}, []string{"champion of model iris now points at version 3"}},
		{[]string{"models", "alias", "-delete", "iris", "champion"}, []string{"Removed alias champion"}},
		{[]string{"deployments", "get", "iris"}, []string{"traffic 3:100", "version 2: 1, version 3: 1, version 5: 2 (no alive node allows command \"python3\")", "node-1", "running", "40", "n2", "loading"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var code int
			out, errOut := captureOutput(t, func() { code = run(append(tc.args, "-address", srv.URL)) })
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output %q lacks %q", out, w)
				}
			}
		})
	}
	var seen []string
	for _, r := range got() {
		seen = append(seen, r.Method+" "+r.Path+" "+string(bytes.TrimSpace(r.Body)))
	}
	for _, w := range []string{
		"GET /v1/models/iris/versions ",
		`PUT /v1/models/iris/aliases/champion {"version":3}`,
		"DELETE /v1/models/iris/aliases/champion ",
	} {
		if !slices.Contains(seen, w) {
			t.Errorf("requests %q lack %q", seen, w)
		}
	}
	// Metrics rows are ordered by version whatever order the server uses.
	out, _ := captureOutput(t, func() { run([]string{"models", "metrics", "-address", srv.URL, "iris"}) })
	if strings.Index(out, "\n3 ") > strings.Index(out, "\n4 ") {
		t.Errorf("metrics not ordered by version:\n%s", out)
	}
	// Alias needs VERSION, and no VERSION with -delete.
	for _, args := range [][]string{{"models", "alias", "iris", "champion"}, {"models", "alias", "-delete", "iris", "champion", "3"}, {"models", "alias", "iris", "champion", "x"}} {
		var code int
		captureOutput(t, func() { code = run(append(args, "-address", srv.URL)) })
		if code != 1 {
			t.Errorf("%v: exit %d, want 1", args, code)
		}
	}
}

func TestBenchPredict_ZerosFromSchemaAndSpreads(t *testing.T) {
	var mu sync.Mutex
	predicts := map[string]int{}
	handler := func(node string) func(http.ResponseWriter, request) {
		return func(w http.ResponseWriter, req request) {
			switch req.Path {
			case "/v1/models/iris":
				writeJSONReply(w, 200, map[string]any{"name": "iris", "latest_version": 3})
			case "/v1/models/iris/versions/3":
				writeJSONReply(w, 200, versionRecord)
			case "/v1/models/iris:predict":
				if !sameJSON(t, req.Body, `{"instances":[[0,0,0,0]]}`) {
					writeJSONReply(w, 400, map[string]string{"error": "unexpected body " + string(req.Body)})
					return
				}
				mu.Lock()
				predicts[node]++
				mu.Unlock()
				writeJSONReply(w, 200, map[string]any{"predictions": []int{1}, "version": 3})
			default:
				writeJSONReply(w, 404, map[string]string{"error": "no route"})
			}
		}
	}
	a, _ := recordingServer(t, handler("a"))
	b, _ := recordingServer(t, handler("b"))
	var code int
	out, errOut := captureOutput(t, func() {
		code = run([]string{"bench", "predict", "iris", "-address", a.URL + "," + b.URL, "-c", "4", "-d", "200ms", "-format", "json"})
	})
	var res benchResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("exit %d, output %q, stderr %q", code, out, errOut)
	}
	if !strings.Contains(errOut, "one row of 4 zeros") {
		t.Errorf("stderr %q does not say it sends zeros", errOut)
	}
	mu.Lock()
	defer mu.Unlock()
	if res.Ops == 0 || res.Errors != 0 || predicts["a"] == 0 || predicts["b"] == 0 {
		t.Errorf("result %+v, predictions per node %v", res, predicts)
	}
}

func TestBenchPredict_SendsDataAndCountsErrors(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	srv, got := recordingServer(t, func(w http.ResponseWriter, req request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n > 1 && n%2 == 0 {
			writeJSONReply(w, 429, map[string]string{"error": "busy", "code": "busy"})
			return
		}
		writeJSONReply(w, 200, map[string]any{"predictions": []int{1}, "version": 2})
	})
	var code int
	out, errOut := captureOutput(t, func() {
		code = run([]string{"bench", "predict", "-address", srv.URL, "-c", "2", "-d", "150ms", "-data", "[[1.5,2]]", "-version", "2", "-format", "json", "iris"})
	})
	var res benchResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("exit %d, output %q, stderr %q", code, out, errOut)
	}
	if res.Ops == 0 || res.Errors == 0 {
		t.Errorf("result %+v: want both answers and errors", res)
	}
	for _, r := range got() {
		if r.Path != "/v1/models/iris:predict" || !sameJSON(t, r.Body, `{"instances":[[1.5,2]],"version":2}`) {
			t.Fatalf("request %s %s", r.Path, r.Body)
		}
	}
}

func TestProgressReader_DrawsAtMostFiveTimesASecond(t *testing.T) {
	var out bytes.Buffer
	clock := time.Unix(1000, 0)
	p := newProgressReader(bytes.NewReader(make([]byte, 10<<20)), 10<<20, &out, "Uploading m")
	p.now = func() time.Time { return clock }
	p.start = clock
	buf := make([]byte, 1<<20)
	reads := 0
	for {
		n, err := p.Read(buf)
		if n > 0 {
			reads++
			clock = clock.Add(50 * time.Millisecond) // 20 reads a second
		}
		if err == io.EOF {
			break
		}
	}
	p.finish()
	draws := strings.Count(out.String(), "\r")
	// 10 reads over 0.5 s: at most one draw per 200 ms, plus the one at 100%.
	if reads != 10 || draws < 3 || draws > 6 {
		t.Errorf("%d reads drew %d times:\n%q", reads, draws, out.String())
	}
	if !strings.Contains(out.String(), "100.0% 10.5/10.5 MB") || !strings.HasSuffix(out.String(), "\n") {
		t.Errorf("final line %q", out.String())
	}
}

func TestParseInterspersed_FlagsAnywhere(t *testing.T) {
	cases := []struct {
		args []string
		c    int
		pos  []string
	}{
		{[]string{"-c", "2", "iris"}, 2, []string{"iris"}},
		{[]string{"iris", "-c", "3"}, 3, []string{"iris"}},
		{[]string{"iris", "-c", "4", "file", "x"}, 4, []string{"iris", "file", "x"}},
		{[]string{"iris", "--", "-c", "5"}, 1, []string{"iris", "-c", "5"}},
		{[]string{"iris", "-"}, 1, []string{"iris", "-"}},
	}
	for _, tc := range cases {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		c := fs.Int("c", 1, "")
		if err := parseInterspersed(fs, tc.args); err != nil || *c != tc.c || !slices.Equal(fs.Args(), tc.pos) {
			t.Errorf("%v: err %v, c %d, args %q; want c %d, args %q", tc.args, err, *c, fs.Args(), tc.c, tc.pos)
		}
	}
}

func TestDeploy_WaitsForRunningReplicas(t *testing.T) {
	gets := 0
	srv, got := recordingServer(t, func(w http.ResponseWriter, req request) {
		state := "pending"
		if req.Method == "GET" {
			gets++
			if gets >= 3 {
				state = "running"
			}
		}
		writeJSONReply(w, 200, map[string]any{
			"name": "iris", "replicas": 2, "updated_at": "2025-01-01T00:00:00Z",
			"traffic": map[string]any{"versions": []any{map[string]any{"version": 3, "weight": 100}}},
			"replica_states": []any{
				map[string]any{"version": 3, "state": "running"},
				map[string]any{"version": 3, "state": state},
			},
		})
	})
	var code int
	_, errOut := captureOutput(t, func() { code = run([]string{"deploy", "-address", srv.URL, "-wait", "20s", "-version", "3", "iris"}) })
	reqs := got()
	if code != 0 || gets != 3 {
		t.Fatalf("exit %d after %d polls (stderr %q), want 0 once the second replica runs (3 polls)", code, gets, errOut)
	}
	if last := reqs[len(reqs)-1]; last.Method != "GET" || last.Query.Get("consistency") != "consistent" {
		t.Errorf("last request %+v, want a consistent GET of the deployment", last)
	}

	gets = -1000 // never running
	_, errOut = captureOutput(t, func() { code = run([]string{"deploy", "-address", srv.URL, "-wait", "600ms", "-version", "3", "iris"}) })
	if code != 1 || !strings.Contains(errOut, "1 replica(s) not running") {
		t.Errorf("exit %d, stderr %q: want 1 and the count of replicas not running", code, errOut)
	}
}

func TestModelsPull(t *testing.T) {
	body := []byte("model bytes")
	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/models/m":
			w.Write([]byte(`{"name": "m", "latest_version": 3}`))
		case "/v1/models/m/versions/3/file":
			w.Header().Set("X-Kiln-Digest", digest)
			w.Write(body)
		case "/v1/models/m/versions/2/file":
			w.Header().Set("X-Kiln-Digest", digest)
			w.Write([]byte("corrupt"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	out := filepath.Join(t.TempDir(), "model.txt")
	if code := run([]string{"models", "pull", "-address", srv.URL, "m", out}); code != 0 {
		t.Fatalf("pull exited %d", code)
	}
	if got, err := os.ReadFile(out); err != nil || string(got) != string(body) {
		t.Fatalf("pulled %q, %v", got, err)
	}
	bad := filepath.Join(t.TempDir(), "bad.txt")
	if code := run([]string{"models", "pull", "-address", srv.URL, "m:2", bad}); code == 0 {
		t.Fatal("a download whose digest does not match succeeded")
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Fatalf("a corrupt download left %s: %v", bad, err)
	}
}
