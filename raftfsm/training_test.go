package raftfsm

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// trainingNode is a registered node with n GPUs of model, 16 CPUs and 64 GB.
func trainingNode(t testing.TB, id, model string, n int) []byte {
	gpus := make([]structs.GPU, n)
	for i := range gpus {
		gpus[i] = structs.GPU{Index: i, Model: model, MemoryMB: 81920}
	}
	return encode(t, structs.NodeUpsertType, &structs.NodeUpsertRequest{Node: structs.Node{
		ID: id, Name: id, RegisteredAt: t0, UpdatedAt: t0,
		Resources: structs.Resources{CPUCores: 16, MemoryMB: 65536, GPUs: gpus},
		Exec:      structs.NodeExec{Enabled: true, AllowedCommands: []string{"python3"}},
	}})
}

func jobID(n int) string { return structs.NewID(t0.Add(time.Duration(n) * time.Second)) }

func processSpec(gpus int) structs.JobSpec {
	s := structs.JobSpec{Name: "train", Trainer: structs.TrainerSpec{Kind: structs.TrainerProcess, Command: []string{"python3", "train.py"}},
		Resources: structs.JobResources{CPU: 2, MemoryMB: 1024, GPUs: gpus}}
	s.Normalize()
	return s
}

func submitJob(t testing.TB, id string, spec structs.JobSpec) []byte {
	return encode(t, structs.JobSubmitType, &structs.JobSubmitRequest{ID: id, Spec: spec, SubmittedAt: t0})
}

func planJobs(t testing.TB, plan structs.JobPlanRequest) []byte {
	plan.At = t0.Add(time.Minute)
	return encode(t, structs.JobPlanType, &plan)
}

func member(job, node string, rank int, gpus ...int) structs.JobAllocation {
	return structs.JobAllocation{JobID: job, Rank: rank, NodeID: node, GPUs: gpus, CPU: 2, MemoryMB: 1024}
}

func jobUpdate(t testing.TB, job string, attempt, rank int, node, state string) []byte {
	return encode(t, structs.JobUpdateType, &structs.JobUpdateRequest{JobID: job, Attempt: attempt, Rank: rank, NodeID: node, State: state, At: t0.Add(2 * time.Minute)})
}

