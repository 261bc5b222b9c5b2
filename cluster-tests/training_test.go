package clustertest

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// The rack: node1 2×A100-40GB, node2 4×H100-80GB, node3 no GPU;
// every node may run /bin/sh jobs.
var rackHCL = []string{
	`resources {
  gpu {
    model     = "NVIDIA A100-SXM4-40GB"
    memory_mb = 40960
    count     = 2
  }
}`,
	`resources {
  gpu {
    model     = "NVIDIA H100 80GB HBM3"
    memory_mb = 81920
    count     = 4
  }
}`,
	``,
}

const execHCL = `dead_node_reap = "3s"
exec {
  enabled          = true
  allowed_commands = ["/bin/sh"]
}`

// job is the part of a job the tests read.
type job struct {
	ID          string             `json:"id"`
	State       string             `json:"state"`
	Reason      string             `json:"reason"`
	Attempt     int                `json:"attempt"`
	ExitCode    *int               `json:"exit_code"`
	Metrics     map[string]float64 `json:"metrics"`
	ModelVer    uint64             `json:"model_version"`
	Allocations []struct {
		NodeID   string `json:"node_id"`
		NodeName string `json:"node_name"`
		GPUs     []int  `json:"gpus"`
	} `json:"allocations"`
	History []struct {
		State  string `json:"state"`
		Reason string `json:"reason"`
	} `json:"history"`
}

func (nd *node) submitJob(spec map[string]any) job {
	nd.t.Helper()
	r := nd.write("POST", "/v1/jobs", spec, 201)
	var j job
	if err := json.Unmarshal(r.body, &j); err != nil {
		nd.t.Fatal(err)
	}
	return j
}

func (nd *node) job(id string) job {
	nd.t.Helper()
	var j job
	if err := nd.getJSON("/v1/jobs/"+id+"?consistency=consistent", &j); err != nil {
		nd.t.Fatal(err)
	}
	return j
}

// waitJobState waits until the job is in one of states, read through nd.
func (nd *node) waitJobState(id string, timeout time.Duration, states ...string) job {
	nd.t.Helper()
	var j job
	testutil.WaitFor(nd.t, timeout, func() error {
		if err := nd.getJSON("/v1/jobs/"+id, &j); err != nil {
			return err
		}
		if !slices.Contains(states, j.State) {
			return fmt.Errorf("job %s is %s (%s), want %v", id, j.State, j.Reason, states)
		}
		return nil
	})
	return j
}

func shJob(name, script string, resources map[string]any) map[string]any {
	return map[string]any{"name": name, "trainer": map[string]any{"kind": "process", "command": []string{"/bin/sh", "-c", script}},
		"resources": resources}
}

