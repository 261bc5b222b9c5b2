package structs

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Source and feature commands (DESIGN.md §8). Never renumber; add new ones
// at the end of RangeData.
const (
	// SourcePutType creates a source or replaces its spec, keeping its
	// position and runs.
	SourcePutType MessageType = 68
	// SourceDeleteType removes a source with its position and runs.
	SourceDeleteType MessageType = 69
	// SourceIngestType commits one batch of a source: its feature rows, its
	// staged records, its counts, and its position, compared first with the
	// position the batch was read from.
	SourceIngestType MessageType = 70
	// EntityPutType creates or replaces an entity.
	EntityPutType MessageType = 71
	// EntityDeleteType removes an entity no view uses.
	EntityDeleteType MessageType = 72
	// FeatureViewPutType creates or replaces a feature view.
	FeatureViewPutType MessageType = 73
	// FeatureViewDeleteType removes a view with its values.
	FeatureViewDeleteType MessageType = 74
	// FeatureServicePutType creates or replaces a feature service.
	FeatureServicePutType MessageType = 75
	// FeatureServiceDeleteType removes a feature service.
	FeatureServiceDeleteType MessageType = 76
	// FeatureCompactType deletes a view's values older than its retention.
	FeatureCompactType MessageType = 77
	// SourcePauseType pauses or resumes a source.
	SourcePauseType MessageType = 78
	// SourceAssignType places a source's ingestion actor on a node.
	SourceAssignType MessageType = 79
	// SourceTriggerType asks for a run of a source read in runs.
	SourceTriggerType MessageType = 80
	// SourceRunType records a run's start, progress or end.
	SourceRunType MessageType = 81
	// SourceResetType clears the position of a source whose records can
	// be read again without doubling (Rereadable), so that its next run
	// reads everything: the way to fill a view declared after the fact.
	SourceResetType MessageType = 82
)

var _ = registerTypes(RangeData,
	TypeDef{SourcePutType, "source_put"},
	TypeDef{SourceDeleteType, "source_delete"},
	TypeDef{SourceIngestType, "source_ingest"},
	TypeDef{EntityPutType, "entity_put"},
	TypeDef{EntityDeleteType, "entity_delete"},
	TypeDef{FeatureViewPutType, "feature_view_put"},
	TypeDef{FeatureViewDeleteType, "feature_view_delete"},
	TypeDef{FeatureServicePutType, "feature_service_put"},
	TypeDef{FeatureServiceDeleteType, "feature_service_delete"},
	TypeDef{FeatureCompactType, "feature_compact"},
	TypeDef{SourcePauseType, "source_pause"},
	TypeDef{SourceAssignType, "source_assign"},
	TypeDef{SourceTriggerType, "source_trigger"},
	TypeDef{SourceRunType, "source_run"},
	TypeDef{SourceResetType, "source_reset"},
)

// Limits of feature records.
const (
	MaxJoinKeys         = 8
	MaxViewFeatures     = 256
	MaxServiceFeatures  = 1024
	MaxFeatureExprLen   = 4096
	MaxEntityKeyLen     = 1024
	MaxIngestRows       = 8000
	MaxFeatureStringLen = 64 << 10
)

// Entity is what features describe: a user, a card, a store. Its join keys
// name the columns that identify one.
type Entity struct {
	Name        string    `msgpack:"name" json:"name"`
	JoinKeys    []string  `msgpack:"join_keys" json:"join_keys"`
	Description string    `msgpack:"description,omitempty" json:"description,omitempty"`
	CreatedAt   time.Time `msgpack:"created_at" json:"created_at"`
	UpdatedAt   time.Time `msgpack:"updated_at" json:"updated_at"`
	CreateIndex uint64    `msgpack:"create_index" json:"create_index"`
	ModifyIndex uint64    `msgpack:"modify_index" json:"modify_index"`
}

var columnNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// ValidateColumnName checks a name a feature expression can refer to: a
// join key, a timestamp column, a feature.
func ValidateColumnName(field, name string) error {
	if !columnNameRE.MatchString(name) {
		return Errorf(CodeInvalid, "%s %q is invalid: use 1-128 letters, digits or '_', not starting with a digit", field, name)
	}
	return nil
}

