package serving

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// PlanInput is the registry and membership as the leader sees them.
type PlanInput struct {
	Deployments []*structs.Deployment
	// Version looks up a version record; nil when it does not exist.
	Version func(model string, v uint64) *structs.ModelVersion
	Allocs  []*structs.Allocation
	// JobAllocs are the members of placed and running training jobs: the
	// same capacity ledger, whose GPUs and memory replicas may not take.
	JobAllocs []*structs.JobAllocation
	Nodes     []*structs.Node
	// Alive holds the IDs of nodes that are up and not leaving.
	Alive map[string]bool
	// NewID makes allocation IDs.
	NewID func() string
}

// ReplicaMemoryMB is what one replica of v is expected to need on its node:
// what the deployment declares, plus twice the artifact (a loaded model is
// usually larger than its file).
func ReplicaMemoryMB(d *structs.Deployment, v *structs.ModelVersion) int64 {
	mb := d.Resources.MemoryMB
	if v != nil {
		mb += (2*v.Size + 1<<20 - 1) >> 20
	}
	return mb
}

// nodeUse is what the kept allocations take of one node.
type nodeUse struct {
	node     *structs.Node
	memoryMB int64
	gpus     map[int]bool
	allocs   int
}

func (u *nodeUse) freeGPUs() []int {
	var free []int
	for _, g := range u.node.Resources.GPUs {
		if !u.gpus[g.Index] {
			free = append(free, g.Index)
		}
	}
	return free
}

// Plan computes the allocations to add and remove so that every served
// version of every deployment has its replicas on distinct, alive nodes with
// room for them. It is a pure function of its input, so the leader can run it
// on every change and propose only when the plan is not empty.
//
// Removed: allocations of deployments or versions no longer served, on nodes
// that are gone or may not run them (CanRun), failed ones, and extras beyond
// the replica count. Added: the missing replicas, each on the feasible node
// (allowed to run the version, enough free memory and GPUs, no replica of the
// same version yet) with the fewest allocations, then the most free memory. A
// replica that fits nowhere stays unplaced until a node joins or frees room;
// Unplaced reports it, and UnplacedReason says when no alive node may run the
// version at all.
func Plan(in PlanInput) structs.AllocPlanRequest {
	var plan structs.AllocPlanRequest
	deployments := make(map[string]*structs.Deployment, len(in.Deployments))
	for _, d := range in.Deployments {
		deployments[d.Name] = d
	}
	use := map[string]*nodeUse{}
	for _, n := range in.Nodes {
		if in.Alive[n.ID] {
			use[n.ID] = &nodeUse{node: n, gpus: map[int]bool{}}
		}
	}
	type key struct {
		dep     string
		version uint64
	}
	// Each version record is read once per plan: the leader's lookup is a
	// registry read.
	versions := map[key]*structs.ModelVersion{}
	version := func(k key) *structs.ModelVersion {
		v, ok := versions[k]
		if !ok {
			v = in.Version(k.dep, k.version)
			versions[k] = v
		}
		return v
	}
	for _, a := range in.JobAllocs {
		if u := use[a.NodeID]; u != nil {
			u.memoryMB += a.MemoryMB
			for _, g := range a.GPUs {
				u.gpus[g] = true
			}
		}
	}
	kept := map[key][]*structs.Allocation{}
	failedOn := map[key]map[string]bool{}
	for _, a := range in.Allocs {
		d := deployments[a.Deployment]
		k := key{a.Deployment, a.Version}
		switch {
		case d == nil, !slices.Contains(d.Traffic.ServedVersions(), a.Version), use[a.NodeID] == nil:
			plan.Remove = append(plan.Remove, a.ID)
		case a.State != structs.AllocFailed && !canRunIfKnown(use[a.NodeID].node, version(k)):
			// The node's exec config changed since the replica was placed;
			// its agent would refuse to start it again anyway.
			plan.Remove = append(plan.Remove, a.ID)
		case a.State == structs.AllocFailed:
			plan.Remove = append(plan.Remove, a.ID)
			if failedOn[k] == nil {
				failedOn[k] = map[string]bool{}
			}
			failedOn[k][a.NodeID] = true
		default:
			kept[k] = append(kept[k], a)
			u := use[a.NodeID]
			u.memoryMB += a.MemoryMB
			u.allocs++
			for _, g := range a.GPUs {
				u.gpus[g] = true
			}
		}
	}

	for _, d := range sortedDeployments(in.Deployments) {
		for _, ver := range d.Traffic.ServedVersions() {
			k := key{d.Name, ver}
			have := kept[k]
			// Extras go from the busiest nodes first.
			if len(have) > d.Replicas {
				slices.SortStableFunc(have, func(a, b *structs.Allocation) int {
					return cmp.Or(-cmp.Compare(use[a.NodeID].allocs, use[b.NodeID].allocs), cmp.Compare(a.ID, b.ID))
				})
				for _, a := range have[:len(have)-d.Replicas] {
					plan.Remove = append(plan.Remove, a.ID)
					u := use[a.NodeID]
					u.memoryMB -= a.MemoryMB
					u.allocs--
					for _, g := range a.GPUs {
						delete(u.gpus, g)
					}
				}
				continue
			}
			v := version(k)
			if v == nil {
				continue
			}
			need := ReplicaMemoryMB(d, v)
			taken := map[string]bool{}
			for _, a := range have {
				taken[a.NodeID] = true
			}
			for range d.Replicas - len(have) {
				u := bestNode(use, taken, failedOn[k], need, d.Resources.GPUs, v)
				if u == nil {
					break
				}
				a := structs.Allocation{
					ID: in.NewID(), Deployment: d.Name, Version: ver, NodeID: u.node.ID, MemoryMB: need,
				}
				if d.Resources.GPUs > 0 {
					a.GPUs = u.freeGPUs()[:d.Resources.GPUs]
					for _, g := range a.GPUs {
						u.gpus[g] = true
					}
				}
				u.memoryMB += need
				u.allocs++
				taken[u.node.ID] = true
				plan.Add = append(plan.Add, a)
			}
		}
	}
	return plan
}

