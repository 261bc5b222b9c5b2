package predlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/hashicorp/go-hclog"

	"github.com/kilnml/kiln/ml"
)

// Options of a Store.
type Options struct {
	// Dir holds the store; empty keeps it in memory (tests).
	Dir string
	// Retention is how long a record, a label and a pending label are kept.
	Retention time.Duration
	// MaxBytes bounds the size of the live records; the oldest go first.
	MaxBytes int64
	// Grace is how long a label no node matched is kept and retried.
	Grace time.Duration
	// Queue is how many records may wait to be written.
	Queue  int
	Logger hclog.Logger
}

// Record is one logged request.
type Record struct {
	ID         string
	At         time.Time
	Deployment string
	Version    uint64
	Latency    time.Duration
	Inputs     []ml.Tensor
	Outputs    []ml.Tensor
	// Labels are the ground truth joined to the record (one per row of its
	// batch); nil until one arrives. Set by Query only.
	Labels []float64
}

// Store is a node's prediction log.
type Store struct {
	db   *badger.DB
	opts Options
	log  hclog.Logger

	queue   chan queued
	seq     atomic.Uint32
	dropped atomic.Uint64
	written atomic.Uint64

	wg       sync.WaitGroup
	stop     chan struct{}
	stopOnce sync.Once
}

type badgerEntry struct{ key, val []byte }

// queued is one record's entries, or (done set) a Sync marker.
type queued struct {
	entries []badgerEntry
	done    chan struct{}
}

const (
	tagRecord  = 'p'
	tagIndex   = 'i'
	tagLabel   = 'l'
	tagPending = 'u'
	suffixLen  = 12 // unix nanos and seq
)

// Open opens (or creates) the store in opts.Dir and starts its writer.
func Open(opts Options) (*Store, error) {
	if opts.Retention <= 0 {
		opts.Retention = 7 * 24 * time.Hour
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 1 << 30
	}
	if opts.Grace <= 0 {
		opts.Grace = time.Hour
	}
	if opts.Queue <= 0 {
		opts.Queue = 1 << 14
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	bo := badger.DefaultOptions(opts.Dir).
		WithInMemory(opts.Dir == "").
		WithLogger(badgerLogger{opts.Logger.Named("badger")}).
		WithSyncWrites(false).
		WithDetectConflicts(false).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(32 << 20).
		WithCompression(options.None).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2).
		WithMetricsEnabled(false)
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("predlog: open badger in %q: %w", opts.Dir, err)
	}
	s := &Store{db: db, opts: opts, log: opts.Logger, queue: make(chan queued, opts.Queue), stop: make(chan struct{})}
	s.wg.Add(1)
	go s.writer()
	return s, nil
}

// Close stops the writer after it has written what is queued, and closes
// the store.
func (s *Store) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	s.wg.Wait()
	return s.db.Close()
}

// Dropped is how many records were dropped because the queue was full;
// Written how many were written.
func (s *Store) Dropped() uint64 { return s.dropped.Load() }
func (s *Store) Written() uint64 { return s.written.Load() }

// Append queues r to be written, and reports false when the queue was full
// (the record is dropped). It encodes r at once, so the caller may reuse
// r's tensors when it returns.
func (s *Store) Append(r *Record) bool {
	suffix := make([]byte, 0, suffixLen)
	suffix = binary.BigEndian.AppendUint64(suffix, uint64(r.At.UnixNano()))
	suffix = binary.BigEndian.AppendUint32(suffix, s.seq.Add(1))
	key := recordKey(r.Deployment, suffix)
	idx := append([]byte{tagIndex}, r.ID...)
	entries := []badgerEntry{{key, encodeRecord(r)}, {idx, key[1:]}}
	select {
	case s.queue <- queued{entries: entries}:
		return true
	default:
		s.dropped.Add(1)
		return false
	}
}

// writer drains the queue in batches until Close.
func (s *Store) writer() {
	defer s.wg.Done()
	for {
		var first queued
		select {
		case first = <-s.queue:
		case <-s.stop:
			for {
				select {
				case e := <-s.queue:
					s.write([]queued{e})
				default:
					return
				}
			}
		}
		batch := []queued{first}
	drain:
		for len(batch) < 4096 {
			select {
			case e := <-s.queue:
				batch = append(batch, e)
			default:
				break drain
			}
		}
		s.write(batch)
	}
}

