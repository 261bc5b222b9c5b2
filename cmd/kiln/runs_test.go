package main

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

// runRecord is a run as GET /v1/runs/{id} answers it.
func runRecord(id, name string, params map[string]string, metrics map[string]float64) map[string]any {
	if params == nil {
		params = map[string]string{}
	}
	if metrics == nil {
		metrics = map[string]float64{}
	}
	return map[string]any{
		"id": id, "name": name, "experiment": "iris", "experiment_id": "1", "status": "FINISHED",
		"lifecycle_stage": "active", "job_id": "j-" + name, "params": params, "metrics": metrics,
		"tags": map[string]string{}, "artifacts": []string{},
		"start_time": "2025-01-02T03:04:05.123Z", "end_time": "2025-01-02T03:05:35.123Z", "duration_seconds": 90.0,
	}
}

// tableLines splits each line of a table into its cells.
func tableLines(out string) [][]string {
	var lines [][]string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		lines = append(lines, strings.Fields(l))
	}
	return lines
}

func TestRunsList_QueryFollowsCursorsAndShowsMetricColumns(t *testing.T) {
	many := map[string]float64{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "zeta": 0.123456}
	var pages atomic.Int32
	srv, got := recordingServer(t, func(w http.ResponseWriter, req request) {
		if pages.Add(1) > 2 {
			// A client that loses the cursor would ask for ever.
			writeJSONReply(w, 400, map[string]string{"error": "too many pages", "code": "invalid_argument"})
			return
		}
		if req.Query.Get("cursor") == "" {
			writeJSONReply(w, 200, map[string]any{"next_cursor": "c1", "items": []any{
				runRecord("0123456789abcdef0123456789abcdef", "r1", nil, many),
			}})
			return
		}
		writeJSONReply(w, 200, map[string]any{"next_cursor": "", "items": []any{
			runRecord("fedcba9876543210fedcba9876543210", "r2", nil, map[string]float64{"a": 123456.7}),
		}})
	})
	var code int
	out, errOut := captureOutput(t, func() {
		code = run([]string{"runs", "list", "-address", srv.URL, "-experiment", "iris",
			"-filter", "metrics.zeta > 0.1 and params.max_depth > 4", "-order-by", "metrics.zeta desc"})
	})
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	reqs := got()
	if len(reqs) != 2 {
		t.Fatalf("server got %d requests, want 2 (one per page)", len(reqs))
	}
	for i, r := range reqs {
		q := r.Query
		if r.Path != "/v1/runs" || q.Get("experiment") != "iris" || q.Get("filter") != "metrics.zeta > 0.1 and params.max_depth > 4" ||
			q.Get("order_by") != "metrics.zeta desc" || q.Get("limit") != "1000" {
			t.Errorf("request %d: %s %v", i, r.Path, q)
		}
	}
	if c := reqs[1].Query.Get("cursor"); c != "c1" {
		t.Errorf("second page asked with cursor %q, want c1", c)
	}
	lines := tableLines(out)
	// zeta is named by the search, so it takes a column ahead of f, the
	// last of the others by name.
	wantHeader := []string{"ID", "NAME", "EXPERIMENT", "STATUS", "DURATION", "a", "b", "c", "d", "e", "zeta"}
	if len(lines) != 3 || !slices.Equal(lines[0], wantHeader) {
		t.Fatalf("output:\n%s\nwant header %v and two rows", out, wantHeader)
	}
	if want := []string{"0123456789ab", "r1", "iris", "FINISHED", "1m30s", "1", "2", "3", "4", "5", "0.1235"}; !slices.Equal(lines[1], want) {
		t.Errorf("row 1 %v, want %v", lines[1], want)
	}
	if want := []string{"fedcba987654", "r2", "iris", "FINISHED", "1m30s", "1.235e+05", "-", "-", "-", "-", "-"}; !slices.Equal(lines[2], want) {
		t.Errorf("row 2 %v, want %v", lines[2], want)
	}
	if !strings.Contains(errOut, "1 more metric(s) not shown: f") {
		t.Errorf("stderr %q does not name the hidden metric", errOut)
	}
}

