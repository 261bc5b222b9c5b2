package runsearch

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// tokKind is the kind of one lexical token of a filter or an order_by clause.
type tokKind int

const (
	tokEOF    tokKind = iota
	tokIdent          // a dotted path of segments: metrics.auc, tags."a b", AND
	tokString         // a single-quoted literal
	tokNumber         // a decimal number: 4, -0.5, 1e-3
	tokOp             // = != < <= > >=, and <> == so that errors can name them
	tokLParen
	tokRParen
	tokComma
)

// segment is one dot-separated part of an identifier. Quote is 0 for a bare
// word, or the quote character ('`' or '"') that enclosed it.
type segment struct {
	text  string
	quote byte
}

// token is one lexical token. Raw is its source text, which errors quote.
type token struct {
	kind tokKind
	raw  string
	pos  int
	segs []segment // tokIdent
	str  string    // tokString: the value, unescaped
	num  float64   // tokNumber
}

// keyword reports whether t is the bare word kw, in any case (AND, LIKE...).
func (t token) keyword(kw string) bool {
	return t.kind == tokIdent && len(t.segs) == 1 && t.segs[0].quote == 0 &&
		strings.EqualFold(t.segs[0].text, kw)
}

// quotedValue returns the value of a string token: a single-quoted literal,
// or a lone double-quoted "identifier", which MLflow takes as a string value.
func (t token) quotedValue() (string, bool) {
	switch {
	case t.kind == tokString:
		return t.str, true
	case t.kind == tokIdent && len(t.segs) == 1 && t.segs[0].quote == '"':
		return t.segs[0].text, true
	}
	return "", false
}

func (t token) describe() string {
	if t.kind == tokEOF {
		return "end of input"
	}
	return quoteToken(t.raw)
}

// lex splits s into tokens, ending with a tokEOF. In order_by clauses
// plusIsSpace treats '+' as a blank, for a query string such as
// order_by=metrics.auc+desc that reached us undecoded.
func lex(s string, plusIsSpace bool) ([]token, error) {
	var toks []token
	i := 0
	for {
		for i < len(s) && (isBlank(s[i]) || plusIsSpace && s[i] == '+') {
			i++
		}
		if i == len(s) {
			return append(toks, token{kind: tokEOF, pos: i}), nil
		}
		start := i
		c := s[i]
		switch {
		case c == '\'':
			val, end, ok := scanQuoted(s, i)
			if !ok {
				return nil, errorf("unterminated string %s at offset %d", quoteToken(s[start:]), start)
			}
			i = end
			toks = append(toks, token{kind: tokString, raw: s[start:i], pos: start, str: val})
		case numberStart(s, i):
			end := scanNumber(s, i)
			if end < len(s) && (isWordByte(s, end) || s[end] == '.') {
				// 4abc, 1.2.3: neither a number nor a key.
				for end < len(s) && (isWordByte(s, end) || s[end] == '.') {
					_, n := utf8.DecodeRuneInString(s[end:])
					end += n
				}
				return nil, errorf("invalid token %s at offset %d", quoteToken(s[start:end]), start)
			}
			i = end
			v, err := strconv.ParseFloat(s[start:i], 64)
			if err != nil && !isRangeErr(err) {
				return nil, errorf("invalid number %s at offset %d", quoteToken(s[start:i]), start)
			}
			toks = append(toks, token{kind: tokNumber, raw: s[start:i], pos: start, num: v})
		case c == '`' || c == '"' || isWordStart(s, i):
			segs, end, err := scanIdent(s, i)
			if err != nil {
				return nil, err
			}
			i = end
			toks = append(toks, token{kind: tokIdent, raw: s[start:i], pos: start, segs: segs})
		case c == '(':
			i++
			toks = append(toks, token{kind: tokLParen, raw: "(", pos: start})
		case c == ')':
			i++
			toks = append(toks, token{kind: tokRParen, raw: ")", pos: start})
		case c == ',':
			i++
			toks = append(toks, token{kind: tokComma, raw: ",", pos: start})
		case c == '=' || c == '!' || c == '<' || c == '>':
			i++
			if i < len(s) && (s[i] == '=' || c == '<' && s[i] == '>') {
				i++
			}
			if s[start:i] == "!" {
				return nil, errorf("invalid token '!' at offset %d", start)
			}
			toks = append(toks, token{kind: tokOp, raw: s[start:i], pos: start})
		default:
			_, n := utf8.DecodeRuneInString(s[i:])
			bad := s[i : i+n]
			if len(toks) > 0 && toks[len(toks)-1].kind == tokIdent && toks[len(toks)-1].pos+len(toks[len(toks)-1].raw) == i {
				return nil, errorf("invalid token %s at offset %d after %s: quote keys that hold it with backquotes, as metrics.`val-loss`",
					quoteToken(bad), start, quoteToken(toks[len(toks)-1].raw))
			}
			return nil, errorf("invalid token %s at offset %d", quoteToken(bad), start)
		}
	}
}

