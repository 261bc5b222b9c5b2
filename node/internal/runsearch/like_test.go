package runsearch

import "testing"

func TestCompileLike(t *testing.T) {
	cases := []struct {
		pattern, s string
		fold, want bool
	}{
		{"a%", "abc", false, true},
		{"a%", "bac", false, false},
		{"%c", "abc", false, true},
		{"%b%", "abc", false, true},
		{"_b_", "abc", false, true},
		{"_b", "abc", false, false},
		{"%", "", false, true},
		{"", "", false, true},
		{"", "a", false, false},
		{"a%c", "a\nc", false, true},
		{"_", "é", false, true},
		{"__", "é", false, false},
		// Regular expression metacharacters stand for themselves.
		{"a.c", "abc", false, false},
		{"a.c", "a.c", false, true},
		{"a*", "aaa", false, false},
		{"a*", "a*", false, true},
		{"(x)", "(x)", false, true},
		{"[ab]", "a", false, false},
		{"[ab]", "[ab]", false, true},
		{"a|b", "a", false, false},
		{"a$", "a$", false, true},
		{"^a", "^a", false, true},
		{"a+?", "a+?", false, true},
		{"{1}", "{1}", false, true},
		// Backslash escapes.
		{`a\%`, "a%", false, true},
		{`a\%`, "ab", false, false},
		{`a\_`, "a_", false, true},
		{`a\_`, "ab", false, false},
		{`a\\`, `a\`, false, true},
		{`a\\%`, `a\bc`, false, true},
		{`a\`, `a\`, false, true},
		{`a\.`, `a.`, false, true},
		// Case.
		{"abc", "ABC", false, false},
		{"abc", "ABC", true, true},
		{"é%", "ÉCOLE", true, true},
		{"é%", "ÉCOLE", false, false},
	}
	for _, tc := range cases {
		re, err := compileLike(tc.pattern, tc.fold)
		if err != nil {
			t.Fatalf("compileLike(%q): %v", tc.pattern, err)
		}
		if got := re.MatchString(tc.s); got != tc.want {
			t.Errorf("%q LIKE %q (fold %v) = %v, want %v", tc.s, tc.pattern, tc.fold, got, tc.want)
		}
	}
}
