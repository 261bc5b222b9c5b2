package raftfsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Sources and features (DESIGN.md §8): sources with their positions, entities,
// feature views, feature services, and the feature values themselves.
const (
	prefixSource         = "src/" // src/<name>  -> structs.Source
	prefixSourceRun      = "sr/"  // sr/<name>/<seq, 20 digits> -> structs.SourceRun
	prefixEntity         = "fe/"  // fe/<name>   -> structs.Entity
	prefixFeatureView    = "fw/"  // fw/<name>   -> structs.FeatureView
	prefixFeatureService = "fs/"  // fs/<name>   -> structs.FeatureService
	// prefixFeatureValue holds one row per record and view:
	//   fv/<view>/<uvarint len(entity)><entity><^ts, 8 bytes><^seq, 8 bytes>
	// Within an entity the rows sort newest first (timestamps inverted), and
	// among rows of one timestamp the last written first, so "the latest at
	// or before t" is one seek to (entity, t) and the first key there.
	prefixFeatureValue = "fv/"
)

func sourceKey(name string) string       { return prefixSource + name }
func sourceRunPrefix(name string) string { return prefixSourceRun + name + "/" }
func sourceRunKey(name string, seq uint64) string {
	return fmt.Sprintf("%s%020d", sourceRunPrefix(name), seq)
}
func entityKey(name string) string         { return prefixEntity + name }
func featureViewKey(name string) string    { return prefixFeatureView + name }
func featureServiceKey(name string) string { return prefixFeatureService + name }
func featureValuePrefix(view string) string {
	return prefixFeatureValue + view + "/"
}

// featureEntityPrefix is where one entity's rows of a view start.
func featureEntityPrefix(view string, e structs.EntityKey) []byte {
	p := make([]byte, 0, len(prefixFeatureValue)+len(view)+1+binary.MaxVarintLen64+len(e)+16)
	p = append(p, featureValuePrefix(view)...)
	p = binary.AppendUvarint(p, uint64(len(e)))
	return append(p, e...)
}

// invertTS maps a timestamp to 8 bytes that sort in descending time order.
func invertTS(ts int64) uint64 { return ^(uint64(ts) ^ 1<<63) }

// featureSeekKey is the key of (entity, ts, seq) in a view; seeking to it with
// seq = max finds the latest row at or before ts.
func featureSeekKey(view string, e structs.EntityKey, ts int64, seq uint64) []byte {
	k := featureEntityPrefix(view, e)
	k = binary.BigEndian.AppendUint64(k, invertTS(ts))
	return binary.BigEndian.AppendUint64(k, ^seq)
}

func featureValueKey(r *structs.FeatureRow) string {
	return string(featureSeekKey(r.View, r.Entity, r.TS, r.Seq))
}

var _ = registerCommands(structs.RangeData,
	handler{structs.SourcePutType, applySourcePut},
	handler{structs.SourceDeleteType, applySourceDelete},
	handler{structs.SourceIngestType, applySourceIngest},
	handler{structs.EntityPutType, applyEntityPut},
	handler{structs.EntityDeleteType, applyEntityDelete},
	handler{structs.FeatureViewPutType, applyFeatureViewPut},
	handler{structs.FeatureViewDeleteType, applyFeatureViewDelete},
	handler{structs.FeatureServicePutType, applyFeatureServicePut},
	handler{structs.FeatureServiceDeleteType, applyFeatureServiceDelete},
	handler{structs.FeatureCompactType, applyFeatureCompact},
	handler{structs.SourcePauseType, applySourcePause},
	handler{structs.SourceAssignType, applySourceAssign},
	handler{structs.SourceTriggerType, applySourceTrigger},
	handler{structs.SourceRunType, applySourceRun},
	handler{structs.SourceResetType, applySourceReset},
)