func isBlank(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// isWordStart reports whether a bare word starts at s[i]: a letter or '_'.
func isWordStart(s string, i int) bool {
	r, _ := utf8.DecodeRuneInString(s[i:])
	return r == '_' || unicode.IsLetter(r)
}

// isWordByte reports whether s[i] continues a bare word: a letter, a digit
// or '_'.
func isWordByte(s string, i int) bool {
	r, _ := utf8.DecodeRuneInString(s[i:])
	return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// numberStart reports whether a number starts at s[i]: a digit, a '.'
// before a digit, or a sign before either.
func numberStart(s string, i int) bool {
	if s[i] == '-' || s[i] == '+' {
		i++
	}
	if i < len(s) && s[i] == '.' {
		i++
	}
	return i < len(s) && isDigit(s[i])
}

// scanNumber returns the end of the decimal number that starts at s[i]:
// [+-] digits [. digits] [e [+-] digits], or [+-] . digits [e...].
// The caller has checked numberStart.
func scanNumber(s string, i int) int {
	if s[i] == '-' || s[i] == '+' {
		i++
	}
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < len(s) && (s[j] == '-' || s[j] == '+') {
			j++
		}
		if j < len(s) && isDigit(s[j]) {
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			i = j
		}
	}
	return i
}

// parseDecimal parses s as a number in the grammar of filter literals, with
// blanks around it allowed: the test of whether a param or tag value "is a
// number" for Kiln's numeric comparisons. Spellings strconv would also
// accept (inf, nan, 0x1p3, 1_000) are not numbers here.
func parseDecimal(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if s == "" || !numberStart(s, 0) || scanNumber(s, 0) != len(s) {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil && !isRangeErr(err) {
		return 0, false
	}
	return v, true
}

// scanQuoted reads the literal that s[i], a single, double or back quote,
// opens, and returns its value and the index after the closing quote. A
// doubled quote stands for the quote itself; in ' and " literals a backslash
// escapes the quote or a backslash, and is kept before any other character,
// so that LIKE's \% and \_ reach the pattern.
func scanQuoted(s string, i int) (string, int, bool) {
	q := s[i]
	var b strings.Builder
	for j := i + 1; j < len(s); j++ {
		c := s[j]
		switch {
		case c == q && j+1 < len(s) && s[j+1] == q:
			b.WriteByte(q)
			j++
		case c == q:
			return b.String(), j + 1, true
		case c == '\\' && q != '`' && j+1 < len(s) && (s[j+1] == q || s[j+1] == '\\'):
			b.WriteByte(s[j+1])
			j++
		default:
			b.WriteByte(c)
		}
	}
	return "", len(s), false
}

// scanIdent reads a dotted identifier starting at s[i]. A segment is a bare
// word, or a `backquoted` or "double-quoted" name; the first segment of a
// bare word starts with a letter or '_', later ones may start with a digit
// (tags.v1.0rc: three segments).
func scanIdent(s string, i int) ([]segment, int, error) {
	var segs []segment
	for {
		switch c := s[i]; {
		case c == '`' || c == '"':
			val, end, ok := scanQuoted(s, i)
			if !ok {
				return nil, 0, errorf("unterminated quoted key %s at offset %d", quoteToken(s[i:]), i)
			}
			segs = append(segs, segment{text: val, quote: c})
			i = end
		default:
			j := i
			for j < len(s) && isWordByte(s, j) {
				_, n := utf8.DecodeRuneInString(s[j:])
				j += n
			}
			segs = append(segs, segment{text: s[i:j]})
			i = j
		}
		// Go on past a '.' only when another segment follows it at once.
		if i+1 < len(s) && s[i] == '.' && (s[i+1] == '`' || s[i+1] == '"' || isWordByte(s, i+1)) {
			i++
			continue
		}
		return segs, i, nil
	}
}
