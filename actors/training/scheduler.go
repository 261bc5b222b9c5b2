package training

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// ScheduleInput is the registry and membership as the leader sees them.
type ScheduleInput struct {
	Nodes []*structs.Node
	// Alive holds the nodes that may take new members: up, not leaving.
	Alive map[string]bool
	// Gone holds the nodes that have been away long enough that the
	// members on them count as lost.
	Gone map[string]bool
	// Allocs are serving's allocations, JobAllocs the members of placed and
	// running jobs: together, the one capacity ledger.
	Allocs    []*structs.Allocation
	JobAllocs []*structs.JobAllocation
	// Jobs are the jobs that are not terminal.
	Jobs []*structs.Job
	// MaxPlace bounds the placements of one plan (0: no bound), so that one
	// log entry stays small; the leader plans again at once when it is hit.
	MaxPlace int
	Now      time.Time
}

// load is what a node has left.
type load struct {
	node     *structs.Node
	cpu      float64 // free cores; +Inf when the node's count is unknown
	memoryMB int64   // free memory; MaxInt64 when unknown
	gpus     []bool  // by position in node.Resources.GPUs: held
	free     int     // GPUs not held
	members  int     // job members and replicas on the node
}

func newLoad(n *structs.Node) *load {
	l := &load{node: n, cpu: math.Inf(1), memoryMB: math.MaxInt64, gpus: make([]bool, len(n.Resources.GPUs)), free: len(n.Resources.GPUs)}
	if n.Resources.CPUCores > 0 {
		l.cpu = float64(n.Resources.CPUCores)
	}
	if n.Resources.MemoryMB > 0 {
		l.memoryMB = n.Resources.MemoryMB
	}
	return l
}

func (l *load) take(cpu float64, memoryMB int64, gpus []int) {
	l.cpu -= cpu
	if l.memoryMB != math.MaxInt64 {
		l.memoryMB -= memoryMB
	}
	for _, g := range gpus {
		if i := l.gpuPos(g); i >= 0 && !l.gpus[i] {
			l.gpus[i] = true
			l.free--
		}
	}
	l.members++
}

func (l *load) gpuPos(index int) int {
	return slices.IndexFunc(l.node.Resources.GPUs, func(g structs.GPU) bool { return g.Index == index })
}

// pickGPUs returns the lowest free indices of n GPUs that fit r, or nil.
func (l *load) pickGPUs(r *structs.JobResources) []int {
	if r.GPUs == 0 {
		return []int{}
	}
	if l.free < r.GPUs {
		return nil
	}
	var out []int
	for i, g := range l.node.Resources.GPUs {
		if !l.gpus[i] && r.GPUFits(g) {
			out = append(out, g.Index)
			if len(out) == r.GPUs {
				slices.Sort(out)
				return out
			}
		}
	}
	return nil
}

