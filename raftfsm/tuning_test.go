package raftfsm

import (
	"testing"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

func TestFSM_Tuning(t *testing.T) {
	spec := structs.TuningSpec{Name: "grid", Job: processSpec(0), Metric: "loss",
		Space: map[string]structs.ParamRange{"x": {Kind: structs.RangeValues, Values: []any{1.0, 2.0}}}, Parallelism: 1}
	spec.Normalize()
	id, j0, j1 := jobID(9), jobID(1), jobID(2)
	trial := func(i int, job string, x float64) []byte {
		return encode(t, structs.TuningTrialType, &structs.TuningTrialRequest{TuningID: id, Index: i, JobID: job, Params: map[string]any{"x": x}, At: t0})
	}
	f := testFSM(t)
	mustApply(t, f, 1, trainingNode(t, "n1", "H100", 1), encode(t, structs.TuningSubmitType, &structs.TuningSubmitRequest{ID: id, Spec: spec, At: t0}))
	if got := spec.MaxTrials; got != 2 {
		t.Fatalf("a grid of 2 points has max_trials %d", got)
	}
	res := f.ApplyBatch(commandLogs(3, trial(0, j0, 1), trial(0, jobID(3), 1), trial(1, j1, 2), trial(2, jobID(4), 2)))
	if tu, ok := res[0].(*structs.Tuning); !ok || len(tu.Trials) != 1 {
		t.Fatalf("first trial = %v", res[0])
	}
	if codeOf(res[1]) != structs.CodeConflict {
		t.Fatalf("trial 0 again = %v, want already_exists (a new leader must not start it twice)", res[1])
	}
	if codeOf(res[2]) != "" {
		t.Fatalf("trial 1 = %v", res[2])
	}
	if codeOf(res[3]) != structs.CodeConflict && codeOf(res[3]) != structs.CodeInvalid {
		t.Fatalf("a third trial of two = %v", res[3])
	}
	txn := f.ReadTxn()
	j, err := txn.Job(j0)
	txn.Discard()
	if err != nil || j.Spec.Name != "grid-t0" || j.Spec.Params["x"] != 1.0 {
		t.Fatalf("trial 0's job %+v, %v", j, err)
	}
	done := encode(t, structs.TuningUpdateType, &structs.TuningUpdateRequest{TuningID: id, Stopped: map[int]string{1: "asha: behind"},
		State: structs.TuningSucceeded, BestTrial: 0, BestValue: 0.1, At: t0.Add(time.Hour)})
	mustApply(t, f, 7, done)
	txn = f.ReadTxn()
	defer txn.Discard()
	tu, err := txn.Tuning(id)
	if err != nil || tu.State != structs.TuningSucceeded || tu.BestTrial != 0 || !tu.Trials[1].StoppedEarly {
		t.Fatalf("tuning %+v, %v", tu, err)
	}
}
