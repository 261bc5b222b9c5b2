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

// An approval is taken once, only while its step runs, and an actor's
// later move of the step, made from a copy without it, keeps it.
func TestFSM_PipelineRunApprove(t *testing.T) {
	f := testFSM(t)
	spec := structs.PipelineSpec{Name: "nightly", Steps: []structs.StepSpec{
		{Name: "build", Type: structs.StepCommand, Command: []string{"/bin/true"}},
		{Name: "signoff", Type: structs.StepApproval, DependsOn: []string{"build"}, Approval: &structs.ApprovalStep{Message: "ship?"}},
	}}
	id := structs.NewID(t0)
	move := func(step, from, to string) []byte {
		return encode(t, structs.PipelineRunStepType, &structs.PipelineRunStepRequest{Pipeline: "nightly", RunID: id, State: structs.PipelineRunning, At: t0,
			Updates: []structs.StepUpdate{{From: from, Status: structs.StepStatus{Name: step, Type: structs.StepApproval, State: to, Attempts: 1}}}})
	}
	approve := func(step string, yes bool) []byte {
		return encode(t, structs.PipelineRunApproveType, &structs.PipelineRunApproveRequest{Pipeline: "nightly", RunID: id, Step: step,
			Decision: structs.ApprovalDecision{Approved: yes, By: "ops", At: t0}})
	}
	res := f.ApplyBatch(commandLogs(1,
		putPipeline(t, spec),
		encode(t, structs.PipelineRunCreateType, &structs.PipelineRunCreateRequest{ID: id, Pipeline: "nightly", Trigger: "manual", At: t0}),
		approve("signoff", true), // still waiting on build
		move("signoff", structs.StepWaiting, structs.StepRunning),
		approve("build", true),    // not an approval step
		approve("nosuch", true),   // no such step
		approve("signoff", true),  // taken
		approve("signoff", false), // decided already
		move("signoff", structs.StepRunning, structs.StepSucceeded),
	))
	want := []string{"", "", structs.CodeConflict, "", structs.CodeInvalid, structs.CodeNotFound, "", structs.CodeConflict, ""}
	for i, code := range want {
		if got := codeOf(res[i]); got != code {
			t.Errorf("command %d: code %q, want %q (%v)", i, got, code, res[i])
		}
	}
	txn := f.ReadTxn()
	defer txn.Discard()
	r, err := txn.PipelineRun("nightly", id)
	if err != nil {
		t.Fatal(err)
	}
	if d := r.Step("signoff").Decision; d == nil || !d.Approved || d.By != "ops" {
		t.Fatalf("signoff decision after the actor's move = %+v", d)
	}
}
