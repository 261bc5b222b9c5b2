package raftfsm

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kilnml/kiln/raftfsm/structs"
)

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{name: "dir", cfg: Config{Dir: "/tmp/x"}},
		{name: "in memory", cfg: Config{InMemory: true}},
		{name: "neither", cfg: DefaultConfig(), wantErr: true},
		{name: "both", cfg: Config{Dir: "/tmp/x", InMemory: true}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

func TestFSM_Commands(t *testing.T) {
	manyTags := func(n int) map[string]string {
		tags := make(map[string]string, n)
		for i := range n {
			tags[fmt.Sprintf("k%02d", i)] = "v"
		}
		return tags
	}
	tests := []struct {
		name     string
		setup    func(t *testing.T) [][]byte // applied first, each must succeed
		cmd      func(t *testing.T) []byte   // applied at index len(setup)+1
		wantCode string                      // "" for success
		check    func(t *testing.T, txn *Txn, res interface{})
	}{
		{
			name: "create model",
			cmd:  func(t *testing.T) []byte { return createModel(t, "iris", map[string]string{"team": "ml"}) },
			check: func(t *testing.T, txn *Txn, res interface{}) {
				m, err := txn.Model("iris")
				if err != nil {
					t.Fatal(err)
				}
				want := &structs.Model{Name: "iris", Owner: "team-a", Tags: map[string]string{"team": "ml"},
					CreatedAt: t0, UpdatedAt: t0, CreateIndex: 1, ModifyIndex: 1}
				if !reflect.DeepEqual(m, want) {
					t.Fatalf("Model = %+v, want %+v", m, want)
				}
				if !reflect.DeepEqual(res, want) {
					t.Fatalf("result = %+v, want the stored model", res)
				}
			},
		},
		{
			name:     "create duplicate model",
			setup:    func(t *testing.T) [][]byte { return [][]byte{createModel(t, "iris", nil)} },
			cmd:      func(t *testing.T) []byte { return createModel(t, "iris", map[string]string{"x": "y"}) },
			wantCode: structs.CodeConflict,
			check: func(t *testing.T, txn *Txn, _ interface{}) {
				m, err := txn.Model("iris")
				if err != nil || m.ModifyIndex != 1 || len(m.Tags) != 0 {
					t.Fatalf("Model = %+v, %v; want the first one untouched", m, err)
				}
			},
		},
		{
			name:     "create model with invalid name",
			cmd:      func(t *testing.T) []byte { return createModel(t, "Bad Name", nil) },
			wantCode: structs.CodeInvalid,
		},
		{
			name:     "create model with too many tags",
			cmd:      func(t *testing.T) []byte { return createModel(t, "iris", manyTags(structs.MaxTags+1)) },
			wantCode: structs.CodeInvalid,
			check:    assertNoModel("iris"),
		},
		{
			name: "update merges tags and deletes nil ones",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{createModel(t, "iris", map[string]string{"a": "1", "b": "2"})}
			},
			cmd: func(t *testing.T) []byte {
				return updateModel(t, "iris", map[string]*string{"b": nil, "c": ptr("3"), "a": ptr("one")})
			},
			check: func(t *testing.T, txn *Txn, res interface{}) {
				m, err := txn.Model("iris")
				if err != nil {
					t.Fatal(err)
				}
				if want := map[string]string{"a": "one", "c": "3"}; !reflect.DeepEqual(m.Tags, want) {
					t.Fatalf("Tags = %v, want %v", m.Tags, want)
				}
				if m.CreateIndex != 1 || m.ModifyIndex != 2 || !m.UpdatedAt.Equal(t0.Add(time.Hour)) || !m.CreatedAt.Equal(t0) {
					t.Fatalf("indexes/times = %d/%d %v %v", m.CreateIndex, m.ModifyIndex, m.CreatedAt, m.UpdatedAt)
				}
				if !reflect.DeepEqual(res, m) {
					t.Fatalf("result = %+v, want the stored model", res)
				}
			},
		},
		{
			name:  "update description and owner",
			setup: func(t *testing.T) [][]byte { return [][]byte{createModel(t, "iris", nil)} },
			cmd: func(t *testing.T) []byte {
				return encode(t, structs.ModelUpdateType, &structs.ModelUpdateRequest{Name: "iris", Description: ptr("flowers"), Owner: ptr("team-b")})
			},
			check: func(t *testing.T, txn *Txn, _ interface{}) {
				m, err := txn.Model("iris")
				if err != nil || m.Description != "flowers" || m.Owner != "team-b" {
					t.Fatalf("Model = %+v, %v", m, err)
				}
			},
		},
		{
			name:     "update missing model",
			cmd:      func(t *testing.T) []byte { return updateModel(t, "iris", map[string]*string{"a": ptr("1")}) },
			wantCode: structs.CodeNotFound,
			check:    assertNoModel("iris"),
		},
		{
			name:  "update past the tag limit",
			setup: func(t *testing.T) [][]byte { return [][]byte{createModel(t, "iris", manyTags(structs.MaxTags-2))} },
			cmd: func(t *testing.T) []byte {
				return updateModel(t, "iris", map[string]*string{"new1": ptr("1"), "new2": ptr("2"), "new3": ptr("3")})
			},
			wantCode: structs.CodeInvalid,
			check: func(t *testing.T, txn *Txn, _ interface{}) {
				m, err := txn.Model("iris")
				if err != nil || len(m.Tags) != structs.MaxTags-2 || m.ModifyIndex != 1 {
					t.Fatalf("Model = %d tags, modify index %d, %v; want it untouched", len(m.Tags), m.ModifyIndex, err)
				}
			},
		},
		{
			name:  "delete model",
			setup: func(t *testing.T) [][]byte { return [][]byte{createModel(t, "iris", nil)} },
			cmd:   func(t *testing.T) []byte { return deleteModel(t, "iris") },
			check: assertNoModel("iris"),
		},
		{
			name:     "delete missing model",
			cmd:      func(t *testing.T) []byte { return deleteModel(t, "iris") },
			wantCode: structs.CodeNotFound,
		},
		{
			name: "upsert node",
			cmd:  func(t *testing.T) []byte { return upsertNode(t, "n1", 8) },
			check: func(t *testing.T, txn *Txn, _ interface{}) {
				n, err := txn.Node("n1")
				if err != nil || n.Resources.CPUCores != 8 || n.CreateIndex != 1 || n.ModifyIndex != 1 || !n.RegisteredAt.Equal(t0) {
					t.Fatalf("Node = %+v, %v", n, err)
				}
			},
		},
		{
			name:  "re-upsert node keeps its registration",
			setup: func(t *testing.T) [][]byte { return [][]byte{upsertNode(t, "n1", 8)} },
			cmd: func(t *testing.T) []byte {
				return encode(t, structs.NodeUpsertType, &structs.NodeUpsertRequest{Node: structs.Node{
					ID: "n1", Resources: structs.Resources{CPUCores: 16}, RegisteredAt: t0.Add(time.Hour), UpdatedAt: t0.Add(time.Hour)}})
			},
			check: func(t *testing.T, txn *Txn, _ interface{}) {
				n, err := txn.Node("n1")
				if err != nil || n.Resources.CPUCores != 16 || n.CreateIndex != 1 || n.ModifyIndex != 2 ||
					!n.RegisteredAt.Equal(t0) || !n.UpdatedAt.Equal(t0.Add(time.Hour)) {
					t.Fatalf("Node = %+v, %v", n, err)
				}
			},
		},
		{
			name:     "upsert node without id",
			cmd:      func(t *testing.T) []byte { return upsertNode(t, "", 8) },
			wantCode: structs.CodeInvalid,
		},
		{
			name:  "delete node",
			setup: func(t *testing.T) [][]byte { return [][]byte{upsertNode(t, "n1", 8)} },
			cmd: func(t *testing.T) []byte {
				return encode(t, structs.NodeDeleteType, &structs.NodeDeleteRequest{ID: "n1"})
			},
			check: func(t *testing.T, txn *Txn, _ interface{}) {
				if _, err := txn.Node("n1"); structs.ErrorCode(err) != structs.CodeNotFound {
					t.Fatalf("Node after delete: %v, want not_found", err)
				}
			},
		},
		{
			name: "delete missing node",
			cmd: func(t *testing.T) []byte {
				return encode(t, structs.NodeDeleteType, &structs.NodeDeleteRequest{ID: "n1"})
			},
			wantCode: structs.CodeNotFound,
		},
		{
			name:     "body that does not decode",
			cmd:      func(t *testing.T) []byte { return []byte{byte(structs.ModelCreateType), 0xc1, 0xff} },
			wantCode: structs.CodeInvalid,
		},
		{
			name:     "body of the wrong shape",
			cmd:      func(t *testing.T) []byte { return encode(t, structs.ModelUpdateType, []int{1, 2, 3}) },
			wantCode: structs.CodeInvalid,
		},
		{
			name: "nil where a time is expected",
			cmd: func(t *testing.T) []byte {
				return encode(t, structs.ModelCreateType, map[string]interface{}{
					"model": map[string]interface{}{"name": "iris", "created_at": nil},
				})
			},
			wantCode: structs.CodeInvalid,
			check:    assertNoModel("iris"),
		},
		{
			name:     "empty entry",
			cmd:      func(t *testing.T) []byte { return nil },
			wantCode: structs.CodeInvalid,
		},
		{
			name: "unknown type with the ignore flag",
			cmd:  func(t *testing.T) []byte { return []byte{byte(structs.IgnoreUnknownFlag | 127), 0x80} },
		},
		{
			name: "known type with the ignore flag",
			cmd:  func(t *testing.T) []byte { return createModel(t, "iris", nil) },
			check: func(t *testing.T, txn *Txn, _ interface{}) {
				if _, err := txn.Model("iris"); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name:     "record over the size limit",
			cmd:      func(t *testing.T) []byte { return encode(t, structs.NodeUpsertType, bigNode("n1", maxRecordBytes)) },
			wantCode: structs.CodeTooLarge,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := testFSM(t)
			var setup [][]byte
			if tt.setup != nil {
				setup = tt.setup(t)
			}
			for i, res := range f.ApplyBatch(commandLogs(1, setup...)) {
				if err, ok := res.(error); ok {
					t.Fatalf("setup entry %d: %v", i, err)
				}
			}
			index := uint64(len(setup) + 1)
			data := tt.cmd(t)
			if tt.name == "known type with the ignore flag" {
				data[0] |= byte(structs.IgnoreUnknownFlag)
			}
			res := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
			if got := codeOf(res); got != tt.wantCode {
				t.Fatalf("result %v has code %q, want %q", res, got, tt.wantCode)
			}
			if got := f.AppliedIndex(); got != index {
				t.Fatalf("AppliedIndex() = %d, want %d", got, index)
			}
			txn := f.ReadTxn()
			defer txn.Discard()
			if txn.Index() != index {
				t.Fatalf("txn.Index() = %d, want %d", txn.Index(), index)
			}
			if tt.check != nil {
				tt.check(t, txn, res)
			}
		})
	}
}