// GPU placement on the rack: a job lands where its GPUs are, on
// distinct indices; one that cannot fit yet waits with its reason and is
// placed when capacity frees; one that can never fit is refused; two that
// run at once never share an index.
func TestCluster_JobsPlacedByGPU(t *testing.T) {
	c := newCluster(t, 3, withHCL(execHCL), withNodeHCL(rackHCL...))
	nd := c.all()[0]
	node2 := c.all()[1]
	c.waitRegistered(nd, 3)

	// A 3-GPU H100 job lands on node2 with three distinct indices, which it
	// sees as CUDA_VISIBLE_DEVICES.
	j := nd.submitJob(shJob("h100x3", `echo "visible=$CUDA_VISIBLE_DEVICES"`, map[string]any{"gpus": 3, "gpu_model": "H100"}))
	j = nd.waitJobState(j.ID, 60*time.Second, "succeeded")
	if len(j.Allocations) != 1 || j.Allocations[0].NodeID != node2.id || len(j.Allocations[0].GPUs) != 3 {
		t.Fatalf("allocations %+v, want 3 GPUs on %s", j.Allocations, node2.name)
	}
	g := slices.Clone(j.Allocations[0].GPUs)
	slices.Sort(g)
	if len(slices.Compact(g)) != 3 {
		t.Fatalf("GPUs %v are not distinct", j.Allocations[0].GPUs)
	}
	want := fmt.Sprintf("visible=%d,%d,%d", g[0], g[1], g[2])
	if logs := nd.jobLogs(j.ID); !strings.Contains(logs, want) {
		t.Fatalf("log %q, want %q", logs, want)
	}

	// Never fits: refused at submit.
	r, err := nd.call("POST", "/v1/jobs", shJob("h100x5", "true", map[string]any{"gpus": 5, "gpu_model": "H100"}))
	if err != nil || r.status != 400 || !strings.Contains(string(r.body), "no placement could ever hold this job") {
		t.Fatalf("a 5-GPU job: %v %v, want 400", r, err)
	}

	// Two 2-GPU H100 jobs run at once, on disjoint indices; a third waits
	// with its reason, and runs when the first is cancelled.
	long := `echo started; sleep 120`
	a := nd.submitJob(shJob("a", long, map[string]any{"gpus": 2, "gpu_model": "H100"}))
	b := nd.submitJob(shJob("b", long, map[string]any{"gpus": 2, "gpu_model": "H100"}))
	a = nd.waitJobState(a.ID, 60*time.Second, "running")
	b = nd.waitJobState(b.ID, 60*time.Second, "running")
	for _, x := range a.Allocations[0].GPUs {
		if slices.Contains(b.Allocations[0].GPUs, x) {
			t.Fatalf("jobs a %v and b %v share GPU %d", a.Allocations[0].GPUs, b.Allocations[0].GPUs, x)
		}
	}
	w := nd.submitJob(shJob("waits", "true", map[string]any{"gpus": 1, "gpu_model": "H100"}))
	w = nd.waitJobState(w.ID, 30*time.Second, "pending")
	testutil.WaitFor(t, 30*time.Second, func() error {
		if w = nd.job(w.ID); !strings.Contains(w.Reason, "waiting for capacity") {
			return fmt.Errorf("reason %q", w.Reason)
		}
		return nil
	})
	nd.write("POST", "/v1/jobs/"+a.ID+"/cancel", nil, 200)
	nd.waitJobState(a.ID, 60*time.Second, "cancelled")
	w = nd.waitJobState(w.ID, 60*time.Second, "succeeded")
	if w.Allocations[0].NodeID != node2.id {
		t.Fatalf("the waiting job ran on %s", w.Allocations[0].NodeName)
	}
	nd.write("POST", "/v1/jobs/"+b.ID+"/cancel", nil, 200)
	nd.waitJobState(b.ID, 60*time.Second, "cancelled")

	// A serving replica that holds a GPU keeps it: a job asking for every
	// GPU of the replica's node waits until the deployment goes.
	nd.createModel("iris", nil)
	nd.push("iris", filepath.Join(testdataDir, "linear", "iris.json"), "")
	nd.write("PUT", "/v1/deployments/iris", map[string]any{"versions": []map[string]any{{"version": 1, "weight": 100}},
		"replicas": 1, "resources": map[string]any{"gpus": 1}}, 200)
	d := c.waitRunning(nd, "iris", 1, 1)
	holder := c.byID(d.ReplicaStates[0].NodeID)
	all := map[string]any{"gpus": 4, "gpu_model": "H100"}
	if holder.id == c.all()[0].id {
		all = map[string]any{"gpus": 2, "gpu_model": "A100"}
	}
	full := nd.submitJob(shJob("every-gpu", "true", all))
	testutil.WaitFor(t, 30*time.Second, func() error {
		if full = nd.job(full.ID); full.State != "pending" || !strings.Contains(full.Reason, "waiting for capacity") {
			return fmt.Errorf("job on the replica's node %s is %s (%s), want pending for capacity", holder.name, full.State, full.Reason)
		}
		return nil
	})
	holdsFor(t, 3*time.Second, func() error {
		if full = nd.job(full.ID); full.State != "pending" {
			return fmt.Errorf("the job took the replica's GPU: %s on %+v", full.State, full.Allocations)
		}
		return nil
	})
	nd.write("DELETE", "/v1/deployments/iris", nil, 204)
	nd.waitJobState(full.ID, 60*time.Second, "succeeded")
}

