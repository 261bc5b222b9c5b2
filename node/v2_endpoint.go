package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/kilnml/kiln/actors/serving"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/node/internal/tensorjson"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// The Open Inference Protocol v2 (REST), as KServe and Triton speak it. A
// Kiln model is a v2 model; its versions are the v2 versions. Without a
// version in the path, requests follow the deployment's traffic split.

// v2InferRequest is an inference request. model_name and model_version
// are not in the protocol's request, but Triton's examples send them: they
// must then name the path's model and version.
type v2InferRequest struct {
	ID           string                       `json:"id"`
	ModelName    string                       `json:"model_name"`
	ModelVersion string                       `json:"model_version"`
	Parameters   map[string]json.RawMessage   `json:"parameters"`
	Inputs       []tensorjson.V2Input         `json:"inputs"`
	Outputs      []tensorjson.V2RequestOutput `json:"outputs"`
}

// binaryHeader is the binary tensor data extension's header: the length of
// the JSON at the start of a body that binary tensor data follows.
const binaryHeader = "Inference-Header-Content-Length"

// v2Extensions are the protocol extensions server metadata names.
var v2Extensions = []string{"binary_tensor_data"}

// handleV2Server is server metadata, GET /v2.
func (a *Agent) handleV2Server(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"name": "kiln", "version": Version, "extensions": v2Extensions})
}

type v2TensorMeta struct {
	Name     string `json:"name"`
	Datatype string `json:"datatype"`
	Shape    []int  `json:"shape"`
}

func (a *Agent) handleV2Live(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"live": true})
}

// handleV2Ready is ready once the node has a leader and its registry is
// readable: then it can route predictions.
func (a *Agent) handleV2Ready(w http.ResponseWriter, r *http.Request) {
	addr, _ := a.raft.LeaderWithID()
	ready := addr != ""
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]bool{"ready": ready})
}

// v2Version reads the optional {version} path segment.
func v2Version(r *http.Request) (uint64, error) {
	s := r.PathValue("version")
	if s == "" {
		return 0, nil
	}
	return parseVersionNumber("version", s)
}

func (a *Agent) handleV2ModelMeta(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	version, err := v2Version(r)
	if err != nil {
		writeError(w, err)
		return
	}
	meta, err := a.v2ModelMetadata(name, version)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, meta)
}

// v2ModelMeta is a model's v2 metadata, which gRPC answers too.
type v2ModelMeta struct {
	Name     string         `json:"name"`
	Versions []string       `json:"versions"`
	Platform string         `json:"platform"`
	Inputs   []v2TensorMeta `json:"inputs"`
	Outputs  []v2TensorMeta `json:"outputs"`
}

// v2ModelMetadata describes a model: its versions, and the inputs and
// outputs of version (0: the one the deployment weighs first, or the
// latest).
func (a *Agent) v2ModelMetadata(name string, version uint64) (*v2ModelMeta, error) {
	txn := a.fsm.ReadTxn()
	defer txn.Discard()
	m, err := txn.Model(name)
	if err != nil {
		return nil, err
	}
	if version == 0 {
		version = m.LatestVersion
		if d, err := txn.Deployment(name); err == nil && len(d.Traffic.Versions) > 0 {
			version = d.Traffic.Versions[0].Version
		}
	}
	v, err := txn.Version(name, version)
	if err != nil {
		return nil, err
	}
	versions, _, err := txn.Versions(name, "", 0)
	if err != nil {
		return nil, err
	}
	list := make([]string, len(versions))
	for i, x := range versions {
		list[i] = strconv.FormatUint(x.Version, 10)
	}
	meta := func(specs []structs.TensorSpec) []v2TensorMeta {
		out := make([]v2TensorMeta, len(specs))
		for i, t := range specs {
			out[i] = v2TensorMeta{Name: t.Name, Datatype: t.DataType, Shape: t.Shape}
		}
		return out
	}
	return &v2ModelMeta{Name: name, Versions: list, Platform: platform(v), Inputs: meta(v.Schema.Inputs), Outputs: meta(v.Schema.Outputs)}, nil
}

// handleV2ModelReady is 200 when a replica of the version (or of the
// deployment's traffic) is running, else 503 with ready false.
func (a *Agent) handleV2ModelReady(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	version, err := v2Version(r)
	if err != nil {
		writeError(w, err)
		return
	}
	ready, err := a.v2ModelReady(name, version)
	if err != nil {
		writeError(w, err)
		return
	}
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"name": name, "ready": ready})
}

