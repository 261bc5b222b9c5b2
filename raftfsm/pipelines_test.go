package raftfsm

import (
	"testing"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

func putPipeline(t testing.TB, spec structs.PipelineSpec) []byte {
	return encode(t, structs.PipelinePutType, &structs.PipelinePutRequest{Spec: spec, AppliedBy: "acc-1", At: t0})
}

func twoSteps() structs.PipelineSpec {
	return structs.PipelineSpec{Name: "nightly", Steps: []structs.StepSpec{
		{Name: "ingest", Type: structs.StepIngest, Source: "txns"},
		{Name: "report", Type: structs.StepCommand, DependsOn: []string{"ingest"}, Command: []string{"/bin/echo", "${steps.ingest.dataset}"}},
	}}
}

func TestFSM_PipelinePut(t *testing.T) {
	f := testFSM(t)
	cyclic := twoSteps()
	cyclic.Steps[0].DependsOn = []string{"report"}
	res := f.ApplyBatch(commandLogs(1, putPipeline(t, twoSteps()), putPipeline(t, twoSteps()), putPipeline(t, cyclic),
		encode(t, structs.PipelineDeleteType, &structs.NameRequest{Name: "nope"})))
	for i, want := range []string{"", "", structs.CodeInvalid, structs.CodeNotFound} {
		if got := codeOf(res[i]); got != want {
			t.Errorf("command %d: code %q, want %q (%v)", i, got, want, res[i])
		}
	}
	txn := f.ReadTxn()
	defer txn.Discard()
	p, err := txn.Pipeline("nightly")
	if err != nil || p.CreateIndex != 1 || p.ModifyIndex != 2 || p.Spec.MaxParallel != 4 || p.AppliedBy != "acc-1" {
		t.Fatalf("pipeline = %+v, %v; want created at 1, replaced at 2, defaults filled", p, err)
	}
}

func TestFSM_PipelineRunSteps(t *testing.T) {
	f := testFSM(t)
	id := structs.NewID(t0)
	create := func(id string, tick time.Time) []byte {
		return encode(t, structs.PipelineRunCreateType, &structs.PipelineRunCreateRequest{ID: id, Pipeline: "nightly", Trigger: "schedule", Tick: tick, At: t0})
	}
	move := func(step, from, to, runState string) []byte {
		return encode(t, structs.PipelineRunStepType, &structs.PipelineRunStepRequest{Pipeline: "nightly", RunID: id, State: runState, At: t0,
			Updates: []structs.StepUpdate{{From: from, Status: structs.StepStatus{Name: step, State: to, Attempts: 1}}}})
	}
	res := f.ApplyBatch(commandLogs(1,
		putPipeline(t, twoSteps()),
		create(id, t0),
		create(structs.NewID(t0), t0), // the same tick again
		move("ingest", structs.StepWaiting, structs.StepRunning, structs.PipelineRunning),
		move("ingest", structs.StepWaiting, structs.StepRunning, structs.PipelineRunning), // a second actor, late
		move("ingest", structs.StepRunning, structs.StepSucceeded, structs.PipelineRunning),
		encode(t, structs.PipelineDeleteType, &structs.NameRequest{Name: "nightly"}),
		encode(t, structs.PipelineRunCancelType, &structs.PipelineRunCancelRequest{Pipeline: "nightly", RunID: id, At: t0}),
		move("report", structs.StepWaiting, structs.StepCancelled, structs.PipelineCancelled),
		move("report", structs.StepCancelled, structs.StepRunning, structs.PipelineRunning),
	))
	want := []string{"", "", structs.CodeConflict, "", structs.CodeConflict, "", structs.CodeConflict, "", "", structs.CodeConflict}
	for i, code := range want {
		if got := codeOf(res[i]); got != code {
			t.Errorf("command %d: code %q, want %q (%v)", i, got, code, res[i])
		}
	}
	txn := f.ReadTxn()
	defer txn.Discard()
	r, err := txn.PipelineRun("nightly", id)
	if err != nil || r.State != structs.PipelineCancelled || !r.CancelRequested || r.Step("ingest").State != structs.StepSucceeded || r.FinishedAt.IsZero() {
		t.Fatalf("run = %+v, %v", r, err)
	}
	if active, err := txn.ActivePipelineRuns(); err != nil || len(active) != 0 {
		t.Fatalf("active runs = %v, %v; want none", active, err)
	}
}
