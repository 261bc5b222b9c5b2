package raftfsm

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// The apply path reads records back through the record cache; these cases check
// that what it reads is always what Badger holds.
func TestFSM_RecordCacheFollowsBadger(t *testing.T) {
	f := testFSM(t)
	big := strings.Repeat("x", structs.MaxTagValueLen)
	tooMany := map[string]*string{}
	for i := 0; i < 400; i++ {
		tooMany[strings.Repeat("k", 100)+string(rune('a'+i%26))+strings.Repeat("z", i/26)] = &big
	}
	res := f.ApplyBatch(commandLogs(1,
		createModel(t, "m", map[string]string{"a": "1"}),
		updateModel(t, "m", map[string]*string{"b": ptr("2")}), // cached
		updateModel(t, "m", tooMany),                           // rejected: must not reach the cache
		updateModel(t, "m", map[string]*string{"c": ptr("3")}), // reads through the cache
		deleteModel(t, "m"),
		updateModel(t, "m", map[string]*string{"d": ptr("4")}), // deleted: not_found
		createModel(t, "m", map[string]string{"e": "5"}),       // created again
	))
	if codeOf(res[2]) == "" {
		t.Fatalf("oversized update was accepted: %v", res[2])
	}
	if codeOf(res[5]) != structs.CodeNotFound {
		t.Fatalf("update of a deleted model: %v", res[5])
	}
	m, ok := res[3].(*structs.Model)
	if !ok || len(m.Tags) != 3 || m.Tags["a"] != "1" || m.Tags["b"] != "2" || m.Tags["c"] != "3" {
		t.Fatalf("update after a rejected one saw %v", res[3])
	}
	txn := f.ReadTxn()
	got, err := txn.Model("m")
	txn.Discard()
	if err != nil || len(got.Tags) != 1 || got.Tags["e"] != "5" {
		t.Fatalf("badger holds %+v, %v", got, err)
	}

	// A restore replaces the database: the cache must not answer for the old one.
	snap := snapshotBytes(t, f)
	f.ApplyBatch(commandLogs(8, updateModel(t, "m", map[string]*string{"after": ptr("snapshot")})))
	if err := f.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	res = f.ApplyBatch(commandLogs(9, updateModel(t, "m", map[string]*string{"f": ptr("6")})))
	m, ok = res[0].(*structs.Model)
	if !ok || m.Tags["after"] != "" || m.Tags["e"] != "5" || m.Tags["f"] != "6" {
		t.Fatalf("update after restore saw %v", res[0])
	}
}