// Validate checks an entity before it is proposed, and again in Apply.
func (e *Entity) Validate() error {
	if err := ValidateName("name", e.Name); err != nil {
		return err
	}
	if len(e.JoinKeys) == 0 || len(e.JoinKeys) > MaxJoinKeys {
		return Errorf(CodeInvalid, "join_keys must list 1 to %d columns", MaxJoinKeys)
	}
	for i, k := range e.JoinKeys {
		if err := ValidateColumnName(fmt.Sprintf("join_keys[%d]", i), k); err != nil {
			return err
		}
		if slices.Index(e.JoinKeys, k) != i {
			return Errorf(CodeInvalid, "join_keys lists %q twice", k)
		}
	}
	if len(e.Description) > MaxDescriptionLen {
		return Errorf(CodeInvalid, "description is %d bytes, more than %d", len(e.Description), MaxDescriptionLen)
	}
	return nil
}

// Aggregations a windowed feature may compute.
var Aggregations = []string{"count", "sum", "avg", "min", "max", "last"}

var aggExprRE = regexp.MustCompile(`^\s*(count|sum|avg|min|max|last)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)?\s*\)\s*$`)

// ParseAggregation reads a windowed feature's expression, fn(column) (or
// count()), returning the function and the column ("" for count()).
func ParseAggregation(expr string) (fn, column string, ok bool) {
	m := aggExprRE.FindStringSubmatch(expr)
	if m == nil || (m[2] == "" && m[1] != "count") {
		return "", "", false
	}
	return m[1], m[2], true
}

// Feature is one feature of a view:
//   - without Expr, the source column of the same name;
//   - with Expr and no Window, a row expression (expr-lang) over the
//     record's columns, evaluated when the record is ingested;
//   - with Window, an aggregation fn(column) over the entity's records in
//     the window that ends at the time asked about, computed when read.
type Feature struct {
	Name   string `msgpack:"name" json:"name"`
	Type   string `msgpack:"type,omitempty" json:"type,omitempty"`
	Expr   string `msgpack:"expr,omitempty" json:"expr,omitempty"`
	Window string `msgpack:"window,omitempty" json:"window,omitempty"`
}

// Windowed reports whether the feature is an aggregation over a window.
func (f *Feature) Windowed() bool { return f.Window != "" }

// WindowDuration is the parsed window; 0 for a row feature.
func (f *Feature) WindowDuration() time.Duration {
	d, _ := ParseSpan(f.Window)
	return d
}

// FeatureView is a set of features of one entity, computed from one source's
// records and timestamped by one of their columns.
type FeatureView struct {
	Name            string    `msgpack:"name" json:"name"`
	Entity          string    `msgpack:"entity" json:"entity"`
	Source          string    `msgpack:"source" json:"source"`
	TimestampColumn string    `msgpack:"timestamp_column" json:"timestamp_column"`
	Features        []Feature `msgpack:"features" json:"features"`
	// TTL: a value older than this at the time asked about is no value.
	// Empty never expires.
	TTL string `msgpack:"ttl,omitempty" json:"ttl,omitempty"`
	// Retain: values whose timestamp is older than this are compacted
	// away; empty keeps them all. Point-in-time reads before it find
	// nothing.
	Retain      string    `msgpack:"retain,omitempty" json:"retain,omitempty"`
	Description string    `msgpack:"description,omitempty" json:"description,omitempty"`
	CreatedAt   time.Time `msgpack:"created_at" json:"created_at"`
	UpdatedAt   time.Time `msgpack:"updated_at" json:"updated_at"`
	CreateIndex uint64    `msgpack:"create_index" json:"create_index"`
	ModifyIndex uint64    `msgpack:"modify_index" json:"modify_index"`
	// Rows counts the values ever written; it numbers them, so that two
	// values of one entity with one timestamp are read in the order they
	// were written.
	Rows uint64 `msgpack:"rows" json:"rows"`
	// LastWriteAt is when the last batch with values of the view was
	// committed, and NewestValueAt the newest value timestamp it holds:
	// how fresh the view is (the dashboard's lag against TTL).
	LastWriteAt   time.Time `msgpack:"last_write_at,omitempty" json:"last_write_at,omitzero"`
	NewestValueAt time.Time `msgpack:"newest_value_at,omitempty" json:"newest_value_at,omitzero"`
}

