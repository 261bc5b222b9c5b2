package serving

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// planNode is a node with memMB of memory (0: unknown) and GPUs of the given
// indices.
func planNode(id string, memMB int64, gpus ...int) *structs.Node {
	n := &structs.Node{ID: id, Resources: structs.Resources{MemoryMB: memMB}}
	for _, g := range gpus {
		n.Resources.GPUs = append(n.Resources.GPUs, structs.GPU{Index: g})
	}
	return n
}

// planDeployment serves versions with equal weights.
func planDeployment(name string, replicas int, versions ...uint64) *structs.Deployment {
	d := &structs.Deployment{Name: name, Replicas: replicas}
	for _, v := range versions {
		d.Traffic.Versions = append(d.Traffic.Versions, structs.TrafficSplit{Version: v, Weight: 1})
	}
	return d
}

// withExec gives n an exec config that is enabled and allows cmds.
func withExec(n *structs.Node, cmds ...string) *structs.Node {
	n.Exec = structs.NodeExec{Enabled: true, AllowedCommands: cmds}
	return n
}

func planAlloc(id, dep string, version uint64, node string, memMB int64, gpus ...int) *structs.Allocation {
	return &structs.Allocation{ID: id, Deployment: dep, Version: version, NodeID: node, MemoryMB: memMB, GPUs: gpus, State: structs.AllocRunning}
}

// scenario is a registry and membership to plan for.
type scenario struct {
	deps   []*structs.Deployment
	nodes  []*structs.Node
	allocs []*structs.Allocation
	jobs   []*structs.JobAllocation // members of training jobs
	dead   []string                 // nodes in the table but not alive
	sizes  map[string]int64         // artifact bytes by "model/version"; absent: 0
	absent map[string]bool          // "model/version" with no version record
	// process makes "model/version" a process version running this command.
	process map[string][]string
}

// input builds a PlanInput whose NewID counts up from "new1".
func (s scenario) input() PlanInput {
	alive := map[string]bool{}
	for _, n := range s.nodes {
		alive[n.ID] = !slices.Contains(s.dead, n.ID)
	}
	next := 0
	return PlanInput{
		Deployments: s.deps,
		Version: func(model string, v uint64) *structs.ModelVersion {
			key := fmt.Sprintf("%s/%d", model, v)
			if s.absent[key] {
				return nil
			}
			mv := &structs.ModelVersion{Model: model, Version: v, Size: s.sizes[key]}
			if cmd, ok := s.process[key]; ok {
				mv.Format, mv.Process = structs.FormatProcess, &structs.ProcessSpec{Command: cmd}
			}
			return mv
		},
		Allocs:    s.allocs,
		JobAllocs: s.jobs,
		Nodes:     s.nodes,
		Alive:     alive,
		NewID: func() string {
			next++
			return fmt.Sprintf("new%d", next)
		},
	}
}

// apply returns the allocations after plan, as the FSM would store them.
func apply(allocs []*structs.Allocation, plan structs.AllocPlanRequest) []*structs.Allocation {
	var out []*structs.Allocation
	for _, a := range allocs {
		if !slices.Contains(plan.Remove, a.ID) {
			out = append(out, a)
		}
	}
	for _, a := range plan.Add {
		a.State = structs.AllocPending
		out = append(out, &a)
	}
	return out
}

// addedNodes lists the nodes of the plan's additions for one version, in order.
func addedNodes(plan structs.AllocPlanRequest, dep string, version uint64) []string {
	var nodes []string
	for _, a := range plan.Add {
		if a.Deployment == dep && a.Version == version {
			nodes = append(nodes, a.NodeID)
		}
	}
	return nodes
}

