package raftfsm

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/kilnml/kiln/ml/stats"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// irisDataset is a valid dataset version with every field an uploader fills.
func irisDataset(name string) structs.DatasetVersion {
	return structs.DatasetVersion{
		Dataset: name, Format: structs.DatasetCSV, Mode: structs.ModeStrict,
		Digest: digestOf(7), Size: 4096, Holders: []string{"node-1", "node-2"}, Rows: 150,
		Columns: []structs.DatasetColumn{
			{Name: "Sepal_Length", Type: "float", Numeric: &stats.NumericStats{Count: 150, Min: 4.3, Max: 7.9, Quantiles: []stats.Quantile{}, Histogram: stats.Histogram{Edges: []float64{4.3, 7.9}, Counts: []int64{150}}}},
			{Name: "Species", Type: "string", Categorical: &stats.CategoricalStats{Count: 150, Distinct: 3, Exact: true, Top: []stats.ValueCount{{Value: "setosa", Count: 50}}}},
		},
		CreatedAt: t0,
	}
}

func createDatasetVersion(t testing.TB, v structs.DatasetVersion) []byte {
	return encode(t, structs.DatasetVersionCreateType, &structs.DatasetVersionCreateRequest{Version: v})
}

func lenientDataset(name string) structs.DatasetVersion {
	v := irisDataset(name)
	v.Mode = structs.ModeLenient
	v.Quarantine = &structs.Quarantine{Digest: digestOf(8), Size: 99, Rows: 2, Holders: []string{"node-1", "node-2"},
		Sample: []structs.BadRow{{Line: 4, Reason: "3 fields, the header has 5"}, {Line: 9, Reason: "column x: \"a\" is not a float"}}}
	return v
}

func TestFSM_DatasetVersionCreate(t *testing.T) {
	f := testFSM(t)
	res := mustApply(t, f, 1,
		createDatasetVersion(t, irisDataset("iris")),
		createDatasetVersion(t, lenientDataset("iris")),
		createDatasetVersion(t, irisDataset("wine")))
	for i, want := range []uint64{1, 2, 1} {
		if v, ok := res[i].(*structs.DatasetVersion); !ok || v.Version != want || v.CreateIndex != uint64(i+1) {
			t.Fatalf("result %d = %+v, want version %d at index %d", i, res[i], want, i+1)
		}
	}
	txn := f.ReadTxn()
	defer txn.Discard()
	d, err := txn.Dataset("iris")
	if err != nil || d.LatestVersion != 2 || d.CreateIndex != 1 || d.ModifyIndex != 2 {
		t.Fatalf("dataset = %+v, %v; want latest 2, created at 1, modified at 2", d, err)
	}
	latest, err := txn.DatasetVersion("iris", 0)
	if err != nil || latest.Version != 2 || latest.Quarantine == nil || latest.Quarantine.Rows != 2 {
		t.Fatalf("latest = %+v, %v; want version 2 with its quarantine", latest, err)
	}
	want := irisDataset("iris")
	got, err := txn.DatasetVersion("iris", 1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Columns, want.Columns) || got.CreatedAt != t0 || got.Rows != 150 {
		t.Fatalf("stored version = %+v, want the columns and times it was created with", got)
	}
	list, next, err := txn.Datasets("", 1)
	if err != nil || len(list) != 1 || list[0].Name != "iris" || next != "iris" {
		t.Fatalf("Datasets page 1 = %v, %q, %v", list, next, err)
	}
	vs, next, err := txn.DatasetVersions("iris", "1", 0)
	if err != nil || len(vs) != 1 || vs[0].Version != 2 || next != "" {
		t.Fatalf("DatasetVersions after 1 = %v, %q, %v", vs, next, err)
	}
	if _, err := txn.DatasetVersion("iris", 3); structs.ErrorCode(err) != structs.CodeNotFound {
		t.Fatalf("missing version: %v, want not_found", err)
	}
	if _, err := txn.DatasetVersion("nope", 0); structs.ErrorCode(err) != structs.CodeNotFound {
		t.Fatalf("missing dataset: %v, want not_found", err)
	}
}

