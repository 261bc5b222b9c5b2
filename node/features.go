package node

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// Feature reads (DESIGN.md §8): one store answers online lookups and
// point-in-time frames, read locally on any node.

// featureQuery is a list of features resolved against the registry: the
// names in the order asked ("view:feature"), grouped by view.
type featureQuery struct {
	names []string
	views []*viewQuery
}

// viewQuery is what a query reads from one view.
type viewQuery struct {
	view     *structs.FeatureView
	joinKeys []string
	features []*structs.Feature
	cols     []int // position of each feature in featureQuery.names
}

// resolveFeatures reads a feature service, or a list of "view:feature" (or
// "view:*") references, into a query. Errors name the reference.
func resolveFeatures(txn *raftfsm.Txn, service string, refs []string) (*featureQuery, error) {
	switch {
	case service != "" && len(refs) > 0:
		return nil, structs.Errorf(structs.CodeInvalid, "give feature_service or features, not both")
	case service != "":
		s, err := txn.FeatureService(service)
		if err != nil {
			return nil, err
		}
		refs = s.Features
	case len(refs) == 0:
		return nil, structs.Errorf(structs.CodeInvalid, "feature_service or features is required")
	case len(refs) > structs.MaxServiceFeatures:
		return nil, structs.Errorf(structs.CodeInvalid, "features lists %d features, more than %d", len(refs), structs.MaxServiceFeatures)
	}
	q := &featureQuery{}
	byView := make(map[string]*viewQuery)
	entities := make(map[string]*structs.Entity)
	for i, ref := range refs {
		field := fmt.Sprintf("features[%d]", i)
		viewName, feature, err := structs.ParseFeatureRef(field, ref)
		if err != nil {
			return nil, err
		}
		vq := byView[viewName]
		if vq == nil {
			v, err := txn.FeatureView(viewName)
			if err != nil {
				return nil, structs.Errorf(structs.ErrorCode(err), "%s %q: %v", field, ref, err)
			}
			e := entities[v.Entity]
			if e == nil {
				if e, err = txn.Entity(v.Entity); err != nil {
					return nil, err
				}
				entities[v.Entity] = e
			}
			vq = &viewQuery{view: v, joinKeys: e.JoinKeys}
			byView[viewName] = vq
			q.views = append(q.views, vq)
		}
		add := func(f *structs.Feature) {
			name := viewName + ":" + f.Name
			if slices.Contains(q.names, name) {
				return
			}
			vq.features = append(vq.features, f)
			vq.cols = append(vq.cols, len(q.names))
			q.names = append(q.names, name)
		}
		if feature == "*" {
			for j := range vq.view.Features {
				add(&vq.view.Features[j])
			}
			continue
		}
		f, ok := vq.view.Feature(feature)
		if !ok {
			return nil, structs.Errorf(structs.CodeNotFound, "%s %q: feature view %q has no feature %q", field, ref, viewName, feature)
		}
		add(f)
	}
	return q, nil
}

// latestRows gives the latest rows of entities of a view, nil where there
// is none.
type latestRows func(view string, keys []structs.EntityKey) ([]*structs.FeatureRow, error)

