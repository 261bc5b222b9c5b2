package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

const benchFeaturesHelp = `Usage: kiln bench features [flags]

  Online feature lookups (POST /v1/features/online) of one entity's
  features from a feature service, the entity drawn at random. Two phases:
  first the most the nodes answer, with -c workers in a closed loop; then
  requests sent at -load times that rate on a fixed schedule (open loop), so
  that a slow answer does not delay the next request and the latencies
  count the time a request waited for a free connection.

  -setup N          first create a push source bench_events of ten float
                    features, view bench_stats, service bench, and push N
                    entities (user_id 0..N-1), two values each, an hour
                    apart; without it the service and entities must exist
  -service S        the feature service (default bench)
  -entities N       user_id is drawn from 0..N-1 (default: -setup's N, else
                    100000)
  -key NAME         the join key (default user_id)
  -address A[,B,C]  HTTP addresses of nodes; workers are spread over them
  -c N              connections (default 32)
  -d DURATION       length of each phase (default 10s)
  -load F           the open-loop rate as a fraction of the closed-loop
                    one (default 0.5)
  -format FMT       table or json`

func benchFeaturesCommand() *command {
	return &command{synopsis: "Benchmark online feature lookups", help: benchFeaturesHelp, run: runBenchFeatures}
}

func runBenchFeatures(args []string) int {
	fs, cf := newClientFlags("bench features")
	setup := fs.Int("setup", 0, "")
	service := fs.String("service", "bench", "")
	entities := fs.Int("entities", 0, "")
	key := fs.String("key", "user_id", "")
	conc := fs.Int("c", 32, "")
	dur := fs.Duration("d", 10*time.Second, "")
	load := fs.Float64("load", 0.5, "")
	if err := parseClientFlags(fs, cf, args, 0, benchFeaturesHelp); err != nil {
		return fail(err)
	}
	if *conc < 1 || *dur <= 0 || *load <= 0 || *load > 1 {
		return fail(errors.New("-c must be >= 1, -d > 0, and -load in (0, 1]"))
	}
	addrs := strings.Split(cf.address, ",")
	c, err := newClient(strings.TrimSpace(addrs[0]), cf)
	if err != nil {
		return fail(err)
	}
	n := *entities
	if *setup > 0 {
		if err := setupFeatureBench(c, *setup); err != nil {
			return fail(err)
		}
		if n == 0 {
			n = *setup
		}
	}
	if n == 0 {
		n = 100_000
	}
	bodies := make([][]byte, 4096)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range bodies {
		bodies[i] = fmt.Appendf(nil, `{"feature_service": %q, "entities": {%q: %d}}`, *service, *key, rng.IntN(n))
	}
	const path = "/v1/features/online"
	if err := c.do("POST", path, json.RawMessage(bodies[0]), nil); err != nil {
		return fail(fmt.Errorf("trial lookup: %w", err))
	}
	conns := make([]*benchConn, *conc)
	for i := range conns {
		bc, err := newBenchConn(strings.TrimSpace(addrs[i%len(addrs)]), cf.token)
		if err != nil {
			return fail(err)
		}
		conns[i] = bc
		defer bc.close()
	}
	lookup := func(worker, i int) error {
		status, err := conns[worker].do("POST", path, bodies[i%len(bodies)])
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("HTTP %d", status)
		}
		return err
	}
	counter := make([]int, *conc)
	closed := benchLoop(*conc, *dur, func(w int, _ []byte) error {
		counter[w]++
		return lookup(w, counter[w]*(*conc)+w)
	}, 0)
	rate := closed.OpsPerSec * *load
	open := openLoop(*conc, *dur, rate, lookup)
	if cf.format == "json" {
		printJSON(map[string]any{"closed_loop": closed, "open_loop": open, "rate": rate})
		return 0
	}
	printTable([]string{"PHASE", "OPS", "OPS/S", "P50_MS", "P90_MS", "P99_MS", "P99.9_MS", "ERRORS"}, [][]string{
		{"closed loop (max)", fmt.Sprint(closed.Ops), fmt.Sprintf("%.1f", closed.OpsPerSec), fmt.Sprintf("%.2f", closed.P50MS), "", fmt.Sprintf("%.2f", closed.P99MS), "", fmt.Sprint(closed.Errors)},
		{fmt.Sprintf("open loop (%.0f%%)", *load*100), fmt.Sprint(open.Ops), fmt.Sprintf("%.1f", open.OpsPerSec), fmt.Sprintf("%.3f", open.P50MS), fmt.Sprintf("%.3f", open.P90MS), fmt.Sprintf("%.3f", open.P99MS), fmt.Sprintf("%.3f", open.P999MS), fmt.Sprint(open.Errors)},
	})
	return 0
}

