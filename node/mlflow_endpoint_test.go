package node

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// exchange is one request of the real MLflow 2.11 client and the reference
// MLflow server's answer, as cluster-tests/mlflow/record_proxy.py recorded
// them (see cluster-tests/mlflow/README.md).
type exchange struct {
	Seq          int    `json:"seq"`
	Method       string `json:"method"`
	Path         string `json:"path"`
	ReqType      string `json:"request_content_type"`
	ReqBody      string `json:"request_body"`
	ReqEncoding  string `json:"request_body_encoding"`
	Status       int    `json:"status"`
	RespBody     string `json:"response_body"`
	RespEncoding string `json:"response_body_encoding"`
}

func readExchanges(t *testing.T, path string) []exchange {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []exchange
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e exchange
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func decodeRecorded(body, encoding string) []byte {
	if encoding == "base64" {
		b, _ := base64.StdEncoding.DecodeString(body)
		return b
	}
	return []byte(body)
}

// volatile are the fields whose values differ between servers and runs:
// clocks, and error messages (the client reads only error_code).
var volatile = map[string]bool{"message": true, "start_time": true, "end_time": true, "creation_time": true, "last_update_time": true, "timestamp": true}

// sameAnswer checks that got holds what the client reads from want: every
// field of want, with the same value unless it is volatile. Lists of
// {key, value} are compared as sets (MLflow's order is its database's).
func sameAnswer(want, got any, path string) error {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: got %T, want an object", path, got)
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				return fmt.Errorf("%s.%s is missing", path, k)
			}
			if volatile[k] {
				if reflect.TypeOf(wv) != reflect.TypeOf(gv) {
					return fmt.Errorf("%s.%s is %T, want %T", path, k, gv, wv)
				}
				continue
			}
			if err := sameAnswer(wv, gv, path+"."+k); err != nil {
				return err
			}
		}
		return nil
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s: got %v, want %d items %v", path, got, len(w), want)
		}
		w, g = sortByKey(w), sortByKey(g)
		for i := range w {
			if err := sameAnswer(w[i], g[i], fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	}
	if !reflect.DeepEqual(want, got) {
		return fmt.Errorf("%s = %v, want %v", path, got, want)
	}
	return nil
}

func sortByKey(items []any) []any {
	out := append([]any(nil), items...)
	sort.SliceStable(out, func(i, j int) bool {
		a, _ := out[i].(map[string]any)
		b, _ := out[j].(map[string]any)
		ka, _ := a["key"].(string)
		kb, _ := b["key"].(string)
		return ka < kb
	})
	return out
}

