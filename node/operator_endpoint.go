package node

import (
	"cmp"
	"context"
	"net/http"
	"net/http/pprof"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// StatusResponse is GET /v1/status.
type StatusResponse struct {
	NodeID        string `json:"node_id"`
	NodeName      string `json:"node_name"`
	Version       string `json:"version"`
	RaftState     string `json:"raft_state"`
	Leader        string `json:"leader"`
	LeaderID      string `json:"leader_id"`
	Term          uint64 `json:"term"`
	AppliedIndex  uint64 `json:"applied_index"`
	CommitIndex   uint64 `json:"commit_index"`
	LastLogIndex  uint64 `json:"last_log_index"`
	LastContactMS int64  `json:"last_contact_ms"`
	Members       int    `json:"members"`
	Voters        int    `json:"voters"`
	HTTPAddr      string `json:"http_addr"`
	RPCAddr       string `json:"rpc_addr"`
	// ONNXRuntime is the runtime of this node's ONNX models (ort or
	// gonnx), and ONNXRuntimeVersion ONNX Runtime's version under ort.
	ONNXRuntime        string `json:"onnx_runtime"`
	ONNXRuntimeVersion string `json:"onnx_runtime_version,omitempty"`
}

func (a *Agent) handleStatus(w http.ResponseWriter, r *http.Request) {
	stats := a.raft.Stats()
	addr, id := a.raft.LeaderWithID()
	st := StatusResponse{
		NodeID: a.id, NodeName: a.cfg.NodeName, Version: Version,
		RaftState: a.raft.State().String(), Leader: string(addr), LeaderID: string(id),
		AppliedIndex: a.fsm.AppliedIndex(), CommitIndex: a.raft.CommitIndex(), LastLogIndex: a.raft.LastIndex(),
		Members: len(a.gossip.alive()), HTTPAddr: a.advertiseHTTP(), RPCAddr: a.trans.Addr(),
		ONNXRuntime: a.models.ONNX().Name(), ONNXRuntimeVersion: a.models.ONNX().Version(),
	}
	st.Term = parseUint(stats["term"])
	if a.raft.State() != raft.Leader {
		if lc := a.raft.LastContact(); !lc.IsZero() {
			st.LastContactMS = time.Since(lc).Milliseconds()
		}
	}
	if f := a.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				st.Voters++
			}
		}
	}
	writeJSON(w, http.StatusOK, st)
}

// MemberResponse is one entry of GET /v1/members.
type MemberResponse struct {
	Name     string `json:"name"`
	ID       string `json:"id"`
	Addr     string `json:"addr"`
	Status   string `json:"status"`
	RPCAddr  string `json:"rpc_addr"`
	HTTPAddr string `json:"http_addr"`
	Version  string `json:"version"`
}

func (a *Agent) handleMembers(w http.ResponseWriter, r *http.Request) {
	ms := a.gossip.all()
	out := make([]MemberResponse, 0, len(ms))
	for _, m := range ms {
		out = append(out, MemberResponse{Name: m.Name, ID: m.Meta.ID, Addr: m.Addr, Status: m.Status,
			RPCAddr: m.Meta.RPCAddr, HTTPAddr: m.Meta.HTTPAddr, Version: m.Meta.Version})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, http.StatusOK, map[string]any{"items": out})
}

// NodeResponse is a registry node record with its gossip status and what
// the capacity ledger holds of it.
type NodeResponse struct {
	structs.Node
	Status string  `json:"status"`
	Use    NodeUse `json:"use"`
}

// NodeUse is what placed and running jobs and serving replicas hold of a
// node, as the leader places against it: CPU (jobs declare it; replicas do
// not), memory, and each GPU with its holder.
type NodeUse struct {
	CPU      float64  `json:"cpu"`
	MemoryMB int64    `json:"memory_mb"`
	GPUs     []GPUUse `json:"gpus"`
}

// GPUUse names what holds one GPU: a job's member or a model's replica.
type GPUUse struct {
	Index      int    `json:"index"`
	JobID      string `json:"job_id,omitempty"`
	JobName    string `json:"job_name,omitempty"`
	Rank       int    `json:"rank,omitempty"`
	Deployment string `json:"deployment,omitempty"`
	Version    uint64 `json:"version,omitempty"`
	Allocation string `json:"allocation,omitempty"`
}

