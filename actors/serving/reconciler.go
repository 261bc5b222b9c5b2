package serving

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kilnml/kiln/actors"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// Registry is the read side of the registry that serving needs. A
// raftfsm.Txn satisfies it.
type Registry interface {
	// Index is the applied Raft index the view reflects.
	Index() uint64
	Model(name string) (*structs.Model, error)
	Version(model string, v uint64) (*structs.ModelVersion, error)
	Deployment(name string) (*structs.Deployment, error)
	Allocations() ([]*structs.Allocation, error)
}

// ViewFunc opens a consistent read view of the local registry and returns
// it with the function that releases it.
type ViewFunc func() (Registry, func())

// ProposeFunc writes a command through Raft (forwarded to the leader).
type ProposeFunc func(ctx context.Context, t structs.MessageType, cmd any) error

// ReconcilerConfig wires a node's Reconciler.
type ReconcilerConfig struct {
	NodeID  string
	System  *actors.System
	View    ViewFunc
	Changed func() <-chan struct{}
	// Index, when set, is the registry's index of the last change to
	// serving state (raftfsm.FSM.Index of raftfsm.ServingTables): a change that does not move
	// it starts no pass.
	Index   func() uint64
	Propose ProposeFunc
	Blobs   BlobSource
	Load    Loader
	// WorkDir holds one directory per replica of this node, named by its
	// allocation ID, where a process replica runs and logs. The reconciler
	// owns it: a directory there that belongs to no allocation of this node
	// is removed, with everything in it.
	WorkDir string
	// Exec is this node's exec config: what its process replicas may run,
	// checked again at every start (the zero value runs none).
	Exec ExecPolicy
	// Local is the table the node's router calls local replicas through.
	Local  *LocalShards
	Logger hclog.Logger
	// Interval is the longest time between two passes, and the period of
	// the health checks of running replicas (default 2s); a change to
	// serving state starts a pass at once.
	Interval time.Duration
}

// Reconciler keeps this node's shard actors equal to the allocations the
// registry assigns to it, and reports their states back through Raft.
type Reconciler struct {
	cfg ReconcilerConfig
	log hclog.Logger

	mu       sync.Mutex
	reported map[string]string                    // guarded by mu: alloc ID -> state last written
	pending  map[string]structs.AllocStatusUpdate // guarded by mu: states to write
	starting map[string]bool                      // guarded by mu: allocs whose load is being awaited

	// wake starts a pass early when a report is queued, so a replica that
	// finished loading is reported running at once, not at the next tick.
	wake chan struct{}

	wg sync.WaitGroup
}

// NewReconciler returns a Reconciler; Run starts it.
func NewReconciler(cfg ReconcilerConfig) *Reconciler {
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return &Reconciler{
		cfg: cfg, log: cfg.Logger.Named("reconciler"),
		reported: map[string]string{}, pending: map[string]structs.AllocStatusUpdate{}, starting: map[string]bool{},
		wake: make(chan struct{}, 1),
	}
}

// Run reconciles until ctx ends, then waits for its helpers.
func (r *Reconciler) Run(ctx context.Context) {
	defer r.wg.Wait()
	tick := time.NewTicker(r.cfg.Interval)
	defer tick.Stop()
	full, seen := true, uint64(0)
	for {
		// A registry change that leaves serving state alone needs no pass; a
		// tick makes a full one, health checks included.
		if idx := r.servingIndex(); full || idx == 0 || idx != seen {
			seen = idx
			r.pass(ctx, full)
		}
		r.flush(ctx)
		full = false
		select {
		case <-ctx.Done():
			return
		case <-r.cfg.Changed():
		case <-tick.C:
			full = true
		case <-r.wake:
		}
	}
}

func (r *Reconciler) servingIndex() uint64 {
	if r.cfg.Index == nil {
		return 0
	}
	return r.cfg.Index()
}

