package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/node/inferencepb"
)

// BenchmarkInferBatch64 compares the two forms of v2 inference on the same
// node and model (LightGBM multiclass, 28 features): a batch of 64 rows as
// REST JSON, and as gRPC ModelInfer with raw_input_contents, from 8
// clients. Compare the rows/s.
//
//	go test ./node -run x -bench InferBatch64 -benchtime 3000x
func BenchmarkInferBatch64(b *testing.B) {
	a := testNode(b, func(c *Config) { c.GRPCPort = 0 })
	waitLeader(b, a)
	createModel(b, a, "m")
	uploadOK(b, a, "m", "", readTestdata(b, lgMulticlassFile))
	deployAndWait(b, a, "m")
	const rows, cols = 64, 28
	data := make([]float64, rows*cols)
	for i := range data {
		data[i] = float64(i%97) / 10
	}
	vals := make([]string, len(data))
	for i, x := range data {
		vals[i] = fmt.Sprint(x)
	}
	jsonBody := fmt.Sprintf(`{"inputs":[{"name":"input","shape":[%d,%d],"datatype":"FP64","data":[%s]}]}`, rows, cols, strings.Join(vals, ","))
	raw := le("FP64", data...)

	b.Run("rest-json", func(b *testing.B) {
		rps := postLoad(b, "http://"+a.HTTPAddr()+"/v2/models/m/infer", 8, func(int64) string { return jsonBody })
		b.ReportMetric(rps*rows, "rows/s")
	})
	b.Run("grpc-raw", func(b *testing.B) {
		client := grpcClient(b, a)
		req := &inferencepb.ModelInferRequest{ModelName: "m",
			Inputs:           []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP64", Shape: []int64{rows, cols}}},
			RawInputContents: [][]byte{raw}}
		b.SetParallelism(4)
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := client.ModelInfer(context.Background(), req); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N*rows)/time.Since(start).Seconds(), "rows/s")
	})
}