// checkPlanInvariants requires what must hold after any plan: replicas of one
// version on distinct nodes, no GPU reserved twice on a node, no node over
// its memory, and only alive nodes used by new allocations.
func checkPlanInvariants(t *testing.T, s scenario, plan structs.AllocPlanRequest) {
	t.Helper()
	in := s.input()
	after := apply(s.allocs, plan)
	type key struct {
		dep  string
		ver  uint64
		node string
	}
	replicas := map[key]int{}
	gpus := map[string]map[int]string{}
	mem := map[string]int64{}
	for _, a := range after {
		if a.State == structs.AllocFailed {
			continue
		}
		replicas[key{a.Deployment, a.Version, a.NodeID}]++
		mem[a.NodeID] += a.MemoryMB
		if gpus[a.NodeID] == nil {
			gpus[a.NodeID] = map[int]string{}
		}
		for _, g := range a.GPUs {
			if other, ok := gpus[a.NodeID][g]; ok {
				t.Fatalf("GPU %d of %s is reserved by %s and %s", g, a.NodeID, other, a.ID)
			}
			gpus[a.NodeID][g] = a.ID
		}
	}
	for k, n := range replicas {
		if n > 1 {
			t.Fatalf("%d replicas of %s v%d on %s", n, k.dep, k.ver, k.node)
		}
	}
	for _, n := range s.nodes {
		if n.Resources.MemoryMB > 0 && mem[n.ID] > n.Resources.MemoryMB {
			t.Fatalf("%s holds %d MB of replicas, more than its %d MB", n.ID, mem[n.ID], n.Resources.MemoryMB)
		}
	}
	for _, a := range plan.Add {
		if !in.Alive[a.NodeID] {
			t.Fatalf("new allocation %s on %s, which is not alive", a.ID, a.NodeID)
		}
	}
}

func TestPlan_SpreadsReplicasOnDistinctNodes(t *testing.T) {
	nodes := []*structs.Node{planNode("n1", 0), planNode("n2", 0), planNode("n3", 0)}
	tests := []struct {
		replicas     int
		wantPlaced   int
		wantUnplaced map[uint64]int
	}{
		{replicas: 1, wantPlaced: 1, wantUnplaced: map[uint64]int{}},
		{replicas: 3, wantPlaced: 3, wantUnplaced: map[uint64]int{}},
		{replicas: 5, wantPlaced: 3, wantUnplaced: map[uint64]int{1: 2}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d replicas", tc.replicas), func(t *testing.T) {
			d := planDeployment("m", tc.replicas, 1)
			s := scenario{deps: []*structs.Deployment{d}, nodes: nodes}
			plan := Plan(s.input())
			placed := addedNodes(plan, "m", 1)
			if len(placed) != tc.wantPlaced || len(plan.Remove) != 0 {
				t.Fatalf("plan added on %v and removed %v; want %d additions, no removals", placed, plan.Remove, tc.wantPlaced)
			}
			checkPlanInvariants(t, s, plan)
			if got := Unplaced(d, apply(s.allocs, plan)); !maps.Equal(got, tc.wantUnplaced) {
				t.Fatalf("Unplaced = %v, want %v", got, tc.wantUnplaced)
			}
		})
	}
}

func TestPlan_PicksTheLeastLoadedNode(t *testing.T) {
	tests := []struct {
		name      string
		s         scenario
		replicas  int
		wantNodes []string
	}{
		{
			name: "fewest allocations first",
			s: scenario{
				deps:  []*structs.Deployment{planDeployment("other", 1, 1, 2), planDeployment("third", 1, 1)},
				nodes: []*structs.Node{planNode("n1", 0), planNode("n2", 0), planNode("n3", 0)},
				allocs: []*structs.Allocation{
					planAlloc("o1", "other", 1, "n1", 0), planAlloc("o2", "other", 2, "n1", 0),
					planAlloc("t1", "third", 1, "n3", 0),
				},
			},
			replicas:  2,
			wantNodes: []string{"n2", "n3"},
		},
		{
			name:      "most free memory on a tie",
			s:         scenario{nodes: []*structs.Node{planNode("n1", 1000), planNode("n2", 4000), planNode("n3", 2000)}},
			replicas:  2,
			wantNodes: []string{"n2", "n3"},
		},
		{
			// Free: n1 2000, n2 3500, n3 3000 MB. Counting capacity alone would pick n1.
			name: "free memory counts what is allocated",
			s: scenario{
				deps:  []*structs.Deployment{planDeployment("other", 1, 1, 2, 3)},
				nodes: []*structs.Node{planNode("n1", 4000), planNode("n2", 4000), planNode("n3", 3000)},
				allocs: []*structs.Allocation{
					planAlloc("o1", "other", 1, "n1", 2000), planAlloc("o2", "other", 2, "n2", 500), planAlloc("o3", "other", 3, "n3", 0),
				},
			},
			replicas:  1,
			wantNodes: []string{"n2"},
		},
		{
			name:      "lowest ID on a full tie",
			s:         scenario{nodes: []*structs.Node{planNode("n3", 1000), planNode("n1", 1000), planNode("n2", 1000)}},
			replicas:  3,
			wantNodes: []string{"n1", "n2", "n3"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.s.deps = append(tc.s.deps, planDeployment("m", tc.replicas, 1))
			plan := Plan(tc.s.input())
			if got := addedNodes(plan, "m", 1); !slices.Equal(got, tc.wantNodes) {
				t.Fatalf("replicas placed on %v, want %v", got, tc.wantNodes)
			}
			checkPlanInvariants(t, tc.s, plan)
		})
	}
}

