package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// Messages of the deferring test actor, registered for remote delivery.
type (
	// deferGate is answered by a Deferred that waits until the test opens
	// the gate named Key, or until its context ends.
	deferGate struct{ Key string }
	// deferPing is answered at once, by Receive itself.
	deferPing struct{}
)

func init() {
	RegisterMessage("test.defer_gate", deferGate{})
	RegisterMessage("test.defer_ping", deferPing{})
}

// gateAnswer is what an opened gate makes its Deferred return (or panic with).
type gateAnswer struct {
	val   any
	err   error
	panic string
}

// deferProbe is shared by the instances of one deferring actor. The channels
// carry the Key of a Deferred as it starts, sees its context end, and returns.
type deferProbe struct {
	created  atomic.Int32
	returned atomic.Int32
	started  chan string
	ctxEnded chan string
	finished chan string
	// hold, when set, keeps a Deferred whose context ended from returning
	// until it is closed.
	hold chan struct{}
	// abort is closed when the test ends, so that no Deferred outlives it
	// even when the runtime fails to end its context.
	abort chan struct{}

	mu    sync.Mutex
	gates map[string]chan gateAnswer // guarded by mu
}

// newDeferProbe returns a probe whose Deferreds are let go when the test
// ends; create it after the System, so that this runs before its Shutdown.
func newDeferProbe(t testing.TB) *deferProbe {
	p := &deferProbe{
		started:  make(chan string, 64),
		ctxEnded: make(chan string, 64),
		finished: make(chan string, 64),
		abort:    make(chan struct{}),
		gates:    map[string]chan gateAnswer{},
	}
	t.Cleanup(func() { close(p.abort) })
	return p
}

func (p *deferProbe) gate(key string) chan gateAnswer {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.gates[key]
	if g == nil {
		g = make(chan gateAnswer, 1)
		p.gates[key] = g
	}
	return g
}

// open lets the Deferred waiting on key return ans.
func (p *deferProbe) open(key string, ans gateAnswer) { p.gate(key) <- ans }

func (p *deferProbe) deferred(key string) Deferred {
	gate := p.gate(key)
	return func(ctx context.Context) (any, error) {
		p.started <- key
		defer func() {
			p.returned.Add(1)
			p.finished <- key
		}()
		select {
		case ans := <-gate:
			if ans.panic != "" {
				panic(ans.panic)
			}
			return ans.val, ans.err
		case <-ctx.Done():
			p.ctxEnded <- key
			if p.hold != nil {
				select {
				case <-p.hold:
				case <-p.abort:
				}
			}
			return nil, ctx.Err()
		case <-p.abort:
			return nil, errors.New("test over")
		}
	}
}

type deferActor struct {
	p    *deferProbe
	node string
}

func (a *deferActor) Receive(ctx context.Context, msg any) (any, error) {
	switch m := msg.(type) {
	case deferGate:
		return a.p.deferred(m.Key), nil
	case deferPing:
		return "pong@" + a.node, nil
	}
	return nil, fmt.Errorf("unexpected message %T", msg)
}

// spawnDefer spawns a deferring actor of kind "defer" on s.
func spawnDefer(t testing.TB, s *System, id string, p *deferProbe) Ref {
	t.Helper()
	ref := Ref{Node: s.cfg.NodeID, Kind: "defer", ID: id, Gen: 1}
	f := func() (Actor, error) {
		p.created.Add(1)
		return &deferActor{p: p, node: s.cfg.NodeID}, nil
	}
	if err := s.Spawn(ref, f, SpawnOptions{Backoff: time.Millisecond}); err != nil {
		t.Fatalf("Spawn %s: %v", ref, err)
	}
	return ref
}

// askAsync asks on a goroutine of its own; the reply arrives on the channel.
func askAsync(ctx context.Context, s *System, ref Ref, msg any) <-chan result {
	ch := make(chan result, 1)
	go func() {
		v, err := s.Ask(ctx, ref, msg)
		ch <- result{val: v, err: err}
	}()
	return ch
}

func awaitReply(t testing.TB, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no reply within 5s")
		return result{}
	}
}

// expectKey waits for key on ch (one of the probe's channels).
func expectKey(t testing.TB, ch <-chan string, key string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != key {
			t.Fatalf("got Deferred %q, want %q", got, key)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Deferred %q gave no sign within 5s", key)
	}
}

