package node

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// TestAgent_TrainFromFeatures measures each iris plant twice: truly at
// 10:00, and misleadingly (another species' measures) at 12:00. The entity
// rows ask for the features as of 11:00. A frame that leaked the 12:00
// values would teach nonsense; the point-in-time frame teaches the true
// measures, and the model is as accurate as one trained on iris itself.
func TestAgent_TrainFromFeatures(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	waitRegistered(t, a)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/sources", `{"name": "measures", "kind": "push", "schema": {"plant_id": "int", "ts": "timestamp", "sepal_length": "float", "sepal_width": "float", "petal_length": "float", "petal_width": "float"}}`},
		{"PUT", "/v1/entities/plant", `{"join_keys": ["plant_id"]}`},
		{"PUT", "/v1/feature-views/flower", `{"entity": "plant", "source": "measures", "timestamp_column": "ts", "features": [{"name": "sepal_length"}, {"name": "sepal_width"}, {"name": "petal_length"}, {"name": "petal_width"}]}`},
		{"PUT", "/v1/feature-services/iris", `{"features": ["flower:*"]}`},
	} {
		if res := call(t, a, c.method, c.path, c.body); res.status != http.StatusOK {
			t.Fatalf("%s %s = %d %s", c.method, c.path, res.status, res.raw)
		}
	}
	f, err := os.Open(irisCSV)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	recs = recs[1:] // _index_, 4 measures, Species
	var push, rows strings.Builder
	rows.WriteString("plant_id,ts,species\n")
	for i, r := range recs {
		m := recs[(i+75)%len(recs)] // another plant's measures, often another species'
		fmt.Fprintf(&push, `{"plant_id": %d, "ts": "2026-03-01T10:00:00Z", "sepal_length": %s, "sepal_width": %s, "petal_length": %s, "petal_width": %s}`+"\n", i, r[1], r[2], r[3], r[4])
		fmt.Fprintf(&push, `{"plant_id": %d, "ts": "2026-03-01T12:00:00Z", "sepal_length": %s, "sepal_width": %s, "petal_length": %s, "petal_width": %s}`+"\n", i, m[1], m[2], m[3], m[4])
		fmt.Fprintf(&rows, "%d,2026-03-01T11:00:00Z,%s\n", i, r[5])
	}
	if res := call(t, a, "POST", "/v1/sources/measures/records", push.String()); res.status != http.StatusOK || res.body["accepted"] != 300.0 {
		t.Fatalf("push = %d %s", res.status, res.raw)
	}
	if r := pushDataset(t, a, "labels", "", []byte(rows.String())); r.status != 201 {
		t.Fatalf("push labels: %d %v", r.status, r.body)
	}

	// The frame as a dataset version, with its lineage.
	frame := call(t, a, "POST", "/v1/features/historical", `{"feature_service": "iris", "entity_dataset": "labels:1", "output": "iris-frame"}`)
	if frame.status != http.StatusCreated || frame.body["rows"] != 150.0 {
		t.Fatalf("frame = %d %s", frame.status, frame.raw)
	}
	lineage, _ := frame.body["features"].(map[string]any)
	views, _ := lineage["views"].([]any)
	if lineage["service"] != "iris" || lineage["entity_rows"] != "labels:1" || len(views) != 1 || views[0].(map[string]any)["rows"] != 300.0 {
		t.Fatalf("frame lineage = %v", lineage)
	}
	preview := call(t, a, "GET", "/v1/datasets/iris-frame/versions/1/rows?limit=1", "")
	if !strings.Contains(preview.raw, "flower:petal_length") || !strings.Contains(preview.raw, "1.4") {
		t.Fatalf("frame rows = %s; want plant 0's 10:00 petal length 1.4", preview.raw)
	}

	// A job trained from the features.
	spec := `{"name": "iris-ff", "trainer": {"kind": "builtin", "algorithm": "softmax_regression"},
		"feature_frame": {"service": "iris", "entity_rows": "labels:1"}, "target": "species",
		"validation": {"split": 0.3}, "resources": {"cpu": 1}, "register_as": "iris-ff"}`
	r := call(t, a, "POST", "/v1/jobs", spec)
	if r.status != 201 {
		t.Fatalf("submit: %d %v", r.status, r.raw)
	}
	j := waitJob(t, a, r.body["id"].(string))
	js := j["spec"].(map[string]any)
	if j["state"] != "succeeded" || js["dataset"] != "iris-ff-frame:1" || fmt.Sprint(js["features"]) != "[flower:sepal_length flower:sepal_width flower:petal_length flower:petal_width]" {
		t.Fatalf("job = %v", j)
	}
	if acc, _ := j["metrics"].(map[string]any)["accuracy"].(float64); acc < 0.85 {
		t.Fatalf("accuracy %v: the frame leaked the later, misleading measures", j["metrics"])
	}
	v := call(t, a, "GET", "/v1/models/iris-ff/versions/1", "")
	if v.body["lineage"].(map[string]any)["dataset"] != "iris-ff-frame:1" {
		t.Fatalf("model lineage = %v", v.body["lineage"])
	}
	dv := call(t, a, "GET", "/v1/datasets/iris-ff-frame/versions/1", "")
	if dv.body["features"].(map[string]any)["service"] != "iris" {
		t.Fatalf("the frame's version records no feature lineage: %s", dv.raw)
	}
}