func TestPlan_MemoryAware(t *testing.T) {
	const mb = 1 << 20
	withMem := func(d *structs.Deployment, memMB int64) *structs.Deployment {
		d.Resources.MemoryMB = memMB
		return d
	}
	tests := []struct {
		name         string
		s            scenario
		wantNodes    []string
		wantMemMB    int64 // of each new allocation
		wantUnplaced map[uint64]int
	}{
		{
			name:         "a node without room is skipped",
			s:            scenario{deps: []*structs.Deployment{withMem(planDeployment("m", 2, 1), 1000)}, nodes: []*structs.Node{planNode("n1", 500), planNode("n2", 2000)}},
			wantNodes:    []string{"n2"},
			wantMemMB:    1000,
			wantUnplaced: map[uint64]int{1: 1},
		},
		{
			name: "the artifact counts twice",
			s: scenario{
				deps:  []*structs.Deployment{withMem(planDeployment("m", 1, 1), 100)},
				nodes: []*structs.Node{planNode("n1", 1000), planNode("n2", 1400)},
				sizes: map[string]int64{"m/1": 600 * mb},
			},
			wantNodes:    []string{"n2"},
			wantMemMB:    1300,
			wantUnplaced: map[uint64]int{},
		},
		{
			// n1 has fewer replicas, but only 500 MB free.
			name: "memory held by other replicas is not free",
			s: scenario{
				deps:  []*structs.Deployment{withMem(planDeployment("m", 1, 1), 1000), planDeployment("other", 1, 1, 2, 3)},
				nodes: []*structs.Node{planNode("n1", 2000), planNode("n2", 1000)},
				allocs: []*structs.Allocation{
					planAlloc("o1", "other", 1, "n1", 1500), planAlloc("o2", "other", 2, "n2", 0), planAlloc("o3", "other", 3, "n2", 0),
				},
			},
			wantNodes:    []string{"n2"},
			wantMemMB:    1000,
			wantUnplaced: map[uint64]int{},
		},
		{
			// "a" is placed first (by name), on n1; what is left there is too little.
			name: "replicas placed earlier in the plan take room",
			s: scenario{
				deps:  []*structs.Deployment{withMem(planDeployment("m", 1, 1), 1000), withMem(planDeployment("a", 1, 1), 1000)},
				nodes: []*structs.Node{planNode("n1", 1500), planNode("n2", 1200)},
			},
			wantNodes:    []string{"n2"},
			wantMemMB:    1000,
			wantUnplaced: map[uint64]int{},
		},
		{
			name:         "fits nowhere",
			s:            scenario{deps: []*structs.Deployment{withMem(planDeployment("m", 2, 1), 5000)}, nodes: []*structs.Node{planNode("n1", 4000), planNode("n2", 1000)}},
			wantUnplaced: map[uint64]int{1: 2},
		},
		{
			name:         "a node of unknown memory takes any replica",
			s:            scenario{deps: []*structs.Deployment{withMem(planDeployment("m", 1, 1), 5000)}, nodes: []*structs.Node{planNode("n1", 4000), planNode("n2", 0)}},
			wantNodes:    []string{"n2"},
			wantMemMB:    5000,
			wantUnplaced: map[uint64]int{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := Plan(tc.s.input())
			if got := addedNodes(plan, "m", 1); !slices.Equal(got, tc.wantNodes) {
				t.Fatalf("replicas placed on %v, want %v", got, tc.wantNodes)
			}
			for _, a := range plan.Add {
				if a.MemoryMB != tc.wantMemMB {
					t.Fatalf("allocation %s reserves %d MB, want %d", a.ID, a.MemoryMB, tc.wantMemMB)
				}
			}
			checkPlanInvariants(t, tc.s, plan)
			if got := Unplaced(tc.s.deps[0], apply(tc.s.allocs, plan)); !maps.Equal(got, tc.wantUnplaced) {
				t.Fatalf("Unplaced = %v, want %v", got, tc.wantUnplaced)
			}
		})
	}
}

