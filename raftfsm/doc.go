// Package raftfsm is the registry state machine of a Kiln node: the raft.FSM (and
// raft.BatchingFSM) that turns committed Raft log entries into records in a local
// Badger database, and the read API the rest of the node answers from.
//
// A log entry is one structs.MessageType byte and a msgpack body. Message types are
// declared once, in structs, in ranges reserved per capability; here one command
// table maps each type to its handler, filled by one registration per capability
// (<capability>_apply.go; reads are in <capability>_read.go), and a duplicate, a
// stray type or a known type without a handler stops the binary at init. Each entity
// (a kind of record) names its key prefix, its snapshot frame and its table, so a new
// kind of record is new handlers and a new entity, nothing else.
//
// Each batch of entries is one Badger transaction that also records the applied
// Raft index, which makes replay after a restart idempotent. FSM.Index(tables...)
// reports, per table, the index of the last batch that changed it, so caches can
// key on just what they read. Apply re-checks placements against the state it
// applies to, so a late or duplicate plan never double-books a GPU. Readers take a
// consistent view with ReadTxn; WaitForIndex and Changed let them wait for the state
// to move. Snapshot and Restore stream the state as typed msgpack frames, and
// Restore loads into a fresh database before swapping it in, so a bad snapshot never
// damages the current state. DESIGN.md says why.
package raftfsm
