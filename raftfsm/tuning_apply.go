package raftfsm

import (
	"fmt"
	"maps"
	"slices"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Tuning records (DESIGN.md §7): tu/<id> -> structs.Tuning. The leader's
// tuning task decides; these commands record its decisions so that a new
// leader picks up where the old one stopped.
const prefixTuning = "tu/"

func tuningKey(id string) string { return prefixTuning + id }

var _ = registerCommands(structs.RangeTraining,
	handler{structs.TuningSubmitType, applyTuningSubmit},
	handler{structs.TuningTrialType, applyTuningTrial},
	handler{structs.TuningUpdateType, applyTuningUpdate},
)

func utcTuning(t *structs.Tuning) *structs.Tuning {
	t.CreatedAt, t.FinishedAt = t.CreatedAt.UTC(), t.FinishedAt.UTC()
	return t
}

func (t *applyTxn) tuning(id string) (*structs.Tuning, error) {
	var tu structs.Tuning
	found, err := t.get(tuningKey(id), &tu)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "tuning %q not found", id)
	}
	return &tu, nil
}

// applyTuningSubmit records a tuning. The base job is checked as a job
// would be (its dataset, its feasibility), so a tuning whose trials could
// never run is refused at once.
func applyTuningSubmit(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.TuningSubmitRequest
	if err := decodeBody(structs.TuningSubmitType, body, &req); err != nil {
		return nil, err
	}
	if err := structs.ValidateID("id", req.ID); err != nil {
		return nil, err
	}
	spec := req.Spec
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	var existing structs.Tuning
	if found, err := tx.get(tuningKey(req.ID), &existing); err != nil {
		return nil, err
	} else if found {
		return nil, structs.Errorf(structs.CodeConflict, "tuning %q exists", req.ID)
	}
	if spec.Job.Dataset != "" {
		v, err := tx.pinDataset("job.dataset", &spec.Job.Dataset)
		if err != nil {
			return nil, err
		}
		if err := checkColumns(&spec.Job, v); err != nil {
			return nil, err
		}
	}
	if err := tx.jobFeasible(&spec.Job); err != nil {
		return nil, err
	}
	tu := &structs.Tuning{ID: req.ID, Spec: spec, State: structs.TuningRunning, Trials: []structs.Trial{}, BestTrial: -1,
		CreatedAt: req.At, CreateIndex: tx.index, ModifyIndex: tx.index}
	if err := tx.put(tuningKey(tu.ID), tu); err != nil {
		return nil, err
	}
	return utcTuning(tu), nil
}

// applyTuningTrial starts the trial at the index the request names, which
// must be the next one: its job is created in the same entry.
func applyTuningTrial(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.TuningTrialRequest
	if err := decodeBody(structs.TuningTrialType, body, &req); err != nil {
		return nil, err
	}
	tu, err := tx.tuning(req.TuningID)
	if err != nil {
		return nil, err
	}
	switch {
	case tu.State != structs.TuningRunning:
		return nil, structs.Errorf(structs.CodeConflict, "tuning %q is %s", tu.ID, tu.State)
	case req.Index != len(tu.Trials):
		return nil, structs.Errorf(structs.CodeConflict, "tuning %q has %d trials; trial %d is not the next", tu.ID, len(tu.Trials), req.Index)
	case req.Index >= tu.Spec.MaxTrials:
		return nil, structs.Errorf(structs.CodeInvalid, "tuning %q has its %d trials", tu.ID, tu.Spec.MaxTrials)
	}
	spec := tu.Spec.Job
	spec.Name = fmt.Sprintf("%s-t%d", tu.Spec.Name, req.Index)
	spec.Params = maps.Clone(spec.Params)
	if spec.Params == nil {
		spec.Params = map[string]any{}
	}
	for _, k := range slices.Sorted(maps.Keys(req.Params)) {
		if _, ok := tu.Spec.Space[k]; !ok {
			return nil, structs.Errorf(structs.CodeInvalid, "params.%s is not in the tuning's space", k)
		}
		spec.Params[k] = req.Params[k]
	}
	if spec.RegisterAs == "" && tu.Spec.RegisterBestAs != "" {
		// Each trial's model is kept as a version of the trials' model, so
		// that the best one can be registered without moving its file.
		spec.RegisterAs = tu.Spec.Name + "-trials"
	}
	if _, err := tx.submitJob(req.JobID, spec, req.At); err != nil {
		return nil, err
	}
	tu.Trials = append(tu.Trials, structs.Trial{Index: req.Index, JobID: req.JobID, Params: req.Params})
	tu.ModifyIndex = tx.index
	if err := tx.put(tuningKey(tu.ID), tu); err != nil {
		return nil, err
	}
	return utcTuning(tu), nil
}

func applyTuningUpdate(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.TuningUpdateRequest
	if err := decodeBody(structs.TuningUpdateType, body, &req); err != nil {
		return nil, err
	}
	tu, err := tx.tuning(req.TuningID)
	if err != nil {
		return nil, err
	}
	if tu.State != structs.TuningRunning {
		return nil, structs.Errorf(structs.CodeConflict, "tuning %q is %s", tu.ID, tu.State)
	}
	for _, i := range slices.Sorted(maps.Keys(req.Stopped)) {
		reason := req.Stopped[i]
		if i < 0 || i >= len(tu.Trials) {
			return nil, structs.Errorf(structs.CodeInvalid, "tuning %q has no trial %d", tu.ID, i)
		}
		tu.Trials[i].StoppedEarly, tu.Trials[i].StopReason = true, structs.TruncateUTF8(reason, structs.MaxBadRowReasonLen)
	}
	if req.BestTrial >= len(tu.Trials) || req.BestTrial < -1 {
		return nil, structs.Errorf(structs.CodeInvalid, "best_trial %d is not a trial of tuning %q", req.BestTrial, tu.ID)
	}
	tu.BestTrial, tu.BestValue, tu.BestVersion = req.BestTrial, req.BestValue, req.BestVersion
	switch req.State {
	case "", structs.TuningRunning:
	case structs.TuningSucceeded, structs.TuningFailed:
		tu.State, tu.Reason, tu.FinishedAt = req.State, structs.TruncateUTF8(req.Reason, structs.MaxBadRowReasonLen), req.At
	default:
		return nil, structs.Errorf(structs.CodeInvalid, "state %q is not succeeded or failed", req.State)
	}
	tu.ModifyIndex = tx.index
	if err := tx.put(tuningKey(tu.ID), tu); err != nil {
		return nil, err
	}
	return utcTuning(tu), nil
}

func tuningKeyOf(raw []byte) (string, error) {
	var tu structs.Tuning
	if err := structs.Decode(raw, &tu); err != nil {
		return "", err
	}
	if tu.ID == "" {
		return "", fmt.Errorf("tuning record without id")
	}
	return tuningKey(tu.ID), nil
}

func validateTuningRecord(raw []byte) error {
	var tu structs.Tuning
	if err := structs.Decode(raw, &tu); err != nil {
		return err
	}
	if err := structs.ValidateID("id", tu.ID); err != nil {
		return recordError(tu.ID, err)
	}
	if err := tu.Spec.Validate(); err != nil {
		return recordError(tu.ID, err)
	}
	return nil
}
