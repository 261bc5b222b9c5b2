package node

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkUIPages measures the dashboard's server time per page, and its
// HTML's size, on a node holding 1,000 models and 10,000 runs of one
// experiment (the scale): the models list, a model, the
// experiment's runs (50 a page each), the cluster, and the jobs, data,
// tuning and monitoring lists. It reports p50 and
// p99 of the server time over b.N requests per page, and the HTML's bytes.
//
//	go test ./node -run x -bench UIPages -benchtime 200x
func BenchmarkUIPages(b *testing.B) {
	a := testNode(b)
	waitLeader(b, a)
	fill(b, 1000, func(i int) { createModel(b, a, fmt.Sprintf("model-%04d", i)) })
	r := call(b, a, "POST", "/api/2.0/mlflow/experiments/create", `{"name":"big"}`)
	exp := r.body["experiment_id"].(string)
	fill(b, 10000, func(i int) {
		body := fmt.Sprintf(`{"experiment_id":%q,"run_name":"run-%05d","start_time":%d}`, exp, i, time.Now().UnixMilli())
		if r := call(b, a, "POST", "/api/2.0/mlflow/runs/create", body); r.status != 200 {
			b.Fatalf("run %d: %d %s", i, r.status, r.raw)
		}
	})
	client := &http.Client{}
	for _, page := range []string{"/ui/models", "/ui/models/model-0500", "/ui/experiments/big", "/ui/", "/ui/jobs", "/ui/data", "/ui/tuning", "/ui/monitoring"} {
		b.Run(page, func(b *testing.B) {
			times := make([]time.Duration, 0, b.N)
			size := 0
			for b.Loop() {
				start := time.Now()
				resp, err := client.Get("http://" + a.HTTPAddr() + page)
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				times = append(times, time.Since(start))
				if resp.StatusCode != 200 {
					b.Fatalf("%s: %d", page, resp.StatusCode)
				}
				size = len(body)
			}
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50_ms")
			b.ReportMetric(float64(times[len(times)*99/100].Microseconds())/1000, "p99_ms")
			b.ReportMetric(float64(size), "html_bytes")
		})
	}
}

// fill runs make(i) for i in [0, n) on 16 goroutines.
func fill(b *testing.B, n int, make func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				make(int(i))
			}
		})
	}
	wg.Wait()
}
