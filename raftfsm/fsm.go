package raftfsm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// FSM is the registry state machine. It implements raft.FSM and raft.BatchingFSM.
//
// Raft calls ApplyBatch, Apply, Snapshot and Restore from one goroutine; ReadTxn,
// AppliedIndex, WaitForIndex and Changed may be called from any goroutine.
type FSM struct {
	cfg Config
	log hclog.Logger

	// applyMu serialises the writers: ApplyBatch, Restore and Close. Raft already
	// calls the first two from one goroutine; the lock makes that a guarantee.
	applyMu sync.Mutex
	seq     uint64 // number of the active db-* directory; guarded by applyMu

	// mu guards cur and closed. Readers hold it only long enough to take a
	// reference on cur; Restore holds it only to swap the pointer.
	mu     sync.RWMutex
	cur    *dbHandle
	closed bool

	// applied mirrors the applied index stored in cur, for lock-free reads. It is
	// updated after the Badger commit, before Changed fires.
	applied atomic.Uint64

	changedMu sync.Mutex
	changed   chan struct{} // guarded by changedMu; closed and replaced on change

	closeCh chan struct{} // closed by Close
}

var _ raft.BatchingFSM = (*FSM)(nil)

// New opens (or creates) the state in cfg.Dir. It removes what an interrupted
// Restore left behind. The logger is named "fsm".
func New(cfg Config) (*FSM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	f := &FSM{
		cfg:     cfg,
		log:     cfg.Logger.Named("fsm"),
		changed: make(chan struct{}),
		closeCh: make(chan struct{}),
	}
	var err error
	if cfg.InMemory {
		f.cur, err = openHandle("", true, f.log, cfg.BadgerLogLevel)
	} else {
		f.cur, err = f.openDir()
	}
	if err != nil {
		return nil, err
	}
	var index uint64
	err = f.cur.db.View(func(txn *badger.Txn) error {
		index, err = readAppliedIndex(txn)
		return err
	})
	if err != nil {
		f.cur.release()
		return nil, err
	}
	f.applied.Store(index)
	f.log.Debug("opened state", "dir", cfg.Dir, "applied_index", index)
	return f, nil
}

func (f *FSM) openDir() (*dbHandle, error) {
	dir := f.cfg.Dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("raftfsm: create %s: %w", dir, err)
	}
	seq, err := readCurrent(dir)
	if err != nil {
		return nil, err
	}
	if seq == 0 {
		// First start: create the directory before CURRENT names it, so that a
		// CURRENT naming a missing directory always means lost state.
		seq = 1
		if err := os.MkdirAll(filepath.Join(dir, dbDirName(seq)), 0o700); err != nil {
			return nil, fmt.Errorf("raftfsm: create %s: %w", dir, err)
		}
		if err := writeCurrent(dir, seq); err != nil {
			return nil, err
		}
		if err := syncDir(dir); err != nil {
			return nil, fmt.Errorf("raftfsm: sync %s: %w", dir, err)
		}
	} else if _, err := os.Stat(filepath.Join(dir, dbDirName(seq))); err != nil {
		return nil, fmt.Errorf("raftfsm: %s names %s, which cannot be opened: %w", currentFile, dbDirName(seq), err)
	}
	if err := removeStale(dir, seq, f.log); err != nil {
		return nil, err
	}
	f.seq = seq
	return openHandle(filepath.Join(dir, dbDirName(seq)), false, f.log, f.cfg.BadgerLogLevel)
}

// Close closes the database. It waits until every Txn has been discarded and every
// snapshot released, so call it after raft has shut down. Later calls return nil.
func (f *FSM) Close() error {
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	h := f.cur
	f.mu.Unlock()

	close(f.closeCh)
	f.changedMu.Lock()
	close(f.changed) // wake watchers; their next ReadTxn reports ErrClosed
	f.changedMu.Unlock()

	h.release()
	<-h.done
	return h.closeErr
}