// applySourceReset clears a rereadable source's position: its next run
// reads everything again, its identical rows stored once.
func applySourceReset(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.SourceTriggerRequest
	if err := decodeBody(structs.SourceResetType, body, &req); err != nil {
		return nil, err
	}
	s, err := getNamed[structs.Source](tx, sourceKey(req.Name), "source", req.Name)
	if err != nil {
		return nil, err
	}
	if !s.Spec.Rereadable() {
		return nil, structs.Errorf(structs.CodeInvalid, "source %q is a %s source whose records would be counted twice if read again; only file, dataset and HTTP sources without a cursor can be reset", req.Name, s.Spec.Kind)
	}
	s.Position = nil
	s.UpdatedAt = req.At
	s.ModifyIndex = tx.index
	if err := tx.put(sourceKey(req.Name), s); err != nil {
		return nil, err
	}
	return utcSource(s), nil
}

// maxSourceRunsKept is how many runs of a source the registry keeps; a new
// run deletes the one this many before it.
const maxSourceRunsKept = 100

func applySourceAssign(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.SourceAssignRequest
	if err := decodeBody(structs.SourceAssignType, body, &req); err != nil {
		return nil, err
	}
	s, err := getNamed[structs.Source](tx, sourceKey(req.Name), "source", req.Name)
	if err != nil {
		return nil, err
	}
	if s.Node != req.Expect {
		return nil, structs.Errorf(structs.CodeConflict, "source %q is on node %q now, not %q", req.Name, s.Node, req.Expect)
	}
	s.Node, s.AssignIndex = req.Node, tx.index
	s.UpdatedAt = req.At
	s.ModifyIndex = tx.index
	if err := tx.put(sourceKey(req.Name), s); err != nil {
		return nil, err
	}
	return utcSource(s), nil
}

func applySourceTrigger(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.SourceTriggerRequest
	if err := decodeBody(structs.SourceTriggerType, body, &req); err != nil {
		return nil, err
	}
	s, err := getNamed[structs.Source](tx, sourceKey(req.Name), "source", req.Name)
	if err != nil {
		return nil, err
	}
	if structs.StreamingKind(s.Spec.Kind) {
		return nil, structs.Errorf(structs.CodeInvalid, "source %q is a %s source, read continuously: it has no runs to start", req.Name, s.Spec.Kind)
	}
	if s.Paused {
		return nil, structs.Errorf(structs.CodeConflict, "source %q is paused; resume it first", req.Name)
	}
	if !req.Tick.IsZero() {
		if !req.Tick.After(s.LastScheduledAt) {
			return nil, structs.Errorf(structs.CodeConflict, "source %q: the tick of %s has fired already", req.Name, req.Tick.UTC().Format(time.RFC3339))
		}
		s.LastScheduledAt = req.Tick
	}
	s.Triggers++
	s.ModifyIndex = tx.index
	if err := tx.put(sourceKey(req.Name), s); err != nil {
		return nil, err
	}
	return utcSource(s), nil
}

// applySourceRun records a new run (Seq 0), or a report on one. Only the
// actor of the source's current placement may report.
func applySourceRun(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.SourceRunRequest
	if err := decodeBody(structs.SourceRunType, body, &req); err != nil {
		return nil, err
	}
	run := req.Run
	s, err := getNamed[structs.Source](tx, sourceKey(run.Source), "source", run.Source)
	if err != nil {
		return nil, err
	}
	if req.Gen != s.AssignIndex {
		return nil, structs.Errorf(structs.CodeConflict, "source %q was placed again at index %d; the report of generation %d is stale", run.Source, s.AssignIndex, req.Gen)
	}
	if len(run.Quarantine) > structs.MaxRunQuarantineSample {
		run.Quarantine = run.Quarantine[:structs.MaxRunQuarantineSample]
	}
	if run.Seq == 0 {
		s.Runs++
		run.Seq = s.Runs
		if s.Runs > maxSourceRunsKept {
			tx.del(sourceRunKey(run.Source, s.Runs-maxSourceRunsKept))
		}
	} else {
		var old structs.SourceRun
		found, err := tx.get(sourceRunKey(run.Source, run.Seq), &old)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, structs.Errorf(structs.CodeNotFound, "source %q has no run %d", run.Source, run.Seq)
		}
		if old.Terminal() {
			return nil, structs.Errorf(structs.CodeConflict, "run %d of source %q has ended (%s)", run.Seq, run.Source, old.State)
		}
	}
	switch run.State {
	case structs.SourceRunSucceeded, structs.SourceRunFailedValidation:
		s.Failures, s.LastError = 0, ""
	case structs.SourceRunFailed:
		if !run.Interrupted {
			s.Failures++
			s.LastError, s.LastErrorAt = run.Error, run.FinishedAt
		}
	case structs.SourceRunRunning:
	default:
		return nil, structs.Errorf(structs.CodeInvalid, "run state %q is unknown", run.State)
	}
	if err := tx.put(sourceRunKey(run.Source, run.Seq), &run); err != nil {
		return nil, err
	}
	last := run
	last.Quarantine = nil
	s.LastRun = &last
	s.ModifyIndex = tx.index
	if err := tx.put(sourceKey(run.Source), s); err != nil {
		return nil, err
	}
	return utcSourceRun(&run), nil
}

