package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// benchResult is what `kiln bench` prints; the JSON names are part of the CLI's
// contract for scripts.
type benchResult struct {
	Ops       int64   `json:"ops"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50MS     float64 `json:"p50_ms"`
	P99MS     float64 `json:"p99_ms"`
	Errors    int64   `json:"errors"`
}

const benchRegistryHelp = `Usage: kiln bench registry [flags]

  Concurrent model-tag writes (PATCH /v1/models/NAME) spread over the given
  nodes. Each worker owns a model bench-<i> and overwrites one tag with a random
  value. Latency is per acknowledged write.

  -address A[,B,C]  HTTP addresses of nodes; workers are spread over them
  -c N              concurrent workers (default 64)
  -d DURATION       how long to run (default 10s)
  -value-size N     bytes per tag value (default 256)
  -format FMT       table or json`

func benchRegistryCommand() *command {
	return &command{synopsis: "Benchmark registry writes", help: benchRegistryHelp, run: runBenchRegistry}
}

func runBenchRegistry(args []string) int {
	fs, cf := newClientFlags("bench registry")
	conc := fs.Int("c", 64, "")
	dur := fs.Duration("d", 10*time.Second, "")
	valueSize := fs.Int("value-size", 256, "")
	if err := parseClientFlags(fs, cf, args, 0, benchRegistryHelp); err != nil {
		return fail(err)
	}
	if *conc < 1 || *dur <= 0 || *valueSize < 1 || *valueSize > 4096 {
		return fail(errors.New("-c must be >= 1, -d > 0 and -value-size from 1 to 4096"))
	}
	var clients []*client
	for _, a := range strings.Split(cf.address, ",") {
		c, err := newClient(strings.TrimSpace(a), cf)
		if err != nil {
			return fail(err)
		}
		c.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *conc, MaxConnsPerHost: 0}}
		clients = append(clients, c)
	}
	// Create the models first, outside the measured window.
	for i := 0; i < *conc; i++ {
		c := clients[i%len(clients)]
		err := c.do("POST", "/v1/models", map[string]any{"name": fmt.Sprintf("bench-%d", i), "owner": "kiln-bench"}, nil)
		var ae *apiError
		if err != nil && !(errors.As(err, &ae) && ae.Status == http.StatusConflict) {
			return fail(fmt.Errorf("creating bench-%d: %w", i, err))
		}
	}
	addrs := strings.Split(cf.address, ",")
	conns := make([]*benchConn, *conc)
	for i := range conns {
		bc, err := newBenchConn(strings.TrimSpace(addrs[i%len(addrs)]), cf.token)
		if err != nil {
			return fail(err)
		}
		conns[i] = bc
		defer bc.close()
	}
	res := benchLoop(*conc, *dur, func(worker int, buf []byte) error {
		// The value is letters only, so it needs no JSON escaping.
		body := make([]byte, 0, len(buf)+20)
		body = append(body, `{"tags":{"v":"`...)
		body = append(body, randomText(buf)...)
		body = append(body, `"}}`...)
		status, err := conns[worker].do("PATCH", fmt.Sprintf("/v1/models/bench-%d", worker), body)
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			return fmt.Errorf("HTTP %d", status)
		}
		return nil
	}, *valueSize)
	printBench(cf.format, res)
	return 0
}

// benchLoop runs op from conc workers for d and measures each call.
func benchLoop(conc int, d time.Duration, op func(worker int, buf []byte) error, bufSize int) benchResult {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var (
		mu    sync.Mutex
		lat   []time.Duration
		errs  int64
		wg    sync.WaitGroup
		start = time.Now()
	)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			buf := make([]byte, bufSize)
			var mine []time.Duration
			var myErrs int64
			for ctx.Err() == nil {
				t0 := time.Now()
				if err := op(w, buf); err != nil {
					myErrs++
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += myErrs
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return benchResult{
		Ops:       int64(len(lat)),
		OpsPerSec: float64(len(lat)) / elapsed.Seconds(),
		P50MS:     percentileMS(lat, 0.50),
		P99MS:     percentileMS(lat, 0.99),
		Errors:    errs,
	}
}

// percentileMS is the nearest-rank percentile of sorted latencies, in ms.
func percentileMS(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i].Microseconds()) / 1000
}

// randomText fills buf with random letters and returns it as a string.
func randomText(buf []byte) string {
	_, _ = rand.Read(buf)
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for i, b := range buf {
		buf[i] = alphabet[int(b)%len(alphabet)]
	}
	return string(buf)
}

func printBench(format string, r benchResult) {
	if format == "json" {
		b, _ := json.Marshal(r)
		fmt.Println(string(b))
		return
	}
	printTable([]string{"OPS", "OPS/S", "P50_MS", "P99_MS", "ERRORS"}, [][]string{{
		fmt.Sprint(r.Ops), fmt.Sprintf("%.1f", r.OpsPerSec), fmt.Sprintf("%.2f", r.P50MS), fmt.Sprintf("%.2f", r.P99MS), fmt.Sprint(r.Errors),
	}})
}
