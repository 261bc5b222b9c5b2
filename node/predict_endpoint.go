package node

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kilnml/kiln/actors/serving"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/node/internal/tensorjson"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// handleModelAction serves POST /v1/models/{name}:{action}; predict is the
// only action.
func (a *Agent) handleModelAction(w http.ResponseWriter, r *http.Request) {
	name, action, ok := strings.Cut(r.PathValue("nameaction"), ":")
	if !ok || action != "predict" {
		writeError(w, structs.Errorf(structs.CodeNotFound, "no route for POST %s: use /v1/models/{name}:predict", r.URL.Path))
		return
	}
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	var req predictBody
	body, err := a.readBody(w, r)
	if err == nil && !req.ParseFast(body) {
		err = decodeJSON(bytes.NewReader(body), &req)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	withEntities := req.Entities != nil
	given := 0
	for _, set := range []bool{req.Instances != nil, req.Inputs != nil, withEntities} {
		if set {
			given++
		}
	}
	if given != 1 {
		writeError(w, structs.Errorf(structs.CodeInvalid, "give exactly one of instances, inputs or entities"))
		return
	}
	if !withEntities && (req.Features != nil || req.ReturnFeatures) {
		writeError(w, structs.Errorf(structs.CodeInvalid, "features and return_features go with entities"))
		return
	}
	id := requestID(r, req.ID)
	target, err := a.resolveTarget(r, name, serving.Selector{Version: req.Version, Alias: req.Alias, Key: req.Key})
	if err != nil {
		writeError(w, err)
		return
	}
	var inputs []ml.Tensor
	var used []map[string]any
	if withEntities {
		inputs, used, err = a.featureInput(r, target, &req.featureRequest)
	} else {
		inputs, err = req.Tensors(&target.Version.Schema)
	}
	if err != nil {
		a.serving.metrics.Refused(target.Deployment.Name, target.Version.Version, err)
		writeError(w, err)
		return
	}
	out, ok := a.predict(w, r, id, target, inputs)
	if !ok {
		return
	}
	if req.ReturnFeatures {
		writePredictionsWithFeatures(w, name, target.Version.Version, id, out, used)
		return
	}
	writePredictions(w, name, target.Version.Version, id, out)
}

// predictBody is a :predict request: instances or inputs (tensorjson), or
// the entities whose features make the input.
type predictBody struct {
	tensorjson.Request
	featureRequest
}

// predict runs inputs through target's version for v1 and v2 over HTTP
// (infer): the answer may take the deployment's timeout, and an error is
// written (false) as serving's errors map onto HTTP.
func (a *Agent) predict(w http.ResponseWriter, r *http.Request, id string, target *serving.Target, inputs []ml.Tensor) ([]ml.Tensor, bool) {
	extendWriteDeadline(w, target.Deployment)
	out, err := a.infer(r.Context(), id, target, inputs)
	if err != nil {
		writePredictError(w, err)
		return nil, false
	}
	return out, true
}

// infer is the end of inference that HTTP and gRPC share: a tabular input
// gets its batch dimension, the router scores it (recording the metrics),
// and the answered request is offered to the prediction log under id.
func (a *Agent) infer(ctx context.Context, id string, target *serving.Target, inputs []ml.Tensor) ([]ml.Tensor, error) {
	tensorjson.NormalizeTabular(inputs, &target.Version.Schema)
	start := time.Now()
	out, err := a.serving.router.Predict(ctx, target, inputs)
	if err != nil {
		return nil, err
	}
	a.logPrediction(id, target, start, inputs, out)
	return out, nil
}

// writePredictions answers {"id", "model", "predictions", "version"}.
func writePredictions(w http.ResponseWriter, name string, version uint64, id string, out []ml.Tensor) {
	b := make([]byte, 0, 256)
	b = append(b, `{"id":`...)
	b = appendJSONString(b, id)
	b = append(b, `,"model":`...)
	b = appendJSONString(b, name)
	b = append(b, `,"predictions":`...)
	b, ok := tensorjson.AppendPredictions(b, out)
	if !ok {
		preds, err := tensorjson.Predictions(out)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"predictions": preds, "model": name, "version": version, "id": id})
		return
	}
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, version, 10)
	b = append(b, "}\n"...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// resolveTarget picks the version and replicas for a prediction from the
// local registry, after waiting for ?index=N if given.
func (a *Agent) resolveTarget(r *http.Request, name string, sel serving.Selector) (*serving.Target, error) {
	if s := r.URL.Query().Get("index"); s != "" {
		idx, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, structs.Errorf(structs.CodeInvalid, "index must be a non-negative integer, not %q", s)
		}
		wait := min(maxIndexWait, a.cfg.PredictTimeout)
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		err = a.fsm.WaitForIndex(ctx, idx)
		cancel()
		if err != nil {
			return nil, structs.Errorf(structs.CodeUnavailable, "index %d not reached within %s (applied %d)", idx, wait, a.fsm.AppliedIndex())
		}
	}
	// The local registry answers, a model that is unknown or not deployed
	// too: asking the leader on every such request would let a flood of
	// them load it. A client that just deployed reads its own write with
	// ?index=, as for any read.
	return a.serving.router.Resolve(name, sel)
}

