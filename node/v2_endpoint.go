package node

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/kilnml/kiln/actors/serving"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/node/internal/tensorjson"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// The Open Inference Protocol v2 (REST), as KServe and Triton speak it. A
// Kiln model is a v2 model; its versions are the v2 versions. Without a
// version in the path, requests follow the deployment's traffic split.

type v2InferRequest struct {
	ID         string                     `json:"id"`
	Inputs     []tensorjson.V2Input       `json:"inputs"`
	Outputs    []map[string]any           `json:"outputs"`
	Parameters map[string]json.RawMessage `json:"parameters"`
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
		writeError(w, structs.Errorf(structs.CodeInvalid, "inputs is empty"))
		return
	}
	target, err := a.resolveTarget(r, name, serving.Selector{Version: version})
	if err != nil {
		writeError(w, err)
		return
	}
	inputs := make([]ml.Tensor, len(req.Inputs))
	for i, in := range req.Inputs {
		t, err := tensorjson.FromV2(i, in, &target.Version.Schema)
		if err != nil {
			a.serving.metrics.Refused(target.Deployment.Name, target.Version.Version, err)
			writeError(w, err)
			return
		}
		inputs[i] = t
	}
	id := requestID(r, req.ID)
	out, ok := a.predict(w, r, id, target, inputs)
	if !ok {
		return
	}
	outputs := tensorjson.V2Outputs(out, &target.Version.Schema)
	writeJSON(w, http.StatusOK, map[string]any{
		"model_name": name, "model_version": strconv.FormatUint(target.Version.Version, 10),
		"id": id, "outputs": outputs,
	})
}

// v2Endpoint: the Open Inference Protocol v2. Model metadata and readiness
// are part of inference, so they need predict, not model read.
func (a *Agent) v2Endpoint() endpoint {
	p := structs.KindPredict
	return endpoint{routes: []route{
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