// Schedule computes one pass of placement for jobs (DESIGN.md §7). It is a
// pure function of its input, so the leader runs it on every change and it
// is benchmarked without a cluster.
//
//   - Lost: a placed or running job with a member on a gone node.
//   - Placed: pending jobs in priority order (highest first), then in the
//     order they were submitted. Each job gets all its members on distinct
//     alive nodes or none (a gang). A member's node must allow the job's
//     command (process jobs) and have the CPUs, memory and GPUs of the asked
//     model and memory free in the ledger. Among feasible nodes, binpack
//     takes the best fit (fewest GPUs left free, then fewest CPUs, then
//     least memory) and spread the least loaded (fewest members and
//     replicas, then most GPUs free, then most CPUs, then most memory). GPUs are the lowest free
//     indices that fit.
//   - Wait: a pending job that does not fit now, with the reason, when the
//     reason differs from the one it has.
//
// A job that does not fit does not hold back smaller jobs behind it
// (backfill): a large job can wait behind a stream of small ones.
func Schedule(in ScheduleInput) structs.JobPlanRequest {
	plan := structs.JobPlanRequest{At: in.Now}
	loads := make(map[string]*load, len(in.Nodes))
	var order []*load // alive nodes, in ID order
	for _, n := range in.Nodes {
		l := newLoad(n)
		loads[n.ID] = l
		if in.Alive[n.ID] {
			order = append(order, l)
		}
	}
	slices.SortFunc(order, func(a, b *load) int { return cmp.Compare(a.node.ID, b.node.ID) })

	lost := map[string]bool{}
	for _, j := range in.Jobs {
		if j.State != structs.JobPlaced && j.State != structs.JobRunning {
			continue
		}
		for _, a := range j.Allocations {
			if in.Gone[a.NodeID] {
				plan.Lose = append(plan.Lose, structs.JobLoss{JobID: j.ID, Attempt: j.Attempt,
					Reason: fmt.Sprintf("node %s of member %d is gone", a.NodeName, a.Rank)})
				lost[j.ID] = true
				break
			}
		}
	}
	for _, a := range in.Allocs {
		if l := loads[a.NodeID]; l != nil {
			l.take(0, a.MemoryMB, a.GPUs)
		}
	}
	for _, a := range in.JobAllocs {
		if l := loads[a.NodeID]; l != nil && !lost[a.JobID] {
			l.take(a.CPU, a.MemoryMB, a.GPUs)
		}
	}

	var pending []*structs.Job
	for _, j := range in.Jobs {
		if j.State == structs.JobPending && !j.CancelRequested {
			pending = append(pending, j)
		}
	}
	slices.SortFunc(pending, func(a, b *structs.Job) int {
		if c := cmp.Compare(b.Spec.Priority, a.Spec.Priority); c != 0 {
			return c
		}
		return cmp.Compare(a.CreateIndex, b.CreateIndex)
	})
	type candidate struct {
		l    *load
		gpus []int
	}
	var cands []candidate
	// full remembers the shapes that found no room in this pass, with the
	// reason: capacity only shrinks during a pass, so a job of the same
	// shape later in the queue cannot fit either.
	full := map[jobShape]string{}
	for _, j := range pending {
		if in.MaxPlace > 0 && len(plan.Place) >= in.MaxPlace {
			break
		}
		r := &j.Spec.Resources
		shape := shapeOf(j)
		if reason, ok := full[shape]; ok {
			if reason != j.Reason {
				plan.Wait = append(plan.Wait, structs.JobWait{JobID: j.ID, Reason: reason})
			}
			continue
		}
		cands = cands[:0]
		var first *load // the first node that does not fit, for the reason
		for _, l := range order {
			gpus, ok := fits(j, l)
			if !ok {
				if first == nil {
					first = l
				}
				continue
			}
			cands = append(cands, candidate{l, gpus})
		}
		if len(cands) < j.Spec.Nodes {
			reason := fmt.Sprintf("waiting for capacity: %d of the %d nodes it needs have room", len(cands), j.Spec.Nodes)
			if len(order) == 0 {
				reason = "waiting for capacity: no node is alive"
			} else if first != nil {
				reason += " (" + whyNot(j, first) + ")"
			}
			full[shape] = reason
			if reason != j.Reason {
				plan.Wait = append(plan.Wait, structs.JobWait{JobID: j.ID, Reason: reason})
			}
			continue
		}
		better := binpackOrder
		if j.Spec.Placement == structs.PlaceSpread {
			better = spreadOrder
		}
		// The best Nodes candidates, best first.
		for k := 0; k < j.Spec.Nodes; k++ {
			best := k
			for i := k + 1; i < len(cands); i++ {
				if better(cands[i].l, cands[best].l, r) < 0 {
					best = i
				}
			}
			cands[k], cands[best] = cands[best], cands[k]
		}
		p := structs.JobPlacement{JobID: j.ID, Attempt: j.Attempt, Allocations: make([]structs.JobAllocation, j.Spec.Nodes)}
		for k := range p.Allocations {
			c := cands[k]
			p.Allocations[k] = structs.JobAllocation{JobID: j.ID, Rank: k, NodeID: c.l.node.ID, NodeName: c.l.node.Name,
				GPUs: c.gpus, CPU: r.CPU, MemoryMB: r.MemoryMB}
			c.l.take(r.CPU, r.MemoryMB, c.gpus)
		}
		plan.Place = append(plan.Place, p)
	}
	return plan
}

