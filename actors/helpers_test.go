package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnml/kiln/transport"
)

// Messages of the test actor. They are registered for remote delivery.
type (
	incr      struct{ N int }
	get       struct{}
	boom      struct{ Msg string }
	block     struct{} // waits for probe.release or the Receive context
	fail      struct{ Msg string }
	getReport struct{}
	report    struct {
		Count int
		Node  string
	}
	unregistered struct{}
)

func init() {
	RegisterMessage("test.incr", incr{})
	RegisterMessage("test.get", get{})
	RegisterMessage("test.boom", boom{})
	RegisterMessage("test.block", block{})
	RegisterMessage("test.fail", fail{})
	RegisterMessage("test.get_report", getReport{})
	RegisterMessage("test.report", &report{})
}

// probe is shared by every instance of one test actor, so a test can see
// across restarts.
type probe struct {
	created  atomic.Int32
	stopped  atomic.Int32
	incrs    atomic.Int32  // incr messages processed
	entered  chan struct{} // one token per block message that started
	release  chan struct{} // closed to let block messages return
	once     sync.Once
	startErr func(instance int32) error // for the Starter variant
}

func newProbe() *probe {
	return &probe{entered: make(chan struct{}, 128), release: make(chan struct{})}
}

func (p *probe) unblock() { p.once.Do(func() { close(p.release) }) }

// waitEntered waits until a block message is being processed.
func (p *probe) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-p.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("actor never started the block message")
	}
}

type testActor struct {
	p     *probe
	node  string
	count int
}

func (a *testActor) Receive(ctx context.Context, msg any) (any, error) {
	switch m := msg.(type) {
	case incr:
		a.p.incrs.Add(1)
		a.count += m.N
		return a.count, nil
	case get:
		return a.count, nil
	case getReport:
		return &report{Count: a.count, Node: a.node}, nil
	case boom:
		panic(m.Msg)
	case block:
		a.p.entered <- struct{}{}
		select {
		case <-a.p.release:
			return "released", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case fail:
		return nil, errors.New(m.Msg)
	case unregistered:
		return unregistered{}, nil
	}
	return nil, fmt.Errorf("unexpected message %T", msg)
}

func (a *testActor) Stop() { a.p.stopped.Add(1) }

// startingActor adds Start, failing as probe.startErr says.
type startingActor struct{ *testActor }

func (a startingActor) Start(ctx context.Context) error {
	return a.p.startErr(a.p.created.Load())
}

func (p *probe) factory(node string) Factory {
	return func() (Actor, error) {
		p.created.Add(1)
		a := &testActor{p: p, node: node}
		if p.startErr != nil {
			return startingActor{a}, nil
		}
		return a, nil
	}
}

// testSystem returns a System for node, shut down when the test ends.
func testSystem(t testing.TB, node string, tr *transport.Transport, resolve func(string) (string, error)) *System {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeID = node
	cfg.Transport = tr
	cfg.Resolve = resolve
	s, err := NewSystem(cfg)
	if err != nil {
		t.Fatalf("NewSystem: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s
}

// spawnTest spawns a test actor of kind "test" and returns its Ref and probe.
func spawnTest(t testing.TB, s *System, id string, gen uint64, opts SpawnOptions) (Ref, *probe) {
	t.Helper()
	p := newProbe()
	t.Cleanup(p.unblock)
	ref := Ref{Node: s.cfg.NodeID, Kind: "test", ID: id, Gen: gen}
	if err := s.Spawn(ref, p.factory(s.cfg.NodeID), opts); err != nil {
		t.Fatalf("Spawn %s: %v", ref, err)
	}
	return ref, p
}

func ask(t testing.TB, s *System, ref Ref, msg any) (any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.Ask(ctx, ref, msg)
}

// mustAsk asks and requires want as the reply.
func mustAsk(t testing.TB, s *System, ref Ref, msg, want any) {
	t.Helper()
	got, err := ask(t, s, ref, msg)
	if err != nil {
		t.Fatalf("Ask %T: %v", msg, err)
	}
	if got != want {
		t.Fatalf("Ask %T = %v (%T), want %v (%T)", msg, got, got, want, want)
	}
}

func (s *System) mailboxLen(ref Ref) int {
	c, err := s.cellFor(ref)
	if err != nil {
		return -1
	}
	return len(c.mailbox)
}
