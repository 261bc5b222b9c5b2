package runsearch

import (
	"cmp"
	"math"
	"slices"
	"strings"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// OrderBy is one parsed order_by clause.
type OrderBy struct {
	Entity Entity
	// Key is the metric, param or tag key, or the canonical attribute key
	// (start_time for created).
	Key       string
	Ascending bool
}

// ParseOrderBy parses MLflow order_by clauses for runs, each
// "<entity>.<key> [ASC|DESC]" (ASC when left out, either in any case), where
// an attribute may go without its prefix (start_time DESC). A '+' counts as
// a blank, so that ?order_by=metrics.auc+desc reads the same decoded or not.
// Naming one field twice is an error, as in MLflow's database stores.
func ParseOrderBy(clauses []string) ([]OrderBy, error) {
	return runSchema.parseOrderBy(clauses, true)
}

func (sc *schema) parseOrderBy(clauses []string, rejectDuplicates bool) ([]OrderBy, error) {
	var out []OrderBy
	for _, s := range clauses {
		toks, err := lex(s, true)
		if err != nil {
			return nil, errorf("invalid order_by clause %s: %v", quoteToken(s), strings.TrimPrefix(err.Error(), "runsearch: "))
		}
		if toks[0].kind != tokIdent {
			return nil, errorf("invalid order_by clause %s: expected <entity>.<key> [ASC|DESC], found %s", quoteToken(s), toks[0].describe())
		}
		ent, spec, err := sc.resolve(toks[0], sc.orderAttrs)
		if err != nil {
			return nil, err
		}
		if !sc.orderEntities[ent] {
			return nil, errorf("invalid order_by entity %s in %s", quoteToken(string(ent)), quoteToken(s))
		}
		o := OrderBy{Entity: ent, Key: spec.key, Ascending: true}
		p := 1
		switch {
		case toks[1].keyword("ASC"):
			p++
		case toks[1].keyword("DESC"):
			o.Ascending = false
			p++
		case toks[1].kind != tokEOF:
			return nil, errorf("invalid ordering key %s in order_by clause %s: expected ASC or DESC", toks[1].describe(), quoteToken(s))
		}
		if toks[p].kind != tokEOF {
			return nil, errorf("invalid order_by clause %s: unexpected %s at offset %d", quoteToken(s), toks[p].describe(), toks[p].pos)
		}
		if rejectDuplicates && slices.ContainsFunc(out, func(x OrderBy) bool { return x.Entity == o.Entity && x.Key == o.Key }) {
			return nil, errorf("order_by contains duplicate fields: %s", quoteToken(s))
		}
		out = append(out, o)
	}
	return out, nil
}

// SortRuns sorts runs in place as MLflow's search_runs orders them: by each
// clause of order in turn, then start_time descending, then run_id
// ascending (the whole order when order is empty). Under every clause,
// whatever its direction, runs with a value come first, then runs whose
// metric is NaN, then runs without the key. Metrics and numeric attributes
// compare as numbers, params, tags and string attributes as strings.
// Ordering by artifact_uri needs SortRunsWith.
func SortRuns(runs []*structs.Run, order []OrderBy) {
	SortRunsWith(runs, order, nil)
}

// SortRunsWith is SortRuns with the runs' artifact URIs given by uri.
func SortRunsWith(runs []*structs.Run, order []OrderBy, uri ArtifactURIFunc) {
	slices.SortStableFunc(runs, func(a, b *structs.Run) int {
		for _, o := range order {
			if c := compareSortValues(runSortValue(a, o, uri), runSortValue(b, o, uri), o.Ascending); c != 0 {
				return c
			}
		}
		if c := cmp.Compare(b.StartTime, a.StartTime); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// Ranks of sort values: whatever the direction, present values sort first,
// NaN metrics next, missing keys last, as MLflow's stores order them.
const (
	rankPresent = iota
	rankNaN
	rankMissing
)

// sortValue is one record's value under one order_by clause.
type sortValue struct {
	rank    int
	numeric bool
	num     float64
	str     string
	id      bool // str is an experiment ID: compared as a number when it is one
}

func numberValue(x float64) sortValue {
	if math.IsNaN(x) {
		return sortValue{rank: rankNaN}
	}
	return sortValue{numeric: true, num: x}
}

func runSortValue(r *structs.Run, o OrderBy, uri ArtifactURIFunc) sortValue {
	var (
		s  string
		ok bool
	)
	switch o.Entity {
	case EntityMetric:
		p, found := r.Metrics[o.Key]
		if !found {
			return sortValue{rank: rankMissing}
		}
		return numberValue(p.Value)
	case EntityParam:
		s, ok = r.Params[o.Key]
	case EntityTag:
		s, ok = runTag(r, o.Key)
	case EntityAttribute:
		var n float64
		s, n, ok = runAttr(r, o.Key, uri)
		if ok && runAttrs[o.Key].numeric {
			return numberValue(n)
		}
	}
	if !ok {
		return sortValue{rank: rankMissing}
	}
	return sortValue{str: s}
}

// compareSortValues orders a and b under one clause: rank first, whatever
// the direction, then the values in the clause's direction.
func compareSortValues(a, b sortValue, ascending bool) int {
	if c := cmp.Compare(a.rank, b.rank); c != 0 || a.rank != rankPresent {
		return c
	}
	var c int
	switch {
	case a.numeric && b.numeric:
		c = cmp.Compare(a.num, b.num)
	case a.id && b.id:
		c = compareIDs(a.str, b.str)
	default:
		c = strings.Compare(a.str, b.str)
	}
	if !ascending {
		c = -c
	}
	return c
}

// compareIDs orders experiment IDs: decimal ones (all of Kiln's and
// MLflow's) by value, as MLflow's database stores order their integer
// column, and any other after them by text.
func compareIDs(a, b string) int {
	da, db := decimalID(a), decimalID(b)
	switch {
	case da && db:
		ta, tb := strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if c := cmp.Compare(len(ta), len(tb)); c != 0 {
			return c
		}
		if c := strings.Compare(ta, tb); c != 0 {
			return c
		}
		return strings.Compare(a, b) // 7 and 007: one order, whatever it is
	case da:
		return -1
	case db:
		return 1
	}
	return strings.Compare(a, b)
}

func decimalID(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}
