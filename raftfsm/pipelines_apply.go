package raftfsm

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Pipelines (DESIGN.md §8): their specs, who applied them, and their runs.
const (
	prefixPipeline    = "pl/" // pl/<name>            -> structs.Pipeline
	prefixPipelineRun = "pr/" // pr/<pipeline>/<run id> -> structs.PipelineRun
	// prefixStepCache holds steps' outputs by the digest of their inputs.
	prefixStepCache = "pc/" // pc/<pipeline>/<step>/<key> -> structs.StepCacheEntry
)

func stepCacheKey(pipeline, step, key string) string {
	return prefixStepCache + pipeline + "/" + step + "/" + key
}

func pipelineKey(name string) string           { return prefixPipeline + name }
func pipelineRunPrefix(pipeline string) string { return prefixPipelineRun + pipeline + "/" }
func pipelineRunKey(pipeline, id string) string {
	return pipelineRunPrefix(pipeline) + id
}

var _ = registerCommands(structs.RangePipelines,
	handler{structs.PipelinePutType, applyPipelinePut},
	handler{structs.PipelineDeleteType, applyPipelineDelete},
	handler{structs.PipelineRunCreateType, applyPipelineRunCreate},
	handler{structs.PipelineRunStepType, applyPipelineRunStep},
	handler{structs.PipelineRunCancelType, applyPipelineRunCancel},
	handler{structs.PipelineCachePutType, applyPipelineCachePut},
	handler{structs.PipelineRunApproveType, applyPipelineRunApprove},
)

func applyPipelineCachePut(tx *applyTxn, body []byte) (interface{}, error) {
	var e structs.StepCacheEntry
	if err := decodeBody(structs.PipelineCachePutType, body, &e); err != nil {
		return nil, err
	}
	if err := structs.ValidateName("pipeline", e.Pipeline); err != nil {
		return nil, err
	}
	if err := structs.ValidateDigest("key", e.Key); err != nil {
		return nil, err
	}
	if err := tx.put(stepCacheKey(e.Pipeline, e.Step, e.Key), &e); err != nil {
		return nil, err
	}
	return nil, nil
}

func stepCacheKeyOf(raw []byte) (string, error) {
	var e structs.StepCacheEntry
	if err := structs.Decode(raw, &e); err != nil {
		return "", err
	}
	if e.Pipeline == "" || e.Step == "" || e.Key == "" {
		return "", fmt.Errorf("step cache entry without pipeline, step or key")
	}
	return stepCacheKey(e.Pipeline, e.Step, e.Key), nil
}

func validateStepCacheRecord(raw []byte) error {
	var e structs.StepCacheEntry
	if err := structs.Decode(raw, &e); err != nil {
		return err
	}
	return recordErrorOrNil(e.Pipeline, structs.ValidateDigest("key", e.Key))
}

func utcPipelineRun(r *structs.PipelineRun) *structs.PipelineRun {
	r.CreatedAt, r.UpdatedAt, r.FinishedAt, r.Tick = r.CreatedAt.UTC(), r.UpdatedAt.UTC(), r.FinishedAt.UTC(), r.Tick.UTC()
	for i := range r.Steps {
		r.Steps[i].StartedAt, r.Steps[i].FinishedAt = r.Steps[i].StartedAt.UTC(), r.Steps[i].FinishedAt.UTC()
	}
	return r
}

// applyPipelineRunCreate starts a run with a copy of the pipeline's spec
// and every step waiting. A schedule's run names its tick; a tick already
// run is refused (already_exists), so two leaders never start one twice.
func applyPipelineRunCreate(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.PipelineRunCreateRequest
	if err := decodeBody(structs.PipelineRunCreateType, body, &req); err != nil {
		return nil, err
	}
	if err := structs.ValidateID("id", req.ID); err != nil {
		return nil, err
	}
	p, err := getNamed[structs.Pipeline](tx, pipelineKey(req.Pipeline), "pipeline", req.Pipeline)
	if err != nil {
		return nil, err
	}
	if found, err := tx.get(pipelineRunKey(req.Pipeline, req.ID), &structs.PipelineRun{}); err != nil {
		return nil, err
	} else if found {
		return nil, structs.Errorf(structs.CodeConflict, "run %s of pipeline %q exists", req.ID, req.Pipeline)
	}
	params, err := p.Spec.ResolvedParams(req.Params)
	if err != nil {
		return nil, err
	}
	if req.Source != "" {
		if req.SourceRun <= p.SourceRuns[req.Source] {
			return nil, structs.Errorf(structs.CodeConflict, "pipeline %q: run %d of source %q has started a run already", req.Pipeline, req.SourceRun, req.Source)
		}
		if p.SourceRuns == nil {
			p.SourceRuns = map[string]uint64{}
		}
		p.SourceRuns[req.Source] = req.SourceRun
		p.ModifyIndex = tx.index
		if err := tx.put(pipelineKey(req.Pipeline), p); err != nil {
			return nil, err
		}
	}
	if !req.Tick.IsZero() {
		if !req.Tick.After(p.LastTick) {
			return nil, structs.Errorf(structs.CodeConflict, "pipeline %q: the tick of %s has run already", req.Pipeline, req.Tick.UTC().Format(time.RFC3339))
		}
		p.LastTick = req.Tick
		p.ModifyIndex = tx.index
		if err := tx.put(pipelineKey(req.Pipeline), p); err != nil {
			return nil, err
		}
	}
	run := structs.PipelineRun{ID: req.ID, Pipeline: req.Pipeline, Spec: p.Spec, Params: params, Trigger: req.Trigger, Tick: req.Tick,
		State: structs.PipelinePending, AppliedBy: p.AppliedBy, AppliedByHash: p.AppliedByHash, CreatedAt: req.At, UpdatedAt: req.At, CreateIndex: tx.index, ModifyIndex: tx.index}
	for _, st := range p.Spec.Steps {
		run.Steps = append(run.Steps, structs.StepStatus{Name: st.Name, Type: st.Type, State: structs.StepWaiting})
	}
	run.RetryOf = req.RetryOf
	for i, seed := range req.Seed {
		st := run.Step(seed.Name)
		if st == nil {
			return nil, structs.Errorf(structs.CodeInvalid, "seed[%d]: the pipeline has no step %q", i, seed.Name)
		}
		if seed.State != structs.StepCached {
			return nil, structs.Errorf(structs.CodeInvalid, "seed[%d]: a carried-over step is cached, not %s", i, seed.State)
		}
		seed.Type = st.Type
		*st = seed
	}
	if err := tx.put(pipelineRunKey(req.Pipeline, req.ID), &run); err != nil {
		return nil, err
	}
	return utcPipelineRun(&run), nil
}

