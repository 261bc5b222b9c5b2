package serving

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kilnml/kiln/actors"
	"github.com/kilnml/kiln/ml"
)

// pending is one queued request and where its answer goes.
type pending struct {
	ctx    context.Context
	inputs []ml.Tensor
	rows   int // batch size: the first dimension shared by every input
	done   chan PredictReply
	err    chan error
}

// batcher scores requests on a fixed set of worker goroutines, merging the
// requests that queue up together into one model call when batching is on.
//
// Merging needs requests whose inputs agree in names and in every dimension
// but the first; a request that does not fit the batch being built is scored
// on its own. A worker waits at most maxWait for a batch to fill, and only
// while the queue is empty: under load, batches fill without waiting.
type batcher struct {
	model    ml.Model
	maxBatch int
	maxWait  time.Duration

	queue    chan *pending
	inFlight atomic.Int64
	served   atomic.Int64

	// onPanic, when set, is told of every panic a model call raised; the
	// shard logs the stack there (the client only gets the panic value).
	onPanic atomic.Pointer[func(*ml.PanicError)]

	closeMu sync.RWMutex
	closed  bool // guarded by closeMu: submit refuses work

	stop chan struct{}
	wg   sync.WaitGroup
}

// guard is ml.Guard that reports a panic to onPanic.
func (b *batcher) guard(ctx context.Context, inputs []ml.Tensor) ([]ml.Tensor, error) {
	out, err := ml.Guard(ctx, b.model, inputs)
	var pe *ml.PanicError
	if errors.As(err, &pe) {
		if f := b.onPanic.Load(); f != nil {
			(*f)(pe)
		}
	}
	return out, err
}

func newBatcher(m ml.Model, workers, queue, maxBatch int, maxWait time.Duration) *batcher {
	b := &batcher{
		model:    m,
		maxBatch: max(maxBatch, 1),
		maxWait:  maxWait,
		queue:    make(chan *pending, queue),
		stop:     make(chan struct{}),
	}
	for range max(workers, 1) {
		b.wg.Add(1)
		go b.work()
	}
	return b
}

// submit queues a request without blocking; a full queue is actors.ErrBusy.
func (b *batcher) submit(ctx context.Context, inputs []ml.Tensor) (*pending, error) {
	rows, err := batchRows(inputs)
	if err != nil {
		return nil, err
	}
	p := &pending{ctx: ctx, inputs: inputs, rows: rows, done: make(chan PredictReply, 1), err: make(chan error, 1)}
	// The read lock orders this against close: a request is either queued
	// before close drains the queue, or refused.
	b.closeMu.RLock()
	defer b.closeMu.RUnlock()
	if b.closed {
		return nil, fmt.Errorf("%w: replica closed", actors.ErrStopped)
	}
	select {
	case b.queue <- p:
		b.inFlight.Add(1)
		return p, nil
	default:
		return nil, fmt.Errorf("%w: replica queue full (%d waiting)", actors.ErrBusy, cap(b.queue))
	}
}

// wait returns the answer to p.
func (p *pending) wait(ctx context.Context) (any, error) {
	select {
	case r := <-p.done:
		return &r, nil
	case err := <-p.err:
		return nil, codedError(err)
	case <-ctx.Done():
		return nil, codedError(ctx.Err())
	}
}

// waitUntil is wait that gives up at deadline too, with
// context.DeadlineExceeded. The request's own context carries no deadline:
// a timer per request from context.WithDeadline costs the hot path four
// allocations, where a pooled one costs none.
func (p *pending) waitUntil(ctx context.Context, deadline time.Time) (any, error) {
	t := timerPool.Get().(*time.Timer)
	t.Reset(time.Until(deadline))
	defer func() {
		t.Stop() // timer channels are synchronous (Go 1.23+): nothing stale is left to receive
		timerPool.Put(t)
	}()
	select {
	case r := <-p.done:
		return &r, nil
	case err := <-p.err:
		return nil, codedError(err)
	case <-ctx.Done():
		return nil, codedError(ctx.Err())
	case <-t.C:
		return nil, codedError(context.DeadlineExceeded)
	}
}

// timerPool holds stopped timers for waitUntil.
var timerPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

// close stops the workers once they finish what they hold; requests still
// queued are answered with actors.ErrStopped.
func (b *batcher) close() {
	b.closeMu.Lock()
	b.closed = true
	b.closeMu.Unlock()
	close(b.stop)
	b.wg.Wait()
	for {
		select {
		case p := <-b.queue:
			p.err <- actors.ErrStopped
		default:
			return
		}
	}
}

func (b *batcher) work() {
	defer b.wg.Done()
	for {
		// A stop is served before the queue: close answers what is left.
		select {
		case <-b.stop:
			return
		default:
		}
		var first *pending
		select {
		case <-b.stop:
			return
		case first = <-b.queue:
		}
		batch, next := b.fill(first)
		b.score(batch)
		b.done(len(batch))
		if next != nil {
			b.score([]*pending{next})
			b.done(1)
		}
	}
}

