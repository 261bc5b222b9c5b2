package node

import (
	"context"
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kilnml/kiln/node/inferencepb"
)

// grpcClient dials the node's gRPC port with a client generated from the
// same proto.
func grpcClient(t testing.TB, a *Agent) inferencepb.GRPCInferenceServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return inferencepb.NewGRPCInferenceServiceClient(conn)
}

func withGRPCPort0(c *Config) { c.GRPCPort = 0 }

func rawFloats(b []byte) []float64 {
	out := make([]float64, len(b)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out
}

func wantCode(t *testing.T, what string, err error, code codes.Code, text string) {
	t.Helper()
	if s, _ := status.FromError(err); s.Code() != code || !strings.Contains(s.Message(), text) {
		t.Errorf("%s: %v, want %s with %q", what, err, code, text)
	}
}

func TestGRPC_Inference(t *testing.T) {
	a := testNode(t, withGRPCPort0)
	waitLeader(t, a)
	createModel(t, a, "iris")
	uploadOK(t, a, "iris", "", readTestdata(t, linearIrisFile))
	deployAndWait(t, a, "iris")
	c := grpcClient(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if r, err := c.ServerLive(ctx, &inferencepb.ServerLiveRequest{}); err != nil || !r.Live {
		t.Fatalf("ServerLive = %v, %v", r, err)
	}
	if r, err := c.ServerReady(ctx, &inferencepb.ServerReadyRequest{}); err != nil || !r.Ready {
		t.Fatalf("ServerReady = %v, %v", r, err)
	}
	if r, err := c.ServerMetadata(ctx, &inferencepb.ServerMetadataRequest{}); err != nil || r.Name != "kiln" || r.Version != Version {
		t.Fatalf("ServerMetadata = %v, %v", r, err)
	}
	if r, err := c.ModelReady(ctx, &inferencepb.ModelReadyRequest{Name: "iris"}); err != nil || !r.Ready {
		t.Fatalf("ModelReady = %v, %v", r, err)
	}
	_, err := c.ModelReady(ctx, &inferencepb.ModelReadyRequest{Name: "iris", Version: "9"})
	wantCode(t, "ModelReady of version 9", err, codes.NotFound, "9")
	meta, err := c.ModelMetadata(ctx, &inferencepb.ModelMetadataRequest{Name: "iris"})
	if err != nil || len(meta.Inputs) != 1 || meta.Inputs[0].Name != "input" || len(meta.Outputs) != 1 || len(meta.Versions) != 1 {
		t.Fatalf("ModelMetadata = %v, %v", meta, err)
	}

	// The same rows over REST are the reference.
	rows := [][]float64{{5.1, 3.5, 1.4, 0.2}, {6.7, 3.0, 5.2, 2.3}}
	ref := inferJSON(t, a, "/v2/models/iris/infer", `{"inputs":[{"name":"input","shape":[2,4],"datatype":"FP64","data":[5.1,3.5,1.4,0.2,6.7,3.0,5.2,2.3]}]}`).outputs["output"]
	flat := append(append([]float64(nil), rows[0]...), rows[1]...)
	raw := le("FP64", flat...)
	in := &inferencepb.ModelInferRequest_InferInputTensor{Name: "input", Datatype: "FP64", Shape: []int64{2, 4}}
	resp, err := c.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "iris", Id: "g1", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{in}, RawInputContents: [][]byte{raw}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Id != "g1" || resp.ModelVersion != "1" || len(resp.Outputs) != 1 || len(resp.RawOutputContents) != 1 || resp.Outputs[0].Datatype != "FP64" {
		t.Fatalf("ModelInfer = %v", resp)
	}
	closeTo(t, "raw", rawFloats(resp.RawOutputContents[0]), ref)

	// Typed contents, and INT64 rows (as integers), and an output chosen.
	typed := &inferencepb.ModelInferRequest_InferInputTensor{Name: "input", Datatype: "FP64", Shape: []int64{2, 4},
		Contents: &inferencepb.InferTensorContents{Fp64Contents: flat}}
	resp, err = c.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "iris", ModelVersion: "1", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{typed},
		Outputs: []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: "output"}}})
	if err != nil {
		t.Fatal(err)
	}
	closeTo(t, "contents", rawFloats(resp.RawOutputContents[0]), ref)
	ints := &inferencepb.ModelInferRequest_InferInputTensor{Name: "input", Datatype: "INT64", Shape: []int64{1, 4},
		Contents: &inferencepb.InferTensorContents{Int64Contents: []int64{5, 3, 1, 0}}}
	refInt := inferJSON(t, a, "/v2/models/iris/infer", `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","data":[5,3,1,0]}]}`).outputs["output"]
	resp, err = c.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "iris", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{ints}})
	if err != nil {
		t.Fatal(err)
	}
	closeTo(t, "INT64 contents", rawFloats(resp.RawOutputContents[0]), refInt)

	for _, tc := range []struct {
		name string
		req  *inferencepb.ModelInferRequest
		code codes.Code
		text string
	}{
		{"raw shorter than the shape", &inferencepb.ModelInferRequest{ModelName: "iris", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{in}, RawInputContents: [][]byte{raw[:40]}},
			codes.InvalidArgument, `inputs[0] (input "input"): shape [2 4] of FP64 needs 64 bytes`},
		{"a raw entry per input", &inferencepb.ModelInferRequest{ModelName: "iris", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{in}, RawInputContents: [][]byte{raw, raw}},
			codes.InvalidArgument, "raw_input_contents has 2 entries for 1 inputs"},
		{"contents short of the shape", &inferencepb.ModelInferRequest{ModelName: "iris", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP64", Shape: []int64{2, 4}, Contents: &inferencepb.InferTensorContents{Fp64Contents: flat[:4]}}}},
			codes.InvalidArgument, "needs 8 values"},
		{"an output the model lacks", &inferencepb.ModelInferRequest{ModelName: "iris", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{in}, RawInputContents: [][]byte{raw},
			Outputs: []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: "probs"}}}, codes.InvalidArgument, `"probs" is not an output`},
		{"an unknown model", &inferencepb.ModelInferRequest{ModelName: "nope", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{in}, RawInputContents: [][]byte{raw}}, codes.NotFound, "nope"},
		{"no inputs", &inferencepb.ModelInferRequest{ModelName: "iris"}, codes.InvalidArgument, "inputs is empty"},
		{"a negative dimension", &inferencepb.ModelInferRequest{ModelName: "iris", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP64", Shape: []int64{-1, 4}}}, RawInputContents: [][]byte{raw}},
			codes.InvalidArgument, "negative"},
	} {
		_, err := c.ModelInfer(ctx, tc.req)
		wantCode(t, tc.name, err, tc.code, tc.text)
	}
	// Predictions over gRPC count in the model's metrics like any other.
	r := call(t, a, "GET", "/v1/models/iris/metrics?scope=local", "")
	if v := r.body["versions"].([]any)[0].(map[string]any); v["requests"].(float64) < 5 || v["errors"].(float64) < 3 {
		t.Errorf("metrics after gRPC calls: %v", v)
	}
}

