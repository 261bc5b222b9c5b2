package training

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// benchCluster is the placement figure: 1,000 registered nodes with
// 8 GPUs each and 10,000 queued one-GPU jobs, in an FSM on disk.
type benchCluster struct {
	fsm   *raftfsm.FSM
	index uint64
	alive map[string]bool
}

func (c *benchCluster) apply(tb testing.TB, t structs.MessageType, cmds ...any) []interface{} {
	tb.Helper()
	logs := make([]*raft.Log, len(cmds))
	for i, cmd := range cmds {
		b, err := structs.Encode(t, cmd)
		if err != nil {
			tb.Fatal(err)
		}
		c.index++
		logs[i] = &raft.Log{Index: c.index, Term: 1, Type: raft.LogCommand, Data: b}
	}
	res := c.fsm.ApplyBatch(logs)
	for i, r := range res {
		if err, ok := r.(error); ok {
			tb.Fatalf("entry %d: %v", logs[i].Index, err)
		}
	}
	return res
}

func newBenchCluster(tb testing.TB, nodes, jobs int) *benchCluster {
	cfg := raftfsm.DefaultConfig()
	cfg.Dir = tb.TempDir()
	f, err := raftfsm.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = f.Close() })
	c := &benchCluster{fsm: f, alive: map[string]bool{}}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var cmds []any
	for i := range nodes {
		id := fmt.Sprintf("node-%04d", i)
		c.alive[id] = true
		cmds = append(cmds, &structs.NodeUpsertRequest{Node: structs.Node{ID: id, Name: id, RegisteredAt: now, UpdatedAt: now,
			Resources: structs.Resources{CPUCores: 64, MemoryMB: 512 << 10, GPUs: gpus("NVIDIA H100", 81920, 8)},
			Exec:      structs.NodeExec{Enabled: true, AllowedCommands: []string{"*"}}}})
		if len(cmds) == 256 || i == nodes-1 {
			c.apply(tb, structs.NodeUpsertType, cmds...)
			cmds = cmds[:0]
		}
	}
	for i := range jobs {
		spec := structs.JobSpec{Name: "bench", Trainer: structs.TrainerSpec{Kind: structs.TrainerProcess, Command: []string{"true"}},
			Resources: structs.JobResources{CPU: 4, MemoryMB: 16384, GPUs: 1}}
		spec.Normalize()
		cmds = append(cmds, &structs.JobSubmitRequest{ID: structs.NewID(now.Add(time.Duration(i) * time.Millisecond)), Spec: spec, SubmittedAt: now})
		if len(cmds) == 256 || i == jobs-1 {
			c.apply(tb, structs.JobSubmitType, cmds...)
			cmds = cmds[:0]
		}
	}
	return c
}

// pass reads the registry, schedules, and applies the plan, as the leader
// does; it returns how many jobs the plan placed.
func (c *benchCluster) pass(tb testing.TB) int {
	txn := c.fsm.ReadTxn()
	nodes, err := txn.Nodes()
	if err != nil {
		tb.Fatal(err)
	}
	jobs, _, err := txn.Jobs("", 0)
	if err != nil {
		tb.Fatal(err)
	}
	allocs, _ := txn.Allocations()
	jobAllocs, _ := txn.JobAllocations()
	txn.Discard()
	var active []*structs.Job
	for _, j := range jobs {
		if !j.Terminal() {
			active = append(active, j)
		}
	}
	plan := Schedule(ScheduleInput{Nodes: nodes, Alive: c.alive, Allocs: allocs, JobAllocs: jobAllocs, Jobs: active, Now: time.Now()})
	if len(plan.Place) == 0 {
		return 0
	}
	var cmds []any
	for _, p := range SplitPlan(plan) {
		cmds = append(cmds, &p)
	}
	placed := 0
	for _, r := range c.apply(tb, structs.JobPlanType, cmds...) {
		res := r.(*structs.JobPlanResult)
		if len(res.Refused) > 0 {
			tb.Fatalf("Apply refused %d placements, first: %s", len(res.Refused), res.Refused[0])
		}
		placed += res.Placed
	}
	return placed
}

// BenchmarkSchedule_PlaceAndApply places the queue until the cluster is
// full (8,000 of the 10,000 jobs) and reports placements per second,
// scheduler and FSM apply together.
func BenchmarkSchedule_PlaceAndApply(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		c := newBenchCluster(b, 1000, 10000)
		b.StartTimer()
		start := time.Now()
		placed := 0
		for {
			n := c.pass(b)
			if n == 0 {
				break
			}
			placed += n
		}
		b.ReportMetric(float64(placed)/time.Since(start).Seconds(), "placements/s")
		if placed != 8000 {
			b.Fatalf("placed %d jobs, want 8000 (1,000 nodes × 8 GPUs)", placed)
		}
	}
}

// TestSchedule_FillsTheCluster runs the benchmark's loop on a small cluster:
// every GPU is taken exactly once, and the rest of the queue waits.
func TestSchedule_FillsTheCluster(t *testing.T) {
	c := newBenchCluster(t, 10, 100)
	placed := 0
	for n := c.pass(t); n > 0; n = c.pass(t) {
		placed += n
	}
	if placed != 80 {
		t.Fatalf("placed %d, want 80", placed)
	}
	txn := c.fsm.ReadTxn()
	defer txn.Discard()
	held, _ := txn.JobAllocations()
	seen := map[string]bool{}
	for _, a := range held {
		k := fmt.Sprint(a.NodeID, a.GPUs)
		if seen[k] {
			t.Fatalf("GPU %s held twice", k)
		}
		seen[k] = true
	}
	jobs, _, _ := txn.Jobs("", 0)
	waiting := 0
	for _, j := range jobs {
		if j.State == structs.JobPending {
			waiting++
		}
	}
	if len(seen) != 80 || waiting != 20 {
		t.Fatalf("%d GPUs held and %d jobs waiting, want 80 and 20", len(seen), waiting)
	}
}