func assertNoModel(name string) func(t *testing.T, txn *Txn, _ interface{}) {
	return func(t *testing.T, txn *Txn, _ interface{}) {
		if m, err := txn.Model(name); structs.ErrorCode(err) != structs.CodeNotFound {
			t.Fatalf("Model(%q) = %+v, %v; want not_found", name, m, err)
		}
	}
}

// bigNode returns a node record whose encoding is about size bytes.
func bigNode(id string, size int) *structs.NodeUpsertRequest {
	n := structs.Node{ID: id}
	for i := 0; i*64 < size; i++ {
		n.Resources.GPUs = append(n.Resources.GPUs, structs.GPU{Index: i, UUID: fmt.Sprintf("GPU-%040d", i), Model: "H100"})
	}
	return &structs.NodeUpsertRequest{Node: n}
}

func TestFSM_ModelsPaging(t *testing.T) {
	f := testFSM(t)
	names := []string{"m5", "m1", "m9", "m3", "m7", "m2", "m8", "m4", "m6"}
	var data [][]byte
	for _, n := range names {
		data = append(data, createModel(t, n, nil))
	}
	f.ApplyBatch(commandLogs(1, data...))

	tests := []struct {
		name      string
		cursor    string
		limit     int
		wantNames []string
		wantNext  string
	}{
		{name: "all", limit: 0, wantNames: []string{"m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"}},
		{name: "first page", limit: 4, wantNames: []string{"m1", "m2", "m3", "m4"}, wantNext: "m4"},
		{name: "middle page", cursor: "m4", limit: 4, wantNames: []string{"m5", "m6", "m7", "m8"}, wantNext: "m8"},
		{name: "last page", cursor: "m8", limit: 4, wantNames: []string{"m9"}},
		{name: "exact last page", cursor: "m5", limit: 4, wantNames: []string{"m6", "m7", "m8", "m9"}},
		{name: "cursor between names", cursor: "m45", limit: 2, wantNames: []string{"m5", "m6"}, wantNext: "m6"},
		{name: "cursor past the end", cursor: "z", limit: 4},
		{name: "rest after cursor", cursor: "m7", wantNames: []string{"m8", "m9"}},
	}
	txn := f.ReadTxn()
	defer txn.Discard()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items, next, err := txn.Models(tt.cursor, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range items {
				got = append(got, m.Name)
			}
			if !reflect.DeepEqual(got, tt.wantNames) || next != tt.wantNext {
				t.Fatalf("Models(%q, %d) = %v, next %q; want %v, next %q", tt.cursor, tt.limit, got, next, tt.wantNames, tt.wantNext)
			}
		})
	}
}

