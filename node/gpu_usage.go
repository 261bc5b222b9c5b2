package node

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// GPU use over time (node/DESIGN.md, "Dashboard"): every tsStep a node
// whose GPUs were found by NVML or nvidia-smi reads each device's
// utilisation and memory in use, and keeps the readings in a ring of
// tsSlots points, the last hour at 10 s, in memory. GPUs declared in config
// have no reading. GET /v1/nodes/gpus/timeseries gathers every node's.

// GPUReading is one device at one time.
type GPUReading struct {
	Index        int      `msgpack:"index" json:"index"`
	UtilPct      *float64 `msgpack:"util,omitempty" json:"utilization_pct"` // nil: the driver did not say
	MemoryUsedMB int64    `msgpack:"mem" json:"memory_used_mb"`
}

type gpuSeries struct {
	mu   sync.Mutex
	ring ring[GPUSeriesPoint]
}

// readGPUUse reads the devices from the source that found them.
func (a *Agent) readGPUUse() ([]GPUReading, error) {
	switch a.resources.GPUSource {
	case "nvml":
		return nvmlUse()
	case "nvidia-smi":
		return nvidiaSMIUse()
	}
	return nil, nil
}

// sampleGPUs adds one reading of this node's GPUs to its ring.
func (a *Agent) sampleGPUs(now time.Time) {
	use, err := a.readGPUUse()
	if err != nil {
		a.logger.Debug("gpu use: read failed", "error", err)
		return
	}
	if len(use) == 0 {
		return
	}
	a.gpus.mu.Lock()
	defer a.gpus.mu.Unlock()
	a.gpus.ring.add(GPUSeriesPoint{At: now.Truncate(tsStep).UTC(), GPUs: use})
}

// nvidiaSMIUse asks nvidia-smi for each device's utilisation and memory.
func nvidiaSMIUse() ([]GPUReading, error) {
	out, err := nvidiaSMI("index,utilization.gpu,memory.used", 5*time.Second)
	if err != nil {
		return nil, err
	}
	return parseNvidiaSMIUse(out)
}

// parseNvidiaSMIUse parses lines of "index, utilization %, memory used
// MiB"; a field the driver cannot give reads "[N/A]" and is left out.
func parseNvidiaSMIUse(out string) ([]GPUReading, error) {
	var gpus []GPUReading
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) != 3 {
			return nil, fmt.Errorf("node: nvidia-smi line %q: want 3 fields", line)
		}
		idx, err := strconv.Atoi(strings.TrimSpace(f[0]))
		if err != nil {
			return nil, fmt.Errorf("node: nvidia-smi line %q: bad index", line)
		}
		g := GPUReading{Index: idx}
		if u, err := strconv.ParseFloat(strings.TrimSpace(f[1]), 64); err == nil {
			g.UtilPct = &u
		}
		g.MemoryUsedMB, _ = strconv.ParseInt(strings.TrimSpace(f[2]), 10, 64)
		gpus = append(gpus, g)
	}
	return gpus, nil
}

const rpcGPUSeries = "node.gpus"

type gpuSeriesArgs struct {
	From int64 `msgpack:"from"`
}

// NodeGPUSeries is one node's readings in GET /v1/nodes/gpus/timeseries.
type NodeGPUSeries struct {
	NodeID   string           `msgpack:"node_id" json:"node_id"`
	NodeName string           `msgpack:"node_name" json:"node_name"`
	Points   []GPUSeriesPoint `msgpack:"points" json:"points"`
}

// GPUSeriesPoint is one reading of a node's devices.
type GPUSeriesPoint struct {
	At   time.Time    `msgpack:"at" json:"at"` // a multiple of tsStep
	GPUs []GPUReading `msgpack:"gpus" json:"gpus"`
}

func (p GPUSeriesPoint) slot() int64 { return p.At.Unix() }

func (a *Agent) localGPUSeries(args gpuSeriesArgs) NodeGPUSeries {
	a.gpus.mu.Lock()
	defer a.gpus.mu.Unlock()
	return NodeGPUSeries{NodeID: a.id, NodeName: a.cfg.NodeName, Points: a.gpus.ring.since(args.From)}
}

// handleGPUSeries answers GET /v1/nodes/gpus/timeseries?window=1h: each
// node's GPU readings of the window; nodes without readings are left out.
func (a *Agent) handleGPUSeries(w http.ResponseWriter, r *http.Request) {
	window, err := seriesWindow(r)
	if err != nil {
		writeError(w, err)
		return
	}
	args := gpuSeriesArgs{From: time.Now().Add(-window).Truncate(tsStep).Unix()}
	parts, missing := fanOut(r.Context(), a, rpcGPUSeries, &args, 5*time.Second, func() (NodeGPUSeries, error) {
		return a.localGPUSeries(args), nil
	})
	nodes := []NodeGPUSeries{}
	for _, p := range parts {
		if len(p.Points) > 0 {
			nodes = append(nodes, p)
		}
	}
	slices.SortFunc(nodes, func(x, y NodeGPUSeries) int { return strings.Compare(x.NodeName, y.NodeName) })
	writeJSON(w, http.StatusOK, map[string]any{"step_seconds": tsStep.Seconds(), "nodes": nodes, "nodes_missing": missing})
}

func (a *Agent) handleGPUSeriesRPC(_ context.Context, dec transport.Decoder) (any, error) {
	var args gpuSeriesArgs
	if err := dec.Decode(&args); err != nil {
		return nil, structs.Errorf(structs.CodeInvalid, "node: bad gpu series request: %v", err)
	}
	return a.localGPUSeries(args), nil
}