// joinKeys lists the join keys the query's views need, in first-use order.
func (q *featureQuery) joinKeys() []string {
	var keys []string
	for _, vq := range q.views {
		for _, k := range vq.joinKeys {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// featureFrame is the answer for a list of entity rows: per row, the value
// and the time of each feature, in query order.
type featureFrame struct {
	values [][]any
	times  [][]time.Time
	// found[i] is false when no view had a value for row i.
	found []bool
}

// read computes the query for entity rows (each a map from join key to
// value) at times (one per row). A row without one of a view's join keys,
// or with a value that is no key, is an error naming the row and the key.
//
// latest, when not nil, gives the entities' latest rows of a view (the
// Redis mirror, for online reads at now); windowed features still read the
// store.
func (q *featureQuery) read(txn *raftfsm.Txn, rows []map[string]any, times []time.Time, latest latestRows) (*featureFrame, error) {
	fr := &featureFrame{values: make([][]any, len(rows)), times: make([][]time.Time, len(rows)), found: make([]bool, len(rows))}
	for i := range rows {
		fr.values[i] = make([]any, len(q.names))
		fr.times[i] = make([]time.Time, len(q.names))
	}
	for _, vq := range q.views {
		keys := make([]structs.EntityKey, len(rows))
		vals := make([]any, len(vq.joinKeys))
		for i, row := range rows {
			for j, k := range vq.joinKeys {
				v, ok := row[k]
				if !ok {
					return nil, structs.Errorf(structs.CodeInvalid, "entity row %d has no %s, a join key of feature view %s", i, k, vq.view.Name)
				}
				vals[j] = v
			}
			ek, err := structs.MakeEntityKey(fmt.Sprintf("entity row %d", i), vals)
			if err != nil {
				return nil, err
			}
			keys[i] = ek
		}
		// Entity order makes the cursor's seeks short.
		order := make([]int, len(rows))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int {
			if keys[a] != keys[b] {
				if keys[a] < keys[b] {
					return -1
				}
				return 1
			}
			return times[a].Compare(times[b])
		})
		// Two halves of the order on two cursors: reads of a read-only
		// transaction may run side by side.
		parts := 1
		if len(order) >= parallelReadRows {
			parts = 2
		}
		errs := make([]error, parts)
		var wg sync.WaitGroup
		for p := range parts {
			lo, hi := p*len(order)/parts, (p+1)*len(order)/parts
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[p] = q.readRows(txn, vq, keys, times, order[lo:hi], fr, latest)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
	}
	return fr, nil
}

// parallelReadRows is the frame size from which a view is read on two
// goroutines.
const parallelReadRows = 4096

// readRows reads one view for the rows in order (their indexes), into fr.
// Each row's slots of fr belong to one goroutine.
func (q *featureQuery) readRows(txn *raftfsm.Txn, vq *viewQuery, keys []structs.EntityKey, times []time.Time, order []int, fr *featureFrame, latest latestRows) error {
	var mirrored []*structs.FeatureRow
	if latest != nil {
		want := make([]structs.EntityKey, len(order))
		for n, i := range order {
			want[n] = keys[i]
		}
		var err error
		if mirrored, err = latest(vq.view.Name, want); err != nil {
			return err
		}
	}
	var cur *raftfsm.FeatureCursor
	var err error
	if len(order) == 1 {
		cur, err = txn.EntityCursor(vq.view.Name, keys[order[0]])
	} else {
		cur, err = txn.FeatureCursor(vq.view.Name)
	}
	if err != nil {
		return err
	}
	defer cur.Close()
	var vr *raftfsm.ViewRead
	for n, i := range order {
		if mirrored != nil {
			vr, err = cur.ReadWithLatest(vq.view, vq.features, keys[i], times[i], mirrored[n], vr)
		} else {
			vr, err = cur.Read(vq.view, vq.features, keys[i], times[i], vr)
		}
		if err != nil {
			return err
		}
		for j, col := range vq.cols {
			fr.values[i][col] = vr.Values[j]
			fr.times[i][col] = vr.Times[j]
			if !vr.Times[j].IsZero() {
				fr.found[i] = true
			}
		}
	}
	return nil
}

// appendJSONValue appends a feature value as JSON: the types features
// carry are written directly (a frame has millions of them), anything else
// through encoding/json. NaN and infinities, which JSON lacks, are null.
func appendJSONValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, x)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return append(b, "null"...)
		}
		return strconv.AppendFloat(b, x, 'g', -1, 64)
	case string:
		return appendJSONString(b, x)
	case time.Time:
		b = append(b, '"')
		b = x.UTC().AppendFormat(b, time.RFC3339Nano)
		return append(b, '"')
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return append(b, "null"...)
	}
	return append(b, raw...)
}

// appendJSONString appends s quoted; strings without characters JSON
// escapes (the common case) are copied as they are.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			raw, _ := json.Marshal(s)
			return append(b, raw...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// queryCache keeps resolved feature queries while the feature tables do
// not change: an online lookup then reads no registry record but the
// values. Entries are keyed by the service name, or by the feature list.
type queryCache struct {
	index func() uint64 // of the entity, view and service tables

	mu      sync.Mutex
	at      uint64                   // guarded by mu: the index entries belong to
	entries map[string]*featureQuery // guarded by mu
}

// maxCachedQueries bounds the cache; past it, it starts again empty.
const maxCachedQueries = 1024

func newQueryCache(f *raftfsm.FSM) *queryCache {
	return &queryCache{index: f.IndexFunc(raftfsm.TableEntities, raftfsm.TableFeatureViews, raftfsm.TableFeatureServices)}
}

// resolve returns the query for a service or a feature list, resolved
// from txn when the cache does not hold it for txn's state. A query is
// read-only once built, so callers share it.
func (c *queryCache) resolve(txn *raftfsm.Txn, service string, refs []string) (*featureQuery, error) {
	idx := c.index()
	key := "s:" + service
	if service == "" {
		key = "f:" + strings.Join(refs, ",")
	}
	// The cache is only good for views at or after the tables' index; a
	// txn older than that (a stale read) resolves on its own.
	usable := txn.Index() >= idx
	if usable {
		c.mu.Lock()
		if c.at == idx {
			if q, ok := c.entries[key]; ok {
				c.mu.Unlock()
				return q, nil
			}
		}
		c.mu.Unlock()
	}
	q, err := resolveFeatures(txn, service, refs)
	if err != nil || !usable {
		return q, err
	}
	c.mu.Lock()
	if c.at != idx || len(c.entries) >= maxCachedQueries {
		c.at, c.entries = idx, make(map[string]*featureQuery)
	}
	c.entries[key] = q
	c.mu.Unlock()
	return q, nil
}