func TestFSM_DatasetVersionCreateRejects(t *testing.T) {
	tests := []struct {
		name   string
		change func(v *structs.DatasetVersion)
		msg    string
	}{
		{"bad name", func(v *structs.DatasetVersion) { v.Dataset = "Iris!" }, "dataset"},
		{"unknown format", func(v *structs.DatasetVersion) { v.Format = "xlsx" }, "format"},
		{"unknown mode", func(v *structs.DatasetVersion) { v.Mode = "loose" }, "mode"},
		{"no holders", func(v *structs.DatasetVersion) { v.Holders = nil }, "holders"},
		{"empty file", func(v *structs.DatasetVersion) { v.Size = 0 }, "size"},
		{"no columns", func(v *structs.DatasetVersion) { v.Columns = nil }, "columns"},
		{"column twice", func(v *structs.DatasetVersion) { v.Columns[1].Name = v.Columns[0].Name }, "twice"},
		{"column type", func(v *structs.DatasetVersion) { v.Columns[0].Type = "decimal" }, "Sepal_Length"},
		{"long top value", func(v *structs.DatasetVersion) {
			v.Columns[1].Categorical.Top[0].Value = strings.Repeat("x", structs.MaxStatValueLen+1)
		}, "top value"},
		{"quarantine in strict mode", func(v *structs.DatasetVersion) { v.Quarantine = lenientDataset("x").Quarantine }, "lenient"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := testFSM(t)
			v := irisDataset("iris")
			tt.change(&v)
			res := f.Apply(commandLogs(1, createDatasetVersion(t, v))[0])
			ce, ok := res.(*structs.CodedError)
			if !ok || ce.Code != structs.CodeInvalid || !strings.Contains(ce.Message, tt.msg) {
				t.Fatalf("result %v, want invalid_argument naming %q", res, tt.msg)
			}
			txn := f.ReadTxn()
			defer txn.Discard()
			if _, err := txn.Dataset("iris"); structs.ErrorCode(err) != structs.CodeNotFound {
				t.Fatalf("a rejected version created its dataset: %v", err)
			}
		})
	}
}

func TestFSM_DatasetDeleteRespectsLineage(t *testing.T) {
	trained := linearVersion("m")
	trained.Lineage = structs.Lineage{Dataset: "iris:1"}
	setup := func(t *testing.T, f *FSM) {
		mustApply(t, f, 1,
			createDatasetVersion(t, irisDataset("iris")),
			createDatasetVersion(t, irisDataset("iris")),
			createModel(t, "m", nil),
			encodeVersion(t, trained))
	}
	delVersion := func(v uint64, force bool) []byte {
		return encode(t, structs.DatasetVersionDeleteType, &structs.DatasetVersionDeleteRequest{Dataset: "iris", Version: v, Force: force})
	}
	delDataset := func(force bool) []byte {
		return encode(t, structs.DatasetDeleteType, &structs.DatasetDeleteRequest{Name: "iris", Force: force})
	}

	f := testFSM(t)
	setup(t, f)
	res := f.ApplyBatch(commandLogs(5, delVersion(1, false), delDataset(false), delVersion(2, false), delVersion(2, false)))
	if ce, ok := res[0].(*structs.CodedError); !ok || ce.Code != structs.CodeConflict || !strings.Contains(ce.Message, `model "m"`) {
		t.Fatalf("delete of a version in a model's lineage = %v, want already_exists naming the model", res[0])
	}
	if codeOf(res[1]) != structs.CodeConflict {
		t.Fatalf("delete of a dataset with a version in a lineage = %v, want already_exists", res[1])
	}
	if res[2] != nil {
		t.Fatalf("delete of a version no lineage names = %v", res[2])
	}
	if codeOf(res[3]) != structs.CodeNotFound {
		t.Fatalf("second delete = %v, want not_found", res[3])
	}
	res = f.ApplyBatch(commandLogs(9, delDataset(true), createDatasetVersion(t, irisDataset("iris"))))
	if res[0] != nil {
		t.Fatalf("forced dataset delete = %v", res[0])
	}
	if v, ok := res[1].(*structs.DatasetVersion); !ok || v.Version != 1 {
		t.Fatalf("upload after delete = %+v, want version 1 of a new dataset", res[1])
	}
	txn := f.ReadTxn()
	defer txn.Discard()
	if vs, _, _ := txn.DatasetVersions("iris", "", 0); len(vs) != 1 {
		t.Fatalf("versions after delete and upload = %d, want 1", len(vs))
	}
}

