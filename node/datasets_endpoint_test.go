package node

import (
	"bufio"
	"encoding/json"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

const irisCSV = "../ml/testdata/datasets/iris.csv"

func pushDataset(t testing.TB, a *Agent, name, query string, body []byte) apiResp {
	t.Helper()
	path := "/v1/datasets/" + name + "/versions"
	if query != "" {
		path += "?" + query
	}
	return call(t, a, "POST", path, string(body))
}

func columnByName(t testing.TB, v map[string]any, name string) map[string]any {
	t.Helper()
	cols, _ := v["columns"].([]any)
	for _, c := range cols {
		if m := c.(map[string]any); m["name"] == name {
			return m
		}
	}
	t.Fatalf("version has no column %q: %v", name, v["columns"])
	return nil
}

func TestAgent_DatasetUpload(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	file := readTestdata(t, irisCSV)

	r := pushDataset(t, a, "iris", "", file)
	if r.status != 201 || r.header.Get("X-Kiln-Index") == "" {
		t.Fatalf("upload: %d %v", r.status, r.body)
	}
	v := r.body
	if v["version"] != 1.0 || v["format"] != "csv" || v["mode"] != "strict" || v["rows"] != 150.0 || v["digest"] != sha256Hex(file) {
		t.Fatalf("version %v, want version 1 of a strict csv with 150 rows and the file's digest", v)
	}
	sl := columnByName(t, v, "Sepal_Length")
	num, _ := sl["numeric"].(map[string]any)
	if sl["type"] != "float" || num["count"] != 150.0 || num["min"] != 4.3 || num["max"] != 7.9 {
		t.Fatalf("Sepal_Length %v, want a float column of 150 values from 4.3 to 7.9", sl)
	}
	if h, _ := num["histogram"].(map[string]any); len(h["counts"].([]any)) == 0 {
		t.Fatalf("Sepal_Length has no histogram: %v", num)
	}
	sp := columnByName(t, v, "Species")
	cat, _ := sp["categorical"].(map[string]any)
	if sp["type"] != "string" || cat["distinct"] != 3.0 || len(cat["top"].([]any)) != 3 {
		t.Fatalf("Species %v, want a string column with 3 distinct values", sp)
	}
	if _, ok := a.blobs.Has(sha256Hex(file)); !ok {
		t.Fatal("the file is not stored")
	}

	// The same read paths answer on the version, the latest, the list.
	for _, path := range []string{"/v1/datasets/iris/versions/1", "/v1/datasets/iris/versions/latest"} {
		if g := call(t, a, "GET", path, ""); g.status != 200 || g.body["rows"] != 150.0 || g.body["columns"] == nil {
			t.Fatalf("GET %s: %d %v", path, g.status, g.body)
		}
	}
	l := call(t, a, "GET", "/v1/datasets", "")
	if items, _ := l.body["items"].([]any); l.status != 200 || len(items) != 1 || items[0].(map[string]any)["latest_version"] != 1.0 {
		t.Fatalf("list: %d %v", l.status, l.body)
	}
	vl := call(t, a, "GET", "/v1/datasets/iris/versions", "")
	items, _ := vl.body["items"].([]any)
	if vl.status != 200 || len(items) != 1 {
		t.Fatalf("version list: %d %v", vl.status, vl.body)
	}
	if it := items[0].(map[string]any); it["rows"] != 150.0 || len(it["columns"].([]any)) != 6 {
		t.Fatalf("version summary %v, want 150 rows and 6 columns", it)
	}

	// Rows come back typed by the schema, in file order.
	p := call(t, a, "GET", "/v1/datasets/iris/versions/1/rows?limit=2", "")
	rows, _ := p.body["rows"].([]any)
	if p.status != 200 || len(rows) != 2 {
		t.Fatalf("rows: %d %v", p.status, p.body)
	}
	cols := p.body["columns"].([]any)
	first := rows[0].([]any)
	if len(first) != len(cols) || first[len(first)-1] != "setosa" {
		t.Fatalf("first row %v of columns %v", first, cols)
	}
	for _, tc := range []struct{ path, want string }{
		{"/v1/datasets/iris/versions/1/rows?limit=0", "limit"},
		{"/v1/datasets/iris/versions/1/rows?lines=3", "unknown query parameter"},
		{"/v1/datasets/iris/versions/9", "no version 9"},
		{"/v1/datasets/nope", "not found"},
	} {
		g := call(t, a, "GET", tc.path, "")
		if msg, _ := g.body["error"].(string); g.status < 400 || !strings.Contains(msg, tc.want) {
			t.Errorf("GET %s: %d %v, want an error naming %q", tc.path, g.status, g.body, tc.want)
		}
	}
}

func TestAgent_DatasetBadRows(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	file := []byte("x,y,label\n1,2.5,a\n2,oops,b\n3,4.5\n4,5.5,c\n")
	schema := url.QueryEscape(`[{"name":"x","type":"int"},{"name":"y","type":"float"},{"name":"label","type":"string"}]`)

	// Strict (the default): nothing is recorded, and the error names the lines.
	r := pushDataset(t, a, "d", "schema="+schema, file)
	msg, _ := r.body["error"].(string)
	if r.status != 400 || !strings.Contains(msg, "line 3") || !strings.Contains(msg, "line 4") {
		t.Fatalf("strict upload with bad rows: %d %v, want 400 naming lines 3 and 4", r.status, r.body)
	}
	if g := call(t, a, "GET", "/v1/datasets/d", ""); g.status != 404 {
		t.Fatalf("a refused upload left dataset d: %d %v", g.status, g.body)
	}

	// Lenient: the good rows are the version, the bad ones its quarantine.
	r = pushDataset(t, a, "d", "mode=lenient&schema="+schema, file)
	if r.status != 201 || r.body["rows"] != 2.0 {
		t.Fatalf("lenient upload: %d %v, want 2 good rows", r.status, r.body)
	}
	q, _ := r.body["quarantine"].(map[string]any)
	sample, _ := q["sample"].([]any)
	if q["rows"] != 2.0 || len(sample) != 2 || sample[0].(map[string]any)["line"] != 3.0 {
		t.Fatalf("quarantine %v, want 2 bad rows from line 3", q)
	}
	digest, _ := q["digest"].(string)
	if _, ok := a.blobs.Has(digest); !ok {
		t.Fatal("the quarantine blob is not stored")
	}
	f, err := os.Open(a.blobs.Path(digest))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []quarantineRow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var row quarantineRow
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("quarantine line %q: %v", sc.Text(), err)
		}
		lines = append(lines, row)
	}
	if len(lines) != 2 || lines[0].Line != 3 || lines[0].Raw != "2,oops,b" || lines[1].Line != 4 || !strings.Contains(lines[1].Reason, "fields") {
		t.Fatalf("quarantine rows %+v", lines)
	}
}

