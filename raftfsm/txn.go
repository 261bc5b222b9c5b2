package raftfsm

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"
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

// asIs is readOne's and readPage's fix for records stored as they are
// read (no time to turn to UTC).
func asIs[T any](v *T) *T { return v }

// readOne reads the record at key, fixed up by fix (times to UTC), or returns
// notFound() when there is none.
func readOne[T any](t *Txn, key string, fix func(*T) *T, notFound func() error) (*T, error) {
	if t.err != nil {
		return nil, t.err
	}
	v := new(T)
	found, err := getRecord(t.txn, key, v)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, notFound()
	}
	return fix(v), nil
}

// readPage returns up to limit records under prefix whose keys sort after
// prefix+cursor (limit <= 0: all of them), each fixed up by fix, and next,
// the cursor of the following page (cursorOf the last record; "" when this
// page is the last).
func readPage[T any](t *Txn, prefix, cursor string, limit int, fix func(*T) *T, cursorOf func(*T) string) (items []*T, next string, err error) {
	if t.err != nil {
		return nil, "", t.err
	}
	err = t.scan(prefix, cursor, limit, func(val []byte) error {
		v := new(T)
		if err := msgpack.Unmarshal(val, v); err != nil {
			return err
		}
		items = append(items, fix(v))
		return nil
	}, func() { next = cursorOf(items[len(items)-1]) })
	if err != nil {
		return nil, "", err
	}
	return items, next, nil
}
