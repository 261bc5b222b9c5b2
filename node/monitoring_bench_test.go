package node

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/node/internal/predlog"
)

// BenchmarkPredictLogging measures what the prediction log costs serving:
// the same node answers :predict of one iris row over keep-alive HTTP from
// eight clients, with monitoring.sample_rate 0 (no log) and 1 (every
// request logged). Compare the req/s and cpu-µs/req of the two.
//
//	go test ./node -run x -bench PredictLogging -benchtime 20000x
func BenchmarkPredictLogging(b *testing.B) {
	for _, rate := range []float64{0, 1} {
		b.Run(fmt.Sprintf("sample_rate=%g", rate), func(b *testing.B) {
			a := servedIris(b, func(c *Config) { c.Monitoring.SampleRate = rate })
			url := "http://" + a.HTTPAddr() + "/v1/models/iris:predict"
			postLoad(b, url, 8, func(i int64) string {
				return fmt.Sprintf(`{"id":"b%d","instances":[[5.1,3.5,1.4,0.2]]}`, i)
			})
			a.monitoring.log.Sync()
			if rate == 1 && a.monitoring.log.Written()+a.monitoring.log.Dropped() < uint64(b.N) {
				b.Errorf("logged %d and dropped %d of %d requests", a.monitoring.log.Written(), a.monitoring.log.Dropped(), b.N)
			}
			b.ReportMetric(float64(a.monitoring.log.Dropped()), "dropped")
		})
	}
}

// BenchmarkDriftCheck_1Mx20 times a drift check of 1,000,000 logged rows of
// 20 features (and one output) against a reference of 100,000 rows: the
// window read from the log, 20 KS tests and the prediction's. The first
// check of a reference on a node also fetches and sorts its sample and
// scores it (cold-ref-s); later checks reuse them, as scheduled checks do.
//
//	go test ./node -run x -bench DriftCheck_1Mx20 -benchtime 3x
func BenchmarkDriftCheck_1Mx20(b *testing.B) {
	const features, refRows, logRows = 20, 100_000, 1_000_000
	a := testNode(b)
	waitLeader(b, a)
	rng := rand.New(rand.NewPCG(3, 4))
	var csv bytes.Buffer
	names := make([]string, features)
	for j := range names {
		names[j] = fmt.Sprintf("f%d", j)
	}
	csv.WriteString(strings.Join(names, ",") + "\n")
	for range refRows {
		for j := range features {
			if j > 0 {
				csv.WriteByte(',')
			}
			fmt.Fprintf(&csv, "%.4f", rng.NormFloat64())
		}
		csv.WriteByte('\n')
	}
	if r := pushDataset(b, a, "ref", "", csv.Bytes()); r.status != 201 {
		b.Fatalf("dataset: %d %s", r.status, r.raw)
	}
	weights := make([]string, features)
	for j := range weights {
		weights[j] = fmt.Sprintf("%g", 1/float64(j+1))
	}
	model := fmt.Sprintf(`{"format":"kiln-linear","version":1,"kind":"linear","n_features":%d,"feature_names":["%s"],"layers":[{"weights":[[%s]],"bias":[0]}]}`,
		features, strings.Join(names, `","`), strings.Join(weights, ","))
	createModel(b, a, "wide")
	uploadOK(b, a, "wide", "", []byte(model))
	deployAndWait(b, a, "wide")
	if r := call(b, a, "PUT", "/v1/monitors/wide", `{"reference_dataset":"ref:1","window":"1h"}`); r.status != 200 {
		b.Fatalf("monitor: %d %s", r.status, r.raw)
	}
	start := time.Now().Add(-30 * time.Minute)
	for i := range logRows {
		x := make([]float64, features)
		for j := range x {
			x[j] = rng.NormFloat64() + 0.02
		}
		rec := predlog.Record{ID: fmt.Sprintf("w%d", i), At: start.Add(time.Duration(i) * time.Microsecond), Deployment: "wide", Version: 1,
			Inputs: []ml.Tensor{{Name: "input", Shape: []int{1, features}, Data: x}}, Outputs: []ml.Tensor{{Name: "output", Shape: []int{1}, Data: []float64{x[0]}}}}
		for !a.monitoring.log.Append(&rec) {
			a.monitoring.log.Sync()
		}
	}
	a.monitoring.log.Sync()
	txn := a.fsm.ReadTxn()
	m, err := txn.Monitor("wide")
	txn.Discard()
	if err != nil {
		b.Fatal(err)
	}
	c, err := a.driftCheck(context.Background(), m, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	if c.Samples != logRows || len(c.Features) != features || c.Prediction == nil || c.Prediction.Error != "" {
		b.Fatalf("check: %d samples, %d features, prediction %+v, skipped %q", c.Samples, len(c.Features), c.Prediction, c.Skipped)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := a.driftCheck(context.Background(), m, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	// The share of a check that is reading the window from the log.
	w := time.Now()
	if _, err := a.monitoring.log.Window("wide", start, time.Now(), 2_000_000); err != nil {
		b.Fatal(err)
	}
	windowSecs := time.Since(w).Seconds()
	// A check whose reference this node has not read yet: the sample
	// fetched, decoded, sorted and scored.
	a.references = referenceCache{}
	cold := time.Now()
	if _, err := a.driftCheck(context.Background(), m, time.Now()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(time.Since(cold).Seconds(), "cold-ref-s")
	b.ReportMetric(windowSecs, "window-read-s")
}
