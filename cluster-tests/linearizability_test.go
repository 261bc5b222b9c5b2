package clustertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// regInput is one operation on the register "tag k of model key".
type regInput struct {
	key   string
	write bool
	value string // written value
}

// regOutput is an operation's result: the value read, or for a write whether it
// was acknowledged (known) or its outcome is unknown.
type regOutput struct {
	value   string
	unknown bool
}

const initialValue = "v0"

// registerModel: one register per model; a write sets it, a read must see the
// current value. A write of unknown outcome is given a return time at the end of
// the history, so the checker may place it anywhere after its call, including
// "after everything", which is the same as never applied.
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(regInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return initialValue },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regInput)
		if in.write {
			return true, in.value
		}
		return output.(regOutput).value == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		switch {
		case in.write && out.unknown:
			return fmt.Sprintf("put(%s, %s) -> unknown", in.key, in.value)
		case in.write:
			return fmt.Sprintf("put(%s, %s)", in.key, in.value)
		}
		return fmt.Sprintf("get(%s) -> %s", in.key, out.value)
	},
	DescribeState: func(state any) string { return state.(string) },
}

// TestCluster_Linearizable drives concurrent tag writes (PATCH) and consistent
// reads against all three nodes while the leader is killed with SIGKILL and
// later restarted, and checks the history with porcupine.
func TestCluster_Linearizable(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: 12s of load plus a leader crash")
	}
	c := newCluster(t, 3)
	nodes := c.all()
	keys := []string{"lin-a", "lin-b"}
	for _, k := range keys {
		nodes[0].createModel(k, map[string]string{"k": initialValue})
	}
	for _, nd := range nodes {
		for _, k := range keys {
			if err := nd.getJSON("/v1/models/"+k+"?consistency=consistent", &model{}); err != nil {
				t.Fatal(err)
			}
		}
	}

	const clients = 8
	begin := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	h := &history{}
	var wg sync.WaitGroup
	defer func() { // also on t.Fatal: no client outlives the test
		cancel()
		wg.Wait()
	}()
	for i := range clients {
		wg.Go(func() { runClient(ctx, i, nodes, keys, begin, h) })
	}

	pause := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-t.Context().Done():
		}
	}
	pause(3 * time.Second)
	leader := c.waitLeader(leaderTimeout)
	leader.kill()
	killedAt := time.Since(begin)
	t.Logf("killed leader %s at %s", leader.name, killedAt.Round(time.Millisecond))
	pause(4 * time.Second)
	leader.restart()
	t.Logf("restarted %s at %s", leader.name, time.Since(begin).Round(time.Millisecond))
	pause(5 * time.Second)
	cancel()
	wg.Wait()

	ops := h.finish(time.Since(begin))
	var writes, unknown, reads, afterKill int
	for _, op := range ops {
		in, out := op.Input.(regInput), op.Output.(regOutput)
		switch {
		case in.write && out.unknown:
			unknown++
		case in.write:
			writes++
		default:
			reads++
		}
		if !out.unknown && time.Duration(op.Call) > killedAt {
			afterKill++
		}
	}
	t.Logf("history: %d acknowledged writes, %d writes of unknown outcome, %d reads, %d failed reads dropped, %d ops completed after the kill",
		writes, unknown, reads, h.failedRead.Load(), afterKill)
	if writes < 50 || reads < 50 || afterKill < 50 {
		t.Fatalf("history too thin to mean anything")
	}
	if n := h.rejected.Load(); n > 0 {
		t.Errorf("%d requests were rejected with a 4xx (first: %s)", n, h.firstRejection())
	}

	checkStart := time.Now()
	res, info := porcupine.CheckOperationsVerbose(registerModel, ops, 60*time.Second)
	t.Logf("porcupine: %s in %s", res, time.Since(checkStart).Round(time.Millisecond))
	if res != porcupine.Ok {
		path := filepath.Join(t.TempDir(), "linearizability.html")
		if err := porcupine.VisualizePath(registerModel, info, path); err != nil {
			t.Logf("visualization: %v", err)
		}
		t.Fatalf("history is not linearizable (%s); visualization: %s", res, path)
	}
}

// history collects operations from concurrent clients.
type history struct {
	mu         sync.Mutex
	ops        []porcupine.Operation // guarded by mu
	pending    []porcupine.Operation // guarded by mu: writes of unknown outcome
	rejection  string                // guarded by mu: first 4xx seen
	rejected   atomic.Int64
	failedRead atomic.Int64
}

func (h *history) add(op porcupine.Operation, unknown bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if unknown {
		h.pending = append(h.pending, op)
		return
	}
	h.ops = append(h.ops, op)
}

func (h *history) reject(what string) {
	if h.rejected.Add(1) == 1 {
		h.mu.Lock()
		h.rejection = what
		h.mu.Unlock()
	}
}

func (h *history) firstRejection() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rejection
}