// replay sends each recorded request to a, with the reference's run IDs
// replaced by Kiln's, and checks each answer against the reference's.
func replay(t *testing.T, a *Agent, exchanges []exchange, ids map[string]string) {
	t.Helper()
	subst := func(s string) string {
		for from, to := range ids {
			s = strings.ReplaceAll(s, from, to)
		}
		return s
	}
	for _, e := range exchanges {
		body := decodeRecorded(e.ReqBody, e.ReqEncoding)
		req, err := http.NewRequest(e.Method, "http://"+a.HTTPAddr()+subst(e.Path), bytes.NewReader([]byte(subst(string(body)))))
		if err != nil {
			t.Fatal(err)
		}
		if e.ReqType != "" {
			req.Header.Set("Content-Type", e.ReqType)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != e.Status {
			t.Fatalf("seq %d %s %s: status %d %s, the reference answered %d %s", e.Seq, e.Method, e.Path, resp.StatusCode, got, e.Status, e.RespBody)
		}
		want := decodeRecorded(e.RespBody, e.RespEncoding)
		var wj, gj any
		if json.Unmarshal(want, &wj) != nil {
			if !bytes.Equal(want, got) {
				t.Fatalf("seq %d %s %s: body %q, the reference answered %q", e.Seq, e.Method, e.Path, got, want)
			}
			continue
		}
		if err := json.Unmarshal(got, &gj); err != nil {
			t.Fatalf("seq %d %s %s: not JSON: %q", e.Seq, e.Method, e.Path, got)
		}
		// Learn Kiln's ID for the run the reference created.
		if strings.HasSuffix(e.Path, "/runs/create") {
			ref := wj.(map[string]any)["run"].(map[string]any)["info"].(map[string]any)["run_id"].(string)
			ids[ref] = gj.(map[string]any)["run"].(map[string]any)["info"].(map[string]any)["run_id"].(string)
			wj = jsonRoundTrip(t, subst(string(want)))
		} else {
			wj = jsonRoundTrip(t, subst(string(want)))
		}
		if err := sameAnswer(wj, gj, "answer"); err != nil {
			t.Fatalf("seq %d %s %s: %v\nkiln: %s\nreference: %s", e.Seq, e.Method, e.Path, err, got, want)
		}
	}
}

func jsonRoundTrip(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestMLflow_ReplayReferenceExchanges replays what the real MLflow client
// sent the reference server (experiments, runs, params, metrics, batches,
// search with filters, order and pages, history, artifacts upload, list and
// download, deletes) and checks Kiln answers what the client reads.
func TestMLflow_ReplayReferenceExchanges(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	replay(t, a, readExchanges(t, "../cluster-tests/mlflow/testdata/mlflow-2.11-reference.jsonl"), map[string]string{})
}

// TestMLflow_ReplayJobScript replays a training script that resumes its
// run from MLFLOW_RUN_ID, as a Kiln job's script does.
func TestMLflow_ReplayJobScript(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	exchanges := readExchanges(t, "../cluster-tests/mlflow/testdata/mlflow-2.11-reference-envrun.jsonl")
	// The reference's run, as its first answer shows it, made in Kiln.
	var first struct {
		Run struct {
			Info struct {
				RunID        string `json:"run_id"`
				RunName      string `json:"run_name"`
				ExperimentID string `json:"experiment_id"`
				UserID       string `json:"user_id"`
				StartTime    int64  `json:"start_time"`
			} `json:"info"`
			Data struct {
				Tags []mlflowTag `json:"tags"`
			} `json:"data"`
		} `json:"run"`
	}
	if err := json.Unmarshal([]byte(exchanges[0].RespBody), &first); err != nil {
		t.Fatal(err)
	}
	info := first.Run.Info
	for id := 1; id <= mustAtoi(t, info.ExperimentID); id++ {
		if _, err := a.propose(t.Context(), structs.ExperimentCreateType, &structs.ExperimentCreateRequest{Name: fmt.Sprintf("e%d", id)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	run := structs.Run{ID: info.RunID, ExperimentID: info.ExperimentID, Name: info.RunName, UserID: info.UserID, StartTime: info.StartTime, Tags: tagMap(first.Run.Data.Tags)}
	if _, err := a.propose(t.Context(), structs.RunCreateType, &structs.RunCreateRequest{Run: run}, nil); err != nil {
		t.Fatal(err)
	}
	replay(t, a, exchanges, map[string]string{})
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A NaN metric, which MLflow's client may log, reads back as "NaN" through
// both APIs instead of breaking the answer.
func TestMLflow_NaNMetric(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	r := call(t, a, "POST", "/api/2.0/mlflow/runs/create", `{"experiment_id": "0", "run_name": "nan"}`)
	if r.status != 200 {
		t.Fatalf("create: %d %v", r.status, r.body)
	}
	id := r.body["run"].(map[string]any)["info"].(map[string]any)["run_id"].(string)
	if r := call(t, a, "POST", "/api/2.0/mlflow/runs/log-metric", `{"run_id": "`+id+`", "key": "loss", "value": "NaN", "timestamp": 1, "step": 0}`); r.status != 200 {
		t.Fatalf("log NaN: %d %v", r.status, r.body)
	}
	for _, path := range []string{"/v1/runs/" + id, "/api/2.0/mlflow/runs/get?run_id=" + id, "/v1/runs/" + id + "/metrics/loss"} {
		got := call(t, a, "GET", path, "")
		if got.status != 200 || !strings.Contains(got.raw, `"NaN"`) {
			t.Fatalf("GET %s: %d %s", path, got.status, got.raw)
		}
	}
}

// A bad view type is refused even when no record would be filtered by it.
func TestMLflow_BadViewType(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	for _, path := range []string{"/api/2.0/mlflow/experiments/search", "/api/2.0/mlflow/runs/search"} {
		r := call(t, a, "POST", path, `{"view_type": "SOME", "run_view_type": "SOME", "experiment_ids": []}`)
		if r.status != 400 || r.body["error_code"] != "INVALID_PARAMETER_VALUE" {
			t.Fatalf("%s with a bad view type: %d %v", path, r.status, r.body)
		}
	}
}