// applyPipelineRunStep moves steps of a run, each only from the state the
// request says it is in: of two actors of one run, the second's move is
// refused whole.
func applyPipelineRunStep(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.PipelineRunStepRequest
	if err := decodeBody(structs.PipelineRunStepType, body, &req); err != nil {
		return nil, err
	}
	run, err := getNamed[structs.PipelineRun](tx, pipelineRunKey(req.Pipeline, req.RunID), "pipeline run", req.RunID)
	if err != nil {
		return nil, err
	}
	if run.Terminal() {
		return nil, structs.Errorf(structs.CodeConflict, "run %s has ended (%s)", run.ID, run.State)
	}
	if !slices.Contains(structs.PipelineStates, req.State) {
		return nil, structs.Errorf(structs.CodeInvalid, "state %q is not a run state", req.State)
	}
	for i, u := range req.Updates {
		st := run.Step(u.Status.Name)
		if st == nil {
			return nil, structs.Errorf(structs.CodeInvalid, "updates[%d]: run %s has no step %q", i, run.ID, u.Status.Name)
		}
		if !slices.Contains(structs.StepStates, u.Status.State) {
			return nil, structs.Errorf(structs.CodeInvalid, "updates[%d]: state %q is not a step state", i, u.Status.State)
		}
		if st.State != u.From {
			return nil, structs.Errorf(structs.CodeConflict, "step %s of run %s is %s, not %s", st.Name, run.ID, st.State, u.From)
		}
		// A decision is the approver's, recorded on its own: an actor's
		// move, made from its copy of the step, keeps it.
		decision := st.Decision
		*st = u.Status
		if st.Decision == nil {
			st.Decision = decision
		}
	}
	run.State = req.State
	run.UpdatedAt = req.At
	if run.Terminal() {
		run.FinishedAt = req.At
	}
	run.ModifyIndex = tx.index
	if err := tx.put(pipelineRunKey(req.Pipeline, req.RunID), run); err != nil {
		return nil, err
	}
	return utcPipelineRun(run), nil
}

func applyPipelineRunCancel(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.PipelineRunCancelRequest
	if err := decodeBody(structs.PipelineRunCancelType, body, &req); err != nil {
		return nil, err
	}
	run, err := getNamed[structs.PipelineRun](tx, pipelineRunKey(req.Pipeline, req.RunID), "pipeline run", req.RunID)
	if err != nil {
		return nil, err
	}
	if run.Terminal() {
		return nil, structs.Errorf(structs.CodeConflict, "run %s has ended (%s)", run.ID, run.State)
	}
	run.CancelRequested = true
	run.UpdatedAt = req.At
	run.ModifyIndex = tx.index
	if err := tx.put(pipelineRunKey(req.Pipeline, req.RunID), run); err != nil {
		return nil, err
	}
	return utcPipelineRun(run), nil
}

