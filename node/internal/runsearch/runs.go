package runsearch

import (
	"github.com/kilnml/kiln/raftfsm/structs"
)

// Attribute keys of runs, as MLflow's RunInfo names its searchable ones.
const (
	AttrRunID       = "run_id"
	AttrRunName     = "run_name"
	AttrUserID      = "user_id"
	AttrStatus      = "status"
	AttrStartTime   = "start_time"
	AttrEndTime     = "end_time"
	AttrArtifactURI = "artifact_uri"
)

// runNameTag is the tag MLflow keeps equal to a run's name.
const runNameTag = "mlflow.runName"

var runAttrs = map[string]attrSpec{
	AttrRunID:       {key: AttrRunID, list: true},
	AttrRunName:     {key: AttrRunName},
	AttrUserID:      {key: AttrUserID},
	AttrStatus:      {key: AttrStatus},
	AttrArtifactURI: {key: AttrArtifactURI},
	AttrStartTime:   {key: AttrStartTime, numeric: true},
	AttrEndTime:     {key: AttrEndTime, numeric: true},
}

// runSchema is MLflow's SearchUtils: filters take every searchable
// attribute and the aliases created (start_time) and "run name"
// (run_name); order_by takes created but not "run name", as MLflow's.
var runSchema = func() *schema {
	filterAttrs := map[string]attrSpec{
		"created": runAttrs[AttrStartTime], "Created": runAttrs[AttrStartTime],
		"run name": runAttrs[AttrRunName], "Run name": runAttrs[AttrRunName], "Run Name": runAttrs[AttrRunName],
	}
	orderAttrs := map[string]attrSpec{
		"created": runAttrs[AttrStartTime], "Created": runAttrs[AttrStartTime],
	}
	for k, v := range runAttrs {
		filterAttrs[k], orderAttrs[k] = v, v
	}
	return &schema{
		entities: map[string]Entity{
			"metric": EntityMetric, "metrics": EntityMetric,
			"parameter": EntityParam, "parameters": EntityParam, "param": EntityParam, "params": EntityParam,
			"tag": EntityTag, "tags": EntityTag,
			"attribute": EntityAttribute, "attributes": EntityAttribute, "attr": EntityAttribute, "run": EntityAttribute,
		},
		names: "[metric, parameter, tag, attribute]",
		unsupported: map[string]string{
			"dataset":  "dataset filters are not supported: Kiln runs record no dataset inputs",
			"datasets": "dataset filters are not supported: Kiln runs record no dataset inputs",
		},
		filterAttrs:   filterAttrs,
		orderAttrs:    orderAttrs,
		orderEntities: map[Entity]bool{EntityMetric: true, EntityParam: true, EntityTag: true, EntityAttribute: true},
	}
}()

// ArtifactURIFunc gives a run's artifact URI, or "" when it has none.
// structs.Run does not store one: MLflow derives it from the experiment's
// artifact location, which only the caller holding the experiments knows.
type ArtifactURIFunc func(r *structs.Run) string

// RunFilter is a parsed search_runs filter string. The zero RunFilter
// matches every run.
type RunFilter struct {
	clauses     []clause
	artifactURI ArtifactURIFunc
}

// ParseRunFilter parses an MLflow filter_string for runs (see the package
// documentation for the grammar). An empty or blank string matches every
// run. Every error wraps ErrInvalid and names the offending token.
func ParseRunFilter(s string) (RunFilter, error) {
	clauses, err := runSchema.parseFilter(s)
	if err != nil {
		return RunFilter{}, err
	}
	return RunFilter{clauses: clauses}, nil
}

// WithArtifactURI returns f resolving attributes.artifact_uri through fn.
// Without one, no run has an artifact URI, so that every comparison on it
// fails, as any comparison on a missing key does.
func (f RunFilter) WithArtifactURI(fn ArtifactURIFunc) RunFilter {
	f.artifactURI = fn
	return f
}

// Match reports whether r satisfies every clause of f. A clause on a metric,
// param or tag the run lacks is false, whatever its comparator (!= too), as
// in MLflow; so is one on end_time for a run that has not ended.
func (f RunFilter) Match(r *structs.Run) bool {
	if r == nil {
		return false
	}
	for i := range f.clauses {
		if !matchRun(&f.clauses[i], r, f.artifactURI) {
			return false
		}
	}
	return true
}

func matchRun(c *clause, r *structs.Run, uri ArtifactURIFunc) bool {
	switch c.entity {
	case EntityMetric:
		p, ok := r.Metrics[c.key]
		return ok && c.matchNumber(p.Value)
	case EntityParam:
		v, ok := r.Params[c.key]
		return c.matchKeyValue(v, ok)
	case EntityTag:
		v, ok := runTag(r, c.key)
		return c.matchKeyValue(v, ok)
	}
	s, n, ok := runAttr(r, c.key, uri)
	switch {
	case !ok:
		return false
	case c.numeric:
		return c.matchNumber(n)
	default:
		return c.matchString(s)
	}
}

// runTag returns a run's tag. MLflow keeps the tag mlflow.runName equal to
// the run's name, so a run whose tags lack it still answers with its name.
func runTag(r *structs.Run, key string) (string, bool) {
	v, ok := r.Tags[key]
	if !ok && key == runNameTag && r.Name != "" {
		return r.Name, true
	}
	return v, ok
}

// runAttr returns a run's attribute: its text for string keys, its value in
// milliseconds for numeric ones; ok is false when the run has none (an
// end_time of a run still going, an artifact URI nobody supplied).
func runAttr(r *structs.Run, key string, uri ArtifactURIFunc) (s string, n float64, ok bool) {
	switch key {
	case AttrRunID:
		return r.ID, 0, true
	case AttrRunName:
		return r.Name, 0, true
	case AttrUserID:
		return r.UserID, 0, true
	case AttrStatus:
		return r.Status, 0, true
	case AttrArtifactURI:
		if uri == nil {
			return "", 0, false
		}
		s = uri(r)
		return s, 0, s != ""
	case AttrStartTime:
		return "", float64(r.StartTime), true
	case AttrEndTime:
		return "", float64(r.EndTime), r.EndTime != 0
	}
	return "", 0, false
}
