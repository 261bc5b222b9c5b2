package runsearch

import (
	"maps"
	"regexp"
	"slices"
	"strings"
)

// Entity is what a key names: MLflow's identifier types, in their canonical
// spellings.
type Entity string

const (
	EntityMetric    Entity = "metric"    // prefixes metric., metrics.
	EntityParam     Entity = "parameter" // parameter., parameters., param., params.
	EntityTag       Entity = "tag"       // tag., tags.
	EntityAttribute Entity = "attribute" // attribute., attributes., attr., run., or none
)

// op is a comparison operator.
type op int

const (
	opEq op = iota
	opNe
	opLt
	opLe
	opGt
	opGe
	opLike
	opILike
	opIn
	opNotIn
)

var opNames = [...]string{"=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "IN", "NOT IN"}

func (o op) String() string { return opNames[o] }

// Operator sets, as MLflow's VALID_*_COMPARATORS (plus Kiln's numeric
// comparison of params and tags).
var (
	numericOps   = []op{opEq, opNe, opLt, opLe, opGt, opGe}
	stringOps    = []op{opEq, opNe, opLike, opILike}
	listOps      = []op{opEq, opNe, opLike, opILike, opIn, opNotIn}
	keyValueOps  = []op{opEq, opNe, opLike, opILike, opLt, opLe, opGt, opGe}
	orderingOnly = []op{opLt, opLe, opGt, opGe}
)

func opList(ops []op) string {
	names := make([]string, len(ops))
	for i, o := range ops {
		names[i] = o.String()
	}
	return "[" + strings.Join(names, " ") + "]"
}

// attrSpec is one attribute key a filter or an order_by clause may name.
type attrSpec struct {
	key     string // the canonical key: an alias (created) resolves to it (start_time)
	numeric bool   // compared as a number (milliseconds)
	list    bool   // takes IN and NOT IN
}

// schema is what one kind of record can be searched and ordered by.
type schema struct {
	// entities maps each accepted prefix to its entity; names lists the
	// canonical ones for error messages.
	entities map[string]Entity
	names    string
	// unsupported holds prefixes MLflow accepts that Kiln cannot serve,
	// with the reason.
	unsupported map[string]string
	filterAttrs map[string]attrSpec
	orderAttrs  map[string]attrSpec
	// orderEntities are the entities an order_by clause may name.
	orderEntities map[Entity]bool
}

// clause is one parsed comparison.
type clause struct {
	entity Entity
	key    string
	op     op
	// numeric: compare as numbers, against num; otherwise as strings,
	// against str, set (IN) or like (LIKE, ILIKE).
	numeric bool
	num     float64
	str     string
	set     []string
	like    *regexp.Regexp
}

// matchNumber applies a numeric clause to x.
func (c *clause) matchNumber(x float64) bool {
	switch c.op {
	case opEq:
		return x == c.num
	case opNe:
		return x != c.num
	case opLt:
		return x < c.num
	case opLe:
		return x <= c.num
	case opGt:
		return x > c.num
	case opGe:
		return x >= c.num
	}
	return false
}

// matchString applies a string clause to s.
func (c *clause) matchString(s string) bool {
	switch c.op {
	case opEq:
		return s == c.str
	case opNe:
		return s != c.str
	case opLike, opILike:
		return c.like.MatchString(s)
	case opIn:
		return slices.Contains(c.set, s)
	case opNotIn:
		return !slices.Contains(c.set, s)
	}
	return false
}

// matchKeyValue applies a param or tag clause to a value the record may
// lack: a missing key matches nothing, as in MLflow, and under Kiln's
// numeric comparison neither does a value that is not a number.
func (c *clause) matchKeyValue(v string, ok bool) bool {
	if !ok {
		return false
	}
	if c.numeric {
		x, isNum := parseDecimal(v)
		return isNum && c.matchNumber(x)
	}
	return c.matchString(v)
}

// resolve names the entity and key of an identifier token against attrs.
func (sc *schema) resolve(t token, attrs map[string]attrSpec) (Entity, attrSpec, error) {
	segs := t.segs
	ent := EntityAttribute
	var key string
	if len(segs) == 1 {
		key = segs[0].text
	} else {
		first := segs[0]
		if reason, ok := sc.unsupported[first.text]; ok && first.quote != '"' {
			return "", attrSpec{}, errorf("%s: %s", quoteToken(t.raw), reason)
		}
		e, ok := sc.entities[first.text]
		if !ok || first.quote == '"' {
			return "", attrSpec{}, errorf("invalid entity type %s in %s. Valid values are %s",
				quoteToken(first.text), quoteToken(t.raw), sc.names)
		}
		ent = e
		if rest := segs[1:]; len(rest) == 1 {
			key = rest[0].text
		} else {
			parts := make([]string, len(rest))
			for i, s := range rest {
				if s.quote != 0 {
					return "", attrSpec{}, errorf("invalid key in %s: quote the whole key, as tags.`a.b`", quoteToken(t.raw))
				}
				parts[i] = s.text
			}
			key = strings.Join(parts, ".")
		}
	}
	if key == "" {
		return "", attrSpec{}, errorf("empty key in %s", quoteToken(t.raw))
	}
	if ent != EntityAttribute {
		return ent, attrSpec{key: key}, nil
	}
	spec, ok := attrs[key]
	if !ok {
		return "", attrSpec{}, errorf("invalid attribute key %s specified. Valid keys are %s",
			quoteToken(key), "["+strings.Join(slices.Sorted(maps.Keys(attrs)), ", ")+"]")
	}
	return ent, spec, nil
}

// parseFilter parses a conjunction of comparisons. An empty or blank filter
// is no clauses: it matches everything.
func (sc *schema) parseFilter(s string) ([]clause, error) {
	toks, err := lex(s, false)
	if err != nil {
		return nil, err
	}
	if toks[0].kind == tokEOF {
		return nil, nil
	}
	var clauses []clause
	p := 0
	for {
		c, next, err := sc.parseClause(toks, p)
		if err != nil {
			return nil, err
		}
		clauses = append(clauses, c)
		p = next
		t := toks[p]
		if t.kind == tokEOF {
			return clauses, nil
		}
		if !t.keyword("AND") {
			hint := ""
			if t.keyword("OR") {
				hint = ": only AND joins clauses"
			}
			return nil, errorf("invalid clause(s) in filter string: %s at offset %d%s", t.describe(), t.pos, hint)
		}
		p++
	}
}

// parseClause parses the comparison that starts at toks[p] and returns it
// with the index of the token after it.
func (sc *schema) parseClause(toks []token, p int) (clause, int, error) {
	t := toks[p]
	if t.kind == tokEOF {
		prev := toks[p-1]
		return clause{}, 0, errorf("invalid clause(s) in filter string: %s at offset %d is not followed by a comparison", prev.describe(), prev.pos)
	}
	if t.kind != tokIdent || t.keyword("AND") || t.keyword("OR") || t.keyword("NOT") {
		return clause{}, 0, errorf("invalid clause(s) in filter string: %s at offset %d: expected <entity>.<key> <comparator> <value>", t.describe(), t.pos)
	}
	ent, spec, err := sc.resolve(t, sc.filterAttrs)
	if err != nil {
		return clause{}, 0, err
	}
	c := clause{entity: ent, key: spec.key}

	// The comparator.
	ot := toks[p+1]
	p += 2
	switch {
	case ot.kind == tokOp:
		i := slices.Index(opNames[:], ot.raw)
		if i < 0 || op(i) > opGe {
			return clause{}, 0, errorf("invalid comparator %s at offset %d", ot.describe(), ot.pos)
		}
		c.op = op(i)
	case ot.keyword("LIKE"):
		c.op = opLike
	case ot.keyword("ILIKE"):
		c.op = opILike
	case ot.keyword("IN"):
		c.op = opIn
	case ot.keyword("NOT") && toks[p].keyword("IN"):
		c.op = opNotIn
		p++
	default:
		return clause{}, 0, errorf("expected a comparator after %s, found %s at offset %d", quoteToken(t.raw), ot.describe(), ot.pos)
	}
	var valid []op
	switch {
	case ent == EntityMetric, ent == EntityAttribute && spec.numeric:
		valid = numericOps
	case ent == EntityAttribute && spec.list:
		valid = listOps
	case ent == EntityAttribute:
		valid = stringOps
	default:
		valid = keyValueOps
	}
	if !slices.Contains(valid, c.op) {
		msg := ""
		if (c.op == opIn || c.op == opNotIn) && ent == EntityAttribute && !spec.numeric {
			msg = "; only the run_id attribute takes a list"
		}
		return clause{}, 0, errorf("invalid comparator %s for %s, not one of %s%s", quoteToken(c.op.String()), quoteToken(t.raw), opList(valid), msg)
	}

	// The value.
	vt := toks[p]
	p++
	switch {
	case c.op == opIn || c.op == opNotIn:
		set, next, err := parseList(toks, p-1)
		if err != nil {
			return clause{}, 0, err
		}
		c.set, p = set, next
	case ent == EntityMetric || ent == EntityAttribute && spec.numeric:
		if vt.kind != tokNumber {
			return clause{}, 0, errorf("expected a numeric value for %s, found %s at offset %d", quoteToken(t.raw), vt.describe(), vt.pos)
		}
		c.numeric, c.num = true, vt.num
	case slices.Contains(orderingOnly, c.op):
		// Kiln's numeric comparison of a param or tag: params.depth > 4.
		c.numeric, c.num = true, vt.num
		if vt.kind != tokNumber {
			s, quoted := vt.quotedValue()
			x, isNum := parseDecimal(s)
			if !quoted || !isNum {
				return clause{}, 0, errorf("%s with %s needs a number, found %s at offset %d", quoteToken(t.raw), quoteToken(c.op.String()), vt.describe(), vt.pos)
			}
			c.num = x
		}
	default:
		s, ok := vt.quotedValue()
		if !ok {
			return clause{}, 0, errorf("expected a quoted string value for %s (e.g. 'my-value'), found %s at offset %d", quoteToken(t.raw), vt.describe(), vt.pos)
		}
		c.str = s
		if c.op == opLike || c.op == opILike {
			if c.like, err = compileLike(s, c.op == opILike); err != nil {
				return clause{}, 0, err
			}
		}
	}
	return c, p, nil
}

// parseList parses a parenthesized, non-empty list of quoted strings that
// starts at toks[p], and returns it with the index of the token after it.
func parseList(toks []token, p int) ([]string, int, error) {
	if toks[p].kind != tokLParen {
		return nil, 0, errorf("expected a list of quoted strings, as ('a', 'b'), found %s at offset %d", toks[p].describe(), toks[p].pos)
	}
	open := toks[p]
	p++
	if toks[p].kind == tokRParen {
		return nil, 0, errorf("expected a non-empty list of quoted strings, found '()' at offset %d", open.pos)
	}
	var set []string
	for {
		s, ok := toks[p].quotedValue()
		if !ok {
			return nil, 0, errorf("expected a quoted string in the list at offset %d, found %s at offset %d", open.pos, toks[p].describe(), toks[p].pos)
		}
		set = append(set, s)
		p++
		switch toks[p].kind {
		case tokComma:
			p++
		case tokRParen:
			return set, p + 1, nil
		default:
			return nil, 0, errorf("expected ',' or ')' in the list at offset %d, found %s at offset %d", open.pos, toks[p].describe(), toks[p].pos)
		}
	}
}