// kill -9 of the node running a job: the job is marked lost, placed again
// on another node, and succeeds there.
func TestCluster_JobLostAndRetried(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: waits for gossip to declare a node dead")
	}
	c := newCluster(t, 3, withHCL(execHCL))
	leader := c.waitLeader(leaderTimeout)
	c.waitRegistered(leader, 3)
	spec := shJob("survivor", `echo "attempt $KILN_ATTEMPT"; if [ "$KILN_ATTEMPT" = 1 ]; then sleep 120; fi`, map[string]any{"cpu": 1})
	spec["retries"] = 1
	spec["placement"] = "spread"
	j := leader.submitJob(spec)
	j = leader.waitJobState(j.ID, 60*time.Second, "running")
	victim := c.byID(j.Allocations[0].NodeID)
	victim.kill()
	via := c.waitLeaderAmong(leaderTimeout, c.others(victim)...)
	j = via.waitJobState(j.ID, 90*time.Second, "succeeded")
	if j.Attempt != 2 || j.Allocations[0].NodeID == victim.id {
		t.Fatalf("job %+v, want attempt 2 on another node than %s", j, victim.name)
	}
	lost := false
	for _, h := range j.History {
		lost = lost || strings.Contains(h.Reason, "lost: node "+victim.name)
	}
	if !lost {
		t.Fatalf("history %+v does not record the loss", j.History)
	}
}

// Built-in softmax regression on iris is registered, deployed, and predicts
// through another node with the validation accuracy its run reported.
func TestCluster_BuiltinSoftmaxServes(t *testing.T) {
	c := newCluster(t, 3)
	nodes := c.all()
	leader := c.waitLeader(leaderTimeout)
	c.waitRegistered(leader, 3)
	iris := filepath.Join(testdataDir, "datasets", "iris.csv")
	var ds datasetVersion
	nodes[0].upload("/v1/datasets/iris/versions", "", iris, &ds)
	nodes[0].upload("/v1/datasets/iris-valid/versions", "", iris, &ds)
	features := []string{"Sepal_Length", "Sepal_Width", "Petal_Length", "Petal_Width"}
	j := nodes[0].submitJob(map[string]any{"name": "iris-softmax", "experiment": "iris",
		"trainer": map[string]any{"kind": "builtin", "algorithm": "softmax_regression"}, "dataset": "iris", "target": "Species",
		"features": features, "validation": map[string]any{"dataset": "iris-valid"}, "register_as": "iris-m"})
	j = nodes[0].waitJobState(j.ID, 60*time.Second, "succeeded")
	if j.ModelVer != 1 || j.Metrics["accuracy"] < 0.9 {
		t.Fatalf("job %+v, want version 1 registered with accuracy >= 0.9", j)
	}
	nodes[0].write("PUT", "/v1/deployments/iris-m", map[string]any{"versions": []map[string]any{{"version": 1, "weight": 100}}, "replicas": 1}, 200)
	c.waitRunning(nodes[0], "iris-m", 1, 1)

	// Every row through another node: the accuracy is the run's.
	rows, labels := readIris(t, iris)
	instances := make([]map[string]any, len(rows))
	for i, r := range rows {
		instances[i] = map[string]any{}
		for k, f := range features {
			instances[i][f] = r[k]
		}
	}
	var p prediction
	testutil.WaitFor(t, 30*time.Second, func() error {
		r, pp, err := nodes[2].predict("iris-m", map[string]any{"instances": instances})
		if err != nil || r.status != 200 {
			return fmt.Errorf("predict: %v %v", r, err)
		}
		p = pp
		return nil
	})
	classes := []string{"setosa", "versicolor", "virginica"}
	correct := 0
	for i, pred := range p.Predictions {
		probs := pred.([]any)
		best := 0
		for k := range probs {
			if probs[k].(float64) > probs[best].(float64) {
				best = k
			}
		}
		if classes[best] == labels[i] {
			correct++
		}
	}
	if acc := float64(correct) / float64(len(rows)); math.Abs(acc-j.Metrics["accuracy"]) > 1e-9 {
		t.Fatalf("served accuracy %v, the run reported %v", acc, j.Metrics["accuracy"])
	}
}

