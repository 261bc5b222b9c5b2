package data

import (
	"fmt"
	"regexp"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Checker holds a source's expectations for one run: the record rules
// judge each record as it comes, the batch rules (max_null_fraction,
// row_count_between) the run as a whole when it ends, and unique remembers
// the values it has seen in the run. A stream's "run" is what its actor
// has read since it started.
type Checker struct {
	rules   []structs.Expectation
	regexps []*regexp.Regexp  // by rule index; nil for other rules
	allowed []map[string]bool // by rule index; nil for other rules
	seen    []map[string]bool // by rule index, unique only
	nulls   []int64           // by rule index, max_null_fraction only
	rows    int64             // records checked
}

// NewChecker compiles a normalized, validated spec's expectations.
func NewChecker(spec *structs.SourceSpec) *Checker {
	c := &Checker{rules: spec.Expectations}
	n := len(c.rules)
	c.regexps = make([]*regexp.Regexp, n)
	c.allowed = make([]map[string]bool, n)
	c.seen = make([]map[string]bool, n)
	c.nulls = make([]int64, n)
	for i, e := range c.rules {
		switch e.Rule {
		case structs.RuleRegex:
			c.regexps[i] = regexp.MustCompile(`^(?:` + e.Pattern + `)$`) // validated
		case structs.RuleAllowed:
			c.allowed[i] = make(map[string]bool, len(e.Values))
			for _, v := range e.Values {
				c.allowed[i][v] = true
			}
		case structs.RuleUnique:
			c.seen[i] = make(map[string]bool)
		}
	}
	return c
}

// valueText is a value as the allowed and regex rules compare it.
func valueText(v any) string {
	if t, ok := v.(time.Time); ok {
		return t.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v)
}

// Check judges one converted record by the record rules and returns the
// first rule it fails and why ("" when it passes). A record that fails is
// not counted by unique or max_null_fraction.
func (c *Checker) Check(rec Record) (rule, reason string) {
	for i, e := range c.rules {
		v := rec[e.Column]
		switch e.Rule {
		case structs.RuleNotNull:
			if v == nil {
				return e.Rule, fmt.Sprintf("column %s is null", e.Column)
			}
		case structs.RuleType:
			if v == nil {
				continue
			}
			if _, err := ConvertValue(e.Type, v); err != nil || !sameKind(e.Type, v) {
				return e.Rule, fmt.Sprintf("column %s: %s is not a %s", e.Column, describe(v), e.Type)
			}
		case structs.RuleRange:
			if v == nil {
				continue
			}
			x, ok := asFloat(v)
			if !ok {
				return e.Rule, fmt.Sprintf("column %s: %s is not a number", e.Column, describe(v))
			}
			if (e.Min != nil && x < *e.Min) || (e.Max != nil && x > *e.Max) {
				return e.Rule, fmt.Sprintf("column %s: %v is outside %s", e.Column, v, rangeText(e.Min, e.Max))
			}
		case structs.RuleAllowed:
			if v != nil && !c.allowed[i][valueText(v)] {
				return e.Rule, fmt.Sprintf("column %s: %s is not one of the allowed values", e.Column, describe(v))
			}
		case structs.RuleRegex:
			if v != nil && !c.regexps[i].MatchString(valueText(v)) {
				return e.Rule, fmt.Sprintf("column %s: %s does not match %s", e.Column, describe(v), e.Pattern)
			}
		case structs.RuleUnique:
			if v != nil && c.seen[i][valueText(v)] {
				return e.Rule, fmt.Sprintf("column %s: %s was already seen in this run", e.Column, describe(v))
			}
		}
	}
	c.rows++
	for i, e := range c.rules {
		v := rec[e.Column]
		switch e.Rule {
		case structs.RuleUnique:
			if v != nil {
				c.seen[i][valueText(v)] = true
			}
		case structs.RuleMaxNullFraction:
			if v == nil {
				c.nulls[i]++
			}
		}
	}
	return "", ""
}

// sameKind reports whether a converted value already is of the type (the
// type rule judges the value as read, before the schema's conversion, so
// a source without a schema can still insist on one).
func sameKind(typ string, v any) bool {
	switch v.(type) {
	case int64:
		return typ == "int" || typ == "float"
	case float64:
		return typ == "float"
	case bool:
		return typ == "bool"
	case time.Time:
		return typ == "timestamp"
	case string:
		return typ == "string"
	}
	return false
}

func asFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

func rangeText(lo, hi *float64) string {
	switch {
	case lo != nil && hi != nil:
		return fmt.Sprintf("[%g, %g]", *lo, *hi)
	case lo != nil:
		return fmt.Sprintf("[%g, ∞)", *lo)
	default:
		return fmt.Sprintf("(-∞, %g]", *hi)
	}
}

// Finish judges the run by the batch rules and returns what failed, one
// sentence each, in rule order; nil when the run passes.
func (c *Checker) Finish() []string {
	var failed []string
	for i, e := range c.rules {
		switch e.Rule {
		case structs.RuleRowCountBetween:
			if (e.Min != nil && float64(c.rows) < *e.Min) || (e.Max != nil && float64(c.rows) > *e.Max) {
				failed = append(failed, fmt.Sprintf("row_count_between: %d rows, outside %s", c.rows, rangeText(e.Min, e.Max)))
			}
		case structs.RuleMaxNullFraction:
			if c.rows > 0 {
				if f := float64(c.nulls[i]) / float64(c.rows); f > *e.Fraction {
					failed = append(failed, fmt.Sprintf("max_null_fraction: column %s is null in %.4g of rows, more than %g", e.Column, f, *e.Fraction))
				}
			}
		}
	}
	return failed
}
