package node

import (
	"context"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kilnml/kiln/actors/serving"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// servingParts are the serving components a node runs (DESIGN.md §6).
type servingParts struct {
	metrics    *serving.Metrics
	registry   *prometheus.Registry
	router     *serving.Router
	reconciler *serving.Reconciler
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
		NodeID:         a.id,
		Local:          local,
		System:         a.actors,
		View:           a.view,
		Index:          a.fsm.IndexFunc(raftfsm.ServingTables...),
		Alive:          a.isAlive,
		PredictTimeout: a.cfg.PredictTimeout,
		Metrics:        s.metrics,
		Logger:         a.logger.Named("serving"),
	})
	s.reconciler = serving.NewReconciler(serving.ReconcilerConfig{
		NodeID:  a.id,
		System:  a.actors,
		View:    a.view,
		Changed: a.fsm.Changed,
		Index:   a.fsm.IndexFunc(raftfsm.ServingTables...),
		Propose: a.proposeCmd,
		Blobs:   a.xfer,
		Load:    a.models.Load,
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