func utcSourceRun(r *structs.SourceRun) *structs.SourceRun {
	r.StartedAt, r.FinishedAt = r.StartedAt.UTC(), r.FinishedAt.UTC()
	return r
}

// getNamed reads the record at key, or not_found naming what it is.
func getNamed[T any](tx *applyTxn, key, what, name string) (*T, error) {
	var v T
	found, err := tx.get(key, &v)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "%s %q not found", what, name)
	}
	return &v, nil
}

// viewsWhere lists the feature views for which match is true, in name order.
func (t *applyTxn) viewsWhere(match func(*structs.FeatureView) bool) ([]*structs.FeatureView, error) {
	var out []*structs.FeatureView
	err := t.scanValues(prefixFeatureView, func(val []byte) (bool, error) {
		var v structs.FeatureView
		if err := msgpack.Unmarshal(val, &v); err != nil {
			return false, err
		}
		if match(&v) {
			out = append(out, &v)
		}
		return true, nil
	})
	return out, err
}

func viewNames(vs []*structs.FeatureView) string {
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.Name
	}
	return strings.Join(names, ", ")
}

// applySourcePut creates a source, or replaces the spec of one, keeping its
// position and totals. A spec may not change kind (the position would mean
// nothing) nor drop a column a view reads.
func applySourcePut(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.SourcePutRequest
	if err := decodeBody(structs.SourcePutType, body, &req); err != nil {
		return nil, err
	}
	spec := req.Spec
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	var s structs.Source
	found, err := tx.get(sourceKey(spec.Name), &s)
	if err != nil {
		return nil, err
	}
	if !found {
		s = structs.Source{CreatedAt: req.At, CreateIndex: tx.index}
	} else if s.Spec.Kind != spec.Kind {
		return nil, structs.Errorf(structs.CodeConflict, "source %q is a %s source; delete it to make it a %s source", spec.Name, s.Spec.Kind, spec.Kind)
	}
	views, err := tx.viewsWhere(func(v *structs.FeatureView) bool { return v.Source == spec.Name })
	if err != nil {
		return nil, err
	}
	for _, v := range views {
		e, err := getNamed[structs.Entity](tx, entityKey(v.Entity), "entity", v.Entity)
		if err != nil {
			return nil, err
		}
		if err := structs.CheckViewColumns(v, e, spec.Schema); err != nil {
			return nil, structs.Errorf(structs.CodeConflict, "feature view %q reads source %q and would break: %v", v.Name, spec.Name, err)
		}
	}
	s.Spec = spec
	s.UpdatedAt = req.At
	s.ModifyIndex = tx.index
	if err := tx.put(sourceKey(spec.Name), &s); err != nil {
		return nil, err
	}
	return utcSource(&s), nil
}

func utcSource(s *structs.Source) *structs.Source {
	s.CreatedAt, s.UpdatedAt, s.LastIngestAt = s.CreatedAt.UTC(), s.UpdatedAt.UTC(), s.LastIngestAt.UTC()
	s.LastScheduledAt, s.LastErrorAt = s.LastScheduledAt.UTC(), s.LastErrorAt.UTC()
	return s
}

