package raftfsm

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/vmihailenco/msgpack/v5"
)

// Txn is a consistent, read-only view of the registry. It keeps seeing the state it
// was opened on, even across later applies and a Restore. Discard it when done: it
// pins the database (and Close waits for it). A Txn is for one goroutine.
type Txn struct {
	h     *dbHandle
	txn   *badger.Txn
	index uint64
	err   error // why the view is unusable: ErrClosed, ErrTxnDiscarded, a read error
}

// ReadTxn opens a read view. On a closed FSM the view's methods return ErrClosed.
func (f *FSM) ReadTxn() *Txn {
	h, err := f.acquire()
	if err != nil {
		return &Txn{err: err}
	}
	t := &Txn{h: h, txn: h.db.NewTransaction(false)}
	t.index, t.err = readAppliedIndex(t.txn)
	return t
}

// Index returns the applied Raft index of the state this view sees; 0 for an
// unusable view.
func (t *Txn) Index() uint64 { return t.index }

// Discard releases the view. It may be called more than once.
func (t *Txn) Discard() {
	if t.h == nil {
		return
	}
	t.txn.Discard()
	h := t.h
	t.h, t.txn, t.err = nil, nil, ErrTxnDiscarded
	h.release()
}

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

// scan calls fn with the value of each key under prefix that sorts after
// prefix+cursor, at most limit times (limit <= 0: no limit). If it stops at the
// limit with keys left, it calls more.
func (t *Txn) scan(prefix, cursor string, limit int, fn func(val []byte) error, more func()) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte(prefix)
	if limit > 0 && limit < opts.PrefetchSize {
		opts.PrefetchSize = limit + 1
	}
	it := t.txn.NewIterator(opts)
	defer it.Close()

	start := prefix + cursor
	n := 0
	for it.Seek([]byte(start)); it.Valid(); it.Next() {
		item := it.Item()
		if cursor != "" && string(item.Key()) == start {
			continue
		}
		if limit > 0 && n == limit {
			if more != nil {
				more()
			}
			return nil
		}
		if err := item.Value(fn); err != nil {
			return fmt.Errorf("raftfsm: read %s: %w", item.Key(), err)
		}
		n++
	}
	return nil
}
