package structs

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// ACLKind is a kind of resource a rule governs.
type ACLKind string

// Resource kinds. Kinds marked reserved are for capabilities still to come:
// the parser accepts them now so that policies written today keep working.
const (
	KindModel      ACLKind = "model"      // models, versions, aliases
	KindPredict    ACLKind = "predict"    // :predict and v2 infer
	KindDeployment ACLKind = "deployment" // deployments, by model name
	KindNode       ACLKind = "node"       // status, members, nodes, metrics
	KindOperator   ACLKind = "operator"   // raft peers, snapshots, gossip keyring
	KindACL        ACLKind = "acl"        // policies and tokens
	KindExec       ACLKind = "exec"       // create anything that runs a command
	KindDataset    ACLKind = "dataset"    // datasets and their versions
	KindFeature    ACLKind = "feature"    // reserved
	KindSource     ACLKind = "source"     // reserved
	KindJob        ACLKind = "job"        // reserved
	KindExperiment ACLKind = "experiment" // reserved
	KindPipeline   ACLKind = "pipeline"   // reserved
	KindMonitor    ACLKind = "monitor"    // reserved
)

// kindInfo says whether a kind's rules carry a name glob and which policy
// words they take.
type kindInfo struct {
	named  bool
	verbed bool // allow | deny, rather than deny | read | write
}

var aclKinds = map[ACLKind]kindInfo{
	KindModel:      {named: true},
	KindPredict:    {named: true, verbed: true},
	KindDeployment: {named: true},
	KindNode:       {},
	KindOperator:   {},
	KindACL:        {},
	KindExec:       {verbed: true},
	KindDataset:    {named: true},
	KindFeature:    {named: true},
	KindSource:     {named: true},
	KindJob:        {named: true},
	KindExperiment: {named: true},
	KindPipeline:   {named: true},
	KindMonitor:    {named: true},
}

// Named reports whether rules of this kind take a name glob.
func (k ACLKind) Named() bool { return aclKinds[k].named }

// Known reports whether k is a kind the parser accepts.
func (k ACLKind) Known() bool { _, ok := aclKinds[k]; return ok }

// ACLAccess is what a rule grants. The order matters: a higher value grants
// everything a lower one does, except that Deny grants nothing.
type ACLAccess uint8

const (
	AccessNone  ACLAccess = iota // no rule matched
	AccessDeny                   // explicitly refused
	AccessRead                   // read (model, deployment, node, ...)
	AccessWrite                  // read and change
	AccessAllow                  // the verb kinds: predict, exec
)

func (a ACLAccess) String() string {
	switch a {
	case AccessDeny:
		return "deny"
	case AccessRead:
		return "read"
	case AccessWrite:
		return "write"
	case AccessAllow:
		return "allow"
	}
	return "none"
}

// Grants reports whether access a covers the wanted capability.
func (a ACLAccess) Grants(want ACLAccess) bool {
	switch want {
	case AccessRead:
		return a == AccessRead || a == AccessWrite
	case AccessWrite:
		return a == AccessWrite
	case AccessAllow:
		return a == AccessAllow
	}
	return false
}

// ACLRule is one block of a policy: a kind, a name glob (empty for unnamed
// kinds) and the access it grants.
type ACLRule struct {
	Kind   ACLKind
	Glob   string
	Access ACLAccess
}

// specificity ranks how closely a rule's glob names a resource: an exact name
// beats any glob, and a longer prefix beats a shorter one.
func (r ACLRule) specificity() int {
	if strings.HasSuffix(r.Glob, "*") {
		return len(r.Glob) - 1
	}
	return 1 << 20 // exact: beats every prefix
}

func (r ACLRule) matches(name string) bool {
	if prefix, ok := strings.CutSuffix(r.Glob, "*"); ok {
		return strings.HasPrefix(name, prefix)
	}
	return r.Glob == name
}

