package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kilnml/kiln/actors/serving"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/node/inferencepb"
	"github.com/kilnml/kiln/node/internal/acl"
	"github.com/kilnml/kiln/node/internal/tensorjson"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// The Open Inference Protocol v2 over gRPC (inference.GRPCInferenceService,
// node/inferencepb), on ports { grpc }: the same models, routing,
// forwarding to replicas on other nodes, metrics, prediction log, access
// checks and TLS as the HTTP API. The token is the metadata x-kiln-token,
// or authorization: Bearer <token>.

// startGRPC listens on the HTTP address's host at ports.grpc (unless it is
// -1) and serves until Shutdown.
func (a *Agent) startGRPC() error {
	if a.cfg.GRPCPort < 0 {
		return nil
	}
	host, _, err := net.SplitHostPort(a.cfg.httpListenAddr())
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(a.cfg.GRPCPort)))
	if err != nil {
		return fmt.Errorf("node: grpc listen: %w", err)
	}
	opts := []grpc.ServerOption{
		grpc.UnaryInterceptor(a.grpcGuard),
		grpc.MaxRecvMsgSize(int(min(a.cfg.MaxBodyBytes, math.MaxInt32))),
	}
	if a.cfg.HTTPTLS != nil {
		var tcfg *tls.Config
		if tcfg, err = loadHTTPTLS(a.cfg.HTTPTLS); err != nil {
			ln.Close()
			return err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tcfg)))
	}
	a.grpc = grpc.NewServer(opts...)
	a.grpcLn = ln
	inferencepb.RegisterGRPCInferenceServiceServer(a.grpc, &grpcInference{a: a})
	a.goFunc(func() {
		if err := a.grpc.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			a.logger.Error("grpc server stopped", "error", err)
		}
	})
	return nil
}

// GRPCAddr is the address the gRPC server listens on ("" when it is off).
func (a *Agent) GRPCAddr() string {
	if a.grpcLn == nil {
		return ""
	}
	return a.grpcLn.Addr().String()
}

// stopGRPC lets the calls under way finish, for up to 5 s.
func (a *Agent) stopGRPC() {
	if a.grpc == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		a.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		a.grpc.Stop()
	}
}

// grpcModel is what a call names: the model of the model RPCs, "" for the
// server RPCs.
type grpcModel interface{ GetName() string }

// grpcGuard checks the call's token as the HTTP routes do: any valid token
// for the server RPCs, predict on the model for the model RPCs.
func (a *Agent) grpcGuard(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if a.acl == nil {
		return handler(ctx, req)
	}
	id, err := a.acl.Resolve(grpcToken(ctx))
	if err != nil {
		return nil, grpcError(err)
	}
	model := ""
	switch r := req.(type) {
	case *inferencepb.ModelInferRequest:
		model = r.GetModelName()
	case grpcModel:
		model = r.GetName()
	}
	if model != "" && !id.Allowed(structs.KindPredict, model, structs.AccessAllow) {
		return nil, grpcError(acl.Denied(structs.KindPredict, model, structs.AccessAllow))
	}
	return handler(acl.WithIdentity(ctx, id), req)
}

// grpcToken reads the token from the call's metadata.
func grpcToken(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-kiln-token"); len(v) > 0 {
		return v[0]
	}
	if v := md.Get("authorization"); len(v) > 0 && len(v[0]) > 7 && strings.EqualFold(v[0][:7], "bearer ") {
		return strings.TrimSpace(v[0][7:])
	}
	return ""
}

// grpcError maps Kiln's error codes onto gRPC's.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	c := codes.Internal
	switch {
	case errors.Is(err, transport.ErrUnreachable) || errors.Is(err, transport.ErrConnLost):
		c = codes.Unavailable
	case errors.Is(err, context.DeadlineExceeded):
		c = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		c = codes.Canceled
	default:
		switch structs.ErrorCode(err) {
		case structs.CodeInvalid, structs.CodeTooLarge:
			c = codes.InvalidArgument
		case structs.CodeNotFound:
			c = codes.NotFound
		case structs.CodeNotDeployed, structs.CodeConflict:
			c = codes.FailedPrecondition
		case structs.CodeUnavailable, structs.CodeNoLeader:
			c = codes.Unavailable
		case structs.CodeOverloaded, serving.CodeBusy:
			c = codes.ResourceExhausted
		case structs.CodePermissionDenied:
			c = codes.PermissionDenied
		case structs.CodeUnauthenticated:
			c = codes.Unauthenticated
		}
	}
	var ce *structs.CodedError
	msg := err.Error()
	if errors.As(err, &ce) {
		msg = ce.Message
	}
	return status.Error(c, msg)
}

