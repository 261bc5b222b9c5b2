// Package structs holds the wire types of the Kiln registry: the entities stored in
// the replicated state (nodes, models, versions, deployments, allocations, ACL
// records ...), the commands that change them, and the framing of a Raft log entry.
//
// It is a leaf package: raftfsm, node, actors and the CLI all import it, and it
// imports none of them. A log entry is one MessageType byte followed by the msgpack
// encoding of the command. MessageType values are append-only: a value, once
// shipped, keeps its meaning forever, because old log entries and snapshots hold it.
// They are divided into ranges, one per capability (TypeRange: registry 1-6,
// serving 7-31, training 32-63, data 64-95, pipelines 96-126); each capability's
// file (registry.go, serving.go, acl.go ...) declares its types and their names in
// one registerTypes call, which panics at init on a clash or a number outside the
// range. String and Known come from that registry.
//
// Commands carry every non-deterministic input (times, generated IDs) stamped by the
// proposer, so that applying the same entry on every node gives the same state.
package structs