// ParseRules parses a policy's rules:
//
//	model "fraud-*"   { policy = "write" }
//	node              { policy = "read" }
//	predict "fraud-*" { policy = "allow" }
//
// One block per rule; the block type is the kind; named kinds take one label,
// a name or a prefix ending in "*". Any other key, kind or policy word is an
// error that names its line.
func ParseRules(src string) ([]ACLRule, error) {
	file, diags := hclsyntax.ParseConfig([]byte(src), "rules", hcl.InitialPos)
	if diags.HasErrors() {
		return nil, rulesError(diags)
	}
	body := file.Body.(*hclsyntax.Body)
	if attrs := sortedAttributes(body.Attributes); len(attrs) > 0 {
		a := attrs[0]
		return nil, Errorf(CodeInvalid, "rules line %d: unexpected key %q: rules are blocks such as model \"*\" { policy = \"read\" }", a.SrcRange.Start.Line, a.Name)
	}
	var rules []ACLRule
	for _, b := range body.Blocks {
		r, err := parseRule(b)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func parseRule(b *hclsyntax.Block) (ACLRule, error) {
	line := b.TypeRange.Start.Line
	kind := ACLKind(b.Type)
	info, ok := aclKinds[kind]
	if !ok {
		return ACLRule{}, Errorf(CodeInvalid, "rules line %d: unknown kind %q (known: %s)", line, b.Type, knownKinds())
	}
	r := ACLRule{Kind: kind}
	switch {
	case info.named && len(b.Labels) != 1:
		return ACLRule{}, Errorf(CodeInvalid, "rules line %d: %s needs one name or glob, as in %s \"*\" { ... }", line, kind, kind)
	case !info.named && len(b.Labels) != 0:
		return ACLRule{}, Errorf(CodeInvalid, "rules line %d: %s takes no name, as in %s { ... }", line, kind, kind)
	case info.named:
		r.Glob = b.Labels[0]
		if err := validateGlob(r.Glob); err != nil {
			return ACLRule{}, Errorf(CodeInvalid, "rules line %d: %s %q: %v", line, kind, r.Glob, err)
		}
	}
	if len(b.Body.Blocks) > 0 {
		nb := b.Body.Blocks[0]
		return ACLRule{}, Errorf(CodeInvalid, "rules line %d: unexpected block %q inside %s", nb.TypeRange.Start.Line, nb.Type, kind)
	}
	var policy *hclsyntax.Attribute
	for _, a := range sortedAttributes(b.Body.Attributes) {
		if a.Name != "policy" {
			return ACLRule{}, Errorf(CodeInvalid, "rules line %d: unknown key %q in %s (only policy)", a.SrcRange.Start.Line, a.Name, kind)
		}
		policy = a
	}
	if policy == nil {
		return ACLRule{}, Errorf(CodeInvalid, "rules line %d: %s has no policy", line, kind)
	}
	pline := policy.SrcRange.Start.Line
	v, diags := policy.Expr.Value(nil)
	if diags.HasErrors() || v.IsNull() || !v.IsKnown() || v.Type() != cty.String {
		return ACLRule{}, Errorf(CodeInvalid, "rules line %d: policy must be a quoted string", pline)
	}
	word := v.AsString()
	words := map[string]ACLAccess{"deny": AccessDeny, "read": AccessRead, "write": AccessWrite}
	want := "deny, read or write"
	if info.verbed {
		words = map[string]ACLAccess{"deny": AccessDeny, "allow": AccessAllow}
		want = "allow or deny"
	}
	access, ok := words[word]
	if !ok {
		return ACLRule{}, Errorf(CodeInvalid, "rules line %d: %s policy %q is not %s", pline, kind, word, want)
	}
	r.Access = access
	return r, nil
}

func sortedAttributes(m hclsyntax.Attributes) []*hclsyntax.Attribute {
	out := make([]*hclsyntax.Attribute, 0, len(m))
	for _, a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b *hclsyntax.Attribute) int { return a.SrcRange.Start.Byte - b.SrcRange.Start.Byte })
	return out
}

// validateGlob accepts a name, a prefix ending in "*", or "*" alone.
func validateGlob(g string) error {
	name, glob := strings.CutSuffix(g, "*")
	if strings.Contains(name, "*") {
		return fmt.Errorf("'*' may only end a glob")
	}
	if name == "" {
		if glob {
			return nil
		}
		return fmt.Errorf("the name is empty")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("names use a-z, 0-9, '.', '_' and '-'")
		}
	}
	if len(name) > 63 {
		return fmt.Errorf("longer than 63 characters")
	}
	return nil
}

func knownKinds() string {
	names := make([]string, 0, len(aclKinds))
	for k := range aclKinds {
		names = append(names, string(k))
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func rulesError(diags hcl.Diagnostics) error {
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		if d.Subject != nil {
			return Errorf(CodeInvalid, "rules line %d: %s", d.Subject.Start.Line, msg)
		}
		return Errorf(CodeInvalid, "rules: %s", msg)
	}
	return Errorf(CodeInvalid, "rules do not parse")
}

// ACLDecider answers access questions for a set of rules (a token's policies
// merged). The zero value with Management set allows everything.
type ACLDecider struct {
	Management bool
	// DefaultAllow grants everything that no rule matches (default_policy =
	// "allow"); otherwise an unmatched request is refused.
	DefaultAllow bool
	byKind       map[ACLKind][]ACLRule
}

// NewACLDecider merges the rules of several policies.
func NewACLDecider(defaultAllow bool, rules ...[]ACLRule) *ACLDecider {
	d := &ACLDecider{DefaultAllow: defaultAllow, byKind: map[ACLKind][]ACLRule{}}
	for _, rs := range rules {
		for _, r := range rs {
			d.byKind[r.Kind] = append(d.byKind[r.Kind], r)
		}
	}
	return d
}

// Access returns what the rules grant on the named resource of a kind (name is
// ignored for unnamed kinds). The most specific matching rules decide; between
// equally specific rules a deny wins, and otherwise the higher access.
func (d *ACLDecider) Access(kind ACLKind, name string) ACLAccess {
	if d.Management {
		if aclKinds[kind].verbed {
			return AccessAllow
		}
		return AccessWrite
	}
	best, bestSpec := AccessNone, -1
	for _, r := range d.byKind[kind] {
		if aclKinds[kind].named && !r.matches(name) {
			continue
		}
		spec := r.specificity()
		switch {
		case spec > bestSpec:
			best, bestSpec = r.Access, spec
		case spec == bestSpec && (r.Access == AccessDeny || best == AccessDeny):
			best = AccessDeny
		case spec == bestSpec && r.Access > best:
			best = r.Access
		}
	}
	if best == AccessNone && d.DefaultAllow {
		if aclKinds[kind].verbed {
			return AccessAllow
		}
		return AccessWrite
	}
	return best
}

// Allowed reports whether the rules grant want on the named resource of kind.
func (d *ACLDecider) Allowed(kind ACLKind, name string, want ACLAccess) bool {
	return d.Access(kind, name).Grants(want)
}