func (s *Store) write(batch []queued) {
	defer func() {
		for _, q := range batch {
			if q.done != nil {
				close(q.done)
			}
		}
	}()
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	n := 0
	for _, q := range batch {
		for _, e := range q.entries {
			if err := wb.SetEntry(badger.NewEntry(e.key, e.val).WithTTL(s.opts.Retention)); err != nil {
				s.log.Warn("prediction log: write failed", "error", err)
				return
			}
		}
		if q.done == nil {
			n++
		}
	}
	if err := wb.Flush(); err != nil {
		s.log.Warn("prediction log: write failed", "error", err)
		return
	}
	s.written.Add(uint64(n))
}

// Sync waits until every record appended before the call is written (or
// the store is closed).
func (s *Store) Sync() {
	done := make(chan struct{})
	select {
	case s.queue <- queued{done: done}:
	case <-s.stop:
		return
	}
	select {
	case <-done:
	case <-s.stop:
	}
}

func recordPrefix(deployment string) []byte {
	b := make([]byte, 0, len(deployment)+2+suffixLen)
	b = append(b, tagRecord)
	b = append(b, deployment...)
	return append(b, 0)
}

func recordKey(deployment string, suffix []byte) []byte {
	return append(recordPrefix(deployment), suffix...)
}

func timeKey(prefix []byte, t time.Time) []byte {
	return binary.BigEndian.AppendUint64(slices.Clip(prefix), uint64(max(t.UnixNano(), 0)))
}

// Query calls fn for the records of deployment logged in [from, to), oldest
// first, with their labels, until fn returns false.
func (s *Store) Query(deployment string, from, to time.Time, fn func(*Record) bool) error {
	return s.db.View(func(txn *badger.Txn) error {
		prefix := recordPrefix(deployment)
		return scanRange(txn, prefix, from, to, func(key []byte, item *badger.Item) (bool, error) {
			var r *Record
			err := item.Value(func(val []byte) error {
				var err error
				r, err = decodeRecord(val)
				return err
			})
			if err != nil {
				return false, err
			}
			r.Deployment = deployment
			r.At = time.Unix(0, int64(binary.BigEndian.Uint64(key[len(prefix):]))).UTC()
			lkey := slices.Clone(key)
			lkey[0] = tagLabel
			if li, err := txn.Get(lkey); err == nil {
				_ = li.Value(func(val []byte) error { r.Labels = decodeFloats(val); return nil })
			}
			return fn(r), nil
		})
	})
}

