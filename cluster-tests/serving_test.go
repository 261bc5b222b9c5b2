package clustertest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// testdataDir holds the real model files and their reference outputs.
const testdataDir = "../ml/testdata"

// version is the part of a model version record the tests read.
type version struct {
	Model   string   `json:"model"`
	Version uint64   `json:"version"`
	Format  string   `json:"format"`
	Digest  string   `json:"digest"`
	Size    int64    `json:"size"`
	Holders []string `json:"holders"`
}

type replicaState struct {
	ID      string `json:"id"`
	Version uint64 `json:"version"`
	NodeID  string `json:"node_id"`
	State   string `json:"state"`
	Message string `json:"message"`
}

type deployment struct {
	Name    string `json:"name"`
	Traffic struct {
		Versions []struct {
			Version uint64 `json:"version"`
			Weight  int    `json:"weight"`
		} `json:"versions"`
		Shadow uint64 `json:"shadow"`
	} `json:"traffic"`
	Replicas      int            `json:"replicas"`
	ReplicaStates []replicaState `json:"replica_states"`
}

type prediction struct {
	Predictions []any  `json:"predictions"`
	Model       string `json:"model"`
	Version     uint64 `json:"version"`
	ID          string `json:"id"`
}

// push uploads a model file as the model's next version through nd.
func (nd *node) push(model, path, format string) version {
	nd.t.Helper()
	query := ""
	if format != "" {
		query = "format=" + format
	}
	var v version
	nd.upload("/v1/models/"+model+"/versions", query, path, &v)
	return v
}

// upload posts the file at path to an upload endpoint (urlPath?query),
// fails the test unless it answers 201, and decodes the answer into out.
func (nd *node) upload(urlPath, query, path string, out any) {
	nd.t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		nd.t.Fatal(err)
	}
	url := nd.baseURL() + urlPath
	if query != "" {
		url += "?" + query
	}
	req, err := http.NewRequest("POST", url, bytes.NewReader(b))
	if err != nil {
		nd.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if nd.c.token != "" {
		req.Header.Set("X-Kiln-Token", nd.c.token)
	}
	resp, err := nd.c.client().Do(req)
	if err != nil {
		nd.t.Fatalf("upload %s: %v", path, err)
	}
	defer resp.Body.Close()
	body := new(bytes.Buffer)
	_, _ = body.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		nd.t.Fatalf("upload %s to %s: HTTP %d %s", path, nd.name, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body.Bytes(), out); err != nil {
		nd.t.Fatal(err)
	}
}

// waitRunning waits until the deployment has want running replicas of each
// listed version, on distinct alive nodes, and returns it.
func (c *cluster) waitRunning(via *node, name string, want int, versions ...uint64) deployment {
	c.t.Helper()
	var d deployment
	testutil.WaitFor(c.t, 60*time.Second, func() error {
		d = deployment{}
		// A consistent read: a stale one could still show replicas that a
		// newer deployment has removed.
		if err := via.getJSON("/v1/deployments/"+name+"?consistency=consistent", &d); err != nil {
			return err
		}
		for _, v := range versions {
			nodes := map[string]bool{}
			for _, r := range d.ReplicaStates {
				if r.Version == v && r.State == "running" {
					if nd := c.byID(r.NodeID); nd == nil || !nd.running() {
						continue
					}
					nodes[r.NodeID] = true
				}
			}
			if len(nodes) != want {
				return fmt.Errorf("deployment %s version %d: %d running replicas on live nodes, want %d: %+v", name, v, len(nodes), want, d.ReplicaStates)
			}
		}
		return nil
	})
	return d
}

// predict sends instances to the model through nd.
func (nd *node) predict(model string, body map[string]any) (*response, prediction, error) {
	r, err := nd.call("POST", "/v1/models/"+model+":predict", body)
	if err != nil {
		return nil, prediction{}, err
	}
	var p prediction
	if r.status == http.StatusOK {
		err = json.Unmarshal(r.body, &p)
	}
	return r, p, err
}

