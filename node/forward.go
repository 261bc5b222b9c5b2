package node

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// Forwarded writes are batched: while a batch RPC to the leader is in flight, new
// writes queue, and the next RPC carries all of them. Under load one RPC carries
// many writes, so the cost per write of the hop to the leader (a stream, a syscall
// or two each way) shrinks as load grows, while a lone write still goes at once.
// The leader appends a batch's entries together, so they usually share one Raft
// log append and one fsync as well.
const (
	maxForwardBatch = 512 // writes per RPC
	// maxForwardBytes bounds the encoded writes of one RPC, well within the
	// transport's request limit (transport.DefaultMaxRequestBytes); a write
	// larger than it still goes, alone.
	maxForwardBytes    = 8 << 20
	maxForwardInflight = 4 // concurrent batch RPCs per follower
	// maxForwardQueue bounds the writes waiting for a batch RPC: four
	// batches' worth beyond those in flight. Past it a write is refused at
	// once (429) rather than queued behind a leader that cannot keep up.
	maxForwardQueue   = 4 * maxForwardBatch
	forwardRPCTimeout = 30 * time.Second
)

const rpcApplyBatch = "registry.apply_batch"

type applyBatchArgs struct {
	Entries [][]byte `msgpack:"entries"`
	// Tokens, when set, holds the caller's token secret for each entry ("" for
	// the node's own writes), for the leader to check again (acl_forward.go).
	Tokens []string `msgpack:"tokens,omitempty"`
}

// entryResult is one entry's outcome in a batch reply.
type entryResult struct {
	Index   uint64 `msgpack:"index"`
	Result  []byte `msgpack:"result"`
	Code    string `msgpack:"code"`
	Message string `msgpack:"message"`
}

type applyBatchReply struct {
	Results []entryResult `msgpack:"results"`
}

type pendingWrite struct {
	data  []byte
	token string            // the caller's token secret, "" for the node's own writes
	done  chan entryOutcome // buffered 1
}

type entryOutcome struct {
	res entryResult
	err error // transport-level failure for the whole batch
}

// forwarder queues writes bound for the leader.
type forwarder struct {
	a *Agent

	limit int // most writes queued; maxForwardQueue

	mu       sync.Mutex
	queue    []*pendingWrite // guarded by mu
	inflight int             // guarded by mu: batch RPCs running
}

// forward sends one write through the batcher and waits for its outcome.
func (f *forwarder) forward(ctx context.Context, data []byte) (entryResult, error) {
	if f.a.ctx.Err() != nil {
		return entryResult{}, structs.Errorf(structs.CodeUnavailable, "node: shutting down")
	}
	pw := &pendingWrite{data: data, token: callerToken(ctx), done: make(chan entryOutcome, 1)}
	f.mu.Lock()
	if len(f.queue) >= f.limit {
		f.mu.Unlock()
		return entryResult{}, structs.Errorf(structs.CodeOverloaded, "node: %d writes already wait for the leader; retry later", f.limit)
	}
	f.queue = append(f.queue, pw)
	if f.inflight < maxForwardInflight {
		f.inflight++
		f.a.goFunc(f.sendLoop)
	}
	f.mu.Unlock()
	select {
	case out := <-pw.done:
		return out.res, out.err
	case <-ctx.Done():
		return entryResult{}, structs.Errorf(structs.CodeUnavailable, "node: write outcome unknown: %v", ctx.Err())
	}
}

// sendLoop sends queued writes in batches until the queue is empty.
func (f *forwarder) sendLoop() {
	for {
		f.mu.Lock()
		if len(f.queue) == 0 {
			f.inflight--
			f.mu.Unlock()
			return
		}
		n, size := 0, 0
		for n < len(f.queue) && n < maxForwardBatch && (n == 0 || size+len(f.queue[n].data) <= maxForwardBytes) {
			size += len(f.queue[n].data)
			n++
		}
		batch := f.queue[:n:n]
		f.queue = f.queue[n:]
		f.mu.Unlock()
		f.send(batch)
	}
}

