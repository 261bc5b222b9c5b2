package node

import (
	"maps"
	"net/http"
	"time"

	"github.com/kilnml/kiln/actors/training"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// Tuning (DESIGN.md §7): POST /v1/tuning submits a search over a base job's
// params; the leader's tuning task runs its trials as child jobs.

func (a *Agent) handleTuningSubmit(w http.ResponseWriter, r *http.Request) {
	var spec structs.TuningSpec
	if err := a.decodeBody(w, r, &spec); err != nil {
		writeError(w, err)
		return
	}
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		writeError(w, err)
		return
	}
	if err := a.authorize(r, structs.KindJob, spec.Job.Name, structs.AccessWrite); err != nil {
		writeError(w, err)
		return
	}
	if spec.Job.Trainer.Kind == structs.TrainerProcess {
		if err := a.authorize(r, structs.KindExec, "", structs.AccessAllow); err != nil {
			writeError(w, err)
			return
		}
	}
	// The first trial's job, checked as a submitted job would be: the
	// algorithm must take every parameter of the space.
	trial := spec.Job
	trial.Params = maps.Clone(trial.Params)
	if trial.Params == nil {
		trial.Params = map[string]any{}
	}
	maps.Copy(trial.Params, training.TrialParams(&spec, 0))
	if err := a.checkJobData(r.Context(), &trial); err != nil {
		writeError(w, structs.Errorf(structs.CodeInvalid, "job: %v", err))
		return
	}
	if spec.Seed == 0 {
		spec.Seed = uint64(time.Now().UnixNano())
	}
	now := time.Now().UTC()
	var tu structs.Tuning
	idx, err := a.propose(r.Context(), structs.TuningSubmitType, &structs.TuningSubmitRequest{ID: structs.NewID(now), Spec: spec, At: now}, &tu)
	if err != nil {
		writeError(w, err)
		return
	}
	writeCommitted(w, http.StatusCreated, idx, tuningView(&tu, nil))
}

// trialView is a trial with its job's state and value.
type trialView struct {
	structs.Trial
	State string   `json:"state"`
	Value *float64 `json:"value,omitempty"`
}

type tuningJSON struct {
	*structs.Tuning
	Trials  []trialView `json:"trials"`
	BestJob string      `json:"best_job,omitempty"`
}

func tuningView(tu *structs.Tuning, txn *raftfsm.Txn) tuningJSON {
	v := tuningJSON{Tuning: tu, Trials: make([]trialView, len(tu.Trials))}
	for i, tr := range tu.Trials {
		tv := trialView{Trial: tr}
		if txn != nil {
			if j, err := txn.Job(tr.JobID); err == nil {
				tv.State = j.State
				if x, ok := j.Metrics[tu.Spec.Metric]; ok {
					tv.Value = &x
				}
			}
		}
		v.Trials[i] = tv
	}
	if tu.BestTrial >= 0 && tu.BestTrial < len(tu.Trials) {
		v.BestJob = tu.Trials[tu.BestTrial].JobID
	}
	return v
}

func (a *Agent) handleTuningGet(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := structs.ValidateID("id", id); err != nil {
		writeError(w, err)
		return
	}
	serveRead(a, w, r, func(txn *raftfsm.Txn) (any, error) {
		tu, err := txn.Tuning(id)
		if err != nil {
			return nil, err
		}
		if err := a.authorize(r, structs.KindJob, tu.Spec.Job.Name, structs.AccessRead); err != nil {
			return nil, err
		}
		return tuningView(tu, txn), nil
	})
}

func (a *Agent) handleTuningList(w http.ResponseWriter, r *http.Request) {
	serveRead(a, w, r, func(txn *raftfsm.Txn) (any, error) {
		tunings, err := txn.Tunings()
		if err != nil {
			return nil, err
		}
		items := []tuningJSON{}
		for _, tu := range tunings {
			if a.allowed(r, structs.KindJob, tu.Spec.Job.Name, structs.AccessRead) {
				items = append(items, tuningView(tu, txn))
			}
		}
		return map[string]any{"items": items}, nil
	})
}

// tuningEndpoint: tuning runs.
func (a *Agent) tuningEndpoint() endpoint {
	k := structs.KindJob
	return endpoint{routes: []route{
		{pattern: "POST /v1/tuning", handler: a.handleTuningSubmit, kind: k, need: needBody},
		{pattern: "GET /v1/tuning", handler: a.handleTuningList, kind: k, need: needList},
		{pattern: "GET /v1/tuning/{id}", handler: a.handleTuningGet, kind: k, need: needBody},
	}}
}
