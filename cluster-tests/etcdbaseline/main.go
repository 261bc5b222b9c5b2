// Command etcdbaseline is a small write-load generator used to measure a
// baseline for Kiln's write benchmark against a stock etcd cluster.
//
// Each of -c workers loops Put(key, random value) until -d elapses, then the
// tool reports completed ops, throughput and latency percentiles computed
// from every measured request latency (all samples are kept and sorted; no
// averaging or bucketing).
//
// Connections: by default 8 gRPC client connections (clientv3.Client) are
// shared by the 64 workers, i.e. the equivalent of etcd's own
// `benchmark --conns=8 --clients=64`. Like that tool, connection i is pinned
// to endpoint i%len(endpoints), so the connections (and thus the workers) are
// spread round-robin over all three members, and worker w uses connection
// w%conns. 8 was chosen because gRPC multiplexes many concurrent streams over
// one HTTP/2 connection, so a handful of connections is enough to avoid a
// single-connection bottleneck and touch every member, while keeping the
// client-side overhead small on a 2-core machine that also hosts the three
// etcd servers.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

type result struct {
	Ops       int64   `json:"ops"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	Errors    int64   `json:"errors"`
}

type workerStats struct {
	lat    []time.Duration
	errors int64
}

func main() {
	endpoints := flag.String("endpoints", "http://127.0.0.21:2379,http://127.0.0.22:2379,http://127.0.0.23:2379", "comma-separated etcd client endpoints")
	clients := flag.Int("c", 64, "number of concurrent workers (etcd benchmark --clients)")
	conns := flag.Int("conns", 8, "number of gRPC connections shared by the workers (etcd benchmark --conns)")
	dur := flag.Duration("d", 10*time.Second, "load duration")
	valueSize := flag.Int("value-size", 256, "value size in bytes")
	format := flag.String("format", "table", "output format: json|table")
	reqTimeout := flag.Duration("timeout", 5*time.Second, "per-request timeout")
	flag.Parse()

	if *format != "json" && *format != "table" {
		fatalf("unknown -format %q (want json|table)", *format)
	}
	if *clients < 1 || *conns < 1 || *valueSize < 0 || *dur <= 0 {
		fatalf("invalid flags: -c, -conns must be >=1, -d > 0, -value-size >= 0")
	}
	var eps []string
	for _, e := range strings.Split(*endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	if len(eps) == 0 {
		fatalf("no endpoints")
	}
	if *conns > *clients {
		*conns = *clients
	}

	// One client (= one gRPC connection) per conn, pinned round-robin to a
	// single endpoint, mirroring etcd's tools/benchmark mustCreateConn.
	cls := make([]*clientv3.Client, *conns)
	for i := range cls {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{eps[i%len(eps)]},
			DialTimeout: 5 * time.Second,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			fatalf("connect %s: %v", eps[i%len(eps)], err)
		}
		cls[i] = c
	}
	defer func() {
		for _, c := range cls {
			c.Close()
		}
	}()

	stats := make([]workerStats, *clients)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(*dur)
	for w := 0; w < *clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			cli := cls[w%len(cls)]
			rng := rand.New(rand.NewSource(time.Now().UnixNano() + int64(w)*7919))
			val := make([]byte, *valueSize)
			st := &stats[w]
			st.lat = make([]time.Duration, 0, 1<<14)
			for seq := 0; ; seq++ {
				if !time.Now().Before(deadline) {
					return
				}
				rng.Read(val)
				// Unique key per worker and request: bench/<worker>/<seq>.
				key := fmt.Sprintf("bench/%03d/%010d", w, seq)
				ctx, cancel := context.WithTimeout(context.Background(), *reqTimeout)
				t0 := time.Now()
				_, err := cli.Put(ctx, key, string(val))
				el := time.Since(t0)
				cancel()
				if err != nil {
					st.errors++
					continue
				}
				st.lat = append(st.lat, el)
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)

	var all []time.Duration
	var errs int64
	for i := range stats {
		all = append(all, stats[i].lat...)
		errs += stats[i].errors
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })

	res := result{
		Ops:       int64(len(all)),
		OpsPerSec: round2(float64(len(all)) / elapsed.Seconds()),
		P50Ms:     round2(ms(percentile(all, 0.50))),
		P99Ms:     round2(ms(percentile(all, 0.99))),
		Errors:    errs,
	}

	switch *format {
	case "json":
		b, _ := json.Marshal(res)
		fmt.Println(string(b))
	case "table":
		fmt.Printf("%-12s %-12s %-10s %-10s %-8s\n", "ops", "ops/s", "p50_ms", "p99_ms", "errors")
		fmt.Printf("%-12d %-12.2f %-10.2f %-10.2f %-8d\n", res.Ops, res.OpsPerSec, res.P50Ms, res.P99Ms, res.Errors)
		fmt.Printf("(clients=%d conns=%d value-size=%d elapsed=%s endpoints=%s)\n",
			*clients, len(cls), *valueSize, elapsed.Round(time.Millisecond), strings.Join(eps, ","))
	}
}

// percentile returns the nearest-rank percentile of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p*float64(len(sorted)) + 0.999999999) // ceil(p*n)
	if rank < 1 {
		rank = 1
	}
	if rank > len(sorted) {
		rank = len(sorted)
	}
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "etcdbaseline: "+format+"\n", args...)
	os.Exit(2)
}