// bestNode picks where a new replica of v goes; nil when no node fits.
func bestNode(use map[string]*nodeUse, taken, failed map[string]bool, needMB int64, gpus int, v *structs.ModelVersion) *nodeUse {
	var best *nodeUse
	better := func(a, b *nodeUse) bool {
		// A node where this version just failed is the last resort.
		if fa, fb := failed[a.node.ID], failed[b.node.ID]; fa != fb {
			return fb
		}
		if a.allocs != b.allocs {
			return a.allocs < b.allocs
		}
		freeA, freeB := a.node.Resources.MemoryMB-a.memoryMB, b.node.Resources.MemoryMB-b.memoryMB
		if freeA != freeB {
			return freeA > freeB
		}
		return a.node.ID < b.node.ID
	}
	for _, u := range use {
		if taken[u.node.ID] || !CanRun(u.node, v) {
			continue
		}
		if u.node.Resources.MemoryMB > 0 && u.node.Resources.MemoryMB-u.memoryMB < needMB {
			continue
		}
		if len(u.freeGPUs()) < gpus {
			continue
		}
		if best == nil || better(u, best) {
			best = u
		}
	}
	return best
}

// CanRun reports whether node n may run a replica of v. Any node loads a
// model file; a process version runs only where the node's own exec config
// (as its record carries it) allows the version's command. The node checks
// again when it starts the replica, against its live config.
func CanRun(n *structs.Node, v *structs.ModelVersion) bool {
	if v.Format != structs.FormatProcess {
		return true
	}
	return v.Process != nil && len(v.Process.Command) > 0 && n.Exec.Allows(v.Process.Command[0])
}

// canRunIfKnown is CanRun for a kept allocation, whose version record may be
// missing for a moment: without it, nothing is known against the node.
func canRunIfKnown(n *structs.Node, v *structs.ModelVersion) bool {
	return v == nil || CanRun(n, v)
}

// UnplacedReason says why replicas of v find no node when the version itself
// rules out every alive node, as a process version whose command no alive
// node's exec config allows. It returns "" when some alive node may run v:
// then room is what lacks, or placement has not caught up yet.
func UnplacedReason(v *structs.ModelVersion, nodes []*structs.Node, alive func(id string) bool) string {
	if v == nil || v.Format != structs.FormatProcess {
		return ""
	}
	for _, n := range nodes {
		if alive(n.ID) && CanRun(n, v) {
			return ""
		}
	}
	command := ""
	if v.Process != nil && len(v.Process.Command) > 0 {
		command = v.Process.Command[0]
	}
	return fmt.Sprintf("no alive node allows command %q (exec.enabled and exec.allowed_commands in the agent config)", command)
}

func sortedDeployments(ds []*structs.Deployment) []*structs.Deployment {
	out := slices.Clone(ds)
	slices.SortFunc(out, func(a, b *structs.Deployment) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Unplaced reports how many replicas of each served version of d lack an
// allocation that is not failed.
func Unplaced(d *structs.Deployment, allocs []*structs.Allocation) map[uint64]int {
	out := map[uint64]int{}
	for _, v := range d.Traffic.ServedVersions() {
		n := 0
		for _, a := range allocs {
			if a.Deployment == d.Name && a.Version == v && a.State != structs.AllocFailed {
				n++
			}
		}
		if n < d.Replicas {
			out[v] = d.Replicas - n
		}
	}
	return out
}