func TestAgent_DatasetBadInput(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	for _, tc := range []struct {
		name, query, body, want string
	}{
		{"bad name", "", "a\n1\n", "name"},
		{"unknown format", "format=xlsx", "a\n1\n", "format"},
		{"unknown mode", "mode=loose", "a\n1\n", "mode"},
		{"unknown parameter", "delimiter=tab", "a\n1\n", "delimiter"},
		{"bad schema", "schema=" + url.QueryEscape(`[{"name":"a","type":"decimal"}]`), "a\n1\n", "schema[0]"},
		{"schema mismatch", "schema=" + url.QueryEscape(`[{"name":"b","type":"int"}]`), "a\n1\n", "not in the schema"},
		{"empty body", "", "", "empty"},
		{"header only", "format=csv", "a,b\n", "no rows"},
		{"undetectable", "", "\x00\x01\x02", "detected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "d"
			if tc.name == "bad name" {
				name = "Bad!"
			}
			r := pushDataset(t, a, name, tc.query, []byte(tc.body))
			if msg, _ := r.body["error"].(string); r.status != 400 || !strings.Contains(msg, tc.want) {
				t.Fatalf("%d %v, want 400 naming %q", r.status, r.body, tc.want)
			}
		})
	}
	if g := call(t, a, "GET", "/v1/datasets", ""); len(g.body["items"].([]any)) != 0 {
		t.Fatalf("refused uploads left datasets: %v", g.body)
	}
}