// TTLDuration is the parsed TTL, 0 for none.
func (v *FeatureView) TTLDuration() time.Duration {
	d, _ := ParseSpan(v.TTL)
	return d
}

// RetainDuration is the parsed retention, 0 for all.
func (v *FeatureView) RetainDuration() time.Duration {
	d, _ := ParseSpan(v.Retain)
	return d
}

// Feature returns the view's feature of that name.
func (v *FeatureView) Feature(name string) (*Feature, bool) {
	for i := range v.Features {
		if v.Features[i].Name == name {
			return &v.Features[i], true
		}
	}
	return nil, false
}

// Validate checks what the view says of itself; the node and Apply check
// it against its entity and source besides (CheckViewColumns).
func (v *FeatureView) Validate() error {
	if err := ValidateName("name", v.Name); err != nil {
		return err
	}
	if err := ValidateName("entity", v.Entity); err != nil {
		return err
	}
	if err := ValidateName("source", v.Source); err != nil {
		return err
	}
	if err := ValidateColumnName("timestamp_column", v.TimestampColumn); err != nil {
		return err
	}
	if len(v.Features) == 0 || len(v.Features) > MaxViewFeatures {
		return Errorf(CodeInvalid, "features must list 1 to %d features", MaxViewFeatures)
	}
	for i := range v.Features {
		f := &v.Features[i]
		field := fmt.Sprintf("features[%d]", i)
		if err := ValidateColumnName(field+".name", f.Name); err != nil {
			return err
		}
		if j := slices.IndexFunc(v.Features, func(g Feature) bool { return g.Name == f.Name }); j != i {
			return Errorf(CodeInvalid, "%s.name %q is also features[%d]'s", field, f.Name, j)
		}
		if f.Type != "" && !slices.Contains(ColumnTypes, f.Type) {
			return Errorf(CodeInvalid, "%s.type %q: use one of %s", field, f.Type, strings.Join(ColumnTypes, ", "))
		}
		if len(f.Expr) > MaxFeatureExprLen {
			return Errorf(CodeInvalid, "%s.expr is %d bytes, more than %d", field, len(f.Expr), MaxFeatureExprLen)
		}
		if f.Window != "" {
			d, err := ParseSpan(f.Window)
			if err != nil || d <= 0 {
				return Errorf(CodeInvalid, "%s.window %q is not a positive duration (1h, 1d, 7d)", field, f.Window)
			}
			if _, _, ok := ParseAggregation(f.Expr); !ok {
				return Errorf(CodeInvalid, "%s.expr %q: a windowed feature is one of %s over a column, e.g. sum(amount) or count()", field, f.Expr, strings.Join(Aggregations, ", "))
			}
		} else if f.Expr != "" && f.Type == "" {
			return Errorf(CodeInvalid, "%s.type is required for an expression", field)
		}
	}
	for _, s := range []struct{ field, val string }{{"ttl", v.TTL}, {"retain", v.Retain}} {
		if s.val == "" {
			continue
		}
		if d, err := ParseSpan(s.val); err != nil || d <= 0 {
			return Errorf(CodeInvalid, "%s %q is not a positive duration (24h, 7d)", s.field, s.val)
		}
	}
	if len(v.Description) > MaxDescriptionLen {
		return Errorf(CodeInvalid, "description is %d bytes, more than %d", len(v.Description), MaxDescriptionLen)
	}
	return nil
}

