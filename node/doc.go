// Package node is the Kiln agent: it turns the HCL config into the internal
// configs of each component, owns their lifecycle, and serves the HTTP API.
//
// One Agent wires memberlist gossip (liveness and addresses), Raft over the
// registry FSM (raftfsm), the transport (one TCP port for Raft and RPC), and the
// actor system. The leader runs a reconcile loop that turns gossip membership into
// the Raft configuration; every node registers its own fingerprinted resources in
// the registry. Writes taken on a follower are forwarded to the leader in batches;
// reads are answered locally at the consistency the request asks for. Every
// HTTP route is declared in one table with the ACL resource kind and right it
// needs (http_register.go), built from one endpoint per capability
// (<capability>_endpoint.go, which also lists its RPC methods); leader-only
// loops are leader tasks (leader_<capability>.go) started and stopped with
// leadership (leader.go). Tokens are resolved by node/internal/acl; JSON
// tensors are decoded and encoded by node/internal/tensorjson; blobs are
// stored and moved by node/internal/blobs.
//
// DESIGN.md in this directory explains the choices that are not obvious from the
// code: why membership is reconciled by our own loop rather than raft-autopilot,
// how consistent reads work on followers, and why forwarded writes are batched.
package node