func requestID(r *http.Request, given string) string {
	if given != "" {
		return given
	}
	if h := r.Header.Get("X-Request-Id"); h != "" {
		return h
	}
	return structs.NewID(time.Now())
}

// writePredictError maps serving's errors onto HTTP: a busy replica is 429,
// an unreachable one 503.
func writePredictError(w http.ResponseWriter, err error) {
	var ce *structs.CodedError
	if errors.As(err, &ce) && ce.Code == serving.CodeBusy {
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusTooManyRequests, ce)
		return
	}
	if errors.Is(err, transport.ErrUnreachable) || errors.Is(err, transport.ErrConnLost) {
		writeError(w, structs.Errorf(structs.CodeUnavailable, "replica unreachable: %v", err))
		return
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		writeError(w, structs.Errorf(structs.CodeUnavailable, "prediction did not finish: %v", err))
		return
	}
	writeError(w, err)
}

// rpcServingStats returns this node's metrics for one model, for the
// cluster-wide view of GET /v1/models/{name}/metrics.
const rpcServingStats = "serving.stats"

type servingStatsArgs struct {
	Model string `msgpack:"model"`
}

type servingStatsReply struct {
	Stats []serving.VersionStats `msgpack:"stats"`
}

// predictEndpoint: inference through v1, and the per-model request metrics
// summed over the nodes (each node answers rpcServingStats for its own).
func (a *Agent) predictEndpoint() endpoint {
	return endpoint{
		routes: []route{
			{pattern: "POST /v1/models/{nameaction}", handler: a.handleModelAction, kind: structs.KindPredict, need: needAllow, name: predictName},
			{pattern: "GET /v1/models/{name}/metrics", handler: a.handleModelMetrics, kind: structs.KindModel, need: needRead, name: pathName},
		},
		rpcs: map[string]transport.Handler{rpcServingStats: a.handleServingStatsRPC},
	}
}

func (a *Agent) handleServingStatsRPC(ctx context.Context, dec transport.Decoder) (any, error) {
	var args servingStatsArgs
	if err := dec.Decode(&args); err != nil {
		return nil, structs.Errorf(structs.CodeInvalid, "node: bad serving.stats request: %v", err)
	}
	return &servingStatsReply{Stats: a.serving.metrics.Stats(args.Model)}, nil
}

// handleModelMetrics answers per-version request and error counts and latency
// percentiles, summed over every alive node's ingress (?scope=local for this
// node alone). Nodes that do not answer within 2 s are left out and counted
// in nodes_missing.
func (a *Agent) handleModelMetrics(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	scope := r.URL.Query().Get("scope")
	if scope != "" && scope != "local" && scope != "cluster" {
		writeError(w, structs.Errorf(structs.CodeInvalid, "scope must be local or cluster, not %q", scope))
		return
	}
	txn := a.fsm.ReadTxn()
	_, err := txn.Model(name)
	txn.Discard()
	if err != nil {
		writeError(w, err)
		return
	}
	stats, missing := a.clusterStats(r.Context(), name, scope == "local")
	writeJSON(w, http.StatusOK, map[string]any{"model": name, "versions": stats, "nodes_missing": missing})
}

// clusterStats merges a model's serving stats from every alive node (only
// this one's when local), and says how many nodes did not answer.
func (a *Agent) clusterStats(ctx context.Context, name string, local bool) ([]serving.VersionStats, int) {
	mine := func() (*servingStatsReply, error) {
		return &servingStatsReply{Stats: a.serving.metrics.Stats(name)}, nil
	}
	if local {
		r, _ := mine()
		return serving.MergeStats(r.Stats), 0
	}
	replies, missing := fanOut(ctx, a, rpcServingStats, &servingStatsArgs{Model: name}, 2*time.Second, mine)
	parts := make([][]serving.VersionStats, len(replies))
	for i, r := range replies {
		parts[i] = r.Stats
	}
	return serving.MergeStats(parts...), missing
}

func (a *Agent) metricsHandler() http.Handler {
	return promhttp.HandlerFor(a.serving.registry, promhttp.HandlerOpts{})
}
