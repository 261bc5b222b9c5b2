package training

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

func gpus(model string, memMB int64, n int) []structs.GPU {
	out := make([]structs.GPU, n)
	for i := range out {
		out[i] = structs.GPU{Index: i, Model: model, MemoryMB: memMB}
	}
	return out
}

// rack is the cluster: node1 2×A100-40GB, node2 4×H100-80GB, node3
// none; 16 CPUs and 64 GB each.
func rack() []*structs.Node {
	mk := func(id string, g []structs.GPU) *structs.Node {
		return &structs.Node{ID: id, Name: id, Resources: structs.Resources{CPUCores: 16, MemoryMB: 65536, GPUs: g}}
	}
	return []*structs.Node{mk("node1", gpus("NVIDIA A100-SXM4-40GB", 40960, 2)), mk("node2", gpus("NVIDIA H100 80GB HBM3", 81920, 4)), mk("node3", nil)}
}

func alive(nodes []*structs.Node) map[string]bool {
	m := map[string]bool{}
	for _, n := range nodes {
		m[n.ID] = true
	}
	return m
}

var created uint64

func pendingJob(id string, r structs.JobResources) *structs.Job {
	created++
	return &structs.Job{ID: id, State: structs.JobPending, CreateIndex: created,
		Spec: structs.JobSpec{Name: id, Trainer: structs.TrainerSpec{Kind: structs.TrainerBuiltin, Algorithm: "gbdt"}, Resources: r, Nodes: 1, Placement: structs.PlaceBinpack}}
}

func placedOn(t *testing.T, plan structs.JobPlanRequest, job string) []structs.JobAllocation {
	t.Helper()
	for _, p := range plan.Place {
		if p.JobID == job {
			return p.Allocations
		}
	}
	return nil
}

func TestSchedule_GPUModelAndIndices(t *testing.T) {
	nodes := rack()
	j := pendingJob("h100x3", structs.JobResources{CPU: 4, MemoryMB: 8192, GPUs: 3, GPUModel: "H100"})
	plan := Schedule(ScheduleInput{Nodes: nodes, Alive: alive(nodes), Jobs: []*structs.Job{j}})
	a := placedOn(t, plan, j.ID)
	if len(a) != 1 || a[0].NodeID != "node2" || !slices.Equal(a[0].GPUs, []int{0, 1, 2}) {
		t.Fatalf("placement %+v, want node2 with GPUs 0, 1, 2", a)
	}
	// Asking for 80 GB of memory per GPU rules out the A100s too; 2 GPUs
	// of any model prefer node1, the tighter fit.
	two := pendingJob("any2", structs.JobResources{GPUs: 2})
	plan = Schedule(ScheduleInput{Nodes: nodes, Alive: alive(nodes), Jobs: []*structs.Job{two}})
	if a := placedOn(t, plan, two.ID); len(a) != 1 || a[0].NodeID != "node1" {
		t.Fatalf("2-GPU job on %+v, want node1 (best fit)", a)
	}
	// A CPU-only job keeps the GPU nodes free.
	cpu := pendingJob("cpu", structs.JobResources{CPU: 2})
	plan = Schedule(ScheduleInput{Nodes: nodes, Alive: alive(nodes), Jobs: []*structs.Job{cpu}})
	if a := placedOn(t, plan, cpu.ID); len(a) != 1 || a[0].NodeID != "node3" {
		t.Fatalf("CPU job on %+v, want node3", a)
	}
}

func TestSchedule_NoSharedGPU(t *testing.T) {
	nodes := rack()
	// A replica holds GPU 0 of node2.
	replica := &structs.Allocation{ID: "r1", Deployment: "m", Version: 1, NodeID: "node2", GPUs: []int{0}}
	a := pendingJob("a", structs.JobResources{GPUs: 2, GPUModel: "h100"})
	b := pendingJob("b", structs.JobResources{GPUs: 2, GPUModel: "h100"})
	plan := Schedule(ScheduleInput{Nodes: nodes, Alive: alive(nodes), Allocs: []*structs.Allocation{replica}, Jobs: []*structs.Job{a, b}})
	pa, pb := placedOn(t, plan, "a"), placedOn(t, plan, "b")
	if len(pa) != 1 || !slices.Equal(pa[0].GPUs, []int{1, 2}) {
		t.Fatalf("job a on %+v, want GPUs 1 and 2 of node2 (0 is the replica's)", pa)
	}
	if pb != nil {
		t.Fatalf("job b placed on %+v; node2 has one GPU left", pb)
	}
	if len(plan.Wait) != 1 || plan.Wait[0].JobID != "b" || !strings.Contains(plan.Wait[0].Reason, "waiting for capacity") {
		t.Fatalf("waits %+v, want b waiting for capacity", plan.Wait)
	}
	// Once a's members are in the ledger and the replica is gone, b fits.
	held := []*structs.JobAllocation{{JobID: "a", NodeID: "node2", GPUs: []int{1, 2}}}
	plan = Schedule(ScheduleInput{Nodes: nodes, Alive: alive(nodes), JobAllocs: held, Jobs: []*structs.Job{b}})
	if pb := placedOn(t, plan, "b"); len(pb) != 1 || !slices.Equal(pb[0].GPUs, []int{0, 3}) {
		t.Fatalf("job b on %+v, want GPUs 0 and 3", pb)
	}
}

