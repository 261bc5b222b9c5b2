package node

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kilnml/kiln/actors/serving"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// deploymentPutRequest is the body of PUT /v1/deployments/{name}.
type deploymentPutRequest struct {
	Versions  []structs.TrafficSplit    `json:"versions"`
	Shadow    uint64                    `json:"shadow"`
	Replicas  *int                      `json:"replicas"`
	Batching  *structs.Batching         `json:"batching"`
	Resources *structs.ReplicaResources `json:"resources"`
}

func (a *Agent) handleDeploymentPut(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	var req deploymentPutRequest
	if err := a.decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	now := time.Now().UTC()
	d := structs.Deployment{
		Name: name, Traffic: structs.Traffic{Versions: req.Versions, Shadow: req.Shadow},
		Replicas: 1, CreatedAt: now, UpdatedAt: now,
	}
	if req.Replicas != nil {
		d.Replicas = *req.Replicas
	}
	if req.Batching != nil {
		d.Batching = *req.Batching
	}
	if req.Resources != nil {
		d.Resources = *req.Resources
	}
	if err := d.Validate(); err != nil {
		writeError(w, err)
		return
	}
	var stored structs.Deployment
	idx, err := a.propose(r.Context(), structs.DeploymentPutType, &structs.DeploymentPutRequest{Deployment: d}, &stored)
	if err != nil {
		writeError(w, err)
		return
	}
	writeCommitted(w, http.StatusOK, idx, a.deploymentView(&stored, nil))
}

func (a *Agent) handleDeploymentRollback(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	var stored structs.Deployment
	idx, err := a.propose(r.Context(), structs.DeploymentRollbackType, &structs.DeploymentRollbackRequest{Name: name, UpdatedAt: time.Now().UTC()}, &stored)
	if err != nil {
		writeError(w, err)
		return
	}
	writeCommitted(w, http.StatusOK, idx, a.deploymentView(&stored, nil))
}

func (a *Agent) handleDeploymentDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	idx, err := a.propose(r.Context(), structs.DeploymentDeleteType, &structs.DeploymentDeleteRequest{Name: name}, nil)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("X-Kiln-Index", strconv.FormatUint(idx, 10))
	w.WriteHeader(http.StatusNoContent)
}

// replicaView is one replica in GET /v1/deployments/{name}.
type replicaView struct {
	ID       string `json:"id"`
	Version  uint64 `json:"version"`
	NodeID   string `json:"node_id"`
	NodeName string `json:"node_name"`
	State    string `json:"state"`
	Message  string `json:"message,omitempty"`
	GPUs     []int  `json:"gpus,omitempty"`
	MemoryMB int64  `json:"memory_mb"`
	// InFlight and Served come from the replica itself; -1 when it could
	// not be asked.
	InFlight int64 `json:"in_flight"`
	Served   int64 `json:"served"`
}

type deploymentView struct {
	*structs.Deployment
	Replicas_ []replicaView           `json:"replica_states"`
	Unplaced  map[string]unplacedView `json:"unplaced,omitempty"`
}

// unplacedView is, in GET /v1/deployments/{name}, the replicas of one
// version that have no node.
type unplacedView struct {
	Replicas int `json:"replicas"`
	// Reason says why when no alive node may run the version at all
	// (serving.UnplacedReason); empty when room is what lacks.
	Reason string `json:"reason,omitempty"`
}