// TestAgent_FeatureViewOnDataset defines a view on a registered dataset:
// a dataset source of the same name reads each version as it is pushed,
// and the view's values follow.
func TestAgent_FeatureViewOnDataset(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	waitRegistered(t, a)
	v1 := "user_id,ts,amount\n1,2026-02-01T10:00:00Z,5\n2,2026-02-01T10:00:00Z,6\n1,2026-02-01T11:00:00Z,7\n"
	if r := pushDataset(t, a, "spend", "", []byte(v1)); r.status != 201 {
		t.Fatalf("push: %d %v", r.status, r.body)
	}
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/v1/entities/user", `{"join_keys": ["user_id"]}`},
		{"PUT", "/v1/feature-views/spend_stats", `{"entity": "user", "dataset": "spend", "timestamp_column": "ts", "features": [{"name": "amount"}, {"name": "n", "expr": "count()", "window": "7d"}]}`},
	} {
		if res := call(t, a, c.method, c.path, c.body); res.status != http.StatusOK {
			t.Fatalf("%s %s = %d %s", c.method, c.path, res.status, res.raw)
		}
	}
	asOf := func() map[string]any {
		h := call(t, a, "POST", "/v1/features/historical", `{"features": ["spend_stats:*"], "entity_rows": [{"user_id": 1, "ts": "2026-02-02T00:00:00Z"}]}`)
		return h.body["rows"].([]any)[0].(map[string]any)["values"].(map[string]any)
	}
	testutil.Until(t, 60*time.Second, "version 1 in the view", func() bool { return asOf()["spend_stats:n"] == 2.0 })
	if v := asOf(); v["spend_stats:amount"] != 7.0 {
		t.Fatalf("user 1 = %v; want amount 7 from 2 rows", v)
	}
	v2 := "user_id,ts,amount\n1,2026-02-01T12:00:00Z,9\n"
	if r := pushDataset(t, a, "spend", "", []byte(v2)); r.status != 201 {
		t.Fatalf("push: %d %v", r.status, r.body)
	}
	testutil.Until(t, 60*time.Second, "version 2 in the view", func() bool { return asOf()["spend_stats:n"] == 3.0 })
	src := call(t, a, "GET", "/v1/sources/spend", "")
	if pos, _ := src.body["position"].(map[string]any); src.body["accepted"] != 4.0 || pos["version"] != "2" || src.body["paused"] != false {
		t.Fatalf("source = %s; want both versions read, 4 records", src.raw)
	}
	// A second view on the dataset reads every version again; the first
	// view's rows are not doubled.
	if r := call(t, a, "PUT", "/v1/feature-views/spend_max", `{"entity": "user", "dataset": "spend", "timestamp_column": "ts", "features": [{"name": "top", "expr": "max(amount)", "window": "7d"}]}`); r.status != http.StatusOK {
		t.Fatalf("second view = %d %s", r.status, r.raw)
	}
	top := func() any {
		h := call(t, a, "POST", "/v1/features/historical", `{"features": ["spend_max:top"], "entity_rows": [{"user_id": 1, "ts": "2026-02-02T00:00:00Z"}]}`)
		return h.body["rows"].([]any)[0].(map[string]any)["values"].(map[string]any)["spend_max:top"]
	}
	testutil.Until(t, 45*time.Second, "the second view filled", func() bool { return top() == 9.0 })
	if v := asOf(); v["spend_stats:n"] != 3.0 {
		t.Fatalf("user 1 = %v after the re-read; want still 3 rows", v)
	}
	if r := call(t, a, "PUT", "/v1/feature-views/other", `{"entity": "user", "dataset": "nope", "timestamp_column": "ts", "features": [{"name": "amount"}]}`); r.status != 400 || !strings.Contains(r.raw, "nope") {
		t.Fatalf("view on a missing dataset = %d %s", r.status, r.raw)
	}
}