func TestRunsList_LimitAsksOnePage(t *testing.T) {
	srv, got := recordingServer(t, func(w http.ResponseWriter, req request) {
		if req.Query.Get("cursor") != "" {
			writeJSONReply(w, 400, map[string]string{"error": "-limit asks one page", "code": "invalid_argument"})
			return
		}
		writeJSONReply(w, 200, map[string]any{"next_cursor": "more", "items": []any{runRecord("0123456789abcdef0123456789abcdef", "r1", nil, nil)}})
	})
	var code int
	out, errOut := captureOutput(t, func() { code = run([]string{"runs", "list", "-address", srv.URL, "-limit", "1"}) })
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	reqs := got()
	if len(reqs) != 1 || reqs[0].Query.Get("limit") != "1" || len(reqs[0].Query) != 1 {
		t.Fatalf("requests %+v, want one with limit=1 alone", reqs)
	}
	if lines := tableLines(out); len(lines) != 2 || !slices.Equal(lines[0], []string{"ID", "NAME", "EXPERIMENT", "STATUS", "DURATION"}) {
		t.Errorf("output:\n%s", out)
	}
	if !strings.Contains(errOut, "More runs match") {
		t.Errorf("stderr %q does not say more runs match", errOut)
	}

	// -format json prints the node's page as it came.
	out, _ = captureOutput(t, func() { code = run([]string{"runs", "list", "-address", srv.URL, "-limit", "1", "-format", "json"}) })
	var page map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &page) != nil || page["next_cursor"] != "more" || len(items(page)) != 1 {
		t.Errorf("json exit %d, output %q", code, out)
	}

	for _, bad := range []string{"0", "-3", "10001"} {
		n := len(got())
		_, errOut := captureOutput(t, func() { code = run([]string{"runs", "list", "-address", srv.URL, "-limit", bad}) })
		if code != 1 || !strings.Contains(errOut, "-limit must be") || len(got()) != n {
			t.Errorf("-limit %s: exit %d, stderr %q, %d requests sent", bad, code, errOut, len(got())-n)
		}
	}
}

func TestRunListMetrics_NamedFirstThenByName(t *testing.T) {
	runs := []map[string]any{{"metrics": map[string]any{
		"acc": 1.0, "auc": 1.0, "f1": 1.0, "loss": 1.0, "loss_val": 1.0, "prec": 1.0, "recall": 1.0, "val.rmse": 1.0,
	}}}
	cases := []struct {
		search string
		shown  []string
	}{
		{"", []string{"acc", "auc", "f1", "loss", "loss_val", "prec"}},
		{"metrics.recall desc", []string{"acc", "auc", "f1", "loss", "loss_val", "recall"}},
		{"metric.`val.rmse` < 1", []string{"acc", "auc", "f1", "loss", "loss_val", "val.rmse"}},
		{`metrics."recall" > 0 metrics.val.rmse asc`, []string{"acc", "auc", "f1", "loss", "recall", "val.rmse"}},
		// metrics.loss_val names loss_val, not loss.
		{"metrics.loss_val < 1 and metrics.recall > 0 and metrics.val.rmse > 0 and metrics.prec > 0", []string{"acc", "auc", "loss_val", "prec", "recall", "val.rmse"}},
	}
	for _, tc := range cases {
		t.Run(tc.search, func(t *testing.T) {
			shown, hidden := runListMetrics(runs, tc.search)
			if !slices.Equal(shown, tc.shown) || len(shown)+len(hidden) != 8 {
				t.Errorf("shown %v hidden %v, want shown %v", shown, hidden, tc.shown)
			}
		})
	}
}

func TestRunsGet_PrintsTables(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef"
	r := runRecord(id, "r1", map[string]string{"max_depth": "6", "eta": "0.3"}, map[string]float64{"auc": 0.93125, "logloss": 0.2})
	r["tags"] = map[string]string{"mlflow.user": "ana"}
	r["artifacts"] = []string{"model/model.json", "plots/roc.png"}
	srv, got := recordingServer(t, func(w http.ResponseWriter, req request) {
		switch req.Path {
		case "/v1/runs/" + id:
			writeJSONReply(w, 200, r)
		case "/v1/runs":
			writeJSONReply(w, 200, map[string]any{"items": []any{r}, "next_cursor": ""})
		default:
			writeJSONReply(w, 404, map[string]string{"error": "run not found", "code": "not_found"})
		}
	})
	want := `ID:         0123456789abcdef0123456789abcdef
Name:       r1
Experiment: iris
Status:     FINISHED
Job:        j-r1
Start:      2025-01-02T03:04:05Z
End:        2025-01-02T03:05:35Z
Duration:   1m30s

PARAM      VALUE
eta        0.3
max_depth  6

METRIC   VALUE
auc      0.93125
logloss  0.2

TAG          VALUE
mlflow.user  ana

ARTIFACTS
  model/model.json
  plots/roc.png
`
	// The full ID, and the prefix list shows, which is found by listing.
	for _, ref := range []string{id, id[:12]} {
		var code int
		out, errOut := captureOutput(t, func() { code = run([]string{"runs", "get", "-address", srv.URL, ref}) })
		if code != 0 || out != want {
			t.Errorf("get %s: exit %d, stderr %q, output:\n%s\nwant:\n%s", ref, code, errOut, out, want)
		}
	}
	var paths []string
	for _, req := range got() {
		paths = append(paths, req.Path)
	}
	if want := []string{"/v1/runs/" + id, "/v1/runs/" + id[:12], "/v1/runs"}; !slices.Equal(paths, want) {
		t.Errorf("requests %v, want %v", paths, want)
	}

	// A prefix no run has is the node's 404.
	var code int
	_, errOut := captureOutput(t, func() { code = run([]string{"runs", "get", "-address", srv.URL, "beef"}) })
	if code != 1 || !strings.Contains(errOut, "run not found") {
		t.Errorf("unknown prefix: exit %d, stderr %q", code, errOut)
	}
}

