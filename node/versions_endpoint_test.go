package node

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/raftfsm/structs"
)

const (
	lgMulticlassFile = "../ml/testdata/lightgbm/lgmulticlass.model"
	linearIrisFile   = "../ml/testdata/linear/iris.json"
)

func readTestdata(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// createModel registers a model through the API.
func createModel(t testing.TB, a *Agent, name string) {
	t.Helper()
	if r := call(t, a, "POST", "/v1/models", `{"name":"`+name+`"}`); r.status != 201 {
		t.Fatalf("create model %s: %d %v", name, r.status, r.body)
	}
}

// upload posts body as a new version of model; query is the raw query
// string without '?'.
func upload(t testing.TB, a *Agent, model, query string, body []byte) apiResp {
	t.Helper()
	path := "/v1/models/" + model + "/versions"
	if query != "" {
		path += "?" + query
	}
	return call(t, a, "POST", path, string(body))
}

// uploadOK uploads and fails the test unless the version was created.
func uploadOK(t testing.TB, a *Agent, model, query string, body []byte) map[string]any {
	t.Helper()
	r := upload(t, a, model, query, body)
	if r.status != 201 {
		t.Fatalf("upload to %s: %d %v", model, r.status, r.body)
	}
	return r.body
}

func TestAgent_VersionUpload(t *testing.T) {
	a := testNode(t) // artifact_replicas 2 by default: capped at the one alive node
	waitLeader(t, a)
	if a.cfg.ArtifactReplicas < 2 {
		t.Fatalf("artifact_replicas %d: the test needs more than the alive node count", a.cfg.ArtifactReplicas)
	}
	createModel(t, a, "m")
	file := readTestdata(t, lgMulticlassFile)
	digest := sha256Hex(file)

	r := upload(t, a, "m", "metadata="+url.QueryEscape(`{"team":"risk"}`), file)
	if r.status != 201 || r.header.Get("X-Kiln-Index") == "" {
		t.Fatalf("upload: %d %v", r.status, r.body)
	}
	checkLightGBMVersion(t, a, r.body, 1, digest, int64(len(file)))
	if md, _ := r.body["metadata"].(map[string]any); md["team"] != "risk" {
		t.Errorf("metadata %v", r.body["metadata"])
	}
	if _, ok := a.blobs.Has(digest); !ok {
		t.Error("the uploaded blob is not stored")
	}

	// The same file again is version 2 of the same blob.
	v2 := uploadOK(t, a, "m", "format=lightgbm", file)
	checkLightGBMVersion(t, a, v2, 2, digest, int64(len(file)))
	if names := testutil.DirNames(t, blobDir(a)); !slices.Equal(names, []string{digest}) {
		t.Errorf("sha256 dir holds %v, want the one blob", names)
	}

	r = call(t, a, "GET", "/v1/models/m/versions", "")
	items, _ := r.body["items"].([]any)
	if r.status != 200 || len(items) != 2 {
		t.Fatalf("list: %d %v", r.status, r.body)
	}
	for i, it := range items {
		if v := it.(map[string]any)["version"]; v != float64(i+1) {
			t.Errorf("items[%d].version = %v", i, v)
		}
	}
	r = call(t, a, "GET", "/v1/models/m/versions?limit=1", "")
	if items, _ := r.body["items"].([]any); len(items) != 1 || r.body["next_cursor"] == "" {
		t.Errorf("first page of one: %v", r.body)
	}

	r = call(t, a, "GET", "/v1/models/m/versions/2", "")
	if r.status != 200 {
		t.Fatalf("get version 2: %d %v", r.status, r.body)
	}
	checkLightGBMVersion(t, a, r.body, 2, digest, int64(len(file)))

	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/v1/models/m/versions/3", 404},
		{"/v1/models/m/versions/0", 400},
		{"/v1/models/m/versions/two", 400},
		{"/v1/models/nope/versions", 404},
		{"/v1/models/nope/versions/1", 404},
	} {
		if r := call(t, a, "GET", tc.path, ""); r.status != tc.status || r.body["code"] == "" {
			t.Errorf("GET %s: %d %v, want %d", tc.path, r.status, r.body, tc.status)
		}
	}

	// A process version needs no artifact.
	createModel(t, a, "proc")
	r = upload(t, a, "proc", "format=process&process="+url.QueryEscape(`{"command":["x"]}`), nil)
	if r.status != 201 {
		t.Fatalf("process upload: %d %v", r.status, r.body)
	}
	if r.body["digest"] != "" || r.body["size"] != float64(0) || r.body["format"] != "process" || r.body["version"] != float64(1) {
		t.Errorf("process version: %v", r.body)
	}
	if h, _ := r.body["holders"].([]any); h == nil || len(h) != 0 {
		t.Errorf("process version holders %v, want []", r.body["holders"])
	}
	if p, _ := r.body["process"].(map[string]any); p == nil || len(p["command"].([]any)) != 1 {
		t.Errorf("process version process %v", r.body["process"])
	}
}

