package node

import (
	"context"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kilnml/kiln/actors/serving"
	"github.com/kilnml/kiln/ml/formats"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// servingParts are the serving components a node runs (DESIGN.md §6).
type servingParts struct {
	metrics    *serving.Metrics
	registry   *prometheus.Registry
	router     *serving.Router
	reconciler *serving.Reconciler
}

// blobSource adapts the blob transfers to serving.BlobSource.
type blobSource struct{ t *blobTransfers }

func (b blobSource) Ensure(ctx context.Context, digest string, holders []string) (string, error) {
	return b.t.ensure(ctx, digest, holders)
}

// view opens a read view of the local registry for the serving components.
func (a *Agent) view() (serving.Registry, func()) {
	txn := a.fsm.ReadTxn()
	return txn, txn.Discard
}

// isAlive reports whether gossip sees the node up and not leaving.
func (a *Agent) isAlive(id string) bool {
	if id == a.id {
		return true
	}
	m, ok := a.gossip.aliveMember(id)
	return ok && !m.Meta.Leaving
}

func (a *Agent) proposeCmd(ctx context.Context, t structs.MessageType, cmd any) error {
	_, err := a.propose(ctx, t, cmd, nil)
	return err
}

// setupServing builds the metrics registry, the ingress router and this
// node's reconciler; New starts the reconciler once gossip runs.
func (a *Agent) setupServing() {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.registerNodeMetrics(reg)
	s := &servingParts{registry: reg, metrics: serving.NewMetrics(reg)}
	local := serving.NewLocalShards()
	s.router = serving.NewRouter(serving.RouterConfig{
		NodeID:  a.id,
		Local:   local,
		System:  a.actors,
		View:    a.view,
		Index:   a.fsm.ServingIndex,
		Alive:   a.isAlive,
		Metrics: s.metrics,
		Logger:  a.logger.Named("serving"),
	})
	s.reconciler = serving.NewReconciler(serving.ReconcilerConfig{
		NodeID:  a.id,
		System:  a.actors,
		View:    a.view,
		Changed: a.fsm.Changed,
		Index:   a.fsm.ServingIndex,
		Propose: a.proposeCmd,
		Blobs:   blobSource{a.xfer},
		Load:    formats.Load,
		WorkDir: filepath.Join(a.cfg.DataDir, "replicas"),
		Exec:    a.cfg.Exec.servingPolicy(),
		Local:   local,
		Logger:  a.logger.Named("serving"),
	})
	a.serving = s
}

// registerNodeMetrics exports the node's Raft and registry state as gauges.
func (a *Agent) registerNodeMetrics(reg *prometheus.Registry) {
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	gauge("kiln_raft_applied_index", "Highest Raft index applied to this node's registry.", func() float64 {
		return float64(a.fsm.AppliedIndex())
	})
	gauge("kiln_raft_last_index", "Highest Raft index in this node's log.", func() float64 {
		return float64(a.raft.LastIndex())
	})
	gauge("kiln_raft_is_leader", "1 while this node is the Raft leader.", func() float64 {
		if a.leaderReady.Load() {
			return 1
		}
		return 0
	})
	gauge("kiln_raft_last_contact_seconds", "Time since this follower last heard from the leader (0 on the leader).", func() float64 {
		if lc := a.raft.LastContact(); !lc.IsZero() && !a.leaderReady.Load() {
			return time.Since(lc).Seconds()
		}
		return 0
	})
	gauge("kiln_gossip_members_alive", "Members gossip sees alive.", func() float64 {
		return float64(len(a.gossip.alive()))
	})
	gauge("kiln_serving_replicas_local", "Model replicas running on this node.", func() float64 {
		n := 0
		for _, r := range a.actors.Refs() {
			if r.Kind == serving.ShardKind {
				n++
			}
		}
		return float64(n)
	})
}

// placementLoop runs on the leader: whenever the registry or membership
// changes (and at least every second), it computes the placement plan and
// proposes it when it is not empty.
func (a *Agent) placementLoop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	full, seen := true, uint64(0)
	for {
		changed := a.fsm.Changed()
		// Registry writes that leave serving state alone need no plan; the
		// tick covers changes of liveness and of the node table.
		if idx := a.fsm.ServingIndex(); full || idx != seen {
			seen = idx
			if err := a.placeOnce(ctx); err != nil && ctx.Err() == nil {
				a.logger.Warn("placement failed", "error", err)
			}
		}
		full = false
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
			full = true
			continue
		}
		// Coalesce bursts of serving changes into one pass.
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (a *Agent) placeOnce(ctx context.Context) error {
	txn := a.fsm.ReadTxn()
	deployments, _, err := txn.Deployments("", 0)
	if err != nil {
		txn.Discard()
		return err
	}
	if len(deployments) == 0 {
		allocs, err := txn.Allocations()
		txn.Discard()
		if err != nil || len(allocs) == 0 {
			return err
		}
		return a.proposeCmd(ctx, structs.AllocPlanType, &structs.AllocPlanRequest{Remove: allocIDs(allocs)})
	}
	allocs, err := txn.Allocations()
	if err != nil {
		txn.Discard()
		return err
	}
	nodes, err := txn.Nodes()
	if err != nil {
		txn.Discard()
		return err
	}
	alive := map[string]bool{}
	for _, n := range nodes {
		alive[n.ID] = a.isAlive(n.ID)
	}
	plan := serving.Plan(serving.PlanInput{
		Deployments: deployments,
		Version: func(model string, v uint64) *structs.ModelVersion {
			mv, err := txn.Version(model, v)
			if err != nil {
				return nil
			}
			return mv
		},
		Allocs: allocs,
		Nodes:  nodes,
		Alive:  alive,
		NewID:  func() string { return structs.NewID(time.Now()) },
	})
	txn.Discard()
	if len(plan.Add) == 0 && len(plan.Remove) == 0 {
		return nil
	}
	now := time.Now().UTC()
	for i := range plan.Add {
		plan.Add[i].CreatedAt = now
	}
	a.logger.Info("placing replicas", "add", len(plan.Add), "remove", len(plan.Remove))
	return a.proposeCmd(ctx, structs.AllocPlanType, &plan)
}

func allocIDs(allocs []*structs.Allocation) []string {
	ids := make([]string, len(allocs))
	for i, a := range allocs {
		ids[i] = a.ID
	}
	return ids
}