// readIris reads iris.csv's four measurements and species.
func readIris(t *testing.T, path string) ([][]float64, []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]float64
	var labels []string
	for _, rec := range recs[1:] {
		row := make([]float64, 4)
		for k := range row {
			if row[k], err = strconv.ParseFloat(rec[k+1], 64); err != nil {
				t.Fatal(err)
			}
		}
		rows = append(rows, row)
		labels = append(labels, rec[5])
	}
	return rows, labels
}

// jobLogs reads a job's log through nd.
func (nd *node) jobLogs(id string) string {
	nd.t.Helper()
	r, err := nd.call("GET", "/v1/jobs/"+id+"/logs", nil)
	if err != nil || r.status != 200 {
		nd.t.Fatalf("logs of %s: %v %v", id, r, err)
	}
	return string(r.body)
}

// waitRegistered waits until via sees n nodes registered: jobs are refused
// while no registered node could hold them.
func (c *cluster) waitRegistered(via *node, n int) {
	c.t.Helper()
	testutil.WaitFor(c.t, 30*time.Second, func() error {
		var nodes struct {
			Items []any `json:"items"`
		}
		if err := via.getJSON("/v1/nodes?consistency=consistent", &nodes); err != nil {
			return err
		}
		if len(nodes.Items) < n {
			return fmt.Errorf("%d nodes registered, want %d", len(nodes.Items), n)
		}
		return nil
	})
}

// A 2-node gang job: both members are placed in one entry, on distinct
// nodes, and meet at MASTER_ADDR:MASTER_PORT as torchrun's would.
func TestCluster_GangJobMembersMeet(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "rendezvous")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/rendezvous").CombinedOutput(); err != nil {
		t.Fatalf("build rendezvous: %v\n%s", err, out)
	}
	c := newCluster(t, 3, withHCL(fmt.Sprintf(`exec {
  enabled          = true
  allowed_commands = [%q]
}`, bin)))
	nd := c.all()[0]
	c.waitRegistered(nd, 3)
	j := nd.submitJob(map[string]any{"name": "gang", "trainer": map[string]any{"kind": "process", "command": []string{bin}},
		"nodes": 2, "resources": map[string]any{"cpu": 1}})
	j = nd.waitJobState(j.ID, 90*time.Second, "succeeded")
	if len(j.Allocations) != 2 || j.Allocations[0].NodeID == j.Allocations[1].NodeID {
		t.Fatalf("allocations %+v, want two members on distinct nodes", j.Allocations)
	}
	var logs [2]string
	for rank := range logs {
		r, err := nd.call("GET", fmt.Sprintf("/v1/jobs/%s/logs?rank=%d", j.ID, rank), nil)
		if err != nil || r.status != 200 {
			t.Fatalf("logs of rank %d: %v %v", rank, r, err)
		}
		logs[rank] = string(r.body)
	}
	if !strings.Contains(logs[0], "rank 0 met rank 1") || !strings.Contains(logs[0], "node_rank 0, nnodes 2") {
		t.Fatalf("rank 0 log %q", logs[0])
	}
	if !strings.Contains(logs[1], "rank 1 got welcome") || !strings.Contains(logs[1], "rank 1 of 2") {
		t.Fatalf("rank 1 log %q", logs[1])
	}
}

