package predlog

import (
	"bytes"
	"cmp"
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

// queued is one encoded record waiting to be written, or (done set) a Sync
// marker.
type queued struct {
	deployment string
	at         int64 // unix nanos
	id         string
	body       []byte // encodeRecord
	done       chan struct{}
}

const (
	tagRecord  = 'p'
	tagIndex   = 'i'
	tagLabel   = 'l'
	tagPending = 'u'
	suffixLen  = 12 // a block's unix nanos and seq
	posLen     = 2  // a record's place in its block, in a label's key
)

// Blocks: the writer groups the records of one deployment it writes at once
// into blocks of at most maxBlockRecords spanning at most maxBlockSpan, so
// that a Badger entry (and its costs: a skiplist insert, a log write, an
// iterator step) carries many records. A block's key holds its oldest
// record's time; reading [from, to) starts at from - maxBlockSpan and keeps
// each record by its own time.
const (
	maxBlockRecords = 256
	maxBlockSpan    = time.Second
	// lingerFor is how long the writer waits for more records before a
	// write, once it has one: longer gives larger blocks, shorter makes a
	// record readable sooner.
	lingerFor   = 5 * time.Millisecond
	maxBatchLen = 8192
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
	q := queued{deployment: r.Deployment, at: max(r.At.UnixNano(), 0), id: r.ID, body: encodeRecord(r)}
	select {
	case s.queue <- q:
		return true
	default:
		s.dropped.Add(1)
		return false
	}
}

// writer drains the queue until Close: it takes what waits, and what comes
// within lingerFor, and writes it as one batch.
func (s *Store) writer() {
	defer s.wg.Done()
	linger := time.NewTimer(time.Hour)
	defer linger.Stop()
	for {
		var first queued
		select {
		case first = <-s.queue:
		case <-s.stop:
			s.drain()
			return
		}
		batch := []queued{first}
		linger.Reset(lingerFor)
	collect:
		for len(batch) < maxBatchLen && first.done == nil {
			select {
			case q := <-s.queue:
				batch = append(batch, q)
				if q.done != nil {
					break collect // a Sync waits: write now
				}
			case <-linger.C:
				break collect
			case <-s.stop:
				break collect
			}
		}
		if !linger.Stop() {
			select {
			case <-linger.C:
			default:
			}
		}
		s.write(batch)
	}
}

// drain writes what is queued when the store closes.
func (s *Store) drain() {
	for {
		var batch []queued
	take:
		for len(batch) < maxBatchLen {
			select {
			case q := <-s.queue:
				batch = append(batch, q)
			default:
				break take
			}
		}
		if len(batch) == 0 {
			return
		}
		s.write(batch)
	}
}

// write writes a batch of records as blocks, with an index entry per
// record, and then releases the batch's Sync markers.
func (s *Store) write(batch []queued) {
	defer func() {
		for _, q := range batch {
			if q.done != nil {
				close(q.done)
			}
		}
	}()
	recs := make([]queued, 0, len(batch))
	for _, q := range batch {
		if q.done == nil {
			recs = append(recs, q)
		}
	}
	if len(recs) == 0 {
		return
	}
	slices.SortStableFunc(recs, func(a, b queued) int {
		if c := cmp.Compare(a.deployment, b.deployment); c != 0 {
			return c
		}
		return cmp.Compare(a.at, b.at)
	})
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	set := func(key, val []byte) bool {
		if err := wb.SetEntry(badger.NewEntry(key, val).WithTTL(s.opts.Retention)); err != nil {
			s.log.Warn("prediction log: write failed", "error", err)
			return false
		}
		return true
	}
	for i := 0; i < len(recs); {
		j := i + 1
		for j < len(recs) && j-i < maxBlockRecords && recs[j].deployment == recs[i].deployment &&
			time.Duration(recs[j].at-recs[i].at) <= maxBlockSpan {
			j++
		}
		block := recs[i:j]
		key := recordPrefix(block[0].deployment)
		key = binary.BigEndian.AppendUint64(key, uint64(block[0].at))
		key = binary.BigEndian.AppendUint32(key, s.seq.Add(1))
		n := 0
		for _, q := range block {
			n += len(q.body) + 20
		}
		val := make([]byte, 0, n)
		for pos, q := range block {
			val = binary.AppendUvarint(val, uint64(q.at-block[0].at))
			val = binary.AppendUvarint(val, uint64(len(q.body)))
			val = append(val, q.body...)
			idx := append(slices.Clip(key[1:]), byte(pos>>8), byte(pos))
			if !set(append([]byte{tagIndex}, q.id...), idx) {
				return
			}
		}
		if !set(key, val) {
			return
		}
		i = j
	}
	if err := wb.Flush(); err != nil {
		s.log.Warn("prediction log: write failed", "error", err)
		return
	}
	s.written.Add(uint64(len(recs)))
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
	b := make([]byte, 0, len(deployment)+2+suffixLen+posLen)
	b = append(b, tagRecord)
	b = append(b, deployment...)
	return append(b, 0)
}

func timeKey(prefix []byte, t time.Time) []byte {
	return binary.BigEndian.AppendUint64(slices.Clip(prefix), uint64(max(t.UnixNano(), 0)))
}

// blockRecord is one record of a block: its place, time and encoding.
type blockRecord struct {
	pos  int
	at   int64
	body []byte
}

// eachInBlock calls fn for each record of a block whose key time is base,
// until fn returns false.
func eachInBlock(base int64, val []byte, fn func(blockRecord) bool) error {
	for pos := 0; len(val) > 0; pos++ {
		d, n := binary.Uvarint(val)
		if n <= 0 {
			return errCorrupt
		}
		val = val[n:]
		l, n := binary.Uvarint(val)
		if n <= 0 || uint64(len(val)-n) < l {
			return errCorrupt
		}
		body := val[n : n+int(l)]
		val = val[n+int(l):]
		if !fn(blockRecord{pos: pos, at: base + int64(d), body: body}) {
			return nil
		}
	}
	return nil
}

// recordAt finds the record at pos of a block.
func recordAt(base int64, val []byte, pos int) (blockRecord, bool, error) {
	var out blockRecord
	found := false
	err := eachInBlock(base, val, func(r blockRecord) bool {
		if r.pos == pos {
			out, found = r, true
			return false
		}
		return true
	})
	return out, found, err
}

// scanBlocks calls fn for every record of deployment's blocks whose own
// time lies in [from, to), with its block's key, until fn returns false.
func scanBlocks(txn *badger.Txn, deployment string, from, to time.Time, fn func(key []byte, r blockRecord) (bool, error)) error {
	prefix := recordPrefix(deployment)
	lo, hi := from.UnixNano(), to.UnixNano()
	return scanRange(txn, prefix, from.Add(-maxBlockSpan), to, func(key []byte, item *badger.Item) (bool, error) {
		base := int64(binary.BigEndian.Uint64(key[len(prefix):]))
		more := true
		err := item.Value(func(val []byte) error {
			var ferr error
			err := eachInBlock(base, val, func(r blockRecord) bool {
				if r.at < lo || r.at >= hi {
					return true
				}
				more, ferr = fn(key, r)
				return more && ferr == nil
			})
			if ferr != nil {
				return ferr
			}
			return err
		})
		return more, err
	})
}

// scanRange iterates the keys under prefix whose time lies in [from, to).
func scanRange(txn *badger.Txn, prefix []byte, from, to time.Time, fn func(key []byte, item *badger.Item) (bool, error)) error {
	o := badger.DefaultIteratorOptions
	o.Prefix = prefix
	// Values live in the LSM tree beside their keys: prefetching them would
	// only start a goroutine per item.
	o.PrefetchValues = false
	it := txn.NewIterator(o)
	defer it.Close()
	end := timeKey(prefix, to)
	for it.Seek(timeKey(prefix, from)); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		key := item.Key()
		if bytes.Compare(key, end) >= 0 || len(key) < len(prefix)+suffixLen {
			break
		}
		more, err := fn(key, item)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// labelKey is the key of the labels of the record at pos of the block
// whose key is 'p' + rest.
func labelKey(rest []byte, pos int) []byte {
	k := make([]byte, 0, 1+len(rest)+posLen)
	k = append(k, tagLabel)
	k = append(k, rest...)
	return append(k, byte(pos>>8), byte(pos))
}

// Query calls fn for the records of deployment logged in [from, to), in
// time order within each write, with their labels, until fn returns false.
func (s *Store) Query(deployment string, from, to time.Time, fn func(*Record) bool) error {
	return s.db.View(func(txn *badger.Txn) error {
		return scanBlocks(txn, deployment, from, to, func(key []byte, br blockRecord) (bool, error) {
			r, err := decodeRecord(br.body)
			if err != nil {
				return false, err
			}
			r.Deployment = deployment
			r.At = time.Unix(0, br.at).UTC()
			if li, err := txn.Get(labelKey(key[1:], br.pos)); err == nil {
				_ = li.Value(func(val []byte) error { r.Labels = decodeFloats(val); return nil })
			}
			return fn(r), nil
		})
	})
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
			total := 0
			for _, r := range results {
				total += r.Rows
			}
			total = min(total, maxRows)
			out.Features = makeColumns(len(c.Features), total)
			out.Outputs = makeColumns(len(c.Outputs), total)
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

func makeColumns(n, capacity int) [][]float64 {
	out := make([][]float64, n)
	for j := range out {
		out[j] = make([]float64, 0, capacity)
	}
	return out
}

// window reads one part of a Window.
func (s *Store) window(deployment string, from, to time.Time, maxRows int) (*Columns, error) {
	c := &Columns{}
	width, outWidth := -1, -1
	var rs rows
	err := s.db.View(func(txn *badger.Txn) error {
		return scanBlocks(txn, deployment, from, to, func(_ []byte, br blockRecord) (bool, error) {
			if err := decodeRows(br.body, &rs); err != nil {
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
	// rest is the record's block key after its tag (deployment, 0, time,
	// seq), and pos its place in the block.
	rest []byte
	pos  int
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
			var where []byte
			if err := item.Value(func(v []byte) error { where = slices.Clone(v); return nil }); err != nil {
				return err
			}
			i := bytes.IndexByte(where, 0)
			if i < 0 || len(where) != i+1+suffixLen+posLen {
				return errCorrupt
			}
			m := Match{Deployment: string(where[:i]), rest: where[:len(where)-posLen], pos: int(where[len(where)-2])<<8 | int(where[len(where)-1])}
			block, err := txn.Get(append([]byte{tagRecord}, m.rest...))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue // expired, or trimmed
			}
			if err != nil {
				return err
			}
			base := int64(binary.BigEndian.Uint64(m.rest[i+1:]))
			found := false
			err = block.Value(func(val []byte) error {
				br, ok, err := recordAt(base, val, m.pos)
				if err != nil || !ok {
					return err
				}
				r, err := decodeRecord(br.body)
				if err != nil {
					return err
				}
				found = true
				m.Version, m.Rows = r.Version, 1
				if len(r.Inputs) > 0 && len(r.Inputs[0].Shape) > 0 {
					m.Rows = r.Inputs[0].Shape[0]
				}
				if len(r.Outputs) > 0 && m.Rows > 0 {
					m.OutWidth = r.Outputs[0].Len() / m.Rows
				}
				return nil
			})
			if err != nil {
				return err
			}
			if found {
				out[id] = m
			}
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
		if err := wb.SetEntry(badger.NewEntry(labelKey(m.rest, m.pos), encodeFloats(labels[id])).WithTTL(s.opts.Retention)); err != nil {
			return nil, err
		}
	}
	return missing, wb.Flush()
}

// Labeled calls fn for every labelled record of deployment logged in
// [from, to): its version, when it was logged, its first output (rows ×
// width values) and its labels.
func (s *Store) Labeled(deployment string, from, to time.Time, fn func(version uint64, at time.Time, out ml.Tensor, labels []float64)) error {
	prefix := append([]byte{tagLabel}, deployment...)
	prefix = append(prefix, 0)
	lo, hi := from.UnixNano(), to.UnixNano()
	return s.db.View(func(txn *badger.Txn) error {
		var blockKey, block []byte // the block last read
		return scanRange(txn, prefix, from.Add(-maxBlockSpan), to, func(key []byte, item *badger.Item) (bool, error) {
			if len(key) != len(prefix)+suffixLen+posLen {
				return true, nil
			}
			rest := key[1 : len(key)-posLen]
			if !bytes.Equal(blockKey, rest) {
				bi, err := txn.Get(append([]byte{tagRecord}, rest...))
				if errors.Is(err, badger.ErrKeyNotFound) {
					return true, nil
				}
				if err != nil {
					return false, err
				}
				if block, err = bi.ValueCopy(block[:0]); err != nil {
					return false, err
				}
				blockKey = slices.Clone(rest)
			}
			base := int64(binary.BigEndian.Uint64(key[len(prefix):]))
			br, ok, err := recordAt(base, block, int(key[len(key)-2])<<8|int(key[len(key)-1]))
			if err != nil || !ok || br.at < lo || br.at >= hi {
				return err == nil, err
			}
			var labels []float64
			if err := item.Value(func(v []byte) error { labels = decodeFloats(v); return nil }); err != nil {
				return false, err
			}
			r, err := decodeRecord(br.body)
			if err != nil {
				return false, err
			}
			if len(r.Outputs) > 0 {
				fn(r.Version, time.Unix(0, br.at).UTC(), r.Outputs[0], labels)
			}
			return true, nil
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

// Trim deletes the oldest blocks of records, across deployments by time,
// while the live records take more than MaxBytes, down to nine tenths of it,
// with their labels. It returns how many records it deleted. Disk space
// follows as Badger compacts.
func (s *Store) Trim() (int, error) {
	type block struct {
		key     []byte
		at      uint64
		size    int64
		records int
	}
	var all []block
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
			b := block{key: key, at: binary.BigEndian.Uint64(key[len(key)-suffixLen:]), size: item.EstimatedSize() + int64(len(key))}
			total += b.size
			all = append(all, b)
		}
		return nil
	})
	if err != nil || total <= s.opts.MaxBytes {
		return 0, err
	}
	slices.SortFunc(all, func(a, b block) int { return cmp.Compare(a.at, b.at) })
	target := s.opts.MaxBytes / 10 * 9
	var doomed [][]byte
	for _, b := range all {
		if total <= target {
			break
		}
		doomed = append(doomed, b.key)
		total -= b.size
	}
	n := 0
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	err = s.db.View(func(txn *badger.Txn) error {
		for _, key := range doomed {
			item, err := txn.Get(key)
			if err != nil {
				continue
			}
			base := int64(binary.BigEndian.Uint64(key[len(key)-suffixLen:]))
			_ = item.Value(func(val []byte) error {
				return eachInBlock(base, val, func(blockRecord) bool { n++; return true })
			})
			if err := wb.Delete(key); err != nil {
				return err
			}
			o := badger.DefaultIteratorOptions
			o.Prefix = append([]byte{tagLabel}, key[1:]...)
			o.PrefetchValues = false
			it := txn.NewIterator(o)
			for it.Rewind(); it.Valid(); it.Next() {
				if err := wb.Delete(it.Item().KeyCopy(nil)); err != nil {
					it.Close()
					return err
				}
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, wb.Flush()
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
