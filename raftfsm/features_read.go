package raftfsm

import (
	"bytes"
	"fmt"
	"math"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Source returns a source by name.
func (t *Txn) Source(name string) (*structs.Source, error) {
	return readOne(t, sourceKey(name), utcSource, func() error {
		return structs.Errorf(structs.CodeNotFound, "source %q not found", name)
	})
}

// Sources returns a page of sources in name order.
func (t *Txn) Sources(cursor string, limit int) ([]*structs.Source, string, error) {
	return readPage(t, prefixSource, cursor, limit, utcSource, func(s *structs.Source) string { return s.Spec.Name })
}

// SourceRuns returns a page of a source's runs (the last 100 are kept), in
// run order.
func (t *Txn) SourceRuns(name, cursor string, limit int) ([]*structs.SourceRun, string, error) {
	return readPage(t, sourceRunPrefix(name), cursor, limit, utcSourceRun, func(r *structs.SourceRun) string { return fmt.Sprintf("%020d", r.Seq) })
}

// SourceRun returns one run of a source.
func (t *Txn) SourceRun(name string, seq uint64) (*structs.SourceRun, error) {
	return readOne(t, sourceRunKey(name, seq), utcSourceRun, func() error {
		return structs.Errorf(structs.CodeNotFound, "source %q has no run %d (the last %d runs are kept)", name, seq, maxSourceRunsKept)
	})
}

func utcEntity(e *structs.Entity) *structs.Entity {
	e.CreatedAt, e.UpdatedAt = e.CreatedAt.UTC(), e.UpdatedAt.UTC()
	return e
}

func utcFeatureView(v *structs.FeatureView) *structs.FeatureView {
	v.CreatedAt, v.UpdatedAt = v.CreatedAt.UTC(), v.UpdatedAt.UTC()
	return v
}

func utcFeatureService(s *structs.FeatureService) *structs.FeatureService {
	s.CreatedAt, s.UpdatedAt = s.CreatedAt.UTC(), s.UpdatedAt.UTC()
	return s
}

// Entity returns an entity by name.
func (t *Txn) Entity(name string) (*structs.Entity, error) {
	return readOne(t, entityKey(name), utcEntity, func() error {
		return structs.Errorf(structs.CodeNotFound, "entity %q not found", name)
	})
}

// Entities returns a page of entities in name order.
func (t *Txn) Entities(cursor string, limit int) ([]*structs.Entity, string, error) {
	return readPage(t, prefixEntity, cursor, limit, utcEntity, func(e *structs.Entity) string { return e.Name })
}

// FeatureView returns a feature view by name.
func (t *Txn) FeatureView(name string) (*structs.FeatureView, error) {
	return readOne(t, featureViewKey(name), utcFeatureView, func() error {
		return structs.Errorf(structs.CodeNotFound, "feature view %q not found", name)
	})
}

// FeatureViews returns a page of feature views in name order.
func (t *Txn) FeatureViews(cursor string, limit int) ([]*structs.FeatureView, string, error) {
	return readPage(t, prefixFeatureView, cursor, limit, utcFeatureView, func(v *structs.FeatureView) string { return v.Name })
}

// FeatureService returns a feature service by name.
func (t *Txn) FeatureService(name string) (*structs.FeatureService, error) {
	return readOne(t, featureServiceKey(name), utcFeatureService, func() error {
		return structs.Errorf(structs.CodeNotFound, "feature service %q not found", name)
	})
}

// FeatureServices returns a page of feature services in name order.
func (t *Txn) FeatureServices(cursor string, limit int) ([]*structs.FeatureService, string, error) {
	return readPage(t, prefixFeatureService, cursor, limit, utcFeatureService, func(s *structs.FeatureService) string { return s.Name })
}

// FeatureCursor reads one view's values. It holds one Badger iterator, so a
// caller reading many entities (a point-in-time frame) pays for it once;
// reading entities in key order makes its seeks short. Not safe for
// concurrent use; Close it before discarding the Txn.
type FeatureCursor struct {
	view string
	it   *badger.Iterator
	rd   bytes.Reader
	dec  *msgpack.Decoder
	row  structs.FeatureRow
}

// FeatureCursor opens a cursor over a view's values.
func (t *Txn) FeatureCursor(view string) (*FeatureCursor, error) {
	return t.featureCursor(view, []byte(featureValuePrefix(view)))
}

// EntityCursor opens a cursor over one entity's values of a view: for a
// single lookup, the iterator then leaves out the tables that cannot hold
// the entity. Reading another entity with it finds nothing.
func (t *Txn) EntityCursor(view string, e structs.EntityKey) (*FeatureCursor, error) {
	return t.featureCursor(view, featureEntityPrefix(view, e))
}

func (t *Txn) featureCursor(view string, prefix []byte) (*FeatureCursor, error) {
	if t.err != nil {
		return nil, t.err
	}
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	opts.PrefetchValues = false // a lookup reads one value
	c := &FeatureCursor{view: view, it: t.txn.NewIterator(opts)}
	c.dec = msgpack.NewDecoder(&c.rd)
	// Integers as int64 and floats as float64, whatever width msgpack
	// chose to encode them in.
	c.dec.UseLooseInterfaceDecoding(true)
	return c, nil
}

// Close releases the iterator.
func (c *FeatureCursor) Close() { c.it.Close() }

// walk calls fn with the rows of entity e at or before at, newest first
// (and of one timestamp, last written first), until fn returns false. The
// row passed is reused between calls.
func (c *FeatureCursor) walk(e structs.EntityKey, at int64, fn func(*structs.FeatureRow) bool) error {
	prefix := featureEntityPrefix(c.view, e)
	for c.it.Seek(featureSeekKey(c.view, e, at, math.MaxUint64)); c.it.Valid(); c.it.Next() {
		item := c.it.Item()
		k := item.Key()
		if len(k) != len(prefix)+16 || !bytes.HasPrefix(k, prefix) {
			return nil
		}
		c.row = structs.FeatureRow{}
		err := item.Value(func(val []byte) error {
			c.rd.Reset(val)
			return c.dec.Decode(&c.row)
		})
		if err != nil {
			return err
		}
		NormalizeValues(c.row.Values)
		if !fn(&c.row) {
			return nil
		}
	}
	return nil
}

// Latest returns the entity's latest row at or before at (Unix
// nanoseconds), or nil. The row is the cursor's own until the next call.
func (c *FeatureCursor) Latest(e structs.EntityKey, at int64) (*structs.FeatureRow, error) {
	var found *structs.FeatureRow
	err := c.walk(e, at, func(r *structs.FeatureRow) bool {
		found = r
		return false
	})
	return found, err
}

// NormalizeValues turns the unsigned integers msgpack may decode into
// int64, the one integer type features carry.
func NormalizeValues(m map[string]any) {
	for k, v := range m {
		if u, ok := v.(uint64); ok && u <= math.MaxInt64 {
			m[k] = int64(u)
		}
	}
}

// ViewRead is what one entity's features of one view are at a time: the
// values, in the order of the features asked for (nil where there is none),
// and the timestamp each comes from (zero where there is none).
type ViewRead struct {
	Values []any
	Times  []time.Time
}

// Read computes features of view v for entity e as of at:
//   - a row feature is the value of the latest row at or before at, unless
//     that row is older than the view's TTL at that time (then nil);
//   - a windowed feature aggregates its column over the rows with a
//     timestamp in (at - window, at]: count and sum of no rows are 0, the
//     others nil. Its time is the newest row's.
//
// out is filled and returned; pass one to reuse its slices.
func (c *FeatureCursor) Read(v *structs.FeatureView, features []*structs.Feature, e structs.EntityKey, at time.Time, out *ViewRead) (*ViewRead, error) {
	return c.read(v, features, e, at, func() (*structs.FeatureRow, error) { return c.Latest(e, at.UnixNano()) }, out)
}

// ReadWithLatest is Read with the entity's latest row given (nil: none),
// as a mirror of the latest values (Redis) has it; only windowed features
// read the store. The row must be the latest at or before at.
func (c *FeatureCursor) ReadWithLatest(v *structs.FeatureView, features []*structs.Feature, e structs.EntityKey, at time.Time, latest *structs.FeatureRow, out *ViewRead) (*ViewRead, error) {
	return c.read(v, features, e, at, func() (*structs.FeatureRow, error) { return latest, nil }, out)
}

func (c *FeatureCursor) read(v *structs.FeatureView, features []*structs.Feature, e structs.EntityKey, at time.Time, latest func() (*structs.FeatureRow, error), out *ViewRead) (*ViewRead, error) {
	if out == nil {
		out = &ViewRead{}
	}
	out.Values = resize(out.Values, len(features))
	out.Times = resize(out.Times, len(features))
	clear(out.Values)
	clear(out.Times)
	atNS := at.UnixNano()
	var longest time.Duration
	rowFeatures := false
	for _, f := range features {
		if f.Windowed() {
			longest = max(longest, f.WindowDuration())
		} else {
			rowFeatures = true
		}
	}
	if rowFeatures {
		r, err := latest()
		if err != nil {
			return nil, err
		}
		if ttl := v.TTLDuration(); r != nil && (ttl == 0 || atNS-r.TS <= int64(ttl)) {
			for i, f := range features {
				if !f.Windowed() {
					out.Values[i] = r.Values[f.Name]
					out.Times[i] = r.Time()
				}
			}
		}
	}
	if longest == 0 {
		return out, nil
	}
	aggs := make([]aggregate, len(features))
	for i, f := range features {
		if f.Windowed() {
			aggs[i].fn, aggs[i].col, _ = structs.ParseAggregation(f.Expr)
		}
	}
	err := c.walk(e, atNS, func(r *structs.FeatureRow) bool {
		age := atNS - r.TS
		if age >= int64(longest) {
			return false
		}
		for i, f := range features {
			if f.Windowed() && age < int64(f.WindowDuration()) {
				aggs[i].add(r)
			}
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	for i, f := range features {
		if f.Windowed() {
			out.Values[i] = aggs[i].result(f)
			if aggs[i].newest != 0 {
				out.Times[i] = time.Unix(0, aggs[i].newest).UTC()
			}
		}
	}
	return out, nil
}

func resize[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]T, n)
}

// aggregate accumulates one windowed feature over rows met newest first.
type aggregate struct {
	fn, col string // the aggregation, parsed once per read
	rows    int64  // rows in the window
	n       int64  // non-null values
	sum     float64
	isum    int64
	min     float64
	max     float64
	last    any
	newest  int64
}

func (a *aggregate) add(r *structs.FeatureRow) {
	if a.rows == 0 {
		a.newest = r.TS
	}
	a.rows++
	fn := a.fn
	if a.col == "" {
		return // count()
	}
	x, ok := r.Values[a.col]
	if !ok || x == nil {
		return
	}
	if a.n == 0 {
		a.last = x // rows come newest first: the first is the last value
	}
	a.n++
	if fn == "count" || fn == "last" {
		return
	}
	var fv float64
	switch n := x.(type) {
	case int64:
		fv = float64(n)
		a.isum += n
	case float64:
		fv = n
	default:
		return
	}
	a.sum += fv
	if a.n == 1 || fv < a.min {
		a.min = fv
	}
	if a.n == 1 || fv > a.max {
		a.max = fv
	}
}

func (a *aggregate) result(f *structs.Feature) any {
	fn := a.fn
	switch fn {
	case "count":
		if a.col == "" {
			return a.rows
		}
		return a.n
	case "sum":
		if f.Type == "int" {
			return a.isum
		}
		return a.sum
	case "last":
		return a.last
	}
	if a.n == 0 {
		return nil
	}
	switch fn {
	case "avg":
		return a.sum / float64(a.n)
	case "min":
		return typed(f.Type, a.min)
	case "max":
		return typed(f.Type, a.max)
	}
	return nil
}

func typed(t string, x float64) any {
	if t == "int" {
		return int64(x)
	}
	return x
}

// FeatureValueCount counts a view's stored values, for tests and status.
func (t *Txn) FeatureValueCount(view string) (int, error) {
	if t.err != nil {
		return 0, t.err
	}
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte(featureValuePrefix(view))
	opts.PrefetchValues = false
	it := t.txn.NewIterator(opts)
	defer it.Close()
	n := 0
	for it.Rewind(); it.Valid(); it.Next() {
		n++
	}
	return n, nil
}

// OrphanFeatureValues lists the views whose values remain after the view
// was deleted (a deletion removes a bounded number at once), for the
// leader's compaction to finish. It seeks from one view's values to the
// next: the cost is the number of views with values.
func (t *Txn) OrphanFeatureValues() ([]string, error) {
	if t.err != nil {
		return nil, t.err
	}
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte(prefixFeatureValue)
	opts.PrefetchValues = false
	it := t.txn.NewIterator(opts)
	defer it.Close()
	var out []string
	for it.Rewind(); it.Valid(); {
		k := it.Item().Key()
		rest := k[len(prefixFeatureValue):]
		i := bytes.IndexByte(rest, '/')
		if i <= 0 {
			it.Next()
			continue
		}
		view := string(rest[:i])
		found, err := getRecord(t.txn, featureViewKey(view), &structs.FeatureView{})
		if err != nil {
			return nil, err
		}
		if !found {
			out = append(out, view)
		}
		it.Seek([]byte(prefixFeatureValue + view + "0")) // '0' sorts right after '/'
	}
	return out, nil
}

// LatestRows calls fn with each entity's latest row of a view (the first
// key of each entity), skipping the rest of the entity with a seek. The row
// passed is the caller's to keep.
func (t *Txn) LatestRows(view string, fn func(*structs.FeatureRow) error) error {
	c, err := t.FeatureCursor(view)
	if err != nil {
		return err
	}
	defer c.Close()
	skip := bytes.Repeat([]byte{0xff}, 17)
	for c.it.Rewind(); c.it.Valid(); {
		item := c.it.Item()
		k := item.KeyCopy(nil)
		if len(k) < 16 {
			c.it.Next()
			continue
		}
		var row structs.FeatureRow
		err := item.Value(func(val []byte) error {
			c.rd.Reset(val)
			return c.dec.Decode(&row)
		})
		if err != nil {
			return err
		}
		NormalizeValues(row.Values)
		if err := fn(&row); err != nil {
			return err
		}
		c.it.Seek(append(k[:len(k)-16], skip...))
	}
	return nil
}
