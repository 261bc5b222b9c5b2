package node

import (
	"context"
	"sync"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Metric points are gathered per run before they go through Raft (DESIGN.md
// §7): a training loop that logs thousands of points a second makes a few
// entries, not thousands. A request carrying only metrics joins the run's
// open batch, which is proposed metricFlushDelay after it opened or once it
// holds MaxRunLogMetrics points; every request in it gets the batch's
// outcome. A request with params or tags is proposed alone, so that a refused
// param change fails only the request that made it.

const metricFlushDelay = 20 * time.Millisecond

// runLogger gathers metric points per run.
type runLogger struct {
	propose func(ctx context.Context, req *structs.RunLogRequest) error

	mu   sync.Mutex
	open map[string]*metricBatch // guarded by mu: run ID -> batch not yet proposed
}

type metricBatch struct {
	req  structs.RunLogRequest
	done chan struct{}
	err  error
}

func newRunLogger(propose func(ctx context.Context, req *structs.RunLogRequest) error) *runLogger {
	return &runLogger{propose: propose, open: map[string]*metricBatch{}}
}

// Log records req and returns once it is committed (or refused).
func (l *runLogger) Log(ctx context.Context, req *structs.RunLogRequest) error {
	if len(req.Params) > 0 || len(req.Tags) > 0 || len(req.DeleteTags) > 0 || len(req.Metrics) == 0 || len(req.Metrics) > structs.MaxRunLogMetrics {
		return l.propose(ctx, req)
	}
	b := l.join(req)
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// join adds req's points to the run's open batch, opening one (and its
// flush) if there is none or it is full.
func (l *runLogger) join(req *structs.RunLogRequest) *metricBatch {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.open[req.RunID]
	if b != nil && len(b.req.Metrics)+len(req.Metrics) <= structs.MaxRunLogMetrics {
		b.req.Metrics = append(b.req.Metrics, req.Metrics...)
		return b
	}
	b = &metricBatch{req: structs.RunLogRequest{RunID: req.RunID, Metrics: append([]structs.MetricPoint(nil), req.Metrics...)}, done: make(chan struct{})}
	l.open[req.RunID] = b
	time.AfterFunc(metricFlushDelay, func() { l.flush(b) })
	return b
}

func (l *runLogger) flush(b *metricBatch) {
	l.mu.Lock()
	if l.open[b.req.RunID] == b {
		delete(l.open, b.req.RunID)
	}
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b.err = l.propose(ctx, &b.req)
	close(b.done)
}