func checkLightGBMVersion(t *testing.T, a *Agent, v map[string]any, version int, digest string, size int64) {
	t.Helper()
	if v["model"] != "m" || v["version"] != float64(version) || v["format"] != "lightgbm" {
		t.Errorf("version %v: model %v version %v format %v", version, v["model"], v["version"], v["format"])
	}
	if v["digest"] != digest || v["size"] != float64(size) {
		t.Errorf("version %d: digest %v size %v, want %s %d", version, v["digest"], v["size"], digest, size)
	}
	if h, _ := v["holders"].([]any); len(h) != 1 || h[0] != a.ID() {
		t.Errorf("version %d: holders %v, want [%s]", version, v["holders"], a.ID())
	}
	schema, _ := v["schema"].(map[string]any)
	inputs, _ := schema["inputs"].([]any)
	if len(inputs) != 1 {
		t.Fatalf("version %d: schema %v", version, schema)
	}
	in := inputs[0].(map[string]any)
	if shape, _ := in["shape"].([]any); len(shape) != 2 || shape[0] != float64(-1) || shape[1] != float64(28) {
		t.Errorf("version %d: input shape %v, want [-1 28]", version, in["shape"])
	}
	names, _ := schema["feature_names"].([]any)
	if len(names) != 28 || names[0] != "Column_0" || names[27] != "Column_27" {
		t.Errorf("version %d: feature names %v", version, names)
	}
	outputs, _ := schema["outputs"].([]any)
	if len(outputs) != 1 {
		t.Fatalf("version %d: outputs %v", version, schema["outputs"])
	}
	if shape, _ := outputs[0].(map[string]any)["shape"].([]any); len(shape) != 2 || shape[1] != float64(5) {
		t.Errorf("version %d: output shape %v, want [-1 5]", version, shape)
	}
	if ts, _ := v["created_at"].(string); !strings.HasSuffix(ts, "Z") {
		t.Errorf("version %d: created_at %q is not UTC RFC 3339", version, ts)
	}
}

func TestAgent_VersionUploadRejects(t *testing.T) {
	const limit = 200_000
	a := testNode(t, func(c *Config) { c.MaxArtifactBytes = limit })
	waitLeader(t, a)
	createModel(t, a, "m")
	file := readTestdata(t, lgMulticlassFile)
	if len(file) >= limit {
		t.Fatalf("test file of %d bytes does not fit the limit %d", len(file), limit)
	}
	corrupt := []byte("tree\nversion=v2\nnum_class=five\nmax_feature_idx=oops\n")
	schema := url.QueryEscape(`{"inputs":[{"name":"x","datatype":"FP64","shape":[-1,2]}]}`)
	cases := []struct {
		name, model, query string
		body               []byte
		status             int
		mention            []string
	}{
		{"unknown query parameter", "m", "colour=red", file, 400, []string{`"colour"`}},
		{"unknown format", "m", "format=pickle", file, 400, []string{"pickle"}},
		{"corrupt file of a given format", "m", "format=lightgbm", corrupt, 400, []string{"does not load as lightgbm", "max_feature_idx"}},
		{"file of another format", "m", "format=linear", file, 400, []string{"does not load as linear", "JSON"}},
		{"undetectable format", "m", "", []byte("just some bytes"), 400, []string{"could not be detected", "format="}},
		{"empty body", "m", "", nil, 400, []string{"empty"}},
		{"empty body with a format", "m", "format=lightgbm", nil, 400, []string{"empty"}},
		{"schema with a file format", "m", "format=lightgbm&schema=" + schema, file, 400, []string{"schema", "process"}},
		{"schema with a detected format", "m", "schema=" + schema, file, 400, []string{"schema", "process"}},
		{"malformed metadata", "m", "metadata=" + url.QueryEscape(`{"a":`), file, 400, []string{"metadata"}},
		{"process without format=process", "m", "process=" + url.QueryEscape(`{"command":["x"]}`), file, 400, []string{"process"}},
		{"format=process without process", "m", "format=process", nil, 400, []string{"process"}},
		{"format=process with an empty command", "m", "format=process&process=" + url.QueryEscape(`{"command":[]}`), nil, 400, []string{"process.command"}},
		{"larger than max_artifact_bytes", "m", "", append(slices.Clone(file), make([]byte, limit)...), 413, []string{"max_artifact_bytes"}},
		{"unknown model", "nope", "", file, 404, []string{"nope"}},
		{"bad model name", "Bad%20Name", "", file, 400, []string{"name"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := upload(t, a, tc.model, tc.query, tc.body)
			msg, _ := r.body["error"].(string)
			if r.status != tc.status || r.body["code"] == "" {
				t.Fatalf("got %d %v, want %d", r.status, r.body, tc.status)
			}
			for _, m := range tc.mention {
				if !strings.Contains(msg, m) {
					t.Errorf("error %q does not mention %q", msg, m)
				}
			}
		})
	}

	// Nothing was recorded or stored, and no upload left a temporary file.
	r := call(t, a, "GET", "/v1/models/m/versions", "")
	if items, _ := r.body["items"].([]any); r.status != 200 || len(items) != 0 {
		t.Errorf("rejected uploads recorded versions: %d %v", r.status, r.body)
	}
	if _, ok := a.blobs.Has(sha256Hex(corrupt)); ok {
		t.Error("the corrupt file was committed as a blob")
	}
	if names := testutil.DirNames(t, blobDir(a)); len(names) != 0 {
		t.Errorf("rejected uploads stored blobs %v", names)
	}
	// The handler removes its temporary file after it has answered.
	testutil.Until(t, 5*time.Second, "upload temporary files to be removed", func() bool {
		entries, _ := os.ReadDir(a.blobs.TmpDir())
		return len(entries) == 0
	})
}

