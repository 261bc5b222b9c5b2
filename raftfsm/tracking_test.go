package raftfsm

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

func createExperiment(t testing.TB, name string) []byte {
	return encode(t, structs.ExperimentCreateType, &structs.ExperimentCreateRequest{Name: name, Tags: map[string]string{"team": "a"}, At: t0})
}

func createRun(t testing.TB, id, experiment string) []byte {
	return encode(t, structs.RunCreateType, &structs.RunCreateRequest{Run: structs.Run{ID: id, ExperimentID: experiment, Name: "r", StartTime: t0.UnixMilli()}})
}

func logRun(t testing.TB, req structs.RunLogRequest) []byte {
	return encode(t, structs.RunLogType, &req)
}

func TestFSM_Tracking(t *testing.T) {
	f := testFSM(t)
	res := f.ApplyBatch(commandLogs(1,
		createExperiment(t, "iris"), createExperiment(t, "wine"), createExperiment(t, "iris"),
		createRun(t, "r1", "1"), createRun(t, "r0", "0"), createRun(t, "r9", "9"), createRun(t, "r1", "1"),
	))
	if e := res[0].(*structs.Experiment); e.ID != "1" || e.ArtifactLocation != "mlflow-artifacts:/1" {
		t.Fatalf("first experiment %+v, want ID 1", e)
	}
	if e := res[1].(*structs.Experiment); e.ID != "2" {
		t.Fatalf("second experiment %+v, want ID 2", e)
	}
	if codeOf(res[2]) != structs.CodeConflict || codeOf(res[5]) != structs.CodeNotFound || codeOf(res[6]) != structs.CodeConflict {
		t.Fatalf("duplicate experiment %v, run in a missing experiment %v, duplicate run %v", res[2], res[5], res[6])
	}
	if r := res[4].(*structs.Run); r.ExperimentID != "0" {
		t.Fatalf("run in the default experiment %+v", r)
	}
	res = f.ApplyBatch(commandLogs(8,
		logRun(t, structs.RunLogRequest{RunID: "r1", Params: []structs.KeyValue{{Key: "lr", Value: "0.1"}},
			Metrics: []structs.MetricPoint{{Key: "train/loss", Value: 0.9, Step: 0, Timestamp: 1}, {Key: "train/loss", Value: 0.5, Step: 1, Timestamp: 2}, {Key: "train/loss", Value: 0.7, Step: 0, Timestamp: 3}}}),
		logRun(t, structs.RunLogRequest{RunID: "r1", Params: []structs.KeyValue{{Key: "lr", Value: "0.2"}}, Tags: []structs.KeyValue{{Key: "x", Value: "y"}}}),
		logRun(t, structs.RunLogRequest{RunID: "r1", Params: []structs.KeyValue{{Key: "lr", Value: "0.1"}}, Tags: []structs.KeyValue{{Key: "x", Value: "y"}}}),
		logRun(t, structs.RunLogRequest{RunID: "r1", Metrics: []structs.MetricPoint{{Key: "../etc", Value: 1}}}),
		encode(t, structs.RunUpdateType, &structs.RunUpdateRequest{ID: "r1", Status: structs.RunFinished, EndTime: 99}),
	))
	if res[0] != nil || res[2] != nil || res[4] == nil {
		t.Fatalf("log results %v", res)
	}
	if ce, ok := res[1].(*structs.CodedError); !ok || !strings.Contains(ce.Message, "changing param values is not allowed") {
		t.Fatalf("changed param = %v", res[1])
	}
	if codeOf(res[3]) != structs.CodeInvalid {
		t.Fatalf("bad metric key = %v", res[3])
	}
	txn := f.ReadTxn()
	defer txn.Discard()
	r, err := txn.Run("r1")
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != structs.RunFinished || r.EndTime != 99 || r.Params["lr"] != "0.1" || r.Tags["x"] != "y" {
		t.Fatalf("run %+v", r)
	}
	if latest := r.Metrics["train/loss"]; latest.Step != 1 || latest.Value != 0.5 {
		t.Fatalf("latest train/loss %+v, want step 1's 0.5 (the highest step)", latest)
	}
	hist, err := txn.MetricHistory("r1", "train/loss")
	if err != nil || len(hist) != 3 || hist[2].Value != 0.7 {
		t.Fatalf("history %+v %v, want three points in the order logged", hist, err)
	}
	if h, _ := txn.MetricHistory("r1", "train"); len(h) != 0 {
		t.Fatalf("history of a prefix of the key: %+v", h)
	}
	exps, _ := txn.Experiments()
	if names := []string{exps[0].Name, exps[1].Name, exps[2].Name}; !reflect.DeepEqual(names, []string{"Default", "iris", "wine"}) {
		t.Fatalf("experiments %v", names)
	}
}

func TestFSM_JobRunFollowsTheJob(t *testing.T) {
	id := jobID(1)
	spec := processSpec(0)
	spec.Experiment = "exp"
	spec.Params = map[string]any{"lr": 0.1, "depth": 6.0}
	f := testFSM(t)
	mustApply(t, f, 1, trainingNode(t, "n1", "H100", 1), submitJob(t, id, spec))
	txn := f.ReadTxn()
	r, err := txn.Run(id)
	e, _ := txn.ExperimentByName("exp")
	txn.Discard()
	if err != nil || r.Status != structs.RunScheduled || r.Params["lr"] != "0.1" || r.Params["depth"] != "6" || r.Tags["kiln.job_id"] != id || e == nil || r.ExperimentID != e.ID {
		t.Fatalf("job's run %+v, %v (experiment %+v)", r, err, e)
	}
	mustApply(t, f, 3, planJobs(t, structs.JobPlanRequest{Place: []structs.JobPlacement{{JobID: id, Allocations: []structs.JobAllocation{member(id, "n1", 0)}}}}))
	done := encode(t, structs.JobUpdateType, &structs.JobUpdateRequest{JobID: id, Attempt: 1, Rank: 0, NodeID: "n1", State: structs.JobSucceeded,
		Metrics: map[string]float64{"auc": 0.9}, At: t0.Add(time.Hour)})
	mustApply(t, f, 4, done)
	txn = f.ReadTxn()
	defer txn.Discard()
	r, _ = txn.Run(id)
	if r.Status != structs.RunFinished || r.EndTime != t0.Add(time.Hour).UnixMilli() || r.Metrics["auc"].Value != 0.9 {
		t.Fatalf("run after the job succeeded: %+v", r)
	}
}
