package raftfsm

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/vmihailenco/msgpack/v5"
)

// command applies the body of one log entry (without its type byte) through tx.
//
// It returns the result handed back to the proposer: the stored record for writes
// that have one, nil otherwise. A deterministic rejection (bad body, missing or
// duplicate record) is returned as a *structs.CodedError in err; the entry's writes
// are then dropped and the rest of the batch goes on. Any other error means the
// store itself failed, and applying cannot safely continue.
type command func(tx *applyTxn, body []byte) (result interface{}, err error)

// commands is the dispatch table: every MessageType the registry knows, and its
// handler. Later capabilities register their entity types here.
var commands = map[structs.MessageType]command{
	structs.NodeUpsertType:  applyNodeUpsert,
	structs.NodeDeleteType:  applyNodeDelete,
	structs.ModelCreateType: applyModelCreate,
	structs.ModelUpdateType: applyModelUpdate,
	structs.ModelDeleteType: applyModelDelete,
}

// maxRecordBytes bounds one stored record. It is a constant rather than a Badger
// option so that every node rejects the same commands; it also keeps values within
// what Badger accepts in memory (its value threshold, 1 MiB).
const maxRecordBytes = 1 << 20

// op is one staged write: a value to set, or a deletion when del is true.
type op struct {
	key   string
	value []byte
	del   bool
}

// opEstimate bounds Badger's own accounting of one write (key, value, metadata,
// version), so that budgeting with it never underestimates.
func opEstimate(o op) int64 { return int64(len(o.key)+len(o.value)) + 32 }

// applyTxn is what a command sees: reads go through its own staged writes, then the
// batch's Badger transaction (which holds the writes of earlier entries in the
// batch); writes are staged until the command succeeds, so a rejected command leaves
// nothing behind.
type applyTxn struct {
	txn    *badger.Txn
	index  uint64 // Raft index of the entry being applied
	ops    []op
	staged map[string]int // key -> position in ops
	size   int64          // sum of opEstimate over ops
	// serving is set when the command changes what routing reads: any
	// write under the serving prefixes, or a command that marks itself
	// (model create and delete, aliases).
	serving bool
	// acl is set when the command writes an ACL record.
	acl bool
}

func (t *applyTxn) stage(o op) {
	if isServingKey(o.key) {
		t.serving = true
	}
	if isACLKey(o.key) {
		t.acl = true
	}
	if t.staged == nil {
		t.staged = make(map[string]int)
	}
	if i, ok := t.staged[o.key]; ok {
		t.size -= opEstimate(t.ops[i])
		t.ops[i] = o
	} else {
		t.staged[o.key] = len(t.ops)
		t.ops = append(t.ops, o)
	}
	t.size += opEstimate(o)
}

// get decodes the record at key into v and reports whether it exists.
func (t *applyTxn) get(key string, v interface{}) (bool, error) {
	if i, ok := t.staged[key]; ok {
		o := t.ops[i]
		if o.del {
			return false, nil
		}
		return true, msgpack.Unmarshal(o.value, v)
	}
	return getRecord(t.txn, key, v)
}

func (t *applyTxn) put(key string, v interface{}) error {
	b, err := encodeRecord(v)
	if err != nil {
		return fmt.Errorf("raftfsm: encode %s: %w", key, err)
	}
	if len(b) > maxRecordBytes {
		return structs.Errorf(structs.CodeTooLarge, "record %s would be %d bytes, more than %d", key, len(b), maxRecordBytes)
	}
	t.stage(op{key: key, value: b})
	return nil
}

// encodeRecord encodes a stored record. Map keys are sorted so that every node
// stores (and snapshots) the same bytes for the same state.
func encodeRecord(v interface{}) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// msgpack decodes times in the local zone; the registry speaks UTC (DESIGN.md §7a).
func utcNode(n *structs.Node) *structs.Node {
	n.RegisteredAt, n.UpdatedAt = n.RegisteredAt.UTC(), n.UpdatedAt.UTC()
	return n
}

func utcModel(m *structs.Model) *structs.Model {
	m.CreatedAt, m.UpdatedAt = m.CreatedAt.UTC(), m.UpdatedAt.UTC()
	return m
}

func (t *applyTxn) del(key string) { t.stage(op{key: key, del: true}) }

// getRecord decodes the value at key in txn into v and reports whether it exists.
func getRecord(txn *badger.Txn, key string, v interface{}) (bool, error) {
	item, err := txn.Get([]byte(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("raftfsm: read %s: %w", key, err)
	}
	err = item.Value(func(val []byte) error { return msgpack.Unmarshal(val, v) })
	if err != nil {
		return false, fmt.Errorf("raftfsm: read %s: %w", key, err)
	}
	return true, nil
}

// decodeBody decodes a command body; a body that does not decode is the proposer's
// fault (or a newer proposer's), never a reason to stop.
func decodeBody(t structs.MessageType, body []byte, cmd interface{}) error {
	if err := structs.Decode(body, cmd); err != nil {
		return structs.Errorf(structs.CodeInvalid, "%s: body does not decode: %v", t, err)
	}
	return nil
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
	tx.serving = true // a model that did not exist may now be deployed
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
	tx.serving = true
	// Its versions go with it; their artifacts are collected once unreferenced.
	for _, k := range tx.keysUnder(versionPrefix(req.Name)) {
		tx.del(k)
	}
	tx.del(modelKey(req.Name))
	return nil, nil
}
