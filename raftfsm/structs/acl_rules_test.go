package structs

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// levelKinds take deny | read | write; verbKinds take allow | deny.
var (
	levelKinds = []ACLKind{KindModel, KindDeployment, KindNode, KindOperator, KindACL,
		KindDataset, KindFeature, KindSource, KindJob, KindExperiment, KindPipeline, KindMonitor}
	verbKinds  = []ACLKind{KindPredict, KindExec}
	namedKinds = []ACLKind{KindModel, KindPredict, KindDeployment,
		KindDataset, KindFeature, KindSource, KindJob, KindExperiment, KindPipeline, KindMonitor}
	unnamedKinds = []ACLKind{KindNode, KindOperator, KindACL, KindExec}
)

func allKinds() []ACLKind { return append(slices.Clone(levelKinds), verbKinds...) }

// ruleSrc writes one rule block, with a "*" label for named kinds.
func ruleSrc(kind ACLKind, word string) string {
	if kind.Named() {
		return fmt.Sprintf("%s \"*\" { policy = %q }", kind, word)
	}
	return fmt.Sprintf("%s { policy = %q }", kind, word)
}

// ruleBlock is ruleSrc over several lines: the policy on the block's third line.
func ruleBlock(kind ACLKind, word string) string {
	label := ""
	if kind.Named() {
		label = ` "*"`
	}
	return fmt.Sprintf("%s%s {\n\n  policy = %q\n}", kind, label, word)
}

// renderRules writes rules back as policy text, for the round trip.
func renderRules(rules []ACLRule) string {
	var b strings.Builder
	for _, r := range rules {
		if r.Kind.Named() {
			fmt.Fprintf(&b, "%s %q {\n  policy = %q\n}\n", r.Kind, r.Glob, r.Access)
		} else {
			fmt.Fprintf(&b, "%s {\n  policy = %q\n}\n", r.Kind, r.Access)
		}
	}
	return b.String()
}

// invalidArgument fails unless err is a *CodedError with code invalid_argument
// and a message that starts with "rules".
func invalidArgument(t testing.TB, err error) *CodedError {
	t.Helper()
	var ce *CodedError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *CodedError", err, err)
	}
	if ce.Code != CodeInvalid {
		t.Fatalf("error %q has code %q, want %q", ce.Message, ce.Code, CodeInvalid)
	}
	if !strings.HasPrefix(ce.Message, "rules") {
		t.Fatalf("error %q does not start with \"rules\"", ce.Message)
	}
	return ce
}

func TestACLKind_Tables(t *testing.T) {
	if got := len(allKinds()); got != len(aclKinds) {
		t.Fatalf("the test knows %d kinds, the parser %d", got, len(aclKinds))
	}
	for _, k := range allKinds() {
		if !k.Known() {
			t.Errorf("%s is not Known", k)
		}
		if got, want := k.Named(), slices.Contains(namedKinds, k); got != want {
			t.Errorf("%s.Named() = %v, want %v", k, got, want)
		}
	}
	for _, k := range []ACLKind{"", "models", "Model", "namespace", "*"} {
		if k.Known() || k.Named() {
			t.Errorf("%q is Known or Named", k)
		}
	}
}