func readJob(t *testing.T, f *FSM, id string) *structs.Job {
	t.Helper()
	txn := f.ReadTxn()
	defer txn.Discard()
	j, err := txn.Job(id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestFSM_JobSubmit(t *testing.T) {
	f := testFSM(t)
	mustApply(t, f, 1, trainingNode(t, "n1", "NVIDIA H100", 4), createDatasetVersion(t, irisDataset("iris")))
	builtin := structs.JobSpec{Name: "soft", Trainer: structs.TrainerSpec{Kind: structs.TrainerBuiltin, Algorithm: "softmax_regression"},
		Dataset: "iris", Target: "Species"}
	builtin.Normalize()
	res := f.ApplyBatch(commandLogs(3, submitJob(t, jobID(1), builtin)))
	j, ok := res[0].(*structs.Job)
	if !ok || j.State != structs.JobPending || j.Spec.Dataset != "iris:1" || j.RunID != j.ID {
		t.Fatalf("submit = %+v, want a pending job on iris:1", res[0])
	}
	for _, tc := range []struct {
		name string
		spec func() structs.JobSpec
		want string
	}{
		{"too many GPUs", func() structs.JobSpec { return processSpec(8) }, "node n1 has 4 GPUs, the job asks 8"},
		{"GPU model", func() structs.JobSpec {
			s := processSpec(1)
			s.Resources.GPUModel = "A100"
			return s
		}, `matching "A100"`},
		{"two nodes", func() structs.JobSpec {
			s := processSpec(1)
			s.Nodes = 2
			return s
		}, "1 of the 2 nodes"},
		{"command not allowed", func() structs.JobSpec {
			s := processSpec(0)
			s.Trainer.Command = []string{"bash"}
			return s
		}, `does not allow "bash"`},
		{"missing dataset", func() structs.JobSpec {
			s := builtin
			s.Dataset = "wine"
			return s
		}, `dataset "wine" not found`},
		{"missing target", func() structs.JobSpec {
			s := builtin
			s.Target = "Color"
			return s
		}, `target "Color" is not a column`},
		{"bad validation", func() structs.JobSpec {
			s := builtin
			s.Validation = structs.ValidationSpec{Split: 0.2, KFold: 5}
			return s
		}, "one of split"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.ApplyBatch(commandLogs(f.AppliedIndex()+1, submitJob(t, jobID(2), tc.spec())))
			ce, ok := res[0].(*structs.CodedError)
			if !ok || ce.Code != structs.CodeInvalid || !strings.Contains(ce.Message, tc.want) {
				t.Fatalf("submit = %v, want invalid_argument containing %q", res[0], tc.want)
			}
		})
	}
	// The version a job pinned cannot be deleted while the job is not done.
	res = f.ApplyBatch(commandLogs(f.AppliedIndex()+1, encode(t, structs.DatasetVersionDeleteType, &structs.DatasetVersionDeleteRequest{Dataset: "iris", Version: 1})))
	if ce, ok := res[0].(*structs.CodedError); !ok || !strings.Contains(ce.Message, "job") {
		t.Fatalf("delete of a dataset a pending job reads = %v, want a conflict naming the job", res[0])
	}
}

func TestFSM_JobPlanChecksTheLedger(t *testing.T) {
	a, b, c := jobID(1), jobID(2), jobID(3)
	f := testFSM(t)
	mustApply(t, f, 1, trainingNode(t, "n1", "H100", 4), trainingNode(t, "n2", "H100", 4),
		submitJob(t, a, processSpec(2)), submitJob(t, b, processSpec(2)), submitJob(t, c, processSpec(1)))
	gang := processSpec(1)
	gang.Nodes = 2
	g := jobID(4)
	mustApply(t, f, 6, submitJob(t, g, gang))
	res := f.ApplyBatch(commandLogs(7, planJobs(t, structs.JobPlanRequest{Place: []structs.JobPlacement{
		{JobID: a, Allocations: []structs.JobAllocation{member(a, "n1", 0, 0, 1)}},
		{JobID: b, Allocations: []structs.JobAllocation{member(b, "n1", 0, 1, 2)}}, // GPU 1 is a's
		{JobID: c, Allocations: []structs.JobAllocation{member(c, "n1", 0, 9)}},    // no GPU 9
		// The gang's second member takes GPU 0 of n1, a's: neither member is placed.
		{JobID: g, Allocations: []structs.JobAllocation{member(g, "n2", 0, 0), member(g, "n1", 1, 0)}},
	}})))
	r, ok := res[0].(*structs.JobPlanResult)
	if !ok || r.Placed != 1 || len(r.Refused) != 3 {
		t.Fatalf("plan = %+v, want a placed and the other three refused", res[0])
	}
	if !strings.Contains(r.Refused[0], `GPU 1 of node n1 is held by job "`+a) {
		t.Fatalf("refusal %q, want GPU 1 held by job a", r.Refused[0])
	}
	if j := readJob(t, f, g); j.State != structs.JobPending || len(j.Allocations) != 0 {
		t.Fatalf("gang %+v, want pending and holding nothing", j)
	}
	// The gang's first member on n2 was refused with it: GPU 0 of n2 is free.
	res = f.ApplyBatch(commandLogs(8, planJobs(t, structs.JobPlanRequest{Place: []structs.JobPlacement{
		{JobID: g, Allocations: []structs.JobAllocation{member(g, "n2", 0, 0), member(g, "n1", 1, 3)}},
	}})))
	if r := res[0].(*structs.JobPlanResult); r.Placed != 1 {
		t.Fatalf("gang plan = %+v, want placed", r)
	}
	// A serving plan may not take a job's GPU either.
	mustApply(t, f, 9, createModel(t, "m", nil), createVersion(t, "m"), putDeployment(t, "m", trafficOf(split(1, 1))))
	res = f.ApplyBatch(commandLogs(12, encode(t, structs.AllocPlanFitType, &structs.AllocPlanRequest{Add: []structs.Allocation{
		{ID: "01j0c0000000000000000000aa", Deployment: "m", Version: 1, NodeID: "n1", GPUs: []int{0}, State: structs.AllocPending, CreatedAt: t0},
	}})))
	if ce, ok := res[0].(*structs.CodedError); !ok || !strings.Contains(ce.Message, `held by job "`+a) {
		t.Fatalf("serving plan on a job's GPU = %v, want a conflict naming the job", res[0])
	}
}

func TestFSM_JobLifecycle(t *testing.T) {
	id := jobID(1)
	spec := processSpec(1)
	spec.Retries = 1
	f := testFSM(t)
	mustApply(t, f, 1, trainingNode(t, "n1", "H100", 1), trainingNode(t, "n2", "H100", 1), submitJob(t, id, spec))
	place := func(index uint64, node string, attempt int) {
		res := f.ApplyBatch(commandLogs(index, planJobs(t, structs.JobPlanRequest{Place: []structs.JobPlacement{
			{JobID: id, Attempt: attempt, Allocations: []structs.JobAllocation{member(id, node, 0, 0)}}}})))
		if r := res[0].(*structs.JobPlanResult); r.Placed != 1 {
			t.Fatalf("plan at %d = %+v", index, r)
		}
	}
	place(4, "n1", 0)
	mustApply(t, f, 5, jobUpdate(t, id, 1, 0, "n1", structs.JobRunning))
	if j := readJob(t, f, id); j.State != structs.JobRunning || j.StartedAt.IsZero() {
		t.Fatalf("after running: %+v", j)
	}
	// n1 dies: lost, and with a retry left, pending again, holding nothing.
	res := f.ApplyBatch(commandLogs(6, planJobs(t, structs.JobPlanRequest{Lose: []structs.JobLoss{{JobID: id, Attempt: 1, Reason: "node n1 is gone"}}})))
	if r := res[0].(*structs.JobPlanResult); len(r.Refused) != 0 {
		t.Fatalf("loss refused: %v", r.Refused)
	}
	j := readJob(t, f, id)
	if j.State != structs.JobPending || !strings.Contains(j.Reason, "lost: node n1 is gone; retry 1 of 1") {
		t.Fatalf("after loss: %s %q", j.State, j.Reason)
	}
	txn := f.ReadTxn()
	held, _ := txn.JobAllocations()
	txn.Discard()
	if len(held) != 0 {
		t.Fatalf("a lost job still holds %+v", held)
	}
	// A stale report of attempt 1 is refused.
	res = f.ApplyBatch(commandLogs(7, jobUpdate(t, id, 1, 0, "n1", structs.JobSucceeded)))
	if codeOf(res[0]) != structs.CodeConflict {
		t.Fatalf("report of an old attempt = %v, want already_exists", res[0])
	}
	place(8, "n2", 1)
	exit := 3
	fail := encode(t, structs.JobUpdateType, &structs.JobUpdateRequest{JobID: id, Attempt: 2, Rank: 0, NodeID: "n2", State: structs.JobFailed,
		ExitCode: &exit, LogTail: []string{"Traceback", "ValueError: x"}, At: t0.Add(time.Hour)})
	mustApply(t, f, 9, fail)
	j = readJob(t, f, id)
	if j.State != structs.JobFailed || j.ExitCode == nil || *j.ExitCode != 3 || len(j.LogTail) != 2 || !strings.Contains(j.Reason, "exited with code 3") {
		t.Fatalf("after failure with no retry left: %+v", j)
	}
	if n := len(j.History); j.History[0].State != structs.JobPending || j.History[n-1].State != structs.JobFailed {
		t.Fatalf("history %+v", j.History)
	}
}

func TestFSM_JobSuccessAndCancel(t *testing.T) {
	a, b, c := jobID(1), jobID(2), jobID(3)
	f := testFSM(t)
	gang := processSpec(0)
	gang.Nodes = 2
	mustApply(t, f, 1, trainingNode(t, "n1", "H100", 1), trainingNode(t, "n2", "H100", 1),
		submitJob(t, a, gang), submitJob(t, b, processSpec(0)), submitJob(t, c, processSpec(0)))
	mustApply(t, f, 6, planJobs(t, structs.JobPlanRequest{Place: []structs.JobPlacement{
		{JobID: a, Allocations: []structs.JobAllocation{member(a, "n1", 0), member(a, "n2", 1)}},
		{JobID: b, Allocations: []structs.JobAllocation{member(b, "n1", 0)}},
	}}))
	succeed := encode(t, structs.JobUpdateType, &structs.JobUpdateRequest{JobID: a, Attempt: 1, Rank: 0, NodeID: "n1", State: structs.JobSucceeded,
		Metrics: map[string]float64{"accuracy": 0.97}, ModelVersion: 4, At: t0.Add(time.Hour)})
	mustApply(t, f, 7, jobUpdate(t, a, 1, 0, "n1", structs.JobRunning), succeed)
	if j := readJob(t, f, a); j.State != structs.JobPlaced || j.Allocations[0].State != structs.JobSucceeded {
		t.Fatalf("after rank 0 succeeded: %s, want placed until rank 1 finishes", j.State)
	}
	mustApply(t, f, 9, jobUpdate(t, a, 1, 1, "n2", structs.JobSucceeded))
	if j := readJob(t, f, a); j.State != structs.JobSucceeded || j.Metrics["accuracy"] != 0.97 || j.ModelVersion != 4 {
		t.Fatalf("after both succeeded: %+v", j)
	}
	cancel := func(id string) []byte {
		return encode(t, structs.JobCancelType, &structs.JobCancelRequest{JobID: id, At: t0.Add(time.Hour)})
	}
	res := f.ApplyBatch(commandLogs(10, cancel(c), cancel(b), cancel(a)))
	if j := res[0].(*structs.Job); j.State != structs.JobCancelled {
		t.Fatalf("cancel of a pending job: %s", j.State)
	}
	if j := res[1].(*structs.Job); j.State != structs.JobPlaced || !j.CancelRequested {
		t.Fatalf("cancel of a placed job: %s cancel_requested=%v", j.State, j.CancelRequested)
	}
	if codeOf(res[2]) != structs.CodeConflict {
		t.Fatalf("cancel of a finished job = %v", res[2])
	}
	stopped := encode(t, structs.JobUpdateType, &structs.JobUpdateRequest{JobID: b, Attempt: 1, Rank: 0, NodeID: "n1", State: structs.JobFailed, Reason: "stopped: cancelled", At: t0.Add(time.Hour)})
	mustApply(t, f, 13, stopped)
	if j := readJob(t, f, b); j.State != structs.JobCancelled {
		t.Fatalf("a cancelled job's stop: %s", j.State)
	}
	// Snapshots carry jobs; nothing holds capacity any more.
	stream := snapshotBytes(t, f)
	if err := ValidateSnapshot(bytes.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	dst := testFSM(t)
	must(t, restoreBytes(dst, stream))
	if j := readJob(t, dst, a); j.State != structs.JobSucceeded {
		t.Fatalf("restored job %s", j.State)
	}
	txn := dst.ReadTxn()
	defer txn.Discard()
	if held, _ := txn.JobAllocations(); len(held) != 0 {
		t.Fatalf("ledger after every job ended: %+v", held)
	}
}