// pass diffs assigned allocations against running shards once; with health
// it also asks each running replica whether it can still serve.
func (r *Reconciler) pass(ctx context.Context, health bool) {
	view, release := r.cfg.View()
	allocs, err := view.Allocations()
	if err != nil {
		release()
		r.log.Warn("reading allocations", "error", err)
		return
	}
	want := map[string]*structs.Allocation{}
	configs := map[string]ShardConfig{}
	// mine is every allocation assigned here, whatever its state: a failed
	// replica keeps its work dir, logs included, until the leader removes it.
	mine := map[string]bool{}
	for _, a := range allocs {
		if a.NodeID != r.cfg.NodeID {
			continue
		}
		mine[a.ID] = true
		if a.State == structs.AllocFailed {
			continue
		}
		d, derr := view.Deployment(a.Deployment)
		v, verr := view.Version(a.Deployment, a.Version)
		if derr != nil || verr != nil {
			continue // the leader will remove it
		}
		want[a.ID] = a
		configs[a.ID] = ShardConfig{
			Alloc: *a, Version: *v, Batching: d.Batching, Threads: d.Resources.Threads, Blobs: r.cfg.Blobs, Load: r.cfg.Load,
			WorkDir: r.cfg.WorkDir, Exec: r.cfg.Exec, Local: r.cfg.Local, Logger: r.log.With("alloc", a.ID, "model", a.Deployment, "version", a.Version),
		}
	}
	index := view.Index()
	release()

	for _, ref := range r.cfg.System.Refs() {
		if ref.Kind != ShardKind {
			continue
		}
		if a, ok := want[ref.ID]; ok && a.CreateIndex == ref.Gen {
			continue
		}
		r.log.Info("stopping replica", "alloc", ref.ID)
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := r.cfg.System.Stop(sctx, ref); err != nil && !errors.Is(err, actors.ErrNotFound) {
			r.log.Warn("stopping replica", "alloc", ref.ID, "error", err)
		}
		cancel()
	}
	r.mu.Lock()
	for id := range r.reported {
		if want[id] == nil {
			delete(r.reported, id)
		}
	}
	r.mu.Unlock()
	if index > 0 { // an empty registry (not restored yet) says nothing is gone
		r.removeWorkDirs(mine)
	}

	for id, a := range want {
		r.mu.Lock()
		gaveUp := r.reported[id] == structs.AllocFailed || r.pending[id].State == structs.AllocFailed
		r.mu.Unlock()
		if gaveUp {
			continue // reported failed: the leader places it elsewhere
		}
		ref := ShardRef(a)
		if _, running := r.cfg.System.Lookup(ShardKind, id); running {
			if health || a.State != structs.AllocRunning {
				r.checkHealth(ctx, ref, a)
			}
			continue
		}
		r.start(ctx, ref, a, configs[id])
	}
}

// removeWorkDirs removes the work dirs, logs included, of replicas whose
// allocations are no longer assigned to this node: those this pass stopped
// for good, those that failed and were then removed by the leader, and, on
// the first pass, those left behind by a node that crashed or stopped before
// it could clean up. A replica still running keeps its dir (one whose stop
// timed out: its server may still write there); the next pass tries again.
func (r *Reconciler) removeWorkDirs(mine map[string]bool) {
	if r.cfg.WorkDir == "" {
		return
	}
	entries, err := os.ReadDir(r.cfg.WorkDir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("reading replica work dirs", "dir", r.cfg.WorkDir, "error", err)
		}
		return
	}
	for _, e := range entries {
		id := e.Name()
		if !e.IsDir() || mine[id] {
			continue
		}
		if _, running := r.cfg.System.Lookup(ShardKind, id); running {
			continue
		}
		dir, err := replicaWorkDir(r.cfg.WorkDir, id)
		if err != nil {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			r.log.Warn("removing the work dir of a replica that is gone", "alloc", id, "dir", dir, "error", err)
			continue
		}
		r.log.Info("removed the work dir of a replica that is gone", "alloc", id, "dir", dir)
	}
}

