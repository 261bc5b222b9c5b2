package raftfsm

import "errors"

// Errors returned by this package. Rejected commands are not among them: Apply
// returns those as *structs.CodedError results, so that they cross the RPC boundary
// with their code.
var (
	// ErrClosed is returned by operations on an FSM after Close.
	ErrClosed = errors.New("raftfsm: closed")

	// ErrTxnDiscarded is returned by the methods of a Txn after Discard.
	ErrTxnDiscarded = errors.New("raftfsm: read transaction discarded")

	// ErrCorruptSnapshot wraps every reason Restore rejects a snapshot stream:
	// truncation, a bad frame, a checksum mismatch, an unknown format version.
	ErrCorruptSnapshot = errors.New("raftfsm: corrupt snapshot")

	// ErrInvalidSnapshot wraps every reason ValidateSnapshot rejects a record of
	// a well-formed stream: one that breaks the rules the API applies, or that
	// refers to a record the snapshot does not have.
	ErrInvalidSnapshot = errors.New("raftfsm: invalid snapshot")
)