func TestAgent_Aliases(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	createModel(t, a, "m")
	proc := "format=process&process=" + url.QueryEscape(`{"command":["serve"]}`)
	uploadOK(t, a, "m", proc, nil)
	uploadOK(t, a, "m", proc, nil)

	aliases := func(body map[string]any) map[string]any {
		m, _ := body["aliases"].(map[string]any)
		return m
	}
	r := call(t, a, "PUT", "/v1/models/m/aliases/champion", `{"version":1}`)
	if r.status != 200 || r.header.Get("X-Kiln-Index") == "" || aliases(r.body)["champion"] != float64(1) {
		t.Fatalf("put alias: %d %v", r.status, r.body)
	}
	r = call(t, a, "PUT", "/v1/models/m/aliases/challenger", `{"version":2}`)
	if r.status != 200 || len(aliases(r.body)) != 2 {
		t.Fatalf("put second alias: %d %v", r.status, r.body)
	}
	// Moving an alias.
	if r := call(t, a, "PUT", "/v1/models/m/aliases/champion", `{"version":2}`); r.status != 200 || aliases(r.body)["champion"] != float64(2) {
		t.Fatalf("move alias: %d %v", r.status, r.body)
	}
	r = call(t, a, "GET", "/v1/models/m", "")
	if al := aliases(r.body); r.status != 200 || len(al) != 2 || al["champion"] != float64(2) || al["challenger"] != float64(2) {
		t.Fatalf("model shows aliases %v", r.body["aliases"])
	}

	cases := []struct {
		name, method, path, body string
		status                   int
		mention                  string
	}{
		{"missing version", "PUT", "/v1/models/m/aliases/x", `{"version":9}`, 404, "9"},
		{"version zero", "PUT", "/v1/models/m/aliases/x", `{"version":0}`, 400, "version"},
		{"no body", "PUT", "/v1/models/m/aliases/x", ``, 400, "empty"},
		{"unknown field", "PUT", "/v1/models/m/aliases/x", `{"version":1,"v":2}`, 400, `"v"`},
		{"bad alias name", "PUT", "/v1/models/m/aliases/Bad%20Alias", `{"version":1}`, 400, "alias"},
		{"unknown model", "PUT", "/v1/models/nope/aliases/x", `{"version":1}`, 404, "nope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, a, tc.method, tc.path, tc.body)
			msg, _ := r.body["error"].(string)
			if r.status != tc.status || !strings.Contains(msg, tc.mention) {
				t.Errorf("got %d %v, want %d mentioning %q", r.status, r.body, tc.status, tc.mention)
			}
		})
	}

	r = call(t, a, "DELETE", "/v1/models/m/aliases/champion", "")
	if al := aliases(r.body); r.status != 200 || len(al) != 1 || al["challenger"] != float64(2) {
		t.Fatalf("delete alias: %d %v", r.status, r.body)
	}
	r = call(t, a, "GET", "/v1/models/m", "")
	if al := aliases(r.body); len(al) != 1 || al["champion"] != nil {
		t.Errorf("after delete the model shows aliases %v", r.body["aliases"])
	}
}