func TestFSM_BatchWithFailingEntries(t *testing.T) {
	f := testFSM(t)
	logs := commandLogs(1,
		createModel(t, "a", map[string]string{"k": "v"}),
		createModel(t, "a", nil), // duplicate
		updateModel(t, "missing", map[string]*string{"k": ptr("v")}),
		createModel(t, "b", nil),
		updateModel(t, "a", map[string]*string{"k": nil, "k2": ptr("v2")}), // sees entry 1
		[]byte{byte(structs.ModelDeleteType), 0xc1},                        // malformed
		deleteModel(t, "b"),
		createModel(t, "c", nil),
	)
	results := f.ApplyBatch(logs)
	wantCodes := []string{"", structs.CodeConflict, structs.CodeNotFound, "", "", structs.CodeInvalid, "", ""}
	if len(results) != len(logs) {
		t.Fatalf("%d results for %d entries", len(results), len(logs))
	}
	for i, res := range results {
		if got := codeOf(res); got != wantCodes[i] {
			t.Errorf("entry %d: result %v, want code %q", i+1, res, wantCodes[i])
		}
	}
	got := readState(t, f)
	if got.Index != 8 || len(got.Models) != 2 || got.Models[0].Name != "a" || got.Models[1].Name != "c" {
		t.Fatalf("state = %+v", got)
	}
	if a := got.Models[0]; !reflect.DeepEqual(a.Tags, map[string]string{"k2": "v2"}) || a.CreateIndex != 1 || a.ModifyIndex != 5 {
		t.Fatalf("model a = %+v", a)
	}
}

