package serving

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kilnml/kiln/actors"
	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// batchRecorder is an actor that answers PredictBatchRequests item by item
// (the sum of each item's data; the bad marker fails the item alone) and
// records how many items each message carried. Its answers wait for gate, so
// that while the outbox's senders are busy, later requests queue.
type batchRecorder struct {
	mu    sync.Mutex
	sizes []int
	gate  chan struct{}
}

func (b *batchRecorder) Receive(ctx context.Context, msg any) (any, error) {
	req, ok := msg.(*PredictBatchRequest)
	if !ok {
		return nil, errors.New("unexpected message")
	}
	b.mu.Lock()
	b.sizes = append(b.sizes, len(req.Items))
	b.mu.Unlock()
	return actors.Deferred(func(ctx context.Context) (any, error) {
		<-b.gate
		reply := &PredictBatchReply{Items: make([]PredictItemReply, len(req.Items))}
		for i, it := range req.Items {
			sum := 0.0
			for _, v := range it.Inputs[0].Data {
				sum += v
			}
			if sum == badMarker {
				reply.Items[i] = PredictItemReply{Code: structs.CodeInvalid, Message: "bad row"}
				continue
			}
			reply.Items[i].Outputs = []ml.Tensor{{Name: "y", Shape: []int{1}, Data: []float64{sum}}}
		}
		return reply, nil
	}), nil
}

func (b *batchRecorder) recorded() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.sizes...)
}

func TestOutbox_CoalescesQueuedRequests(t *testing.T) {
	sys := testActorSystem(t, "n2")
	rec := &batchRecorder{gate: make(chan struct{})}
	ref := actors.Ref{Node: "n2", Kind: ShardKind, ID: "a1", Gen: 7}
	if err := sys.Spawn(ref, func() (actors.Actor, error) { return rec, nil }, actors.SpawnOptions{}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	ob := &outbox{sys: sys, ref: ref, max: 64, model: "m", wg: &wg}

	// The first requests go out alone, one per sender, and are held; the
	// next ones queue.
	type result struct {
		out []ml.Tensor
		err error
	}
	const n = 20
	results := make([]chan result, n)
	send := func(i int, v float64) {
		results[i] = make(chan result, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := ob.send(ctx, []ml.Tensor{{Name: "x", Shape: []int{1, 1}, Data: []float64{v}}})
			results[i] <- result{out, err}
		}()
	}
	for i := range outboxSenders {
		send(i, float64(i))
		testutil.Until(t, 5*time.Second, "", func() bool { return len(rec.recorded()) == i+1 })
	}
	for i := outboxSenders; i < n; i++ {
		v := float64(i)
		if i == 5 {
			v = badMarker
		}
		send(i, v)
	}
	testutil.Until(t, 5*time.Second, "", func() bool {
		ob.mu.Lock()
		defer ob.mu.Unlock()
		sent := 0
		for _, s := range rec.recorded() {
			sent += s
		}
		return sent+len(ob.queue) == n
	})
	close(rec.gate)
	for i := range n {
		r := <-results[i]
		switch {
		case i == 5:
			if structs.ErrorCode(r.err) != structs.CodeInvalid {
				t.Errorf("request %d: error %v, want invalid_argument for its item alone", i, r.err)
			}
		case r.err != nil:
			t.Errorf("request %d: %v", i, r.err)
		case len(r.out) != 1 || r.out[0].Data[0] != float64(i):
			t.Errorf("request %d got %+v, want its own sum %d", i, r.out, i)
		}
	}
	wg.Wait()
	sizes := rec.recorded()
	total := 0
	for _, s := range sizes {
		total += s
	}
	if total != n || len(sizes) > 4 {
		t.Fatalf("messages carried %v (%d requests): want all %d in a few coalesced messages", sizes, total, n)
	}
}

func TestOutbox_FullQueueRefusesAtOnce(t *testing.T) {
	sys := testActorSystem(t, "n2")
	rec := &batchRecorder{gate: make(chan struct{})}
	ref := actors.Ref{Node: "n2", Kind: ShardKind, ID: "a1", Gen: 7}
	if err := sys.Spawn(ref, func() (actors.Actor, error) { return rec, nil }, actors.SpawnOptions{}); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	openGate := func() { once.Do(func() { close(rec.gate) }) }
	t.Cleanup(openGate) // on failure too, before the System shuts down
	var wg sync.WaitGroup
	ob := &outbox{sys: sys, ref: ref, max: 1, model: "m", wg: &wg}
	limit := ob.maxQueued()
	if limit != outboxQueueBatches {
		t.Fatalf("maxQueued = %d with max 1, want %d", limit, outboxQueueBatches)
	}
	in := []ml.Tensor{{Name: "x", Shape: []int{1, 1}, Data: []float64{1}}}
	errs := make(chan error, outboxSenders+limit)
	send := func() {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := ob.send(ctx, in)
			errs <- err
		}()
	}
	// Both senders hold a message at the replica, then the queue fills.
	for i := range outboxSenders {
		send()
		testutil.Until(t, 5*time.Second, "", func() bool { return len(rec.recorded()) == i+1 })
	}
	for range limit {
		send()
	}
	testutil.Until(t, 5*time.Second, "", func() bool {
		ob.mu.Lock()
		defer ob.mu.Unlock()
		return len(ob.queue) == limit
	})

	// The next request is refused, not queued until its deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := ob.send(ctx, in)
	if !errors.Is(err, ErrOverloaded) || structs.ErrorCode(err) != CodeBusy || !retryable(err) {
		t.Fatalf("send to a full outbox = %v (code %q), want ErrOverloaded, busy and retryable", err, structs.ErrorCode(err))
	}
	ob.mu.Lock()
	queued := len(ob.queue)
	ob.mu.Unlock()
	if queued != limit {
		t.Fatalf("%d requests queued after the refusal, want still %d", queued, limit)
	}

	openGate()
	for range outboxSenders + limit {
		if err := <-errs; err != nil {
			t.Errorf("a request accepted before the queue was full failed: %v", err)
		}
	}
	wg.Wait()
}

