package raftfsm

import (
	"bufio"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/vmihailenco/msgpack/v5"
)

// Snapshot stream format, version 1. A stream is a sequence of frames, each one
// frameType byte followed by one msgpack value:
//
//	header  {format: 1, applied_index: N[, partial_index: I, partial_done: K]}
//	entity  the stored msgpack record, as is; one frame per record, entity by entity
//	footer  {records: count of entity frames, crc32: CRC-32C of every byte before the footer}
//
// and nothing after the footer. The footer makes truncation and corruption
// detectable by Restore, whatever the snapshot store does.
const snapshotFormat = 1

type snapshotHeader struct {
	Format       uint32 `msgpack:"format"`
	AppliedIndex uint64 `msgpack:"applied_index"`
	// A BatchType entry at PartialIndex of which the state holds the first
	// PartialDone commands (see keyAppliedPartial); normally absent.
	PartialIndex uint64 `msgpack:"partial_index,omitempty"`
	PartialDone  uint64 `msgpack:"partial_done,omitempty"`
}

type snapshotFooter struct {
	Records uint64 `msgpack:"records"`
	CRC32   uint32 `msgpack:"crc32"`
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Snapshot captures the current state by opening a Badger read transaction, which
// is cheap: the work happens in Persist, concurrently with later applies.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	h, err := f.acquire()
	if err != nil {
		return nil, err
	}
	txn := h.db.NewTransaction(false)
	index, err := readAppliedIndex(txn)
	var partial position
	if err == nil {
		partial, err = readAppliedPartial(txn)
	}
	if err != nil {
		txn.Discard()
		h.release()
		return nil, err
	}
	return &fsmSnapshot{h: h, txn: txn, index: index, partial: partial, log: f.log}, nil
}

// fsmSnapshot is a read view of the state, written out by Persist.
type fsmSnapshot struct {
	h       *dbHandle
	txn     *badger.Txn
	index   uint64
	partial position
	log     hclog.Logger
	once    sync.Once
}

// Persist streams the view into sink, then closes it (or cancels it on error).
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	// Raft may compact its log up to this snapshot once it is persisted, and Badger
	// does not fsync its writes: sync them now, so that the state on disk is never
	// behind the first log entry raft still has. See DESIGN.md "SyncWrites".
	err := s.h.db.Sync()
	if err == nil {
		err = writeSnapshot(sink, s.txn, snapshotHeader{
			Format: snapshotFormat, AppliedIndex: s.index, PartialIndex: s.partial.Index, PartialDone: s.partial.Done,
		})
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("raftfsm: persist snapshot at index %d: %w", s.index, err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("raftfsm: persist snapshot at index %d: %w", s.index, err)
	}
	s.log.Debug("persisted snapshot", "applied_index", s.index)
	return nil
}

// Release discards the view. Raft always calls it, Persist or not.
func (s *fsmSnapshot) Release() {
	s.once.Do(func() {
		s.txn.Discard()
		s.h.release()
	})
}

// frameWriter writes frames and keeps the running checksum.
type frameWriter struct {
	w   *bufio.Writer
	crc hash.Hash32
}

func (fw *frameWriter) frame(t frameType, body []byte) error {
	if err := fw.w.WriteByte(byte(t)); err != nil {
		return err
	}
	_, err := fw.w.Write(body)
	fw.crc.Write([]byte{byte(t)})
	fw.crc.Write(body)
	return err
}

func writeSnapshot(w io.Writer, txn *badger.Txn, header snapshotHeader) error {
	fw := &frameWriter{w: bufio.NewWriterSize(w, 64<<10), crc: crc32.New(castagnoli)}
	hdr, err := msgpack.Marshal(&header)
	if err != nil {
		return err
	}
	if err := fw.frame(frameHeader, hdr); err != nil {
		return err
	}
	var records uint64
	for _, e := range entities {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(e.prefix)
		it := txn.NewIterator(opts)
		for it.Rewind(); it.Valid(); it.Next() {
			err = it.Item().Value(func(val []byte) error { return fw.frame(e.frame, val) })
			if err != nil {
				break
			}
			records++
		}
		it.Close()
		if err != nil {
			return err
		}
	}
	ftr, err := msgpack.Marshal(&snapshotFooter{Records: records, CRC32: fw.crc.Sum32()})
	if err != nil {
		return err
	}
	if err := fw.w.WriteByte(byte(frameFooter)); err != nil {
		return err
	}
	if _, err := fw.w.Write(ftr); err != nil {
		return err
	}
	return fw.w.Flush()
}