func applySourceDelete(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.NameRequest
	if err := decodeBody(structs.SourceDeleteType, body, &req); err != nil {
		return nil, err
	}
	if _, err := getNamed[structs.Source](tx, sourceKey(req.Name), "source", req.Name); err != nil {
		return nil, err
	}
	views, err := tx.viewsWhere(func(v *structs.FeatureView) bool { return v.Source == req.Name })
	if err != nil {
		return nil, err
	}
	if len(views) > 0 {
		return nil, structs.Errorf(structs.CodeConflict, "source %q feeds feature views %s; delete them first", req.Name, viewNames(views))
	}
	for _, k := range tx.keysUnder(sourceRunPrefix(req.Name)) {
		tx.del(k)
	}
	tx.del(sourceKey(req.Name))
	return nil, nil
}

func applySourcePause(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.SourcePauseRequest
	if err := decodeBody(structs.SourcePauseType, body, &req); err != nil {
		return nil, err
	}
	s, err := getNamed[structs.Source](tx, sourceKey(req.Name), "source", req.Name)
	if err != nil {
		return nil, err
	}
	s.Paused = req.Paused
	s.UpdatedAt = req.At
	s.ModifyIndex = tx.index
	if err := tx.put(sourceKey(req.Name), s); err != nil {
		return nil, err
	}
	return utcSource(s), nil
}

// applySourceIngest commits one batch: the position moves from From to
// Advance (refused when the stored position is not From), the totals grow,
// and each row is stored under its view with the next sequence number of
// that view.
func applySourceIngest(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.SourceIngestRequest
	if err := decodeBody(structs.SourceIngestType, body, &req); err != nil {
		return nil, err
	}
	if len(req.Rows) > structs.MaxIngestRows {
		return nil, structs.Errorf(structs.CodeTooLarge, "a batch of %d rows is more than the %d one commit may hold", len(req.Rows), structs.MaxIngestRows)
	}
	s, err := getNamed[structs.Source](tx, sourceKey(req.Source), "source", req.Source)
	if err != nil {
		return nil, err
	}
	if s.Paused {
		return nil, structs.Errorf(structs.CodeConflict, "source %q is paused", req.Source)
	}
	for _, k := range slices.Sorted(maps.Keys(req.Advance)) {
		if s.Position[k] != req.From[k] {
			return nil, structs.Errorf(structs.CodeConflict, "source %q: position %q is %q, not %q as the batch assumes; it was committed by another reader", req.Source, k, s.Position[k], req.From[k])
		}
	}
	views := make(map[string]*structs.FeatureView)
	// For Dedupe: the rows of this command, and one iterator over feature
	// values for all of them (a write transaction allows one open at a
	// time).
	var seen map[string]bool
	var it *badger.Iterator
	if req.Dedupe {
		seen = make(map[string]bool)
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixFeatureValue)
		it = tx.txn.NewIterator(opts)
		defer it.Close()
	}
	seqs := make([]uint64, len(req.Rows))
	for i := range req.Rows {
		r := &req.Rows[i]
		v, ok := views[r.View]
		if !ok {
			v, err = getNamed[structs.FeatureView](tx, featureViewKey(r.View), "feature view", r.View)
			if err != nil {
				return nil, err
			}
			if v.Source != req.Source {
				return nil, structs.Errorf(structs.CodeInvalid, "rows[%d]: feature view %q reads source %q, not %q", i, r.View, v.Source, req.Source)
			}
			views[r.View] = v
		}
		if r.Entity == "" {
			return nil, structs.Errorf(structs.CodeInvalid, "rows[%d]: no entity key", i)
		}
		if req.Dedupe {
			dup, err := duplicateRow(it, r, seen)
			if err != nil {
				return nil, err
			}
			if dup {
				continue
			}
		}
		v.Rows++
		r.Seq = v.Rows
		v.LastWriteAt = req.At
		if t := r.Time(); t.After(v.NewestValueAt) {
			v.NewestValueAt = t
		}
		seqs[i] = r.Seq
		if err := tx.put(featureValueKey(r), r); err != nil {
			return nil, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(views)) {
		v := views[name]
		if err := tx.put(featureViewKey(name), v); err != nil {
			return nil, err
		}
	}
	if len(req.Advance) > 0 && s.Position == nil {
		s.Position = make(map[string]string, len(req.Advance))
	}
	maps.Copy(s.Position, req.Advance)
	s.Read += req.Read
	s.Accepted += req.Accepted
	s.Quarantined += req.Quarantined
	s.LastIngestAt = req.At
	if err := tx.put(sourceKey(req.Source), s); err != nil {
		return nil, err
	}
	return &structs.SourceIngestResult{Source: utcSource(s), Seqs: seqs}, nil
}