// Built-in GBDT on a binary dataset (agaricus, LibSVM) writes an XGBoost
// JSON model that Kiln serves: predictions through another node are
// probabilities that classify the rows.
func TestCluster_BuiltinGBDTServes(t *testing.T) {
	c := newCluster(t, 3)
	nodes := c.all()
	c.waitRegistered(nodes[0], 3)
	file := filepath.Join(testdataDir, "xgboost", "agaricus_test.libsvm")
	var ds struct {
		Columns []struct {
			Name string `json:"name"`
		} `json:"columns"`
	}
	nodes[0].upload("/v1/datasets/agaricus/versions", "", file, &ds)
	j := nodes[0].submitJob(map[string]any{"name": "agaricus-gbdt", "trainer": map[string]any{"kind": "builtin", "algorithm": "gbdt"},
		"dataset": "agaricus", "target": "label", "validation": map[string]any{"split": 0.2},
		"params": map[string]any{"objective": "binary:logistic", "n_estimators": 20, "max_depth": 4}, "register_as": "agaricus"})
	j = nodes[0].waitJobState(j.ID, 120*time.Second, "succeeded")
	if j.Metrics["auc"] < 0.99 {
		t.Fatalf("validation metrics %v, want auc >= 0.99", j.Metrics)
	}
	var v version
	if err := nodes[0].getJSON("/v1/models/agaricus/versions/1", &v); err != nil || v.Format != "xgboost-json" {
		t.Fatalf("registered version %+v, %v: want xgboost-json", v, err)
	}
	nodes[0].write("PUT", "/v1/deployments/agaricus", map[string]any{"versions": []map[string]any{{"version": 1, "weight": 100}}, "replicas": 1}, 200)
	c.waitRunning(nodes[0], "agaricus", 1, 1)

	// The first 200 rows, dense in the dataset's feature order.
	col := map[string]int{}
	for i, cdef := range ds.Columns[1:] { // columns[0] is the label
		col[cdef.Name] = i
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var instances [][]float64
	var labels []float64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n")[:200] {
		fields := strings.Fields(line)
		row := make([]float64, len(col))
		for _, f := range fields[1:] {
			k, val, _ := strings.Cut(f, ":")
			x, _ := strconv.ParseFloat(val, 64)
			row[col["f"+k]] = x
		}
		y, _ := strconv.ParseFloat(fields[0], 64)
		instances, labels = append(instances, row), append(labels, y)
	}
	var p prediction
	testutil.WaitFor(t, 30*time.Second, func() error {
		r, pp, err := nodes[2].predict("agaricus", map[string]any{"instances": instances})
		if err != nil || r.status != 200 {
			return fmt.Errorf("predict: %v %v", r, err)
		}
		p = pp
		return nil
	})
	correct := 0
	for i, pred := range p.Predictions {
		prob := pred.(float64)
		if prob < 0 || prob > 1 {
			t.Fatalf("prediction %d is %v, not a probability", i, prob)
		}
		if (prob >= 0.5) == (labels[i] == 1) {
			correct++
		}
	}
	if acc := float64(correct) / float64(len(labels)); acc < 0.98 {
		t.Fatalf("served accuracy %v on 200 rows, want >= 0.98", acc)
	}
}