// frameReader reads frames and keeps the running checksum of what it has read.
type frameReader struct {
	r   *bufio.Reader
	dec *msgpack.Decoder
	crc hash.Hash32
}

func newFrameReader(r io.Reader) *frameReader {
	br := bufio.NewReaderSize(r, 64<<10)
	// The decoder reads straight from br (a *bufio.Reader is used as is), so frame
	// type bytes and msgpack values interleave correctly.
	return &frameReader{r: br, dec: msgpack.NewDecoder(br), crc: crc32.New(castagnoli)}
}

// next returns the next frame. The checksum covers the frames returned before it.
func (fr *frameReader) next() (frameType, []byte, error) {
	t, err := fr.r.ReadByte()
	if err != nil {
		return 0, nil, corrupt("stream ends before the footer: %v", err)
	}
	raw, err := fr.dec.DecodeRaw()
	if err != nil {
		return 0, nil, corrupt("frame type %d: %v", t, err)
	}
	return frameType(t), raw, nil
}

func (fr *frameReader) sum(t frameType, raw []byte) {
	fr.crc.Write([]byte{byte(t)})
	fr.crc.Write(raw)
}

func corrupt(format string, args ...interface{}) error {
	return fmt.Errorf("%w: %s", ErrCorruptSnapshot, fmt.Sprintf(format, args...))
}

func (fr *frameReader) header() (snapshotHeader, error) {
	var hdr snapshotHeader
	t, raw, err := fr.next()
	if err != nil {
		return hdr, err
	}
	if t != frameHeader {
		return hdr, corrupt("first frame has type %d, not a header", t)
	}
	if err := structs.Decode(raw, &hdr); err != nil {
		return hdr, corrupt("header: %v", err)
	}
	if hdr.Format != snapshotFormat {
		return hdr, corrupt("format %d is not supported (this binary reads format %d)", hdr.Format, snapshotFormat)
	}
	if (hdr.PartialIndex == 0) != (hdr.PartialDone == 0) || (hdr.PartialIndex != 0 && hdr.PartialIndex <= hdr.AppliedIndex) {
		return hdr, corrupt("header has partial entry %d/%d at applied index %d", hdr.PartialIndex, hdr.PartialDone, hdr.AppliedIndex)
	}
	fr.sum(t, raw)
	return hdr, nil
}

// load passes every entity frame to set, up to and including a valid footer.
func (fr *frameReader) load(set func(key string, val []byte) error) error {
	var records uint64
	for {
		t, raw, err := fr.next()
		if err != nil {
			return err
		}
		if t == frameFooter {
			var ftr snapshotFooter
			if err := structs.Decode(raw, &ftr); err != nil {
				return corrupt("footer: %v", err)
			}
			if sum := fr.crc.Sum32(); ftr.CRC32 != sum || ftr.Records != records {
				return corrupt("footer says %d records with crc32 %08x, stream has %d with %08x", ftr.Records, ftr.CRC32, records, sum)
			}
			if _, err := fr.r.ReadByte(); !errors.Is(err, io.EOF) {
				return corrupt("data after the footer")
			}
			return nil
		}
		e, ok := entityByFrame(t)
		if !ok {
			return corrupt("frame type %d is unknown", t)
		}
		key, err := e.keyOf(raw)
		if err != nil {
			return corrupt("%s record %d: %v", e.name, records+1, err)
		}
		if err := set(key, raw); err != nil {
			return err
		}
		fr.sum(t, raw)
		records++
	}
}

