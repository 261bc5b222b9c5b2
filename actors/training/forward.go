package training

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"sync"
	"time"

	"github.com/kilnml/kiln/ml/train"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// forwardInterval is how often a member sends its new step metrics to its
// run.
const forwardInterval = 500 * time.Millisecond

// metricForwarder sends a member's step metrics to its run, in the order
// they came, from one goroutine: a trainer's Report never waits for Raft.
type metricForwarder struct {
	host  Host
	run   string
	mu    sync.Mutex
	queue []structs.MetricPoint
	// tail, when set, is a process's KILN_METRICS_FILE, read for new lines
	// at every send.
	tail   *os.File
	reader *bufio.Reader
	stop   chan struct{}
	done   chan struct{}
}

func newMetricForwarder(host Host, run string) *metricForwarder {
	f := &metricForwarder{host: host, run: run, stop: make(chan struct{}), done: make(chan struct{})}
	go f.loop()
	return f
}

// follow makes the forwarder read points from a metrics file as a process
// appends them.
func (f *metricForwarder) follow(path string) {
	file, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o640)
	if err != nil {
		return
	}
	f.mu.Lock()
	f.tail, f.reader = file, bufio.NewReader(file)
	f.mu.Unlock()
}

// add queues a trainer's step point.
func (f *metricForwarder) add(p train.Point) {
	f.mu.Lock()
	f.queue = append(f.queue, structs.MetricPoint{Key: p.Name, Value: p.Value, Step: int64(p.Step), Timestamp: time.Now().UnixMilli()})
	f.mu.Unlock()
}

func (f *metricForwarder) loop() {
	defer close(f.done)
	t := time.NewTicker(forwardInterval)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			f.send()
			return
		case <-t.C:
			f.send()
		}
	}
}

// readTail reads the complete lines a process has appended since the last
// read; a line it is still writing waits for the next.
func (f *metricForwarder) readTail() {
	if f.reader == nil {
		return
	}
	for {
		line, err := f.reader.ReadBytes('\n')
		if err == io.EOF {
			if len(line) > 0 {
				// Not a whole line yet: go back to its start.
				_, _ = f.tail.Seek(-int64(len(line)), io.SeekCurrent)
				f.reader.Reset(f.tail)
			}
			return
		}
		if err != nil {
			return
		}
		var p struct {
			Step      int64    `json:"step"`
			Name      string   `json:"name"`
			Value     *float64 `json:"value"`
			Timestamp int64    `json:"timestamp"`
		}
		if json.Unmarshal(line, &p) != nil || p.Name == "" || p.Value == nil || structs.ValidateTrackingKey("name", p.Name) != nil {
			continue
		}
		if p.Timestamp == 0 {
			p.Timestamp = time.Now().UnixMilli()
		}
		f.queue = append(f.queue, structs.MetricPoint{Key: p.Name, Value: *p.Value, Step: p.Step, Timestamp: p.Timestamp})
	}
}

// send logs what is queued, in batches of at most MaxRunLogMetrics.
func (f *metricForwarder) send() {
	f.mu.Lock()
	f.readTail()
	q := f.queue
	f.queue = nil
	f.mu.Unlock()
	for len(q) > 0 {
		n := min(len(q), structs.MaxRunLogMetrics)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = f.host.LogMetrics(ctx, f.run, q[:n]) // a lost batch of step points does not fail the job
		cancel()
		q = q[n:]
	}
}

// close sends what is left and stops.
func (f *metricForwarder) close() {
	close(f.stop)
	<-f.done
	if f.tail != nil {
		_ = f.tail.Close()
	}
}