// duplicateRow reports whether the store (or this command, in seen) holds
// a row of r's view, entity and timestamp with r's values. it is an
// iterator over feature values, reused for the command's rows.
func duplicateRow(it *badger.Iterator, r *structs.FeatureRow, seen map[string]bool) (bool, error) {
	vals, err := encodeRecord(r.Values)
	if err != nil {
		return false, err
	}
	id := string(featureSeekKey(r.View, r.Entity, r.TS, 0)) + string(vals)
	if seen[id] {
		return true, nil
	}
	seen[id] = true
	prefix := featureEntityPrefix(r.View, r.Entity)
	tsBytes := invertTS(r.TS)
	for it.Seek(featureSeekKey(r.View, r.Entity, r.TS, math.MaxUint64)); it.Valid(); it.Next() {
		k := it.Item().Key()
		if len(k) != len(prefix)+16 || !bytes.HasPrefix(k, prefix) || binary.BigEndian.Uint64(k[len(k)-16:]) != tsBytes {
			return false, nil
		}
		var old structs.FeatureRow
		err := it.Item().Value(func(b []byte) error {
			dec := msgpack.NewDecoder(bytes.NewReader(b))
			dec.UseLooseInterfaceDecoding(true) // as the row was encoded: int64, float64
			return dec.Decode(&old)
		})
		if err != nil {
			return false, err
		}
		NormalizeValues(old.Values)
		oldVals, err := encodeRecord(old.Values)
		if err != nil {
			return false, err
		}
		if bytes.Equal(oldVals, vals) {
			return true, nil
		}
	}
	return false, nil
}

func applyEntityPut(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.EntityPutRequest
	if err := decodeBody(structs.EntityPutType, body, &req); err != nil {
		return nil, err
	}
	e := req.Entity
	if err := e.Validate(); err != nil {
		return nil, err
	}
	var old structs.Entity
	found, err := tx.get(entityKey(e.Name), &old)
	if err != nil {
		return nil, err
	}
	if found {
		if !slices.Equal(old.JoinKeys, e.JoinKeys) {
			views, err := tx.viewsWhere(func(v *structs.FeatureView) bool { return v.Entity == e.Name })
			if err != nil {
				return nil, err
			}
			if len(views) > 0 {
				return nil, structs.Errorf(structs.CodeConflict, "entity %q's join keys are what feature views %s store their values under; delete those views to change them", e.Name, viewNames(views))
			}
		}
		e.CreatedAt, e.CreateIndex = old.CreatedAt, old.CreateIndex
	} else {
		e.CreatedAt, e.CreateIndex = e.UpdatedAt, tx.index
	}
	e.ModifyIndex = tx.index
	if err := tx.put(entityKey(e.Name), &e); err != nil {
		return nil, err
	}
	e.CreatedAt, e.UpdatedAt = e.CreatedAt.UTC(), e.UpdatedAt.UTC()
	return &e, nil
}

func applyEntityDelete(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.NameRequest
	if err := decodeBody(structs.EntityDeleteType, body, &req); err != nil {
		return nil, err
	}
	if _, err := getNamed[structs.Entity](tx, entityKey(req.Name), "entity", req.Name); err != nil {
		return nil, err
	}
	views, err := tx.viewsWhere(func(v *structs.FeatureView) bool { return v.Entity == req.Name })
	if err != nil {
		return nil, err
	}
	if len(views) > 0 {
		return nil, structs.Errorf(structs.CodeConflict, "entity %q is used by feature views %s; delete them first", req.Name, viewNames(views))
	}
	tx.del(entityKey(req.Name))
	return nil, nil
}