// scanRange iterates the keys under prefix whose time lies in [from, to).
func scanRange(txn *badger.Txn, prefix []byte, from, to time.Time, fn func(key []byte, item *badger.Item) (bool, error)) error {
	o := badger.DefaultIteratorOptions
	o.Prefix = prefix
	// Values are small and live in the LSM tree beside their keys:
	// prefetching them would only start a goroutine per item.
	o.PrefetchValues = false
	it := txn.NewIterator(o)
	defer it.Close()
	end := timeKey(prefix, to)
	for it.Seek(timeKey(prefix, from)); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		key := item.Key()
		if bytes.Compare(key, end) >= 0 || len(key) != len(prefix)+suffixLen {
			break
		}
		more, err := fn(key, item)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// Columns are a window's logged rows, one slice per value: Features[j][i]
// is value j of row i's inputs (all input tensors' values of the row, in
// order), Outputs[j][i] value j of row i's first output.
type Columns struct {
	Rows     int
	Features [][]float64
	Outputs  [][]float64
	// Skipped counts rows whose width differed from the first row's.
	Skipped int
	// Truncated is true when the window held more than maxRows rows.
	Truncated bool
}

// Window reads the rows of deployment logged in [from, to) as columns, at
// most maxRows of them (the oldest). It reads the range in as many parts,
// split by time, as there are CPUs, each part by a goroutine of its own:
// decoding a million records is most of a drift check's work.
func (s *Store) Window(deployment string, from, to time.Time, maxRows int) (*Columns, error) {
	parts := max(runtime.GOMAXPROCS(0), 1)
	span := to.Sub(from)
	if span < time.Duration(parts) || parts == 1 {
		return s.window(deployment, from, to, maxRows)
	}
	results := make([]*Columns, parts)
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for i := range parts {
		lo := from.Add(span * time.Duration(i) / time.Duration(parts))
		hi := from.Add(span * time.Duration(i+1) / time.Duration(parts))
		if i == parts-1 {
			hi = to
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.window(deployment, lo, hi, maxRows)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// The parts in time order, cut at maxRows; a part whose width differs
	// from the first non-empty part's is skipped whole.
	out := &Columns{}
	var first *Columns
	for _, c := range results {
		out.Skipped += c.Skipped
		if c.Rows == 0 {
			continue
		}
		if first == nil {
			first = c
			out.Features = make([][]float64, len(c.Features))
			out.Outputs = make([][]float64, len(c.Outputs))
			total := 0
			for _, r := range results {
				total += r.Rows
			}
			total = min(total, maxRows)
			for j := range out.Features {
				out.Features[j] = make([]float64, 0, total)
			}
			for j := range out.Outputs {
				out.Outputs[j] = make([]float64, 0, total)
			}
		}
		if len(c.Features) != len(first.Features) || len(c.Outputs) != len(first.Outputs) {
			out.Skipped += c.Rows
			continue
		}
		n := min(c.Rows, maxRows-out.Rows)
		for j := range c.Features {
			out.Features[j] = append(out.Features[j], c.Features[j][:n]...)
		}
		for j := range c.Outputs {
			out.Outputs[j] = append(out.Outputs[j], c.Outputs[j][:n]...)
		}
		out.Rows += n
		if n < c.Rows || c.Truncated {
			out.Truncated = true
			break
		}
	}
	return out, nil
}

// window reads one part of a Window.
func (s *Store) window(deployment string, from, to time.Time, maxRows int) (*Columns, error) {
	c := &Columns{}
	width, outWidth := -1, -1
	var rs rows
	err := s.db.View(func(txn *badger.Txn) error {
		return scanRange(txn, recordPrefix(deployment), from, to, func(_ []byte, item *badger.Item) (bool, error) {
			if err := item.Value(func(val []byte) error { return decodeRows(val, &rs) }); err != nil {
				return false, err
			}
			if rs.Batch == 0 {
				return true, nil
			}
			if width < 0 {
				width, outWidth = rs.InWidth, rs.OutWidth
				c.Features = make([][]float64, width)
				c.Outputs = make([][]float64, outWidth)
			}
			if rs.InWidth != width || rs.OutWidth != outWidth {
				c.Skipped += rs.Batch
				return true, nil
			}
			for i := range rs.Batch {
				if c.Rows >= maxRows {
					c.Truncated = true
					return false, nil
				}
				for j, v := range rs.In[i*width : (i+1)*width] {
					c.Features[j] = append(c.Features[j], v)
				}
				for j, v := range rs.Out[i*outWidth : (i+1)*outWidth] {
					c.Outputs[j] = append(c.Outputs[j], v)
				}
				c.Rows++
			}
			return true, nil
		})
	})
	return c, err
}

// Match is where a request ID was logged.
type Match struct {
	Deployment string
	Version    uint64
	// Rows is the request's batch size; OutWidth its first output's values
	// per row.
	Rows     int
	OutWidth int
	// rest is the record's key after its tag: deployment, 0, time, seq.
	rest []byte
}

// Lookup finds the records of ids on this node.
func (s *Store) Lookup(ids []string) (map[string]Match, error) {
	out := map[string]Match{}
	err := s.db.View(func(txn *badger.Txn) error {
		for _, id := range ids {
			item, err := txn.Get(append([]byte{tagIndex}, id...))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			var pkey []byte
			if err := item.Value(func(v []byte) error { pkey = append([]byte{tagRecord}, v...); return nil }); err != nil {
				return err
			}
			rec, err := txn.Get(pkey)
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue // expired
			}
			if err != nil {
				return err
			}
			m := Match{rest: pkey[1:]}
			if i := bytes.IndexByte(pkey, 0); i > 0 {
				m.Deployment = string(pkey[1:i])
			}
			err = rec.Value(func(val []byte) error {
				r, err := decodeRecord(val)
				if err != nil {
					return err
				}
				m.Version = r.Version
				if len(r.Inputs) > 0 && len(r.Inputs[0].Shape) > 0 {
					m.Rows = r.Inputs[0].Shape[0]
				} else {
					m.Rows = 1
				}
				if len(r.Outputs) > 0 && m.Rows > 0 {
					m.OutWidth = r.Outputs[0].Len() / m.Rows
				}
				return nil
			})
			if err != nil {
				return err
			}
			out[id] = m
		}
		return nil
	})
	return out, err
}

// Label stores labels for ids this node logged (Lookup's matches), one
// value per row of each request. It returns the IDs it no longer finds.
func (s *Store) Label(labels map[string][]float64) ([]string, error) {
	ids := make([]string, 0, len(labels))
	for id := range labels {
		ids = append(ids, id)
	}
	found, err := s.Lookup(ids)
	if err != nil {
		return nil, err
	}
	var missing []string
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, id := range ids {
		m, ok := found[id]
		if !ok {
			missing = append(missing, id)
			continue
		}
		key := append([]byte{tagLabel}, m.rest...)
		if err := wb.SetEntry(badger.NewEntry(key, encodeFloats(labels[id])).WithTTL(s.opts.Retention)); err != nil {
			return nil, err
		}
	}
	return missing, wb.Flush()
}

// Labeled calls fn for every labelled record of deployment logged in
// [from, to): its version, its first output (rows × width values) and its
// labels.
func (s *Store) Labeled(deployment string, from, to time.Time, fn func(version uint64, out ml.Tensor, labels []float64)) error {
	prefix := append([]byte{tagLabel}, deployment...)
	prefix = append(prefix, 0)
	return s.db.View(func(txn *badger.Txn) error {
		return scanRange(txn, prefix, from, to, func(key []byte, item *badger.Item) (bool, error) {
			var labels []float64
			if err := item.Value(func(v []byte) error { labels = decodeFloats(v); return nil }); err != nil {
				return false, err
			}
			pkey := slices.Clone(key)
			pkey[0] = tagRecord
			rec, err := txn.Get(pkey)
			if errors.Is(err, badger.ErrKeyNotFound) {
				return true, nil
			}
			if err != nil {
				return false, err
			}
			return true, rec.Value(func(val []byte) error {
				r, err := decodeRecord(val)
				if err != nil {
					return err
				}
				if len(r.Outputs) > 0 {
					fn(r.Version, r.Outputs[0], labels)
				}
				return nil
			})
		})
	})
}

// Pending is a label no node has matched yet.
type Pending struct {
	ID string
	// Label is the label as the client sent it (JSON); Deployment the
	// deployment the client named, if any.
	Label      []byte
	Deployment string
	Received   time.Time
	key        []byte
}

// AddPending keeps labels that matched nothing, for Options.Grace.
func (s *Store) AddPending(items []Pending, now time.Time) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, p := range items {
		key := binary.BigEndian.AppendUint64([]byte{tagPending}, uint64(now.UnixNano()))
		key = append(key, p.ID...)
		val := binary.AppendUvarint(nil, uint64(len(p.Deployment)))
		val = append(append(val, p.Deployment...), p.Label...)
		if err := wb.SetEntry(badger.NewEntry(key, val).WithTTL(s.opts.Grace)); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// PendingLabels lists up to limit pending labels, oldest first, and how
// many there are in all.
func (s *Store) PendingLabels(limit int) ([]Pending, int, error) {
	var out []Pending
	n, err := s.eachPending(func(p *Pending) {
		if len(out) < limit {
			out = append(out, *p)
		}
	})
	return out, n, err
}

// CountPending counts the pending labels for which match is true.
func (s *Store) CountPending(match func(*Pending) bool) (int, error) {
	n := 0
	_, err := s.eachPending(func(p *Pending) {
		if match(p) {
			n++
		}
	})
	return n, err
}

// eachPending calls fn for every pending label, oldest first, and returns
// how many there are.
func (s *Store) eachPending(fn func(*Pending)) (int, error) {
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Prefix = []byte{tagPending}
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
			item := it.Item()
			key := item.KeyCopy(nil)
			if len(key) < 9 {
				continue
			}
			p := Pending{ID: string(key[9:]), Received: time.Unix(0, int64(binary.BigEndian.Uint64(key[1:9]))), key: key}
			err := item.Value(func(v []byte) error {
				l, k := binary.Uvarint(v)
				if k <= 0 || uint64(len(v)-k) < l {
					return fmt.Errorf("predlog: bad pending label %q", p.ID)
				}
				p.Deployment = string(v[k : k+int(l)])
				p.Label = slices.Clone(v[k+int(l):])
				return nil
			})
			if err != nil {
				return err
			}
			fn(&p)
		}
		return nil
	})
	return n, err
}

