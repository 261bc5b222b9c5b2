package raftfsm

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// TestMain fails the run if goroutines outlive the tests (badger's, raft's, ours).
func TestMain(m *testing.M) { testutil.Main(m) }

type fsmOption func(*Config)

// onDisk puts the FSM's state in dir instead of memory.
func onDisk(dir string) fsmOption {
	return func(c *Config) { c.InMemory, c.Dir = false, dir }
}

// testFSM returns an FSM (in memory unless an option says otherwise) closed at the
// end of the test.
func testFSM(t testing.TB, opts ...fsmOption) *FSM {
	t.Helper()
	cfg := DefaultConfig()
	cfg.InMemory = true
	for _, o := range opts {
		o(&cfg)
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return f
}

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func encode(t testing.TB, typ structs.MessageType, body interface{}) []byte {
	t.Helper()
	b, err := structs.Encode(typ, body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func createModel(t testing.TB, name string, tags map[string]string) []byte {
	return encode(t, structs.ModelCreateType, &structs.ModelCreateRequest{Model: structs.Model{
		Name: name, Owner: "team-a", Tags: tags, CreatedAt: t0, UpdatedAt: t0,
	}})
}

func updateModel(t testing.TB, name string, tags map[string]*string) []byte {
	return encode(t, structs.ModelUpdateType, &structs.ModelUpdateRequest{Name: name, Tags: tags, UpdatedAt: t0.Add(time.Hour)})
}

func deleteModel(t testing.TB, name string) []byte {
	return encode(t, structs.ModelDeleteType, &structs.ModelDeleteRequest{Name: name})
}

func upsertNode(t testing.TB, id string, cores int) []byte {
	return encode(t, structs.NodeUpsertType, &structs.NodeUpsertRequest{Node: structs.Node{
		ID: id, Name: "host-" + id, Resources: structs.Resources{CPUCores: cores}, RegisteredAt: t0, UpdatedAt: t0,
	}})
}

func ptr(s string) *string { return &s }

// commandLogs numbers data as command entries from index first on.
func commandLogs(first uint64, data ...[]byte) []*raft.Log {
	logs := make([]*raft.Log, len(data))
	for i, d := range data {
		logs[i] = &raft.Log{Index: first + uint64(i), Term: 1, Type: raft.LogCommand, Data: d}
	}
	return logs
}

// state is everything an FSM holds, for comparisons.
type state struct {
	Index  uint64
	Models []*structs.Model
	Nodes  []*structs.Node
}

func readState(t testing.TB, f *FSM) state {
	t.Helper()
	txn := f.ReadTxn()
	defer txn.Discard()
	models, _, err := txn.Models("", 0)
	if err != nil {
		t.Fatalf("Models: %v", err)
	}
	nodes, err := txn.Nodes()
	if err != nil {
		t.Fatalf("Nodes: %v", err)
	}
	return state{Index: txn.Index(), Models: models, Nodes: nodes}
}

func assertSameState(t testing.TB, want, got state) {
	t.Helper()
	if !reflect.DeepEqual(want, got) {
		w, _ := json.MarshalIndent(want, "", " ")
		g, _ := json.MarshalIndent(got, "", " ")
		t.Fatalf("state differs\nwant %s\ngot  %s", w, g)
	}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { s.closed = true; return nil }

// snapshotBytes persists a snapshot of f and returns the stream.
func snapshotBytes(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	if !sink.closed {
		t.Fatal("Persist did not close the sink")
	}
	return sink.Bytes()
}

func codeOf(res interface{}) string {
	if ce, ok := res.(*structs.CodedError); ok {
		return ce.Code
	}
	return ""
}
