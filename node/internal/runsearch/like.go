package runsearch

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// compileLike turns a SQL LIKE pattern into an anchored regular expression:
// % is any run of characters, _ is one character, a backslash makes the
// next character literal (\%, \_, \\), and everything else, regular
// expression metacharacters included, stands for itself. MLflow's file store
// feeds the pattern to Python's re unescaped, so that "a.c" there matches
// "abc"; its database stores run a real LIKE, where it does not, and that is
// the behaviour kept here. Go's regexp runs in linear time, so no pattern can
// make a search slow; one too large to compile is an error.
func compileLike(pattern string, fold bool) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("(?s")
	if fold {
		b.WriteString("i")
	}
	b.WriteString(")^")
	for i := 0; i < len(pattern); {
		r, n := utf8.DecodeRuneInString(pattern[i:])
		i += n
		switch {
		case r == '%':
			b.WriteString(".*")
		case r == '_':
			b.WriteString(".")
		case r == '\\' && i < len(pattern):
			r, n = utf8.DecodeRuneInString(pattern[i:])
			i += n
			b.WriteString(regexp.QuoteMeta(string(r)))
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, errorf("LIKE pattern %s cannot be used: %v", quoteToken(pattern), err)
	}
	return re, nil
}