func TestAgent_CollectBlobs(t *testing.T) {
	const grace = time.Hour
	a := testNode(t, func(c *Config) { c.BlobGCGrace = grace })
	waitLeader(t, a)
	createModel(t, a, "m")
	referenced := readTestdata(t, lgMulticlassFile)
	uploadOK(t, a, "m", "", referenced)
	// Blobs whose only version is deleted are no longer referenced.
	deletedOld := readTestdata(t, linearIrisFile)
	deletedYoung := []byte(strings.Replace(string(deletedOld), "{", "{ ", 1))
	for _, m := range []struct {
		name string
		file []byte
	}{{"n", deletedOld}, {"o", deletedYoung}} {
		createModel(t, a, m.name)
		uploadOK(t, a, m.name, "format=linear", m.file)
		if r := call(t, a, "DELETE", "/v1/models/"+m.name+"/versions/1", ""); r.status != 204 {
			t.Fatalf("delete version: %d %v", r.status, r.body)
		}
		// Collection reads the local registry: wait for it to have the delete.
		testutil.Until(t, 5*time.Second, "the version delete to apply", func() bool {
			return call(t, a, "GET", "/v1/models/"+m.name+"/versions/1?consistency=stale", "").status == 404
		})
	}

	now := time.Now()
	cases := []struct {
		name string
		data []byte
		age  time.Duration
		kept bool
	}{
		{"referenced and old", referenced, 2 * grace, true},
		{"unreferenced and old", testutil.RandomBytes(t, 100), 2 * grace, false},
		{"unreferenced, just past the grace", testutil.RandomBytes(t, 100), grace + time.Minute, false},
		{"unreferenced and young", testutil.RandomBytes(t, 100), time.Minute, true},
		{"unreferenced, just inside the grace", testutil.RandomBytes(t, 100), grace - time.Minute, true},
		{"version deleted, old", deletedOld, 2 * grace, false},
		{"version deleted, young", deletedYoung, time.Minute, true},
	}
	wantRemoved := 0
	for _, tc := range cases {
		digest := sha256Hex(tc.data)
		if _, ok := a.blobs.Has(digest); !ok {
			storeBlob(t, a.blobs, tc.data)
		}
		at := now.Add(-tc.age)
		if err := os.Chtimes(a.blobs.Path(digest), at, at); err != nil {
			t.Fatal(err)
		}
		if !tc.kept {
			wantRemoved++
		}
	}
	n, err := a.collectBlobs(now)
	if err != nil {
		t.Fatalf("collectBlobs: %v", err)
	}
	if n != wantRemoved {
		t.Errorf("collectBlobs removed %d blobs, want %d", n, wantRemoved)
	}
	for _, tc := range cases {
		if _, ok := a.blobs.Has(sha256Hex(tc.data)); ok != tc.kept {
			t.Errorf("%s: stored after collection = %v, want %v", tc.name, ok, tc.kept)
		}
	}
	// Nothing left to collect.
	if n, err := a.collectBlobs(now); err != nil || n != 0 {
		t.Errorf("second collection removed %d (err %v)", n, err)
	}
}

// longRoutes are the routes whose bodies may take minutes, with a request
// each route accepts.
func longRoutes(t *testing.T) []struct {
	name, method, path string
	good               []byte
	okStatus           int
	places             func(a *Agent) *inFlight
} {
	return []struct {
		name, method, path string
		good               []byte
		okStatus           int
		places             func(a *Agent) *inFlight
	}{
		{"upload", "POST", "/v1/models/m/versions?format=linear", readTestdata(t, linearIrisFile), 201,
			func(a *Agent) *inFlight { return &a.uploadSlots }},
		{"snapshot restore", "PUT", "/v1/snapshot", registrySnapshot(t, structs.NewID(time.Now())), 200,
			func(a *Agent) *inFlight { return &a.restores }},
	}
}

