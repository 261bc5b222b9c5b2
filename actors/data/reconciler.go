package data

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kilnml/kiln/actors"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// ActorKind is the actors.Ref Kind of a source's ingestion actor.
const ActorKind = "source"

// Registry is the read side of the registry the reconciler needs; a
// raftfsm.Txn satisfies it.
type Registry interface {
	Sources(cursor string, limit int) ([]*structs.Source, string, error)
}

// ReconcilerConfig wires a node's source Reconciler.
type ReconcilerConfig struct {
	NodeID  string
	System  *actors.System
	View    func() (Registry, func())
	Changed func() <-chan struct{}
	// Index is the index of the last change to the sources table: a change
	// elsewhere starts no pass.
	Index    func() uint64
	Host     Host
	Logger   hclog.Logger
	Interval time.Duration
}

// Reconciler keeps this node's ingestion actors equal to the sources the
// registry places here (DESIGN.md §5): it starts an actor for each, and
// stops one whose source moved, was paused or deleted.
type Reconciler struct {
	cfg ReconcilerConfig
	log hclog.Logger

	mu      sync.Mutex
	running map[string]*sourceActor // guarded by mu; by source name
}

// NewReconciler returns a Reconciler; Run starts it.
func NewReconciler(cfg ReconcilerConfig) *Reconciler {
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return &Reconciler{cfg: cfg, log: cfg.Logger.Named("sources"), running: map[string]*sourceActor{}}
}

// Run reconciles until ctx ends; the actors are then stopped by the actor
// system's shutdown.
func (r *Reconciler) Run(ctx context.Context) {
	actors.PassLoop{Interval: r.cfg.Interval, Index: r.cfg.Index, Changed: r.cfg.Changed, Pass: r.pass,
		Failed: func(err error) { r.log.Warn("source reconcile pass failed", "error", err) }}.Run(ctx)
}

func (r *Reconciler) pass(ctx context.Context) error {
	view, release := r.cfg.View()
	sources, _, err := view.Sources("", 0)
	release()
	if err != nil {
		return err
	}
	want := map[string]uint64{}
	for _, s := range sources {
		if s.Node == r.cfg.NodeID && !s.Paused && s.Spec.Kind != structs.SourcePush {
			want[s.Spec.Name] = s.AssignIndex
		}
	}
	r.mu.Lock()
	var stop []*sourceActor
	for name, sa := range r.running {
		if gen, ok := want[name]; !ok || gen != sa.ref.Gen || sa.ended() {
			stop = append(stop, sa)
			delete(r.running, name)
		}
	}
	r.mu.Unlock()
	for _, sa := range stop {
		if err := r.cfg.System.Stop(ctx, sa.ref); err != nil && ctx.Err() == nil {
			r.log.Debug("stopping a source actor", "source", sa.ref.ID, "error", err)
		}
	}
	for name, gen := range want {
		r.mu.Lock()
		_, running := r.running[name]
		r.mu.Unlock()
		if !running {
			r.start(name, gen)
		}
	}
	return nil
}

func (r *Reconciler) start(name string, gen uint64) {
	sa := &sourceActor{
		ref:   actors.Ref{Node: r.cfg.NodeID, Kind: ActorKind, ID: name, Gen: gen},
		actor: &Actor{Name: name, NodeID: r.cfg.NodeID, Gen: gen, Host: r.cfg.Host, Log: r.log},
		done:  make(chan struct{}),
	}
	err := r.cfg.System.Spawn(sa.ref, func() (actors.Actor, error) { return sa, nil }, actors.SpawnOptions{MaxRestarts: -1})
	if err != nil {
		r.log.Warn("starting a source actor failed", "source", name, "error", err)
		return
	}
	r.mu.Lock()
	r.running[name] = sa
	r.mu.Unlock()
	r.log.Info("source actor started", "source", name, "generation", gen)
}

// sourceActor is a source's Actor in the node's actor system: its loop
// runs on its own goroutine from Start until the actor is stopped.
type sourceActor struct {
	ref   actors.Ref
	actor *Actor

	once   sync.Once
	cancel context.CancelFunc
	done   chan struct{}
}

// Start launches the loop. ctx ends when the actor is stopped.
func (s *sourceActor) Start(ctx context.Context) error {
	s.once.Do(func() {
		var run context.Context
		run, s.cancel = context.WithCancel(ctx)
		go func() {
			defer close(s.done)
			s.actor.Run(run)
		}()
	})
	return nil
}

// Stop ends the loop and waits for it.
func (s *sourceActor) Stop() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
}

func (s *sourceActor) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Receive answers a status ask.
func (s *sourceActor) Receive(context.Context, any) (any, error) {
	if s.ended() {
		return "ended", nil
	}
	return "running", nil
}