// send forwards one batch to the leader as known now: a loop can outlive a
// leader change while writes keep coming, so the address is looked up per batch.
func (f *forwarder) send(batch []*pendingWrite) {
	leader, _ := f.a.raft.LeaderWithID()
	if leader == "" {
		for _, pw := range batch {
			pw.done <- entryOutcome{err: errNoLeaderYet}
		}
		return
	}
	args := applyBatchArgs{Entries: make([][]byte, len(batch))}
	for i, pw := range batch {
		args.Entries[i] = pw.data
		if pw.token != "" {
			if args.Tokens == nil {
				args.Tokens = make([]string, len(batch))
			}
			args.Tokens[i] = pw.token
		}
	}
	ctx, cancel := context.WithTimeout(f.a.ctx, forwardRPCTimeout)
	defer cancel()
	var reply applyBatchReply
	err := f.a.trans.Call(ctx, string(leader), rpcApplyBatch, &args, &reply)
	if err == nil && len(reply.Results) != len(batch) {
		err = structs.Errorf(structs.CodeInternal, "node: leader answered %d results for %d writes", len(reply.Results), len(batch))
	}
	for i, pw := range batch {
		if err != nil {
			pw.done <- entryOutcome{err: fromTransport(err)}
			continue
		}
		pw.done <- entryOutcome{res: reply.Results[i]}
	}
}

// handleApplyBatch is the leader's side: every entry is handed to Raft before any
// is waited on, so they travel together.
func (a *Agent) handleApplyBatch(ctx context.Context, dec transport.Decoder) (any, error) {
	var args applyBatchArgs
	if err := dec.Decode(&args); err != nil {
		return nil, structs.Errorf(structs.CodeInvalid, "node: bad apply batch: %v", err)
	}
	if a.raft.State() != raft.Leader {
		return nil, structs.Errorf(structs.CodeNotLeader, "node: not the leader")
	}
	reply := &applyBatchReply{Results: make([]entryResult, len(args.Entries))}
	var datas [][]byte
	var pos []int
	for i, data := range args.Entries {
		if len(data) == 0 || !structs.MessageType(data[0]).Known() || structs.MessageType(data[0]) == structs.BatchType {
			reply.Results[i] = entryResult{Code: structs.CodeInvalid, Message: "node: unknown command type"}
			continue
		}
		if i < len(args.Tokens) {
			if err := a.recheckForwarded(data, args.Tokens[i]); err != nil {
				reply.Results[i] = entryResult{Code: structs.ErrorCode(err), Message: err.Error()}
				continue
			}
		}
		datas = append(datas, data)
		pos = append(pos, i)
	}
	chans := a.committer.submit(datas)
	for j, ch := range chans {
		r := &reply.Results[pos[j]]
		var out commitOutcome
		select {
		case out = <-ch:
		case <-ctx.Done():
			out.err = structs.Errorf(structs.CodeUnavailable, "node: write outcome unknown: %v", ctx.Err())
		}
		r.Index = out.index
		if out.err != nil {
			r.Code, r.Message = structs.ErrorCode(out.err), out.err.Error()
			continue
		}
		if out.res != nil {
			b, err := msgpack.Marshal(out.res)
			if err != nil {
				r.Code, r.Message = structs.CodeInternal, "node: encode apply result: "+err.Error()
				continue
			}
			r.Result = b
		}
	}
	return reply, nil
}

// applyResult waits for an apply future and classifies its error.
func applyResult(f raft.ApplyFuture) (uint64, any, error) {
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader):
			return 0, nil, structs.Errorf(structs.CodeNotLeader, "node: not the leader")
		case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
			return 0, nil, structs.Errorf(structs.CodeUnavailable, "node: leadership lost during the write; it may or may not have been applied")
		case errors.Is(err, raft.ErrEnqueueTimeout):
			return 0, nil, structs.Errorf(structs.CodeUnavailable, "node: timed out queueing the write")
		}
		return 0, nil, structs.Errorf(structs.CodeUnavailable, "node: write failed: %v", err)
	}
	res := f.Response()
	if rerr, ok := res.(error); ok && rerr != nil {
		return f.Index(), nil, rerr
	}
	return f.Index(), res, nil
}

// decodeEntryResult turns a batch reply entry into the caller's result.
func decodeEntryResult(r entryResult, out any) (uint64, error) {
	if r.Code != "" {
		return r.Index, &structs.CodedError{Code: r.Code, Message: r.Message}
	}
	if out != nil && len(r.Result) > 0 {
		if err := msgpack.Unmarshal(r.Result, out); err != nil {
			return r.Index, structs.Errorf(structs.CodeInternal, "node: decode apply result: %v", err)
		}
	}
	return r.Index, nil
}