// deploymentView adds each replica's node, state and load to a deployment.
// allocs nil means the replicas are not shown (write answers).
func (a *Agent) deploymentView(d *structs.Deployment, allocs []*structs.Allocation) *deploymentView {
	if d.History == nil {
		d.History = []structs.Traffic{}
	}
	v := &deploymentView{Deployment: d, Replicas_: []replicaView{}}
	if allocs == nil {
		return v
	}
	names := map[string]string{}
	for _, m := range a.gossip.all() {
		names[m.Meta.ID] = m.Name
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, al := range allocs {
		if al.Deployment != d.Name {
			continue
		}
		rv := replicaView{
			ID: al.ID, Version: al.Version, NodeID: al.NodeID, NodeName: names[al.NodeID], State: al.State,
			Message: al.Message, GPUs: al.GPUs, MemoryMB: al.MemoryMB, InFlight: -1, Served: -1,
		}
		// A replica on a node gossip has lost is not asked: the ask would
		// only wait out its timeout.
		if al.State == structs.AllocRunning && a.isAlive(al.NodeID) {
			if reply, err := a.actors.Ask(ctx, serving.ShardRef(al), &serving.LoadRequest{}); err == nil {
				if lr, ok := reply.(*serving.LoadReply); ok {
					rv.InFlight, rv.Served = lr.InFlight, lr.Served
				}
			}
		}
		v.Replicas_ = append(v.Replicas_, rv)
	}
	for ver, n := range serving.Unplaced(d, allocs) {
		if v.Unplaced == nil {
			v.Unplaced = map[string]unplacedView{}
		}
		v.Unplaced[strconv.FormatUint(ver, 10)] = unplacedView{Replicas: n}
	}
	return v
}

func (a *Agent) handleDeploymentGet(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	txn, err := a.readTxn(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	d, err := txn.Deployment(name)
	if err != nil {
		txn.Discard()
		writeError(w, err)
		return
	}
	allocs, err := txn.Allocations()
	var reasons map[string]string
	if err == nil {
		reasons = a.unplacedReasons(txn, d, allocs)
	}
	txn.Discard()
	if err != nil {
		writeError(w, err)
		return
	}
	if allocs == nil {
		allocs = []*structs.Allocation{}
	}
	view := a.deploymentView(d, allocs)
	for ver, reason := range reasons {
		if u, ok := view.Unplaced[ver]; ok {
			u.Reason = reason
			view.Unplaced[ver] = u
		}
	}
	writeJSON(w, http.StatusOK, view)
}

func (a *Agent) handleDeploymentList(w http.ResponseWriter, r *http.Request) {
	cursor, limit, err := listParams(r)
	if err != nil {
		writeError(w, err)
		return
	}
	txn, err := a.readTxn(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	defer txn.Discard()
	items, next, err := visiblePage(cursor, limit, txn.Deployments,
		func(d *structs.Deployment) bool {
			return a.allowed(r, structs.KindDeployment, d.Name, structs.AccessRead)
		},
		func(d *structs.Deployment) string { return d.Name })
	if err != nil {
		writeError(w, err)
		return
	}
	views := make([]*deploymentView, 0, len(items))
	for _, d := range items {
		views = append(views, a.deploymentView(d, nil))
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": views, "next_cursor": next})
}

// handleModelAction serves POST /v1/models/{name}:{action}; predict is the
// only action.
func (a *Agent) handleModelAction(w http.ResponseWriter, r *http.Request) {
	name, action, ok := strings.Cut(r.PathValue("nameaction"), ":")
	if !ok || action != "predict" {
		writeError(w, errorf(structs.CodeNotFound, "no route for POST %s: use /v1/models/{name}:predict", r.URL.Path))
		return
	}
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	var req predictRequest
	if err := a.decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if (req.Instances == nil) == (req.Inputs == nil) {
		writeError(w, errorf(structs.CodeInvalid, "give exactly one of instances or inputs"))
		return
	}
	id := requestID(r, req.ID)
	target, err := a.resolveTarget(r, name, serving.Selector{Version: req.Version, Alias: req.Alias, Key: req.Key})
	if err != nil {
		writeError(w, err)
		return
	}
	var inputs []ml.Tensor
	if t, ok := fastRows(req.Instances); ok && len(target.Version.Schema.Inputs) <= 1 {
		t.Name = inputName(&target.Version.Schema)
		inputs = []ml.Tensor{t}
	} else if req.Instances != nil {
		inputs, err = tensorsFromInstances(req.Instances, &target.Version.Schema)
	} else {
		inputs, err = tensorsFromColumns(req.Inputs, &target.Version.Schema)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	normalizeTabular(inputs, &target.Version.Schema)
	out, err := a.serving.router.Predict(r.Context(), target, inputs)
	if err != nil {
		writePredictError(w, err)
		return
	}
	writePredictions(w, name, target.Version.Version, id, out)
}

// writePredictions answers {"id", "model", "predictions", "version"}.
func writePredictions(w http.ResponseWriter, name string, version uint64, id string, out []ml.Tensor) {
	b := make([]byte, 0, 256)
	b = append(b, `{"id":`...)
	b = appendJSONString(b, id)
	b = append(b, `,"model":`...)
	b = appendJSONString(b, name)
	b = append(b, `,"predictions":`...)
	b, ok := appendPredictions(b, out)
	if !ok {
		preds, err := predictionsJSON(out)
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

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}

// resolveTarget picks the version and replicas for a prediction from the
// local registry, after waiting for ?index=N if given. When the local
// registry says the model, version or deployment is unknown, it catches up
// to the leader's index once before answering so: something deployed a
// moment ago through another node is not a 404 or 409 here.
func (a *Agent) resolveTarget(r *http.Request, name string, sel serving.Selector) (*serving.Target, error) {
	if s := r.URL.Query().Get("index"); s != "" {
		idx, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, errorf(structs.CodeInvalid, "index must be a non-negative integer, not %q", s)
		}
		ctx, cancel := context.WithTimeout(r.Context(), maxIndexWait)
		err = a.fsm.WaitForIndex(ctx, idx)
		cancel()
		if err != nil {
			return nil, errorf(structs.CodeUnavailable, "index %d not reached within %s (applied %d)", idx, maxIndexWait, a.fsm.AppliedIndex())
		}
	}
	t, err := a.serving.router.Resolve(name, sel)
	switch structs.ErrorCode(err) {
	case structs.CodeNotFound, structs.CodeConflict:
		if txn, cerr := a.consistentTxn(r.Context()); cerr == nil {
			txn.Discard()
			return a.serving.router.Resolve(name, sel)
		}
	}
	return t, err
}

// normalizeTabular gives a tabular model's input its batch dimension: one
// instance sent as a flat row, or single-feature instances sent as scalars.
func normalizeTabular(inputs []ml.Tensor, s *structs.Schema) {
	if len(inputs) != 1 || len(s.Inputs) != 1 || len(s.Inputs[0].Shape) != 2 || len(inputs[0].Shape) != 1 {
		return
	}
	features := s.Inputs[0].Shape[1]
	switch {
	case features == 1:
		inputs[0].Shape = []int{inputs[0].Shape[0], 1}
	case inputs[0].Shape[0] == features:
		inputs[0].Shape = []int{1, features}
	}
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
		writeError(w, errorf(structs.CodeUnavailable, "replica unreachable: %v", err))
		return
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		writeError(w, errorf(structs.CodeUnavailable, "prediction did not finish: %v", err))
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

func (a *Agent) registerServingRPC() {
	a.trans.Register(rpcServingStats, func(ctx context.Context, dec transport.Decoder) (any, error) {
		var args servingStatsArgs
		if err := dec.Decode(&args); err != nil {
			return nil, structs.Errorf(structs.CodeInvalid, "node: bad serving.stats request: %v", err)
		}
		return &servingStatsReply{Stats: a.serving.metrics.Stats(args.Model)}, nil
	})
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
		writeError(w, errorf(structs.CodeInvalid, "scope must be local or cluster, not %q", scope))
		return
	}
	txn := a.fsm.ReadTxn()
	_, err := txn.Model(name)
	txn.Discard()
	if err != nil {
		writeError(w, err)
		return
	}
	parts := [][]serving.VersionStats{a.serving.metrics.Stats(name)}
	missing := 0
	if scope != "local" {
		members := a.gossip.alive()
		results := make(chan []serving.VersionStats, len(members))
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		asked := 0
		for _, m := range members {
			if m.Meta.ID == a.id {
				continue
			}
			asked++
			go func(addr string) {
				var reply servingStatsReply
				if err := a.trans.Call(ctx, addr, rpcServingStats, &servingStatsArgs{Model: name}, &reply); err != nil {
					results <- nil
					return
				}
				results <- reply.Stats
			}(m.Meta.RPCAddr)
		}
		for range asked {
			s := <-results
			if s == nil {
				missing++
			}
			parts = append(parts, s)
		}
	}
	stats := serving.MergeStats(parts...)
	writeJSON(w, http.StatusOK, map[string]any{"model": name, "versions": stats, "nodes_missing": missing})
}

func (a *Agent) metricsHandler() http.Handler {
	return promhttp.HandlerFor(a.serving.registry, promhttp.HandlerOpts{})
}
