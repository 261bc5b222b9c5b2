package node

import (
	"context"
	"sync"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Group commit on the leader. Writes (taken locally or forwarded) queue in the
// committer; a few batch loops take everything queued and append it as ONE Raft
// entry (structs.BatchType), so one log append, one fsync per node, one
// replication round and one FSM transaction serve the whole group. With at most
// maxCommitInflight entries in flight, batches grow by themselves with load and a
// lone write still goes at once. Results come back per command, in order.
const (
	maxCommitInflight = 2
	maxCommitBatch    = 512       // commands per entry
	maxCommitBytes    = 256 << 10 // encoded command bytes per entry (bounds the Raft log cache too)
	commitTimeout     = 30 * time.Second
	// maxCommitQueue bounds the commands waiting for an entry: what every
	// follower's forwarder may have in flight, several times over. Past it
	// a command is refused at once (429).
	maxCommitQueue = 16 * maxCommitBatch
)

type commitOutcome struct {
	index uint64
	res   any
	err   error
}

type commitWaiter struct {
	data []byte
	done chan commitOutcome // buffered 1
}

type committer struct {
	a     *Agent
	limit int // most commands queued; maxCommitQueue

	mu       sync.Mutex
	queue    []*commitWaiter // guarded by mu
	inflight int             // guarded by mu
}

// submit queues commands together and returns a channel per command. The
// commands that find the queue full get an overloaded outcome at once.
func (c *committer) submit(datas [][]byte) []chan commitOutcome {
	chans := make([]chan commitOutcome, len(datas))
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, d := range datas {
		w := &commitWaiter{data: d, done: make(chan commitOutcome, 1)}
		chans[i] = w.done
		if len(c.queue) >= c.limit {
			w.done <- commitOutcome{err: structs.Errorf(structs.CodeOverloaded, "node: %d writes already wait to be committed; retry later", c.limit)}
			continue
		}
		c.queue = append(c.queue, w)
	}
	for c.inflight < maxCommitInflight && c.inflight*maxCommitBatch < len(c.queue) {
		c.inflight++
		if c.a.ctx.Err() != nil {
			c.inflight--
			break
		}
		c.a.goFunc(c.loop)
	}
	return chans
}

// apply commits one command through the group committer and waits for it.
func (c *committer) apply(ctx context.Context, data []byte) (uint64, any, error) {
	ch := c.submit([][]byte{data})[0]
	select {
	case out := <-ch:
		return out.index, out.res, out.err
	case <-ctx.Done():
		return 0, nil, structs.Errorf(structs.CodeUnavailable, "node: write outcome unknown: %v", ctx.Err())
	}
}

func (c *committer) loop() {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 || c.a.ctx.Err() != nil {
			c.inflight--
			rest := c.queue
			if c.a.ctx.Err() != nil {
				c.queue = nil
			} else {
				rest = nil
			}
			c.mu.Unlock()
			for _, w := range rest {
				w.done <- commitOutcome{err: structs.Errorf(structs.CodeUnavailable, "node: shutting down")}
			}
			return
		}
		n, size := 0, 0
		for n < len(c.queue) && n < maxCommitBatch && (n == 0 || size+len(c.queue[n].data) <= maxCommitBytes) {
			size += len(c.queue[n].data)
			n++
		}
		group := c.queue[:n:n]
		c.queue = c.queue[n:]
		c.mu.Unlock()
		c.commit(group)
	}
}

// commit appends a group as one entry and hands each command its outcome.
func (c *committer) commit(group []*commitWaiter) {
	if len(group) == 1 {
		idx, res, err := applyResult(c.a.raft.Apply(group[0].data, commitTimeout))
		group[0].done <- commitOutcome{index: idx, res: res, err: err}
		return
	}
	req := structs.BatchRequest{Entries: make([][]byte, len(group))}
	for i, w := range group {
		req.Entries[i] = w.data
	}
	data, err := structs.Encode(structs.BatchType, &req)
	if err != nil {
		for _, w := range group {
			w.done <- commitOutcome{err: err}
		}
		return
	}
	idx, res, err := applyResult(c.a.raft.Apply(data, commitTimeout))
	results, ok := res.([]interface{})
	if err == nil && (!ok || len(results) != len(group)) {
		err = structs.Errorf(structs.CodeInternal, "node: batch entry returned %T for %d commands", res, len(group))
	}
	for i, w := range group {
		if err != nil {
			w.done <- commitOutcome{err: err}
			continue
		}
		out := commitOutcome{index: idx, res: results[i]}
		if e, isErr := results[i].(error); isErr && e != nil {
			out.res, out.err = nil, e
		}
		w.done <- out
	}
}