// BenchmarkJobSubmitToStart is the "submit to process started" on
// an idle 3-node cluster: from the submit's answer to the moment the
// member's process runs, read from the process itself (the first line of
// its log carries its start time, written by the process).
func BenchmarkJobSubmitToStart(b *testing.B) {
	c := newCluster(b, 3, withHCL(execHCL))
	nd := c.waitLeader(leaderTimeout)
	c.waitRegistered(nd, 3)
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		j := nd.submitJob(shJob("latency", `date +%s%N`, map[string]any{"cpu": 0.1}))
		j = nd.waitJobState(j.ID, 60*time.Second, "succeeded")
		var ns int64
		for _, line := range strings.Split(nd.jobLogs(j.ID), "\n") {
			if n, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64); err == nil && n > 1e18 {
				ns = n
				break
			}
		}
		if ns == 0 {
			b.Fatalf("no start time in the log of %s", j.ID)
		}
		lat = append(lat, time.Unix(0, ns).Sub(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// A process job running a real program: it sees CUDA_VISIBLE_DEVICES set to
// its GPU, writes metrics through KILN_METRICS_FILE and through MLflow's
// REST API (the requests MLflow's client makes), and writes a model that
// is registered with the job's lineage.
func TestCluster_ProcessJobLogsAndRegisters(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "trainer")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/trainer").CombinedOutput(); err != nil {
		t.Fatalf("build trainer: %v\n%s", err, out)
	}
	model, err := filepath.Abs(filepath.Join(testdataDir, "linear", "iris.json"))
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, 3, withHCL(fmt.Sprintf(`exec {
  enabled          = true
  allowed_commands = [%q]
}`, bin)), withNodeHCL(rackHCL...))
	nd := c.all()[2]
	c.waitRegistered(nd, 3)
	j := nd.submitJob(map[string]any{"name": "user-script", "experiment": "scripts",
		"trainer":   map[string]any{"kind": "process", "command": []string{bin}, "env": map[string]string{"MODEL_SRC": model}},
		"params":    map[string]any{"lr": 0.1},
		"resources": map[string]any{"gpus": 1, "gpu_model": "A100"}, "register_as": "scripted"})
	j = nd.waitJobState(j.ID, 60*time.Second, "succeeded")
	if j.ModelVer != 1 || len(j.Allocations) != 1 || len(j.Allocations[0].GPUs) != 1 {
		t.Fatalf("job %+v, want one A100 and a registered version", j)
	}
	if logs := nd.jobLogs(j.ID); !strings.Contains(logs, fmt.Sprintf("gpus=%d params={\"lr\":0.1}", j.Allocations[0].GPUs[0])) {
		t.Fatalf("log %q does not show the GPU and params it was given", logs)
	}
	var run struct {
		Experiment string             `json:"experiment"`
		Status     string             `json:"status"`
		Metrics    map[string]float64 `json:"metrics"`
		Params     map[string]string  `json:"params"`
		JobID      string             `json:"job_id"`
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if err := nd.getJSON("/v1/runs/"+j.ID+"?consistency=consistent", &run); err != nil {
			return err
		}
		if run.Metrics["file_loss"] != 0.25 || run.Metrics["mlflow_loss"] != 0.4 {
			return fmt.Errorf("run metrics %v", run.Metrics)
		}
		return nil
	})
	if run.Experiment != "scripts" || run.Status != "FINISHED" || run.Params["epochs"] != "3" || run.Params["lr"] != "0.1" || run.JobID != j.ID {
		t.Fatalf("run %+v", run)
	}
	var v struct {
		Format  string `json:"format"`
		Lineage struct {
			JobID string `json:"job_id"`
			RunID string `json:"run_id"`
		} `json:"lineage"`
	}
	if err := nd.getJSON("/v1/models/scripted/versions/1?consistency=consistent", &v); err != nil || v.Format != "linear" || v.Lineage.JobID != j.ID || v.Lineage.RunID != j.ID {
		t.Fatalf("registered version %+v, %v", v, err)
	}
}