// Restore replaces the state with the snapshot read from rc, and closes rc. The
// snapshot is loaded into a fresh database, which then replaces the current one: a
// stream that is truncated or corrupt returns an error wrapping ErrCorruptSnapshot
// and leaves the current state as it was. Txns opened before keep their view.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	f.mu.RLock()
	closed := f.closed
	f.mu.RUnlock()
	if closed {
		return ErrClosed
	}

	fr := newFrameReader(rc)
	hdr, err := fr.header()
	if err != nil {
		return err
	}
	seq := f.seq + 1
	l := &restoreLoader{f: f, seq: seq}
	if err := fr.load(l.set); err != nil {
		l.abort()
		return err
	}
	partial := position{Index: hdr.PartialIndex, Done: hdr.PartialDone}
	h, err := l.finish(hdr.AppliedIndex, partial)
	if err != nil {
		l.abort()
		return err
	}

	// CURRENT names the new database: there is no going back. If the rename cannot
	// be made durable, a power loss could bring the old CURRENT back, so keep the old
	// directory; New removes it once it is stale.
	removeOld := true
	if !f.cfg.InMemory {
		if err := syncDir(f.cfg.Dir); err != nil {
			f.log.Warn("syncing the state directory after a restore failed; keeping the old database", "dir", f.cfg.Dir, "error", err)
			removeOld = false
		}
	}

	f.mu.Lock()
	old := f.cur
	f.cur = h
	f.mu.Unlock()
	f.seq = seq
	f.partial = partial
	f.setIndexes(allTables(), hdr.AppliedIndex)
	f.applied.Store(hdr.AppliedIndex)
	old.remove.Store(removeOld)
	old.release() // closes it now, or when the last reader lets go
	f.log.Info("restored snapshot", "applied_index", hdr.AppliedIndex)
	f.notifyChanged()
	return nil
}

// restoreBufferBytes is how much of a snapshot Restore holds in memory before it
// opens the fresh database. A registry snapshot usually fits, so a corrupt one is
// rejected, checksum included, without touching the disk.
const restoreBufferBytes = 4 << 20

// restoreLoader receives the records of a snapshot: first into memory, then, past
// restoreBufferBytes, into a fresh database through a WriteBatch.
type restoreLoader struct {
	f   *FSM
	seq uint64 // number of the database directory to create

	pending     []op
	pendingSize int

	h  *dbHandle
	wb *badger.WriteBatch
}

func (l *restoreLoader) set(key string, val []byte) error {
	if l.wb != nil {
		if err := l.wb.Set([]byte(key), val); err != nil {
			return fmt.Errorf("raftfsm: restore %s: %w", key, err)
		}
		return nil
	}
	l.pending = append(l.pending, op{key: key, value: val})
	l.pendingSize += len(key) + len(val)
	if l.pendingSize < restoreBufferBytes {
		return nil
	}
	return l.open()
}

// open creates the fresh database and moves the buffered records into it.
func (l *restoreLoader) open() error {
	var err error
	if l.f.cfg.InMemory {
		l.h, err = openHandle("", true, l.f.log, l.f.cfg.BadgerLogLevel)
	} else {
		dir := filepath.Join(l.f.cfg.Dir, dbDirName(l.seq))
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("raftfsm: restore: %w", err)
		}
		l.h, err = openHandle(dir, false, l.f.log, l.f.cfg.BadgerLogLevel)
	}
	if err != nil {
		return err
	}
	l.wb = l.h.db.NewWriteBatch()
	pending := l.pending
	l.pending, l.pendingSize = nil, 0
	for _, o := range pending {
		if err := l.set(o.key, o.value); err != nil {
			return err
		}
	}
	return nil
}

// finish records the index, makes the database durable and, on disk, names it in
// CURRENT. Only then may it replace the current database.
func (l *restoreLoader) finish(index uint64, partial position) (*dbHandle, error) {
	if l.wb == nil {
		if err := l.open(); err != nil {
			return nil, err
		}
	}
	if err := l.set(keyAppliedIndex, encodeIndex(index)); err != nil {
		return nil, err
	}
	if partial != (position{}) {
		if err := l.set(keyAppliedPartial, partial.encode()); err != nil {
			return nil, err
		}
	}
	err := l.wb.Flush()
	l.wb = nil
	if err != nil {
		return nil, fmt.Errorf("raftfsm: restore: %w", err)
	}
	if err := l.h.db.Sync(); err != nil {
		return nil, fmt.Errorf("raftfsm: restore: %w", err)
	}
	if !l.f.cfg.InMemory {
		if err := writeCurrent(l.f.cfg.Dir, l.seq); err != nil {
			return nil, err
		}
	}
	return l.h, nil
}

// abort throws away whatever was loaded.
func (l *restoreLoader) abort() {
	if l.wb != nil {
		l.wb.Cancel()
		l.wb = nil
	}
	if l.h != nil {
		l.h.remove.Store(true)
		l.h.release()
		l.h = nil
	}
}
