package training

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kilnml/kiln/actors"
	"github.com/kilnml/kiln/actors/internal/proc"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// ActorKind is the actors.Ref Kind of a job member.
const ActorKind = "job"

// Registry is the read side of the registry the reconciler needs; a
// raftfsm.Txn satisfies it.
type Registry interface {
	Jobs(cursor string, limit int) ([]*structs.Job, string, error)
}

// ReconcilerConfig wires a node's job Reconciler.
type ReconcilerConfig struct {
	NodeID  string
	System  *actors.System
	View    func() (Registry, func())
	Changed func() <-chan struct{}
	// Index, when set, is the index of the last change to the jobs table: a
	// change elsewhere starts no pass.
	Index func() uint64
	Host  Host
	// Exec is this node's exec config: what a process job may run here.
	Exec proc.Policy
	// WorkDir holds the attempts' directories: <job>/<attempt>-<rank>.
	WorkDir  string
	Logger   hclog.Logger
	Interval time.Duration
}

// Reconciler keeps this node's job member actors equal to what the registry
// assigns to it (DESIGN.md §7): it starts a member placed here, stops one
// whose job was cancelled or whose attempt moved on, and reports a member
// that was running when the node restarted as failed, so the job is
// retried rather than run twice.
type Reconciler struct {
	cfg ReconcilerConfig
	log hclog.Logger

	mu      sync.Mutex
	running map[string]*memberActor // member key -> actor
	wg      sync.WaitGroup
}

// NewReconciler returns a Reconciler; Run starts it.
func NewReconciler(cfg ReconcilerConfig) *Reconciler {
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return &Reconciler{cfg: cfg, log: cfg.Logger.Named("jobs"), running: map[string]*memberActor{}}
}

func memberKey(job string, rank int) string { return job + "-" + strconv.Itoa(rank) }

// Run reconciles until ctx ends; members still running are then stopped by
// the actor system's shutdown, and report nothing.
func (r *Reconciler) Run(ctx context.Context) {
	defer r.wg.Wait()
	actors.PassLoop{Interval: r.cfg.Interval, Index: r.cfg.Index, Changed: r.cfg.Changed, Pass: r.pass,
		Failed: func(err error) { r.log.Warn("job reconcile pass failed", "error", err) }}.Run(ctx)
}

// assignment is one member this node should run.
type assignment struct {
	job  *structs.Job
	rank int
}

func (r *Reconciler) pass(ctx context.Context) error {
	view, release := r.cfg.View()
	jobs, _, err := view.Jobs("", 0)
	release()
	if err != nil {
		return err
	}
	want := map[string]assignment{}
	var interrupted []assignment
	for _, j := range jobs {
		if j.State != structs.JobPlaced && j.State != structs.JobRunning {
			continue
		}
		for _, a := range j.Allocations {
			if a.NodeID != r.cfg.NodeID {
				continue
			}
			key := memberKey(j.ID, a.Rank)
			switch {
			case j.CancelRequested:
				// Not wanted: stopping it reports the cancel. One that is
				// not running here reports it now.
				if r.actor(key) == nil && (a.State == structs.JobPlaced || a.State == structs.JobRunning) {
					interrupted = append(interrupted, assignment{j, a.Rank})
				}
			case a.State == structs.JobPlaced:
				want[key] = assignment{j, a.Rank}
			case a.State == structs.JobRunning:
				if m := r.actor(key); m != nil && m.attempt == j.Attempt {
					want[key] = assignment{j, a.Rank}
				} else if m == nil {
					interrupted = append(interrupted, assignment{j, a.Rank})
				}
			}
		}
	}
	r.mu.Lock()
	var stop []*memberActor
	for key, m := range r.running {
		if a, ok := want[key]; !ok || a.job.Attempt != m.attempt {
			stop = append(stop, m)
			delete(r.running, key)
		}
	}
	r.mu.Unlock()
	for _, m := range stop {
		m.stop(errStopped)
		if err := r.cfg.System.Stop(ctx, m.ref); err != nil && ctx.Err() == nil {
			r.log.Debug("stopping a job member", "member", m.ref, "error", err)
		}
	}
	for key, a := range want {
		if r.actor(key) == nil {
			r.start(ctx, key, a)
		}
	}
	for _, a := range interrupted {
		reason := "interrupted: its node restarted while it ran"
		if a.job.CancelRequested {
			reason = "stopped: cancelled"
		}
		u := &structs.JobUpdateRequest{JobID: a.job.ID, Attempt: a.job.Attempt, Rank: a.rank, NodeID: r.cfg.NodeID,
			State: structs.JobFailed, Reason: reason, At: time.Now().UTC()}
		if err := r.cfg.Host.Report(ctx, u); err != nil && structs.ErrorCode(err) != structs.CodeConflict {
			r.log.Warn("reporting an interrupted job member failed", "job", a.job.ID, "error", err)
		}
	}
	return nil
}

func (r *Reconciler) actor(key string) *memberActor {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running[key]
}

// start spawns the member's actor: its Start runs the member on a goroutine
// of its own. It is never restarted: a member that fails is reported, and
// the job's retries decide.
func (r *Reconciler) start(ctx context.Context, key string, a assignment) {
	m := &memberActor{
		ref:     actors.Ref{Node: r.cfg.NodeID, Kind: ActorKind, ID: key, Gen: uint64(a.job.Attempt)},
		attempt: a.job.Attempt,
		member: &Member{Job: a.job, Rank: a.rank, NodeID: r.cfg.NodeID, Host: r.cfg.Host, Exec: r.cfg.Exec, Logger: r.log,
			Dir: attemptDir(r.cfg.WorkDir, a.job.ID, a.job.Attempt, a.rank)},
		done: make(chan struct{}),
	}
	err := r.cfg.System.Spawn(m.ref, func() (actors.Actor, error) { return m, nil }, actors.SpawnOptions{MaxRestarts: -1})
	if err != nil {
		r.log.Warn("starting a job member failed", "member", m.ref, "error", err)
		return
	}
	r.mu.Lock()
	r.running[key] = m
	r.mu.Unlock()
	r.log.Info("job member started", "job", a.job.ID, "name", a.job.Spec.Name, "attempt", a.job.Attempt, "rank", a.rank)
}

// memberActor is a job member as an actor of the node's actor system. Its
// work runs on its own goroutine from Start to its end; Receive answers
// status asks meanwhile.
type memberActor struct {
	ref     actors.Ref
	attempt int
	member  *Member

	once   sync.Once
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// Start launches the member. ctx ends when the actor is stopped.
func (m *memberActor) Start(ctx context.Context) error {
	m.once.Do(func() {
		var run context.Context
		run, m.cancel = context.WithCancelCause(context.WithoutCancel(ctx))
		go func() {
			defer close(m.done)
			m.member.Run(run)
		}()
		go func() {
			// The actor stopping without a cause (the node shutting down)
			// ends the member too, without a report.
			select {
			case <-ctx.Done():
				m.cancel(context.Cause(ctx))
			case <-m.done:
			}
		}()
	})
	return nil
}

// stop ends the member with cause, before the actor is stopped.
func (m *memberActor) stop(cause error) {
	if m.cancel != nil {
		m.cancel(cause)
	}
}

// Stop waits for the member's goroutine to end.
func (m *memberActor) Stop() {
	if m.cancel != nil {
		<-m.done
	}
}

// Receive answers a status ask with whether the member is still running.
func (m *memberActor) Receive(context.Context, any) (any, error) {
	select {
	case <-m.done:
		return "finished", nil
	default:
		return "running", nil
	}
}
