package node

import (
	"context"
	"maps"
	"time"

	"github.com/kilnml/kiln/actors/training"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// tuningLoop runs on the leader: on every change to tunings, jobs or runs
// (and every second) it decides each running tuning's next step
// (training.DecideTuning, a pure function) and records it: trials started,
// trials stopped early, the end with the best trial, registered as
// register_best_as. Its state is all in the registry, so a new leader goes
// on from it.
func (a *Agent) tuningLoop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	index := a.fsm.IndexFunc(raftfsm.TableTunings, raftfsm.TableJobs, raftfsm.TableMetrics)
	full, seen := true, uint64(0)
	for {
		changed := a.fsm.Changed()
		if idx := index(); full || idx != seen {
			seen = idx
			if err := a.tuneOnce(ctx); err != nil && ctx.Err() == nil {
				a.logger.Warn("tuning pass failed", "error", err)
			}
		}
		full = false
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
			full = true
		}
	}
}

func (a *Agent) tuneOnce(ctx context.Context) error {
	txn := a.fsm.ReadTxn()
	tunings, err := txn.Tunings()
	if err != nil {
		txn.Discard()
		return err
	}
	type step struct {
		tu *structs.Tuning
		d  training.TuningDecision
		in training.TuningInput
	}
	var steps []step
	for _, tu := range tunings {
		if tu.State != structs.TuningRunning {
			continue
		}
		in := training.TuningInput{Tuning: tu, Jobs: map[string]*structs.Job{}, Runs: map[string]*structs.Run{},
			History: func(run, key string) []structs.MetricPoint {
				points, _ := txn.MetricHistory(run, key)
				return points
			}}
		for _, tr := range tu.Trials {
			if j, err := txn.Job(tr.JobID); err == nil {
				in.Jobs[j.ID] = j
				if r, err := txn.Run(j.RunID); err == nil {
					in.Runs[r.ID] = r
				}
			}
		}
		steps = append(steps, step{tu, training.DecideTuning(in), in})
	}
	txn.Discard()
	for _, s := range steps {
		if err := a.applyTuningStep(ctx, s.tu, s.d, s.in); err != nil {
			return err
		}
	}
	return nil
}

func (a *Agent) applyTuningStep(ctx context.Context, tu *structs.Tuning, d training.TuningDecision, in training.TuningInput) error {
	now := time.Now().UTC()
	for i := range d.Stop {
		a.logger.Info("tuning stops a trial early", "tuning", tu.ID, "trial", i, "reason", d.Stop[i])
		err := a.proposeCmd(ctx, structs.JobCancelType, &structs.JobCancelRequest{JobID: tu.Trials[i].JobID, At: now})
		if err != nil && structs.ErrorCode(err) != structs.CodeConflict {
			return err
		}
	}
	for k, params := range d.Start {
		req := &structs.TuningTrialRequest{TuningID: tu.ID, Index: len(tu.Trials) + k, JobID: structs.NewID(now), Params: params, At: now}
		if err := a.proposeCmd(ctx, structs.TuningTrialType, req); err != nil {
			if structs.ErrorCode(err) == structs.CodeInvalid {
				// The trial cannot be a job (its params make it invalid):
				// the tuning cannot go on.
				return a.proposeCmd(ctx, structs.TuningUpdateType, &structs.TuningUpdateRequest{TuningID: tu.ID,
					State: structs.TuningFailed, Reason: "trial " + req.JobID + ": " + err.Error(), BestTrial: d.BestTrial, BestValue: d.BestValue, At: now})
			}
			return err
		}
	}
	u := &structs.TuningUpdateRequest{TuningID: tu.ID, Stopped: d.Stop, BestTrial: d.BestTrial, BestValue: d.BestValue, At: now}
	if d.Done {
		u.State, u.Reason = d.State, d.Reason
		if d.State == structs.TuningSucceeded && tu.Spec.RegisterBestAs != "" {
			v, err := a.registerBest(ctx, tu, in.Jobs[tu.Trials[d.BestTrial].JobID])
			if err != nil {
				u.State, u.Reason = structs.TuningFailed, "registering the best trial's model: "+err.Error()
			}
			u.BestVersion = v
		}
	} else if len(d.Stop) == 0 && d.BestTrial == tu.BestTrial && d.BestValue == tu.BestValue {
		return nil // nothing new to record
	}
	return a.proposeCmd(ctx, structs.TuningUpdateType, u)
}

// registerBest records the best trial's model as a version of
// register_best_as: the trial's own version's file, not copied again.
func (a *Agent) registerBest(ctx context.Context, tu *structs.Tuning, j *structs.Job) (uint64, error) {
	if j == nil || j.ModelVersion == 0 {
		return 0, structs.Errorf(structs.CodeInvalid, "the best trial registered no model")
	}
	txn := a.fsm.ReadTxn()
	src, err := txn.Version(j.Spec.RegisterAs, j.ModelVersion)
	txn.Discard()
	if err != nil {
		return 0, err
	}
	now := time.Now().UTC()
	_, err = a.propose(ctx, structs.ModelCreateType, &structs.ModelCreateRequest{Model: structs.Model{
		Name: tu.Spec.RegisterBestAs, Description: "best of tuning " + tu.ID, CreatedAt: now, UpdatedAt: now}}, nil)
	if err != nil && structs.ErrorCode(err) != structs.CodeConflict {
		return 0, err
	}
	v := *src
	v.Model, v.Version, v.CreatedAt, v.CreateIndex = tu.Spec.RegisterBestAs, 0, now, 0
	v.Metadata = maps.Clone(src.Metadata)
	if v.Metadata == nil {
		v.Metadata = map[string]string{}
	}
	if len(v.Metadata) < structs.MaxMetadata {
		v.Metadata["tuning"] = tu.ID
	}
	var stored structs.ModelVersion
	if _, err := a.propose(ctx, structs.VersionCreateType, &structs.VersionCreateRequest{Version: v}, &stored); err != nil {
		return 0, err
	}
	return stored.Version, nil
}
