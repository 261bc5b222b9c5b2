package node

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"

	"github.com/kilnml/kiln/actors/serving"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// The Open Inference Protocol v2 (REST), as KServe and Triton speak it. A
// Kiln model is a v2 model; its versions are the v2 versions. Without a
// version in the path, requests follow the deployment's traffic split.

type v2Tensor struct {
	Name     string          `json:"name"`
	Shape    []int           `json:"shape"`
	Datatype string          `json:"datatype"`
	Data     json.RawMessage `json:"data,omitempty"`
}

type v2InferRequest struct {
	ID         string                     `json:"id"`
	Inputs     []v2Tensor                 `json:"inputs"`
	Outputs    []map[string]any           `json:"outputs"`
	Parameters map[string]json.RawMessage `json:"parameters"`
}

type v2OutputTensor struct {
	Name     string `json:"name"`
	Shape    []int  `json:"shape"`
	Datatype string `json:"datatype"`
	Data     []any  `json:"data"`
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
	txn := a.fsm.ReadTxn()
	defer txn.Discard()
	m, err := txn.Model(name)
	if err != nil {
		writeError(w, err)
		return
	}
	if version == 0 {
		version = m.LatestVersion
		if d, err := txn.Deployment(name); err == nil && len(d.Traffic.Versions) > 0 {
			version = d.Traffic.Versions[0].Version
		}
	}
	v, err := txn.Version(name, version)
	if err != nil {
		writeError(w, err)
		return
	}
	versions, _, err := txn.Versions(name, "", 0)
	if err != nil {
		writeError(w, err)
		return
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
	writeJSON(w, http.StatusOK, map[string]any{
		"name": name, "versions": list, "platform": "kiln-" + v.Format,
		"inputs": meta(v.Schema.Inputs), "outputs": meta(v.Schema.Outputs),
	})
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
	_, err = a.serving.router.Resolve(name, serving.Selector{Version: version})
	switch structs.ErrorCode(err) {
	case structs.CodeNotFound:
		writeError(w, err)
		return
	case structs.CodeInternal:
		if err != nil {
			writeError(w, err)
			return
		}
	}
	status := http.StatusOK
	if err != nil {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"name": name, "ready": err == nil})
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
	var req v2InferRequest
	if err := a.decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if len(req.Inputs) == 0 {
		writeError(w, errorf(structs.CodeInvalid, "inputs is empty"))
		return
	}
	target, err := a.resolveTarget(r, name, serving.Selector{Version: version})
	if err != nil {
		writeError(w, err)
		return
	}
	inputs := make([]ml.Tensor, len(req.Inputs))
	for i, in := range req.Inputs {
		t, err := v2InputTensor(i, in, &target.Version.Schema)
		if err != nil {
			writeError(w, err)
			return
		}
		inputs[i] = t
	}
	normalizeTabular(inputs, &target.Version.Schema)
	out, err := a.serving.router.Predict(r.Context(), target, inputs)
	if err != nil {
		writePredictError(w, err)
		return
	}
	outputs := make([]v2OutputTensor, len(out))
	for i, t := range out {
		data := make([]any, len(t.Data))
		for j, x := range t.Data {
			data[j] = jsonNumber(x)
		}
		outputs[i] = v2OutputTensor{Name: t.Name, Shape: t.Shape, Datatype: outputType(t.Name, &target.Version.Schema), Data: data}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"model_name": name, "model_version": strconv.FormatUint(target.Version.Version, 10),
		"id": requestID(r, req.ID), "outputs": outputs,
	})
}

// v2InputTensor checks one v2 input: its name (the single input may be
// named anything), its numeric datatype, and that data holds exactly the
// values its shape calls for, flat or nested.
func v2InputTensor(i int, in v2Tensor, s *structs.Schema) (ml.Tensor, error) {
	path := "inputs[" + strconv.Itoa(i) + "]"
	switch in.Datatype {
	case "FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "BOOL":
	case "":
		return ml.Tensor{}, errorf(structs.CodeInvalid, "%s.datatype is required", path)
	default:
		return ml.Tensor{}, errorf(structs.CodeInvalid, "%s.datatype %q is not supported: send a numeric or BOOL tensor", path, in.Datatype)
	}
	name := in.Name
	if len(s.Inputs) == 1 {
		name = s.Inputs[0].Name
	} else if !slicesContainsName(s.Inputs, name) {
		return ml.Tensor{}, errorf(structs.CodeInvalid, "%s.name %q is not an input of the model (inputs: %s)", path, in.Name, inputNames(s))
	}
	if len(in.Shape) == 0 {
		return ml.Tensor{}, errorf(structs.CodeInvalid, "%s.shape is required", path)
	}
	// Check the shape before ml.Tensor.Check, whose product of dimensions
	// wraps around: [2^62, 28] would pass with no data and reach a runtime.
	if _, ok := shapeElements(in.Shape); !ok {
		return ml.Tensor{}, errorf(structs.CodeInvalid, "%s.shape %v has a negative dimension or too many elements", path, in.Shape)
	}
	var raw []any
	if err := json.Unmarshal(in.Data, &raw); err != nil {
		return ml.Tensor{}, errorf(structs.CodeInvalid, "%s.data must be an array", path)
	}
	t := ml.Tensor{Name: name, Shape: in.Shape}
	var flatten func(v any, at string) error
	flatten = func(v any, at string) error {
		if arr, ok := v.([]any); ok {
			for j, x := range arr {
				if err := flatten(x, at+"["+strconv.Itoa(j)+"]"); err != nil {
					return err
				}
			}
			return nil
		}
		x, err := number(v, at)
		if err != nil {
			return err
		}
		t.Data = append(t.Data, x)
		return nil
	}
	if err := flatten(raw, path+".data"); err != nil {
		return ml.Tensor{}, err
	}
	if err := t.Check(); err != nil {
		return ml.Tensor{}, errorf(structs.CodeInvalid, "%s: shape %v needs %d values, data has %d", path, in.Shape, t.Len(), len(t.Data))
	}
	return t, nil
}

// shapeElements is the number of elements a shape holds; false when a
// dimension is negative or the count does not fit in an int.
func shapeElements(shape []int) (int, bool) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if d != 0 && n > math.MaxInt/d {
			return 0, false
		}
		n *= d
	}
	return n, true
}

func slicesContainsName(specs []structs.TensorSpec, name string) bool {
	for _, t := range specs {
		if t.Name == name {
			return true
		}
	}
	return false
}

func outputType(name string, s *structs.Schema) string {
	for _, t := range s.Outputs {
		if t.Name == name && t.DataType != "" {
			return t.DataType
		}
	}
	return "FP64"
}