// v2ModelReady reports whether a replica of the version (or of the
// deployment's traffic) runs; an unknown model or version is an error.
func (a *Agent) v2ModelReady(name string, version uint64) (bool, error) {
	_, err := a.serving.router.Resolve(name, serving.Selector{Version: version})
	switch structs.ErrorCode(err) {
	case structs.CodeNotFound:
		return false, err
	case structs.CodeInternal:
		if err != nil {
			return false, err
		}
	}
	return err == nil, nil
}

func (a *Agent) handleV2Infer(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	version, err := v2Version(r)
	if err != nil {
		writeError(w, err)
		return
	}
	req, raw, err := a.readV2Request(w, r)
	if err == nil {
		err = req.check(name, version)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	target, err := a.resolveTarget(r, name, serving.Selector{Version: version})
	if err != nil {
		writeError(w, err)
		return
	}
	schema := &target.Version.Schema
	inputs, err := req.tensors(raw, schema)
	if err == nil {
		err = req.checkOutputs(schema)
	}
	if err != nil {
		a.serving.metrics.Refused(target.Deployment.Name, target.Version.Version, err)
		writeError(w, err)
		return
	}
	id := requestID(r, req.ID)
	out, ok := a.predict(w, r, id, target, inputs)
	if !ok {
		return
	}
	if err := writeV2Response(w, req, name, target.Version.Version, id, out, schema); err != nil {
		writeError(w, err)
	}
}

// readV2Request reads an infer request's body: JSON, or with the
// Inference-Header-Content-Length header, JSON of that length followed by
// binary tensor data, which it returns.
func (a *Agent) readV2Request(w http.ResponseWriter, r *http.Request) (*v2InferRequest, []byte, error) {
	req := &v2InferRequest{}
	h := r.Header.Get(binaryHeader)
	if h == "" {
		return req, nil, a.decodeBody(w, r, req)
	}
	n, err := strconv.Atoi(h)
	if err != nil || n < 0 {
		return nil, nil, structs.Errorf(structs.CodeInvalid, "header %s %q is not a length", binaryHeader, h)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes))
	if err != nil {
		return nil, nil, jsonError(err)
	}
	if n > len(body) {
		return nil, nil, structs.Errorf(structs.CodeInvalid, "header %s is %d, but the body has only %d bytes", binaryHeader, n, len(body))
	}
	if err := decodeJSON(bytes.NewReader(body[:n]), req); err != nil {
		return nil, nil, err
	}
	return req, body[n:], nil
}

// check holds the request to what it says of itself.
func (req *v2InferRequest) check(name string, version uint64) error {
	if req.ModelName != "" && req.ModelName != name {
		return structs.Errorf(structs.CodeInvalid, "model_name %q is not the path's model %q", req.ModelName, name)
	}
	if req.ModelVersion != "" && (version == 0 || req.ModelVersion != strconv.FormatUint(version, 10)) {
		return structs.Errorf(structs.CodeInvalid, "model_version %q is not the path's version", req.ModelVersion)
	}
	if len(req.Inputs) == 0 {
		return structs.Errorf(structs.CodeInvalid, "inputs is empty")
	}
	if err := tensorjson.CheckParameters(req.Parameters, "request"); err != nil {
		return err
	}
	for i, in := range req.Inputs {
		if err := tensorjson.CheckParameters(in.Parameters, fmt.Sprintf("inputs[%d]", i)); err != nil {
			return err
		}
	}
	for i, o := range req.Outputs {
		if err := tensorjson.CheckParameters(o.Parameters, fmt.Sprintf("outputs[%d]", i)); err != nil {
			return err
		}
	}
	return nil
}

// tensors reads the inputs: from their JSON data, or in order from the
// binary data that follows the JSON, each taking its binary_data_size
// bytes. Binary data must end where the last binary input's does.
func (req *v2InferRequest) tensors(raw []byte, s *structs.Schema) ([]ml.Tensor, error) {
	inputs := make([]ml.Tensor, len(req.Inputs))
	for i, in := range req.Inputs {
		path := fmt.Sprintf("inputs[%d]", i)
		size, err := tensorjson.BinarySize(in.Parameters, path)
		if err != nil {
			return nil, err
		}
		if size < 0 || raw == nil {
			if inputs[i], err = tensorjson.FromV2(i, in, s); err != nil {
				return nil, err
			}
			continue
		}
		if size > int64(len(raw)) {
			return nil, structs.Errorf(structs.CodeInvalid, "%s (%q): binary_data_size %d runs past the end of the body, which has %d bytes left", path, in.Name, size, len(raw))
		}
		if inputs[i], err = tensorjson.FromV2Binary(i, in, raw[:size], s); err != nil {
			return nil, err
		}
		raw = raw[size:]
	}
	if len(raw) > 0 {
		return nil, structs.Errorf(structs.CodeInvalid, "the body has %d bytes after the last input's binary data", len(raw))
	}
	return inputs, nil
}