func TestParseRules_EveryKindAndWord(t *testing.T) {
	type tc struct {
		name string
		src  string
		want ACLRule
	}
	var tests []tc
	for _, k := range levelKinds {
		for word, access := range map[string]ACLAccess{"deny": AccessDeny, "read": AccessRead, "write": AccessWrite} {
			want := ACLRule{Kind: k, Access: access}
			if k.Named() {
				want.Glob = "*"
			}
			tests = append(tests, tc{string(k) + "/" + word, ruleSrc(k, word), want})
		}
	}
	for _, k := range verbKinds {
		for word, access := range map[string]ACLAccess{"deny": AccessDeny, "allow": AccessAllow} {
			want := ACLRule{Kind: k, Access: access}
			if k.Named() {
				want.Glob = "*"
			}
			tests = append(tests, tc{string(k) + "/" + word, ruleSrc(k, word), want})
		}
	}
	tests = append(tests,
		tc{"exact name", `model "fraud-v2.1_b" { policy = "read" }`, ACLRule{KindModel, "fraud-v2.1_b", AccessRead}},
		tc{"prefix", `deployment "fraud-*" { policy = "write" }`, ACLRule{KindDeployment, "fraud-*", AccessWrite}},
		tc{"bare identifier label", `model fraud { policy = "read" }`, ACLRule{KindModel, "fraud", AccessRead}},
		tc{"63-character name", fmt.Sprintf(`model %q { policy = "read" }`, strings.Repeat("a", 63)), ACLRule{KindModel, strings.Repeat("a", 63), AccessRead}},
		tc{"63-character prefix", fmt.Sprintf(`model %q { policy = "read" }`, strings.Repeat("a", 63)+"*"), ACLRule{KindModel, strings.Repeat("a", 63) + "*", AccessRead}},
		tc{"multi-line block and comments", "# a policy\nmodel \"*\" {\n  // why\n  policy = \"read\" /* inline */\n}\n", ACLRule{KindModel, "*", AccessRead}},
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules, err := ParseRules(tt.src)
			if err != nil {
				t.Fatalf("ParseRules(%q): %v", tt.src, err)
			}
			if len(rules) != 1 || rules[0] != tt.want {
				t.Fatalf("ParseRules(%q) = %+v, want [%+v]", tt.src, rules, tt.want)
			}
		})
	}
}

func TestParseRules_KeepsOrderAndCount(t *testing.T) {
	src := `
model "fraud-*"   { policy = "write" }   # deny | read | write
model "*"         { policy = "read" }
predict "fraud-*" { policy = "allow" }   # allow | deny
deployment "*"    { policy = "write" }
node              { policy = "read" }
operator          { policy = "write" }
acl               { policy = "write" }
exec              { policy = "allow" }
`
	want := []ACLRule{
		{KindModel, "fraud-*", AccessWrite},
		{KindModel, "*", AccessRead},
		{KindPredict, "fraud-*", AccessAllow},
		{KindDeployment, "*", AccessWrite},
		{KindNode, "", AccessRead},
		{KindOperator, "", AccessWrite},
		{KindACL, "", AccessWrite},
		{KindExec, "", AccessAllow},
	}
	got, err := ParseRules(src)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ParseRules =\n%+v\nwant\n%+v", got, want)
	}
	for _, blank := range []string{"", "\n\n", "# only a comment\n", "  \t\n"} {
		if rules, err := ParseRules(blank); err != nil || len(rules) != 0 {
			t.Errorf("ParseRules(%q) = %v, %v; want no rules", blank, rules, err)
		}
	}
}

