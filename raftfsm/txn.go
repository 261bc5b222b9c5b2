package raftfsm

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"
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
