// Package raftfsm is the registry state machine of a Kiln node: the raft.FSM (and
// raft.BatchingFSM) that turns committed Raft log entries into records in a local
// Badger database, and the read API the rest of the node answers from.
//
// A log entry is one structs.MessageType byte and a msgpack body; a table maps each
// type to the handler that applies it, so a new kind of record is a new handler and a
// new entity in that table, nothing else. Each batch of entries is one Badger
// transaction that also records the applied Raft index, which makes replay after a
// restart idempotent. Readers take a consistent view with ReadTxn; WaitForIndex and
// Changed let them wait for the state to move. Snapshot and Restore stream the state
// as typed msgpack frames, and Restore loads into a fresh database before swapping it
// in, so a bad snapshot never damages the current state. DESIGN.md says why.
package raftfsm
