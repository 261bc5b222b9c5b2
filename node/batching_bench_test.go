package node

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/ml/onnx"
)

// batchingClients is how many keep-alive HTTP clients benchBatching runs at
// once, rounded up to a multiple of GOMAXPROCS (the "clients" metric says
// how many ran).
const batchingClients = 64

// BenchmarkBatchingMLP measures what dynamic batching wins on a model whose
// cost is in the model call: an ONNX MLP (28 float32 features, two Relu
// layers of 512, a Softmax over 3 classes; onnx.RandomMLP) served by one
// replica and asked for one row per :predict by 64 keep-alive clients.
// max_batch=0 scores every request alone; max_batch=32 merges up to 32
// queued rows into one model call, waiting at most max_wait_ms 2 for a batch
// to fill when the queue runs dry (1 to 5 measured within noise of each
// other on two cores, 0 lower; see node/DESIGN.md). Compare the rows/s of
// the two.
//
//	go test ./node -run x -bench BatchingMLP -benchtime 20000x -count 3
func BenchmarkBatchingMLP(b *testing.B) {
	raw, err := onnx.RandomMLP(7, 28, 512, 512, 3).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	benchBatching(b, raw, "format=onnx", 28)
}

// BenchmarkBatchingIris is BenchmarkBatchingMLP on the linear iris model, a
// model so cheap that the HTTP path is nearly all of a prediction: what
// batching costs, or wins, where the model call is not the bottleneck.
//
//	go test ./node -run x -bench BatchingIris -benchtime 20000x -count 3
func BenchmarkBatchingIris(b *testing.B) {
	benchBatching(b, readTestdata(b, linearIrisFile), "", 4)
}

// benchBatching uploads model (with the upload query string query) to one
// node, deploys it once unbatched and once with max_batch 32, max_wait_ms 2,
// and drives each deployment's :predict with single-row requests of width
// features from batchingClients keep-alive clients.
func benchBatching(b *testing.B, model []byte, query string, width int) {
	cases := []struct {
		name                string
		maxBatch, maxWaitMS int
	}{
		{"max_batch=0", 0, 0},
		{"max_batch=32", 32, 2},
	}
	// One node serves every case, each from its own deployment, so the
	// node starts and the model uploads once, not once per b.N.
	a := testNode(b)
	waitLeader(b, a)
	for i, c := range cases {
		name := "m" + strconv.Itoa(i)
		createModel(b, a, name)
		uploadOK(b, a, name, query, model)
		deployBatching(b, a, name, c.maxBatch, c.maxWaitMS)
	}

	// Requests are made before the clock starts: 256 rows of standard
	// normal features, one row a request.
	rng := rand.New(rand.NewPCG(1, 2))
	bodies := make([]string, 256)
	for i := range bodies {
		var sb strings.Builder
		sb.WriteString(`{"instances":[[`)
		for j := range width {
			if j > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(strconv.FormatFloat(rng.NormFloat64(), 'f', 4, 64))
		}
		sb.WriteString(`]]}`)
		bodies[i] = sb.String()
	}

	for i, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			url := "http://" + a.HTTPAddr() + "/v1/models/m" + strconv.Itoa(i) + ":predict"
			// One row a request: req/s is rows/s.
			postLoad(b, url, batchingClients, func(i int64) string { return bodies[i%int64(len(bodies))] })
		})
	}
}

// deployBatching deploys version 1 of model on one replica with the given
// batching and waits for the replica to run.
func deployBatching(t testing.TB, a *Agent, model string, maxBatch, maxWaitMS int) {
	t.Helper()
	body := fmt.Sprintf(`{"versions":[{"version":1,"weight":1}],"replicas":1,"batching":{"max_batch":%d,"max_wait_ms":%d}}`, maxBatch, maxWaitMS)
	if r := call(t, a, "PUT", "/v1/deployments/"+model, body); r.status != 200 {
		t.Fatalf("deploy %s: %d %v", model, r.status, r.body)
	}
	var last apiResp
	testutil.Until(t, 20*time.Second, "a running replica of "+model, func() bool {
		last = call(t, a, "GET", "/v1/deployments/"+model, "")
		reps, _ := last.body["replica_states"].([]any)
		for _, rep := range reps {
			if rep.(map[string]any)["state"] == "running" {
				return true
			}
		}
		return false
	})
	if got, _ := last.body["batching"].(map[string]any); got["max_batch"] != float64(maxBatch) || got["max_wait_ms"] != float64(maxWaitMS) {
		t.Fatalf("deployment %s has batching %v, want max_batch %d, max_wait_ms %d", model, last.body["batching"], maxBatch, maxWaitMS)
	}
}
