package raftfsm

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// fillSource gives f a little of everything: models (one deleted), nodes, and a
// non-command entry last.
func fillSource(t testing.TB, f *FSM) {
	t.Helper()
	logs := commandLogs(1,
		createModel(t, "iris", map[string]string{"task": "classification", "b": "2"}),
		createModel(t, "wine", nil),
		createModel(t, "gone", nil),
		upsertNode(t, "node-1", 8),
		upsertNode(t, "node-2", 16),
		updateModel(t, "iris", map[string]*string{"b": nil, "c": ptr("3")}),
		deleteModel(t, "gone"),
	)
	logs = append(logs, &raft.Log{Index: 8, Type: raft.LogConfiguration})
	for i, res := range f.ApplyBatch(logs) {
		if err, ok := res.(error); ok {
			t.Fatalf("entry %d: %v", i+1, err)
		}
	}
}

// fillTarget gives f different state, at a higher index than fillSource's.
func fillTarget(t testing.TB, f *FSM) {
	t.Helper()
	f.ApplyBatch(commandLogs(1, createModel(t, "other", nil), upsertNode(t, "node-9", 1)))
	f.ApplyBatch(commandLogs(20, createModel(t, "wine", map[string]string{"old": "yes"})))
}

func restoreBytes(f *FSM, b []byte) error {
	return f.Restore(io.NopCloser(bytes.NewReader(b)))
}

// dirEntries lists the names in an FSM directory but the OPEN marker, sorted.
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	return slices.DeleteFunc(testutil.DirNames(t, dir), func(n string) bool { return n == openMarkerFile })
}

func TestFSM_SnapshotRestore(t *testing.T) {
	tests := []struct {
		name   string
		source []fsmOption
		target func(t *testing.T) []fsmOption
	}{
		{name: "memory to memory", target: func(*testing.T) []fsmOption { return nil }},
		{name: "disk to disk",
			source: nil,
			target: func(t *testing.T) []fsmOption { return []fsmOption{onDisk(t.TempDir())} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := testFSM(t, tt.source...)
			fillSource(t, src)
			want := readState(t, src)
			if want.Index != 8 || len(want.Models) != 2 || len(want.Nodes) != 2 {
				t.Fatalf("source state = %+v", want)
			}
			stream := snapshotBytes(t, src)

			dst := testFSM(t, tt.target(t)...)
			fillTarget(t, dst)
			changed := dst.Changed()
			if err := restoreBytes(dst, stream); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			<-changed
			assertSameState(t, want, readState(t, dst))
			if dst.AppliedIndex() != want.Index {
				t.Fatalf("AppliedIndex() = %d, want %d", dst.AppliedIndex(), want.Index)
			}
			// Same state, same bytes: a snapshot of the copy is the original stream.
			if again := snapshotBytes(t, dst); !bytes.Equal(again, stream) {
				t.Fatal("snapshot of the restored state differs from the one restored")
			}
			// Entries after the snapshot apply on top.
			res := dst.Apply(commandLogs(9, updateModel(t, "wine", map[string]*string{"x": ptr("y")}))[0])
			if m, ok := res.(*structs.Model); !ok || m.CreateIndex != 2 || m.ModifyIndex != 9 {
				t.Fatalf("Apply after restore = %+v", res)
			}
		})
	}
}

func TestFSM_RestoreRejectsBadStreams(t *testing.T) {
	src := testFSM(t)
	fillSource(t, src)
	good := snapshotBytes(t, src)

	frame := func(t frameType, v interface{}) []byte {
		b, _ := msgpack.Marshal(v)
		return append([]byte{byte(t)}, b...)
	}
	flip := func(at int) []byte {
		b := slices.Clone(good)
		b[at] ^= 0x01
		return b
	}
	tests := []struct {
		name   string
		stream []byte
	}{
		{name: "empty", stream: nil},
		{name: "one byte", stream: good[:1]},
		{name: "header only", stream: frame(frameHeader, &snapshotHeader{Format: 1, AppliedIndex: 3})},
		{name: "truncated in the middle", stream: good[:len(good)/2]},
		{name: "truncated footer", stream: good[:len(good)-1]},
		{name: "bit flipped in a record", stream: flip(len(good) / 2)},
		{name: "bit flipped in the header", stream: flip(3)},
		{name: "trailing data", stream: append(slices.Clone(good), 0)},
		{name: "not a header first", stream: frame(frameModel, &structs.Model{Name: "x"})},
		{name: "unknown format", stream: frame(frameHeader, &snapshotHeader{Format: 2, AppliedIndex: 3})},
		{name: "unknown frame type", stream: append(frame(frameHeader, &snapshotHeader{Format: 1}), frame(77, "x")...)},
		{name: "record without a key", stream: append(frame(frameHeader, &snapshotHeader{Format: 1}), frame(frameModel, &structs.Model{})...)},
		{name: "footer with a wrong count", stream: append(frame(frameHeader, &snapshotHeader{Format: 1}), frame(frameFooter, &snapshotFooter{Records: 1})...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			dst := testFSM(t, onDisk(dir))
			fillTarget(t, dst)
			before := readState(t, dst)
			entries := dirEntries(t, dir)

			err := restoreBytes(dst, tt.stream)
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("Restore = %v, want ErrCorruptSnapshot", err)
			}
			assertSameState(t, before, readState(t, dst))
			if got := dirEntries(t, dir); !reflect.DeepEqual(got, entries) {
				t.Fatalf("directory holds %v after a failed restore, want %v", got, entries)
			}
		})
	}
}