// finish returns the history with every write of unknown outcome returning at end.
func (h *history) finish(end time.Duration) []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := append([]porcupine.Operation(nil), h.ops...)
	for _, op := range h.pending {
		op.Return = int64(end)
		out = append(out, op)
	}
	return out
}

// runClient issues operations one at a time until ctx ends. Client i talks to node
// i mod 3, so every node serves reads and forwards writes.
func runClient(ctx context.Context, id int, nodes []*node, keys []string, begin time.Time, h *history) {
	nd := nodes[id%len(nodes)]
	rng := rand.New(rand.NewPCG(uint64(id), uint64(begin.UnixNano())))
	for seq := 0; ctx.Err() == nil; seq++ {
		in := regInput{key: keys[rng.IntN(len(keys))], write: rng.IntN(2) == 0}
		if in.write {
			in.value = fmt.Sprintf("c%d-%d", id, seq)
		}
		call := time.Since(begin)
		out, ok := doRegisterOp(ctx, nd, in, h)
		ret := time.Since(begin)
		if !ok {
			// Dropped: a failed read, or a request cut short by the end of the
			// run. Back off so a dead node is not hammered.
			time.Sleep(50 * time.Millisecond)
			continue
		}
		h.add(porcupine.Operation{ClientId: id, Input: in, Call: int64(call), Output: out, Return: int64(ret)}, out.unknown)
		if out.unknown {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// doRegisterOp performs one operation. ok is false when it is to be left out of
// the history: a failed read (reads have no effect) or a write that surely was
// not applied.
func doRegisterOp(ctx context.Context, nd *node, in regInput, h *history) (out regOutput, ok bool) {
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if in.write {
		r, err := nd.do(rctx, "PATCH", "/v1/models/"+in.key, map[string]any{"tags": map[string]string{"k": in.value}})
		switch {
		case err == nil && r.status == http.StatusOK:
			return regOutput{}, true
		case err == nil && r.status/100 == 4:
			h.reject(fmt.Sprintf("PATCH %s on %s: %s", in.key, nd.name, r))
			return regOutput{}, false
		case errors.Is(err, syscall.ECONNREFUSED):
			// The node is down: the request was never sent, so it had no effect.
			return regOutput{}, false
		}
		// A timeout, a lost connection or a 503: it may or may not have been applied.
		return regOutput{unknown: true}, true
	}
	r, err := nd.do(rctx, "GET", "/v1/models/"+in.key+"?consistency=consistent", nil)
	if err != nil || r.status != http.StatusOK {
		if err == nil && r.status/100 == 4 {
			h.reject(fmt.Sprintf("GET %s on %s: %s", in.key, nd.name, r))
		}
		h.failedRead.Add(1)
		return regOutput{}, false
	}
	var m model
	if err := json.Unmarshal(r.body, &m); err != nil {
		h.reject(fmt.Sprintf("GET %s on %s: bad body: %v", in.key, nd.name, err))
		return regOutput{}, false
	}
	return regOutput{value: m.Tags["k"]}, true
}

// TestRegisterModel_Verdicts checks the checker's model on small histories, so a
// passing TestCluster_Linearizable means something.
func TestRegisterModel_Verdicts(t *testing.T) {
	put := func(client int, value string, call, ret int64, unknown bool) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: regInput{key: "a", write: true, value: value},
			Call: call, Output: regOutput{unknown: unknown}, Return: ret}
	}
	get := func(client int, value string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: regInput{key: "a"}, Call: call, Output: regOutput{value: value}, Return: ret}
	}
	const end = 1000 // return time of writes of unknown outcome
	tests := []struct {
		name    string
		history []porcupine.Operation
		want    porcupine.CheckResult
	}{
		{"read after write", []porcupine.Operation{put(0, "x", 0, 10, false), get(1, "x", 20, 30)}, porcupine.Ok},
		{"stale read after acknowledged write", []porcupine.Operation{put(0, "x", 0, 10, false), get(1, initialValue, 20, 30)}, porcupine.Illegal},
		{"read of a value never written", []porcupine.Operation{get(1, "y", 20, 30)}, porcupine.Illegal},
		{"unknown write seen", []porcupine.Operation{put(0, "x", 0, end, true), get(1, "x", 20, 30)}, porcupine.Ok},
		{"unknown write not seen", []porcupine.Operation{put(0, "x", 0, end, true), get(1, initialValue, 20, 30)}, porcupine.Ok},
		{"unknown write seen then lost", []porcupine.Operation{
			put(0, "x", 0, end, true), get(1, "x", 20, 30), get(1, initialValue, 40, 50),
		}, porcupine.Illegal},
		{"other key unaffected", []porcupine.Operation{
			put(0, "x", 0, 10, false),
			{ClientId: 1, Input: regInput{key: "b"}, Call: 20, Output: regOutput{value: initialValue}, Return: 30},
		}, porcupine.Ok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := porcupine.CheckOperationsTimeout(registerModel, tt.history, 10*time.Second); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}
