package raftfsm

import (
	"fmt"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Registry core (nodes and models): keys, commands, and the entities'
// snapshot keys. Reads are in registry_read.go.

const (
	prefixNode  = "n/" // n/<node id>     -> structs.Node
	prefixModel = "m/" // m/<model name>  -> structs.Model
)

func nodeKey(id string) string    { return prefixNode + id }
func modelKey(name string) string { return prefixModel + name }

var _ = registerCommands(structs.RangeRegistry,
	handler{structs.NodeUpsertType, applyNodeUpsert},
	handler{structs.NodeDeleteType, applyNodeDelete},
	handler{structs.ModelCreateType, applyModelCreate},
	// A model's tags and description are not routing: ModelUpdate moves
	// TableModels only.
	handler{structs.ModelUpdateType, applyModelUpdate},
	handler{structs.ModelDeleteType, applyModelDelete},
)

// msgpack decodes times in the local zone; the registry speaks UTC (DESIGN.md §7a).
func utcNode(n *structs.Node) *structs.Node {
	n.RegisteredAt, n.UpdatedAt = n.RegisteredAt.UTC(), n.UpdatedAt.UTC()
	return n
}

func utcModel(m *structs.Model) *structs.Model {
	m.CreatedAt, m.UpdatedAt = m.CreatedAt.UTC(), m.UpdatedAt.UTC()
	return m
}

func applyNodeUpsert(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.NodeUpsertRequest
	if err := decodeBody(structs.NodeUpsertType, body, &req); err != nil {
		return nil, err
	}
	n := req.Node
	if err := n.Validate(); err != nil {
		return nil, err
	}
	var old structs.Node
	found, err := tx.get(nodeKey(n.ID), &old)
	if err != nil {
		return nil, err
	}
	n.CreateIndex = tx.index
	if found {
		// A node that re-registers keeps its identity in the registry.
		n.CreateIndex = old.CreateIndex
		n.RegisteredAt = old.RegisteredAt
	}
	n.ModifyIndex = tx.index
	if err := tx.put(nodeKey(n.ID), &n); err != nil {
		return nil, err
	}
	return utcNode(&n), nil
}

func applyNodeDelete(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.NodeDeleteRequest
	if err := decodeBody(structs.NodeDeleteType, body, &req); err != nil {
		return nil, err
	}
	if req.ID == "" {
		return nil, structs.Errorf(structs.CodeInvalid, "node id is required")
	}
	var old structs.Node
	found, err := tx.get(nodeKey(req.ID), &old)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "node %q not found", req.ID)
	}
	tx.del(nodeKey(req.ID))
	return nil, nil
}

func applyModelCreate(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.ModelCreateRequest
	if err := decodeBody(structs.ModelCreateType, body, &req); err != nil {
		return nil, err
	}
	m := req.Model
	if err := m.Validate(); err != nil {
		return nil, err
	}
	// Versions and aliases come only through their own commands.
	m.LatestVersion, m.Aliases = 0, nil
	tx.touch(TableRoutes) // a model that did not exist may now be deployed
	var old structs.Model
	found, err := tx.get(modelKey(m.Name), &old)
	if err != nil {
		return nil, err
	}
	if found {
		return nil, structs.Errorf(structs.CodeConflict, "model %q already exists", m.Name)
	}
	m.CreateIndex, m.ModifyIndex = tx.index, tx.index
	if err := tx.put(modelKey(m.Name), &m); err != nil {
		return nil, err
	}
	return utcModel(&m), nil
}

func applyModelUpdate(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.ModelUpdateRequest
	if err := decodeBody(structs.ModelUpdateType, body, &req); err != nil {
		return nil, err
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var m structs.Model
	found, err := tx.get(modelKey(req.Name), &m)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "model %q not found", req.Name)
	}
	req.Apply(&m)
	if len(m.Tags) > structs.MaxTags {
		return nil, structs.Errorf(structs.CodeInvalid, "tags would have %d keys after the update, more than %d", len(m.Tags), structs.MaxTags)
	}
	m.ModifyIndex = tx.index
	if err := tx.put(modelKey(m.Name), &m); err != nil {
		return nil, err
	}
	return utcModel(&m), nil
}

func applyModelDelete(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.ModelDeleteRequest
	if err := decodeBody(structs.ModelDeleteType, body, &req); err != nil {
		return nil, err
	}
	if err := structs.ValidateName("name", req.Name); err != nil {
		return nil, err
	}
	var old structs.Model
	found, err := tx.get(modelKey(req.Name), &old)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "model %q not found", req.Name)
	}
	var d structs.Deployment
	if deployed, err := tx.get(deploymentKey(req.Name), &d); err != nil {
		return nil, err
	} else if deployed {
		return nil, structs.Errorf(structs.CodeConflict, "model %q is deployed; delete its deployment first", req.Name)
	}
	tx.touch(TableRoutes)
	// Its versions go with it; their artifacts are collected once unreferenced.
	for _, k := range tx.keysUnder(versionPrefix(req.Name)) {
		tx.del(k)
	}
	tx.del(modelKey(req.Name))
	return nil, nil
}

// model reads a model as the command sees the state; not_found when missing.
func (t *applyTxn) model(name string) (*structs.Model, error) {
	var m structs.Model
	found, err := t.get(modelKey(name), &m)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "model %q not found", name)
	}
	return &m, nil
}

func nodeKeyOf(raw []byte) (string, error) {
	var n structs.Node
	if err := structs.Decode(raw, &n); err != nil {
		return "", err
	}
	if n.ID == "" {
		return "", fmt.Errorf("node record without id")
	}
	return nodeKey(n.ID), nil
}

func modelKeyOf(raw []byte) (string, error) {
	var m structs.Model
	if err := structs.Decode(raw, &m); err != nil {
		return "", err
	}
	if m.Name == "" {
		return "", fmt.Errorf("model record without name")
	}
	return modelKey(m.Name), nil
}