// RemovePending deletes pending labels (matched, or refused).
func (s *Store) RemovePending(items []Pending) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, p := range items {
		if err := wb.Delete(p.key); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// Deployments lists the deployments with records, with each one's oldest
// record's time.
func (s *Store) Deployments() (map[string]time.Time, error) {
	out := map[string]time.Time{}
	err := s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Prefix = []byte{tagRecord}
		o.PrefetchValues = false
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Rewind(); it.Valid(); {
			key := it.Item().Key()
			i := bytes.IndexByte(key, 0)
			if i < 0 || len(key) != i+1+suffixLen {
				it.Next()
				continue
			}
			name := string(key[1:i])
			out[name] = time.Unix(0, int64(binary.BigEndian.Uint64(key[i+1:])))
			it.Seek(append([]byte{tagRecord}, append([]byte(name), 1)...))
		}
		return nil
	})
	return out, err
}

// Trim deletes the oldest records, across deployments by time, while the
// live records take more than MaxBytes, down to nine tenths of it. It
// returns how many it deleted. Disk space follows as Badger compacts.
func (s *Store) Trim() (int, error) {
	type rec struct {
		key  []byte
		at   uint64
		size int64
	}
	var all []rec
	var total int64
	err := s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Prefix = []byte{tagRecord}
		o.PrefetchValues = false
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			key := item.KeyCopy(nil)
			if len(key) < suffixLen+2 {
				continue
			}
			size := item.EstimatedSize() + int64(len(key))
			total += size
			all = append(all, rec{key: key, at: binary.BigEndian.Uint64(key[len(key)-suffixLen:]), size: size})
		}
		return nil
	})
	if err != nil || total <= s.opts.MaxBytes {
		return 0, err
	}
	slices.SortFunc(all, func(a, b rec) int { return cmpUint(a.at, b.at) })
	target := s.opts.MaxBytes / 10 * 9
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	n := 0
	for _, r := range all {
		if total <= target {
			break
		}
		if err := wb.Delete(r.key); err != nil {
			return n, err
		}
		lkey := slices.Clone(r.key)
		lkey[0] = tagLabel
		if err := wb.Delete(lkey); err != nil {
			return n, err
		}
		total -= r.size
		n++
	}
	return n, wb.Flush()
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// RunGC reclaims value log space Badger can give back.
func (s *Store) RunGC() {
	for s.db.RunValueLogGC(0.5) == nil {
	}
}

func encodeFloats(v []float64) []byte {
	b := make([]byte, 0, 8*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
	}
	return b
}

func decodeFloats(b []byte) []float64 {
	out := make([]float64, len(b)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out
}

type badgerLogger struct{ log hclog.Logger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.log.Error(fmt.Sprintf(f, a...)) }
func (l badgerLogger) Warningf(f string, a ...any) { l.log.Warn(fmt.Sprintf(f, a...)) }
func (l badgerLogger) Infof(string, ...any)        {}
func (l badgerLogger) Debugf(string, ...any)       {}