func TestAgent_StalledUploadIsDropped(t *testing.T) {
	a := testNode(t, func(c *Config) { c.Limits.UploadIdleTimeout = 300 * time.Millisecond })
	waitLeader(t, a)
	createModel(t, a, "m")
	for _, rt := range longRoutes(t) {
		t.Run(rt.name, func(t *testing.T) {
			conn := stalledRequest(t, a, rt.method, rt.path, len(rt.good), string(rt.good[:len(rt.good)/2]))
			status, body := readAnswer(t, conn)
			if status != 400 || !strings.Contains(body, "upload stalled") || !strings.Contains(body, "limits.upload_idle_timeout") {
				t.Fatalf("stalled %s: %d %s, want 400 upload stalled", rt.name, status, body)
			}
			// The handler has answered: its temporary file is gone.
			if names := testutil.DirNames(t, a.blobs.TmpDir()); len(names) != 0 {
				t.Errorf("a stalled %s left %v in %s", rt.name, names, a.blobs.TmpDir())
			}
			for _, name := range testutil.DirNames(t, a.cfg.DataDir) {
				if strings.HasPrefix(name, "restore-") {
					t.Errorf("a stalled %s left %s in the data dir", rt.name, name)
				}
			}
			testutil.Until(t, 5*time.Second, "the place to be given back", func() bool { return rt.places(a).n.Load() == 0 })
		})
	}
}

// TestAgent_SlowUploadSurvives sends a model file in pieces for longer than
// the idle timeout, read_timeout and write_timeout, each piece well within
// the idle timeout: the upload is recorded and answered.
func TestAgent_SlowUploadSurvives(t *testing.T) {
	const idle = time.Second
	a := testNode(t, func(c *Config) {
		c.Limits.UploadIdleTimeout = idle
		c.HTTPReadTimeout = 2 * time.Second
		c.HTTPWriteTimeout = 2 * time.Second
		c.PredictTimeout = time.Second
	})
	waitLeader(t, a)
	createModel(t, a, "m")
	file := readTestdata(t, linearIrisFile)
	const pieces = 40
	pr, pw := io.Pipe()
	go func() {
		step := (len(file) + pieces - 1) / pieces
		for off := 0; off < len(file); off += step {
			if _, err := pw.Write(file[off:min(off+step, len(file))]); err != nil {
				return
			}
			time.Sleep(idle / 10) // a slow client: 4 s in all
		}
		pw.Close()
	}()
	resp, err := http.Post("http://"+a.HTTPAddr()+"/v1/models/m/versions?format=linear", "application/octet-stream", pr)
	if err != nil {
		t.Fatalf("slow upload: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 201 {
		t.Fatalf("slow upload: %d %s", resp.StatusCode, body)
	}
}

func TestAgent_ConcurrentUploadsAndRestoresCapped(t *testing.T) {
	a := testNode(t, func(c *Config) {
		c.Limits.MaxConcurrentUploads = 1
		c.Limits.MaxConcurrentRestores = 1
	})
	waitLeader(t, a)
	createModel(t, a, "m")
	for _, rt := range longRoutes(t) {
		t.Run(rt.name, func(t *testing.T) {
			// One request that holds the only place while its body trickles.
			conn := stalledRequest(t, a, rt.method, rt.path, len(rt.good), string(rt.good[:10]))
			testutil.Until(t, 10*time.Second, "the first request to take the place", func() bool { return rt.places(a).n.Load() == 1 })

			r := call(t, a, rt.method, rt.path, string(rt.good))
			if r.status != 429 || r.body["code"] != structs.CodeOverloaded || r.header.Get("Retry-After") != "1" ||
				!strings.Contains(fmt.Sprint(r.body["error"]), "limits.max_concurrent_") {
				t.Fatalf("second %s: %d %v (Retry-After %q), want 429 overloaded naming the limit", rt.name, r.status, r.body, r.header.Get("Retry-After"))
			}

			conn.Close() // the first one fails and gives its place back
			testutil.Until(t, 10*time.Second, "the place to be given back", func() bool { return rt.places(a).n.Load() == 0 })
			if r := call(t, a, rt.method, rt.path, string(rt.good)); r.status != rt.okStatus {
				t.Fatalf("%s once the place is free: %d %v", rt.name, r.status, r.body)
			}
		})
	}
}

func TestAgent_VersionFileDownload(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	createModel(t, a, "m")
	file := readTestdata(t, lgMulticlassFile)
	uploadOK(t, a, "m", "", file)
	r := call(t, a, "GET", "/v1/models/m/versions/1/file", "")
	if r.status != 200 || r.raw != string(file) || r.header.Get("X-Kiln-Digest") != sha256Hex(file) || r.header.Get("X-Kiln-Format") != "lightgbm" {
		t.Fatalf("download: %d, %d bytes (want %d), headers %v", r.status, len(r.raw), len(file), r.header)
	}
	if r := call(t, a, "GET", "/v1/models/m/versions/2/file", ""); r.status != 404 {
		t.Fatalf("download of a missing version: %d", r.status)
	}
}