func TestParseRules_ErrorsNameTheLine(t *testing.T) {
	type tc struct {
		name string
		src  string
		line int
		want string // also in the message
	}
	const head = "node { policy = \"read\" }\n" // a valid first line, so that errors sit further down
	tests := []tc{
		{"unknown kind", head + "\nmodels \"*\" { policy = \"read\" }", 3, `unknown kind "models"`},
		{"unknown kind namespace", head + "namespace \"x\" { policy = \"read\" }", 2, `unknown kind "namespace"`},
		{"kinds are case-sensitive", head + "Model \"*\" { policy = \"read\" }", 2, `unknown kind "Model"`},
		{"unknown key after policy", head + "model \"*\" {\n  policy = \"read\"\n\n  capabilities = [\"x\"]\n}", 5, `unknown key "capabilities" in model`},
		{"unknown key before policy", head + "operator {\n  polcy = \"read\"\n  policy = \"read\"\n}", 3, `unknown key "polcy" in operator`},
		{"missing policy", head + "model \"*\" {\n}", 2, `model has no policy`},
		{"nested block", head + "model \"*\" {\n  policy = \"read\"\n  sub \"x\" {\n  }\n}", 4, `unexpected block "sub" inside model`},
		{"nested block in an unnamed kind", head + "acl {\n  policy = \"read\"\n  acl {\n  }\n}", 4, `unexpected block "acl" inside acl`},
		{"top-level attribute", head + "model \"*\" { policy = \"read\" }\npolicy = \"write\"", 3, `unexpected key "policy"`},
		{"top-level attribute first", "default_policy = \"deny\"\n" + head, 1, `unexpected key "default_policy"`},
		{"policy is case-sensitive", head + "model \"*\" {\n  policy = \"Read\"\n}", 3, `model policy "Read" is not deny, read or write`},
		{"empty policy word", head + "exec {\n  policy = \"\"\n}", 3, `exec policy "" is not allow or deny`},
		{"heredoc keeps its newline", head + "model \"*\" {\n  policy = <<EOT\nread\nEOT\n}", 3, `model policy "read\n"`},
		// HCL's own errors.
		{"syntax: block without equals", head + "model \"*\" {\n  policy \"read\"\n}", 3, "Invalid block definition"},
		{"syntax: attribute twice", head + "model \"*\" {\n  policy = \"read\"\n  policy = \"write\"\n}", 4, "Attribute redefined"},
		{"syntax: unclosed block", head + "\nmodel \"*\" {\n  policy = \"read\"\n", 3, "Unclosed configuration block"},
		{"syntax: unterminated string", head + "model \"* { policy = \"read\" }", 2, "Unterminated string literal"},
		{"syntax: bare star label", head + "model * { policy = \"read\" }", 2, ""},
		{"syntax: two attributes on one line", head + "model \"*\" { policy = \"read\" policy = \"x\" }", 2, "single-line block"},
		{"syntax: missing value", head + "model \"*\" {\n  policy =\n}", 3, ""},
		{"syntax: not UTF-8", head + "model \"\xff\" { policy = \"read\" }", 2, ""},
	}
	// Each kind refuses the other family's words, on the policy's own line.
	for _, k := range levelKinds {
		for _, w := range []string{"allow", "admin", "list"} {
			tests = append(tests, tc{fmt.Sprintf("%s refuses %s", k, w), head + ruleBlock(k, w), 4,
				fmt.Sprintf(`%s policy %q is not deny, read or write`, k, w)})
		}
	}
	for _, k := range verbKinds {
		for _, w := range []string{"read", "write", "yes"} {
			tests = append(tests, tc{fmt.Sprintf("%s refuses %s", k, w), head + ruleBlock(k, w), 4,
				fmt.Sprintf(`%s policy %q is not allow or deny`, k, w)})
		}
	}
	// Labels: named kinds need exactly one, unnamed kinds none.
	for _, k := range namedKinds {
		tests = append(tests,
			tc{string(k) + " missing label", head + string(k) + " { policy = \"deny\" }", 2, string(k) + " needs one name or glob"},
			tc{string(k) + " two labels", head + string(k) + " \"a\" \"b\" { policy = \"deny\" }", 2, string(k) + " needs one name or glob"},
		)
	}
	for _, k := range unnamedKinds {
		tests = append(tests, tc{string(k) + " with a label", head + string(k) + " \"x\" { policy = \"deny\" }", 2, string(k) + " takes no name"})
	}
	// Policies that are not a string, or not a constant.
	for _, v := range []string{`3`, `true`, `null`, `["read"]`, `{ a = "read" }`, `read`, `upper("read")`, `"${x}"`, `var.p`} {
		tests = append(tests, tc{"policy " + v, head + "\nmodel \"*\" {\n  policy = " + v + "\n}", 4, "policy must be a quoted string"})
	}
	// Globs.
	for _, g := range []struct{ glob, want string }{
		{"fr*ud", "'*' may only end a glob"},
		{"*fraud", "'*' may only end a glob"},
		{"**", "'*' may only end a glob"},
		{"fraud**", "'*' may only end a glob"},
		{"Fraud", "names use a-z, 0-9"},
		{"fraud detection", "names use a-z, 0-9"},
		{"fraud/x", "names use a-z, 0-9"},
		{"fraud:1", "names use a-z, 0-9"},
		{"fr\u0430ud", "names use a-z, 0-9"}, // Cyrillic a
		{"fraud\t", "names use a-z, 0-9"},
		{"", "the name is empty"},
		{strings.Repeat("a", 64), "longer than 63 characters"},
		{strings.Repeat("a", 64) + "*", "longer than 63 characters"},
	} {
		for _, k := range []ACLKind{KindModel, KindPredict} {
			tests = append(tests, tc{fmt.Sprintf("%s glob %q", k, g.glob), head + fmt.Sprintf("%s %q {\n  policy = \"deny\"\n}", k, g.glob), 2,
				fmt.Sprintf("%s %q: %s", k, g.glob, g.want)})
		}
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules, err := ParseRules(tt.src)
			if err == nil {
				t.Fatalf("ParseRules(%q) accepted: %+v", tt.src, rules)
			}
			if rules != nil {
				t.Errorf("ParseRules returned rules %+v with its error", rules)
			}
			ce := invalidArgument(t, err)
			prefix := fmt.Sprintf("rules line %d: ", tt.line)
			if !strings.HasPrefix(ce.Message, prefix) {
				t.Fatalf("error %q does not start with %q", ce.Message, prefix)
			}
			if !strings.Contains(ce.Message, tt.want) {
				t.Fatalf("error %q does not contain %q", ce.Message, tt.want)
			}
		})
	}
}