// lightgbmCases reads rows of the LightGBM multiclass test set with
// LightGBM's own predicted probabilities.
func lightgbmCases(t *testing.T, n int) (rows [][]float64, want [][]float64) {
	t.Helper()
	read := func(path string, skipFirst bool) [][]float64 {
		f, err := os.Open(filepath.Join(testdataDir, path))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var out [][]float64
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() && len(out) < n {
			fields := strings.Fields(sc.Text())
			if skipFirst {
				fields = fields[1:] // the label
			}
			row := make([]float64, len(fields))
			for i, s := range fields {
				if row[i], err = strconv.ParseFloat(s, 64); err != nil {
					t.Fatal(err)
				}
			}
			out = append(out, row)
		}
		return out
	}
	return read("lightgbm/multiclass_test.tsv", true), read("lightgbm/lgmulticlass_true_predictions.txt", false)
}

func closeTo(got any, want []float64, tol float64) error {
	arr, ok := got.([]any)
	if !ok {
		if x, isNum := got.(float64); isNum && len(want) == 1 {
			arr = []any{x}
		} else {
			return fmt.Errorf("prediction %v is not an array of %d numbers", got, len(want))
		}
	}
	if len(arr) != len(want) {
		return fmt.Errorf("prediction %v has %d values, want %d", got, len(arr), len(want))
	}
	for i, v := range arr {
		x, ok := v.(float64)
		if !ok || math.Abs(x-want[i]) > tol {
			return fmt.Errorf("prediction[%d] = %v, want %v (±%g)", i, v, want[i], tol)
		}
	}
	return nil
}

