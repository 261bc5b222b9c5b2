package raftfsm

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// gpuNode registers node id with memoryMB of memory (0: unknown) and GPUs
// 0..gpus-1.
func gpuNode(t testing.TB, id string, memoryMB int64, gpus int) []byte {
	n := structs.Node{ID: id, Name: "host-" + id, RegisteredAt: t0, UpdatedAt: t0,
		Resources: structs.Resources{CPUCores: 8, MemoryMB: memoryMB}}
	for i := range gpus {
		n.Resources.GPUs = append(n.Resources.GPUs, structs.GPU{Index: i, UUID: fmt.Sprintf("GPU-%s-%d", id, i), Model: "H100", MemoryMB: 81559})
	}
	return encode(t, structs.NodeUpsertType, &structs.NodeUpsertRequest{Node: n})
}

// placed is a replica of iris at version v on node, taking memoryMB and the
// given GPUs.
func placed(id string, v uint64, node string, memoryMB int64, gpus ...int) structs.Allocation {
	a := allocOf(id, "iris", v, node)
	a.MemoryMB, a.GPUs = memoryMB, gpus
	return a
}

// Apply re-checks a plan against the state it applies to (DESIGN.md §7): a
// plan proposed, timed out and committed late, and the plan the leader made
// after it, must not both get the same GPU.
func TestFSM_AllocPlanCapacity(t *testing.T) {
	// iris serves 1 and 2 by weight and 3 as shadow; gpu-1 has 1000 MB and
	// GPUs 0 and 1; node-1 and node-2 have no GPUs and unknown memory.
	setup := func(t *testing.T, more ...[]byte) [][]byte {
		return irisSetup(t, append([][]byte{
			putDeployment(t, "iris", shadowed(trafficOf(split(1, 90), split(2, 10)), 3)),
			gpuNode(t, "gpu-1", 1000, 2),
		}, more...)...)
	}
	wantAllocs := func(want ...string) func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
		return func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
			if got := allocIDs(t, txn); !reflect.DeepEqual(got, want) {
				t.Fatalf("allocations = %v, want %v", got, want)
			}
		}
	}
	lateP1 := planAllocs(t, []structs.Allocation{placed("a1", 1, "gpu-1", 100, 0)})
	tests := []servingCase{
		{
			name:     "the same plan applied twice",
			setup:    func(t *testing.T) [][]byte { return setup(t, lateP1) },
			cmd:      func(t *testing.T) []byte { return lateP1 },
			wantCode: structs.CodeConflict,
			check:    wantAllocs("a1"),
		},
		{
			// The leader timed out on a1's plan and planned again from a view
			// without it: new ID, same GPU.
			name:  "the same placement planned again",
			setup: func(t *testing.T) [][]byte { return setup(t, lateP1) },
			cmd: func(t *testing.T) []byte {
				return planAllocs(t, []structs.Allocation{placed("b1", 2, "gpu-1", 100, 0)})
			},
			wantCode: structs.CodeConflict,
			wantMsg:  `add[0]: GPU 0 of node "gpu-1" is held by allocation "a1"`,
			check:    wantAllocs("a1"),
		},
		{
			name: "two plans on the last free GPU: the second is rejected",
			setup: func(t *testing.T) [][]byte {
				return setup(t,
					planAllocs(t, []structs.Allocation{placed("a0", 1, "gpu-1", 100, 0)}),
					planAllocs(t, []structs.Allocation{placed("a1", 2, "gpu-1", 100, 1)}))
			},
			// A good add comes first: the plan is all or nothing.
			cmd: func(t *testing.T) []byte {
				return planAllocs(t, []structs.Allocation{placed("b0", 1, "node-1", 64), placed("b1", 3, "gpu-1", 100, 1)})
			},
			wantCode: structs.CodeConflict,
			wantMsg:  `add[1]: GPU 1 of node "gpu-1" is held by allocation "a1"`,
			check:    wantAllocs("a0", "a1"),
		},
		{
			name:  "one GPU twice in one plan",
			setup: func(t *testing.T) [][]byte { return setup(t) },
			cmd: func(t *testing.T) []byte {
				return planAllocs(t, []structs.Allocation{placed("a1", 1, "gpu-1", 100, 1), placed("a2", 2, "gpu-1", 100, 0, 1)})
			},
			wantCode: structs.CodeConflict,
			wantMsg:  `add[1]: GPU 1 of node "gpu-1" is held by allocation "a1"`,
			check:    wantAllocs(),
		},
		{
			name:  "a GPU the node does not have",
			setup: func(t *testing.T) [][]byte { return setup(t) },
			cmd: func(t *testing.T) []byte {
				return planAllocs(t, []structs.Allocation{placed("a1", 1, "gpu-1", 100, 2)})
			},
			wantCode: structs.CodeConflict,
			wantMsg:  `add[0]: node "gpu-1" has no GPU 2`,
		},
		{
			name:  "a GPU on a node without any",
			setup: func(t *testing.T) [][]byte { return setup(t) },
			cmd: func(t *testing.T) []byte {
				return planAllocs(t, []structs.Allocation{placed("a1", 1, "node-1", 100, 0)})
			},
			wantCode: structs.CodeConflict,
			wantMsg:  `node "node-1" has no GPU 0`,
		},
		{
			name:  "a GPU listed twice in one allocation",
			setup: func(t *testing.T) [][]byte { return setup(t) },
			cmd: func(t *testing.T) []byte {
				return planAllocs(t, []structs.Allocation{placed("a1", 1, "gpu-1", 100, 1, 1)})
			},
			wantCode: structs.CodeInvalid,
			wantMsg:  "add[0].gpus lists GPU 1 twice",
		},
		{
			name: "memory beyond the node's",
			setup: func(t *testing.T) [][]byte {
				return setup(t, planAllocs(t, []structs.Allocation{placed("a0", 1, "gpu-1", 600)}))
			},
			cmd:      func(t *testing.T) []byte { return planAllocs(t, []structs.Allocation{placed("a1", 2, "gpu-1", 401)}) },
			wantCode: structs.CodeConflict,
			wantMsg:  `add[0]: node "gpu-1" has 1000 MB of memory, 600 MB of it allocated; allocation "a1" needs 401 MB more`,
			check:    wantAllocs("a0"),
		},
		{
			name:  "memory beyond the node's within one plan",
			setup: func(t *testing.T) [][]byte { return setup(t) },
			cmd: func(t *testing.T) []byte {
				return planAllocs(t, []structs.Allocation{placed("a1", 1, "gpu-1", 700), placed("a2", 2, "gpu-1", 700)})
			},
			wantCode: structs.CodeConflict,
			wantMsg:  `add[1]: node "gpu-1" has 1000 MB of memory, 700 MB of it allocated`,
		},
		{
			name: "memory up to the node's",
			setup: func(t *testing.T) [][]byte {
				return setup(t, planAllocs(t, []structs.Allocation{placed("a0", 1, "gpu-1", 600)}))
			},
			cmd:   func(t *testing.T) []byte { return planAllocs(t, []structs.Allocation{placed("a1", 2, "gpu-1", 400)}) },
			check: wantAllocs("a0", "a1"),
		},
		{
			name:  "memory on a node that does not know its own",
			setup: func(t *testing.T) [][]byte { return setup(t) },
			cmd: func(t *testing.T) []byte {
				return planAllocs(t, []structs.Allocation{placed("a1", 1, "node-1", 1<<40), placed("a2", 2, "node-1", 1<<40)})
			},
			check: wantAllocs("a1", "a2"),
		},
		{
			name:     "negative memory",
			setup:    func(t *testing.T) [][]byte { return setup(t) },
			cmd:      func(t *testing.T) []byte { return planAllocs(t, []structs.Allocation{placed("a1", 1, "gpu-1", -500)}) },
			wantCode: structs.CodeInvalid,
			wantMsg:  "add[0].memory_mb is negative",
		},
		{
			name: "two replicas of one version on one node",
			setup: func(t *testing.T) [][]byte {
				return setup(t, planAllocs(t, []structs.Allocation{placed("a0", 1, "node-1", 64)}))
			},
			cmd:      func(t *testing.T) []byte { return planAllocs(t, []structs.Allocation{placed("a1", 1, "node-1", 64)}) },
			wantCode: structs.CodeConflict,
			wantMsg:  `add[0]: node "node-1" already runs a replica of version 1 of deployment "iris" (allocation "a0")`,
			check:    wantAllocs("a0"),
		},
		{
			name:  "two replicas of one version on one node in one plan",
			setup: func(t *testing.T) [][]byte { return setup(t) },
			cmd: func(t *testing.T) []byte {
				return planAllocs(t, []structs.Allocation{placed("a1", 1, "node-2", 64), placed("a2", 1, "node-2", 64)})
			},
			wantCode: structs.CodeConflict,
			wantMsg:  `add[1]: node "node-2" already runs a replica of version 1 of deployment "iris" (allocation "a1")`,
		},
		{
			// As placement does on a one-node cluster: versions spread per
			// version, not per deployment.
			name:  "two versions of one deployment on one node",
			setup: func(t *testing.T) [][]byte { return setup(t) },
			cmd: func(t *testing.T) []byte {
				return planAllocs(t, []structs.Allocation{placed("a1", 1, "node-1", 64), placed("a2", 2, "node-1", 64), placed("a3", 3, "node-1", 64)})
			},
			check: wantAllocs("a1", "a2", "a3"),
		},
		{
			name: "a plan that stops an allocation reuses what it held",
			setup: func(t *testing.T) [][]byte {
				return setup(t, planAllocs(t, []structs.Allocation{placed("a0", 1, "gpu-1", 900, 0, 1)}))
			},
			cmd: func(t *testing.T) []byte {
				return planAllocs(t, []structs.Allocation{placed("a1", 1, "gpu-1", 900, 1, 0)}, "a0")
			},
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				if a := mustAlloc(t, txn, "a1"); !reflect.DeepEqual(a.GPUs, []int{1, 0}) || a.NodeID != "gpu-1" {
					t.Fatalf("a1 = %+v, want GPUs [1 0] on gpu-1", a)
				}
				wantAllocs("a1")(t, txn, 0, nil)
			},
		},
		{
			name: "a failed allocation holds its GPU until a plan removes it",
			setup: func(t *testing.T) [][]byte {
				return setup(t,
					planAllocs(t, []structs.Allocation{placed("a0", 1, "gpu-1", 100, 0)}),
					reportAllocs(t, report("a0", "gpu-1", structs.AllocFailed, "crashed")))
			},
			cmd: func(t *testing.T) []byte {
				return planAllocs(t, []structs.Allocation{placed("a1", 2, "gpu-1", 100, 0)})
			},
			wantCode: structs.CodeConflict,
			wantMsg:  `GPU 0 of node "gpu-1" is held by allocation "a0"`,
		},
		{
			name: "a GPU another node's allocation holds",
			setup: func(t *testing.T) [][]byte {
				return setup(t, gpuNode(t, "gpu-2", 1000, 1), planAllocs(t, []structs.Allocation{placed("a0", 1, "gpu-2", 100, 0)}))
			},
			cmd: func(t *testing.T) []byte {
				return planAllocs(t, []structs.Allocation{placed("a1", 1, "gpu-1", 100, 0)})
			},
			check: wantAllocs("a0", "a1"),
		},
		{
			// Both plans commit in one batch (one Badger transaction): the
			// second sees the first's allocation.
			name:  "two plans in one batch on the last free GPU",
			setup: func(t *testing.T) [][]byte { return setup(t) },
			cmd: func(t *testing.T) []byte {
				return group(t,
					planAllocs(t, []structs.Allocation{placed("a1", 1, "gpu-1", 100, 0, 1)}),
					planAllocs(t, []structs.Allocation{placed("b1", 2, "gpu-1", 100, 1)}))
			},
			check: func(t *testing.T, txn *Txn, _ uint64, res interface{}) {
				results, ok := res.([]interface{})
				if !ok || len(results) != 2 || codeOf(results[0]) != "" || codeOf(results[1]) != structs.CodeConflict {
					t.Fatalf("results = %#v, want success then already_exists", res)
				}
				wantAllocs("a1")(t, txn, 0, nil)
			},
		},
		{
			name: "a remove earlier in the batch frees the GPU",
			setup: func(t *testing.T) [][]byte {
				return setup(t, planAllocs(t, []structs.Allocation{placed("a0", 1, "gpu-1", 100, 0)}))
			},
			cmd: func(t *testing.T) []byte {
				return group(t,
					planAllocs(t, nil, "a0"),
					planAllocs(t, []structs.Allocation{placed("a1", 1, "gpu-1", 100, 0)}))
			},
			check: func(t *testing.T, txn *Txn, _ uint64, res interface{}) {
				results, ok := res.([]interface{})
				if !ok || len(results) != 2 || codeOf(results[0]) != "" || codeOf(results[1]) != "" {
					t.Fatalf("results = %#v, want two successes", res)
				}
				wantAllocs("a1")(t, txn, 0, nil)
			},
		},
	}
	runServingCases(t, tests)
}

