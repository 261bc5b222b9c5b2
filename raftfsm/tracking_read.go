package raftfsm

import (
	"github.com/kilnml/kiln/raftfsm/structs"
)

// Reads of tracking records: experiments, runs, metric histories.

// defaultExperiment is experiment "0" before anything has created it: it
// always exists for readers, as MLflow's default experiment does, and the
// first run or job in it creates its record.
func defaultExperiment() *structs.Experiment {
	return &structs.Experiment{ID: structs.DefaultExperimentID, Name: structs.DefaultExperiment, ArtifactLocation: "mlflow-artifacts:/0",
		Stage: structs.StageActive, Tags: map[string]string{}}
}

// Experiment returns an experiment by ID, or a not_found error.
func (t *Txn) Experiment(id string) (*structs.Experiment, error) {
	e, err := readOne(t, experimentKey(id), utcExperiment, func() error {
		return structs.Errorf(structs.CodeNotFound, "experiment %q not found", id)
	})
	if structs.ErrorCode(err) == structs.CodeNotFound && id == structs.DefaultExperimentID {
		return defaultExperiment(), nil
	}
	return e, err
}

// ExperimentByName returns an experiment by name, or a not_found error.
func (t *Txn) ExperimentByName(name string) (*structs.Experiment, error) {
	n, err := readOne(t, experimentNameKey(name), asIs[structs.ExperimentName], func() error {
		return structs.Errorf(structs.CodeNotFound, "experiment %q not found", name)
	})
	if structs.ErrorCode(err) == structs.CodeNotFound && name == structs.DefaultExperiment {
		return t.Experiment(structs.DefaultExperimentID)
	}
	if err != nil {
		return nil, err
	}
	return t.Experiment(n.ID)
}

// Experiments returns every experiment, the default one included.
func (t *Txn) Experiments() ([]*structs.Experiment, error) {
	out, _, err := readPage(t, prefixExperiment, "", 0, utcExperiment, nil)
	if err != nil {
		return nil, err
	}
	for _, e := range out {
		if e.ID == structs.DefaultExperimentID {
			return out, nil
		}
	}
	return append([]*structs.Experiment{defaultExperiment()}, out...), nil
}

// Run returns a run by ID, or a not_found error.
func (t *Txn) Run(id string) (*structs.Run, error) {
	return readOne(t, runKey(id), asIs[structs.Run], func() error {
		return structs.Errorf(structs.CodeNotFound, "run %q not found", id)
	})
}

// Runs returns every run; search filters and sorts them.
func (t *Txn) Runs() ([]*structs.Run, error) {
	out, _, err := readPage(t, prefixRun, "", 0, asIs[structs.Run], nil)
	return out, err
}

// MetricHistory returns every point logged for one metric of a run, in the
// order logged.
func (t *Txn) MetricHistory(run, key string) ([]structs.MetricPoint, error) {
	recs, _, err := readPage(t, metricPrefix(run, key), "", 0, asIs[structs.MetricRecord], nil)
	if err != nil {
		return nil, err
	}
	out := make([]structs.MetricPoint, len(recs))
	for i, r := range recs {
		out[i] = r.MetricPoint
	}
	return out, nil
}

// RunArtifacts returns a run's files, in path order.
func (t *Txn) RunArtifacts(run string) ([]*structs.RunArtifact, error) {
	out, _, err := readPage(t, runArtifactPrefix(run), "", 0, asIs[structs.RunArtifact], nil)
	return out, err
}

// RunArtifact returns one file of a run, or a not_found error.
func (t *Txn) RunArtifact(run, path string) (*structs.RunArtifact, error) {
	return readOne(t, runArtifactKey(run, path), asIs[structs.RunArtifact], func() error {
		return structs.Errorf(structs.CodeNotFound, "run %q has no artifact %q", run, path)
	})
}
