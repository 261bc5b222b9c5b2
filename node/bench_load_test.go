package node

import (
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// postLoad is the HTTP load the node benchmarks drive: b.N POSTs of
// body(i) to url from about clients keep-alive clients (RunParallel starts
// a multiple of GOMAXPROCS), each answer read and checked 200. It reports
// req/s, the process's CPU time per request (clients included: steadier
// than req/s on a shared machine), the clients, and p50 and p99 latency,
// and returns the req/s.
func postLoad(b *testing.B, url string, clients int, body func(i int64) string) (reqPerSec float64) {
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	procs := runtime.GOMAXPROCS(0)
	par := (clients + procs - 1) / procs
	b.SetParallelism(par)
	var (
		seq       atomic.Int64
		mu        sync.Mutex
		latencies []time.Duration // guarded by mu
	)
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		mine := make([]time.Duration, 0, 1024)
		defer func() {
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		}()
		for pb.Next() {
			t0 := time.Now()
			resp, err := client.Post(url, "application/json", strings.NewReader(body(seq.Add(1))))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mine = append(mine, time.Since(t0))
			if resp.StatusCode != 200 {
				b.Errorf("POST %s: %d", url, resp.StatusCode)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	reqPerSec = float64(b.N) / elapsed.Seconds()
	b.ReportMetric(reqPerSec, "req/s")
	b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(b.N), "cpu-µs/req")
	b.ReportMetric(float64(par*procs), "clients")
	if len(latencies) > 0 {
		slices.Sort(latencies)
		q := func(p float64) float64 {
			return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
		}
		b.ReportMetric(q(0.5), "p50-ms")
		b.ReportMetric(q(0.99), "p99-ms")
	}
	return reqPerSec
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
