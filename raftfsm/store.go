package raftfsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/hashicorp/go-hclog"
)

// Directory layout under Config.Dir:
//
//	CURRENT      names the active database directory, e.g. "db-000001\n"
//	db-000001/   the Badger database in use
//	OPEN         boot ID of the machine, while an FSM has the state open
//
// Restore builds db-(n+1) next to the active one and rewrites CURRENT atomically
// (temp file, fsync, rename, fsync of Dir) before swapping it in. A crash before the
// rename leaves the old database active; New removes every db-* directory that
// CURRENT does not name, and the temp file.
const (
	currentFile    = "CURRENT"
	currentTmpFile = "CURRENT.tmp"
	dbDirPrefix    = "db-"
	openMarkerFile = "OPEN" // boot ID of the machine that has the state open
)

// bootIDPath identifies the running kernel on Linux: it changes at every boot.
var bootIDPath = "/proc/sys/kernel/random/boot_id"

func bootID() string {
	b, err := os.ReadFile(bootIDPath)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// machineStoppedWhileOpen reports whether the state in dir was open when its
// machine last went down (the OPEN marker survives, with another boot ID). Badger
// runs without fsync per write, so such a state may have lost writes, and not only
// the newest ones: a memtable waiting for its flush is not synced. A process that
// merely crashed loses nothing (its writes are in the page cache), which the same
// boot ID tells apart. Without a boot ID (not Linux) every unclean stop counts.
func machineStoppedWhileOpen(dir string) (bool, string) {
	b, err := os.ReadFile(filepath.Join(dir, openMarkerFile))
	if errors.Is(err, os.ErrNotExist) {
		return false, ""
	}
	if err != nil {
		return true, err.Error()
	}
	was, now := strings.TrimSpace(string(b)), bootID()
	if was == "" || now == "" || was != now {
		return true, fmt.Sprintf("opened under boot %q, now boot %q", was, now)
	}
	return false, ""
}

func writeOpenMarker(dir string) error {
	path := filepath.Join(dir, openMarkerFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("raftfsm: write %s: %w", path, err)
	}
	_, err = f.WriteString(bootID() + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("raftfsm: write %s: %w", path, err)
	}
	return nil
}

func removeOpenMarker(dir string) error {
	err := os.Remove(filepath.Join(dir, openMarkerFile))
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("raftfsm: remove %s: %w", openMarkerFile, err)
	}
	return nil
}

// Badger sizing. The registry is small (thousands of records of at most a few
// hundred KiB), so the defaults meant for large stores would only waste memory.
const (
	badgerMemTableSize   = 16 << 20
	badgerNumMemtables   = 2
	badgerBlockCacheSize = 128 << 20
	badgerValueLogSize   = 256 << 20
)

// Transaction budget of ApplyBatch. A batch is split into several Badger
// transactions once its estimated size (an upper bound of Badger's own accounting)
// reaches these bounds, and a single command larger than them is rejected with
// too_large. They are constants under Badger's limits (15% of the memtable size, and
// that divided by a skiplist node's size), so that the decision is the same on every
// node and the applied-index key always fits after the batch's writes.
const (
	txnBudgetBytes = 3 << 19 // 1.5 MiB: room for one record of maxRecordBytes
	txnBudgetOps   = 10000
	txnHeadroom    = 64 << 10 // what New requires above the budget, for the index key
)

func dbDirName(seq uint64) string { return fmt.Sprintf("%s%06d", dbDirPrefix, seq) }

func parseDBDirName(name string) (uint64, bool) {
	digits, ok := strings.CutPrefix(name, dbDirPrefix)
	if !ok || digits == "" {
		return 0, false
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	return seq, err == nil && seq > 0
}

// readCurrent returns the sequence number of the active database, or 0 when Dir has
// no CURRENT file yet.
func readCurrent(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, currentFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("raftfsm: read %s: %w", currentFile, err)
	}
	seq, ok := parseDBDirName(strings.TrimSpace(string(b)))
	if !ok {
		return 0, fmt.Errorf("raftfsm: %s in %s names %q, not a database directory", currentFile, dir, strings.TrimSpace(string(b)))
	}
	return seq, nil
}