// jobShape is what decides where a job fits.
type jobShape struct {
	r       structs.JobResources
	command string
	nodes   int
}

func shapeOf(j *structs.Job) jobShape {
	s := jobShape{r: j.Spec.Resources, nodes: j.Spec.Nodes}
	if j.Spec.Trainer.Kind == structs.TrainerProcess {
		s.command = j.Spec.Trainer.Command[0]
	}
	return s
}

// fits returns the GPUs one member of j would take on l, and whether it
// fits at all.
func fits(j *structs.Job, l *load) ([]int, bool) {
	r := &j.Spec.Resources
	if l.cpu < r.CPU || l.memoryMB < r.MemoryMB || l.free < r.GPUs {
		return nil, false
	}
	if j.Spec.Trainer.Kind == structs.TrainerProcess && !l.node.Exec.Allows(j.Spec.Trainer.Command[0]) {
		return nil, false
	}
	gpus := l.pickGPUs(r)
	return gpus, gpus != nil
}

// whyNot says why one member of j does not fit on l.
func whyNot(j *structs.Job, l *load) string {
	r := &j.Spec.Resources
	n := l.node
	switch {
	case j.Spec.Trainer.Kind == structs.TrainerProcess && !n.Exec.Allows(j.Spec.Trainer.Command[0]):
		return fmt.Sprintf("node %s does not allow %q", n.Name, j.Spec.Trainer.Command[0])
	case l.cpu < r.CPU:
		return fmt.Sprintf("node %s has %g CPUs free", n.Name, max(l.cpu, 0))
	case l.memoryMB < r.MemoryMB:
		return fmt.Sprintf("node %s has %d MB free", n.Name, max(l.memoryMB, 0))
	}
	what := "GPUs"
	if r.GPUModel != "" {
		what = strings.TrimSpace(r.GPUModel) + " GPUs"
	}
	return fmt.Sprintf("node %s has fewer than %d %s free", n.Name, r.GPUs, what)
}

// binpackOrder puts the tighter fit first: fewer GPUs, CPUs and memory left.
func binpackOrder(a, b *load, _ *structs.JobResources) int {
	if c := cmp.Compare(a.free, b.free); c != 0 {
		return c
	}
	if c := cmp.Compare(a.cpu, b.cpu); c != 0 {
		return c
	}
	if c := cmp.Compare(a.memoryMB, b.memoryMB); c != 0 {
		return c
	}
	return cmp.Compare(a.node.ID, b.node.ID)
}

// spreadOrder puts the least loaded node first.
func spreadOrder(a, b *load, _ *structs.JobResources) int {
	if c := cmp.Compare(a.members, b.members); c != 0 {
		return c
	}
	if c := cmp.Compare(b.free, a.free); c != 0 {
		return c
	}
	if c := cmp.Compare(b.cpu, a.cpu); c != 0 {
		return c
	}
	if c := cmp.Compare(b.memoryMB, a.memoryMB); c != 0 {
		return c
	}
	return cmp.Compare(a.node.ID, b.node.ID)
}

// MaxPlacementsPerEntry bounds the placements of one log entry, so that its
// writes (a job record and a ledger record per member) stay within what one
// command may write.
const MaxPlacementsPerEntry = 256

// SplitPlan cuts a plan into entries of at most MaxPlacementsPerEntry
// placements; losses and waits go with the first. The leader proposes them
// together, so one round of replication carries the whole pass.
func SplitPlan(plan structs.JobPlanRequest) []structs.JobPlanRequest {
	out := []structs.JobPlanRequest{{Lose: plan.Lose, Wait: plan.Wait, At: plan.At}}
	for i, p := range plan.Place {
		if i > 0 && i%MaxPlacementsPerEntry == 0 {
			out = append(out, structs.JobPlanRequest{At: plan.At})
		}
		last := &out[len(out)-1]
		last.Place = append(last.Place, p)
	}
	return out
}