// grpcInference serves inference.GRPCInferenceService.
type grpcInference struct {
	inferencepb.UnimplementedGRPCInferenceServiceServer
	a *Agent
}

func (g *grpcInference) ServerLive(context.Context, *inferencepb.ServerLiveRequest) (*inferencepb.ServerLiveResponse, error) {
	return &inferencepb.ServerLiveResponse{Live: true}, nil
}

func (g *grpcInference) ServerReady(context.Context, *inferencepb.ServerReadyRequest) (*inferencepb.ServerReadyResponse, error) {
	addr, _ := g.a.raft.LeaderWithID()
	return &inferencepb.ServerReadyResponse{Ready: addr != ""}, nil
}

func (g *grpcInference) ServerMetadata(context.Context, *inferencepb.ServerMetadataRequest) (*inferencepb.ServerMetadataResponse, error) {
	return &inferencepb.ServerMetadataResponse{Name: "kiln", Version: Version, Extensions: nil}, nil
}

// grpcVersion reads a request's version: "" is the deployment's traffic.
func grpcVersion(name, s string) (uint64, error) {
	if err := structs.ValidateName("name", name); err != nil {
		return 0, err
	}
	if s == "" {
		return 0, nil
	}
	return parseVersionNumber("version", s)
}

func (g *grpcInference) ModelReady(_ context.Context, req *inferencepb.ModelReadyRequest) (*inferencepb.ModelReadyResponse, error) {
	version, err := grpcVersion(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, grpcError(err)
	}
	ready, err := g.a.v2ModelReady(req.GetName(), version)
	if err != nil {
		return nil, grpcError(err)
	}
	return &inferencepb.ModelReadyResponse{Ready: ready}, nil
}

func (g *grpcInference) ModelMetadata(_ context.Context, req *inferencepb.ModelMetadataRequest) (*inferencepb.ModelMetadataResponse, error) {
	version, err := grpcVersion(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, grpcError(err)
	}
	m, err := g.a.v2ModelMetadata(req.GetName(), version)
	if err != nil {
		return nil, grpcError(err)
	}
	tensors := func(ts []v2TensorMeta) []*inferencepb.ModelMetadataResponse_TensorMetadata {
		out := make([]*inferencepb.ModelMetadataResponse_TensorMetadata, len(ts))
		for i, t := range ts {
			out[i] = &inferencepb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: int64s(t.Shape)}
		}
		return out
	}
	return &inferencepb.ModelMetadataResponse{Name: m.Name, Versions: m.Versions, Platform: m.Platform,
		Inputs: tensors(m.Inputs), Outputs: tensors(m.Outputs)}, nil
}

func int64s(v []int) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out
}

// ModelInfer scores a request through the router, as HTTP's infer does.
// Inputs come as raw_input_contents (one entry per input, the binary
// tensor form) or as typed contents; outputs go back as
// raw_output_contents, as Triton answers.
func (g *grpcInference) ModelInfer(ctx context.Context, req *inferencepb.ModelInferRequest) (*inferencepb.ModelInferResponse, error) {
	a := g.a
	name := req.GetModelName()
	version, err := grpcVersion(name, req.GetModelVersion())
	if err != nil {
		return nil, grpcError(err)
	}
	if len(req.GetInputs()) == 0 {
		return nil, grpcError(structs.Errorf(structs.CodeInvalid, "inputs is empty"))
	}
	target, err := a.serving.router.Resolve(name, serving.Selector{Version: version})
	if err != nil {
		return nil, grpcError(err)
	}
	schema := &target.Version.Schema
	inputs, err := grpcInputs(req, schema)
	if err == nil {
		err = grpcCheckOutputs(req, schema)
	}
	if err != nil {
		a.serving.metrics.Refused(target.Deployment.Name, target.Version.Version, err)
		return nil, grpcError(err)
	}
	id := req.GetId()
	if id == "" {
		id = structs.NewID(time.Now())
	}
	out, err := a.infer(ctx, id, target, inputs)
	if err != nil {
		return nil, grpcError(err)
	}
	resp := &inferencepb.ModelInferResponse{ModelName: name, ModelVersion: strconv.FormatUint(target.Version.Version, 10), Id: id}
	picked := out
	if len(req.GetOutputs()) > 0 {
		picked = picked[:0:0]
		for _, o := range req.GetOutputs() {
			if j := slices.IndexFunc(out, func(t ml.Tensor) bool { return t.Name == o.GetName() }); j >= 0 {
				picked = append(picked, out[j])
			}
		}
	}
	for _, t := range picked {
		dt := tensorjson.OutputType(t.Name, schema)
		resp.Outputs = append(resp.Outputs, &inferencepb.ModelInferResponse_InferOutputTensor{Name: t.Name, Datatype: dt, Shape: int64s(t.Shape)})
		resp.RawOutputContents = append(resp.RawOutputContents, tensorjson.AppendBinary(nil, dt, t.Data))
	}
	return resp, nil
}