// query is one access question and its answer.
type query struct {
	kind ACLKind
	name string
	want ACLAccess
}

func TestACLDecider_Access(t *testing.T) {
	tests := []struct {
		name         string
		policies     []string // each parsed separately, then merged
		defaultAllow bool
		queries      []query
	}{
		{
			name: "exact beats prefix beats star",
			policies: []string{`
model "*"       { policy = "read" }
model "fraud-*" { policy = "deny" }
model "fraud-a" { policy = "write" }`},
			queries: []query{
				{KindModel, "fraud-a", AccessWrite},
				{KindModel, "fraud-b", AccessDeny},
				{KindModel, "fraud-", AccessDeny},
				{KindModel, "fraud", AccessRead},
				{KindModel, "churn", AccessRead},
				{KindModel, "", AccessRead},
			},
		},
		{
			name: "order in the text does not matter",
			policies: []string{`
model "fraud-a" { policy = "write" }
model "fraud-*" { policy = "deny" }
model "*"       { policy = "read" }`},
			queries: []query{
				{KindModel, "fraud-a", AccessWrite},
				{KindModel, "fraud-b", AccessDeny},
				{KindModel, "churn", AccessRead},
			},
		},
		{
			name: "exact beats a longer prefix",
			policies: []string{`
model "fraud"          { policy = "deny" }
model "fraud*"         { policy = "write" }
model "fraud-and-more*" { policy = "read" }`},
			queries: []query{
				{KindModel, "fraud", AccessDeny},
				{KindModel, "fraud-x", AccessWrite},
				{KindModel, "fraud-and-more-x", AccessRead},
			},
		},
		{
			name: "longer prefix beats shorter",
			policies: []string{`
model "f*"       { policy = "write" }
model "fraud-*"  { policy = "read" }
model "fraud-x*" { policy = "deny" }`},
			queries: []query{
				{KindModel, "fraud-x1", AccessDeny},
				{KindModel, "fraud-x", AccessDeny},
				{KindModel, "fraud-y", AccessRead},
				{KindModel, "fox", AccessWrite},
				{KindModel, "f", AccessWrite},
				{KindModel, "g", AccessNone},
			},
		},
		{
			name:     "a deny on a less specific glob loses",
			policies: []string{`model "*" { policy = "deny" }`, `model "fraud-*" { policy = "write" }`},
			queries: []query{
				{KindModel, "fraud-a", AccessWrite},
				{KindModel, "churn", AccessDeny},
			},
		},
		{
			name:     "deny wins a tie in one policy",
			policies: []string{"model \"m\" { policy = \"write\" }\nmodel \"m\" { policy = \"deny\" }"},
			queries:  []query{{KindModel, "m", AccessDeny}},
		},
		{
			name:     "deny wins a tie whichever comes first",
			policies: []string{`model "m" { policy = "deny" }`, `model "m" { policy = "write" }`, `model "m" { policy = "read" }`},
			queries:  []query{{KindModel, "m", AccessDeny}},
		},
		{
			name:     "deny wins a tie at star",
			policies: []string{`deployment "*" { policy = "write" }`, `deployment "*" { policy = "deny" }`},
			queries:  []query{{KindDeployment, "any", AccessDeny}},
		},
		{
			name:     "deny wins a tie of prefixes",
			policies: []string{`model "fraud-*" { policy = "read" }`, `model "fraud-*" { policy = "deny" }`, `model "f*" { policy = "write" }`},
			queries:  []query{{KindModel, "fraud-a", AccessDeny}, {KindModel, "foo", AccessWrite}},
		},
		{
			name:     "deny wins a tie of verbs",
			policies: []string{`predict "*" { policy = "allow" }`, `predict "*" { policy = "deny" }`, `exec { policy = "allow" }`, `exec { policy = "deny" }`},
			queries:  []query{{KindPredict, "m", AccessDeny}, {KindExec, "", AccessDeny}},
		},
		{
			name:     "read and write at one glob merge to write",
			policies: []string{`model "*" { policy = "read" }`, `model "*" { policy = "write" }`},
			queries:  []query{{KindModel, "m", AccessWrite}},
		},
		{
			name:     "write and read at one glob merge to write",
			policies: []string{`model "fraud-*" { policy = "write" }`, `model "fraud-*" { policy = "read" }`},
			queries:  []query{{KindModel, "fraud-1", AccessWrite}},
		},
		{
			name:     "deny and write at one glob merge to deny",
			policies: []string{`model "fraud-*" { policy = "write" }`, `model "fraud-*" { policy = "deny" }`},
			queries:  []query{{KindModel, "fraud-1", AccessDeny}},
		},
		{
			name: "unnamed kinds ignore the name",
			policies: []string{`
node     { policy = "read" }
operator { policy = "write" }
acl      { policy = "deny" }
exec     { policy = "allow" }`},
			queries: []query{
				{KindNode, "", AccessRead},
				{KindNode, "anything", AccessRead},
				{KindOperator, "", AccessWrite},
				{KindACL, "", AccessDeny},
				{KindExec, "x", AccessAllow},
			},
		},
		{
			name:     "unnamed kinds merge across policies",
			policies: []string{`node { policy = "read" }`, `node { policy = "write" }`, `operator { policy = "write" }`, `operator { policy = "deny" }`},
			queries:  []query{{KindNode, "", AccessWrite}, {KindOperator, "", AccessDeny}},
		},
		{
			name:     "kinds are separate",
			policies: []string{"model \"*\" { policy = \"write\" }\nnode { policy = \"write\" }"},
			queries: []query{
				{KindDeployment, "m", AccessNone},
				{KindOperator, "", AccessNone},
				{KindACL, "", AccessNone},
				{KindDataset, "m", AccessNone},
			},
		},
		{
			name:     "predict allow does not grant model read",
			policies: []string{`predict "*" { policy = "allow" }`},
			queries:  []query{{KindModel, "m", AccessNone}, {KindPredict, "m", AccessAllow}},
		},
		{
			name:     "model write does not grant predict",
			policies: []string{`model "*" { policy = "write" }`},
			queries:  []query{{KindPredict, "m", AccessNone}, {KindModel, "m", AccessWrite}},
		},
		{
			name:     "reserved kinds decide by glob",
			policies: []string{"dataset \"*\" { policy = \"read\" }\ndataset \"pii-*\" { policy = \"deny\" }"},
			queries:  []query{{KindDataset, "clicks", AccessRead}, {KindDataset, "pii-users", AccessDeny}, {KindJob, "x", AccessNone}},
		},
		{
			name:    "no rules, default deny",
			queries: []query{{KindModel, "m", AccessNone}, {KindPredict, "m", AccessNone}, {KindNode, "", AccessNone}, {KindExec, "", AccessNone}},
		},
		{
			name:         "no rules, default allow",
			defaultAllow: true,
			queries:      []query{{KindModel, "m", AccessWrite}, {KindPredict, "m", AccessAllow}, {KindNode, "", AccessWrite}, {KindExec, "", AccessAllow}, {KindACL, "", AccessWrite}},
		},
		{
			name:         "default allow yields to a matching rule",
			policies:     []string{"model \"secret-*\" { policy = \"deny\" }\nmodel \"ro-*\" { policy = \"read\" }\npredict \"x\" { policy = \"deny\" }"},
			defaultAllow: true,
			queries: []query{
				{KindModel, "secret-1", AccessDeny},
				{KindModel, "ro-1", AccessRead},
				{KindModel, "other", AccessWrite},
				{KindPredict, "x", AccessDeny},
				{KindPredict, "y", AccessAllow},
			},
		},
		{
			name:     "default deny leaves unmatched names",
			policies: []string{`model "fraud-*" { policy = "write" }`},
			queries:  []query{{KindModel, "fraud-1", AccessWrite}, {KindModel, "churn", AccessNone}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sets [][]ACLRule
			for _, p := range tt.policies {
				rules, err := ParseRules(p)
				if err != nil {
					t.Fatalf("ParseRules(%q): %v", p, err)
				}
				sets = append(sets, rules)
			}
			d := NewACLDecider(tt.defaultAllow, sets...)
			for _, q := range tt.queries {
				if got := d.Access(q.kind, q.name); got != q.want {
					t.Errorf("Access(%s, %q) = %s, want %s", q.kind, q.name, got, q.want)
				}
			}
			// Merging the policies into one text decides the same.
			one, err := ParseRules(strings.Join(tt.policies, "\n"))
			if err != nil {
				t.Fatal(err)
			}
			d1 := NewACLDecider(tt.defaultAllow, one)
			for _, q := range tt.queries {
				if got := d1.Access(q.kind, q.name); got != q.want {
					t.Errorf("one policy: Access(%s, %q) = %s, want %s", q.kind, q.name, got, q.want)
				}
			}
		})
	}
}