// applyPipelineRunApprove records a decision on an approval step that is
// running and undecided; the run's actor then ends the step by it.
func applyPipelineRunApprove(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.PipelineRunApproveRequest
	if err := decodeBody(structs.PipelineRunApproveType, body, &req); err != nil {
		return nil, err
	}
	run, err := getNamed[structs.PipelineRun](tx, pipelineRunKey(req.Pipeline, req.RunID), "pipeline run", req.RunID)
	if err != nil {
		return nil, err
	}
	st := run.Step(req.Step)
	switch {
	case st == nil:
		return nil, structs.Errorf(structs.CodeNotFound, "run %s has no step %q", run.ID, req.Step)
	case st.Type != structs.StepApproval:
		return nil, structs.Errorf(structs.CodeInvalid, "step %q is a %s step, not an approval step", req.Step, st.Type)
	case run.Terminal() || run.CancelRequested:
		return nil, structs.Errorf(structs.CodeConflict, "run %s has ended or is being cancelled", run.ID)
	case st.Decision != nil:
		verb := "rejected"
		if st.Decision.Approved {
			verb = "approved"
		}
		return nil, structs.Errorf(structs.CodeConflict, "step %q was %s by %s already", req.Step, verb, st.Decision.By)
	case st.State != structs.StepRunning:
		return nil, structs.Errorf(structs.CodeConflict, "step %q is %s: it asks for a decision once the steps it depends on have succeeded", req.Step, st.State)
	}
	if len(req.Decision.Comment) > structs.MaxApprovalMessage {
		return nil, structs.Errorf(structs.CodeInvalid, "comment is %d bytes, more than %d", len(req.Decision.Comment), structs.MaxApprovalMessage)
	}
	d := req.Decision
	st.Decision = &d
	run.UpdatedAt = d.At
	run.ModifyIndex = tx.index
	if err := tx.put(pipelineRunKey(req.Pipeline, req.RunID), run); err != nil {
		return nil, err
	}
	return utcPipelineRun(run), nil
}

func pipelineRunKeyOf(raw []byte) (string, error) {
	var r structs.PipelineRun
	if err := structs.Decode(raw, &r); err != nil {
		return "", err
	}
	if r.Pipeline == "" || r.ID == "" {
		return "", fmt.Errorf("pipeline run without pipeline or id")
	}
	return pipelineRunKey(r.Pipeline, r.ID), nil
}

func validatePipelineRunRecord(raw []byte) error {
	var r structs.PipelineRun
	if err := structs.Decode(raw, &r); err != nil {
		return err
	}
	if err := structs.ValidateID("id", r.ID); err != nil {
		return recordError(r.Pipeline, err)
	}
	return recordErrorOrNil(r.ID, structs.ValidateName("pipeline", r.Pipeline))
}

func utcPipeline(p *structs.Pipeline) *structs.Pipeline {
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p
}

// applyPipelinePut creates or replaces a pipeline; a replaced one keeps
// its creation.
func applyPipelinePut(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.PipelinePutRequest
	if err := decodeBody(structs.PipelinePutType, body, &req); err != nil {
		return nil, err
	}
	spec := req.Spec
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	p := structs.Pipeline{Spec: spec, AppliedBy: req.AppliedBy, AppliedByHash: req.AppliedByHash, CreatedAt: req.At, UpdatedAt: req.At, CreateIndex: tx.index}
	var old structs.Pipeline
	found, err := tx.get(pipelineKey(spec.Name), &old)
	if err != nil {
		return nil, err
	}
	if found {
		p.CreatedAt, p.CreateIndex, p.LastTick, p.SourceRuns = old.CreatedAt, old.CreateIndex, old.LastTick, old.SourceRuns
	}
	p.ModifyIndex = tx.index
	if err := tx.put(pipelineKey(spec.Name), &p); err != nil {
		return nil, err
	}
	return utcPipeline(&p), nil
}

func applyPipelineDelete(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.NameRequest
	if err := decodeBody(structs.PipelineDeleteType, body, &req); err != nil {
		return nil, err
	}
	if _, err := getNamed[structs.Pipeline](tx, pipelineKey(req.Name), "pipeline", req.Name); err != nil {
		return nil, err
	}
	var active []string
	err := tx.scanValues(pipelineRunPrefix(req.Name), func(val []byte) (bool, error) {
		var r structs.PipelineRun
		if err := msgpack.Unmarshal(val, &r); err != nil {
			return false, err
		}
		if !r.Terminal() {
			active = append(active, r.ID)
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	if len(active) > 0 {
		return nil, structs.Errorf(structs.CodeConflict, "pipeline %q has runs under way (%s); cancel them first", req.Name, strings.Join(active, ", "))
	}
	for _, k := range tx.keysUnder(pipelineRunPrefix(req.Name)) {
		tx.del(k)
	}
	for _, k := range tx.keysUnder(prefixStepCache + req.Name + "/") {
		tx.del(k)
	}
	tx.del(pipelineKey(req.Name))
	return nil, nil
}

func pipelineKeyOf(raw []byte) (string, error) {
	var p structs.Pipeline
	if err := structs.Decode(raw, &p); err != nil {
		return "", err
	}
	if p.Spec.Name == "" {
		return "", fmt.Errorf("pipeline record without name")
	}
	return pipelineKey(p.Spec.Name), nil
}

func validatePipelineRecord(raw []byte) error {
	var p structs.Pipeline
	if err := structs.Decode(raw, &p); err != nil {
		return err
	}
	spec := p.Spec
	spec.Normalize()
	return recordErrorOrNil(p.Spec.Name, spec.Validate())
}
