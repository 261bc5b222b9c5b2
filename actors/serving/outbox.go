package serving

import (
	"context"
	"sync"
	"time"

	"github.com/kilnml/kiln/actors"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// PredictBatchRequest carries several independent predictions to one shard
// in one message; each item succeeds or fails on its own.
type PredictBatchRequest struct {
	Items []PredictRequest `msgpack:"items"`
}

// PredictItemReply is one item's answer: outputs, or a coded error.
type PredictItemReply struct {
	Outputs []ml.Tensor `msgpack:"outputs"`
	Code    string      `msgpack:"code,omitempty"`
	Message string      `msgpack:"message,omitempty"`
}

// PredictBatchReply answers a PredictBatchRequest, item by item, in order.
type PredictBatchReply struct {
	Items []PredictItemReply `msgpack:"items"`
}

func init() {
	actors.RegisterMessage("serving.predict_batch", &PredictBatchRequest{})
	actors.RegisterMessage("serving.predict_batch_reply", &PredictBatchReply{})
}

// An outbox coalesces the requests this node sends to one remote replica:
// while up to outboxSenders messages are in flight, new requests queue, and
// the next message carries everything queued (up to the deployment's
// max_batch, and at least outboxMinItems). This is not the deployment's
// batching: the shard still scores the requests of one message separately
// unless the deployment batches, and they merge with its other requests
// there. Nothing waits on purpose: a request goes out as soon as
// a sender is free, so an idle replica sees no added latency, and a busy one
// gets one message per round trip instead of one per request. Every message
// and syscall saved on the way is CPU the replica's node can spend scoring.
const outboxSenders = 2

// outboxMinItems is how many requests one message may carry when the
// deployment does not batch.
const outboxMinItems = 64

// outboxQueueBatches bounds an outbox's queue to that many messages' worth
// of requests: outboxQueueBatches times its max, which the router makes at
// least outboxMinItems, so 512 requests or more. A request beyond it is
// refused at once with ErrOverloaded rather than queued: a replica that far
// behind will not answer it soon, and an unbounded queue would only grow
// this node's memory while another replica, or the client's retry, could
// serve it.
const outboxQueueBatches = 8

// outboxTimeout bounds one coalesced message when its requests carry no
// deadline.
const outboxTimeout = time.Minute

type outboxItem struct {
	ctx    context.Context
	inputs []ml.Tensor
	done   chan outboxResult // buffered 1
}

type outboxResult struct {
	outputs []ml.Tensor
	err     error
}

type outbox struct {
	sys   *actors.System
	ref   actors.Ref
	max   int
	model string
	wg    *sync.WaitGroup // the router's: Close waits for flushes

	mu      sync.Mutex
	queue   []*outboxItem // guarded by mu; at most maxQueued() long
	senders int           // guarded by mu
}

// send queues one request and waits for its answer. A full queue refuses
// the request at once with ErrOverloaded.
func (o *outbox) send(ctx context.Context, inputs []ml.Tensor) ([]ml.Tensor, error) {
	it := &outboxItem{ctx: ctx, inputs: inputs, done: make(chan outboxResult, 1)}
	o.mu.Lock()
	if len(o.queue) >= o.maxQueued() {
		o.mu.Unlock()
		return nil, ErrOverloaded
	}
	o.queue = append(o.queue, it)
	start := o.senders < outboxSenders
	if start {
		o.senders++
	}
	o.mu.Unlock()
	if start {
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			o.flush()
		}()
	}
	select {
	case res := <-it.done:
		return res.outputs, res.err
	case <-ctx.Done():
		return nil, codedError(ctx.Err())
	}
}

// maxQueued is how many requests may wait in the queue.
func (o *outbox) maxQueued() int { return outboxQueueBatches * o.max }

// flush sends what is queued, message after message, until the queue is
// empty.
func (o *outbox) flush() {
	for {
		o.mu.Lock()
		if len(o.queue) == 0 {
			o.senders--
			o.mu.Unlock()
			return
		}
		n := min(len(o.queue), o.max)
		batch := o.queue[:n:n]
		o.queue = append([]*outboxItem(nil), o.queue[n:]...)
		o.mu.Unlock()
		o.sendBatch(batch)
	}
}

func (o *outbox) sendBatch(batch []*outboxItem) {
	req := &PredictBatchRequest{Items: make([]PredictRequest, 0, len(batch))}
	live := batch[:0:0]
	deadline := time.Now().Add(outboxTimeout)
	for _, it := range batch {
		if err := it.ctx.Err(); err != nil {
			it.done <- outboxResult{err: codedError(err)}
			continue
		}
		if d, ok := it.ctx.Deadline(); ok && d.After(deadline) {
			deadline = d
		}
		live = append(live, it)
		req.Items = append(req.Items, PredictRequest{Inputs: it.inputs})
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	reply, err := o.sys.Ask(ctx, o.ref, req)
	if err == nil {
		br, ok := reply.(*PredictBatchReply)
		if !ok || len(br.Items) != len(live) {
			err = structs.Errorf(structs.CodeInternal, "replica %s answered %T to a batch of %d", o.ref.ID, reply, len(live))
		} else {
			for i, it := range live {
				r := br.Items[i]
				if r.Code != "" {
					it.done <- outboxResult{err: &structs.CodedError{Code: r.Code, Message: r.Message}}
				} else {
					it.done <- outboxResult{outputs: r.Outputs}
				}
			}
			return
		}
	}
	for _, it := range live {
		it.done <- outboxResult{err: err}
	}
}
