package node

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kilnml/kiln/actors/pipeline"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// Pipeline runs (DESIGN.md §8). The run actors live on the leader: the
// leader task below starts one per run that has not ended, and a new
// leader starts them again from the registry, where every step transition
// is. Two actors of one run (an old leader's, not yet stopped, and a new
// one's) cannot both move a step: each move is compared with the state it
// moves from, in Apply.

// maxRunningSteps bounds the steps running at once across every run of the
// cluster; a step past it waits, as the run shows.
const maxRunningSteps = 64

// pipelineHost is what run actors need of the node.
type pipelineHost struct{ a *Agent }

func (h pipelineHost) Run(pl, id string) (*structs.PipelineRun, error) {
	txn := h.a.fsm.ReadTxn()
	defer txn.Discard()
	return txn.PipelineRun(pl, id)
}

func (h pipelineHost) Step(ctx context.Context, req *structs.PipelineRunStepRequest) error {
	_, err := h.a.propose(ctx, structs.PipelineRunStepType, req, nil)
	return err
}

func (h pipelineHost) SubmitJob(ctx context.Context, id string, spec structs.JobSpec) error {
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		return err
	}
	_, err := h.a.propose(ctx, structs.JobSubmitType, &structs.JobSubmitRequest{ID: id, Spec: spec, SubmittedAt: time.Now().UTC()}, nil)
	if structs.ErrorCode(err) == structs.CodeConflict {
		if _, jerr := h.Job(id); jerr == nil {
			return nil // submitted before: the step re-attaches
		}
	}
	return err
}

func (h pipelineHost) Job(id string) (*structs.Job, error) {
	txn := h.a.fsm.ReadTxn()
	defer txn.Discard()
	return txn.Job(id)
}

func (h pipelineHost) CancelJob(ctx context.Context, id string) error {
	_, err := h.a.propose(ctx, structs.JobCancelType, &structs.JobCancelRequest{JobID: id, At: time.Now().UTC()}, nil)
	return err
}

func (h pipelineHost) TriggerSource(ctx context.Context, name string) (uint64, error) {
	var s structs.Source
	if _, err := h.a.propose(ctx, structs.SourceTriggerType, &structs.SourceTriggerRequest{Name: name, At: time.Now().UTC()}, &s); err != nil {
		return 0, err
	}
	return s.Triggers, nil
}

func (h pipelineHost) Source(name string) (*structs.Source, error) {
	txn := h.a.fsm.ReadTxn()
	defer txn.Discard()
	return txn.Source(name)
}

func (h pipelineHost) Frame(ctx context.Context, f structs.FeatureFrame) (string, error) {
	if f.TimestampColumn == "" {
		f.TimestampColumn = "ts"
	}
	v, err := h.a.buildFeatureFrame(ctx, frameSpec{Service: f.Service, EntityRows: f.EntityRows, TimestampColumn: f.TimestampColumn, Output: f.Output})
	if err != nil {
		return "", err
	}
	return v.Ref(), nil
}

func (h pipelineHost) Changed() <-chan struct{} { return h.a.fsm.Changed() }