// applyFeatureViewPut creates or replaces a view, checked against its entity
// and its source's schema. A replaced view keeps its values: its new
// features apply to the rows written from then on, and rows written before
// read as null for a feature they lack.
func applyFeatureViewPut(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.FeatureViewPutRequest
	if err := decodeBody(structs.FeatureViewPutType, body, &req); err != nil {
		return nil, err
	}
	v := req.View
	if err := v.Validate(); err != nil {
		return nil, err
	}
	e, err := getNamed[structs.Entity](tx, entityKey(v.Entity), "entity", v.Entity)
	if err != nil {
		return nil, err
	}
	s, err := getNamed[structs.Source](tx, sourceKey(v.Source), "source", v.Source)
	if err != nil {
		return nil, err
	}
	if err := structs.CheckViewColumns(&v, e, s.Spec.Schema); err != nil {
		return nil, err
	}
	for i, f := range v.Features {
		if f.Type == "" {
			return nil, structs.Errorf(structs.CodeInvalid, "features[%d].type is required", i)
		}
	}
	var old structs.FeatureView
	found, err := tx.get(featureViewKey(v.Name), &old)
	if err != nil {
		return nil, err
	}
	if found {
		if old.Entity != v.Entity && old.Rows > 0 {
			return nil, structs.Errorf(structs.CodeConflict, "feature view %q holds values of entity %q; delete it to change its entity", v.Name, old.Entity)
		}
		v.CreatedAt, v.CreateIndex, v.Rows = old.CreatedAt, old.CreateIndex, old.Rows
		v.LastWriteAt, v.NewestValueAt = old.LastWriteAt, old.NewestValueAt
	} else {
		if err := tx.noValuesLeft(v.Name); err != nil {
			return nil, err
		}
		v.CreatedAt, v.CreateIndex = v.UpdatedAt, tx.index
	}
	v.ModifyIndex = tx.index
	if err := tx.put(featureViewKey(v.Name), &v); err != nil {
		return nil, err
	}
	v.CreatedAt, v.UpdatedAt = v.CreatedAt.UTC(), v.UpdatedAt.UTC()
	return &v, nil
}

// noValuesLeft refuses to create a view while values of a deleted view of
// the same name are still being removed: they would become its values.
func (t *applyTxn) noValuesLeft(view string) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte(featureValuePrefix(view))
	opts.PrefetchValues = false
	it := t.txn.NewIterator(opts)
	defer it.Close()
	if it.Rewind(); it.Valid() {
		return structs.Errorf(structs.CodeConflict, "the values of a deleted feature view %q are still being removed; retry in a minute", view)
	}
	return nil
}

// maxDeleteValues bounds the values one command deletes, within the
// transaction budget.
const maxDeleteValues = 8000