func TestPlan_ReservesFreeGPUs(t *testing.T) {
	withGPUs := func(d *structs.Deployment, gpus int) *structs.Deployment {
		d.Resources.GPUs = gpus
		return d
	}
	tests := []struct {
		name     string
		s        scenario
		wantGPUs map[string][]int // new allocation's node -> its GPUs
	}{
		{
			name: "free indices on each node",
			s: scenario{
				deps:   []*structs.Deployment{withGPUs(planDeployment("m", 2, 1), 1), withGPUs(planDeployment("other", 1, 1), 1)},
				nodes:  []*structs.Node{planNode("n1", 0, 0, 1), planNode("n2", 0, 0)},
				allocs: []*structs.Allocation{planAlloc("o1", "other", 1, "n1", 0, 0)},
			},
			wantGPUs: map[string][]int{"n1": {1}, "n2": {0}},
		},
		{
			name: "not enough free GPUs",
			s: scenario{
				deps:   []*structs.Deployment{withGPUs(planDeployment("m", 1, 1), 2), withGPUs(planDeployment("other", 1, 1), 1)},
				nodes:  []*structs.Node{planNode("n1", 0, 0, 1), planNode("n2", 0)},
				allocs: []*structs.Allocation{planAlloc("o1", "other", 1, "n1", 0, 1)},
			},
			wantGPUs: map[string][]int{},
		},
		{
			name: "two versions on one node never share",
			s: scenario{
				deps:  []*structs.Deployment{withGPUs(planDeployment("m", 1, 1, 2), 1)},
				nodes: []*structs.Node{planNode("n1", 0, 3, 5)},
			},
			wantGPUs: map[string][]int{"n1": {3, 5}}, // one each
		},
		{
			name: "a training job's GPU is taken",
			s: scenario{
				deps:  []*structs.Deployment{withGPUs(planDeployment("m", 2, 1), 1)},
				nodes: []*structs.Node{planNode("n1", 0, 0, 1), planNode("n2", 0, 0)},
				jobs:  []*structs.JobAllocation{{JobID: "j", NodeID: "n1", GPUs: []int{0}}, {JobID: "k", NodeID: "n2", GPUs: []int{0}}},
			},
			wantGPUs: map[string][]int{"n1": {1}}, // n2's only GPU is the job's
		},
		{
			name: "several GPUs for one replica",
			s: scenario{
				deps:  []*structs.Deployment{withGPUs(planDeployment("m", 1, 1), 2)},
				nodes: []*structs.Node{planNode("n1", 0, 0), planNode("n2", 0, 0, 1, 2)},
			},
			wantGPUs: map[string][]int{"n2": {0, 1}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := Plan(tc.s.input())
			got := map[string][]int{}
			for _, a := range plan.Add {
				if a.Deployment == "m" {
					got[a.NodeID] = append(got[a.NodeID], a.GPUs...)
				}
			}
			for _, gpus := range got {
				slices.Sort(gpus)
			}
			if !reflect.DeepEqual(got, tc.wantGPUs) {
				t.Fatalf("GPUs reserved %v, want %v", got, tc.wantGPUs)
			}
			checkPlanInvariants(t, tc.s, plan)
		})
	}
}