func TestFSM_DatasetHolders(t *testing.T) {
	holders := func(digest string, h ...string) []byte {
		return encode(t, structs.DatasetHoldersType, &structs.DatasetHoldersRequest{Dataset: "iris", Version: 1, Digest: digest, Holders: h})
	}
	f := testFSM(t)
	mustApply(t, f, 1, createDatasetVersion(t, lenientDataset("iris")))
	res := f.ApplyBatch(commandLogs(2,
		holders(digestOf(7), "node-2", "node-3"),
		holders(digestOf(8), "node-4"),
		holders(digestOf(9), "node-5"),
		holders(digestOf(7))))
	if codeOf(res[0]) != "" || codeOf(res[1]) != "" {
		t.Fatalf("holders of the file and the quarantine = %v, %v", res[0], res[1])
	}
	if codeOf(res[2]) != structs.CodeConflict || codeOf(res[3]) != structs.CodeInvalid {
		t.Fatalf("holders of another blob = %v (want already_exists), with none = %v (want invalid_argument)", res[2], res[3])
	}
	txn := f.ReadTxn()
	defer txn.Discard()
	v, err := txn.DatasetVersion("iris", 1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v.Holders, []string{"node-2", "node-3"}) || !reflect.DeepEqual(v.Quarantine.Holders, []string{"node-4"}) {
		t.Fatalf("holders = %v and %v", v.Holders, v.Quarantine.Holders)
	}
	// The blob collector and the artifacts task see both blobs.
	var owners []string
	must(t, txn.Artifacts(func(a *Artifact) { owners = append(owners, a.Owner+" "+a.Digest[60:]) }))
	if want := []string{"dataset iris:1 0007", "dataset iris:1 quarantine 0008"}; !reflect.DeepEqual(owners, want) {
		t.Fatalf("artifacts = %v, want %v", owners, want)
	}
}

func TestFSM_DatasetSnapshot(t *testing.T) {
	src := testFSM(t)
	mustApply(t, src, 1, createDatasetVersion(t, irisDataset("iris")), createDatasetVersion(t, lenientDataset("iris")))
	stream := snapshotBytes(t, src)
	if err := ValidateSnapshot(bytes.NewReader(stream)); err != nil {
		t.Fatalf("ValidateSnapshot: %v", err)
	}
	dst := testFSM(t)
	must(t, restoreBytes(dst, stream))
	txn := dst.ReadTxn()
	defer txn.Discard()
	v, err := txn.DatasetVersion("iris", 2)
	if err != nil || v.Quarantine == nil || v.Rows != 150 {
		t.Fatalf("restored version = %+v, %v", v, err)
	}

	// A version whose dataset is missing is refused by validation.
	orphan := testFSM(t)
	mustApply(t, orphan, 1, createDatasetVersion(t, irisDataset("iris")))
	if err := ValidateSnapshot(bytes.NewReader(withoutDatasetRecord(t, orphan))); !errors.Is(err, ErrInvalidSnapshot) {
		t.Fatalf("ValidateSnapshot of a version without its dataset = %v, want ErrInvalidSnapshot", err)
	}
}

// withoutDatasetRecord snapshots f after deleting its dataset records but not
// their versions, which no command does.
func withoutDatasetRecord(t *testing.T, f *FSM) []byte {
	t.Helper()
	must(t, f.cur.db.Update(func(txn *badger.Txn) error {
		return txn.Delete([]byte(datasetKey("iris")))
	}))
	return snapshotBytes(t, f)
}
