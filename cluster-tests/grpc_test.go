package clustertest

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/node/inferencepb"
)

// TestCluster_GRPCThroughANodeWithoutAReplica: ModelInfer over gRPC, sent
// to a node that holds no replica of the model, is routed to the one that
// does and answers what the model answers; a raw input whose length is not
// its shape's is InvalidArgument naming the input.
func TestCluster_GRPCThroughANodeWithoutAReplica(t *testing.T) {
	c := newCluster(t, 3)
	n1 := c.all()[0]
	c.waitVoters(3, 30*time.Second)
	n1.createModel("multiclass", nil)
	n1.push("multiclass", filepath.Join(testdataDir, "lightgbm/lgmulticlass.model"), "")
	n1.write("PUT", "/v1/deployments/multiclass", map[string]any{"versions": []map[string]any{{"version": 1, "weight": 100}}, "replicas": 1}, http.StatusOK)
	d := c.waitRunning(n1, "multiclass", 1, 1)
	holder := d.ReplicaStates[0].NodeID
	var via *node
	for _, nd := range c.all() {
		if nd.id != holder {
			via = nd
		}
	}
	conn, err := grpc.NewClient(net.JoinHostPort(via.ip, "7073"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := inferencepb.NewGRPCInferenceServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The node applies the replica's start a moment after the leader
	// saw it; ModelReady says when it routes there.
	testutil.WaitFor(t, 20*time.Second, func() error {
		r, err := client.ModelReady(ctx, &inferencepb.ModelReadyRequest{Name: "multiclass"})
		if err != nil || !r.Ready {
			return fmt.Errorf("ModelReady through %s: %v, %v", via.name, r, err)
		}
		return nil
	})
	rows, want := lightgbmCases(t, 8)
	var raw []byte
	for _, r := range rows {
		for _, x := range r {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(float32(x)))
		}
	}
	in := &inferencepb.ModelInferRequest_InferInputTensor{Name: "input", Datatype: "FP32", Shape: []int64{int64(len(rows)), int64(len(rows[0]))}}
	resp, err := client.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "multiclass", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{in}, RawInputContents: [][]byte{raw}})
	if err != nil {
		t.Fatalf("ModelInfer through %s (the replica is on %s): %v", via.name, holder, err)
	}
	if len(resp.RawOutputContents) != 1 || len(resp.Outputs) != 1 {
		t.Fatalf("answer %v", resp)
	}
	out := resp.RawOutputContents[0]
	k := len(want[0])
	if resp.Outputs[0].Datatype != "FP64" || len(out) != 8*len(rows)*k {
		t.Fatalf("output %v of %d bytes, want FP64 [%d, %d]", resp.Outputs[0], len(out), len(rows), k)
	}
	for i := range rows {
		for j := range k {
			got := math.Float64frombits(binary.LittleEndian.Uint64(out[8*(i*k+j):]))
			// float32 inputs: the tree walks the same branches unless a value
			// sits on a threshold, which the test rows do not.
			if math.Abs(got-want[i][j]) > 1e-6 {
				t.Fatalf("row %d class %d: %v, want %v", i, j, got, want[i][j])
			}
		}
	}
	_, err = client.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "multiclass", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{in}, RawInputContents: [][]byte{raw[:len(raw)-4]}})
	if s, _ := status.FromError(err); s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), `input "input"`) {
		t.Fatalf("short raw input: %v, want InvalidArgument naming the input", err)
	}
}