func TestGRPC_ACL(t *testing.T) {
	a, mgmt := aclSetup(t, withGRPCPort0)
	mustStatus(t, callAs(t, a, mgmt, "POST", "/v1/models", `{"name":"iris"}`), 201, "create")
	c := grpcClient(t, a)
	serving := tokenFor(t, a, mgmt, "serving", `predict "iris" { policy = "allow" }`)
	other := tokenFor(t, a, mgmt, "other", `predict "wine" { policy = "allow" }`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	as := func(tok, key string) context.Context {
		if tok == "" {
			return ctx
		}
		return metadata.AppendToOutgoingContext(ctx, key, tok)
	}
	_, err := c.ServerLive(ctx, &inferencepb.ServerLiveRequest{})
	wantCode(t, "no token", err, codes.Unauthenticated, "")
	if _, err := c.ServerLive(as(other, "x-kiln-token"), &inferencepb.ServerLiveRequest{}); err != nil {
		t.Errorf("live with a token: %v", err)
	}
	_, err = c.ModelMetadata(as(other, "x-kiln-token"), &inferencepb.ModelMetadataRequest{Name: "iris"})
	wantCode(t, "another model's token", err, codes.PermissionDenied, `predict "iris"`)
	// A model that is not deployed: the token passed, and it is not ready.
	if r, err := c.ModelReady(as("Bearer "+serving, "authorization"), &inferencepb.ModelReadyRequest{Name: "iris"}); err != nil || r.Ready {
		t.Errorf("ModelReady with a bearer token = %v, %v; want not ready", r, err)
	}
	_, err = c.ModelInfer(as(serving, "x-kiln-token"), &inferencepb.ModelInferRequest{ModelName: "iris", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP64", Shape: []int64{1}}}})
	wantCode(t, "infer of an undeployed model", err, codes.FailedPrecondition, "")
}