// flatten turns nested JSON arrays of numbers into one slice.
func flatten(v any) []float64 {
	switch x := v.(type) {
	case float64:
		return []float64{x}
	case []any:
		var out []float64
		for _, e := range x {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return nil
}

func TestCluster_ServingPredictEverywhere(t *testing.T) {
	c := newCluster(t, 3)
	n1 := c.all()[0]
	c.waitVoters(3, 30*time.Second)

	n1.createModel("mlp", nil)
	n1.createModel("multiclass", nil)
	onnxV := n1.push("mlp", filepath.Join(testdataDir, "onnx/mlp.onnx"), "")
	lgbV := n1.push("multiclass", filepath.Join(testdataDir, "lightgbm/lgmulticlass.model"), "")
	if onnxV.Version != 1 || onnxV.Format != "onnx" || lgbV.Format != "lightgbm" {
		t.Fatalf("pushed versions %+v and %+v: want version 1, formats detected as onnx and lightgbm", onnxV, lgbV)
	}
	// An acknowledged upload is on artifact_replicas (2) nodes, this one first.
	for _, v := range []version{onnxV, lgbV} {
		if len(v.Holders) != 2 || v.Holders[0] != n1.id || v.Holders[0] == v.Holders[1] {
			t.Errorf("version %s v%d holders %v: want 2 distinct nodes, %s first", v.Model, v.Version, v.Holders, n1.id)
		}
	}

	for _, m := range []string{"mlp", "multiclass"} {
		n1.write("PUT", "/v1/deployments/"+m, map[string]any{
			"versions": []map[string]any{{"version": 1, "weight": 100}}, "replicas": 2,
		}, http.StatusOK)
	}
	c.waitRunning(n1, "mlp", 2, 1)
	c.waitRunning(n1, "multiclass", 2, 1)

	var expected map[string]struct {
		Inputs map[string]struct {
			Shape []int
			Data  []float64
		} `json:"inputs"`
		Outputs map[string]struct {
			Shape []int
			Data  []float64
		} `json:"outputs"`
	}
	b, err := os.ReadFile(filepath.Join(testdataDir, "onnx/expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	delete(raw, "_note")
	nb, _ := json.Marshal(raw)
	if err := json.Unmarshal(nb, &expected); err != nil {
		t.Fatal(err)
	}
	mlp := expected["mlp.onnx"]
	in := mlp.Inputs["data_input"]
	out := mlp.Outputs["preds"]
	instances := make([][]float64, in.Shape[0])
	for i := range instances {
		instances[i] = in.Data[i*in.Shape[1] : (i+1)*in.Shape[1]]
	}
	rows, want := lightgbmCases(t, 20)

	for _, nd := range c.all() {
		r, p, err := nd.predict("mlp", map[string]any{"instances": instances})
		if err != nil || r.status != http.StatusOK {
			t.Fatalf("predict mlp on %s: %v %v", nd.name, r, err)
		}
		got := flatten(p.Predictions)
		if len(got) != len(out.Data) {
			t.Fatalf("mlp on %s: %d outputs, want %d", nd.name, len(got), len(out.Data))
		}
		for i := range got {
			if math.Abs(got[i]-out.Data[i]) > 1e-5 {
				t.Errorf("mlp on %s: output %d = %v, want %v", nd.name, i, got[i], out.Data[i])
			}
		}
		if p.Model != "mlp" || p.Version != 1 || p.ID == "" {
			t.Errorf("mlp on %s: answer %+v lacks model, version or id", nd.name, p)
		}

		r, p, err = nd.predict("multiclass", map[string]any{"instances": rows})
		if err != nil || r.status != http.StatusOK {
			t.Fatalf("predict multiclass on %s: %v %v", nd.name, r, err)
		}
		for i := range rows {
			if err := closeTo(p.Predictions[i], want[i], 1e-6); err != nil {
				t.Errorf("multiclass on %s, row %d: %v", nd.name, i, err)
			}
		}

		// The Open Inference Protocol answers the same.
		flat := slices.Concat(rows[:2]...)
		r = nd.mustCall("POST", "/v2/models/multiclass/infer", map[string]any{
			"inputs": []map[string]any{{"name": "input", "shape": []int{2, len(rows[0])}, "datatype": "FP64", "data": flat}},
		}, http.StatusOK)
		var v2 struct {
			ModelName string `json:"model_name"`
			Outputs   []struct {
				Shape []int     `json:"shape"`
				Data  []float64 `json:"data"`
			} `json:"outputs"`
		}
		if err := json.Unmarshal(r.body, &v2); err != nil || len(v2.Outputs) != 1 || v2.ModelName != "multiclass" {
			t.Fatalf("v2 infer on %s: %s (%v)", nd.name, r, err)
		}
		for i := range 2 {
			if err := closeTo(toAny(v2.Outputs[0].Data[i*5:(i+1)*5]), want[i], 1e-6); err != nil {
				t.Errorf("v2 infer on %s, row %d: %v", nd.name, i, err)
			}
		}
		nd.mustCall("GET", "/v2/models/multiclass/ready", nil, http.StatusOK)
	}

	// Bad input is a 400 naming the problem; an unknown model 404; a model
	// that is not deployed 409.
	// Predictions are answered from the asked node's registry: it reads the
	// write made through n1 once it has applied it (?index=, as any read).
	idle := n1.createModel("idle", nil)
	if err := c.all()[2].getJSON(fmt.Sprintf("/v1/models/idle?index=%d", idle), &map[string]any{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		model string
		body  map[string]any
		want  int
		says  string
	}{
		{"multiclass", map[string]any{"instances": [][]float64{{1, 2, 3}}}, http.StatusBadRequest, "[n, 28]"},
		{"multiclass", map[string]any{"instances": []any{[]any{"x"}}}, http.StatusBadRequest, "instances[0][0]"},
		{"mlp", map[string]any{"instances": []any{[]any{1, nil, 3}}}, http.StatusBadRequest, "missing"},
		{"nosuch", map[string]any{"instances": [][]float64{{1}}}, http.StatusNotFound, "nosuch"},
		{"idle", map[string]any{"instances": [][]float64{{1}}}, http.StatusConflict, "not deployed"},
		{"multiclass", map[string]any{"instances": [][]float64{{1}}, "version": 7}, http.StatusNotFound, "version 7"},
	} {
		r, _, err := c.all()[2].predict(tc.model, tc.body)
		if err != nil {
			t.Fatal(err)
		}
		if r.status != tc.want || !strings.Contains(string(r.body), tc.says) {
			t.Errorf("predict %s %v: %s, want HTTP %d mentioning %q", tc.model, tc.body, r, tc.want, tc.says)
		}
	}
	// Missing values are fine for a tree model: LightGBM routes them.
	nan := slices.Clone(rows[0])
	body := make([]any, len(nan))
	for i, x := range nan {
		body[i] = x
	}
	body[3] = nil
	if r, _, err := n1.predict("multiclass", map[string]any{"instances": []any{body}}); err != nil || r.status != http.StatusOK {
		t.Errorf("null feature for a tree model: %v %v, want 200", r, err)
	}
	// A corrupt model file is refused with the loader's reason, and nothing is recorded.
	r, err := httpClient.Post("http://"+n1.httpAddr()+"/v1/models/idle/versions?format=onnx", "application/octet-stream", strings.NewReader("not a model"))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusBadRequest {
		t.Errorf("corrupt upload: HTTP %d, want 400", r.StatusCode)
	}
	var versions struct {
		Items []version `json:"items"`
	}
	if err := n1.getJSON("/v1/models/idle/versions?consistency=consistent", &versions); err != nil || len(versions.Items) != 0 {
		t.Errorf("after a rejected upload: versions %+v (%v), want none", versions.Items, err)
	}
}

func toAny(xs []float64) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}

func TestCluster_ServingCanaryShadowRollback(t *testing.T) {
	c := newCluster(t, 3)
	n1 := c.all()[0]
	c.waitVoters(3, 30*time.Second)
	n1.createModel("churn", nil)
	// Three versions of the same model file: what differs is only which
	// version answers, which the response names.
	for range 3 {
		n1.push("churn", filepath.Join(testdataDir, "lightgbm/lgmulticlass.model"), "lightgbm")
	}
	n1.write("PUT", "/v1/deployments/churn", map[string]any{
		"versions": []map[string]any{{"version": 1, "weight": 100}}, "replicas": 1,
	}, http.StatusOK)
	n1.write("PUT", "/v1/deployments/churn", map[string]any{
		"versions": []map[string]any{{"version": 1, "weight": 90}, {"version": 2, "weight": 10}},
		"shadow":   3, "replicas": 2, "batching": map[string]any{"max_batch": 16, "max_wait_ms": 2},
	}, http.StatusOK)
	c.waitRunning(n1, "churn", 2, 1, 2, 3)

	rows, _ := lightgbmCases(t, 1)
	const total = 2000
	var counts [4]atomic.Int64
	var failures atomic.Int64
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for w := range 8 {
		wg.Add(1)
		go func(nd *node) {
			defer wg.Done()
			for next.Add(1) <= total {
				r, p, err := nd.predict("churn", map[string]any{"instances": rows})
				if err != nil || r.status != http.StatusOK || p.Version < 1 || p.Version > 3 {
					failures.Add(1)
					continue
				}
				counts[p.Version].Add(1)
			}
		}(c.all()[w%3])
	}
	wg.Wait()
	if f := failures.Load(); f > 0 {
		t.Fatalf("%d of %d requests failed", f, total)
	}
	v1, v2, v3 := counts[1].Load(), counts[2].Load(), counts[3].Load()
	t.Logf("canary split over %d requests: v1 %d, v2 %d, shadow v3 answered %d", total, v1, v2, v3)
	if v3 != 0 {
		t.Errorf("the shadow version answered %d requests; its answers must be dropped", v3)
	}
	if math.Abs(float64(v1)/total-0.90) > 0.05 || math.Abs(float64(v2)/total-0.10) > 0.05 {
		t.Errorf("split v1 %d / v2 %d of %d is not within ±5%% of 90/10", v1, v2, total)
	}
	// The shadow got its copies: its metrics count them, cluster-wide.
	testutil.WaitFor(t, 10*time.Second, func() error {
		var m struct {
			Versions []struct {
				Version  uint64  `json:"version"`
				Requests uint64  `json:"requests"`
				P99MS    float64 `json:"p99_ms"`
			} `json:"versions"`
		}
		if err := n1.getJSON("/v1/models/churn/metrics", &m); err != nil {
			return err
		}
		got := map[uint64]uint64{}
		for _, v := range m.Versions {
			got[v.Version] = v.Requests
			if v.Requests > 0 && v.P99MS <= 0 {
				return fmt.Errorf("version %d has %d requests but p99 %v", v.Version, v.Requests, v.P99MS)
			}
		}
		if got[1]+got[2] != total || got[3] < total*9/10 {
			return fmt.Errorf("metrics %v: want v1+v2 = %d and most of them shadowed to v3", got, total)
		}
		return nil
	})
	// The same routing key keeps its version.
	seen := map[uint64]bool{}
	for range 20 {
		_, p, err := c.all()[1].predict("churn", map[string]any{"instances": rows, "key": "customer-42"})
		if err != nil {
			t.Fatal(err)
		}
		seen[p.Version] = true
	}
	if len(seen) != 1 {
		t.Errorf("routing key customer-42 reached versions %v; want one", seen)
	}

	// Move all traffic to v2, then roll back to the split.
	n1.write("PUT", "/v1/deployments/churn", map[string]any{
		"versions": []map[string]any{{"version": 2, "weight": 100}}, "replicas": 2,
	}, http.StatusOK)
	rb := n1.write("POST", "/v1/deployments/churn/rollback", nil, http.StatusOK)
	var d deployment
	if err := json.Unmarshal(rb.body, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Traffic.Versions) != 2 || d.Traffic.Versions[0].Weight != 90 || d.Traffic.Shadow != 3 {
		t.Fatalf("after rollback traffic is %+v, want v1:90 v2:10 shadow 3", d.Traffic)
	}
	c.waitRunning(n1, "churn", 2, 1, 2, 3)
	r, p, err := n1.predict("churn", map[string]any{"instances": rows, "version": 1})
	if err != nil || p.Version != 1 {
		t.Errorf("after rollback, version 1 answers %v %+v (%v)", r, p, err)
	}
}

func TestCluster_ServingReplicaNodeKilled(t *testing.T) {
	c := newCluster(t, 3)
	n1 := c.all()[0]
	c.waitVoters(3, 30*time.Second)
	n1.createModel("fraud", nil)
	n1.push("fraud", filepath.Join(testdataDir, "lightgbm/lgmulticlass.model"), "")
	n1.write("PUT", "/v1/deployments/fraud", map[string]any{
		"versions": []map[string]any{{"version": 1, "weight": 100}}, "replicas": 2,
	}, http.StatusOK)
	d := c.waitRunning(n1, "fraud", 2, 1)

	// Kill a node that holds a replica, preferring a follower so that the
	// count covers the replica's loss rather than an election.
	leader := c.waitLeader(leaderTimeout)
	var victim *node
	for _, r := range d.ReplicaStates {
		if nd := c.byID(r.NodeID); nd != nil && (victim == nil || victim == leader) {
			victim = nd
		}
	}
	survivors := c.others(victim)
	rows, _ := lightgbmCases(t, 1)

	var ok, failed atomic.Int64
	var firstErrs sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func(nd *node) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, _, err := nd.predict("fraud", map[string]any{"instances": rows})
				if err != nil || r.status != http.StatusOK {
					failed.Add(1)
					firstErrs.LoadOrStore(fmt.Sprint(r, err), true)
					continue
				}
				ok.Add(1)
			}
		}(survivors[w%2])
	}
	time.Sleep(2 * time.Second) // steady load before the kill
	victim.kill()
	killed := time.Now()
	// The replica is placed again on the surviving nodes.
	testutil.WaitFor(t, 60*time.Second, func() error {
		var now deployment
		if err := survivors[0].getJSON("/v1/deployments/fraud", &now); err != nil {
			return err
		}
		nodes := map[string]bool{}
		for _, r := range now.ReplicaStates {
			if r.State == "running" && r.NodeID != victim.id {
				nodes[r.NodeID] = true
			}
		}
		if len(nodes) != 2 {
			return fmt.Errorf("running replicas on survivors: %v", nodes)
		}
		return nil
	})
	t.Logf("replica placed again %s after the kill", time.Since(killed).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // load on the new placement too
	close(stop)
	wg.Wait()
	total := ok.Load() + failed.Load()
	t.Logf("%d requests, %d failed", total, failed.Load())
	if total < 500 {
		t.Fatalf("only %d requests were sent; the load was not steady", total)
	}
	if float64(failed.Load()) > 0.001*float64(total) {
		var errs []string
		firstErrs.Range(func(k, _ any) bool { errs = append(errs, k.(string)); return len(errs) < 5 })
		t.Errorf("%d of %d requests failed (more than 0.1%%): %v", failed.Load(), total, errs)
	}
}

// countProcesses counts running processes whose command line starts with
// path.
func countProcesses(t *testing.T, path string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc here")
	}
	n := 0
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.HasPrefix(cmdline, []byte(path+"\x00")) {
			stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
			if !bytes.Contains(stat, []byte(") Z ")) { // a zombie is gone already
				n++
			}
		}
	}
	return n
}