func TestDeferred_MailboxNotBlocked(t *testing.T) {
	s := testSystem(t, "n1", nil, nil)
	p := newDeferProbe(t)
	ref := spawnDefer(t, s, "d", p)

	first := askAsync(context.Background(), s, ref, deferGate{Key: "a"})
	expectKey(t, p.started, "a")

	// Receive answers the next message while the first is pending.
	mustAsk(t, s, ref, deferPing{}, "pong@n1")

	// A second Deferred runs alongside the first and may answer before it.
	second := askAsync(context.Background(), s, ref, deferGate{Key: "b"})
	expectKey(t, p.started, "b")
	p.open("b", gateAnswer{val: "B"})
	if r := awaitReply(t, second); r.err != nil || r.val != "B" {
		t.Fatalf("second Ask = %v, %v; want B", r.val, r.err)
	}
	select {
	case r := <-first:
		t.Fatalf("first Ask answered %v, %v before its gate opened", r.val, r.err)
	default:
	}

	p.open("a", gateAnswer{val: "A"})
	if r := awaitReply(t, first); r.err != nil || r.val != "A" {
		t.Fatalf("first Ask = %v, %v; want A", r.val, r.err)
	}
}

func TestDeferred_AnswerReachesAsker(t *testing.T) {
	s := testSystem(t, "n1", nil, nil)
	p := newDeferProbe(t)
	ref := spawnDefer(t, s, "d", p)

	errNoLuck := errors.New("no luck")
	tests := []struct {
		name    string
		ans     gateAnswer
		wantVal any
		wantErr error
	}{
		{name: "value", ans: gateAnswer{val: 42}, wantVal: 42},
		{name: "plain error", ans: gateAnswer{err: errNoLuck}, wantErr: errNoLuck},
		{name: "wrapped sentinel", ans: gateAnswer{err: fmt.Errorf("queue: %w", ErrBusy)}, wantErr: ErrBusy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reply := askAsync(context.Background(), s, ref, deferGate{Key: tc.name})
			expectKey(t, p.started, tc.name)
			p.open(tc.name, tc.ans)
			r := awaitReply(t, reply)
			if tc.wantErr != nil {
				if !errors.Is(r.err, tc.wantErr) {
					t.Fatalf("Ask = %v, %v; want error %v", r.val, r.err, tc.wantErr)
				}
				return
			}
			if r.err != nil || r.val != tc.wantVal {
				t.Fatalf("Ask = %v, %v; want %v", r.val, r.err, tc.wantVal)
			}
		})
	}
}

func TestDeferred_ContextEnds(t *testing.T) {
	s := testSystem(t, "n1", nil, nil)

	tests := []struct {
		name string
		tell bool // send a Tell instead of an Ask
		// end ends the Deferred's context: by cancelling the asker's context
		// or by stopping the actor.
		end func(t *testing.T, ref Ref, cancelAsk context.CancelFunc)
		// wantErr is what the asker gets; nil: any error.
		wantErr error
	}{
		{
			name:    "asker gives up",
			end:     func(t *testing.T, ref Ref, cancelAsk context.CancelFunc) { cancelAsk() },
			wantErr: context.Canceled,
		},
		{
			name: "actor stopped",
			end: func(t *testing.T, ref Ref, _ context.CancelFunc) {
				stopActor(t, s, ref)
			},
		},
		{
			name: "actor stopped during a Tell",
			tell: true,
			end: func(t *testing.T, ref Ref, _ context.CancelFunc) {
				stopActor(t, s, ref)
			},
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newDeferProbe(t)
			ref := spawnDefer(t, s, fmt.Sprintf("d%d", i), p)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var reply <-chan result
			if tc.tell {
				if err := s.Tell(ref, deferGate{Key: "k"}); err != nil {
					t.Fatal(err)
				}
			} else {
				reply = askAsync(ctx, s, ref, deferGate{Key: "k"})
			}
			expectKey(t, p.started, "k")
			tc.end(t, ref, cancel)
			expectKey(t, p.ctxEnded, "k")
			expectKey(t, p.finished, "k")
			if reply == nil {
				return
			}
			r := awaitReply(t, reply)
			if r.err == nil || (tc.wantErr != nil && !errors.Is(r.err, tc.wantErr)) {
				t.Fatalf("Ask = %v, %v; want error %v", r.val, r.err, tc.wantErr)
			}
		})
	}
}

func stopActor(t *testing.T, s *System, ref Ref) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx, ref); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

func TestDeferred_PanicAnswersErrPanickedWithoutRestart(t *testing.T) {
	s := testSystem(t, "n1", nil, nil)
	p := newDeferProbe(t)
	ref := spawnDefer(t, s, "d", p)

	for i := range 2 {
		key := fmt.Sprintf("p%d", i)
		reply := askAsync(context.Background(), s, ref, deferGate{Key: key})
		expectKey(t, p.started, key)
		p.open(key, gateAnswer{panic: "deferred blew up"})
		if r := awaitReply(t, reply); !errors.Is(r.err, ErrPanicked) {
			t.Fatalf("Ask = %v, %v; want ErrPanicked", r.val, r.err)
		}
		// Had the panic counted as a crash, the ping would wait for (and be
		// answered by) a fresh instance.
		mustAsk(t, s, ref, deferPing{}, "pong@n1")
		if n := p.created.Load(); n != 1 {
			t.Fatalf("after %d panics in a Deferred, %d instances were created; want 1", i+1, n)
		}
	}
	if _, ok := s.Lookup("defer", "d"); !ok {
		t.Fatal("the actor is gone after panics in Deferreds")
	}
}