// acquire returns the current database with a reference taken for the caller.
func (f *FSM) acquire() (*dbHandle, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return nil, ErrClosed
	}
	f.cur.acquire()
	return f.cur, nil
}

// AppliedIndex returns the index of the last Raft entry applied to the state. It
// covers the entries raft hands to the FSM (commands and configuration changes),
// not no-ops and barriers, which raft keeps to itself.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// Changed returns a channel that is closed the next time the state changes: after
// a batch that advanced the applied index, after a Restore, and at Close. Call it
// again for the next change; read the state after receiving, not before.
func (f *FSM) Changed() <-chan struct{} {
	f.changedMu.Lock()
	defer f.changedMu.Unlock()
	return f.changed
}

func (f *FSM) notifyChanged() {
	f.changedMu.Lock()
	defer f.changedMu.Unlock()
	select {
	case <-f.closeCh:
		return // Close has closed f.changed for good
	default:
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

// WaitForIndex returns once AppliedIndex() >= index, or with ctx's error, or with
// ErrClosed when the FSM is closed first.
func (f *FSM) WaitForIndex(ctx context.Context, index uint64) error {
	for {
		ch := f.Changed() // before the check, so no change is missed
		if f.AppliedIndex() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-f.closeCh:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Apply applies one log entry. See ApplyBatch.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies committed log entries in one Badger transaction (more than one
// only when the batch outgrows the transaction budget), which also records the
// index of the last entry, and returns one result per entry:
//
//   - nil for entries skipped because their index is at or below the applied index
//     (replay after a restart), for non-command entries, and for deletes;
//   - the stored *structs.Model or *structs.Node for creates, updates and upserts;
//   - a *structs.CodedError for a rejected command, which changes nothing.
//
// An entry of unknown type panics, so that an old binary stops rather than diverge,
// unless its type carries structs.IgnoreUnknownFlag. A failing store panics too: the
// entries would otherwise be counted as applied without their effects.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	results := make([]interface{}, len(logs))
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	f.mu.RLock()
	closed, h := f.closed, f.cur
	f.mu.RUnlock()
	if closed {
		for i := range results {
			results[i] = structs.Errorf(structs.CodeInternal, "%v", ErrClosed)
		}
		return results
	}

	start := f.applied.Load()
	b := &batch{log: f.log, db: h.db, txn: h.db.NewTransaction(true), index: start, stored: start}
	defer func() { b.txn.Discard() }() // also when a command panics
	for i, l := range logs {
		if l.Index <= b.index {
			continue
		}
		if l.Type == raft.LogCommand {
			results[i] = b.apply(l)
		}
		b.index = l.Index
	}
	if err := b.finish(); err != nil {
		panic(fmt.Sprintf("raftfsm: commit entries up to index %d: %v", b.index, err))
	}
	if b.index > start {
		f.applied.Store(b.index)
		f.notifyChanged()
	}
	return results
}

// batch is the Badger side of one ApplyBatch call.
type batch struct {
	log hclog.Logger
	db  *badger.DB
	txn *badger.Txn

	ops  []op  // written into txn since its start, to rebuild it after ErrTxnTooBig
	size int64 // sum of opEstimate over ops

	index  uint64 // last Raft index processed; recorded by the next commit
	stored uint64 // index recorded by the last commit
}

// errEntryTooLarge rejects a command whose writes do not fit one transaction.
var errEntryTooLarge = errors.New("raftfsm: command writes more than one transaction holds")

func (b *batch) apply(l *raft.Log) interface{} {
	tx := &applyTxn{txn: b.txn, index: l.Index}
	res, err := b.dispatch(tx, l)
	if err != nil {
		var ce *structs.CodedError
		if errors.As(err, &ce) {
			return ce
		}
		panic(fmt.Sprintf("raftfsm: apply entry at index %d: %v", l.Index, err))
	}
	if len(tx.ops) == 0 {
		return res
	}
	switch err := b.stage(tx); {
	case errors.Is(err, errEntryTooLarge):
		return structs.Errorf(structs.CodeTooLarge, "command at index %d writes about %d bytes, more than the %d one command may", l.Index, tx.size, txnBudgetBytes)
	case err != nil:
		panic(fmt.Sprintf("raftfsm: apply entry at index %d: %v", l.Index, err))
	}
	return res
}

func (b *batch) dispatch(tx *applyTxn, l *raft.Log) (interface{}, error) {
	if len(l.Data) == 0 {
		return nil, structs.Errorf(structs.CodeInvalid, "command at index %d is empty", l.Index)
	}
	t := structs.MessageType(l.Data[0])
	ignoreUnknown := t&structs.IgnoreUnknownFlag != 0
	t &^= structs.IgnoreUnknownFlag
	if cmd, ok := commands[t]; ok {
		return cmd(tx, l.Data[1:])
	}
	if ignoreUnknown {
		b.log.Warn("skipping entry of unknown type; upgrade this node", "type", uint8(l.Data[0]), "index", l.Index)
		return nil, nil
	}
	panic(fmt.Sprintf("raftfsm: entry at index %d has unknown message type %d: this binary is older than the cluster's; upgrade it", l.Index, uint8(l.Data[0])))
}

// stage writes a successful command's ops into the batch transaction, committing
// what came before first when the budget would be exceeded.
func (b *batch) stage(tx *applyTxn) error {
	if tx.size > txnBudgetBytes || len(tx.ops) > txnBudgetOps {
		return errEntryTooLarge
	}
	if b.size+tx.size > txnBudgetBytes || len(b.ops)+len(tx.ops) > txnBudgetOps {
		if err := b.commit(); err != nil {
			return err
		}
	}
	err := writeOps(b.txn, tx.ops)
	if errors.Is(err, badger.ErrTxnTooBig) {
		// Our estimate fell short of Badger's accounting. The transaction holds part
		// of this command: rebuild it without, commit it, and retry alone.
		b.log.Warn("badger transaction too big; splitting the batch", "index", tx.index, "ops", len(b.ops)+len(tx.ops))
		b.txn.Discard()
		b.txn = b.db.NewTransaction(true)
		if err := writeOps(b.txn, b.ops); err != nil {
			return err
		}
		if err := b.commit(); err != nil {
			return err
		}
		err = writeOps(b.txn, tx.ops)
		if errors.Is(err, badger.ErrTxnTooBig) {
			b.txn.Discard()
			b.txn = b.db.NewTransaction(true)
			return errEntryTooLarge
		}
	}
	if err != nil {
		return err
	}
	b.ops = append(b.ops, tx.ops...)
	b.size += tx.size
	return nil
}

// commit records the index in the open transaction, commits it, and opens the next.
func (b *batch) commit() error {
	if err := b.txn.Set([]byte(keyAppliedIndex), encodeIndex(b.index)); err != nil {
		return err
	}
	if err := b.txn.Commit(); err != nil {
		return err
	}
	b.stored = b.index
	b.txn = b.db.NewTransaction(true)
	b.ops, b.size = b.ops[:0], 0
	return nil
}

// finish commits what is left, if anything advanced the index.
func (b *batch) finish() error {
	if b.index == b.stored {
		return nil
	}
	return b.commit()
}

func writeOps(txn *badger.Txn, ops []op) error {
	for _, o := range ops {
		var err error
		if o.del {
			err = txn.Delete([]byte(o.key))
		} else {
			err = txn.Set([]byte(o.key), o.value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func encodeIndex(index uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, index)
}

func readAppliedIndex(txn *badger.Txn) (uint64, error) {
	item, err := txn.Get([]byte(keyAppliedIndex))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("raftfsm: read applied index: %w", err)
	}
	var index uint64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("raftfsm: applied index is %d bytes, want 8", len(v))
		}
		index = binary.BigEndian.Uint64(v)
		return nil
	})
	return index, err
}
