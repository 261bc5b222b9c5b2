package node

import (
	"context"
	"errors"
	"reflect"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// RPC methods served by every node over the transport.
const (
	rpcReadIndex = "registry.read_index" // the leader's applied index, for consistent reads
)

type readIndexArgs struct{}

type readIndexReply struct {
	Index uint64 `msgpack:"index"`
}

// registryEndpoint serves what other nodes ask of the registry: forwarded
// writes (forward.go) and the leader's read index for consistent reads.
func (a *Agent) registryEndpoint() endpoint {
	return endpoint{rpcs: map[string]transport.Handler{
		rpcApplyBatch: a.handleApplyBatch,
		rpcReadIndex: func(ctx context.Context, dec transport.Decoder) (any, error) {
			idx, err := a.leaderReadIndex()
			if err != nil {
				return nil, err
			}
			return &readIndexReply{Index: idx}, nil
		},
	}}
}

// leaderReadIndex returns an index that covers every write acknowledged before the
// call: the leader's applied index, read before VerifyLeader confirms that no newer
// leader could have acknowledged writes meanwhile.
func (a *Agent) leaderReadIndex() (uint64, error) {
	if !a.leaderReady.Load() {
		return 0, structs.Errorf(structs.CodeNotLeader, "node: not an established leader")
	}
	idx := a.fsm.AppliedIndex()
	if err := a.raft.VerifyLeader().Error(); err != nil {
		return 0, structs.Errorf(structs.CodeNotLeader, "node: leadership not verified: %v", err)
	}
	return idx, nil
}

// applyLocal commits an entry through the leader's group committer and waits
// until it is applied. It returns the FSM's result for the entry.
func (a *Agent) applyLocal(ctx context.Context, data []byte) (uint64, any, error) {
	return a.committer.apply(ctx, data)
}

// leaderWait bounds how long a request waits for a leader before it fails with 503.
// It covers an election after a leader dies (a few seconds with default timeouts).
const leaderWait = 7 * time.Second

// propose encodes and applies a command through the leader, forwarding it when
// this node is not the leader, and returns the index it committed at. When out is
// not nil, the FSM's result (the stored record) is stored in it, so a follower can
// answer a write without waiting for its own FSM to catch up. A write is retried
// only when it surely was not delivered (no leader yet, leader unreachable, or the
// target was not the leader), so no write is applied twice.
func (a *Agent) propose(ctx context.Context, t structs.MessageType, cmd any, out any) (uint64, error) {
	data, err := structs.Encode(t, cmd)
	if err != nil {
		return 0, err
	}
	return a.proposeEncoded(ctx, data, out)
}

// proposeEncoded is propose for a command already encoded (structs.Encode),
// for a caller that had to encode it anyway (to know its size).
func (a *Agent) proposeEncoded(ctx context.Context, data []byte, out any) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, leaderWait+10*time.Second)
	defer cancel()
	giveUp := time.Now().Add(leaderWait)
	for {
		idx, err := a.proposeOnce(ctx, data, out)
		if !retryable(err) {
			return idx, err
		}
		if time.Now().After(giveUp) {
			return 0, structs.Errorf(structs.CodeNoLeader, "node: no leader available")
		}
		select {
		case <-ctx.Done():
			return 0, structs.Errorf(structs.CodeNoLeader, "node: no leader available: %v", ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

var errNoLeaderYet = structs.Errorf(structs.CodeNoLeader, "node: no leader")

func (a *Agent) proposeOnce(ctx context.Context, data []byte, out any) (uint64, error) {
	if a.raft.State() == raft.Leader {
		idx, res, err := a.applyLocal(ctx, data)
		if err == nil && out != nil && res != nil {
			err = setResult(out, res)
		}
		return idx, err
	}
	if addr, _ := a.raft.LeaderWithID(); addr == "" {
		return 0, errNoLeaderYet
	}
	res, err := a.forwarder.forward(ctx, data)
	if err != nil {
		return 0, err
	}
	return decodeEntryResult(res, out)
}

// setResult copies a local FSM result into out when the types match (*T into *T).
func setResult(out, res any) error {
	ov, rv := reflect.ValueOf(out), reflect.ValueOf(res)
	if ov.Kind() != reflect.Pointer || ov.Type() != rv.Type() {
		return structs.Errorf(structs.CodeInternal, "node: apply result is %T, caller wants %T", res, out)
	}
	ov.Elem().Set(rv.Elem())
	return nil
}

// retryable reports errors that prove the write was not applied.
func retryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, transport.ErrUnreachable) {
		return true
	}
	switch structs.ErrorCode(err) {
	case structs.CodeNotLeader, structs.CodeNoLeader:
		return true
	}
	return false
}

// fromTransport turns a transport error into a CodedError: a remote error keeps its
// code, an unreachable peer stays recognisable for retry, other failures are 503.
func fromTransport(err error) error {
	var re *transport.RemoteError
	if errors.As(err, &re) {
		return &structs.CodedError{Code: re.Code, Message: re.Message}
	}
	if errors.Is(err, transport.ErrUnreachable) {
		return err
	}
	return structs.Errorf(structs.CodeUnavailable, "node: leader connection failed, outcome unknown: %v", err)
}