// grpcInputs reads a request's inputs, from raw_input_contents when it has
// them (one per input), else from each input's typed contents.
func grpcInputs(req *inferencepb.ModelInferRequest, s *structs.Schema) ([]ml.Tensor, error) {
	raw := req.GetRawInputContents()
	if len(raw) > 0 && len(raw) != len(req.GetInputs()) {
		return nil, structs.Errorf(structs.CodeInvalid, "raw_input_contents has %d entries for %d inputs: give one per input", len(raw), len(req.GetInputs()))
	}
	inputs := make([]ml.Tensor, len(req.GetInputs()))
	for i, in := range req.GetInputs() {
		shape := make([]int, len(in.GetShape()))
		for j, d := range in.GetShape() {
			if d < 0 || d > math.MaxInt32 {
				return nil, structs.Errorf(structs.CodeInvalid, "inputs[%d] (%q): shape %v has a negative or too large dimension", i, in.GetName(), in.GetShape())
			}
			shape[j] = int(d)
		}
		v2 := tensorjson.V2Input{Name: in.GetName(), Shape: shape, Datatype: in.GetDatatype()}
		var err error
		if len(raw) > 0 {
			if in.GetContents() != nil {
				return nil, structs.Errorf(structs.CodeInvalid, "inputs[%d] (%q) has contents and raw_input_contents: give one", i, in.GetName())
			}
			inputs[i], err = tensorjson.FromV2Binary(i, v2, raw[i], s)
		} else {
			v2.Data, err = contentsJSON(i, in)
			if err == nil {
				inputs[i], err = tensorjson.FromV2(i, v2, s)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return inputs, nil
}

// contentsJSON is an input's typed contents as the JSON array the REST
// decoder checks, from the field its datatype uses.
func contentsJSON(i int, in *inferencepb.ModelInferRequest_InferInputTensor) ([]byte, error) {
	c := in.GetContents()
	var b []byte
	b = append(b, '[')
	add := func(n int, f func(k int) string) {
		for k := range n {
			if k > 0 {
				b = append(b, ',')
			}
			b = append(b, f(k)...)
		}
	}
	switch in.GetDatatype() {
	case "BOOL":
		add(len(c.GetBoolContents()), func(k int) string { return strconv.FormatBool(c.GetBoolContents()[k]) })
	case "INT8", "INT16", "INT32":
		add(len(c.GetIntContents()), func(k int) string { return strconv.Itoa(int(c.GetIntContents()[k])) })
	case "INT64":
		add(len(c.GetInt64Contents()), func(k int) string { return strconv.FormatInt(c.GetInt64Contents()[k], 10) })
	case "UINT8", "UINT16", "UINT32":
		add(len(c.GetUintContents()), func(k int) string { return strconv.FormatUint(uint64(c.GetUintContents()[k]), 10) })
	case "UINT64":
		add(len(c.GetUint64Contents()), func(k int) string { return strconv.FormatUint(c.GetUint64Contents()[k], 10) })
	case "FP32":
		add(len(c.GetFp32Contents()), func(k int) string { return contentFloat(float64(c.GetFp32Contents()[k])) })
	case "FP64":
		add(len(c.GetFp64Contents()), func(k int) string { return contentFloat(c.GetFp64Contents()[k]) })
	case "FP16":
		return nil, structs.Errorf(structs.CodeInvalid, "inputs[%d] (%q): FP16 has no contents field; send it in raw_input_contents", i, in.GetName())
	}
	return append(b, ']'), nil
}

// contentFloat writes a float as JSON; NaN (which JSON has no word for) as
// null, the missing value.
func contentFloat(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "null"
	}
	return strconv.FormatFloat(x, 'g', -1, 64)
}

// grpcCheckOutputs refuses a requested output the model does not have.
func grpcCheckOutputs(req *inferencepb.ModelInferRequest, s *structs.Schema) error {
	names := make([]string, len(req.GetOutputs()))
	for i, o := range req.GetOutputs() {
		names[i] = o.GetName()
	}
	return tensorjson.CheckOutputs(names, s)
}