func TestACLDecider_Allowed(t *testing.T) {
	d := NewACLDecider(false, mustParse(t, `
model "ro-*"  { policy = "read" }
model "rw-*"  { policy = "write" }
model "no-*"  { policy = "deny" }
predict "*"   { policy = "allow" }
exec          { policy = "deny" }
`))
	tests := []struct {
		kind ACLKind
		name string
		want ACLAccess
		ok   bool
	}{
		{KindModel, "ro-1", AccessRead, true},
		{KindModel, "ro-1", AccessWrite, false},
		{KindModel, "rw-1", AccessRead, true}, // write includes read
		{KindModel, "rw-1", AccessWrite, true},
		{KindModel, "rw-1", AccessAllow, false},
		{KindModel, "no-1", AccessRead, false},
		{KindModel, "other", AccessRead, false},
		{KindPredict, "m", AccessAllow, true},
		{KindPredict, "m", AccessRead, false},
		{KindPredict, "m", AccessWrite, false},
		{KindExec, "", AccessAllow, false},
		{KindModel, "rw-1", AccessDeny, false}, // nothing "grants" deny
		{KindModel, "rw-1", AccessNone, false},
	}
	for _, tt := range tests {
		if got := d.Allowed(tt.kind, tt.name, tt.want); got != tt.ok {
			t.Errorf("Allowed(%s, %q, %s) = %v, want %v", tt.kind, tt.name, tt.want, got, tt.ok)
		}
	}
}