func TestFSM_NonCommandEntries(t *testing.T) {
	f := testFSM(t)
	logs := []*raft.Log{
		{Index: 1, Type: raft.LogConfiguration, Data: []byte{0x01, 0x02}},
		{Index: 2, Type: raft.LogCommand, Data: createModel(t, "a", nil)},
		{Index: 3, Type: raft.LogNoop},
		{Index: 4, Type: raft.LogBarrier},
		{Index: 5, Type: raft.LogConfiguration, Data: []byte("not a configuration")},
	}
	results := f.ApplyBatch(logs)
	for i, res := range results {
		if i != 1 && res != nil {
			t.Errorf("entry %d: result %v, want nil", i+1, res)
		}
	}
	if f.AppliedIndex() != 5 {
		t.Fatalf("AppliedIndex() = %d, want 5", f.AppliedIndex())
	}
}

func TestFSM_UnknownTypePanics(t *testing.T) {
	f := testFSM(t)
	defer func() {
		r := recover()
		if msg := fmt.Sprint(r); !strings.Contains(msg, "unknown message type 127") {
			t.Fatalf("recovered %v, want a panic naming the unknown type", r)
		}
		if f.AppliedIndex() != 0 {
			t.Fatalf("AppliedIndex() = %d after the panic, want 0 (the batch was not committed)", f.AppliedIndex())
		}
	}()
	f.ApplyBatch(commandLogs(1, createModel(t, "a", nil), []byte{127, 0x80}))
}

func TestFSM_SplitsLargeBatches(t *testing.T) {
	f := testFSM(t)
	// 8 records of about 600 KiB: more than one transaction budget.
	var data [][]byte
	for i := range 8 {
		data = append(data, encode(t, structs.NodeUpsertType, bigNode(fmt.Sprintf("n%d", i), 600<<10)))
	}
	data = append(data, createModel(t, "after", nil))
	for i, res := range f.ApplyBatch(commandLogs(1, data...)) {
		if err, ok := res.(error); ok {
			t.Fatalf("entry %d: %v", i+1, err)
		}
	}
	got := readState(t, f)
	if got.Index != 9 || len(got.Nodes) != 8 || len(got.Models) != 1 {
		t.Fatalf("index %d, %d nodes, %d models; want 9, 8, 1", got.Index, len(got.Nodes), len(got.Models))
	}
}

