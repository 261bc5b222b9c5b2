package runsearch

import (
	"slices"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Attribute keys of experiments, as MLflow's SearchExperimentsUtils names
// them. Times are milliseconds since the Unix epoch.
const (
	AttrName           = "name"
	AttrExperimentID   = "experiment_id"
	AttrCreationTime   = "creation_time"
	AttrLastUpdateTime = "last_update_time"
)

// experimentSchema is MLflow's SearchExperimentsUtils: the prefixes are
// attribute, tag and tags only; experiment_id orders but does not filter.
var experimentSchema = func() *schema {
	name := attrSpec{key: AttrName}
	created := attrSpec{key: AttrCreationTime, numeric: true}
	updated := attrSpec{key: AttrLastUpdateTime, numeric: true}
	return &schema{
		entities: map[string]Entity{
			"attribute": EntityAttribute, "tag": EntityTag, "tags": EntityTag,
		},
		names:       "[attribute, tag, tags]",
		filterAttrs: map[string]attrSpec{AttrName: name, AttrCreationTime: created, AttrLastUpdateTime: updated},
		orderAttrs: map[string]attrSpec{
			AttrName: name, AttrCreationTime: created, AttrLastUpdateTime: updated,
			AttrExperimentID: {key: AttrExperimentID},
		},
		orderEntities: map[Entity]bool{EntityAttribute: true},
	}
}()

// ExperimentFilter is a parsed search_experiments filter string. The zero
// ExperimentFilter matches every experiment.
type ExperimentFilter struct {
	clauses []clause
}

// ParseExperimentFilter parses an MLflow filter_string for experiments:
// comparisons on name (= != LIKE ILIKE), creation_time and last_update_time
// (= != < <= > >=, in milliseconds) and tags.<key> (as run tags), joined by
// AND. Every error wraps ErrInvalid and names the offending token.
func ParseExperimentFilter(s string) (ExperimentFilter, error) {
	clauses, err := experimentSchema.parseFilter(s)
	if err != nil {
		return ExperimentFilter{}, err
	}
	return ExperimentFilter{clauses: clauses}, nil
}

// Match reports whether e satisfies every clause of f. A clause on a tag e
// lacks is false, as in MLflow.
func (f ExperimentFilter) Match(e *structs.Experiment) bool {
	if e == nil {
		return false
	}
	for i := range f.clauses {
		c := &f.clauses[i]
		var ok bool
		if c.entity == EntityTag {
			v, has := e.Tags[c.key]
			ok = c.matchKeyValue(v, has)
		} else {
			s, n, has := experimentAttr(e, c.key)
			ok = has && (c.numeric && c.matchNumber(n) || !c.numeric && c.matchString(s))
		}
		if !ok {
			return false
		}
	}
	return true
}

// experimentAttr returns an experiment's attribute; ok is false for a time
// never set.
func experimentAttr(e *structs.Experiment, key string) (s string, n float64, ok bool) {
	switch key {
	case AttrName:
		return e.Name, 0, true
	case AttrExperimentID:
		return e.ID, 0, true
	case AttrCreationTime:
		return "", float64(e.CreatedAt.UnixMilli()), !e.CreatedAt.IsZero()
	case AttrLastUpdateTime:
		return "", float64(e.UpdatedAt.UnixMilli()), !e.UpdatedAt.IsZero()
	}
	return "", 0, false
}

// ParseExperimentOrderBy parses MLflow order_by clauses for experiments:
// "[attribute.]<key> [ASC|DESC]" with key name, experiment_id,
// creation_time or last_update_time.
func ParseExperimentOrderBy(clauses []string) ([]OrderBy, error) {
	return experimentSchema.parseOrderBy(clauses, false)
}

// defaultExperimentOrder is MLflow's order of search_experiments when the
// request names none.
var defaultExperimentOrder = []OrderBy{
	{Entity: EntityAttribute, Key: AttrCreationTime, Ascending: false},
	{Entity: EntityAttribute, Key: AttrExperimentID, Ascending: true},
}

// SortExperiments sorts exps in place as MLflow's search_experiments does:
// with no order, creation_time descending then experiment_id ascending;
// otherwise by each clause, then, unless a clause names it,
// experiment_id descending (MLflow's tie-breaker). Experiments without a
// value (a zero time) sort last whatever the direction; experiment IDs
// compare as numbers.
func SortExperiments(exps []*structs.Experiment, order []OrderBy) {
	if len(order) == 0 {
		order = defaultExperimentOrder
	} else if !slices.ContainsFunc(order, func(o OrderBy) bool {
		return o.Entity == EntityAttribute && o.Key == AttrExperimentID
	}) {
		order = append(slices.Clip(order), OrderBy{Entity: EntityAttribute, Key: AttrExperimentID})
	}
	slices.SortStableFunc(exps, func(a, b *structs.Experiment) int {
		for _, o := range order {
			if c := compareSortValues(experimentSortValue(a, o), experimentSortValue(b, o), o.Ascending); c != 0 {
				return c
			}
		}
		return 0
	})
}

func experimentSortValue(e *structs.Experiment, o OrderBy) sortValue {
	if o.Entity != EntityAttribute {
		return sortValue{rank: rankMissing}
	}
	s, n, ok := experimentAttr(e, o.Key)
	switch {
	case !ok:
		return sortValue{rank: rankMissing}
	case o.Key == AttrCreationTime || o.Key == AttrLastUpdateTime:
		return numberValue(n)
	case o.Key == AttrExperimentID:
		return sortValue{str: s, id: true}
	}
	return sortValue{str: s}
}