func TestACLDecider_Management(t *testing.T) {
	// Management ignores rules, even denies, and the default.
	d := NewACLDecider(false, mustParse(t, "model \"*\" { policy = \"deny\" }\nexec { policy = \"deny\" }\nacl { policy = \"deny\" }"))
	d.Management = true
	zero := &ACLDecider{Management: true}
	for _, dec := range []*ACLDecider{d, zero} {
		for _, k := range levelKinds {
			if got := dec.Access(k, "x"); got != AccessWrite {
				t.Errorf("management Access(%s) = %s, want write", k, got)
			}
			if !dec.Allowed(k, "x", AccessRead) || !dec.Allowed(k, "x", AccessWrite) {
				t.Errorf("management not allowed read and write on %s", k)
			}
		}
		for _, k := range verbKinds {
			if got := dec.Access(k, "x"); got != AccessAllow {
				t.Errorf("management Access(%s) = %s, want allow", k, got)
			}
			if !dec.Allowed(k, "x", AccessAllow) {
				t.Errorf("management not allowed %s", k)
			}
		}
	}
	// The zero value without Management allows nothing.
	var none ACLDecider
	for _, k := range allKinds() {
		if got := none.Access(k, "x"); got != AccessNone {
			t.Errorf("zero decider Access(%s) = %s", k, got)
		}
	}
}

