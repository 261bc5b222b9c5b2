package node

import (
	"fmt"
	"slices"
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
func (q *featureQuery) read(txn *raftfsm.Txn, rows []map[string]any, times []time.Time) (*featureFrame, error) {
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
		cur, err := txn.FeatureCursor(vq.view.Name)
		if err != nil {
			return nil, err
		}
		var vr *raftfsm.ViewRead
		for _, i := range order {
			vr, err = cur.Read(vq.view, vq.features, keys[i], times[i], vr)
			if err != nil {
				cur.Close()
				return nil, err
			}
			for j, col := range vq.cols {
				fr.values[i][col] = vr.Values[j]
				fr.times[i][col] = vr.Times[j]
				if !vr.Times[j].IsZero() {
					fr.found[i] = true
				}
			}
		}
		cur.Close()
	}
	return fr, nil
}
