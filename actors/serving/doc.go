// Package serving runs models for inference on the cluster (DESIGN.md §6):
// placement of replicas, the shard actor that holds one loaded replica, the
// per-node reconciler that starts and stops shard actors, and the ingress
// router that every node uses to answer a prediction.
//
// The flow of one request: the node that receives it asks the Router, which
// reads the deployment from the local registry (cached until the registry's
// applied index moves), picks a version by weight (sticky on the request's
// routing key), picks a running replica of that version by
// power-of-two-choices on its own in-flight counts (a replica on this node
// wins unless it is much busier), and calls it. A local replica is called
// through LocalShards, straight into its batcher; a remote one through its
// shard actor over the transport, where an outbox coalesces the requests that
// queue up while earlier messages to that replica are in flight into one
// PredictBatchRequest (no waiting on purpose: a message leaves as soon as a
// sender is free). An outbox holds a bounded number of requests; the next
// one is refused at once with ErrOverloaded (busy). A replica that is
// unreachable, busy or gone is retried once on another replica, and marked
// down for a moment so the next requests avoid it. A shadow version gets a
// copy of the request; nobody waits for its answer. A prediction gives up at
// its deployment's timeout_ms (RouterConfig.PredictTimeout when unset): a
// local wait uses a pooled timer, a remote call carries the deadline in its
// context for the transport. Once the registry no
// longer has a replica, version or model, the router forgets what it kept
// for it (in-flight counts, down marks, outboxes, cached routes, the
// version's metrics).
//
// A shard actor owns one loaded model. It does not score on its own
// goroutine: Receive queues the request with the shard's batcher and answers
// with an actors.Deferred, so the mailbox keeps flowing while workers score.
// The batcher merges requests that arrive together, up to the deployment's
// max_batch rows or max_wait, into one call of the model, then splits the
// outputs back. A full queue answers actors.ErrBusy, which the router turns
// into a retry elsewhere and, failing that, 429 (CodeBusy).
//
// Desired state lives in Raft. The leader's placement (Plan, a pure function
// of the registry and membership) writes allocations: which replica runs on
// which node, spread across nodes and within each node's memory and GPUs. A
// replica on a node that is gone, or that failed, is removed and placed
// again. Each node's Reconciler diffs the allocations assigned to it against
// its running shard actors, and reports each replica's state back through
// Raft in batches. The work directory of a replica whose allocation is gone
// from the node is removed, logs included, and so, on the first pass, are
// those left by replicas that went while the node was down. A shard actor's Ref carries the allocation's create index
// as its generation, so a Ref to a replaced replica fails instead of
// reaching its successor.
//
// A process version runs a user's command, so a node runs one only where its
// own exec {} config allows it (as Nomad's raw_exec does). Placement puts such
// a replica only on nodes whose registry record allows the command's first
// word (CanRun); when no alive node does, UnplacedReason says so. The node
// checks again with its live config (ExecPolicy) before it fetches or starts
// anything, because the registry can be written around placement (a raw
// write, a restored snapshot). The server's environment is the version's env
// plus Kiln's own variables, nothing of the agent's; a version may set PATH
// or LD_* only where exec.allowed_env lists it, and with exec.user the server
// runs as that account.
// These checks, the server's process group, user and parent-death signal,
// and its size-capped log are actors/internal/proc's, which training's jobs
// share.
//
// The package declares the small interfaces it needs from the node (State,
// Proposer, BlobSource); the node satisfies them. It imports ml for the
// runtimes and raftfsm/structs for the registry's records, nothing else of
// Kiln's but actors, actors/internal/proc and transport.
package serving