// Capacity is decided from the state alone, so every node that applies the
// same entries gives the same verdicts.
func TestFSM_AllocPlanCapacityIsDeterministic(t *testing.T) {
	data := irisSetup(t,
		putDeployment(t, "iris", trafficOf(split(1, 90), split(2, 10))),
		gpuNode(t, "gpu-1", 1000, 1),
		planAllocs(t, []structs.Allocation{placed("a1", 1, "gpu-1", 100, 0)}),
		planAllocs(t, []structs.Allocation{placed("b1", 2, "gpu-1", 100, 0)}),
	)
	var want []string
	for _, res := range testFSM(t).ApplyBatch(commandLogs(1, data...)) {
		want = append(want, codeOf(res))
	}
	if want[len(want)-1] != structs.CodeConflict {
		t.Fatalf("second plan: code %q, want %q", want[len(want)-1], structs.CodeConflict)
	}
	fresh := testFSM(t)
	var got []string
	for _, res := range fresh.ApplyBatch(commandLogs(1, data...)) {
		got = append(got, codeOf(res))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("codes on a second FSM = %v, want %v", got, want)
	}
}

// An AllocPlanType entry (13) applies as it did before the capacity check,
// so a log written then replays to the same state; only AllocPlanFitType
// (20), which leaders propose now, is checked.
func TestFSM_AllocPlanUncheckedReplays(t *testing.T) {
	setup := func(t *testing.T) [][]byte {
		return irisSetup(t, putDeployment(t, "iris", trafficOf(split(1, 90), split(2, 10))), gpuNode(t, "gpu-1", 1000, 1),
			planAllocs(t, []structs.Allocation{placed("a1", 1, "gpu-1", 100, 0)}))
	}
	runServingCases(t, []servingCase{
		{
			name:  "type 13 double-books as it always did",
			setup: setup,
			cmd: func(t *testing.T) []byte {
				return encode(t, structs.AllocPlanType, &structs.AllocPlanRequest{Add: []structs.Allocation{placed("b1", 2, "gpu-1", 100, 0)}})
			},
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				if got := allocIDs(t, txn); !reflect.DeepEqual(got, []string{"a1", "b1"}) {
					t.Fatalf("allocations = %v, want a1 and b1", got)
				}
			},
		},
		{
			name:  "type 20 refuses the same plan",
			setup: setup,
			cmd: func(t *testing.T) []byte {
				return planAllocs(t, []structs.Allocation{placed("b1", 2, "gpu-1", 100, 0)})
			},
			wantCode: structs.CodeConflict,
			wantMsg:  "GPU 0",
		},
	})
}
