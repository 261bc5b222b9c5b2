package raftfsm

import (
	"errors"
	"reflect"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"

	"github.com/kilnml/kiln/raftfsm/structs"
)

func group(t testing.TB, cmds ...[]byte) []byte {
	return encode(t, structs.BatchType, &structs.BatchRequest{Entries: cmds})
}

func TestFSM_BatchTypeEntries(t *testing.T) {
	tests := []struct {
		name      string
		data      func(t *testing.T) []byte
		wantCodes []string // per command; nil when the entry itself is rejected
		wantCode  string   // for the entry as a whole
		wantState func(t *testing.T, st state)
	}{
		{
			name: "commands succeed and fail on their own",
			data: func(t *testing.T) []byte {
				return group(t,
					createModel(t, "a", map[string]string{"k": "v"}),
					createModel(t, "a", nil),
					updateModel(t, "a", map[string]*string{"k2": ptr("v2")}),
					group(t, createModel(t, "nested", nil)),
					[]byte{byte(structs.ModelCreateType), 0xc1},
					[]byte{byte(structs.IgnoreUnknownFlag | 90), 0x80},
					deleteModel(t, "missing"),
					upsertNode(t, "n1", 2),
				)
			},
			wantCodes: []string{"", structs.CodeConflict, "", structs.CodeInvalid, structs.CodeInvalid, "", structs.CodeNotFound, ""},
			wantState: func(t *testing.T, st state) {
				if len(st.Models) != 1 || len(st.Nodes) != 1 {
					t.Fatalf("state = %+v, want model a and node n1", st)
				}
				a := st.Models[0]
				if a.CreateIndex != 2 || a.ModifyIndex != 2 || !reflect.DeepEqual(a.Tags, map[string]string{"k": "v", "k2": "v2"}) {
					t.Fatalf("model a = %+v", a)
				}
			},
		},
		{
			name:      "empty batch",
			data:      func(t *testing.T) []byte { return group(t) },
			wantCodes: []string{},
		},
		{
			name:     "body that does not decode",
			data:     func(t *testing.T) []byte { return []byte{byte(structs.BatchType), 0x91, 0xc1} },
			wantCode: structs.CodeInvalid,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := testFSM(t)
			f.Apply(&raft.Log{Index: 1, Type: raft.LogNoop})
			res := f.Apply(commandLogs(2, tt.data(t))[0])
			if tt.wantCodes == nil {
				if codeOf(res) != tt.wantCode {
					t.Fatalf("result %v, want code %q", res, tt.wantCode)
				}
			} else {
				results, ok := res.([]interface{})
				if !ok || len(results) != len(tt.wantCodes) {
					t.Fatalf("result %#v, want %d results", res, len(tt.wantCodes))
				}
				for i, r := range results {
					if codeOf(r) != tt.wantCodes[i] {
						t.Errorf("command %d: result %v, want code %q", i, r, tt.wantCodes[i])
					}
				}
			}
			st := readState(t, f)
			if st.Index != 2 {
				t.Fatalf("applied index %d, want 2", st.Index)
			}
			if tt.wantState != nil {
				tt.wantState(t, st)
			}
		})
	}
}

// A BatchType entry whose writes outgrow a transaction is split between commands,
// and the split is recorded so that a replay resumes after the commands stored.
func TestFSM_BatchTypeSplit(t *testing.T) {
	t.Run("split inside one entry", func(t *testing.T) {
		f := testFSM(t)
		var cmds [][]byte
		for i := range 6 { // 6 records of 600 KiB: three transactions
			cmds = append(cmds, encode(t, structs.NodeUpsertType, bigNode("n"+string(rune('a'+i)), 600<<10)))
		}
		res := f.Apply(commandLogs(1, group(t, cmds...))[0])
		for i, r := range res.([]interface{}) {
			if _, ok := r.(*structs.Node); !ok {
				t.Fatalf("command %d: result %v", i, r)
			}
		}
		if st := readState(t, f); st.Index != 1 || len(st.Nodes) != 6 {
			t.Fatalf("index %d, %d nodes; want 1, 6", st.Index, len(st.Nodes))
		}
		assertNoPartial(t, f)
	})

	t.Run("resume after a crash between two commits", func(t *testing.T) {
		dir := t.TempDir()
		f, err := New(Config{Dir: dir})
		must(t, err)
		f.Apply(commandLogs(1, createModel(t, "x", nil))[0])
		// What the first transaction of entry 2 leaves when the process dies before
		// the second: its first command's write, and the position.
		a := &structs.Model{Name: "a", Owner: "team-a", CreatedAt: t0, UpdatedAt: t0, CreateIndex: 2, ModifyIndex: 2}
		must(t, f.cur.db.Update(func(txn *badger.Txn) error {
			v, err := encodeRecord(a)
			if err != nil {
				return err
			}
			if err := txn.Set([]byte(modelKey("a")), v); err != nil {
				return err
			}
			return txn.Set([]byte(keyAppliedPartial), position{Index: 2, Done: 1}.encode())
		}))
		must(t, f.Close())
		f = testFSM(t, onDisk(dir))
		stream := snapshotBytes(t, f) // the position travels in snapshots too
		other := testFSM(t)
		must(t, restoreBytes(other, stream))

		entry := commandLogs(2, group(t, createModel(t, "a", nil), createModel(t, "b", nil)))
		for _, f := range []*FSM{f, other} {
			res := f.ApplyBatch(commandLogs(1, createModel(t, "x", nil)))[0] // replay: skipped
			if res != nil {
				t.Fatalf("replayed entry 1: %v", res)
			}
			results := f.Apply(entry[0]).([]interface{})
			if results[0] != nil {
				t.Fatalf("command 0 was applied again: %v", results[0])
			}
			if m, ok := results[1].(*structs.Model); !ok || m.Name != "b" || m.CreateIndex != 2 {
				t.Fatalf("command 1: %v", results[1])
			}
			st := readState(t, f)
			if st.Index != 2 || len(st.Models) != 3 || !reflect.DeepEqual(st.Models[0], a) {
				t.Fatalf("state = %+v", st)
			}
			assertNoPartial(t, f)
		}
	})
}

func assertNoPartial(t *testing.T, f *FSM) {
	t.Helper()
	if f.partial != (position{}) {
		t.Fatalf("partial position %+v left after the entry completed", f.partial)
	}
	err := f.cur.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get([]byte(keyAppliedPartial))
		return err
	})
	if !errors.Is(err, badger.ErrKeyNotFound) {
		t.Fatalf("%s after the entry completed: %v", keyAppliedPartial, err)
	}
}

// The command table and structs.MessageType.Known must agree: node refuses to
// propose what Known rejects, and the FSM panics on what its table lacks.
func TestFSM_CommandTableMatchesKnown(t *testing.T) {
	for i := range int(structs.IgnoreUnknownFlag) {
		mt := structs.MessageType(i)
		inTable := commands[mt] != nil
		if want := inTable || mt == structs.BatchType; mt.Known() != want {
			t.Errorf("%s: Known() = %v, command table says %v", mt, mt.Known(), want)
		}
	}
}