func TestPlan_Removes(t *testing.T) {
	failed := func(a *structs.Allocation) *structs.Allocation {
		a.State = structs.AllocFailed
		return a
	}
	tests := []struct {
		name       string
		s          scenario
		replicas   int // of m v1; 0 means 1
		wantRemove []string
		wantAdd    []string // nodes of new replicas of m v1
	}{
		{
			name:       "deleted deployment",
			s:          scenario{nodes: []*structs.Node{planNode("n1", 0)}, allocs: []*structs.Allocation{planAlloc("g1", "gone", 1, "n1", 0), planAlloc("a1", "m", 1, "n1", 0)}},
			wantRemove: []string{"g1"},
		},
		{
			name:       "version no longer served",
			s:          scenario{nodes: []*structs.Node{planNode("n1", 0)}, allocs: []*structs.Allocation{planAlloc("old", "m", 7, "n1", 0), planAlloc("a1", "m", 1, "n1", 0)}},
			wantRemove: []string{"old"},
		},
		{
			name: "dead node",
			s: scenario{
				nodes:  []*structs.Node{planNode("n1", 0), planNode("n2", 0)},
				allocs: []*structs.Allocation{planAlloc("a1", "m", 1, "n2", 0)},
				dead:   []string{"n2"},
			},
			wantRemove: []string{"a1"},
			wantAdd:    []string{"n1"},
		},
		{
			name: "node gone from the table",
			s: scenario{
				nodes:  []*structs.Node{planNode("n1", 0)},
				allocs: []*structs.Allocation{planAlloc("a1", "m", 1, "n9", 0)},
			},
			wantRemove: []string{"a1"},
			wantAdd:    []string{"n1"},
		},
		{
			// n1 would win on every other count: it is empty, roomier and first.
			name: "failed, placed again elsewhere",
			s: scenario{
				nodes:  []*structs.Node{planNode("n1", 8000), planNode("n2", 1000)},
				allocs: []*structs.Allocation{failed(planAlloc("a1", "m", 1, "n1", 0))},
			},
			wantRemove: []string{"a1"},
			wantAdd:    []string{"n2"},
		},
		{
			name: "failed, placed again on the only node",
			s: scenario{
				nodes:  []*structs.Node{planNode("n1", 0)},
				allocs: []*structs.Allocation{failed(planAlloc("a1", "m", 1, "n1", 0))},
			},
			wantRemove: []string{"a1"},
			wantAdd:    []string{"n1"},
		},
		{
			name: "extras go from the busiest node",
			s: scenario{
				deps:  []*structs.Deployment{planDeployment("other", 1, 1)},
				nodes: []*structs.Node{planNode("n1", 0), planNode("n2", 0), planNode("n3", 0)},
				allocs: []*structs.Allocation{
					planAlloc("a1", "m", 1, "n1", 0), planAlloc("a2", "m", 1, "n2", 0), planAlloc("a3", "m", 1, "n3", 0),
					planAlloc("o1", "other", 1, "n2", 0),
				},
			},
			replicas:   2,
			wantRemove: []string{"a2"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.s.deps = append(tc.s.deps, planDeployment("m", max(tc.replicas, 1), 1))
			plan := Plan(tc.s.input())
			remove := slices.Sorted(slices.Values(plan.Remove))
			if !slices.Equal(remove, tc.wantRemove) {
				t.Fatalf("plan removes %v, want %v", remove, tc.wantRemove)
			}
			if got := addedNodes(plan, "m", 1); !slices.Equal(got, tc.wantAdd) {
				t.Fatalf("plan adds m v1 on %v, want %v", got, tc.wantAdd)
			}
			checkPlanInvariants(t, tc.s, plan)
		})
	}
}

func TestPlan_ShadowVersionGetsReplicas(t *testing.T) {
	d := planDeployment("m", 2, 1)
	d.Traffic.Shadow = 2
	s := scenario{deps: []*structs.Deployment{d}, nodes: []*structs.Node{planNode("n1", 0), planNode("n2", 0), planNode("n3", 0)}}
	plan := Plan(s.input())
	if v1, v2 := addedNodes(plan, "m", 1), addedNodes(plan, "m", 2); len(v1) != 2 || len(v2) != 2 {
		t.Fatalf("plan adds v1 on %v and shadow v2 on %v, want two replicas each", v1, v2)
	}
	checkPlanInvariants(t, s, plan)
	if got := Unplaced(d, apply(nil, plan)); len(got) != 0 {
		t.Fatalf("Unplaced after the plan = %v, want none", got)
	}
	if got := Unplaced(d, apply(nil, structs.AllocPlanRequest{Add: plan.Add[:2]})); got[2] != 2 {
		t.Fatalf("Unplaced without the shadow's replicas = %v, want 2 of version 2", got)
	}
}