// openResult is an open-loop run: latencies from each request's scheduled
// send time.
type openResult struct {
	Ops       int64   `json:"ops"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50MS     float64 `json:"p50_ms"`
	P90MS     float64 `json:"p90_ms"`
	P99MS     float64 `json:"p99_ms"`
	P999MS    float64 `json:"p999_ms"`
	Errors    int64   `json:"errors"`
}

// openLoop sends requests at rate per second for d, each at its scheduled
// time on the first free connection of conc, and measures each from its
// scheduled time: a request that waited for a connection counts the wait.
func openLoop(conc int, d time.Duration, rate float64, op func(worker, i int) error) openResult {
	total := int(rate * d.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	work := make(chan int, total)
	lat := make([]time.Duration, total)
	failed := make([]bool, total)
	start := time.Now().Add(10 * time.Millisecond)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				at := start.Add(time.Duration(i) * interval)
				if wait := time.Until(at); wait > 0 {
					time.Sleep(wait)
				}
				failed[i] = op(w, i) != nil
				lat[i] = time.Since(at)
			}
		}()
	}
	for i := range total {
		work <- i
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	var ok []time.Duration
	var errs int64
	for i, l := range lat {
		if failed[i] {
			errs++
			continue
		}
		ok = append(ok, l)
	}
	slices.Sort(ok)
	return openResult{
		Ops: int64(len(ok)), OpsPerSec: float64(len(ok)) / elapsed.Seconds(),
		P50MS: percentileMS(ok, 0.5), P90MS: percentileMS(ok, 0.9), P99MS: percentileMS(ok, 0.99), P999MS: percentileMS(ok, 0.999),
		Errors: errs,
	}
}

// setupFeatureBench declares the bench's source, entity, view and
// service, and pushes n entities with two rows each.
func setupFeatureBench(c *client, n int) error {
	var schema, feats []string
	for i := range 10 {
		schema = append(schema, fmt.Sprintf(`"f%d": "float"`, i))
		feats = append(feats, fmt.Sprintf(`{"name": "f%d"}`, i))
	}
	for _, s := range []struct{ method, path, body string }{
		{"POST", "/v1/sources", `{"name": "bench_events", "kind": "push", "schema": {"user_id": "int", "ts": "timestamp", ` + strings.Join(schema, ", ") + `}}`},
		{"PUT", "/v1/entities/user", `{"join_keys": ["user_id"]}`},
		{"PUT", "/v1/feature-views/bench_stats", `{"entity": "user", "source": "bench_events", "timestamp_column": "ts", "features": [` + strings.Join(feats, ", ") + `]}`},
		{"PUT", "/v1/feature-services/bench", `{"features": ["bench_stats:*"]}`},
	} {
		if err := c.do(s.method, s.path, json.RawMessage(s.body), nil); err != nil {
			return fmt.Errorf("%s %s: %w", s.method, s.path, err)
		}
	}
	rng := rand.New(rand.NewPCG(2, 2))
	now := time.Now().UTC().Truncate(time.Second)
	var body bytes.Buffer
	push := func() error {
		if body.Len() == 0 {
			return nil
		}
		resp, err := c.raw("POST", "/v1/sources/bench_events/records", bytes.NewReader(body.Bytes()))
		body.Reset()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return err
	}
	for h := range 2 {
		ts := now.Add(time.Duration(h-2) * time.Hour).Format(time.RFC3339)
		for u := range n {
			fmt.Fprintf(&body, `{"user_id": %d, "ts": %q`, u, ts)
			for i := range 10 {
				fmt.Fprintf(&body, `, "f%d": %.3f`, i, rng.Float64()*100)
			}
			body.WriteString("}\n")
			if body.Len() > 4<<20 {
				if err := push(); err != nil {
					return err
				}
			}
		}
	}
	return push()
}