// writeCurrent makes db-seq the active database, atomically: once it returns nil,
// CURRENT names db-seq. An error means CURRENT still names the previous database.
// The caller syncs dir afterwards to make the rename durable.
func writeCurrent(dir string, seq uint64) error {
	tmp := filepath.Join(dir, currentTmpFile)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("raftfsm: write %s: %w", currentFile, err)
	}
	_, err = f.WriteString(dbDirName(seq) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, currentFile))
	}
	if err != nil {
		return fmt.Errorf("raftfsm: write %s: %w", currentFile, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// removeStale deletes what a crash may have left in dir: database directories other
// than the active one, and a half-written CURRENT.
func removeStale(dir string, active uint64, log hclog.Logger) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("raftfsm: clean %s: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		seq, isDB := parseDBDirName(name)
		if name != currentTmpFile && (!isDB || seq == active) {
			continue
		}
		log.Info("removing stale state", "path", filepath.Join(dir, name))
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("raftfsm: clean %s: %w", dir, err)
		}
	}
	return nil
}

// dbHandle is one open Badger database with a reference count. The FSM holds one
// reference while the handle is current; every Txn and snapshot holds another. The
// database is closed when the last reference goes, so a reader that took its view
// before a Restore keeps reading the old database safely.
type dbHandle struct {
	db  *badger.DB
	dir string // "" when in memory
	log hclog.Logger

	refs   atomic.Int64
	remove atomic.Bool // delete dir once closed: set when a Restore retires the handle

	done     chan struct{} // closed once db is closed
	closeErr error         // written before done is closed
}

func openHandle(dir string, inMemory bool, log hclog.Logger, badgerLevel hclog.Level) (*dbHandle, error) {
	opts := badger.DefaultOptions(dir).
		WithInMemory(inMemory).
		WithLogger(badgerLogger{log: log.Named("badger"), min: badgerLevel}).
		// The Raft log is the durable record; see DESIGN.md "SyncWrites".
		WithSyncWrites(false).
		// One writer (the apply goroutine), so there is nothing to detect.
		WithDetectConflicts(false).
		WithMemTableSize(badgerMemTableSize).
		// Each memtable is an arena of badgerMemTableSize on the heap; Badger's
		// default of five waiting to flush would hold ~100 MiB after a burst.
		WithNumMemtables(badgerNumMemtables).
		WithBlockCacheSize(badgerBlockCacheSize).
		WithCompression(options.None).
		WithValueLogFileSize(badgerValueLogSize).
		WithNumCompactors(2).
		WithMetricsEnabled(false)
	db, err := badger.Open(opts)
	if err != nil {
		where := dir
		if inMemory {
			where = "memory"
		}
		return nil, fmt.Errorf("raftfsm: open badger in %s: %w", where, err)
	}
	if db.MaxBatchSize() < txnBudgetBytes+txnHeadroom || db.MaxBatchCount() < txnBudgetOps+1000 {
		_ = db.Close()
		return nil, fmt.Errorf("raftfsm: badger transaction limits (%d bytes, %d entries) are below the apply budget", db.MaxBatchSize(), db.MaxBatchCount())
	}
	h := &dbHandle{db: db, dir: dir, log: log, done: make(chan struct{})}
	if inMemory {
		h.dir = ""
	}
	h.refs.Store(1)
	return h, nil
}

func (h *dbHandle) acquire() { h.refs.Add(1) }

// release drops one reference; the last one closes the database, and removes its
// directory when a Restore has retired it.
func (h *dbHandle) release() {
	n := h.refs.Add(-1)
	if n > 0 {
		return
	}
	if n < 0 {
		panic("raftfsm: database handle released more often than acquired")
	}
	h.closeErr = h.db.Close()
	if h.closeErr != nil {
		h.log.Error("closing badger failed", "path", h.dir, "error", h.closeErr)
	}
	if h.dir != "" && h.remove.Load() {
		if err := os.RemoveAll(h.dir); err != nil {
			h.log.Error("removing replaced database failed", "path", h.dir, "error", err)
		}
	}
	close(h.done)
}
