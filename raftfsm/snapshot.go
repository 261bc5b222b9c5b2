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
//	header  {format: 1, applied_index: N}
//	entity  the stored msgpack record, as is; one frame per record, entity by entity
//	footer  {records: count of entity frames, crc32: CRC-32C of every byte before the footer}
//
// and nothing after the footer. The footer makes truncation and corruption
// detectable by Restore, whatever the snapshot store does.
const snapshotFormat = 1

type snapshotHeader struct {
	Format       uint32 `msgpack:"format"`
	AppliedIndex uint64 `msgpack:"applied_index"`
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
	if err != nil {
		txn.Discard()
		h.release()
		return nil, err
	}
	return &fsmSnapshot{h: h, txn: txn, index: index, log: f.log}, nil
}

// fsmSnapshot is a read view of the state, written out by Persist.
type fsmSnapshot struct {
	h     *dbHandle
	txn   *badger.Txn
	index uint64
	log   hclog.Logger
	once  sync.Once
}

// Persist streams the view into sink, then closes it (or cancels it on error).
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	// Raft may compact its log up to this snapshot once it is persisted, and Badger
	// does not fsync its writes: sync them now, so that the state on disk is never
	// behind the first log entry raft still has. See DESIGN.md "SyncWrites".
	err := s.h.db.Sync()
	if err == nil {
		err = writeSnapshot(sink, s.txn, s.index)
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

func writeSnapshot(w io.Writer, txn *badger.Txn, index uint64) error {
	fw := &frameWriter{w: bufio.NewWriterSize(w, 64<<10), crc: crc32.New(castagnoli)}
	hdr, err := msgpack.Marshal(&snapshotHeader{Format: snapshotFormat, AppliedIndex: index})
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
	fr.sum(t, raw)
	return hdr, nil
}

// load writes every entity frame into wb, up to and including a valid footer.
func (fr *frameReader) load(wb *badger.WriteBatch) error {
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
		if err := wb.Set([]byte(key), raw); err != nil {
			return fmt.Errorf("raftfsm: restore %s: %w", key, err)
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
	hdr, err := fr.header() // before any disk work: most garbage stops here
	if err != nil {
		return err
	}

	seq := f.seq + 1
	h, err := f.openFresh(seq)
	if err != nil {
		return err
	}
	if err := f.fill(h, fr, hdr.AppliedIndex, seq); err != nil {
		h.remove.Store(true)
		h.release()
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
	f.applied.Store(hdr.AppliedIndex)
	old.remove.Store(removeOld)
	old.release() // closes it now, or when the last reader lets go
	f.log.Info("restored snapshot", "applied_index", hdr.AppliedIndex)
	f.notifyChanged()
	return nil
}

// openFresh opens an empty database for Restore: db-seq under Dir, or in memory.
func (f *FSM) openFresh(seq uint64) (*dbHandle, error) {
	if f.cfg.InMemory {
		return openHandle("", true, f.log, f.cfg.BadgerLogLevel)
	}
	dir := filepath.Join(f.cfg.Dir, dbDirName(seq))
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("raftfsm: restore: %w", err)
	}
	return openHandle(dir, false, f.log, f.cfg.BadgerLogLevel)
}

// fill loads the rest of the stream into h, makes it durable and, on disk, names it
// in CURRENT. Only then may it replace the current database.
func (f *FSM) fill(h *dbHandle, fr *frameReader, index, seq uint64) error {
	wb := h.db.NewWriteBatch()
	if err := fr.load(wb); err != nil {
		wb.Cancel()
		return err
	}
	if err := wb.Set([]byte(keyAppliedIndex), encodeIndex(index)); err != nil {
		wb.Cancel()
		return fmt.Errorf("raftfsm: restore: %w", err)
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("raftfsm: restore: %w", err)
	}
	if err := h.db.Sync(); err != nil {
		return fmt.Errorf("raftfsm: restore: %w", err)
	}
	if f.cfg.InMemory {
		return nil
	}
	return writeCurrent(f.cfg.Dir, seq)
}
