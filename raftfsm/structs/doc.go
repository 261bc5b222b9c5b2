// Package structs holds the wire types of the Kiln registry: the entities stored in
// the replicated state (nodes, models, and later versions, deployments, jobs ...),
// the commands that change them, and the framing of a Raft log entry.
//
// It is a leaf package: raftfsm, node, actors and the CLI all import it, and it
// imports none of them. A log entry is one MessageType byte followed by the msgpack
// encoding of the command. MessageType values are append-only: a value, once
// shipped, keeps its meaning forever, because old log entries and snapshots hold it.
//
// Commands carry every non-deterministic input (times, generated IDs) stamped by the
// proposer, so that applying the same entry on every node gives the same state.
package structs
