package raftfsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
)

// badgerLogStore is a Badger-backed raft.LogStore and raft.StableStore, written
// only to measure it against raft-wal (DESIGN.md, "Raft log store: raft-wal vs
// Badger"). It has its own database, separate from the FSM's, and syncs every
// commit, as raft-wal fsyncs every append.
type badgerLogStore struct {
	db *badger.DB
}

var (
	_ raft.LogStore    = (*badgerLogStore)(nil)
	_ raft.StableStore = (*badgerLogStore)(nil)

	logPrefix    = []byte("l/")
	stablePrefix = []byte("s/")

	// errStableNotFound is what raft expects from a StableStore for a missing key:
	// it compares err.Error() with "not found".
	errStableNotFound = errors.New("not found")
)

func openBadgerLogStore(dir string) (*badgerLogStore, error) {
	opts := badger.DefaultOptions(dir).
		WithLogger(nil).
		WithSyncWrites(true).
		WithDetectConflicts(false).
		WithMetricsEnabled(false)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, err
	}
	return &badgerLogStore{db: db}, nil
}

func (s *badgerLogStore) Close() error { return s.db.Close() }

func logKey(index uint64) []byte {
	k := make([]byte, len(logPrefix)+8)
	copy(k, logPrefix)
	binary.BigEndian.PutUint64(k[len(logPrefix):], index)
	return k
}

func stableKey(key []byte) []byte {
	return append(append([]byte(nil), stablePrefix...), key...)
}

// encodeLog: Index, Term (8 bytes big-endian each), Type (1 byte), then Data,
// Extensions and AppendedAt.MarshalBinary, each as uvarint length + bytes.
func encodeLog(l *raft.Log) ([]byte, error) {
	at, err := l.AppendedAt.MarshalBinary()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 0, 17+3*binary.MaxVarintLen64+len(l.Data)+len(l.Extensions)+len(at))
	buf = binary.BigEndian.AppendUint64(buf, l.Index)
	buf = binary.BigEndian.AppendUint64(buf, l.Term)
	buf = append(buf, byte(l.Type))
	for _, b := range [][]byte{l.Data, l.Extensions, at} {
		buf = binary.AppendUvarint(buf, uint64(len(b)))
		buf = append(buf, b...)
	}
	return buf, nil
}

// decodeLog copies what it keeps: val is only valid inside the transaction.
func decodeLog(val []byte, l *raft.Log) error {
	if len(val) < 17 {
		return errors.New("badger log store: short entry")
	}
	*l = raft.Log{
		Index: binary.BigEndian.Uint64(val[0:8]),
		Term:  binary.BigEndian.Uint64(val[8:16]),
		Type:  raft.LogType(val[16]),
	}
	rest := val[17:]
	var fields [3][]byte
	for i := range fields {
		n, w := binary.Uvarint(rest)
		if w <= 0 || uint64(len(rest)-w) < n {
			return errors.New("badger log store: corrupt entry")
		}
		if n > 0 {
			fields[i] = bytes.Clone(rest[w : w+int(n)])
		}
		rest = rest[w+int(n):]
	}
	l.Data, l.Extensions = fields[0], fields[1]
	return l.AppendedAt.UnmarshalBinary(fields[2])
}

func (s *badgerLogStore) edgeIndex(reverse bool) (uint64, error) {
	var idx uint64
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Reverse = reverse
		opts.Prefix = logPrefix
		it := txn.NewIterator(opts)
		defer it.Close()
		seek := logPrefix
		if reverse {
			seek = logKey(^uint64(0))
		}
		it.Seek(seek)
		if it.ValidForPrefix(logPrefix) {
			idx = binary.BigEndian.Uint64(it.Item().Key()[len(logPrefix):])
		}
		return nil
	})
	return idx, err
}

// FirstIndex implements raft.LogStore; 0 when there are no entries.
func (s *badgerLogStore) FirstIndex() (uint64, error) { return s.edgeIndex(false) }

// LastIndex implements raft.LogStore; 0 when there are no entries.
func (s *badgerLogStore) LastIndex() (uint64, error) { return s.edgeIndex(true) }