func TestPlan_VersionWithoutRecordIsNotPlaced(t *testing.T) {
	s := scenario{
		deps:   []*structs.Deployment{planDeployment("m", 1, 1, 2)},
		nodes:  []*structs.Node{planNode("n1", 0)},
		absent: map[string]bool{"m/2": true},
	}
	plan := Plan(s.input())
	if v1, v2 := addedNodes(plan, "m", 1), addedNodes(plan, "m", 2); len(v1) != 1 || len(v2) != 0 {
		t.Fatalf("plan adds v1 on %v and v2 on %v; want v1 only", v1, v2)
	}
}

// busyScenario has a bit of everything: several deployments, GPUs, memory
// limits, a dead node, a failed replica, extras and an unplaceable replica.
func busyScenario() scenario {
	m := planDeployment("m", 2, 1, 2)
	m.Traffic.Shadow = 3
	m.Resources.MemoryMB = 1000
	gpu := planDeployment("gpu", 2, 1)
	gpu.Resources.GPUs = 1
	big := planDeployment("big", 1, 1)
	big.Resources.MemoryMB = 100000
	small := planDeployment("small", 1, 4)
	failedAlloc := planAlloc("f1", "m", 1, "n2", 1000)
	failedAlloc.State = structs.AllocFailed
	return scenario{
		deps: []*structs.Deployment{small, big, gpu, m},
		nodes: []*structs.Node{
			planNode("n4", 8000, 0, 1), planNode("n1", 4000), planNode("n2", 8000, 0),
			planNode("n3", 16000), planNode("n5", 2000, 0),
		},
		dead: []string{"n5"},
		allocs: []*structs.Allocation{
			planAlloc("a1", "m", 1, "n1", 1000),
			failedAlloc,
			planAlloc("s1", "small", 4, "n1", 0), planAlloc("s2", "small", 4, "n3", 0), // one extra
			planAlloc("g1", "gpu", 1, "n5", 0, 0), // on a dead node
			planAlloc("x1", "gone", 1, "n4", 0),
		},
		sizes: map[string]int64{"m/2": 300 << 20},
	}
}

func TestPlan_Deterministic(t *testing.T) {
	s := busyScenario()
	first := Plan(s.input())
	if len(first.Add) == 0 || len(first.Remove) == 0 {
		t.Fatalf("the scenario plans nothing to compare: %+v", first)
	}
	checkPlanInvariants(t, s, first)
	for i := range 20 { // map order differs from run to run
		if again := Plan(s.input()); !reflect.DeepEqual(again, first) {
			t.Fatalf("run %d planned\n%+v\nwant\n%+v", i+2, again, first)
		}
	}
}

func TestPlan_Idempotent(t *testing.T) {
	scenarios := map[string]scenario{
		"busy": busyScenario(),
		"empty cluster": {
			deps: []*structs.Deployment{planDeployment("m", 3, 1)},
		},
		"spread": {
			deps:  []*structs.Deployment{planDeployment("m", 3, 1)},
			nodes: []*structs.Node{planNode("n1", 0), planNode("n2", 0)},
		},
	}
	for name, s := range scenarios {
		t.Run(name, func(t *testing.T) {
			plan := Plan(s.input())
			s.allocs = apply(s.allocs, plan)
			if again := Plan(s.input()); len(again.Add) != 0 || len(again.Remove) != 0 {
				t.Fatalf("planning again after %+v gives %+v, want nothing", plan, again)
			}
		})
	}
}

func TestUnplaced(t *testing.T) {
	d := planDeployment("m", 3, 1, 2)
	failed := planAlloc("f", "m", 1, "n3", 0)
	failed.State = structs.AllocFailed
	allocs := []*structs.Allocation{
		planAlloc("a", "m", 1, "n1", 0), planAlloc("b", "m", 1, "n2", 0), failed,
		planAlloc("c", "m", 2, "n1", 0), planAlloc("d", "m", 2, "n2", 0), planAlloc("e", "m", 2, "n3", 0),
		planAlloc("o", "other", 1, "n3", 0),
	}
	if got, want := Unplaced(d, allocs), map[uint64]int{1: 1}; !maps.Equal(got, want) {
		t.Fatalf("Unplaced = %v, want %v (a failed replica does not count)", got, want)
	}
}

