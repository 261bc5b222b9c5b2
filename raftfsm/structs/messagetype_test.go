package structs

import (
	"slices"
	"strings"
	"testing"
)

// Every number ever shipped, with its name. Numbers are append-only: this list
// may grow, an entry may never change.
var shippedTypes = []TypeDef{
	{NodeUpsertType, "node_upsert"},
	{NodeDeleteType, "node_delete"},
	{ModelCreateType, "model_create"},
	{ModelUpdateType, "model_update"},
	{ModelDeleteType, "model_delete"},
	{BatchType, "batch"},
	{VersionCreateType, "version_create"},
	{VersionDeleteType, "version_delete"},
	{AliasSetType, "alias_set"},
	{DeploymentPutType, "deployment_put"},
	{DeploymentRollbackType, "deployment_rollback"},
	{DeploymentDeleteType, "deployment_delete"},
	{AllocPlanType, "alloc_plan"},
	{AllocStatusType, "alloc_status"},
	{ACLBootstrapType, "acl_bootstrap"},
	{ACLPolicyUpsertType, "acl_policy_upsert"},
	{ACLPolicyDeleteType, "acl_policy_delete"},
	{ACLTokenCreateType, "acl_token_create"},
	{ACLTokenDeleteType, "acl_token_delete"},
	{AllocPlanFitType, "alloc_plan_fit"},
	{VersionHoldersType, "version_holders"},
}

func TestMessageType_NumbersNeverChange(t *testing.T) {
	for i, want := range shippedTypes {
		t.Run(want.Name, func(t *testing.T) {
			if uint8(want.Type) != uint8(i+1) {
				t.Fatalf("%s = %d, want %d (types are append-only)", want.Name, want.Type, i+1)
			}
			if got := want.Type.String(); got != want.Name {
				t.Fatalf("String() = %q, want %q", got, want.Name)
			}
			if got := (want.Type | IgnoreUnknownFlag).String(); got != want.Name {
				t.Fatalf("String() with the ignore flag = %q, want %q", got, want.Name)
			}
			if !want.Type.Known() || !(want.Type | IgnoreUnknownFlag).Known() {
				t.Fatalf("%s is not Known()", want.Name)
			}
		})
	}
	// Types added later than this test are in MessageTypes but not above; the
	// ones above must all be there, in order, at the front.
	if got := MessageTypes(); len(got) < len(shippedTypes) {
		t.Fatalf("MessageTypes() = %v, fewer than the %d shipped", got, len(shippedTypes))
	}
}

func TestMessageType_Unknown(t *testing.T) {
	tests := []struct {
		typ       MessageType
		wantName  string
		wantKnown bool
	}{
		{0, "message_type(0)", false},
		{22, "message_type(22)", false},
		{RangePipelines.Last, "message_type(126)", false},
		{127, "message_type(127)", false},
		// The flag makes any type known (Apply skips it); the name keeps the
		// whole byte.
		{22 | IgnoreUnknownFlag, "message_type(150)", true},
		{255, "message_type(255)", true},
	}
	for _, tt := range tests {
		t.Run(tt.wantName, func(t *testing.T) {
			if got := tt.typ.String(); got != tt.wantName {
				t.Errorf("String() = %q, want %q", got, tt.wantName)
			}
			if got := tt.typ.Known(); got != tt.wantKnown {
				t.Errorf("Known() = %v, want %v", got, tt.wantKnown)
			}
		})
	}
}

// The ranges are disjoint, ascending, below the flag, and hold every
// registered type.
func TestTypeRanges_CoverEveryType(t *testing.T) {
	ranges := TypeRanges()
	prev := MessageType(0)
	for _, r := range ranges {
		if r.First <= prev || r.Last < r.First || r.Last >= IgnoreUnknownFlag {
			t.Fatalf("range %v overlaps the one before (ending at %d) or leaves 1-127", r, prev)
		}
		prev = r.Last
	}
	want := map[string][2]MessageType{
		"registry": {1, 6}, "serving": {7, 31}, "training": {32, 63}, "data": {64, 95}, "pipelines": {96, 126},
	}
	for _, r := range ranges {
		if w := want[r.Name]; w != [2]MessageType{r.First, r.Last} {
			t.Errorf("range %v, want %d-%d (ranges never move)", r, w[0], w[1])
		}
	}
	for _, mt := range MessageTypes() {
		if !slices.ContainsFunc(ranges, func(r TypeRange) bool { return r.Contains(mt) }) {
			t.Errorf("%s (%d) lies in no range", mt, mt)
		}
	}
}

// Registration refuses every kind of clash, at init, so a binary that has one
// never starts. A fresh registry keeps the package's own intact.
func TestTypeRegistry_RegisterPanics(t *testing.T) {
	tests := []struct {
		name    string
		r       TypeRange
		defs    []TypeDef
		wantMsg string
	}{
		{"duplicate number", RangeTraining, []TypeDef{{32, "job_put"}, {32, "job_delete"}}, "registered twice"},
		{"duplicate name", RangeTraining, []TypeDef{{32, "job_put"}, {33, "job_put"}}, `"job_put" registered twice`},
		{"number outside the range", RangeTraining, []TypeDef{{64, "job_put"}}, "outside the training (32-63) range"},
		{"number below the range", RangeTraining, []TypeDef{{19, "job_put"}}, "outside"},
		{"empty name", RangeTraining, []TypeDef{{32, ""}}, "has no name"},
		{"range not reserved", TypeRange{Name: "mine", First: 1, Last: 127}, []TypeDef{{127, "mine"}}, "not a reserved range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reg typeRegistry
			defer func() {
				r := recover()
				msg, _ := r.(string)
				if !strings.Contains(msg, tt.wantMsg) {
					t.Fatalf("panic %v, want one containing %q", r, tt.wantMsg)
				}
			}()
			reg.register(tt.r, tt.defs...)
		})
	}
	// Registering into the package's registry clashes with what it holds.
	t.Run("clash with a shipped type", func(t *testing.T) {
		defer func() {
			if r := recover(); r == nil {
				t.Fatal("registering node_upsert again did not panic")
			}
		}()
		reg := messageTypes // a copy: the package's registry stays as it was
		reg.register(RangeRegistry, TypeDef{NodeUpsertType, "node_upsert_again"})
	})
}

func TestTypeRegistry_RegisterKeepsNames(t *testing.T) {
	var reg typeRegistry
	reg.register(RangeTraining, TypeDef{32, "job_put"}, TypeDef{40, "job_delete"})
	if got := reg.types(); !slices.Equal(got, []MessageType{32, 40}) {
		t.Fatalf("types() = %v, want [32 40]", got)
	}
	if reg.name(32) != "job_put" || reg.name(40) != "job_delete" || reg.name(33) != "" || reg.name(200) != "" {
		t.Fatalf("names: 32=%q 40=%q 33=%q 200=%q", reg.name(32), reg.name(40), reg.name(33), reg.name(200))
	}
}
