package raftfsm

import (
	"github.com/kilnml/kiln/raftfsm/structs"
)

// Reads of the registry core: nodes and models.

// Model returns the named model, or a *structs.CodedError with code not_found.
func (t *Txn) Model(name string) (*structs.Model, error) {
	return readOne(t, modelKey(name), utcModel, func() error {
		return structs.Errorf(structs.CodeNotFound, "model %q not found", name)
	})
}

// Models returns up to limit models whose names sort after cursor, in name order
// (limit <= 0: all of them). next is the cursor for the following page, "" when
// this page is the last.
func (t *Txn) Models(cursor string, limit int) (items []*structs.Model, next string, err error) {
	return readPage(t, prefixModel, cursor, limit, utcModel, func(m *structs.Model) string { return m.Name })
}

// Node returns the node with the given ID, or a *structs.CodedError with code
// not_found.
func (t *Txn) Node(id string) (*structs.Node, error) {
	return readOne(t, nodeKey(id), utcNode, func() error {
		return structs.Errorf(structs.CodeNotFound, "node %q not found", id)
	})
}

// Nodes returns every node record, sorted by ID.
func (t *Txn) Nodes() ([]*structs.Node, error) {
	nodes, _, err := readPage(t, prefixNode, "", 0, utcNode, nil)
	return nodes, err
}