// applyFeatureViewDelete removes a view no service uses, with up to
// maxDeleteValues of its values; the leader's compaction removes the rest
// (FeatureCompact on a view that no longer exists).
func applyFeatureViewDelete(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.NameRequest
	if err := decodeBody(structs.FeatureViewDeleteType, body, &req); err != nil {
		return nil, err
	}
	if _, err := getNamed[structs.FeatureView](tx, featureViewKey(req.Name), "feature view", req.Name); err != nil {
		return nil, err
	}
	var users []string
	err := tx.scanValues(prefixFeatureService, func(val []byte) (bool, error) {
		var s structs.FeatureService
		if err := msgpack.Unmarshal(val, &s); err != nil {
			return false, err
		}
		for _, ref := range s.Features {
			if view, _, _ := strings.Cut(ref, ":"); view == req.Name {
				users = append(users, s.Name)
				break
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	if len(users) > 0 {
		return nil, structs.Errorf(structs.CodeConflict, "feature view %q is used by feature services %s; change or delete them first", req.Name, strings.Join(users, ", "))
	}
	tx.del(featureViewKey(req.Name))
	tx.deleteValues(req.Name, 0, true, maxDeleteValues-1)
	return nil, nil
}

// deleteValues deletes up to limit values of a view: those older than
// before (Unix nanoseconds), or all of them when all is true. It returns
// how many it deleted, and whether more such values remain. Within an
// entity the old values are the last keys, so it seeks to each entity's
// first old key: the cost is the entities plus the values deleted.
func (t *applyTxn) deleteValues(view string, before int64, all bool, limit int) (int, bool) {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte(featureValuePrefix(view))
	opts.PrefetchValues = false
	it := t.txn.NewIterator(opts)
	defer it.Close()
	oldFrom := invertTS(before) + 1 // inverted: older sorts later
	if before == math.MinInt64 {
		return 0, false // nothing is older
	}
	n := 0
	for it.Rewind(); it.Valid(); {
		k := it.Item().Key()
		if len(k) < 16 {
			it.Next()
			continue
		}
		if !all && binary.BigEndian.Uint64(k[len(k)-16:]) < oldFrom {
			seek := binary.BigEndian.AppendUint64(slices.Clip(k[:len(k)-16]), oldFrom)
			seek = append(seek, make([]byte, 8)...)
			it.Seek(seek)
			continue
		}
		if n == limit {
			return n, true
		}
		t.del(string(k))
		n++
		it.Next()
	}
	return n, false
}

func applyFeatureServicePut(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.FeatureServicePutRequest
	if err := decodeBody(structs.FeatureServicePutType, body, &req); err != nil {
		return nil, err
	}
	s := req.Service
	if err := s.Validate(); err != nil {
		return nil, err
	}
	for i, ref := range s.Features {
		view, feature, _ := structs.ParseFeatureRef("", ref)
		v, err := getNamed[structs.FeatureView](tx, featureViewKey(view), "feature view", view)
		if err != nil {
			return nil, structs.Errorf(structs.CodeInvalid, "features[%d] %q: %v", i, ref, err)
		}
		if _, ok := v.Feature(feature); feature != "*" && !ok {
			return nil, structs.Errorf(structs.CodeInvalid, "features[%d] %q: feature view %q has no feature %q", i, ref, view, feature)
		}
	}
	var old structs.FeatureService
	found, err := tx.get(featureServiceKey(s.Name), &old)
	if err != nil {
		return nil, err
	}
	if found {
		s.CreatedAt, s.CreateIndex = old.CreatedAt, old.CreateIndex
	} else {
		s.CreatedAt, s.CreateIndex = s.UpdatedAt, tx.index
	}
	s.ModifyIndex = tx.index
	if err := tx.put(featureServiceKey(s.Name), &s); err != nil {
		return nil, err
	}
	s.CreatedAt, s.UpdatedAt = s.CreatedAt.UTC(), s.UpdatedAt.UTC()
	return &s, nil
}

func applyFeatureServiceDelete(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.NameRequest
	if err := decodeBody(structs.FeatureServiceDeleteType, body, &req); err != nil {
		return nil, err
	}
	if _, err := getNamed[structs.FeatureService](tx, featureServiceKey(req.Name), "feature service", req.Name); err != nil {
		return nil, err
	}
	var users []string
	err := tx.scanValues(prefixDeployment, func(val []byte) (bool, error) {
		var d structs.Deployment
		if err := msgpack.Unmarshal(val, &d); err != nil {
			return false, err
		}
		if d.FeatureService == req.Name {
			users = append(users, d.Name)
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	if len(users) > 0 {
		return nil, structs.Errorf(structs.CodeConflict, "feature service %q feeds deployments %s; change them first", req.Name, strings.Join(users, ", "))
	}
	tx.del(featureServiceKey(req.Name))
	return nil, nil
}

// applyFeatureCompact deletes up to Limit values of a view whose timestamp
// is before Before; of a view that no longer exists, any values.
func applyFeatureCompact(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.FeatureCompactRequest
	if err := decodeBody(structs.FeatureCompactType, body, &req); err != nil {
		return nil, err
	}
	if err := structs.ValidateName("view", req.View); err != nil {
		return nil, err
	}
	if req.Limit <= 0 || req.Limit > maxDeleteValues {
		return nil, structs.Errorf(structs.CodeInvalid, "limit %d is outside 1-%d", req.Limit, maxDeleteValues)
	}
	var v structs.FeatureView
	exists, err := tx.get(featureViewKey(req.View), &v)
	if err != nil {
		return nil, err
	}
	n, more := tx.deleteValues(req.View, req.Before, !exists, req.Limit)
	return &structs.FeatureCompactResult{Deleted: n, More: more}, nil
}

func sourceKeyOf(raw []byte) (string, error) {
	var s structs.Source
	if err := structs.Decode(raw, &s); err != nil {
		return "", err
	}
	if s.Spec.Name == "" {
		return "", fmt.Errorf("source record without name")
	}
	return sourceKey(s.Spec.Name), nil
}

func sourceRunKeyOf(raw []byte) (string, error) {
	var r structs.SourceRun
	if err := structs.Decode(raw, &r); err != nil {
		return "", err
	}
	if r.Source == "" || r.Seq == 0 {
		return "", fmt.Errorf("source run without source or number")
	}
	return sourceRunKey(r.Source, r.Seq), nil
}

func validateSourceRunRecord(raw []byte) error {
	var r structs.SourceRun
	if err := structs.Decode(raw, &r); err != nil {
		return err
	}
	if err := structs.ValidateName("source", r.Source); err != nil {
		return recordError(r.Source, err)
	}
	if r.Seq == 0 {
		return recordError(r.Source, fmt.Errorf("a run needs a number"))
	}
	return nil
}

func entityKeyOf(raw []byte) (string, error) {
	var e structs.Entity
	if err := structs.Decode(raw, &e); err != nil {
		return "", err
	}
	if e.Name == "" {
		return "", fmt.Errorf("entity record without name")
	}
	return entityKey(e.Name), nil
}

func featureViewKeyOf(raw []byte) (string, error) {
	var v structs.FeatureView
	if err := structs.Decode(raw, &v); err != nil {
		return "", err
	}
	if v.Name == "" {
		return "", fmt.Errorf("feature view record without name")
	}
	return featureViewKey(v.Name), nil
}

func featureServiceKeyOf(raw []byte) (string, error) {
	var s structs.FeatureService
	if err := structs.Decode(raw, &s); err != nil {
		return "", err
	}
	if s.Name == "" {
		return "", fmt.Errorf("feature service record without name")
	}
	return featureServiceKey(s.Name), nil
}

func featureValueKeyOf(raw []byte) (string, error) {
	var r structs.FeatureRow
	if err := structs.Decode(raw, &r); err != nil {
		return "", err
	}
	if r.View == "" || r.Entity == "" || r.Seq == 0 {
		return "", fmt.Errorf("feature value without view, entity or sequence")
	}
	return featureValueKey(&r), nil
}

func validateSourceRecord(raw []byte) error {
	var s structs.Source
	if err := structs.Decode(raw, &s); err != nil {
		return err
	}
	spec := s.Spec
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		return recordError(s.Spec.Name, err)
	}
	return nil
}

func validateEntityRecord(raw []byte) error {
	var e structs.Entity
	if err := structs.Decode(raw, &e); err != nil {
		return err
	}
	return recordErrorOrNil(e.Name, e.Validate())
}

func validateFeatureViewRecord(raw []byte) error {
	var v structs.FeatureView
	if err := structs.Decode(raw, &v); err != nil {
		return err
	}
	return recordErrorOrNil(v.Name, v.Validate())
}

func validateFeatureServiceRecord(raw []byte) error {
	var s structs.FeatureService
	if err := structs.Decode(raw, &s); err != nil {
		return err
	}
	return recordErrorOrNil(s.Name, s.Validate())
}

func validateFeatureValueRecord(raw []byte) error {
	var r structs.FeatureRow
	if err := structs.Decode(raw, &r); err != nil {
		return err
	}
	if err := structs.ValidateName("view", r.View); err != nil {
		return recordError(string(r.Entity), err)
	}
	if r.Entity == "" || len(r.Entity) > structs.MaxEntityKeyLen || r.Seq == 0 {
		return recordError(r.View, fmt.Errorf("a feature value needs an entity key of 1-%d bytes and a sequence number", structs.MaxEntityKeyLen))
	}
	return nil
}

func recordErrorOrNil(id string, err error) error {
	if err != nil {
		return recordError(id, err)
	}
	return nil
}