// checkOutputs refuses a requested output the model does not have.
func (req *v2InferRequest) checkOutputs(s *structs.Schema) error {
	names := make([]string, len(req.Outputs))
	for i, o := range req.Outputs {
		names[i] = o.Name
	}
	return tensorjson.CheckOutputs(names, s)
}

// writeV2Response answers an infer request with the outputs it asked for
// (all, when it named none), each as JSON or, when asked (the output's
// binary_data, else the request's binary_data_output), as binary data after
// the JSON.
func writeV2Response(w http.ResponseWriter, req *v2InferRequest, name string, version uint64, id string, out []ml.Tensor, s *structs.Schema) error {
	allBinary, err := tensorjson.BoolParam(req.Parameters, "binary_data_output", "request", false)
	if err != nil {
		return err
	}
	type wanted struct {
		t      ml.Tensor
		binary bool
	}
	var picked []wanted
	if len(req.Outputs) == 0 {
		for _, t := range out {
			picked = append(picked, wanted{t, allBinary})
		}
	}
	for i, o := range req.Outputs {
		j := slices.IndexFunc(out, func(t ml.Tensor) bool { return t.Name == o.Name })
		if j < 0 {
			return structs.Errorf(structs.CodeInvalid, "outputs[%d].name %q is not an output of the model", i, o.Name)
		}
		bin, err := tensorjson.BoolParam(o.Parameters, "binary_data", fmt.Sprintf("outputs[%d]", i), allBinary)
		if err != nil {
			return err
		}
		picked = append(picked, wanted{out[j], bin})
	}
	outputs := make([]any, len(picked))
	var tail []byte
	for i, p := range picked {
		if !p.binary {
			outputs[i] = tensorjson.V2JSONOutput(p.t, s)
			continue
		}
		dt := tensorjson.OutputType(p.t.Name, s)
		before := len(tail)
		tail = tensorjson.AppendBinary(tail, dt, p.t.Data)
		outputs[i] = tensorjson.V2BinaryOutput{Name: p.t.Name, Shape: p.t.Shape, Datatype: dt,
			Parameters: map[string]int64{"binary_data_size": int64(len(tail) - before)}}
	}
	resp := map[string]any{"model_name": name, "model_version": strconv.FormatUint(version, 10), "id": id, "outputs": outputs}
	if tail == nil {
		writeJSON(w, http.StatusOK, resp)
		return nil
	}
	head, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(binaryHeader, strconv.Itoa(len(head)))
	w.Header().Set("Content-Length", strconv.Itoa(len(head)+len(tail)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(head)
	_, _ = w.Write(tail)
	return nil
}

// v2Endpoint: the Open Inference Protocol v2. Model metadata and readiness
// are part of inference, so they need predict, not model read.
func (a *Agent) v2Endpoint() endpoint {
	p := structs.KindPredict
	return endpoint{routes: []route{
		{pattern: "GET /v2", handler: a.handleV2Server, need: needToken},
		{pattern: "GET /v2/health/live", handler: a.handleV2Live, need: needToken},
		{pattern: "GET /v2/health/ready", handler: a.handleV2Ready, need: needToken},
		{pattern: "GET /v2/models/{name}", handler: a.handleV2ModelMeta, kind: p, need: needAllow, name: pathName},
		{pattern: "GET /v2/models/{name}/versions/{version}", handler: a.handleV2ModelMeta, kind: p, need: needAllow, name: pathName},
		{pattern: "GET /v2/models/{name}/ready", handler: a.handleV2ModelReady, kind: p, need: needAllow, name: pathName},
		{pattern: "GET /v2/models/{name}/versions/{version}/ready", handler: a.handleV2ModelReady, kind: p, need: needAllow, name: pathName},
		{pattern: "POST /v2/models/{name}/infer", handler: a.handleV2Infer, kind: p, need: needAllow, name: pathName},
		{pattern: "POST /v2/models/{name}/versions/{version}/infer", handler: a.handleV2Infer, kind: p, need: needAllow, name: pathName},
	}}
}

// platform is a version's v2 platform: "onnxruntime_onnx" for an ONNX model
// that ONNX Runtime loaded, as Triton names it; "kiln-" and the format
// otherwise.
func platform(v *structs.ModelVersion) string {
	if v.Format == ml.FormatONNX && strings.HasPrefix(v.Runtime, "onnxruntime") {
		return "onnxruntime_onnx"
	}
	return "kiln-" + v.Format
}
