package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// captureStdout runs f and returns what it printed to stdout.
func captureStdout(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	var out strings.Builder
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); io.Copy(&out, r) }()
	f()
	w.Close()
	os.Stdout = old
	wg.Wait()
	return out.String()
}

func TestRun_ExitCodes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "GET" && r.URL.Path == "/v1/models/iris":
			json.NewEncoder(w).Encode(map[string]any{"name": "iris", "owner": "ml", "tags": map[string]string{"stage": "prod"}})
		case r.Method == "PATCH" && r.URL.Path == "/v1/models/iris":
			var body map[string]map[string]*string
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body["tags"]["old"] != nil || *body["tags"]["stage"] != "prod" {
				w.WriteHeader(400)
				json.NewEncoder(w).Encode(map[string]string{"error": "bad tag body", "code": "invalid_argument"})
				return
			}
			json.NewEncoder(w).Encode(map[string]any{"name": "iris"})
		default:
			w.WriteHeader(404)
			json.NewEncoder(w).Encode(map[string]string{"error": "model \"nope\" not found", "code": "not_found"})
		}
	}))
	defer srv.Close()

	cases := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"get table", []string{"models", "get", "-address", srv.URL, "iris"}, 0, "stage=prod"},
		{"get json", []string{"models", "get", "-address", srv.URL, "-format", "json", "iris"}, 0, `"owner": "ml"`},
		{"server error is non-zero", []string{"models", "get", "-address", srv.URL, "nope"}, 1, ""},
		{"tag merge and untag", []string{"models", "tag", "-address", srv.URL, "-untag", "old", "iris", "stage=prod"}, 0, ""},
		{"missing name", []string{"models", "get", "-address", srv.URL}, 1, ""},
		{"bad format", []string{"status", "-address", srv.URL, "-format", "yaml"}, 1, ""},
		{"bad tag syntax", []string{"models", "tag", "-address", srv.URL, "iris", "novalue"}, 1, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var code int
			out := captureStdout(t, func() { code = run(tc.args) })
			if code != tc.code || !strings.Contains(out, tc.out) {
				t.Errorf("run(%v) = %d, output %q; want %d containing %q", tc.args, code, out, tc.code, tc.out)
			}
		})
	}
}

func TestAgent_BadConfigFails(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.hcl")
	os.WriteFile(p, []byte("node_name = \"x\"\nnot_a_key = 1\n"), 0o600)
	if code := run([]string{"agent", "-config", p, "-data-dir", dir}); code == 0 {
		t.Fatal("agent started with an unknown config key")
	}
	if code := run([]string{"agent", "-dev", "-encrypt", "c2hvcnQ="}); code == 0 {
		t.Fatal("agent started with a short encrypt key")
	}
}

func TestPercentileMS(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	if p := percentileMS(lat, 0.50); p != 50 {
		t.Errorf("p50 = %v, want 50", p)
	}
	if p := percentileMS(lat, 0.99); p != 99 {
		t.Errorf("p99 = %v, want 99", p)
	}
	if p := percentileMS(nil, 0.99); p != 0 {
		t.Errorf("empty p99 = %v", p)
	}
}

func TestBenchLoop_CountsErrors(t *testing.T) {
	res := benchLoop(2, 50*time.Millisecond, func(w int, _ []byte) error {
		if w == 1 {
			return errors.New("boom")
		}
		return nil
	}, 8)
	if res.Ops == 0 || res.Errors == 0 || res.P99MS < res.P50MS {
		t.Errorf("bench loop result %+v", res)
	}
}

func TestBenchRegistry_SpreadsOverNodes(t *testing.T) {
	var mu sync.Mutex
	patches := map[string]int{}
	handler := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			switch r.Method {
			case "POST":
				w.WriteHeader(201)
			case "PATCH":
				var req struct {
					Tags map[string]string `json:"tags"`
				}
				if err := json.Unmarshal(body, &req); err != nil || len(req.Tags["v"]) != 32 {
					w.WriteHeader(400)
					return
				}
				mu.Lock()
				patches[name]++
				mu.Unlock()
				w.Write([]byte(`{"name":"x"}`))
			}
		}
	}
	a := httptest.NewServer(handler("a"))
	defer a.Close()
	b := httptest.NewServer(handler("b"))
	defer b.Close()
	var code int
	out := captureStdout(t, func() {
		code = run([]string{"bench", "registry", "-address", a.URL + "," + b.URL, "-c", "4", "-d", "300ms", "-value-size", "32", "-format", "json"})
	})
	var res benchResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("exit %d, output %q", code, out)
	}
	mu.Lock()
	defer mu.Unlock()
	if res.Ops == 0 || res.Errors != 0 || patches["a"] == 0 || patches["b"] == 0 || int64(patches["a"]+patches["b"]) < res.Ops {
		t.Errorf("result %+v, patches per node %v", res, patches)
	}
}