// CheckViewColumns checks a view against its entity's join keys and its
// source's schema: the join keys and the timestamp column are columns of
// the source, every plain feature is a column of a type it can take, and
// every aggregation reads a column (numeric, but for last and count). Row
// expressions are compiled by the node, which knows expr-lang; Apply knows
// only their declared type. It fills the type of plain and windowed
// features left empty.
func CheckViewColumns(v *FeatureView, e *Entity, schema map[string]string) error {
	for _, k := range e.JoinKeys {
		t, ok := schema[k]
		if !ok {
			return Errorf(CodeInvalid, "entity %q's join key %q is not a column of source %q", e.Name, k, v.Source)
		}
		if t != "int" && t != "string" {
			return Errorf(CodeInvalid, "entity %q's join key %q is a %s column of source %q; a join key is an int or a string", e.Name, k, t, v.Source)
		}
	}
	if t, ok := schema[v.TimestampColumn]; !ok {
		return Errorf(CodeInvalid, "timestamp_column %q is not a column of source %q", v.TimestampColumn, v.Source)
	} else if t != "timestamp" {
		return Errorf(CodeInvalid, "timestamp_column %q is a %s column of source %q, not a timestamp", v.TimestampColumn, t, v.Source)
	}
	for i := range v.Features {
		f := &v.Features[i]
		field := fmt.Sprintf("features[%d]", i)
		switch {
		case f.Windowed():
			fn, col, _ := ParseAggregation(f.Expr)
			colType := "int"
			if col != "" {
				var ok bool
				if colType, ok = schema[col]; !ok {
					return Errorf(CodeInvalid, "%s (%s): %s reads column %q, which source %q does not have", field, f.Name, fn, col, v.Source)
				}
			}
			out := AggregationType(fn, colType)
			if out == "" {
				return Errorf(CodeInvalid, "%s (%s): %s needs a numeric column; %q is a %s", field, f.Name, fn, col, colType)
			}
			if f.Type == "" {
				f.Type = out
			} else if !TypeAccepts(f.Type, out) {
				return Errorf(CodeInvalid, "%s (%s) is declared %s, but %s gives a %s", field, f.Name, f.Type, f.Expr, out)
			}
		case f.Expr == "":
			t, ok := schema[f.Name]
			if !ok {
				return Errorf(CodeInvalid, "%s (%s) is not a column of source %q; give it an expr to compute it", field, f.Name, v.Source)
			}
			if f.Type == "" {
				f.Type = t
			} else if !TypeAccepts(f.Type, t) {
				return Errorf(CodeInvalid, "%s (%s) is declared %s, but the column is a %s", field, f.Name, f.Type, t)
			}
		}
	}
	return nil
}

// AggregationType is the type an aggregation gives over a column of the
// given type, or "" when it cannot read such a column.
func AggregationType(fn, colType string) string {
	numeric := colType == "int" || colType == "float"
	switch fn {
	case "count":
		return "int"
	case "last":
		return colType
	case "sum", "min", "max":
		if !numeric {
			return ""
		}
		if fn != "sum" || colType == "float" {
			return colType
		}
		return "int"
	case "avg":
		if !numeric {
			return ""
		}
		return "float"
	}
	return ""
}

// TypeAccepts reports whether a feature declared as want can hold values of
// type got: the same type, or a float that holds an int.
func TypeAccepts(want, got string) bool {
	return want == got || (want == "float" && got == "int")
}

// FeatureService is a named list of features a model reads, each
// "view:feature" or "view:*".
type FeatureService struct {
	Name        string    `msgpack:"name" json:"name"`
	Features    []string  `msgpack:"features" json:"features"`
	Description string    `msgpack:"description,omitempty" json:"description,omitempty"`
	CreatedAt   time.Time `msgpack:"created_at" json:"created_at"`
	UpdatedAt   time.Time `msgpack:"updated_at" json:"updated_at"`
	CreateIndex uint64    `msgpack:"create_index" json:"create_index"`
	ModifyIndex uint64    `msgpack:"modify_index" json:"modify_index"`
}

// ParseFeatureRef splits "view:feature" (feature may be "*").
func ParseFeatureRef(field, ref string) (view, feature string, err error) {
	view, feature, ok := strings.Cut(ref, ":")
	if !ok {
		return "", "", Errorf(CodeInvalid, "%s %q is not view:feature", field, ref)
	}
	if err := ValidateName(field+" view", view); err != nil {
		return "", "", err
	}
	if feature != "*" {
		if err := ValidateColumnName(field+" feature", feature); err != nil {
			return "", "", err
		}
	}
	return view, feature, nil
}

// Validate checks a service before it is proposed, and again in Apply.
func (s *FeatureService) Validate() error {
	if err := ValidateName("name", s.Name); err != nil {
		return err
	}
	if len(s.Features) == 0 || len(s.Features) > MaxServiceFeatures {
		return Errorf(CodeInvalid, "features must list 1 to %d features", MaxServiceFeatures)
	}
	for i, ref := range s.Features {
		if _, _, err := ParseFeatureRef(fmt.Sprintf("features[%d]", i), ref); err != nil {
			return err
		}
		if slices.Index(s.Features, ref) != i {
			return Errorf(CodeInvalid, "features lists %q twice", ref)
		}
	}
	if len(s.Description) > MaxDescriptionLen {
		return Errorf(CodeInvalid, "description is %d bytes, more than %d", len(s.Description), MaxDescriptionLen)
	}
	return nil
}

