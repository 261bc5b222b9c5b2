package raftfsm

import (
	"testing"

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