func TestAgent_DatasetDelete(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	file := readTestdata(t, irisCSV)
	for range 2 {
		if r := pushDataset(t, a, "iris", "", file); r.status != 201 {
			t.Fatalf("upload: %d %v", r.status, r.body)
		}
	}
	// A model version trained on iris:1 holds it.
	createModel(t, a, "m")
	v := structs.ModelVersion{Model: "m", Format: structs.FormatProcess, Process: &structs.ProcessSpec{Command: []string{"true"}},
		Lineage: structs.Lineage{Dataset: "iris:1"}}
	if _, err := a.propose(t.Context(), structs.VersionCreateType, &structs.VersionCreateRequest{Version: v}, nil); err != nil {
		t.Fatal(err)
	}
	r := call(t, a, "DELETE", "/v1/datasets/iris/versions/1", "")
	if msg, _ := r.body["error"].(string); r.status != 409 || !strings.Contains(msg, `model "m"`) {
		t.Fatalf("delete of a version in a lineage: %d %v, want 409 naming the model", r.status, r.body)
	}
	if r := call(t, a, "DELETE", "/v1/datasets/iris/versions/2", ""); r.status != 204 {
		t.Fatalf("delete of version 2: %d %v", r.status, r.body)
	}
	if r := call(t, a, "DELETE", "/v1/datasets/iris?force=yes", ""); r.status != 400 {
		t.Fatalf("force=yes: %d %v, want 400", r.status, r.body)
	}
	if r := call(t, a, "DELETE", "/v1/datasets/iris", ""); r.status != 409 {
		t.Fatalf("delete of the dataset: %d %v, want 409", r.status, r.body)
	}
	if r := call(t, a, "DELETE", "/v1/datasets/iris?force=true", ""); r.status != 204 {
		t.Fatalf("forced delete: %d %v", r.status, r.body)
	}
	if r := call(t, a, "GET", "/v1/datasets/iris", ""); r.status != 404 {
		t.Fatalf("after delete: %d %v", r.status, r.body)
	}
}

// A headerless TSV (LightGBM's test files) is read with header=false: its
// columns are c0, c1, ..., and a job trains on it by those names.
func TestAgent_DatasetWithoutHeader(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	waitRegistered(t, a)
	file := readTestdata(t, "../ml/testdata/datasets/lightgbm_regression.test.tsv")
	if r := pushDataset(t, a, "reg", "", file); r.status != 400 {
		t.Fatalf("the file read with a header: %d %v, want 400 (its first line is numbers)", r.status, r.body)
	}
	r := pushDataset(t, a, "reg", "header=false", file)
	if r.status != 201 || r.body["rows"] != 500.0 || r.body["no_header"] != true || columnByName(t, r.body, "c1")["type"] != "float" {
		t.Fatalf("upload: %d, rows %v, no_header %v", r.status, r.body["rows"], r.body["no_header"])
	}
	if p := call(t, a, "GET", "/v1/datasets/reg/versions/1/rows?limit=1", ""); p.status != 200 || len(p.body["rows"].([]any)) != 1 {
		t.Fatalf("rows: %d %v", p.status, p.body)
	}
	if r := pushDataset(t, a, "x", "header=false&format=jsonl", []byte("{\"a\": 1}\n")); r.status != 400 {
		t.Fatalf("header=false on JSON lines: %d %v", r.status, r.body)
	}
	job := `{"name": "reg", "trainer": {"kind": "builtin", "algorithm": "linear_regression"}, "dataset": "reg", "target": "c0", "validation": {"split": 0.2}}`
	j := call(t, a, "POST", "/v1/jobs", job)
	if j.status != 201 {
		t.Fatalf("submit: %d %v", j.status, j.body)
	}
	if done := waitJob(t, a, j.body["id"].(string)); done["state"] != "succeeded" {
		t.Fatalf("job %v", done)
	}
}