// start spawns a replica and, on a helper goroutine, waits for its model to
// load, then reports it running (or failed).
func (r *Reconciler) start(ctx context.Context, ref actors.Ref, a *structs.Allocation, cfg ShardConfig) {
	r.mu.Lock()
	if r.starting[a.ID] {
		r.mu.Unlock()
		return
	}
	r.starting[a.ID] = true
	r.mu.Unlock()

	r.log.Info("starting replica", "alloc", a.ID, "model", a.Deployment, "version", a.Version)
	err := r.cfg.System.Spawn(ref, NewShardFactory(cfg), actors.SpawnOptions{
		Mailbox:     4096,
		MaxRestarts: 3,
		OnFailed: func(ref actors.Ref, err error) {
			r.report(a, structs.AllocFailed, err.Error())
		},
	})
	if err != nil {
		r.mu.Lock()
		delete(r.starting, a.ID)
		r.mu.Unlock()
		if !errors.Is(err, actors.ErrExists) {
			r.log.Warn("spawning replica", "alloc", a.ID, "error", err)
		}
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() {
			r.mu.Lock()
			delete(r.starting, a.ID)
			r.mu.Unlock()
		}()
		// The ask waits in the mailbox until Start has loaded the model.
		actx, cancel := context.WithTimeout(ctx, shardLoadTimeout)
		defer cancel()
		if _, err := r.cfg.System.Ask(actx, ref, &LoadRequest{}); err != nil {
			if ctx.Err() != nil {
				return // the node is shutting down
			}
			// The actor answers what it still holds before it leaves the
			// System, so this report is queued before a pass could see the
			// replica gone and start it again. OnFailed reports the same.
			r.log.Warn("replica did not start", "alloc", a.ID, "error", err)
			r.report(a, structs.AllocFailed, err.Error())
			return
		}
		r.report(a, structs.AllocRunning, "")
	}()
}

// checkHealth asks a running replica for its load; a replica that can no
// longer serve is reported failed, so the leader places it elsewhere.
func (r *Reconciler) checkHealth(ctx context.Context, ref actors.Ref, a *structs.Allocation) {
	r.mu.Lock()
	busy := r.starting[a.ID]
	r.mu.Unlock()
	if busy {
		return
	}
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	reply, err := r.cfg.System.Ask(actx, ref, &LoadRequest{})
	if err != nil {
		return
	}
	if lr, ok := reply.(*LoadReply); ok && lr.Failed != "" {
		r.report(a, structs.AllocFailed, lr.Failed)
		return
	}
	if a.State != structs.AllocRunning {
		r.report(a, structs.AllocRunning, "")
	}
}

// report queues a state for the next flush, unless it was already written.
func (r *Reconciler) report(a *structs.Allocation, state, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reported[a.ID] == state {
		return // a replica that gave up is reported once, by whoever saw it first
	}
	if p, ok := r.pending[a.ID]; ok && p.State == structs.AllocFailed && state == structs.AllocFailed {
		return
	}
	r.pending[a.ID] = structs.AllocStatusUpdate{ID: a.ID, NodeID: r.cfg.NodeID, State: state, Message: msg}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// flush writes the queued states in one Raft command.
func (r *Reconciler) flush(ctx context.Context) {
	r.mu.Lock()
	if len(r.pending) == 0 {
		r.mu.Unlock()
		return
	}
	req := &structs.AllocStatusRequest{}
	before := map[string]string{}
	for _, u := range r.pending {
		req.Updates = append(req.Updates, u)
		// Counted as reported while the write is in flight, so that the
		// same state queued meanwhile is not written twice.
		before[u.ID] = r.reported[u.ID]
		r.reported[u.ID] = u.State
	}
	r.pending = map[string]structs.AllocStatusUpdate{}
	r.mu.Unlock()

	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := r.cfg.Propose(pctx, structs.AllocStatusType, req)
	cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, u := range req.Updates {
		if err != nil {
			r.reported[u.ID] = before[u.ID]
			if _, newer := r.pending[u.ID]; !newer {
				r.pending[u.ID] = u // try again on the next pass
			}
		}
	}
	if err != nil {
		r.log.Warn("reporting replica states", "error", err)
	}
}