// nodeUse adds up the ledger per node.
func nodeUse(txn *raftfsm.Txn) (map[string]*NodeUse, error) {
	use := map[string]*NodeUse{}
	get := func(id string) *NodeUse {
		if use[id] == nil {
			use[id] = &NodeUse{GPUs: []GPUUse{}}
		}
		return use[id]
	}
	jobs, err := txn.JobAllocations()
	if err != nil {
		return nil, err
	}
	names := map[string]string{} // job ID → name
	for _, j := range jobs {
		u := get(j.NodeID)
		u.CPU += j.CPU
		u.MemoryMB += j.MemoryMB
		if _, ok := names[j.JobID]; !ok && len(j.GPUs) > 0 {
			if job, err := txn.Job(j.JobID); err == nil {
				names[j.JobID] = job.Spec.Name
			}
		}
		for _, g := range j.GPUs {
			u.GPUs = append(u.GPUs, GPUUse{Index: g, JobID: j.JobID, JobName: names[j.JobID], Rank: j.Rank})
		}
	}
	replicas, err := txn.Allocations()
	if err != nil {
		return nil, err
	}
	for _, r := range replicas {
		if r.State == structs.AllocFailed {
			continue
		}
		u := get(r.NodeID)
		u.MemoryMB += r.MemoryMB
		for _, g := range r.GPUs {
			u.GPUs = append(u.GPUs, GPUUse{Index: g, Deployment: r.Deployment, Version: r.Version, Allocation: r.ID})
		}
	}
	for _, u := range use {
		slices.SortFunc(u.GPUs, func(x, y GPUUse) int { return cmp.Compare(x.Index, y.Index) })
	}
	return use, nil
}

func (a *Agent) handleNodes(w http.ResponseWriter, r *http.Request) {
	txn, err := a.readTxn(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	defer txn.Discard()
	nodes, err := txn.Nodes()
	if err != nil {
		writeError(w, err)
		return
	}
	use, err := nodeUse(txn)
	if err != nil {
		writeError(w, err)
		return
	}
	status := map[string]string{}
	for _, m := range a.gossip.all() {
		status[m.Meta.ID] = m.Status
	}
	out := make([]NodeResponse, 0, len(nodes))
	for _, n := range nodes {
		s := status[n.ID]
		if s == "" {
			s = "unknown"
		}
		nr := NodeResponse{Node: *n, Status: s, Use: NodeUse{GPUs: []GPUUse{}}}
		if u := use[n.ID]; u != nil {
			nr.Use = *u
		}
		out = append(out, nr)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": out})
}

// PeerResponse is one Raft server in GET /v1/operator/raft/peers.
type PeerResponse struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
}

func (a *Agent) handlePeers(w http.ResponseWriter, r *http.Request) {
	f := a.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		writeError(w, structs.Errorf(structs.CodeUnavailable, "raft configuration: %v", err))
		return
	}
	names := map[string]string{}
	for _, m := range a.gossip.all() {
		names[m.Meta.ID] = m.Name
	}
	txn := a.fsm.ReadTxn()
	if nodes, err := txn.Nodes(); err == nil {
		for _, n := range nodes {
			if names[n.ID] == "" {
				names[n.ID] = n.Name
			}
		}
	}
	txn.Discard()
	_, leaderID := a.raft.LeaderWithID()
	out := []PeerResponse{}
	for _, s := range f.Configuration().Servers {
		out = append(out, PeerResponse{
			ID: string(s.ID), Name: names[string(s.ID)], Address: string(s.Address),
			Suffrage: s.Suffrage.String(), Voter: s.Suffrage == raft.Voter, Leader: s.ID == leaderID,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, http.StatusOK, map[string]any{"items": out})
}

func (a *Agent) handleRemovePeer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := a.removePeer(r.Context(), id); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"removed": id})
}

// faultRequest is PUT /v1/debug/faults: delay or drop this node's transport
// traffic with one peer host (an IP). Only served with enable_debug = true.
type faultRequest struct {
	Host    string `json:"host"`
	Drop    bool   `json:"drop"`
	DelayMS int    `json:"delay_ms"`
}

func (a *Agent) handleSetFault(w http.ResponseWriter, r *http.Request) {
	var req faultRequest
	if err := a.decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.Host == "" {
		writeError(w, structs.Errorf(structs.CodeInvalid, "host is required"))
		return
	}
	if req.DelayMS < 0 {
		writeError(w, structs.Errorf(structs.CodeInvalid, "delay_ms must be >= 0"))
		return
	}
	a.trans.Faults().Set(req.Host, transport.Fault{Drop: req.Drop, Delay: time.Duration(req.DelayMS) * time.Millisecond})
	writeJSON(w, http.StatusOK, req)
}

func (a *Agent) handleClearFaults(w http.ResponseWriter, r *http.Request) {
	a.trans.Faults().ClearAll()
	writeJSON(w, http.StatusOK, map[string]any{"cleared": true})
}

func parseUint(s string) uint64 {
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}

// RPC methods of the operator endpoint.
const (
	rpcNodeStatus = "node.status" // health of a member, for promotion
	rpcRemovePeer = "operator.remove_peer"
)

