package structs

import (
	"strings"
	"testing"
)

func TestParseRules_Accepts(t *testing.T) {
	src := `
model "fraud-*"   { policy = "write" }   # a comment
model "*"         { policy = "read" }
predict "fraud-*" { policy = "allow" }
deployment "*"    { policy = "write" }
node              { policy = "read" }
operator          { policy = "write" }
acl               { policy = "deny" }
exec              { policy = "allow" }
dataset "d"       { policy = "read" }
feature "f*"      { policy = "write" }
source "*"        { policy = "read" }
job "j"           { policy = "read" }
experiment "e"    { policy = "read" }
pipeline "p"      { policy = "read" }
monitor "m"       { policy = "read" }
`
	rules, err := ParseRules(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 15 {
		t.Fatalf("%d rules, want 15", len(rules))
	}
	want := ACLRule{Kind: KindPredict, Glob: "fraud-*", Access: AccessAllow}
	if rules[2] != want {
		t.Fatalf("rules[2] = %+v, want %+v", rules[2], want)
	}
	if rules[4] != (ACLRule{Kind: KindNode, Access: AccessRead}) {
		t.Fatalf("rules[4] = %+v", rules[4])
	}
	if rs, err := ParseRules(""); err != nil || len(rs) != 0 {
		t.Fatalf("empty rules: %v %v", rs, err)
	}
}

func TestParseRules_RefusesNamingTheLine(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"unknown kind", "model \"*\" { policy = \"read\" }\nmodle \"x\" { policy = \"read\" }", `rules line 2: unknown kind "modle"`},
		{"unknown key", "model \"*\" {\n  policy = \"read\"\n  polcy = \"read\"\n}", `rules line 3: unknown key "polcy"`},
		{"read on a verb kind", `predict "*" { policy = "read" }`, `rules line 1: predict policy "read" is not allow or deny`},
		{"allow on a level kind", "\n\nmodel \"*\" { policy = \"allow\" }", `rules line 3: model policy "allow" is not deny, read or write`},
		{"unknown word", `node { policy = "admin" }`, `rules line 1: node policy "admin"`},
		{"missing name", `model { policy = "read" }`, `rules line 1: model needs one name or glob`},
		{"two names", `model "a" "b" { policy = "read" }`, `rules line 1: model needs one name or glob`},
		{"name on an unnamed kind", `node "n1" { policy = "read" }`, `rules line 1: node takes no name`},
		{"nested block", "model \"*\" {\n  inner {\n  }\n}", `rules line 2: unexpected block "inner"`},
		{"no policy", `model "*" {}`, `rules line 1: model has no policy`},
		{"number policy", `model "*" { policy = 3 }`, `rules line 1: policy must be a quoted string`},
		{"variable policy", `model "*" { policy = read }`, `rules line 1: policy must be a quoted string`},
		{"star in the middle", `model "fr*ud" { policy = "read" }`, `'*' may only end a glob`},
		{"bad characters", `model "Fraud" { policy = "read" }`, `rules line 1: model "Fraud"`},
		{"empty name", `model "" { policy = "read" }`, `the name is empty`},
		{"top-level attribute", "\npolicy = \"read\"", `rules line 2: unexpected key "policy"`},
		{"syntax error", "model \"*\" {\n  policy = \n}", `rules line`},
		{"unclosed block", `model "*" { policy = "read"`, `rules line 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRules(tt.src)
			if err == nil {
				t.Fatal("accepted")
			}
			if ErrorCode(err) != CodeInvalid {
				t.Fatalf("code %q, want %q (%v)", ErrorCode(err), CodeInvalid, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func mustRules(t *testing.T, src string) []ACLRule {
	t.Helper()
	rs, err := ParseRules(src)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestACLDecider_Precedence(t *testing.T) {
	tests := []struct {
		name         string
		policies     []string
		defaultAllow bool
		kind         ACLKind
		resource     string
		want         ACLAccess
	}{
		{"exact beats prefix", []string{`model "fraud-*" { policy = "read" }
model "fraud-a" { policy = "write" }`}, false, KindModel, "fraud-a", AccessWrite},
		{"exact deny beats prefix write", []string{`model "fraud-*" { policy = "write" }
model "fraud-a" { policy = "deny" }`}, false, KindModel, "fraud-a", AccessDeny},
		{"prefix beats star", []string{`model "*" { policy = "write" }
model "fraud-*" { policy = "deny" }`}, false, KindModel, "fraud-b", AccessDeny},
		{"star elsewhere", []string{`model "*" { policy = "write" }
model "fraud-*" { policy = "deny" }`}, false, KindModel, "churn", AccessWrite},
		{"longer prefix wins", []string{`model "fr*" { policy = "read" }
model "fraud-*" { policy = "write" }`}, false, KindModel, "fraud-x", AccessWrite},
		{"shorter prefix where the longer does not match", []string{`model "fr*" { policy = "read" }
model "fraud-*" { policy = "write" }`}, false, KindModel, "frost", AccessRead},
		{"deny wins a tie", []string{`model "m" { policy = "write" }`, `model "m" { policy = "deny" }`}, false, KindModel, "m", AccessDeny},
		{"higher access wins a tie", []string{`model "*" { policy = "read" }`, `model "*" { policy = "write" }`}, false, KindModel, "m", AccessWrite},
		{"no rule, default deny", []string{`model "x" { policy = "write" }`}, false, KindModel, "y", AccessNone},
		{"no rule, default allow", []string{`model "x" { policy = "read" }`}, true, KindModel, "y", AccessWrite},
		{"default allow grants verbs", nil, true, KindExec, "", AccessAllow},
		{"a rule beats default allow", []string{`model "y" { policy = "read" }`}, true, KindModel, "y", AccessRead},
		{"unnamed kind", []string{`node { policy = "read" }`}, false, KindNode, "", AccessRead},
		{"unnamed kinds merge", []string{`node { policy = "read" }`, `node { policy = "write" }`}, false, KindNode, "", AccessWrite},
		{"kinds are separate", []string{`model "*" { policy = "write" }`}, false, KindDeployment, "m", AccessNone},
		{"predict allow is not model read", []string{`predict "*" { policy = "allow" }`}, false, KindModel, "m", AccessNone},
		{"model write is not predict", []string{`model "*" { policy = "write" }`}, false, KindPredict, "m", AccessNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sets [][]ACLRule
			for _, p := range tt.policies {
				sets = append(sets, mustRules(t, p))
			}
			d := NewACLDecider(tt.defaultAllow, sets...)
			if got := d.Access(tt.kind, tt.resource); got != tt.want {
				t.Fatalf("Access(%s, %q) = %s, want %s", tt.kind, tt.resource, got, tt.want)
			}
		})
	}
}

func TestACLAccess_Grants(t *testing.T) {
	tests := []struct {
		have, want ACLAccess
		ok         bool
	}{
		{AccessWrite, AccessRead, true},
		{AccessWrite, AccessWrite, true},
		{AccessRead, AccessWrite, false},
		{AccessDeny, AccessRead, false},
		{AccessNone, AccessRead, false},
		{AccessAllow, AccessAllow, true},
		{AccessWrite, AccessAllow, false},
		{AccessAllow, AccessRead, false},
	}
	for _, tt := range tests {
		if got := tt.have.Grants(tt.want); got != tt.ok {
			t.Errorf("%s.Grants(%s) = %v, want %v", tt.have, tt.want, got, tt.ok)
		}
	}
	d := &ACLDecider{Management: true}
	if !d.Allowed(KindExec, "", AccessAllow) || !d.Allowed(KindACL, "", AccessWrite) || !d.Allowed(KindModel, "x", AccessRead) {
		t.Fatal("management does not allow everything")
	}
}

func TestACLToken_Validate(t *testing.T) {
	accessor, secret := NewTokenIDs()
	ok := ACLToken{AccessorID: accessor, SecretHash: HashSecret(secret), Policies: []string{"a", "b"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*ACLToken)
		want string
	}{
		{"short accessor", func(t *ACLToken) { t.AccessorID = "abc" }, "accessor_id"},
		{"uppercase hash", func(t *ACLToken) { t.SecretHash = strings.ToUpper(t.SecretHash) }, "secret hash"},
		{"no policies", func(t *ACLToken) { t.Policies = nil }, "policies is required"},
		{"bad policy name", func(t *ACLToken) { t.Policies = []string{"Bad"} }, "policies[0]"},
		{"twice", func(t *ACLToken) { t.Policies = []string{"a", "a"} }, `names "a" twice`},
		{"long description", func(t *ACLToken) { t.Description = strings.Repeat("x", MaxDescriptionLen+1) }, "description"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := ok
			tok.Policies = append([]string(nil), ok.Policies...)
			tt.edit(&tok)
			err := tok.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestACLPolicy_Validate(t *testing.T) {
	if err := (&ACLPolicy{Name: "p", Rules: `node { policy = "read" }`}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []ACLPolicy{
		{Name: ManagementPolicy},
		{Name: "Bad"},
		{Name: "p", Rules: `nope {}`},
		{Name: "p", Rules: strings.Repeat(" ", MaxPolicyRulesLen+1)},
	} {
		if err := p.Validate(); err == nil || ErrorCode(err) != CodeInvalid {
			t.Errorf("Validate(%q, %.20q) = %v, want invalid_argument", p.Name, p.Rules, err)
		}
	}
}

func TestHashSecret(t *testing.T) {
	_, secret := NewTokenIDs()
	h := HashSecret(secret)
	if !isHex(h, 64) {
		t.Fatalf("hash %q is not 64 hex characters", h)
	}
	changed := []byte(secret)
	changed[3] ^= 1
	if HashSecret(string(changed)) == h {
		t.Fatal("a changed secret hashes the same")
	}
	a1, s1 := NewTokenIDs()
	a2, s2 := NewTokenIDs()
	if a1 == a2 || s1 == s2 || len(s1) != 36 || !isHex(a1, 32) {
		t.Fatalf("NewTokenIDs: %q %q / %q %q", a1, s1, a2, s2)
	}
}

// FuzzParseRules: the parser takes text from the network (PUT policies) and
// from snapshots; it must never panic, and its errors are invalid_argument
// naming the rules.
func FuzzParseRules(f *testing.F) {
	for _, seed := range []string{
		"",
		`model "fraud-*" { policy = "write" }`,
		"node { policy = \"read\" }\nexec { policy = \"allow\" }",
		`predict "*" { policy = "deny" }`,
		`model { policy = "read" }`,
		`model "*" { policy = ["read"] }`,
		`model "*" { policy = "${x}" }`,
		"model \"*\" {\n policy = <<EOT\nread\nEOT\n}",
		`x = 1`,
		"{{{{",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, src string) {
		rules, err := ParseRules(src)
		if err != nil {
			if ErrorCode(err) != CodeInvalid || !strings.HasPrefix(err.Error(), "rules") {
				t.Fatalf("error %q (code %s)", err, ErrorCode(err))
			}
			return
		}
		for _, r := range rules {
			if !r.Kind.Known() || r.Access == AccessNone {
				t.Fatalf("accepted rule %+v", r)
			}
			if r.Kind.Named() != (r.Glob != "") {
				t.Fatalf("rule %+v: glob does not match the kind", r)
			}
		}
		NewACLDecider(false, rules).Access(KindModel, "fraud-a")
	})
}