// A grid of 6 trials with parallelism 2 names the best trial, and ASHA
// stops some trials early. Each trial writes its loss, x/step, for 8 steps;
// x = 1 is the best.
func TestCluster_TuningGridWithASHA(t *testing.T) {
	c := newCluster(t, 3, withHCL(execHCL))
	nd := c.all()[0]
	c.waitRegistered(nd, 3)
	script := `x=$(echo "$KILN_PARAMS" | sed 's/.*"x":\([0-9.]*\).*/\1/')
for s in 1 2 3 4 5 6 7 8; do
  echo "{\"step\": $s, \"name\": \"loss\", \"value\": $(awk "BEGIN { print $x / $s }")}" >> "$KILN_METRICS_FILE"
  sleep 0.4
done`
	spec := map[string]any{
		"name": "grid", "job": shJob("grid", script, map[string]any{"cpu": 0.5}),
		"search": "grid", "space": map[string]any{"x": map[string]any{"kind": "values", "values": []float64{1, 2, 3, 4, 5, 6}}},
		"parallelism": 2, "metric": "loss", "goal": "minimize",
		"early_stopping": map[string]any{"kind": "asha", "min_resource": 2, "reduction": 2},
	}
	r := nd.write("POST", "/v1/tuning", spec, 201)
	var tu struct {
		ID        string `json:"id"`
		State     string `json:"state"`
		Reason    string `json:"reason"`
		BestTrial int    `json:"best_trial"`
		BestValue float64
		BestJob   string `json:"best_job"`
		Trials    []struct {
			JobID        string         `json:"job_id"`
			Params       map[string]any `json:"params"`
			State        string         `json:"state"`
			StoppedEarly bool           `json:"stopped_early"`
			StopReason   string         `json:"stop_reason"`
		} `json:"trials"`
	}
	if err := json.Unmarshal(r.body, &tu); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 120*time.Second, func() error {
		if err := nd.getJSON("/v1/tuning/"+tu.ID, &tu); err != nil {
			return err
		}
		if tu.State == "running" {
			return fmt.Errorf("tuning running: %d trials", len(tu.Trials))
		}
		return nil
	})
	if tu.State != "succeeded" || len(tu.Trials) != 6 || tu.BestTrial != 0 || tu.Trials[0].Params["x"] != 1.0 {
		t.Fatalf("tuning %+v, want 6 trials and trial 0 (x = 1) the best", tu)
	}
	stopped := 0
	for _, tr := range tu.Trials {
		if tr.StoppedEarly {
			stopped++
			if tr.State != "cancelled" || !strings.Contains(tr.StopReason, "asha") {
				t.Fatalf("stopped trial %+v, want cancelled by asha", tr)
			}
		}
	}
	if stopped == 0 || tu.Trials[0].StoppedEarly {
		t.Fatalf("%d trials stopped early (trial 0 stopped: %v): want some, not the best", stopped, tu.Trials[0].StoppedEarly)
	}
	// Never more than 2 trials ran at once.
	type span struct{ start, end time.Time }
	var spans []span
	for _, tr := range tu.Trials {
		var j struct {
			History []struct {
				State string    `json:"state"`
				At    time.Time `json:"at"`
			} `json:"history"`
		}
		if err := nd.getJSON("/v1/jobs/"+tr.JobID, &j); err != nil {
			t.Fatal(err)
		}
		var s span
		for _, h := range j.History {
			switch h.State {
			case "placed":
				s.start = h.At
			case "succeeded", "cancelled", "failed":
				s.end = h.At
			}
		}
		spans = append(spans, s)
	}
	for _, a := range spans {
		overlap := 0
		for _, b := range spans {
			if !b.start.After(a.start) && b.end.After(a.start) {
				overlap++
			}
		}
		if overlap > 2 {
			t.Fatalf("%d trials ran at once at %v, want at most 2: %+v", overlap, a.start, spans)
		}
	}
}

// A gang member that fails fails the attempt, and its node's peers stop
// the members still running: nothing of the gang keeps a GPU or runs on.
func TestCluster_GangMemberFailureStopsAll(t *testing.T) {
	c := newCluster(t, 3, withHCL(execHCL))
	nd := c.all()[0]
	c.waitRegistered(nd, 3)
	j := nd.submitJob(map[string]any{"name": "gang-fails", "nodes": 2, "resources": map[string]any{"cpu": 1},
		"trainer": map[string]any{"kind": "process", "command": []string{"/bin/sh", "-c", `if [ "$RANK" = 1 ]; then sleep 1; exit 3; fi; echo waiting; sleep 120`}}})
	j = nd.waitJobState(j.ID, 60*time.Second, "failed")
	if j.ExitCode == nil || *j.ExitCode != 3 || !strings.Contains(j.Reason, "member 1") {
		t.Fatalf("job %+v, want failed by member 1's exit code 3", j)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		r, err := nd.call("GET", "/v1/jobs/"+j.ID+"/logs?rank=0", nil)
		if err != nil || r.status != 200 {
			return fmt.Errorf("logs of rank 0: %v %v", r, err)
		}
		if !strings.Contains(string(r.body), "stopping") || !strings.Contains(string(r.body), "exited") {
			return fmt.Errorf("rank 0 still runs: %s", r.body)
		}
		return nil
	})
}