// operatorEndpoint: the cluster's status, members and nodes, Raft peers, the
// gossip keyring, /metrics, and with enable_debug the fault injection and
// pprof routes.
func (a *Agent) operatorEndpoint() endpoint {
	n, o := structs.KindNode, structs.KindOperator
	e := endpoint{
		routes: []route{
			{pattern: "GET /v1/status", handler: a.handleStatus, kind: n, need: needRead},
			{pattern: "GET /v1/members", handler: a.handleMembers, kind: n, need: needRead},
			{pattern: "GET /v1/nodes", handler: a.handleNodes, kind: n, need: needRead},
			{pattern: "GET /v1/nodes/gpus/timeseries", handler: a.handleGPUSeries, kind: n, need: needRead},
			{pattern: "GET /v1/events", handler: a.handleEvents, kind: n, need: needRead},
			{pattern: "GET /metrics", handler: a.metricsHandler().ServeHTTP, kind: n, need: a.metricsNeed()},
			{pattern: "GET /v1/operator/raft/peers", handler: a.handlePeers, kind: o, need: needRead},
			{pattern: "DELETE /v1/operator/raft/peers/{id}", handler: a.handleRemovePeer, kind: o, need: needWrite},
			// Keyring: GET lists, POST installs, PUT makes primary, DELETE removes.
			{pattern: "GET /v1/operator/keyring", handler: a.handleKeyring(keyringList), kind: o, need: needWrite},
			{pattern: "POST /v1/operator/keyring", handler: a.handleKeyring(keyringInstall), kind: o, need: needWrite},
			{pattern: "PUT /v1/operator/keyring", handler: a.handleKeyring(keyringUse), kind: o, need: needWrite},
			{pattern: "DELETE /v1/operator/keyring", handler: a.handleKeyring(keyringRemove), kind: o, need: needWrite},
		},
		rpcs: map[string]transport.Handler{
			rpcKeyring:   a.handleKeyringRPC,
			rpcEvents:    a.handleEventsRPC,
			rpcGPUSeries: a.handleGPUSeriesRPC,
			rpcNodeStatus: func(ctx context.Context, dec transport.Decoder) (any, error) {
				return &nodeStatusReply{
					ID: a.id, AppliedIndex: a.fsm.AppliedIndex(), LastIndex: a.raft.LastIndex(), State: a.raft.State().String(),
				}, nil
			},
			rpcRemovePeer: func(ctx context.Context, dec transport.Decoder) (any, error) {
				var args removePeerArgs
				if err := dec.Decode(&args); err != nil {
					return nil, structs.Errorf(structs.CodeInvalid, "node: bad remove_peer request: %v", err)
				}
				return struct{}{}, a.removePeerLocal(args.ID)
			},
		},
	}
	if a.cfg.EnableDebug {
		e.routes = append(e.routes,
			route{pattern: "PUT /v1/debug/faults", handler: a.handleSetFault, kind: o, need: needWrite},
			route{pattern: "DELETE /v1/debug/faults", handler: a.handleClearFaults, kind: o, need: needWrite},
			route{pattern: "/debug/pprof/", handler: pprof.Index, kind: o, need: needWrite},
			route{pattern: "/debug/pprof/profile", handler: pprof.Profile, kind: o, need: needWrite},
		)
	}
	return e
}

func (a *Agent) metricsNeed() need {
	if a.cfg.ACL.MetricsAnonymous {
		return needNone
	}
	return needRead
}

// removePeer removes a server from the Raft configuration through the leader.
func (a *Agent) removePeer(ctx context.Context, id string) error {
	deadline := time.Now().Add(leaderWait)
	for {
		var err error
		if a.raft.State() == raft.Leader {
			err = a.removePeerLocal(id)
		} else if addr, _ := a.raft.LeaderWithID(); addr == "" {
			err = errNoLeaderYet
		} else if cerr := a.trans.Call(ctx, string(addr), rpcRemovePeer, &removePeerArgs{ID: id}, &struct{}{}); cerr != nil {
			err = fromTransport(cerr)
		}
		if !retryable(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (a *Agent) removePeerLocal(id string) error {
	if a.raft.State() != raft.Leader {
		return structs.Errorf(structs.CodeNotLeader, "node: not the leader")
	}
	f := a.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return structs.Errorf(structs.CodeUnavailable, "node: %v", err)
	}
	found := false
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			found = true
		}
	}
	if !found {
		return structs.Errorf(structs.CodeNotFound, "node: no raft peer with id %q", id)
	}
	if err := a.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error(); err != nil {
		return structs.Errorf(structs.CodeUnavailable, "node: remove peer %s: %v", id, err)
	}
	return nil
}

type nodeStatusArgs struct{}

type nodeStatusReply struct {
	ID           string `msgpack:"id"`
	AppliedIndex uint64 `msgpack:"applied_index"`
	LastIndex    uint64 `msgpack:"last_index"`
	State        string `msgpack:"state"`
}

type removePeerArgs struct {
	ID string `msgpack:"id"`
}