func TestOutbox_WholeMessageErrorReachesEveryRequest(t *testing.T) {
	sys := testActorSystem(t, "n2")
	var wg sync.WaitGroup
	ob := &outbox{sys: sys, ref: actors.Ref{Node: "n2", Kind: ShardKind, ID: "gone", Gen: 1}, max: 8, model: "m", wg: &wg}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := ob.send(ctx, []ml.Tensor{{Name: "x", Shape: []int{1, 1}, Data: []float64{1}}})
	if !errors.Is(err, actors.ErrNotFound) {
		t.Fatalf("send to a missing replica: %v, want actors.ErrNotFound (which the router retries)", err)
	}
	wg.Wait()
}

func TestShard_AnswersBatchMessagesItemByItem(t *testing.T) {
	f := newRouterFixture(t, nil)
	f.deploy("m", map[uint64]int{1: 100}, 0, 1)
	a := f.replica(t, "a1", "m", 1, 3, newSumModel(false))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reply, err := f.sys.Ask(ctx, ShardRef(&a), &PredictBatchRequest{Items: []PredictRequest{
		{Inputs: []ml.Tensor{{Name: "x", Shape: []int{1, 2}, Data: []float64{1, 2}}}},
		{Inputs: []ml.Tensor{{Name: "x", Shape: []int{1, 1}, Data: []float64{badMarker}}}},
		{Inputs: []ml.Tensor{{Name: "x", Shape: []int{2, 1}, Data: []float64{4, 5}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	br := reply.(*PredictBatchReply)
	if len(br.Items) != 3 {
		t.Fatalf("%d items answered, want 3", len(br.Items))
	}
	if br.Items[0].Code != "" || br.Items[0].Outputs[0].Data[0] != 3 {
		t.Errorf("item 0: %+v, want sum 3", br.Items[0])
	}
	if br.Items[1].Code != structs.CodeInvalid {
		t.Errorf("item 1: %+v, want invalid_argument", br.Items[1])
	}
	if br.Items[2].Code != "" || len(br.Items[2].Outputs[0].Data) != 2 || br.Items[2].Outputs[0].Data[1] != 5 {
		t.Errorf("item 2: %+v, want sums [4 5]", br.Items[2])
	}
}

func TestRouter_CallsLocalReplicaDirectly(t *testing.T) {
	local := NewLocalShards()
	f := newRouterFixture(t, func(c *RouterConfig) { c.Local = local })
	f.deploy("m", map[uint64]int{1: 100}, 0, 1)
	m := newSumModel(false)
	a := structs.Allocation{ID: "a1", Deployment: "m", Version: 1, NodeID: "n1", State: structs.AllocRunning, CreateIndex: 9}
	view, release := f.reg.view()
	v, _ := view.Version("m", 1)
	release()
	cfg := ShardConfig{Alloc: a, Version: *v, Blobs: f.blobs, Load: loaderOf(map[string]ml.Model{"/blobs/" + v.Digest: m}), Workers: 1, Local: local}
	if err := f.sys.Spawn(ShardRef(&a), NewShardFactory(cfg), actors.SpawnOptions{}); err != nil {
		t.Fatal(err)
	}
	f.reg.putAlloc(a)
	testutil.Until(t, 5*time.Second, "", func() bool { return local.get("a1", 9) != nil })
	if local.get("a1", 8) != nil {
		t.Error("a lookup with another generation found the replica")
	}
	out, err := f.predict(t, f.resolve(t, "m", Selector{}), ml.Tensor{Name: "x", Shape: []int{1, 2}, Data: []float64{2, 3}})
	if err != nil || out[0].Data[0] != 5 {
		t.Fatalf("direct predict = %+v, %v; want 5", out, err)
	}
	// Stopping the actor takes the replica out of the table first.
	stopShard(t, f.sys, a)
	if local.get("a1", 9) != nil {
		t.Fatal("a stopped replica is still in the local table")
	}
	if _, err := f.predict(t, f.resolve(t, "m", Selector{}), ml.Tensor{Name: "x", Shape: []int{1, 1}, Data: []float64{1}}); err == nil {
		t.Fatal("a prediction reached a stopped replica")
	}
}