func TestACLAccess_String(t *testing.T) {
	for a, want := range map[ACLAccess]string{AccessNone: "none", AccessDeny: "deny", AccessRead: "read", AccessWrite: "write", AccessAllow: "allow", 99: "none"} {
		if got := a.String(); got != want {
			t.Errorf("ACLAccess(%d).String() = %q, want %q", a, got, want)
		}
	}
}

func mustParse(t testing.TB, src string) []ACLRule {
	t.Helper()
	rules, err := ParseRules(src)
	if err != nil {
		t.Fatalf("ParseRules(%q): %v", src, err)
	}
	return rules
}

// FuzzParseRules_Reparse: policy text comes from the network (PUT policies)
// and from snapshots. The parser never panics; it refuses with an
// invalid_argument *CodedError whose message starts with "rules"; and what it
// accepts, written back out, parses to the same rules.
func FuzzParseRules_Reparse(f *testing.F) {
	for _, seed := range []string{
		"",
		"# nothing\n",
		`model "fraud-*" { policy = "write" }`,
		"model \"fraud-*\"   { policy = \"write\" }\nmodel \"*\" { policy = \"read\" }\npredict \"fraud-*\" { policy = \"allow\" }\ndeployment \"*\" { policy = \"write\" }\nnode { policy = \"read\" }\noperator { policy = \"write\" }\nacl { policy = \"write\" }\nexec { policy = \"allow\" }\n",
		"dataset \"d\" { policy = \"read\" }\nmonitor \"m*\" { policy = \"deny\" }",
		"model fraud { policy = \"read\" }",
		"model \"*\" {\n  policy = \"read\"\n}",
		// invalid
		`modle "*" { policy = "read" }`,
		`model { policy = "read" }`,
		`model "a" "b" { policy = "read" }`,
		`node "x" { policy = "read" }`,
		`model "*" { policy = "allow" }`,
		`predict "*" { policy = "read" }`,
		`model "*" { policy = 3 }`,
		`model "*" { policy = ["read"] }`,
		`model "*" { policy = "${x}" }`,
		`model "*" { policy = true ? "read" : "write" }`,
		"model \"*\" {\n policy = <<EOT\nread\nEOT\n}",
		"model \"*\" {\n  policy = \"read\"\n  inner {\n  }\n}",
		"model \"*\" {\n  policy = \"read\"\n  extra = 1\n}",
		`model "fr*ud" { policy = "read" }`,
		`model "Fraud" { policy = "read" }`,
		`model "" { policy = "read" }`,
		`policy = "read"`,
		"model \"*\" {",
		"{{{{",
		"\xff\xfe",
		"model \"\x00\" { policy = \"read\" }",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, src string) {
		rules, err := ParseRules(src)
		if err != nil {
			invalidArgument(t, err)
			return
		}
		for _, r := range rules {
			if !r.Kind.Known() {
				t.Fatalf("accepted unknown kind in %+v", r)
			}
			if r.Kind.Named() == (r.Glob == "") {
				t.Fatalf("rule %+v: glob does not fit the kind", r)
			}
			if err := validateGlob(r.Glob); r.Kind.Named() && err != nil {
				t.Fatalf("rule %+v: accepted glob: %v", r, err)
			}
			verb := slices.Contains(verbKinds, r.Kind)
			switch r.Access {
			case AccessDeny:
			case AccessRead, AccessWrite:
				if verb {
					t.Fatalf("rule %+v: %s on a verb kind", r, r.Access)
				}
			case AccessAllow:
				if !verb {
					t.Fatalf("rule %+v: allow on a level kind", r)
				}
			default:
				t.Fatalf("rule %+v: access %d", r, r.Access)
			}
		}
		again, err := ParseRules(renderRules(rules))
		if err != nil {
			t.Fatalf("accepted rules do not re-parse: %v\n%s", err, renderRules(rules))
		}
		if len(again) != len(rules) || (len(rules) > 0 && !slices.Equal(again, rules)) {
			t.Fatalf("re-parsed %+v, want %+v", again, rules)
		}
		d := NewACLDecider(false, rules)
		for _, k := range allKinds() {
			d.Access(k, "fraud-a")
			d.Access(k, "")
		}
	})
}