func TestFSM_ReplayIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	logs := commandLogs(1,
		createModel(t, "a", map[string]string{"v": "1"}),
		upsertNode(t, "n1", 4),
		updateModel(t, "a", map[string]*string{"v": ptr("2")}),
		createModel(t, "b", nil),
		deleteModel(t, "b"),
	)

	f1, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	f1.ApplyBatch(logs[:3])
	f1.ApplyBatch(logs[3:])
	want := readState(t, f1)
	if err := f1.Close(); err != nil {
		t.Fatal(err)
	}

	f2 := testFSM(t, onDisk(dir))
	if f2.AppliedIndex() != 5 {
		t.Fatalf("AppliedIndex() after reopen = %d, want 5", f2.AppliedIndex())
	}
	changed := f2.Changed()
	// Raft replays from its last snapshot (here: from the start), in other batches.
	for _, batch := range [][]*raft.Log{logs[:2], logs[2:]} {
		for i, res := range f2.ApplyBatch(batch) {
			if res != nil {
				t.Fatalf("replayed entry %d: result %v, want nil (skipped)", batch[i].Index, res)
			}
		}
	}
	select {
	case <-changed:
		t.Fatal("Changed fired for a replay that changed nothing")
	default:
	}
	assertSameState(t, want, readState(t, f2))

	// A batch straddling the applied index applies only the new part.
	more := append(commandLogs(4, createModel(t, "b", nil), deleteModel(t, "b")), commandLogs(6, createModel(t, "c", nil))...)
	results := f2.ApplyBatch(more)
	if results[0] != nil || results[1] != nil || codeOf(results[2]) != "" || results[2] == nil {
		t.Fatalf("results = %v, want nil, nil, model c", results)
	}
	if got := readState(t, f2); got.Index != 6 || len(got.Models) != 2 {
		t.Fatalf("state = %+v, want index 6 and models a, c", got)
	}
}

func TestFSM_WaitForIndex(t *testing.T) {
	tests := []struct {
		name    string
		index   uint64
		act     func(t *testing.T, f *FSM, cancel context.CancelFunc)
		wantErr error
	}{
		{name: "already applied", index: 0, act: func(*testing.T, *FSM, context.CancelFunc) {}},
		{name: "applied later", index: 3, act: func(t *testing.T, f *FSM, _ context.CancelFunc) {
			f.ApplyBatch(commandLogs(1, createModel(t, "a", nil)))
			f.ApplyBatch(commandLogs(2, createModel(t, "b", nil), createModel(t, "c", nil)))
		}},
		{name: "context cancelled", index: 10, act: func(_ *testing.T, _ *FSM, cancel context.CancelFunc) { cancel() }, wantErr: context.Canceled},
		{name: "closed", index: 10, act: func(_ *testing.T, f *FSM, _ context.CancelFunc) { f.Close() }, wantErr: ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := testFSM(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- f.WaitForIndex(ctx, tt.index) }()
			tt.act(t, f, cancel)
			if err := <-done; !errors.Is(err, tt.wantErr) {
				t.Fatalf("WaitForIndex = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestFSM_Changed(t *testing.T) {
	f := testFSM(t)
	ch := f.Changed()
	select {
	case <-ch:
		t.Fatal("Changed closed before any change")
	default:
	}
	f.ApplyBatch(commandLogs(1, createModel(t, "a", nil)))
	<-ch // closed by the batch
	next := f.Changed()
	if next == ch {
		t.Fatal("Changed returned the closed channel again")
	}
	f.Close()
	<-next // closed by Close
	txn := f.ReadTxn()
	defer txn.Discard()
	if _, err := txn.Model("a"); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after Close: %v, want ErrClosed", err)
	}
	if res := f.Apply(commandLogs(2, createModel(t, "b", nil))[0]); codeOf(res) != structs.CodeInternal {
		t.Fatalf("Apply after Close = %v, want an internal error", res)
	}
}

func TestFSM_TxnDiscard(t *testing.T) {
	f := testFSM(t)
	txn := f.ReadTxn()
	txn.Discard()
	txn.Discard() // twice is fine
	if _, err := txn.Nodes(); !errors.Is(err, ErrTxnDiscarded) {
		t.Fatalf("Nodes after Discard: %v, want ErrTxnDiscarded", err)
	}
}