// EntityKey is the text form of one entity's join-key values, the part of a
// value's key that names the entity: each value as text (an int in
// decimal), joined by a unit separator.
type EntityKey string

const entityKeySep = "\x1f"

// MakeEntityKey builds the key of join-key values given as int64, float64
// holding an integer, or string. field names the input in errors.
func MakeEntityKey(field string, vals []any) (EntityKey, error) {
	var b strings.Builder
	for i, v := range vals {
		if i > 0 {
			b.WriteString(entityKeySep)
		}
		switch x := v.(type) {
		case int64:
			b.WriteString(strconv.FormatInt(x, 10))
		case int:
			b.WriteString(strconv.Itoa(x))
		case float64:
			if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
				return "", Errorf(CodeInvalid, "%s: %v is not an integer; a join key is an int or a string", field, x)
			}
			b.WriteString(strconv.FormatInt(int64(x), 10))
		case string:
			if x == "" || strings.ContainsAny(x, "\x00"+entityKeySep) {
				return "", Errorf(CodeInvalid, "%s: %q is empty or holds a control character", field, x)
			}
			b.WriteString(x)
		case nil:
			return "", Errorf(CodeInvalid, "%s is null", field)
		default:
			return "", Errorf(CodeInvalid, "%s: a %T is not a join key value; use an int or a string", field, v)
		}
	}
	if b.Len() > MaxEntityKeyLen {
		return "", Errorf(CodeInvalid, "%s: the key is %d bytes, more than %d", field, b.Len(), MaxEntityKeyLen)
	}
	return EntityKey(b.String()), nil
}

// FeatureRow is one record's values for one view: the entity, the record's
// timestamp, and the view's row features (plain and expression), plus the
// columns its aggregations read, under their column names. Seq is its place
// in the view's write order, given by Apply (a proposer leaves it 0): of two
// rows of one entity with one timestamp, the later written is the latest.
type FeatureRow struct {
	View   string         `msgpack:"v"`
	Entity EntityKey      `msgpack:"e"`
	TS     int64          `msgpack:"t"` // Unix nanoseconds
	Seq    uint64         `msgpack:"s,omitempty"`
	Values map[string]any `msgpack:"x"`
}

// Time is the row's timestamp.
func (r *FeatureRow) Time() time.Time { return time.Unix(0, r.TS).UTC() }

// Put requests.

// EntityPutRequest creates or replaces an entity.
type EntityPutRequest struct {
	Entity Entity `msgpack:"entity"`
}

// FeatureViewPutRequest creates or replaces a view. Schema is the source's
// schema as the proposer saw it; Apply checks the view against the source's
// stored schema, not this.
type FeatureViewPutRequest struct {
	View FeatureView `msgpack:"view"`
}

// FeatureServicePutRequest creates or replaces a feature service.
type FeatureServicePutRequest struct {
	Service FeatureService `msgpack:"service"`
}

// NameRequest names the record a delete removes.
type NameRequest struct {
	Name string `msgpack:"name"`
}

// FeatureCompactRequest deletes the values of a view older than Before, at
// most Limit of them (the leader repeats it until nothing is left).
type FeatureCompactRequest struct {
	View   string `msgpack:"view"`
	Before int64  `msgpack:"before"` // Unix nanoseconds
	Limit  int    `msgpack:"limit"`
}

// FeatureCompactResult says what a FeatureCompact command deleted, and
// whether values older than its cutoff (or of a deleted view) remain.
type FeatureCompactResult struct {
	Deleted int  `msgpack:"deleted"`
	More    bool `msgpack:"more"`
}

// SourcePauseRequest pauses (Paused) or resumes a source.
type SourcePauseRequest struct {
	Name   string    `msgpack:"name"`
	Paused bool      `msgpack:"paused"`
	At     time.Time `msgpack:"at"`
}
