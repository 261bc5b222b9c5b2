package node

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kilnml/kiln/ml/onnx"
)

// withONNX sets onnx { runtime, library_path }.
func withONNX(runtime, library string) testOpt {
	return func(c *Config) { c.ONNX = ONNXConfig{Runtime: runtime, LibraryPath: library} }
}

// requireORT skips a test where ONNX Runtime's library is not installed
// (scripts/install-onnxruntime; .ci/run installs it).
func requireORT(t *testing.T) {
	t.Helper()
	if _, err := onnx.Open(onnx.RuntimeORT, ""); err != nil {
		t.Skipf("ONNX Runtime is not installed here: %v", err)
	}
}

// TestONNXRuntime_ServesUnderEach pushes, deploys and predicts the same MLP
// under ort and gonnx: the same answers, and status, the version and the v2
// metadata name the runtime.
func TestONNXRuntime_ServesUnderEach(t *testing.T) {
	requireORT(t)
	raw, err := onnx.RandomMLP(7, 4, 16, 3).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	answers := map[string]string{}
	for _, c := range []struct{ runtime, versionRuntime, platform string }{
		{onnx.RuntimeORT, "onnxruntime 1.", "onnxruntime_onnx"},
		{onnx.RuntimeGonnx, "gonnx v1.1.0", "kiln-onnx"},
	} {
		t.Run(c.runtime, func(t *testing.T) {
			a := testNode(t, withONNX(c.runtime, ""))
			waitLeader(t, a)
			st := call(t, a, "GET", "/v1/status", "")
			if st.body["onnx_runtime"] != c.runtime || (c.runtime == onnx.RuntimeORT) != (st.body["onnx_runtime_version"] != nil) {
				t.Errorf("status: %v", st.body)
			}
			createModel(t, a, "mlp")
			v := uploadOK(t, a, "mlp", "format=onnx", raw)
			if r, _ := v["runtime"].(string); !strings.HasPrefix(r, c.versionRuntime) {
				t.Errorf("version runtime %q, want %q...", r, c.versionRuntime)
			}
			deployAndWait(t, a, "mlp")
			meta := call(t, a, "GET", "/v2/models/mlp", "")
			if meta.body["platform"] != c.platform {
				t.Errorf("v2 platform %v, want %s", meta.body["platform"], c.platform)
			}
			r := call(t, a, "POST", "/v1/models/mlp:predict", `{"instances":[[0.5,-1,2,0.25],[1,1,1,1]]}`)
			if r.status != 200 {
				t.Fatalf("predict: %d %s", r.status, r.raw)
			}
			b, _ := json.Marshal(r.body["predictions"])
			answers[c.runtime] = string(b)
			// Bad input is refused by Kiln, naming the input, before ORT.
			if r := call(t, a, "POST", "/v1/models/mlp:predict", `{"instances":[[1,2,3]]}`); r.status != 400 || !strings.Contains(r.raw, "input") {
				t.Errorf("a short row: %d %s", r.status, r.raw)
			}
		})
	}
	if ort, gonnx := answers[onnx.RuntimeORT], answers[onnx.RuntimeGonnx]; ort == "" || !closeJSON(t, ort, gonnx) {
		t.Errorf("ORT answered %s, gonnx %s", ort, gonnx)
	}
}

// closeJSON compares two JSON arrays of numbers to 1e-5.
func closeJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y [][]float64
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil || len(x) != len(y) {
		return false
	}
	for i := range x {
		if len(x[i]) != len(y[i]) {
			return false
		}
		for j := range x[i] {
			if d := x[i][j] - y[i][j]; d > 1e-5 || d < -1e-5 {
				return false
			}
		}
	}
	return true
}

// TestONNXRuntime_StartUp: ort with a library that will not load stops the
// node at start naming the path; auto falls back to gonnx; an unknown
// runtime is a config error naming the field.
func TestONNXRuntime_StartUp(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.BindAddr = "127.0.1.250" // New stops at the runtime, before it binds
	cfg.ONNX = ONNXConfig{Runtime: "ort", LibraryPath: "/nonexistent/libonnxruntime.so.1"}
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "/nonexistent/libonnxruntime.so.1") {
		t.Errorf("ort without its library: %v", err)
	}
	cfg.ONNX.Runtime = "tensorrt"
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "onnx.runtime") {
		t.Errorf("unknown runtime: %v", err)
	}
	a := testNode(t, withONNX(onnx.RuntimeAuto, "/nonexistent/libonnxruntime.so.1"))
	waitLeader(t, a)
	if st := call(t, a, "GET", "/v1/status", ""); st.body["onnx_runtime"] != onnx.RuntimeGonnx {
		t.Errorf("auto without the library: %v", st.body)
	}
}