func TestFSM_ReadersSurviveRestore(t *testing.T) {
	src := testFSM(t)
	fillSource(t, src)
	stream := snapshotBytes(t, src)

	dir := t.TempDir()
	dst := testFSM(t, onDisk(dir))
	fillTarget(t, dst)
	old := readState(t, dst)

	txn := dst.ReadTxn()
	snap, err := dst.Snapshot() // a snapshot being persisted across the restore
	if err != nil {
		t.Fatal(err)
	}
	if err := restoreBytes(dst, stream); err != nil {
		t.Fatal(err)
	}

	// The old view still reads the old database.
	if txn.Index() != old.Index {
		t.Fatalf("old txn index = %d, want %d", txn.Index(), old.Index)
	}
	if m, err := txn.Model("other"); err != nil || m.Name != "other" {
		t.Fatalf("old txn Model(other) = %v, %v", m, err)
	}
	models, _, err := txn.Models("", 0)
	if err != nil || !reflect.DeepEqual(models, old.Models) {
		t.Fatalf("old txn Models = %v, %v", models, err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if got := dirEntries(t, dir); len(got) != 3 {
		t.Fatalf("directory holds %v while the old database is in use, want CURRENT and two databases", got)
	}
	txn.Discard()
	if got, want := dirEntries(t, dir), []string{currentFile, dbDirName(2)}; !reflect.DeepEqual(got, want) {
		t.Fatalf("directory holds %v after the last reader left, want %v", got, want)
	}

	// The snapshot taken before the restore holds the old state.
	other := testFSM(t)
	if err := restoreBytes(other, sink.Bytes()); err != nil {
		t.Fatal(err)
	}
	assertSameState(t, old, readState(t, other))
}

func TestFSM_RestoreSurvivesReopen(t *testing.T) {
	src := testFSM(t)
	fillSource(t, src)
	want := readState(t, src)
	stream := snapshotBytes(t, src)

	dir := t.TempDir()
	f, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	fillTarget(t, f)
	for range 2 { // the second restore moves on to db-000003
		if err := restoreBytes(f, stream); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := dirEntries(t, dir), []string{currentFile, dbDirName(3)}; !reflect.DeepEqual(got, want) {
		t.Fatalf("directory holds %v, want %v", got, want)
	}
	f = testFSM(t, onDisk(dir))
	assertSameState(t, want, readState(t, f))
}

func TestFSM_NewCleansDirectory(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string) // after a first FSM has run in dir
		wantErr bool
	}{
		{name: "leftovers of an interrupted restore", prepare: func(t *testing.T, dir string) {
			must(t, os.MkdirAll(filepath.Join(dir, dbDirName(2)), 0o700))
			must(t, os.WriteFile(filepath.Join(dir, dbDirName(2), "000001.vlog"), []byte("junk"), 0o600))
			must(t, os.WriteFile(filepath.Join(dir, currentTmpFile), []byte(dbDirName(2)), 0o600))
		}},
		{name: "CURRENT names a missing database", wantErr: true, prepare: func(t *testing.T, dir string) {
			must(t, os.WriteFile(filepath.Join(dir, currentFile), []byte(dbDirName(7)+"\n"), 0o600))
		}},
		{name: "CURRENT is garbage", wantErr: true, prepare: func(t *testing.T, dir string) {
			must(t, os.WriteFile(filepath.Join(dir, currentFile), []byte("../elsewhere"), 0o600))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			f, err := New(Config{Dir: dir})
			must(t, err)
			fillSource(t, f)
			want := readState(t, f)
			must(t, f.Close())
			tt.prepare(t, dir)

			f, err = New(Config{Dir: dir})
			if tt.wantErr {
				if err == nil {
					f.Close()
					t.Fatal("New succeeded, want an error")
				}
				return
			}
			must(t, err)
			defer f.Close()
			assertSameState(t, want, readState(t, f))
			if got, want := dirEntries(t, dir), []string{currentFile, dbDirName(1)}; !reflect.DeepEqual(got, want) {
				t.Fatalf("directory holds %v, want %v", got, want)
			}
		})
	}
}

func TestFSM_SnapshotIsPointInTime(t *testing.T) {
	f := testFSM(t)
	fillSource(t, f)
	want := readState(t, f)
	snap, err := f.Snapshot()
	must(t, err)
	defer snap.Release()
	f.ApplyBatch(commandLogs(9, createModel(t, "later", nil), deleteModel(t, "iris")))

	var sink memSink
	must(t, snap.Persist(&sink))
	other := testFSM(t)
	must(t, restoreBytes(other, sink.Bytes()))
	assertSameState(t, want, readState(t, other))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A snapshot larger than Restore's memory buffer streams into the fresh database.
func TestFSM_RestoreLargeSnapshot(t *testing.T) {
	src := testFSM(t)
	var data [][]byte
	for i := range 8 { // 8 records of 700 KiB: more than restoreBufferBytes
		data = append(data, encode(t, structs.NodeUpsertType, bigNode("node-"+string(rune('a'+i)), 700<<10)))
	}
	src.ApplyBatch(commandLogs(1, data...))
	want := readState(t, src)
	stream := snapshotBytes(t, src)
	if len(stream) <= restoreBufferBytes {
		t.Fatalf("snapshot is %d bytes, not more than the %d buffer", len(stream), restoreBufferBytes)
	}

	tests := []struct {
		name    string
		stream  []byte
		wantErr bool
	}{
		{name: "whole", stream: stream},
		{name: "truncated after the buffer", stream: stream[:len(stream)-100], wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			dst := testFSM(t, onDisk(dir))
			fillTarget(t, dst)
			before := readState(t, dst)
			err := restoreBytes(dst, tt.stream)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Restore = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				assertSameState(t, before, readState(t, dst))
				if got, want := dirEntries(t, dir), []string{currentFile, dbDirName(1)}; !reflect.DeepEqual(got, want) {
					t.Fatalf("directory holds %v after a failed restore, want %v", got, want)
				}
				return
			}
			assertSameState(t, want, readState(t, dst))
		})
	}
}

