package raftfsm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
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

	// tableIndex[id] is the applied index of the last batch that changed
	// table id (tables.go), for Index. Each is stored after the Badger
	// commit and before applied: a ReadTxn opened after reading one sees at
	// least that state, and once WaitForIndex(n) returns, a table changed at
	// n reads n.
	tableIndex [maxTables]atomic.Uint64

	// partial is the stored position inside a BatchType entry that a split batch
	// left half applied (zero: none); guarded by applyMu.
	partial position

	changedMu sync.Mutex
	changed   chan struct{} // guarded by changedMu; closed and replaced on change

	closeCh chan struct{} // closed by Close
}

var _ raft.BatchingFSM = (*FSM)(nil)

// New opens (or creates) the state in cfg.Dir. It removes what an interrupted
// Restore left behind, and discards the state if the machine went down while it was
// open (see DESIGN.md "SyncWrites"). It logs to cfg.Logger as given (name it
// before); Badger's messages come under the sub-logger "badger".
//
// Raft runs with NoSnapshotRestoreOnStart over this FSM, so it will not restore a
// snapshot by itself: when AppliedIndex() is below the index of the newest Raft
// snapshot (state discarded or lost), the caller must Restore that snapshot before
// starting raft, or start raft once without NoSnapshotRestoreOnStart.
func New(cfg Config) (*FSM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	f := &FSM{
		cfg:     cfg,
		log:     cfg.Logger,
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
		if index, err = readAppliedIndex(txn); err != nil {
			return err
		}
		f.partial, err = readAppliedPartial(txn)
		return err
	})
	if err != nil {
		f.cur.release()
		return nil, err
	}
	f.setIndexes(allTables(), index)
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
	fresh := seq == 0
	if !fresh {
		if _, err := os.Stat(filepath.Join(dir, dbDirName(seq))); err != nil {
			return nil, fmt.Errorf("raftfsm: %s names %s, which cannot be opened: %w", currentFile, dbDirName(seq), err)
		}
		if unclean, why := machineStoppedWhileOpen(dir); unclean {
			f.log.Warn("discarding the state: the machine stopped while it was open and Badger does not fsync every write; it is rebuilt from the Raft snapshot and log",
				"dir", dir, "reason", why)
			fresh = true
		}
	}
	if fresh {
		// Create the directory before CURRENT names it, so that a CURRENT naming a
		// missing directory always means lost state.
		seq++
		if err := os.MkdirAll(filepath.Join(dir, dbDirName(seq)), 0o700); err != nil {
			return nil, fmt.Errorf("raftfsm: create %s: %w", dir, err)
		}
		if err := writeCurrent(dir, seq); err != nil {
			return nil, err
		}
		if err := syncDir(dir); err != nil {
			return nil, fmt.Errorf("raftfsm: sync %s: %w", dir, err)
		}
	}
	if err := removeStale(dir, seq, f.log); err != nil {
		return nil, err
	}
	if err := writeOpenMarker(dir); err != nil {
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
	if h.closeErr != nil || f.cfg.InMemory {
		return h.closeErr
	}
	// Badger flushed its memtables on Close: the state is durable.
	return removeOpenMarker(f.cfg.Dir)
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