func TestRunsGet_AmbiguousPrefixNamesTheRuns(t *testing.T) {
	a, b := "abc0000000000000000000000000000a", "abc0000000000000000000000000000b"
	srv, _ := recordingServer(t, func(w http.ResponseWriter, req request) {
		if req.Path == "/v1/runs" {
			writeJSONReply(w, 200, map[string]any{"items": []any{runRecord(a, "x", nil, nil), runRecord(b, "y", nil, nil)}})
			return
		}
		writeJSONReply(w, 404, map[string]string{"error": "run not found", "code": "not_found"})
	})
	var code int
	_, errOut := captureOutput(t, func() { code = run([]string{"runs", "get", "-address", srv.URL, "abc"}) })
	if code != 1 || !strings.Contains(errOut, `prefix "abc" matches 2 runs (`+a+", "+b+")") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestBestValues_MaxUnlessLossOrError(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	cases := []struct {
		key    string
		values []*float64
		best   []bool
	}{
		{"auc", []*float64{f(0.9), f(0.95), f(0.8)}, []bool{false, true, false}},
		{"accuracy", []*float64{f(0.7), nil, f(0.9)}, []bool{false, false, true}},
		{"loss", []*float64{f(0.9), f(0.95), f(0.8)}, []bool{false, false, true}},
		{"val_loss", []*float64{f(0.3), f(0.2)}, []bool{false, true}},
		{"RMSE", []*float64{f(3), f(2)}, []bool{false, true}},
		{"test_mae", []*float64{f(1), f(2)}, []bool{true, false}},
		{"error_rate", []*float64{f(0.1), f(0.2)}, []bool{true, false}},
		{"ties", []*float64{f(2), f(1), f(2)}, []bool{true, false, true}},
		{"same", []*float64{f(1), f(1)}, []bool{false, false}},
		{"one value", []*float64{f(1), nil}, []bool{false, false}},
	}
	for _, tc := range cases {
		t.Run(tc.key, func(t *testing.T) {
			if got := bestValues(tc.values, lowerIsBetter(tc.key)); !slices.Equal(got, tc.best) {
				t.Errorf("best of %s = %v, want %v", tc.key, got, tc.best)
			}
		})
	}
}

func TestRunsCompare_MarksBestPerMetricRow(t *testing.T) {
	runs := map[string]map[string]any{
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": runRecord("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "gbdt-a",
			map[string]string{"max_depth": "4"}, map[string]float64{"auc": 0.91, "logloss": 0.30}),
		"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb": runRecord("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "gbdt-b",
			map[string]string{"max_depth": "6", "eta": "0.1"}, map[string]float64{"auc": 0.95, "logloss": 0.25}),
		"cccccccccccccccccccccccccccccccc": runRecord("cccccccccccccccccccccccccccccccc", "gbdt-b",
			map[string]string{"max_depth": "8"}, map[string]float64{"auc": 0.93, "logloss": 0.21, "f1": 0.5}),
	}
	srv, got := recordingServer(t, func(w http.ResponseWriter, req request) {
		if r, ok := runs[strings.TrimPrefix(req.Path, "/v1/runs/")]; ok {
			writeJSONReply(w, 200, r)
			return
		}
		writeJSONReply(w, 404, map[string]string{"error": "run not found", "code": "not_found"})
	})
	var code int
	out, errOut := captureOutput(t, func() {
		code = run([]string{"runs", "compare", "-address", srv.URL,
			"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "cccccccccccccccccccccccccccccccc"})
	})
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if n := len(got()); n != 3 {
		t.Errorf("server got %d requests, want one per run", n)
	}
	// The two runs named gbdt-b are told apart by their short IDs.
	want := [][]string{
		{"KEY", "gbdt-a", "bbbbbbbbbbbb", "cccccccccccc"},
		{"param.eta", "-", "0.1", "-"},
		{"param.max_depth", "4", "6", "8"},
		{"metric.auc", "0.91", "0.95*", "0.93"},
		{"metric.f1", "-", "-", "0.5"},
		{"metric.logloss", "0.3", "0.25", "0.21*"},
	}
	if lines := tableLines(out); !slices.EqualFunc(lines, want, slices.Equal) {
		t.Errorf("output:\n%s\nwant rows %v", out, want)
	}

	_, errOut = captureOutput(t, func() {
		code = run([]string{"runs", "compare", "-address", srv.URL, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"})
	})
	if code != 1 || !strings.Contains(errOut, "at least 2 argument(s)") {
		t.Errorf("one run: exit %d, stderr %q", code, errOut)
	}
	_, errOut = captureOutput(t, func() {
		code = run([]string{"runs", "compare", "-address", srv.URL, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "dddddddddddddddddddddddddddddddd"})
	})
	if code != 1 || !strings.Contains(errOut, "run dddddddddddddddddddddddddddddddd: run not found") {
		t.Errorf("unknown run: exit %d, stderr %q", code, errOut)
	}
}

func TestNodesVerbose_ShowsWhatHoldsEachGPU(t *testing.T) {
	gpu := func(i int) map[string]any { return map[string]any{"index": i, "model": "H100", "memory_mb": 81920} }
	job := func(i int, id, name string) map[string]any {
		return map[string]any{"index": i, "job_id": id, "job_name": name}
	}
	replica := func(i int, dep string, v int, alloc string) map[string]any {
		return map[string]any{"index": i, "deployment": dep, "version": v, "allocation": alloc}
	}
	// use as the node answers it: the ledger's holders (ended jobs and
	// failed replicas are not in it).
	nodes := map[string]any{"items": []any{
		map[string]any{"id": "n-1", "name": "gpu1", "status": "alive", "resources": map[string]any{
			"cpu_cores": 32, "memory_mb": 256000, "gpus": []any{gpu(1), gpu(0), gpu(2), gpu(3)}},
			"use": map[string]any{"gpus": []any{job(0, "j1", "ddp"), job(1, "j1", "ddp"), replica(2, "iris", 3, "a-1"), job(3, "j3", "next")}}},
		map[string]any{"id": "n-2", "name": "cpu1", "status": "alive", "resources": map[string]any{"cpu_cores": 8, "memory_mb": 32000, "gpus": []any{}},
			"use": map[string]any{"gpus": []any{}}},
		map[string]any{"id": "n-3", "name": "gpu2", "status": "alive", "resources": map[string]any{
			"cpu_cores": 32, "memory_mb": 256000, "gpus": []any{gpu(0)}},
			"use": map[string]any{"gpus": []any{job(0, "j1", "ddp")}}},
	}}
	srv, got := recordingServer(t, func(w http.ResponseWriter, req request) {
		if req.Path == "/v1/nodes" {
			writeJSONReply(w, 200, nodes)
			return
		}
		writeJSONReply(w, 404, map[string]string{"error": "no route " + req.Path, "code": "not_found"})
	})
	var code int
	out, errOut := captureOutput(t, func() { code = run([]string{"nodes", "-v", "-address", srv.URL}) })
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	_, gpuTable, ok := strings.Cut(out, "\n\n")
	if !ok {
		t.Fatalf("no GPU table after the nodes table:\n%s", out)
	}
	want := `NODE  INDEX  MODEL  MEMORY    HELD_BY
gpu1  0      H100   80.0 GiB  job j1 (ddp)
gpu1  1      H100   80.0 GiB  job j1 (ddp)
gpu1  2      H100   80.0 GiB  replica iris v3 (a-1)
gpu1  3      H100   80.0 GiB  job j3 (next)
gpu2  0      H100   80.0 GiB  job j1 (ddp)
`
	if gpuTable != want {
		t.Errorf("GPU table:\n%s\nwant:\n%s", gpuTable, want)
	}
	var paths []string
	for _, r := range got() {
		paths = append(paths, r.Path)
	}
	if want := []string{"/v1/nodes"}; !slices.Equal(paths, want) {
		t.Errorf("requests %v, want %v", paths, want)
	}

	// Without -v only the nodes are read and shown.
	out, _ = captureOutput(t, func() { code = run([]string{"nodes", "-address", srv.URL}) })
	if code != 0 || strings.Contains(out, "HELD_BY") || len(got()) != 2 {
		t.Errorf("without -v: exit %d, %d requests, output:\n%s", code, len(got())-1, out)
	}

	// With -format json the holders come as "gpus" next to the nodes.
	out, _ = captureOutput(t, func() { code = run([]string{"nodes", "-v", "-format", "json", "-address", srv.URL}) })
	var body struct {
		Items []any        `json:"items"`
		GPUs  []gpuHolding `json:"gpus"`
	}
	if err := json.Unmarshal([]byte(out), &body); code != 0 || err != nil || len(body.Items) != 3 || len(body.GPUs) != 5 {
		t.Fatalf("json: exit %d, %v, output %q", code, err, out)
	}
	if g := body.GPUs[2]; g.NodeID != "n-1" || g.Index != 2 || g.HeldBy != "replica iris v3 (a-1)" {
		t.Errorf("json GPU 2 %+v", g)
	}
}