// pipelinesLoop runs on the leader: an actor for every run that has not
// ended, and the pipelines' schedules.
func (a *Agent) pipelinesLoop(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	running := map[string]bool{} // run keys with an actor
	var mu sync.Mutex
	// steps counts the running steps of every run, once per change of the
	// runs, for every actor to read: counting per actor pass decoded every
	// run for every run, on every change.
	var steps atomic.Int64
	slots := func() int { return max(0, maxRunningSteps-int(steps.Load())) }
	index := a.fsm.IndexFunc(raftfsm.TablePipelines, raftfsm.TablePipelineRuns)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	seen := uint64(0)
	for {
		changed := a.fsm.Changed()
		if idx := index(); idx != seen {
			seen = idx
			txn := a.fsm.ReadTxn()
			runs, err := txn.ActivePipelineRuns()
			txn.Discard()
			if err != nil {
				a.logger.Warn("reading pipeline runs failed", "error", err)
			}
			n := 0
			for _, r := range runs {
				for _, st := range r.Steps {
					if st.State == structs.StepRunning {
						n++
					}
				}
			}
			steps.Store(int64(n))
			for _, r := range runs {
				key := r.Pipeline + "/" + r.ID
				mu.Lock()
				if running[key] {
					mu.Unlock()
					continue
				}
				running[key] = true
				mu.Unlock()
				act := &pipeline.RunActor{Pipeline: r.Pipeline, ID: r.ID, Host: pipelineHost{a}, Log: a.logger.Named("pipelines"), Slots: slots}
				wg.Add(1)
				go func() {
					defer wg.Done()
					act.Run(ctx)
					mu.Lock()
					delete(running, key)
					mu.Unlock()
				}()
			}
		}
		if err := a.firePipelineSchedules(ctx); err != nil && ctx.Err() == nil {
			a.logger.Warn("pipeline schedules failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

// maxCatchUpRuns bounds the runs catch_up = "all" starts for missed ticks.
const maxCatchUpRuns = 100

// firePipelineSchedules starts the runs of due schedule ticks, once per
// tick cluster-wide: the run names its tick, and Apply refuses a tick at
// or before the pipeline's last. Ticks missed while no leader ran make one
// run (catch_up latest), one each (all, at most 100), or none (none: only
// a tick less than a minute old starts a run).
func (a *Agent) firePipelineSchedules(ctx context.Context) error {
	txn := a.fsm.ReadTxn()
	pipelines, _, err := txn.Pipelines("", 0)
	txn.Discard()
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	for _, p := range pipelines {
		if err := a.fireSourceTriggers(ctx, p, now); err != nil {
			return err
		}
		if p.Spec.Schedule == "" {
			continue
		}
		sched, err := structs.ParseSchedule(p.Spec.Schedule)
		if err != nil {
			continue
		}
		from := p.LastTick
		if from.IsZero() {
			from = p.CreatedAt
		}
		var due []time.Time
		for t, _ := nextTick(sched, from); !t.IsZero() && !t.After(now); t, _ = nextTick(sched, t) {
			due = append(due, t)
			if len(due) > maxCatchUpRuns {
				due = due[1:]
			}
		}
		if len(due) == 0 {
			continue
		}
		switch p.Spec.CatchUp {
		case structs.CatchUpAll:
		case structs.CatchUpNone:
			if last := due[len(due)-1]; now.Sub(last) > time.Minute {
				continue
			}
			due = due[len(due)-1:]
		default:
			due = due[len(due)-1:]
		}
		for _, t := range due {
			req := &structs.PipelineRunCreateRequest{ID: structs.NewID(now), Pipeline: p.Spec.Name, Trigger: "schedule", Tick: t, At: now}
			if _, err := a.propose(ctx, structs.PipelineRunCreateType, req, nil); err != nil && structs.ErrorCode(err) != structs.CodeConflict {
				return err
			}
		}
	}
	return nil
}

// fireSourceTriggers starts a run of a pipeline for each triggering source
// whose last run wrote a dataset version the pipeline has not run for.
// The run names the source run, and Apply refuses one already run for, so
// a source run starts one pipeline run, whichever leader sees it. A
// pipeline created after a source run does not run for it.
func (a *Agent) fireSourceTriggers(ctx context.Context, p *structs.Pipeline, now time.Time) error {
	for _, t := range p.Spec.Triggers {
		txn := a.fsm.ReadTxn()
		s, err := txn.Source(t.Source)
		txn.Discard()
		if err != nil {
			continue // not there (yet)
		}
		last := s.LastRun
		if last == nil || last.Dataset == "" || !last.Terminal() || last.State == structs.SourceRunFailed ||
			last.State == structs.SourceRunFailedValidation || last.Seq <= p.SourceRuns[t.Source] || last.FinishedAt.Before(p.CreatedAt) {
			continue
		}
		req := &structs.PipelineRunCreateRequest{ID: structs.NewID(now), Pipeline: p.Spec.Name, Trigger: "source " + t.Source,
			Source: t.Source, SourceRun: last.Seq, At: now}
		if _, err := a.propose(ctx, structs.PipelineRunCreateType, req, nil); err != nil && structs.ErrorCode(err) != structs.CodeConflict {
			return err
		}
	}
	return nil
}
