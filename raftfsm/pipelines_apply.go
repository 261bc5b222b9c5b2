package raftfsm

import (
	"fmt"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Pipelines (DESIGN.md §8): their specs, and who applied them.
const prefixPipeline = "pl/" // pl/<name> -> structs.Pipeline

func pipelineKey(name string) string { return prefixPipeline + name }

var _ = registerCommands(structs.RangePipelines,
	handler{structs.PipelinePutType, applyPipelinePut},
	handler{structs.PipelineDeleteType, applyPipelineDelete},
)

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
	p := structs.Pipeline{Spec: spec, AppliedBy: req.AppliedBy, CreatedAt: req.At, UpdatedAt: req.At, CreateIndex: tx.index}
	var old structs.Pipeline
	found, err := tx.get(pipelineKey(spec.Name), &old)
	if err != nil {
		return nil, err
	}
	if found {
		p.CreatedAt, p.CreateIndex = old.CreatedAt, old.CreateIndex
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
