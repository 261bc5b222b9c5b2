package node

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// TestUploads_Async: with ?async=true the node answers 202 with an upload
// ID before the body has arrived, and GET /v1/uploads/{id} follows the
// bytes it received, the copies and the version; a file that does not load
// ends the upload failed, with the loader's reason.
func TestUploads_Async(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	createModel(t, a, "iris")
	file := readTestdata(t, linearIrisFile)
	half := len(file) / 2

	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://"+a.HTTPAddr()+"/v1/models/iris/versions?async=true", pr)
	req.ContentLength = int64(len(file))
	answered := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			close(answered)
			return
		}
		answered <- resp
	}()
	if _, err := pw.Write(file[:half]); err != nil {
		t.Fatal(err)
	}
	var resp *http.Response
	select {
	case resp = <-answered:
	case <-time.After(10 * time.Second):
		t.Fatal("no answer while the body is half sent")
	}
	var accepted struct {
		UploadID  string `json:"upload_id"`
		StatusURL string `json:"status_url"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&accepted); err != nil || resp.StatusCode != 202 || accepted.UploadID == "" {
		t.Fatalf("async upload answered %d %+v %v", resp.StatusCode, accepted, err)
	}
	// The answer stays open until the body is sent: a Go client that
	// closes it earlier stops sending the body.
	defer resp.Body.Close()
	get := func() map[string]any { return call(t, a, "GET", accepted.StatusURL, "").body }
	testutil.Until(t, 10*time.Second, "the first half received", func() bool {
		u := get()
		return u["state"] == "receiving" && u["bytes_received"] == float64(half) && u["bytes_total"] == float64(len(file))
	})
	if _, err := pw.Write(file[half:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	var u map[string]any
	testutil.Until(t, 20*time.Second, "the upload done", func() bool {
		u = get()
		return u["state"] == "done"
	})
	if u["version"] != float64(1) || u["copies"] != float64(1) || u["bytes_received"] != float64(len(file)) || u["finished_at"] == nil || u["model"] != "iris" {
		t.Fatalf("finished upload %v", u)
	}
	if r := call(t, a, "GET", "/v1/models/iris/versions/1", ""); r.status != 200 {
		t.Fatalf("the version is not there: %d", r.status)
	}

	// A file that does not load: the upload fails, saying why.
	r := call(t, a, "POST", "/v1/models/iris/versions?async=true&format=linear", `{"format":"kiln-linear"}`)
	if r.status != 202 {
		t.Fatalf("bad file: %d %s", r.status, r.raw)
	}
	testutil.Until(t, 10*time.Second, "the bad upload failed", func() bool {
		u = call(t, a, "GET", "/v1/uploads/"+r.body["upload_id"].(string), "").body
		return u["state"] == "failed"
	})
	if e, _ := u["error"].(map[string]any); e == nil || e["code"] != "invalid_argument" {
		t.Fatalf("failed upload %v", u)
	}
	for _, tc := range []struct {
		method, path string
		status       int
		want         string
	}{
		{"GET", "/v1/uploads/" + a.ID()[:8] + ".nope", 404, "no upload"},
		{"GET", "/v1/uploads/nodots", 400, "not one a node gave"},
		{"GET", "/v1/uploads/ffffffff.x", 404, "not alive"},
		{"POST", "/v1/models/iris/versions?async=soon", 400, "async must be true or false"},
	} {
		if r := call(t, a, tc.method, tc.path, ""); r.status != tc.status || !strings.Contains(r.raw, tc.want) {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, r.status, r.raw)
		}
	}
}
