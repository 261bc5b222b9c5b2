package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchFeatureNode is a node with a push source of ten features for
// `entities` users, each with `perEntity` values an hour apart.
func benchFeatureNode(b *testing.B, entities, perEntity int) *Agent {
	b.Helper()
	a := testNode(b)
	waitLeader(b, a)
	var schema, feats []string
	for i := range 10 {
		schema = append(schema, fmt.Sprintf(`"f%d": "float"`, i))
		feats = append(feats, fmt.Sprintf(`{"name": "f%d"}`, i))
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/sources", `{"name": "events", "kind": "push", "schema": {"user_id": "int", "ts": "timestamp", ` + strings.Join(schema, ", ") + `}}`},
		{"PUT", "/v1/entities/user", `{"join_keys": ["user_id"]}`},
		{"PUT", "/v1/feature-views/stats", `{"entity": "user", "source": "events", "timestamp_column": "ts", "features": [` + strings.Join(feats, ", ") + `]}`},
		{"PUT", "/v1/feature-services/model", `{"features": ["stats:*"]}`},
	} {
		if res := call(b, a, c.method, c.path, c.body); res.status != http.StatusOK {
			b.Fatalf("%s %s = %d %s", c.method, c.path, res.status, res.raw)
		}
	}
	base := time.Now().Add(-time.Duration(perEntity) * time.Hour).Truncate(time.Second)
	var body bytes.Buffer
	rng := rand.New(rand.NewPCG(1, 2))
	flush := func() {
		res, err := http.Post("http://"+a.HTTPAddr()+"/v1/sources/events/records", "application/x-ndjson", &body)
		if err != nil {
			b.Fatal(err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			b.Fatalf("push = %d %s", res.StatusCode, raw)
		}
		body.Reset()
	}
	for h := range perEntity {
		ts := base.Add(time.Duration(h) * time.Hour).UTC().Format(time.RFC3339)
		for u := range entities {
			fmt.Fprintf(&body, `{"user_id": %d, "ts": %q`, u, ts)
			for i := range 10 {
				fmt.Fprintf(&body, `, "f%d": %.3f`, i, rng.Float64()*100)
			}
			body.WriteString("}\n")
			if body.Len() > 4<<20 {
				flush()
			}
		}
	}
	if body.Len() > 0 {
		flush()
	}
	return a
}

// BenchmarkFeaturesOnline measures an online lookup of 10 features for
// one entity over HTTP, as a client sees it: first the node's maximum
// rate with 32 clients in a closed loop, then latency quantiles with
// requests sent at half that rate (open loop, so a slow answer does not
// hold back the next request).
func BenchmarkFeaturesOnline(b *testing.B) {
	const entities = 100_000
	a := benchFeatureNode(b, entities, 2)
	url := "http://" + a.HTTPAddr() + "/v1/features/online"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
	lookup := func(rng *rand.Rand) (time.Duration, error) {
		body := fmt.Sprintf(`{"feature_service": "model", "entities": {"user_id": %d}}`, rng.IntN(entities))
		start := time.Now()
		res, err := client.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		d := time.Since(start)
		if res.StatusCode != http.StatusOK || bytes.Contains(raw, []byte(`"missing":1`)) {
			return 0, fmt.Errorf("lookup = %d %s", res.StatusCode, raw)
		}
		return d, nil
	}
	for b.Loop() {
		// Maximum rate: 32 clients, 3 seconds.
		var done atomic.Int64
		var failed atomic.Value
		stop := time.Now().Add(3 * time.Second)
		var wg sync.WaitGroup
		for w := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(w), 9))
				for time.Now().Before(stop) {
					if _, err := lookup(rng); err != nil {
						failed.Store(err)
						return
					}
					done.Add(1)
				}
			}()
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
		maxRate := float64(done.Load()) / 3
		// Half of it, open loop, 5 seconds.
		rate := maxRate / 2
		n := int(rate * 5)
		lat := make([]time.Duration, n)
		interval := time.Duration(float64(time.Second) / rate)
		start := time.Now()
		for i := range n {
			time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := lookup(rand.New(rand.NewPCG(uint64(i), 5)))
				if err != nil {
					failed.Store(err)
				}
				lat[i] = d
			}()
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
		slices.Sort(lat)
		b.ReportMetric(maxRate, "max-req/s")
		b.ReportMetric(rate, "req/s")
		b.ReportMetric(float64(lat[n/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[n*90/100].Microseconds())/1000, "p90-ms")
		b.ReportMetric(float64(lat[n*99/100].Microseconds())/1000, "p99-ms")
	}
}

// BenchmarkFeaturesHistorical measures a point-in-time frame of 100,000
// entity rows by 10 features over HTTP, the rows inline in the request.
func BenchmarkFeaturesHistorical(b *testing.B) {
	const entities, rows = 50_000, 100_000
	a := benchFeatureNode(b, entities, 4)
	base := time.Now().Add(-4 * time.Hour)
	rng := rand.New(rand.NewPCG(3, 4))
	entityRows := make([]map[string]any, rows)
	for i := range entityRows {
		entityRows[i] = map[string]any{"user_id": rng.IntN(entities), "ts": base.Add(time.Duration(rng.Int64N(int64(5 * time.Hour)))).UTC().Format(time.RFC3339Nano)}
	}
	req, err := json.Marshal(map[string]any{"feature_service": "model", "entity_rows": entityRows})
	if err != nil {
		b.Fatal(err)
	}
	url := "http://" + a.HTTPAddr() + "/v1/features/historical"
	var total time.Duration
	n := 0
	for b.Loop() {
		// Timed: the request sent and the whole answer received; then
		// checked, untimed (decoding a million values into maps here is
		// the client's cost, not the frame's).
		start := time.Now()
		res, err := http.Post(url, "application/json", bytes.NewReader(req))
		if err != nil {
			b.Fatal(err)
		}
		raw, err := io.ReadAll(res.Body)
		res.Body.Close()
		total += time.Since(start)
		n++
		var out struct {
			Rows []struct {
				Values map[string]any `json:"values"`
			} `json:"rows"`
		}
		if err == nil {
			err = json.Unmarshal(raw, &out)
		}
		if err != nil || res.StatusCode != http.StatusOK || len(out.Rows) != rows || len(out.Rows[0].Values) != 10 {
			b.Fatalf("historical = %d, %d rows, %v", res.StatusCode, len(out.Rows), err)
		}
	}
	b.ReportMetric(total.Seconds()/float64(n), "s/frame")
	b.ReportMetric(float64(rows), "rows/frame")
}
