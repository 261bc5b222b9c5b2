package node

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/kilnml/kiln/actors/serving"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// Serving time series for the dashboard (node/DESIGN.md, "Dashboard"):
// every tsStep each node reads its serving metrics per deployment and keeps
// what changed since the last reading (requests, errors, and the latency
// histogram's bucket counts, per version) in a ring of tsSlots points: the
// last hour at 10 s. Slots are aligned to the wall clock, so a reader can
// add the nodes' points slot by slot and read the percentiles of the sum.
// Nothing is persisted: a restarted node starts an empty ring.

const (
	tsStep  = 10 * time.Second
	tsSlots = 360
)

// tsPoint is one slot of one deployment: the versions that served in it.
type tsPoint struct {
	At    int64                  `msgpack:"at"` // unix seconds, a multiple of tsStep
	Stats []serving.VersionStats `msgpack:"stats"`
}

// ring keeps the last tsSlots points of one series.
type ring[T slotted] struct {
	points [tsSlots]T
	next   int
	n      int
}

// slotted is a point of a ring: it knows its slot's time (unix seconds).
type slotted interface{ slot() int64 }

func (p tsPoint) slot() int64 { return p.At }

func (r *ring[T]) add(p T) {
	r.points[r.next] = p
	r.next = (r.next + 1) % tsSlots
	r.n = min(r.n+1, tsSlots)
}

// since returns the points at or after from, oldest first.
func (r *ring[T]) since(from int64) []T {
	out := make([]T, 0, r.n)
	for i := range r.n {
		p := r.points[(r.next-r.n+i+tsSlots)%tsSlots]
		if p.slot() >= from {
			out = append(out, p)
		}
	}
	return out
}

// timeSeries is a node's rings, one per deployment, and the cumulative
// readings they are differences of.
type timeSeries struct {
	mu    sync.Mutex
	rings map[string]*ring[tsPoint]
	last  map[string][]serving.VersionStats
}

// sample reads the metrics of every deployment the registry has and adds
// one point to each ring; a deployment gone from the registry loses its.
func (a *Agent) sampleTimeSeries(now time.Time) {
	txn := a.fsm.ReadTxn()
	deps, _, err := txn.Deployments("", 0)
	txn.Discard()
	if err != nil {
		return
	}
	ts := &a.series
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.rings == nil {
		ts.rings, ts.last = map[string]*ring[tsPoint]{}, map[string][]serving.VersionStats{}
	}
	at := now.Truncate(tsStep).Unix()
	live := map[string]bool{}
	for _, d := range deps {
		live[d.Name] = true
		cur := a.serving.metrics.Stats(d.Name)
		prev, seen := ts.last[d.Name]
		ts.last[d.Name] = cur
		if !seen {
			continue // the first reading is the baseline
		}
		var p tsPoint
		p.At = at
		for _, s := range serving.SubtractStats(cur, prev) {
			if s.Requests > 0 || s.Errors > 0 {
				p.Stats = append(p.Stats, s)
			}
		}
		r := ts.rings[d.Name]
		if r == nil {
			r = &ring[tsPoint]{}
			ts.rings[d.Name] = r
		}
		r.add(p)
	}
	for name := range ts.rings {
		if !live[name] {
			delete(ts.rings, name)
			delete(ts.last, name)
		}
	}
}

// timeSeriesLoop samples every tsStep until the agent stops.
func (a *Agent) timeSeriesLoop() {
	t := time.NewTicker(tsStep)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case now := <-t.C:
			a.sampleTimeSeries(now)
			a.sampleGPUs(now)
		}
	}
}

type tsArgs struct {
	Deployment string `msgpack:"deployment"`
	From       int64  `msgpack:"from"`
}

func (a *Agent) localTimeSeries(args tsArgs) []tsPoint {
	a.series.mu.Lock()
	defer a.series.mu.Unlock()
	if r := a.series.rings[args.Deployment]; r != nil {
		return r.since(args.From)
	}
	return []tsPoint{}
}

const rpcTimeSeries = "serving.timeseries"

// TimeSeriesVersion is one version at one time in GET
// /v1/deployments/{name}/timeseries: requests a second over the slot and
// the slot's latency percentiles, over every node.
type TimeSeriesVersion struct {
	Version     uint64  `json:"version"`
	RequestsSec float64 `json:"requests_per_sec"`
	ErrorsSec   float64 `json:"errors_per_sec"`
	P50MS       float64 `json:"p50_ms"`
	P95MS       float64 `json:"p95_ms"`
	P99MS       float64 `json:"p99_ms"`
}

// TimeSeriesPoint is one slot.
type TimeSeriesPoint struct {
	At       time.Time           `json:"at"`
	Versions []TimeSeriesVersion `json:"versions"`
}

// handleTimeSeries answers GET /v1/deployments/{name}/timeseries?window=1h:
// every node's points of the window, added slot by slot.
func (a *Agent) handleTimeSeries(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	window, err := seriesWindow(r)
	if err != nil {
		writeError(w, err)
		return
	}
	args := tsArgs{Deployment: name, From: time.Now().Add(-window).Truncate(tsStep).Unix()}
	parts, missing := fanOut(r.Context(), a, rpcTimeSeries, &args, 5*time.Second, func() ([]tsPoint, error) {
		return a.localTimeSeries(args), nil
	})
	bySlot := map[int64][][]serving.VersionStats{}
	for _, part := range parts {
		for _, p := range part {
			bySlot[p.At] = append(bySlot[p.At], p.Stats)
		}
	}
	slots := make([]int64, 0, len(bySlot))
	for at := range bySlot {
		slots = append(slots, at)
	}
	slices.Sort(slots)
	out := make([]TimeSeriesPoint, 0, len(slots))
	step := tsStep.Seconds()
	for _, at := range slots {
		p := TimeSeriesPoint{At: time.Unix(at, 0).UTC(), Versions: []TimeSeriesVersion{}}
		for _, s := range serving.MergeStats(bySlot[at]...) {
			p.Versions = append(p.Versions, TimeSeriesVersion{Version: s.Version, RequestsSec: float64(s.Requests) / step,
				ErrorsSec: float64(s.Errors) / step, P50MS: s.P50MS, P95MS: s.P95MS, P99MS: s.P99MS})
		}
		out = append(out, p)
	}
	writeJSON(w, http.StatusOK, map[string]any{"deployment": name, "step_seconds": step, "points": out, "nodes_missing": missing})
}

// seriesWindow reads ?window= of a ring's time series: the last hour by
// default, at most what the ring holds.
func seriesWindow(r *http.Request) (time.Duration, error) {
	s := r.URL.Query().Get("window")
	if s == "" {
		return time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > tsSlots*tsStep {
		return 0, structs.Errorf(structs.CodeInvalid, "window must be a duration from 10s to 1h, not %q", s)
	}
	return d, nil
}

func (a *Agent) handleTimeSeriesRPC(ctx context.Context, dec transport.Decoder) (any, error) {
	var args tsArgs
	if err := dec.Decode(&args); err != nil {
		return nil, structs.Errorf(structs.CodeInvalid, "node: bad timeseries request: %v", err)
	}
	return a.localTimeSeries(args), nil
}
