package raftfsm

import (
	"fmt"
	"maps"
	"slices"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Capacity is re-checked in Apply (DESIGN.md §7, §8 "One capacity ledger").
// The leader plans placements from a read view, proposes them, and may time
// out waiting; a plan committed late and the plan made after it were both
// computed from a state that held neither, and would both reserve the same
// GPU. So a plan is checked again against the state it applies to: the
// allocations already there (less those the plan removes) and the plan's
// earlier adds. The rules mirror actors/serving/placement.go:
//
//   - GPUs: an allocation's GPU indices exist on its node, and no index is held
//     by two allocations on one node;
//   - memory: the memory of a node's allocations stays within the node's
//     recorded Resources.MemoryMB (0 means unknown, which placement does not
//     limit either); so does their CPU within Resources.CPUCores (only jobs
//     ask for CPU);
//   - spread: one replica of a deployment's version per node (two versions of
//     one deployment may share a node, as placement puts them on a one-node
//     cluster).
//
// Every allocation in the state holds its resources until a plan removes it,
// whatever its state: placement removes a failed one in the plan that places
// its replacement, so a plan never needs to reuse what a record still holds.
//
// The ledger is one for serving and training: a node's load counts its
// replicas' allocations and the members of jobs placed on it (jl/ records,
// kept while the job is placed or running), so a serving plan never takes a
// job's GPU and a job plan never takes a replica's.

// replicaKey is what the spread rule counts.
type replicaKey struct {
	deployment string
	version    uint64
}

// nodeLoad is what the allocations on one node hold.
type nodeLoad struct {
	memoryMB int64
	cpu      float64
	gpus     map[int]string        // GPU index -> what holds it: `allocation "<id>"` or `job "<id>"`
	replicas map[replicaKey]string // -> ID of the allocation that is that replica
}

func (l *nodeLoad) hold(a *structs.Allocation) {
	l.memoryMB += a.MemoryMB
	for _, g := range a.GPUs {
		l.gpus[g] = fmt.Sprintf("allocation %q", a.ID)
	}
	l.replicas[replicaKey{a.Deployment, a.Version}] = a.ID
}

func (l *nodeLoad) clone() *nodeLoad {
	return &nodeLoad{memoryMB: l.memoryMB, cpu: l.cpu, gpus: maps.Clone(l.gpus), replicas: maps.Clone(l.replicas)}
}

func (l *nodeLoad) holdJob(a *structs.JobAllocation) {
	l.memoryMB += a.MemoryMB
	l.cpu += a.CPU
	for _, g := range a.GPUs {
		l.gpus[g] = fmt.Sprintf("job %q", a.JobID)
	}
}

// capacityLedger is the load of the nodes a plan adds to, by node ID.
type capacityLedger map[string]*nodeLoad

// loadLedger reads what the allocations in the state hold on the given nodes,
// as the command sees the state: allocations the command has deleted do not
// count.
func loadLedger(tx *applyTxn, nodes []string) (capacityLedger, error) {
	ledger := make(capacityLedger, len(nodes))
	for _, id := range nodes {
		if ledger[id] == nil {
			ledger[id] = &nodeLoad{gpus: map[int]string{}, replicas: map[replicaKey]string{}}
		}
	}
	for _, k := range tx.keysUnder(prefixAlloc) {
		var a structs.Allocation
		found, err := tx.get(k, &a)
		if err != nil {
			return nil, err
		}
		if !found {
			continue // removed by this command
		}
		if l := ledger[a.NodeID]; l != nil {
			l.hold(&a)
		}
	}
	prefixes := make([]string, 0, len(ledger))
	for id := range ledger {
		prefixes = append(prefixes, jobAllocNodePrefix(id))
	}
	err := tx.scanPrefixes(prefixes, func(val []byte) error {
		var a structs.JobAllocation
		if err := msgpack.Unmarshal(val, &a); err != nil {
			return err
		}
		ledger[a.NodeID].holdJob(&a)
		return nil
	})
	return ledger, err
}

// placeJob checks that member a of a job fits on node n beside what the
// ledger holds there, with the GPUs its spec asks for, and records it. The
// errors are the job's reasons, for the plan's result.
func (c capacityLedger) placeJob(n *structs.Node, a *structs.JobAllocation, r *structs.JobResources) error {
	l := c[n.ID]
	if len(a.GPUs) != r.GPUs || a.CPU != r.CPU || a.MemoryMB != r.MemoryMB {
		return fmt.Errorf("member %d does not hold what the job asks", a.Rank)
	}
	for j, g := range a.GPUs {
		i := slices.IndexFunc(n.Resources.GPUs, func(x structs.GPU) bool { return x.Index == g })
		switch {
		case slices.Contains(a.GPUs[:j], g):
			return fmt.Errorf("member %d lists GPU %d twice", a.Rank, g)
		case i < 0:
			return fmt.Errorf("node %s has no GPU %d", n.Name, g)
		case !r.GPUFits(n.Resources.GPUs[i]):
			return fmt.Errorf("GPU %d of node %s is not a %q with %d MB", g, n.Name, r.GPUModel, r.GPUMemoryMB)
		}
		if holder, held := l.gpus[g]; held {
			return fmt.Errorf("GPU %d of node %s is held by %s", g, n.Name, holder)
		}
	}
	if total := n.Resources.MemoryMB; total > 0 && l.memoryMB+a.MemoryMB > total {
		return fmt.Errorf("node %s has %d MB of memory, %d MB of it allocated", n.Name, total, l.memoryMB)
	}
	if cores := float64(n.Resources.CPUCores); cores > 0 && l.cpu+a.CPU > cores {
		return fmt.Errorf("node %s has %g CPUs, %g of them allocated", n.Name, cores, l.cpu)
	}
	l.holdJob(a)
	return nil
}

// place checks that a, add[i] of a plan, fits on node n beside what the
// ledger holds there, and records it. A plan that no longer fits is an
// already_exists error naming the node and the resource, so that the leader
// plans again; one that could never fit anywhere is invalid_argument.
func (c capacityLedger) place(i int, n *structs.Node, a *structs.Allocation) error {
	l := c[n.ID]
	if a.MemoryMB < 0 {
		return structs.Errorf(structs.CodeInvalid, "add[%d].memory_mb is negative", i)
	}
	for j, g := range a.GPUs {
		if slices.Contains(a.GPUs[:j], g) {
			return structs.Errorf(structs.CodeInvalid, "add[%d].gpus lists GPU %d twice", i, g)
		}
		if !slices.ContainsFunc(n.Resources.GPUs, func(x structs.GPU) bool { return x.Index == g }) {
			return structs.Errorf(structs.CodeConflict, "add[%d]: node %q has no GPU %d", i, n.ID, g)
		}
		if holder, held := l.gpus[g]; held {
			return structs.Errorf(structs.CodeConflict, "add[%d]: GPU %d of node %q is held by %s", i, g, n.ID, holder)
		}
	}
	if total := n.Resources.MemoryMB; total > 0 && l.memoryMB+a.MemoryMB > total {
		return structs.Errorf(structs.CodeConflict, "add[%d]: node %q has %d MB of memory, %d MB of it allocated; allocation %q needs %d MB more",
			i, n.ID, total, l.memoryMB, a.ID, a.MemoryMB)
	}
	if holder, ok := l.replicas[replicaKey{a.Deployment, a.Version}]; ok {
		return structs.Errorf(structs.CodeConflict, "add[%d]: node %q already runs a replica of version %d of deployment %q (allocation %q)",
			i, n.ID, a.Version, a.Deployment, holder)
	}
	l.hold(a)
	return nil
}