// TestAgent_FileSourceRun reads files of a directory (the iris file of the
// repo's test data) in runs: each file once, by name and checksum, a new
// file on the next run, into dataset versions and a view.
func TestAgent_FileSourceRun(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	waitRegistered(t, a)
	dir := t.TempDir()
	iris := readTestdata(t, irisCSV)
	if err := os.WriteFile(dir+"/a.csv", iris, 0o644); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`{"name": "flowers", "kind": "file", "file": {"path": %q},
		"schema": {"_index_": "int", "Sepal_Length": "float", "Sepal_Width": "float", "Petal_Length": "float", "Petal_Width": "float", "Species": "string"},
		"expectations": [{"rule": "allowed", "column": "Species", "values": ["setosa", "versicolor"]}]}`, dir+"/*.csv")
	if r := call(t, a, "POST", "/v1/sources", src); r.status != http.StatusOK {
		t.Fatalf("source = %d %s", r.status, r.raw)
	}
	runAndWait := func(seq float64) map[string]any {
		t.Helper()
		if r := call(t, a, "POST", "/v1/sources/flowers/run", ""); r.status != http.StatusAccepted {
			t.Fatalf("run = %d %s", r.status, r.raw)
		}
		// 60 s: a run takes about a second alone, but CI runs the
		// packages side by side on two cores.
		var run map[string]any
		testutil.WaitFor(t, 60*time.Second, func() error {
			run, _ = call(t, a, "GET", "/v1/sources/flowers", "").body["last_run"].(map[string]any)
			if run == nil || run["seq"] != seq || run["state"] == "running" {
				return fmt.Errorf("run %v: last run %v", seq, run)
			}
			return nil
		})
		return run
	}
	run := runAndWait(1)
	if run["state"] != "succeeded" || run["read"] != 150.0 || run["accepted"] != 100.0 || run["quarantined"] != 50.0 || run["dataset"] != "flowers:1" {
		t.Fatalf("run 1 = %v; want 150 read, the 50 virginica quarantined by the allowed rule", run)
	}
	dv := call(t, a, "GET", "/v1/datasets/flowers/versions/1", "")
	if q, _ := dv.body["quarantine"].(map[string]any); dv.body["rows"] != 100.0 || q == nil || q["rows"] != 50.0 {
		t.Fatalf("dataset = %s; want 100 rows and a quarantine of 50", dv.raw)
	}
	// Nothing new: the file is skipped by its checksum.
	if run := runAndWait(2); run["read"] != 0.0 {
		t.Fatalf("run 2 = %v; want nothing read", run)
	}
	if err := os.WriteFile(dir+"/b.csv", iris[:bytes.IndexByte(iris, '\n')+1+len("\"1\",5.1,3.5,1.4,0.2,\"setosa\"\n")], 0o644); err != nil {
		t.Fatal(err)
	}
	if run := runAndWait(3); run["read"] != 1.0 || run["accepted"] != 1.0 {
		t.Fatalf("run 3 = %v; want only the new file's one row", run)
	}
}

// TestAgent_FeatureRetention: the leader deletes values older than a
// view's retain, keeping what its TTL and windows still read.
func TestAgent_FeatureRetention(t *testing.T) {
	a := testNode(t, func(c *Config) { c.FeatureStore.CompactInterval = 100 * time.Millisecond })
	waitLeader(t, a)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/sources", `{"name": "ev", "kind": "push", "schema": {"user_id": "int", "ts": "timestamp", "x": "float"}}`},
		{"PUT", "/v1/entities/user", `{"join_keys": ["user_id"]}`},
		{"PUT", "/v1/feature-views/ev_stats", `{"entity": "user", "source": "ev", "timestamp_column": "ts", "retain": "2h", "features": [{"name": "x"}, {"name": "n", "expr": "count()", "window": "3h"}]}`},
	} {
		if res := call(t, a, c.method, c.path, c.body); res.status != http.StatusOK {
			t.Fatalf("%s %s = %d %s", c.method, c.path, res.status, res.raw)
		}
	}
	now := time.Now().UTC()
	var push strings.Builder
	for h := range 6 { // 0h, 1h, ... 5h old
		fmt.Fprintf(&push, `{"user_id": 1, "ts": %q, "x": %d}`+"\n", now.Add(-time.Duration(h)*time.Hour-time.Minute).Format(time.RFC3339), h)
	}
	if r := call(t, a, "POST", "/v1/sources/ev/records", push.String()); r.status != http.StatusOK {
		t.Fatalf("push = %d %s", r.status, r.raw)
	}
	count := func() int {
		txn := a.fsm.ReadTxn()
		defer txn.Discard()
		n, err := txn.FeatureValueCount("ev_stats")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// retain 2h, but the 3h window still reads 3h back: rows 0-2h stay.
	testutil.Until(t, 10*time.Second, "the values past 3h to go", func() bool { return count() == 3 })
	h := call(t, a, "POST", "/v1/features/online", `{"features": ["ev_stats:n", "ev_stats:x"], "entities": {"user_id": 1}}`)
	if v := h.body["rows"].([]any)[0].(map[string]any)["values"].(map[string]any); v["ev_stats:n"] != 3.0 || v["ev_stats:x"] != 0.0 {
		t.Fatalf("online after compaction = %s", h.raw)
	}
}
