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