// Readers run while batches apply and restores swap the database under them.
func TestFSM_ConcurrentReadersAndRestores(t *testing.T) {
	src := testFSM(t)
	fillSource(t, src)
	stream := snapshotBytes(t, src)

	dir := t.TempDir()
	f := testFSM(t, onDisk(dir))
	stop := make(chan struct{})
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				txn := f.ReadTxn()
				_, _, err := txn.Models("", 0)
				if err == nil {
					_, err = txn.Nodes()
				}
				txn.Discard()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	index := uint64(100)
	for i := range 30 {
		if i%10 == 5 {
			must(t, restoreBytes(f, stream))
			index = f.AppliedIndex() + 100
			continue
		}
		index++
		f.ApplyBatch(commandLogs(index, createModel(t, "m-"+string(rune('a'+i)), nil), upsertNode(t, "n", i)))
		index++
	}
	close(stop)
	for range 2 {
		must(t, <-errs)
	}
	if got, want := dirEntries(t, dir), []string{currentFile, dbDirName(4)}; !reflect.DeepEqual(got, want) {
		t.Fatalf("directory holds %v, want %v", got, want)
	}
}

func TestFSM_UncleanStop(t *testing.T) {
	bootFile := filepath.Join(t.TempDir(), "boot_id")
	must(t, os.WriteFile(bootFile, []byte("boot-1\n"), 0o600))
	saved := bootIDPath
	bootIDPath = bootFile
	t.Cleanup(func() { bootIDPath = saved })

	tests := []struct {
		name       string
		marker     *string // OPEN left behind; nil: clean Close
		wantKept   bool
		wantDBDirs []string
	}{
		{name: "clean close", wantKept: true, wantDBDirs: []string{dbDirName(1)}},
		{name: "process crash", marker: ptr("boot-1\n"), wantKept: true, wantDBDirs: []string{dbDirName(1)}},
		{name: "machine crash", marker: ptr("boot-0\n"), wantDBDirs: []string{dbDirName(2)}},
		{name: "marker without a boot id", marker: ptr(""), wantDBDirs: []string{dbDirName(2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			f, err := New(Config{Dir: dir})
			must(t, err)
			fillSource(t, f)
			want := readState(t, f)
			must(t, f.Close())
			if _, err := os.Stat(filepath.Join(dir, openMarkerFile)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("OPEN after a clean Close: %v", err)
			}
			if tt.marker != nil { // as if the process had not reached Close
				must(t, os.WriteFile(filepath.Join(dir, openMarkerFile), []byte(*tt.marker), 0o600))
			}

			f = testFSM(t, onDisk(dir))
			got := readState(t, f)
			if tt.wantKept {
				assertSameState(t, want, got)
			} else if got.Index != 0 || len(got.Models) != 0 || len(got.Nodes) != 0 {
				t.Fatalf("state after a machine crash = %+v, want it discarded", got)
			}
			if got, want := dirEntries(t, dir), append([]string{currentFile}, tt.wantDBDirs...); !reflect.DeepEqual(got, want) {
				t.Fatalf("directory holds %v, want %v", got, want)
			}
		})
	}
}