// A process version goes only to nodes whose exec config allows its command;
// where none does, its replicas stay unplaced with a reason that says why.
func TestPlan_ProcessVersionOnlyWhereExecAllows(t *testing.T) {
	python := map[string][]string{"m/1": {"python3", "serve.py"}}
	disabled := planNode("n4", 0)
	disabled.Exec.AllowedCommands = []string{"*"} // listed, but exec.enabled is false
	tests := []struct {
		name         string
		s            scenario
		replicas     int
		memoryMB     int64 // a replica needs
		wantAdd      []string
		wantRemove   []string
		wantUnplaced int
		wantReason   string // "" for none
	}{
		{
			name: "only the nodes that allow it",
			s: scenario{process: python, nodes: []*structs.Node{
				planNode("n1", 0), withExec(planNode("n2", 0), "python3"), withExec(planNode("n3", 0), "/opt/models/*/serve"),
				withExec(planNode("n5", 0), "*"),
			}},
			replicas: 3, wantAdd: []string{"n2", "n5"}, wantUnplaced: 1,
		},
		{
			name:     "no node allows it",
			s:        scenario{process: python, nodes: []*structs.Node{planNode("n1", 0), withExec(planNode("n2", 0), "python"), disabled}},
			replicas: 2, wantUnplaced: 2,
			wantReason: `no alive node allows command "python3" (exec.enabled and exec.allowed_commands in the agent config)`,
		},
		{
			name: "the node that allows it is dead",
			s: scenario{process: python, dead: []string{"n2"}, nodes: []*structs.Node{
				planNode("n1", 0), withExec(planNode("n2", 0), "python3"),
			}},
			replicas: 1, wantUnplaced: 1, wantReason: `no alive node allows command "python3"`,
		},
		{
			name: "a full node that allows it is no reason",
			s: scenario{process: python, nodes: []*structs.Node{
				planNode("n1", 0), withExec(planNode("n2", 1), "python3"),
			}},
			replicas: 1, memoryMB: 100, wantUnplaced: 1,
		},
		{
			name: "a kept replica where the command is no longer allowed",
			s: scenario{process: python,
				nodes:  []*structs.Node{planNode("n1", 0), withExec(planNode("n2", 0), "python3")},
				allocs: []*structs.Allocation{planAlloc("a1", "m", 1, "n1", 0)},
			},
			replicas: 1, wantAdd: []string{"n2"}, wantRemove: []string{"a1"},
		},
		{
			name:     "a model file needs no exec",
			s:        scenario{nodes: []*structs.Node{planNode("n1", 0), planNode("n2", 0)}},
			replicas: 2, wantAdd: []string{"n1", "n2"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := planDeployment("m", tc.replicas, 1)
			d.Resources.MemoryMB = tc.memoryMB
			tc.s.deps = append(tc.s.deps, d)
			in := tc.s.input()
			plan := Plan(in)
			if got := addedNodes(plan, "m", 1); !slices.Equal(got, tc.wantAdd) {
				t.Fatalf("replicas placed on %v, want %v", got, tc.wantAdd)
			}
			if got := slices.Sorted(slices.Values(plan.Remove)); !slices.Equal(got, tc.wantRemove) {
				t.Fatalf("plan removes %v, want %v", got, tc.wantRemove)
			}
			checkPlanInvariants(t, tc.s, plan)
			if got := Unplaced(d, apply(tc.s.allocs, plan))[1]; got != tc.wantUnplaced {
				t.Fatalf("Unplaced = %d, want %d", got, tc.wantUnplaced)
			}
			reason := UnplacedReason(in.Version("m", 1), tc.s.nodes, func(id string) bool { return in.Alive[id] })
			if (tc.wantReason == "") != (reason == "") || !strings.Contains(reason, tc.wantReason) {
				t.Fatalf("UnplacedReason = %q, want %q", reason, tc.wantReason)
			}
		})
	}
}