// GetLog implements raft.LogStore.
func (s *badgerLogStore) GetLog(index uint64, l *raft.Log) error {
	return s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(logKey(index))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return raft.ErrLogNotFound
		}
		if err != nil {
			return err
		}
		return item.Value(func(val []byte) error { return decodeLog(val, l) })
	})
}

// StoreLog implements raft.LogStore.
func (s *badgerLogStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs implements raft.LogStore: one transaction, one synced commit.
func (s *badgerLogStore) StoreLogs(logs []*raft.Log) error {
	return s.db.Update(func(txn *badger.Txn) error {
		for _, l := range logs {
			val, err := encodeLog(l)
			if err != nil {
				return err
			}
			if err := txn.Set(logKey(l.Index), val); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteRange implements raft.LogStore: deletes the entries in [min, max]. A
// WriteBatch splits the deletes over as many transactions as they need.
func (s *badgerLogStore) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = logPrefix
		it := txn.NewIterator(opts)
		defer it.Close()
		end := logKey(max)
		for it.Seek(logKey(min)); it.ValidForPrefix(logPrefix); it.Next() {
			k := it.Item().Key()
			if bytes.Compare(k, end) > 0 {
				break
			}
			keys = append(keys, bytes.Clone(k))
		}
		return nil
	})
	if err != nil || len(keys) == 0 {
		return err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// Set implements raft.StableStore.
func (s *badgerLogStore) Set(key, val []byte) error {
	return s.db.Update(func(txn *badger.Txn) error { return txn.Set(stableKey(key), val) })
}

// Get implements raft.StableStore: a missing key is the error "not found".
func (s *badgerLogStore) Get(key []byte) ([]byte, error) {
	var val []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(stableKey(key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return errStableNotFound
		}
		if err != nil {
			return err
		}
		val, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	return val, nil
}

// SetUint64 implements raft.StableStore.
func (s *badgerLogStore) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 implements raft.StableStore: a missing key is 0 and no error, as in
// raft's InmemStore and raft-wal.
func (s *badgerLogStore) GetUint64(key []byte) (uint64, error) {
	val, err := s.Get(key)
	if errors.Is(err, errStableNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(val) != 8 {
		return 0, fmt.Errorf("badger log store: GetUint64 on a %d-byte value", len(val))
	}
	return binary.BigEndian.Uint64(val), nil
}

func TestBadgerLogStore_Contract(t *testing.T) {
	s, err := openBadgerLogStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	checkEdges := func(first, last uint64) {
		t.Helper()
		if got, err := s.FirstIndex(); err != nil || got != first {
			t.Fatalf("FirstIndex = %d, %v; want %d", got, err, first)
		}
		if got, err := s.LastIndex(); err != nil || got != last {
			t.Fatalf("LastIndex = %d, %v; want %d", got, err, last)
		}
	}
	checkEdges(0, 0)
	var l raft.Log
	if err := s.GetLog(1, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog on empty store: %v", err)
	}

	at := time.Date(2026, 11, 27, 10, 0, 0, 123, time.UTC)
	want := &raft.Log{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte("conf"), Extensions: []byte("ext"), AppendedAt: at}
	if err := s.StoreLog(want); err != nil {
		t.Fatal(err)
	}
	var batch []*raft.Log
	for i := uint64(2); i <= 300; i++ {
		batch = append(batch, &raft.Log{Index: i, Term: 2, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("cmd-%d", i)), AppendedAt: at})
	}
	if err := s.StoreLogs(batch); err != nil {
		t.Fatal(err)
	}
	checkEdges(1, 300)

	if err := s.GetLog(1, &l); err != nil {
		t.Fatal(err)
	}
	if l.Index != 1 || l.Term != 1 || l.Type != raft.LogConfiguration || string(l.Data) != "conf" ||
		string(l.Extensions) != "ext" || !l.AppendedAt.Equal(at) {
		t.Fatalf("GetLog(1) = %+v", l)
	}
	if err := s.GetLog(257, &l); err != nil || l.Index != 257 || l.Term != 2 || string(l.Data) != "cmd-257" || l.Extensions != nil {
		t.Fatalf("GetLog(257) = %+v, %v", l, err)
	}

	// Compaction from the head, then truncation of the tail (a conflicting suffix).
	if err := s.DeleteRange(1, 100); err != nil {
		t.Fatal(err)
	}
	checkEdges(101, 300)
	if err := s.GetLog(100, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog(100) after DeleteRange: %v", err)
	}
	if err := s.DeleteRange(251, 300); err != nil {
		t.Fatal(err)
	}
	checkEdges(101, 250)
	if err := s.GetLog(250, &l); err != nil || l.Index != 250 {
		t.Fatalf("GetLog(250) = %+v, %v", l, err)
	}
	if err := s.DeleteRange(101, 250); err != nil {
		t.Fatal(err)
	}
	checkEdges(0, 0)

	// Stable keys: raft treats the error text "not found" as absent.
	if _, err := s.Get([]byte("LastVoteCand")); err == nil || err.Error() != "not found" {
		t.Fatalf("Get of a missing key: %v", err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 0 {
		t.Fatalf("GetUint64 of a missing key = %d, %v", v, err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("node-1")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 42); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "node-1" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 42 {
		t.Fatalf("GetUint64 = %d, %v", v, err)
	}
	// Stable keys live under their own prefix: they are not log entries.
	checkEdges(0, 0)
}

type benchLogStore interface {
	raft.LogStore
	raft.StableStore
	Close() error
}

// BenchmarkLogStore appends batches of entries with 600-byte payloads (about one
// batch command) through raft.NewLogCache(1024, store), as node does, on disk.
// ns/op is one StoreLogs call. The "+compact" variants also delete all but the
// newest 10240 entries every 8192 appended (node's TrailingLogs and
// SnapshotThreshold), inline, as raft does after each snapshot.
func BenchmarkLogStore(b *testing.B) {
	stores := []struct {
		name string
		open func(dir string) (benchLogStore, error)
	}{
		{"wal", func(dir string) (benchLogStore, error) { return raftwal.Open(dir) }},
		{"badger", func(dir string) (benchLogStore, error) { return openBadgerLogStore(dir) }},
	}
	type variant struct {
		batch   int
		compact bool
	}
	variants := []variant{{1, false}, {64, false}, {512, false}, {64, true}}

	rng := rand.New(rand.NewPCG(1, 2))
	payloads := make([][]byte, 64)
	for i := range payloads {
		payloads[i] = make([]byte, 600)
		for j := range payloads[i] {
			payloads[i][j] = byte(rng.UintN(256))
		}
	}

	const threshold, trailing = 8192, 10240
	for _, st := range stores {
		for _, v := range variants {
			name := fmt.Sprintf("%s/batch=%d", st.name, v.batch)
			if v.compact {
				name += "+compact"
			}
			b.Run(name, func(b *testing.B) {
				store, err := st.open(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = store.Close() })
				cache, err := raft.NewLogCache(1024, store)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(v.batch * 600))
				b.ResetTimer()
				var index, first, sinceCompact uint64 = 0, 1, 0
				for range b.N {
					logs := make([]*raft.Log, v.batch)
					now := time.Now()
					for i := range logs {
						index++
						logs[i] = &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: payloads[index%uint64(len(payloads))], AppendedAt: now}
					}
					if err := cache.StoreLogs(logs); err != nil {
						b.Fatal(err)
					}
					sinceCompact += uint64(v.batch)
					if v.compact && sinceCompact >= threshold {
						sinceCompact = 0
						if index > trailing && index-trailing >= first {
							if err := cache.DeleteRange(first, index-trailing); err != nil {
								b.Fatal(err)
							}
							first = index - trailing + 1
						}
					}
				}
				b.StopTimer()
				entries := float64(b.N * v.batch)
				b.ReportMetric(entries/b.Elapsed().Seconds(), "entries/s")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/entries, "ns/entry")
				if got, err := cache.LastIndex(); err != nil || got != index {
					b.Fatalf("LastIndex = %d, %v; want %d", got, err, index)
				}
			})
		}
	}
}
