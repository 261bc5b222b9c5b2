package node

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/kilnml/kiln/actors/serving"
	"github.com/kilnml/kiln/raftfsm"
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
	TimeoutMS int64                     `json:"timeout_ms"`
	// FeatureService lets :predict take entities (DESIGN.md §7a).
	FeatureService string `json:"feature_service"`
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
		Replicas: 1, TimeoutMS: req.TimeoutMS, FeatureService: req.FeatureService, CreatedAt: now, UpdatedAt: now,
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
	a.serveDelete(w, r, structs.DeploymentDeleteType, &structs.DeploymentDeleteRequest{Name: name}, "")
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
	ReplicaStates []replicaView           `json:"replica_states"`
	Unplaced      map[string]unplacedView `json:"unplaced,omitempty"`
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
	v := &deploymentView{Deployment: d, ReplicaStates: []replicaView{}}
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
		v.ReplicaStates = append(v.ReplicaStates, rv)
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
	serveList(a, w, r, structs.KindDeployment,
		func(txn *raftfsm.Txn) func(string, int) ([]*structs.Deployment, string, error) {
			return txn.Deployments
		},
		func(d *structs.Deployment) string { return d.Name },
		func(d *structs.Deployment) *deploymentView { return a.deploymentView(d, nil) })
}

// deploymentsEndpoint: deployments, their traffic split and rollback.
func (a *Agent) deploymentsEndpoint() endpoint {
	d := structs.KindDeployment
	return endpoint{routes: []route{
		{pattern: "GET /v1/deployments", handler: a.handleDeploymentList, kind: d, need: needList},
		{pattern: "PUT /v1/deployments/{name}", handler: a.handleDeploymentPut, kind: d, need: needWrite, name: pathName},
		{pattern: "GET /v1/deployments/{name}", handler: a.handleDeploymentGet, kind: d, need: needRead, name: pathName},
		{pattern: "DELETE /v1/deployments/{name}", handler: a.handleDeploymentDelete, kind: d, need: needWrite, name: pathName},
		{pattern: "POST /v1/deployments/{name}/rollback", handler: a.handleDeploymentRollback, kind: d, need: needWrite, name: pathName},
		{pattern: "GET /v1/deployments/{name}/timeseries", handler: a.handleTimeSeries, kind: d, need: needRead, name: pathName},
	}, rpcs: map[string]transport.Handler{rpcTimeSeries: a.handleTimeSeriesRPC}}
}