func (b *batcher) done(n int) {
	b.inFlight.Add(-int64(n))
	b.served.Add(int64(n))
}

// fill gathers requests compatible with first, up to maxBatch rows. next is
// a request taken from the queue that did not fit; it is to be scored next.
func (b *batcher) fill(first *pending) (batch []*pending, next *pending) {
	batch = []*pending{first}
	if b.maxBatch <= 1 || first.rows >= b.maxBatch {
		return batch, nil
	}
	rows := first.rows
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for rows < b.maxBatch {
		var p *pending
		select {
		case p = <-b.queue:
		default:
			if b.maxWait <= 0 {
				return batch, nil
			}
			if timer == nil {
				timer = time.NewTimer(b.maxWait)
			}
			select {
			case p = <-b.queue:
			case <-timer.C:
				return batch, nil
			case <-b.stop:
				return batch, nil
			}
		}
		if rows+p.rows > b.maxBatch || !mergeable(first.inputs, p.inputs) {
			return batch, p
		}
		batch = append(batch, p)
		rows += p.rows
	}
	return batch, nil
}

// score runs a batch through one model call and answers each request with
// its own rows of the outputs.
func (b *batcher) score(batch []*pending) {
	live := batch[:0:0]
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			p.err <- err // its asker has gone: do not score it
			continue
		}
		live = append(live, p)
	}
	if len(live) == 0 {
		return
	}
	if len(live) == 1 {
		out, err := b.guard(live[0].ctx, live[0].inputs)
		if err != nil {
			live[0].err <- err
			return
		}
		live[0].done <- PredictReply{Outputs: out}
		return
	}
	merged, total := mergeInputs(live)
	out, err := b.guard(context.Background(), merged)
	if err == nil {
		err = checkBatchOutputs(out, total)
	}
	if err != nil {
		// One bad request must not fail its neighbours: score each alone.
		for _, p := range live {
			b.score([]*pending{p})
		}
		return
	}
	off := 0
	for _, p := range live {
		p.done <- PredictReply{Outputs: sliceRows(out, off, p.rows, total)}
		off += p.rows
	}
}

// batchRows is the first dimension every input shares: the request's rows.
func batchRows(inputs []ml.Tensor) (int, error) {
	if len(inputs) == 0 {
		return 0, fmt.Errorf("%w: no inputs", ml.ErrBadInput)
	}
	rows := -1
	for _, t := range inputs {
		if err := t.Check(); err != nil {
			return 0, err
		}
		if len(t.Shape) == 0 {
			return 0, fmt.Errorf("%w: input %q is a scalar; it needs a batch dimension", ml.ErrBadInput, t.Name)
		}
		if rows >= 0 && t.Shape[0] != rows {
			return 0, fmt.Errorf("%w: input %q has %d rows, another input has %d", ml.ErrBadInput, t.Name, t.Shape[0], rows)
		}
		rows = t.Shape[0]
	}
	return rows, nil
}

// mergeable reports whether two requests' inputs can be concatenated along
// the batch dimension.
func mergeable(a, b []ml.Tensor) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || len(a[i].Shape) != len(b[i].Shape) || !slices.Equal(a[i].Shape[1:], b[i].Shape[1:]) {
			return false
		}
	}
	return true
}

func mergeInputs(batch []*pending) ([]ml.Tensor, int) {
	total := 0
	for _, p := range batch {
		total += p.rows
	}
	first := batch[0].inputs
	merged := make([]ml.Tensor, len(first))
	for i, t := range first {
		shape := slices.Clone(t.Shape)
		shape[0] = total
		data := make([]float64, 0, len(t.Data)/max(t.Shape[0], 1)*total)
		for _, p := range batch {
			data = append(data, p.inputs[i].Data...)
		}
		merged[i] = ml.Tensor{Name: t.Name, Shape: shape, Data: data}
	}
	return merged, total
}

// checkBatchOutputs makes sure every output has the batch as its first
// dimension, which splitting relies on.
func checkBatchOutputs(out []ml.Tensor, rows int) error {
	for _, t := range out {
		if len(t.Shape) == 0 || t.Shape[0] != rows || t.Check() != nil {
			return fmt.Errorf("%w: output %q has shape %v, not a batch of %d", ml.ErrRuntime, t.Name, t.Shape, rows)
		}
	}
	return nil
}

// sliceRows cuts rows [off, off+n) out of each output.
func sliceRows(out []ml.Tensor, off, n, total int) []ml.Tensor {
	res := make([]ml.Tensor, len(out))
	for i, t := range out {
		per := len(t.Data) / total
		shape := slices.Clone(t.Shape)
		shape[0] = n
		res[i] = ml.Tensor{Name: t.Name, Shape: shape, Data: t.Data[off*per : (off+n)*per]}
	}
	return res
}
