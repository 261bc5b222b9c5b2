package gbdt

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// workers runs the trainer's parallel loops on threads-1 goroutines of its
// own plus the caller's. A training round is a long chain of short parallel
// steps (a histogram build, a partition, a loss over the rows) separated
// by short serial ones, so a fresh goroutine per step would spend much of
// each step waiting to be scheduled (on a 2-core VM a woken goroutine
// typically starts 0.1 ms or more later). Instead the workers spin for a
// while after each step, as OpenMP's threads do, and only then park; they
// live from newWorkers to close.
type workers struct {
	threads int
	cur     atomic.Pointer[job] // the latest job; workers wait for it to change
	parked  atomic.Int32        // workers blocked in cond.Wait
	stopped atomic.Bool         // set by close
	mu      sync.Mutex          // cond's lock; taken to park and to wake parked workers
	cond    *sync.Cond
	wg      sync.WaitGroup
}

// job is one call of run: tasks 0..n-1 of fn.
type job struct {
	fn   func(i int)
	n    int64
	next atomic.Int64 // the next task to claim
	done atomic.Int64 // tasks finished
}

// spinFor is how long an idle worker polls for the next job before it
// parks.
const spinFor = 2 * time.Millisecond

func newWorkers(threads int) *workers {
	w := &workers{threads: max(threads, 1)}
	w.cond = sync.NewCond(&w.mu)
	w.cur.Store(&job{})
	for range w.threads - 1 {
		w.wg.Go(w.loop)
	}
	return w
}

// close stops the workers and waits for them to exit.
func (w *workers) close() {
	w.stopped.Store(true)
	w.mu.Lock()
	w.cond.Broadcast()
	w.mu.Unlock()
	w.wg.Wait()
}

// run calls fn(i) for every i in [0, n) and returns when all calls have
// returned. Calls for different i must write disjoint memory: then what
// they compute does not depend on which goroutine ran which i, which is
// how the trainer stays deterministic for any number of threads. run is
// not safe for concurrent use.
func (w *workers) run(n int, fn func(i int)) {
	if w.threads <= 1 || n <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	j := &job{fn: fn, n: int64(n)}
	w.cur.Store(j)
	if w.parked.Load() > 0 {
		w.mu.Lock()
		w.cond.Broadcast()
		w.mu.Unlock()
	}
	j.work()
	for spins := 0; j.done.Load() < j.n; spins++ {
		if spins%64 == 63 {
			runtime.Gosched()
		}
	}
}

func (j *job) work() {
	for {
		i := j.next.Add(1) - 1
		if i >= j.n {
			return
		}
		j.fn(int(i))
		j.done.Add(1)
	}
}

// loop is a worker: it runs each new job's tasks, polling for the next job
// for spinFor, then blocking until run or close wakes it.
func (w *workers) loop() {
	seen := w.cur.Load()
	for {
		deadline := time.Now().Add(spinFor)
		for spins := 0; w.cur.Load() == seen; spins++ {
			if w.stopped.Load() {
				return
			}
			if spins%64 != 63 {
				continue
			}
			runtime.Gosched()
			if time.Now().Before(deadline) {
				continue
			}
			w.mu.Lock()
			w.parked.Add(1)
			for w.cur.Load() == seen && !w.stopped.Load() {
				w.cond.Wait()
			}
			w.parked.Add(-1)
			w.mu.Unlock()
		}
		seen = w.cur.Load()
		seen.work()
	}
}

// blockSize is the number of rows of one block of a parallel sum over rows.
// It is fixed, not derived from the thread count, so that the partial sums
// and the order in which they are added are the same for every thread count.
const blockSize = 4096

// sumBlocks splits [0, n) into blocks of blockSize rows, calls fn on each
// block in parallel and returns the sum of the results, added in block order.
func (w *workers) sumBlocks(n int, fn func(lo, hi int) float64) float64 {
	blocks := (n + blockSize - 1) / blockSize
	part := make([]float64, blocks)
	w.run(blocks, func(b int) {
		lo := b * blockSize
		part[b] = fn(lo, min(lo+blockSize, n))
	})
	var sum float64
	for _, v := range part {
		sum += v
	}
	return sum
}
