package clustertest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/ml/onnx"
)

// TestCluster_ONNXUnderEachRuntime pushes an ONNX model, deploys it and
// predicts through a node that holds no replica, once with every node on
// onnx { runtime = "ort" } and once on "gonnx": both give the outputs the
// model's producer stored. Under ORT it then sends 1,000 malformed
// requests, through the forwarding node and to the holder, and the holder
// must still be the same process, serving.
func TestCluster_ONNXUnderEachRuntime(t *testing.T) {
	if _, err := onnx.Open(onnx.RuntimeORT, ""); err != nil {
		t.Skipf("ONNX Runtime is not installed here (scripts/install-onnxruntime): %v", err)
	}
	for _, runtime := range []string{onnx.RuntimeORT, onnx.RuntimeGonnx} {
		t.Run(runtime, func(t *testing.T) {
			c := newCluster(t, 3, withHCL(fmt.Sprintf("onnx {\n  runtime = %q\n}", runtime)))
			n1 := c.all()[0]
			c.waitVoters(3, 30*time.Second)
			for _, nd := range c.all() {
				if st := onnxStatus(t, nd); st != runtime {
					t.Fatalf("%s runs ONNX on %q, want %q", nd.name, st, runtime)
				}
			}
			n1.createModel("mlp", nil)
			n1.push("mlp", filepath.Join(testdataDir, "onnx/mlp.onnx"), "onnx")
			n1.write("PUT", "/v1/deployments/mlp", map[string]any{"versions": []map[string]any{{"version": 1, "weight": 100}}, "replicas": 1}, http.StatusOK)
			d := c.waitRunning(n1, "mlp", 1, 1)
			holderID := d.ReplicaStates[0].NodeID
			var via, holder *node
			for _, nd := range c.all() {
				if nd.id == holderID {
					holder = nd
				} else {
					via = nd
				}
			}
			// mlp.onnx's sample from gonnx's own tests (expected.json).
			body := map[string]any{"inputs": map[string]any{"data_input": [][]float64{{0, 1, 2}, {3, 4, 5}}}}
			want := [][]float64{{-0.056310713, -1.1901507}, {-1.5961288, -3.3445296}}
			var p prediction
			testutil.WaitFor(t, 20*time.Second, func() error {
				r, got, err := via.predict("mlp", body)
				if err != nil || r.status != http.StatusOK {
					return fmt.Errorf("predict through %s: %v %v", via.name, r, err)
				}
				p = got
				return nil
			})
			for i, row := range want {
				got, _ := p.Predictions[i].([]any)
				for j, w := range row {
					if len(got) != len(row) || math.Abs(got[j].(float64)-w) > 1e-5 {
						t.Fatalf("%s through %s: predictions %v, want %v", runtime, via.name, p.Predictions, want)
					}
				}
			}
			if runtime != onnx.RuntimeORT {
				return
			}
			pid := holder.pid()
			rng := rand.New(rand.NewPCG(7, 7))
			for i := range 1000 {
				nd := via
				if i%2 == 1 {
					nd = holder
				}
				b := malformedMLP(rng, i)
				r, err := nd.call("POST", "/v1/models/mlp:predict", rawBody(b))
				if err != nil {
					t.Fatalf("request %d (%s) to %s: %v", i, b, nd.name, err)
				}
				if r.status != http.StatusBadRequest {
					t.Fatalf("request %d (%s) to %s: %d %s, want 400", i, b, nd.name, r.status, r.body)
				}
			}
			if holder.pid() != pid || !holder.running() {
				t.Fatalf("the holder %s restarted or died under malformed requests", holder.name)
			}
			if r, _, err := via.predict("mlp", body); err != nil || r.status != http.StatusOK {
				t.Fatalf("after the malformed requests: %v %v", r, err)
			}
		})
	}
}

// malformedMLP makes the i-th malformed request for mlp.onnx, which takes
// data_input FP32 [batch, 3]: wrong widths, ranks, names and types, empty
// and ragged rows, absurd shapes, broken JSON.
func malformedMLP(rng *rand.Rand, i int) []byte {
	row := func(n int) string {
		parts := make([]string, n)
		for k := range parts {
			parts[k] = fmt.Sprint(rng.Float64()*10 - 5)
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	switch i % 10 {
	case 0:
		return []byte(`{"instances":[` + row(rng.IntN(2)+1) + `]}`) // too narrow
	case 1:
		return []byte(`{"instances":[` + row(4+rng.IntN(100)) + `]}`) // too wide
	case 2:
		return []byte(`{"inputs":{"data_input":` + row(5) + `}}`) // one row, too wide
	case 3:
		return []byte(`{"inputs":{"nope":[` + row(3) + `]}}`) // unknown input
	case 4:
		return []byte(`{"instances":[` + row(3) + `,` + row(2) + `]}`) // ragged
	case 5:
		return []byte(`{"instances":[["a","b","c"]]}`) // strings
	case 6:
		return []byte(`{"inputs":{"data_input":[[[` + row(3)[1:] + `]]}}`) // rank 3
	case 7:
		return []byte(`{"instances":[` + row(3)) // truncated JSON
	case 8:
		return []byte(`{"instances":[]}`) // no rows
	default:
		return []byte(fmt.Sprintf(`{"instances":[[1e999,%d,3]]}`, rng.IntN(9))) // out of range
	}
}

// onnxStatus is the onnx_runtime a node's /v1/status reports.
func onnxStatus(t *testing.T, nd *node) string {
	t.Helper()
	var st struct {
		Runtime string `json:"onnx_runtime"`
	}
	if err := nd.getJSON("/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	return st.Runtime
}
