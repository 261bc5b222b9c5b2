package raftfsm

import (
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/vmihailenco/msgpack/v5"
)

// Reads of the registry core: nodes and models.

// Model returns the named model, or a *structs.CodedError with code not_found.
func (t *Txn) Model(name string) (*structs.Model, error) {
	if t.err != nil {
		return nil, t.err
	}
	var m structs.Model
	found, err := getRecord(t.txn, modelKey(name), &m)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "model %q not found", name)
	}
	return utcModel(&m), nil
}

// Models returns up to limit models whose names sort after cursor, in name order
// (limit <= 0: all of them). next is the cursor for the following page, "" when
// this page is the last.
func (t *Txn) Models(cursor string, limit int) (items []*structs.Model, next string, err error) {
	if t.err != nil {
		return nil, "", t.err
	}
	err = t.scan(prefixModel, cursor, limit, func(val []byte) error {
		m := new(structs.Model)
		if err := msgpack.Unmarshal(val, m); err != nil {
			return err
		}
		items = append(items, utcModel(m))
		return nil
	}, func() { next = items[len(items)-1].Name })
	if err != nil {
		return nil, "", err
	}
	return items, next, nil
}

// Node returns the node with the given ID, or a *structs.CodedError with code
// not_found.
func (t *Txn) Node(id string) (*structs.Node, error) {
	if t.err != nil {
		return nil, t.err
	}
	var n structs.Node
	found, err := getRecord(t.txn, nodeKey(id), &n)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "node %q not found", id)
	}
	return utcNode(&n), nil
}

// Nodes returns every node record, sorted by ID.
func (t *Txn) Nodes() ([]*structs.Node, error) {
	if t.err != nil {
		return nil, t.err
	}
	var nodes []*structs.Node
	err := t.scan(prefixNode, "", 0, func(val []byte) error {
		n := new(structs.Node)
		if err := msgpack.Unmarshal(val, n); err != nil {
			return err
		}
		nodes = append(nodes, utcNode(n))
		return nil
	}, nil)
	return nodes, err
}
