package raftfsm

import "github.com/kilnml/kiln/raftfsm/structs"

// Pipeline returns a pipeline by name.
func (t *Txn) Pipeline(name string) (*structs.Pipeline, error) {
	return readOne(t, pipelineKey(name), utcPipeline, func() error {
		return structs.Errorf(structs.CodeNotFound, "pipeline %q not found", name)
	})
}

// Pipelines returns a page of pipelines in name order.
func (t *Txn) Pipelines(cursor string, limit int) ([]*structs.Pipeline, string, error) {
	return readPage(t, prefixPipeline, cursor, limit, utcPipeline, func(p *structs.Pipeline) string { return p.Spec.Name })
}

// PipelineRun returns a run of a pipeline.
func (t *Txn) PipelineRun(pipeline, id string) (*structs.PipelineRun, error) {
	return readOne(t, pipelineRunKey(pipeline, id), utcPipelineRun, func() error {
		return structs.Errorf(structs.CodeNotFound, "pipeline %q has no run %q", pipeline, id)
	})
}

// PipelineRuns returns a page of a pipeline's runs, oldest first (IDs
// sort by time).
func (t *Txn) PipelineRuns(pipeline, cursor string, limit int) ([]*structs.PipelineRun, string, error) {
	return readPage(t, pipelineRunPrefix(pipeline), cursor, limit, utcPipelineRun, func(r *structs.PipelineRun) string { return r.ID })
}

// ActivePipelineRuns lists the runs of every pipeline that have not ended.
func (t *Txn) ActivePipelineRuns() ([]*structs.PipelineRun, error) {
	all, _, err := readPage(t, prefixPipelineRun, "", 0, utcPipelineRun, func(r *structs.PipelineRun) string { return r.Pipeline + "/" + r.ID })
	if err != nil {
		return nil, err
	}
	var out []*structs.PipelineRun
	for _, r := range all {
		if !r.Terminal() {
			out = append(out, r)
		}
	}
	return out, nil
}

// StepCache returns a step's cached outputs for a digest of its inputs.
func (t *Txn) StepCache(pipeline, step, key string) (*structs.StepCacheEntry, error) {
	return readOne(t, stepCacheKey(pipeline, step, key), asIs[structs.StepCacheEntry], func() error {
		return structs.Errorf(structs.CodeNotFound, "no cached outputs of step %s of %s for %s", step, pipeline, key)
	})
}