// execAnyHCL lets a node run any command as a process replica. Only the
// tests that run process versions add it (withHCL): every other test keeps
// the default, where a node runs no process, as a real cluster does until
// its operator lists what may run.
const execAnyHCL = `exec {
  enabled          = true
  allowed_commands = ["*"]
}`

// A process version runs the user's own Open Inference Protocol v2 server:
// here a small real one built from actors/serving/testdata/v2server.
func TestCluster_ServingProcessVersion(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "v2server")
	if out, err := exec.Command("go", "build", "-o", bin, "../actors/serving/testdata/v2server").CombinedOutput(); err != nil {
		t.Fatalf("building the v2 server: %v\n%s", err, out)
	}
	c := newCluster(t, 3, withHCL(execAnyHCL))
	n1 := c.all()[0]
	c.waitVoters(3, 30*time.Second)
	n1.createModel("custom", nil)
	spec, _ := json.Marshal(map[string]any{"command": []string{bin}})
	r := n1.write("POST", "/v1/models/custom/versions?format=process&process="+url.QueryEscape(string(spec)), nil, http.StatusCreated)
	var v version
	if err := json.Unmarshal(r.body, &v); err != nil || v.Format != "process" || v.Digest != "" {
		t.Fatalf("process version %s (%v): want format process and no artifact", r, err)
	}
	n1.write("PUT", "/v1/deployments/custom", map[string]any{
		"versions": []map[string]any{{"version": 1, "weight": 100}}, "replicas": 2,
	}, http.StatusOK)
	d := c.waitRunning(n1, "custom", 2, 1)
	if got := countProcesses(t, bin); got != 2 {
		t.Errorf("%d v2 servers run, want one per replica (2)", got)
	}
	for _, nd := range c.all() {
		_, p, err := nd.predict("custom", map[string]any{"instances": [][]float64{{1, 2, 3}, {0, 0, 1}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := closeTo(p.Predictions, []float64{14, 3}, 1e-6); err != nil {
			t.Errorf("predict through %s: %v", nd.name, err)
		}
	}
	// The server's own 400 comes back as a 400 with its message.
	r2, _, err := c.all()[1].predict("custom", map[string]any{"instances": [][]float64{{1, 2}}})
	if err != nil || r2.status != http.StatusBadRequest {
		t.Errorf("wrong width through a process replica: %v %v, want 400", r2, err)
	}

	// kill -9 of an agent takes its server down with it (no orphans), and the
	// replica is placed again.
	victim := c.byID(d.ReplicaStates[0].NodeID)
	victim.kill()
	testutil.WaitFor(t, 10*time.Second, func() error {
		if got := countProcesses(t, bin); got != 1 {
			return fmt.Errorf("%d v2 servers run after killing %s, want 1", got, victim.name)
		}
		return nil
	})
	c.waitRunning(c.others(victim)[0], "custom", 2, 1)
	if got := countProcesses(t, bin); got != 2 {
		t.Errorf("%d v2 servers run after re-placement, want 2", got)
	}
}
