package data

import (
	"encoding/json"
	"fmt"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Quarantined is a record kept out of the source's data, with why: a
// record the reader could not decode (rule "decode"), one that does not
// convert to the schema (rule "schema"), one that fails an expectation
// (its rule), or one a feature view cannot key (rule "feature_view").
type Quarantined struct {
	Offset string `json:"offset"`
	Rule   string `json:"rule"`
	Reason string `json:"reason"`
	Raw    string `json:"raw"`
}

// Prepared is a batch made ready to commit.
type Prepared struct {
	// Accepted are the converted records that passed.
	Accepted []Record
	// Rows are the feature rows of the accepted records, for every view of
	// the source.
	Rows        []structs.FeatureRow
	Quarantined []Quarantined
}

// Preparer turns batches of one source into commits: it converts records
// to the source's schema, checks them against its expectations, and
// computes the rows of every feature view that reads the source. It keeps
// a run's state (unique values, null counts) between batches.
type Preparer struct {
	schema  Schema
	checker *Checker
	views   []*View
}

// NewPreparer compiles what a source's batches go through. views are the
// source's feature views, with their entities; a view that does not
// compile is an error naming it.
func NewPreparer(spec *structs.SourceSpec, views []*structs.FeatureView, entities map[string]*structs.Entity) (*Preparer, error) {
	p := &Preparer{schema: NewSchema(spec.Schema), checker: NewChecker(spec)}
	if err := p.SetViews(spec, views, entities); err != nil {
		return nil, err
	}
	return p, nil
}

// SetViews replaces the feature views the records feed (a view declared
// or changed while a stream runs), keeping the run's expectation state.
func (p *Preparer) SetViews(spec *structs.SourceSpec, views []*structs.FeatureView, entities map[string]*structs.Entity) error {
	var compiled []*View
	for _, v := range views {
		e, ok := entities[v.Entity]
		if !ok {
			return fmt.Errorf("data: feature view %s: entity %q not found", v.Name, v.Entity)
		}
		cv, err := CompileView(v, e, spec.Schema)
		if err != nil {
			return fmt.Errorf("data: feature view %s: %w", v.Name, err)
		}
		compiled = append(compiled, cv)
	}
	p.views = compiled
	return nil
}

// Checker is the run's expectations.
func (p *Preparer) Checker() *Checker { return p.checker }

// Prepare converts, checks and computes one batch. offset names where
// record i came from, for the quarantine, and raw gives its text as the
// source sent it (nil: the record as read, in JSON).
func (p *Preparer) Prepare(b *Batch, offset func(i int) string, raw func(i int) string) *Prepared {
	out := &Prepared{Accepted: make([]Record, 0, len(b.Records))}
	for _, bad := range b.Bad {
		out.Quarantined = append(out.Quarantined, Quarantined{Offset: bad.Offset, Rule: "decode", Reason: bad.Reason, Raw: CutRaw(bad.Raw)})
	}
	quarantine := func(i int, rec Record, rule, reason string) {
		text := ""
		if raw != nil {
			text = raw(i)
		} else {
			b, _ := json.Marshal(b.Records[i])
			text = string(b)
		}
		out.Quarantined = append(out.Quarantined, Quarantined{Offset: offset(i), Rule: rule, Reason: reason, Raw: CutRaw(text)})
	}
	rows := make([]structs.FeatureRow, len(p.views))
	for i, rec := range b.Records {
		if len(p.schema.Names) > 0 {
			conv, err := p.schema.Convert(rec)
			if err != nil {
				quarantine(i, rec, "schema", err.Error())
				continue
			}
			rec = conv
		}
		ok := true
		for j, v := range p.views {
			r, err := v.Row(rec)
			if err != nil {
				quarantine(i, rec, "feature_view", err.Error())
				ok = false
				break
			}
			rows[j] = r
		}
		if !ok {
			continue
		}
		if rule, reason := p.checker.Check(rec); rule != "" {
			quarantine(i, rec, rule, reason)
			continue
		}
		out.Accepted = append(out.Accepted, rec)
		out.Rows = append(out.Rows, rows...)
	}
	return out
}