func TestSchedule_GangAllOrNothing(t *testing.T) {
	nodes := rack()
	gang := pendingJob("gang", structs.JobResources{GPUs: 2})
	gang.Spec.Nodes = 2
	plan := Schedule(ScheduleInput{Nodes: nodes, Alive: alive(nodes), Jobs: []*structs.Job{gang}})
	a := placedOn(t, plan, "gang")
	if len(a) != 2 || a[0].NodeID == a[1].NodeID || a[0].Rank != 0 || a[1].Rank != 1 {
		t.Fatalf("gang placed %+v, want two members on distinct nodes", a)
	}
	// With node1's GPUs held, only one node has 2 GPUs: the gang waits,
	// and holds nothing.
	held := []*structs.JobAllocation{{JobID: "x", NodeID: "node1", GPUs: []int{0}}}
	plan = Schedule(ScheduleInput{Nodes: nodes, Alive: alive(nodes), JobAllocs: held, Jobs: []*structs.Job{gang}})
	if len(plan.Place) != 0 || len(plan.Wait) != 1 || !strings.Contains(plan.Wait[0].Reason, "1 of the 2 nodes") {
		t.Fatalf("plan %+v, want the gang waiting with 1 of 2 nodes", plan)
	}
}

func TestSchedule_OrderLossAndSpread(t *testing.T) {
	nodes := rack()
	low := pendingJob("low", structs.JobResources{GPUs: 4})
	high := pendingJob("high", structs.JobResources{GPUs: 4})
	high.Spec.Priority = 10
	plan := Schedule(ScheduleInput{Nodes: nodes, Alive: alive(nodes), Jobs: []*structs.Job{low, high}})
	if placedOn(t, plan, "high") == nil || placedOn(t, plan, "low") != nil {
		t.Fatalf("plan %+v: the higher priority job should take node2's 4 GPUs", plan)
	}
	// A running job with a member on a gone node is lost; its capacity is
	// free for the same plan.
	run := &structs.Job{ID: "run", State: structs.JobRunning, Attempt: 1, Allocations: []structs.JobAllocation{{JobID: "run", NodeID: "node2", NodeName: "node2", GPUs: []int{0, 1, 2, 3}}}}
	gone := map[string]bool{"node2": true}
	plan = Schedule(ScheduleInput{Nodes: nodes, Alive: alive(nodes), Gone: gone, JobAllocs: []*structs.JobAllocation{&run.Allocations[0]}, Jobs: []*structs.Job{run}})
	if len(plan.Lose) != 1 || plan.Lose[0].JobID != "run" || plan.Lose[0].Attempt != 1 {
		t.Fatalf("losses %+v, want run at attempt 1", plan.Lose)
	}
	// Spread puts CPU jobs on the emptiest nodes.
	var jobs []*structs.Job
	for i := range 3 {
		j := pendingJob(fmt.Sprint("s", i), structs.JobResources{CPU: 1})
		j.Spec.Placement = structs.PlaceSpread
		jobs = append(jobs, j)
	}
	plan = Schedule(ScheduleInput{Nodes: nodes, Alive: alive(nodes), Jobs: jobs})
	used := map[string]bool{}
	for _, p := range plan.Place {
		used[p.Allocations[0].NodeID] = true
	}
	if len(used) != 3 {
		t.Fatalf("spread placed 3 jobs on %v, want 3 distinct nodes", used)
	}
}

func TestSchedule_DeadNodesAndExec(t *testing.T) {
	nodes := rack()
	nodes[2].Exec = structs.NodeExec{Enabled: true, AllowedCommands: []string{"python3"}}
	j := pendingJob("p", structs.JobResources{CPU: 1})
	j.Spec.Trainer = structs.TrainerSpec{Kind: structs.TrainerProcess, Command: []string{"python3", "train.py"}}
	plan := Schedule(ScheduleInput{Nodes: nodes, Alive: alive(nodes), Jobs: []*structs.Job{j}})
	if a := placedOn(t, plan, "p"); len(a) != 1 || a[0].NodeID != "node3" {
		t.Fatalf("process job on %+v, want node3, the only one that allows python3", a)
	}
	plan = Schedule(ScheduleInput{Nodes: nodes, Alive: map[string]bool{"node1": true, "node2": true}, Jobs: []*structs.Job{j}})
	if len(plan.Place) != 0 || len(plan.Wait) != 1 || !strings.Contains(plan.Wait[0].Reason, "does not allow") {
		t.Fatalf("plan %+v, want the job waiting: node3 is down and the others do not allow python3", plan)
	}
}