func TestDeferred_Tell(t *testing.T) {
	s := testSystem(t, "n1", nil, nil)
	p := newDeferProbe(t)
	ref := spawnDefer(t, s, "d", p)

	if err := s.Tell(ref, deferGate{Key: "t"}); err != nil {
		t.Fatal(err)
	}
	expectKey(t, p.started, "t")
	p.open("t", gateAnswer{err: errors.New("dropped: nobody asked")})
	expectKey(t, p.finished, "t")
	mustAsk(t, s, ref, deferPing{}, "pong@n1")
}

func TestDeferred_ShutdownWaitsForPending(t *testing.T) {
	s := testSystem(t, "n1", nil, nil)
	p := newDeferProbe(t)
	p.hold = make(chan struct{})
	ref := spawnDefer(t, s, "d", p)

	reply := askAsync(context.Background(), s, ref, deferGate{Key: "s"})
	expectKey(t, p.started, "s")

	shutdown := make(chan int32, 1) // how many Deferreds had returned when Shutdown did
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		shutdown <- p.returned.Load()
	}()
	expectKey(t, p.ctxEnded, "s")
	// The actor itself is gone; only the held Deferred keeps Shutdown waiting.
	testutil.Until(t, 5*time.Second, "", func() bool {
		_, ok := s.Lookup("defer", "d")
		return !ok
	})
	select {
	case <-shutdown:
		t.Fatal("Shutdown returned while a Deferred was still running")
	case <-time.After(20 * time.Millisecond): // a grace for a wrong Shutdown to show itself, not a synchronisation
	}
	close(p.hold)
	select {
	case n := <-shutdown:
		if n != 1 {
			t.Fatalf("Shutdown returned when %d Deferreds had returned, want 1", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the Deferred did")
	}
	if r := awaitReply(t, reply); r.err == nil {
		t.Fatalf("Ask answered %v during Shutdown, want an error", r.val)
	}
}

func TestDeferred_ShutdownHonoursItsContext(t *testing.T) {
	s := testSystem(t, "n1", nil, nil)
	p := newDeferProbe(t)
	p.hold = make(chan struct{}) // the Deferred ignores its ended context
	ref := spawnDefer(t, s, "d", p)

	reply := askAsync(context.Background(), s, ref, deferGate{Key: "h"})
	expectKey(t, p.started, "h")

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- s.Shutdown(ctx) }()
	select {
	case err := <-shutdown:
		if !errors.Is(err, context.DeadlineExceeded) {
			close(p.hold)
			t.Fatalf("Shutdown with a stuck Deferred = %v, want DeadlineExceeded", err)
		}
	case <-time.After(5 * time.Second):
		close(p.hold)
		t.Fatal("Shutdown ignored its context while a Deferred was stuck")
	}
	close(p.hold)
	expectKey(t, p.finished, "h")
	awaitReply(t, reply)
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown after the Deferred returned: %v", err)
	}
}

func TestDeferred_Remote(t *testing.T) {
	n1, n2 := testPair(t)
	p := newDeferProbe(t)
	ref := spawnDefer(t, n2, "d", p)

	t.Run("value", func(t *testing.T) {
		reply := askAsync(context.Background(), n1, ref, deferGate{Key: "v"})
		expectKey(t, p.started, "v")
		mustAsk(t, n1, ref, deferPing{}, "pong@n2") // the remote mailbox flows meanwhile
		p.open("v", gateAnswer{val: "from n2"})
		if r := awaitReply(t, reply); r.err != nil || r.val != "from n2" {
			t.Fatalf("remote Ask = %v, %v; want %q", r.val, r.err, "from n2")
		}
	})
	t.Run("sentinel error keeps its identity", func(t *testing.T) {
		reply := askAsync(context.Background(), n1, ref, deferGate{Key: "e"})
		expectKey(t, p.started, "e")
		p.open("e", gateAnswer{err: fmt.Errorf("queue full: %w", ErrBusy)})
		if r := awaitReply(t, reply); !errors.Is(r.err, ErrBusy) {
			t.Fatalf("remote Ask = %v, %v; want ErrBusy", r.val, r.err)
		}
	})
	t.Run("asker's deadline ends the Deferred", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		defer cancel()
		reply := askAsync(ctx, n1, ref, deferGate{Key: "d"})
		expectKey(t, p.started, "d")
		expectKey(t, p.ctxEnded, "d")
		if r := awaitReply(t, reply); !errors.Is(r.err, context.DeadlineExceeded) {
			t.Fatalf("remote Ask = %v, %v; want DeadlineExceeded", r.val, r.err)
		}
	})
}
