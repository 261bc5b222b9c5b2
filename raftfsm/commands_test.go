package raftfsm

import (
	"slices"
	"strings"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

func applyNothing(*applyTxn, []byte) (interface{}, error) { return nil, nil }

// Registration refuses every mistake at init. Each case registers into a
// fresh table, so the package's own stays intact.
func TestCommandTable_RegisterPanics(t *testing.T) {
	tests := []struct {
		name    string
		r       structs.TypeRange
		hs      []handler
		wantMsg string
	}{
		{
			name: "duplicate in one registration",
			r:    structs.RangeRegistry,
			hs: []handler{
				{structs.NodeUpsertType, applyNodeUpsert},
				{structs.NodeUpsertType, applyNothing},
			},
			wantMsg: "node_upsert (1) registered twice",
		},
		{
			name:    "type structs does not know",
			r:       structs.RangeServing,
			hs:      []handler{{22, applyNothing}},
			wantMsg: "message type 22, which structs does not know",
		},
		{
			name:    "type outside the range",
			r:       structs.RangeRegistry,
			hs:      []handler{{structs.VersionCreateType, applyVersionCreate}},
			wantMsg: "version_create (7) registered under the registry (1-6) range",
		},
		{
			name:    "batch",
			r:       structs.RangeRegistry,
			hs:      []handler{{structs.BatchType, applyNothing}},
			wantMsg: "batch is framing",
		},
		{
			name:    "nil handler",
			r:       structs.RangeRegistry,
			hs:      []handler{{structs.ModelDeleteType, nil}},
			wantMsg: "model_delete has a nil handler",
		},
		{
			name:    "type with the ignore-unknown flag",
			r:       structs.RangeRegistry,
			hs:      []handler{{structs.NodeUpsertType | structs.IgnoreUnknownFlag, applyNothing}},
			wantMsg: "ignore-unknown flag",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ct commandTable
			defer func() {
				msg, _ := recover().(string)
				if !strings.Contains(msg, tt.wantMsg) {
					t.Fatalf("panic %q, want one containing %q", msg, tt.wantMsg)
				}
			}()
			ct.register(tt.r, tt.hs...)
		})
	}
	// Two capabilities registering the same type in separate calls.
	t.Run("duplicate across registrations", func(t *testing.T) {
		var ct commandTable
		ct.register(structs.RangeServing, handler{structs.ACLBootstrapType, applyACLBootstrap})
		defer func() {
			msg, _ := recover().(string)
			if !strings.Contains(msg, "acl_bootstrap (15) registered twice") {
				t.Fatalf("panic %q, want a duplicate", msg)
			}
		}()
		ct.register(structs.RangeServing, handler{structs.ACLBootstrapType, applyNothing})
	})
	// The package's table refuses a second registration of a shipped type;
	// a copy keeps the real one as it was.
	t.Run("duplicate of a registered command", func(t *testing.T) {
		ct := commands
		defer func() {
			if recover() == nil {
				t.Fatal("registering model_update again did not panic")
			}
		}()
		ct.register(structs.RangeRegistry, handler{structs.ModelUpdateType, applyNothing})
	})
}

// missing is what init checks: every type structs knows has a handler, but
// BatchType.
func TestCommandTable_Missing(t *testing.T) {
	if m := commands.missing(); len(m) != 0 {
		t.Fatalf("types without a command: %v", m)
	}
	var ct commandTable
	ct.register(structs.RangeRegistry,
		handler{structs.NodeUpsertType, applyNodeUpsert},
		handler{structs.NodeDeleteType, applyNodeDelete},
	)
	got := ct.missing()
	want := slices.DeleteFunc(structs.MessageTypes(), func(mt structs.MessageType) bool {
		return mt == structs.BatchType || mt == structs.NodeUpsertType || mt == structs.NodeDeleteType
	})
	if !slices.Equal(got, want) {
		t.Fatalf("missing() = %v, want %v", got, want)
	}
}
