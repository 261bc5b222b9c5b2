package actors

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

func TestSystem_TellAsk(t *testing.T) {
	s := testSystem(t, "n1", nil, nil)
	ref, _ := spawnTest(t, s, "a", 1, SpawnOptions{})

	for i := 1; i <= 10; i++ {
		if err := s.Tell(ref, incr{N: 1}); err != nil {
			t.Fatalf("Tell %d: %v", i, err)
		}
	}
	mustAsk(t, s, ref, get{}, 10) // one mailbox, in order
	mustAsk(t, s, ref, incr{N: 5}, 15)

	tests := []struct {
		name    string
		ref     Ref
		msg     any
		wantErr error
		wantMsg string
	}{
		{name: "Receive error reaches the asker", ref: ref, msg: fail{Msg: "no model"}, wantMsg: "no model"},
		{name: "unknown actor", ref: Ref{Node: "n1", Kind: "test", ID: "zz", Gen: 1}, msg: get{}, wantErr: ErrNotFound},
		{name: "ref without node is local", ref: Ref{Kind: "test", ID: "a", Gen: 1}, msg: get{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ask(t, s, tc.ref, tc.msg)
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Ask = %v, want %v", err, tc.wantErr)
				}
				if err := s.Tell(tc.ref, tc.msg); !errors.Is(err, tc.wantErr) {
					t.Fatalf("Tell = %v, want %v", err, tc.wantErr)
				}
			case tc.wantMsg != "":
				if err == nil || err.Error() != tc.wantMsg {
					t.Fatalf("Ask = %v, want %q", err, tc.wantMsg)
				}
			case err != nil:
				t.Fatalf("Ask: %v", err)
			}
		})
	}
}

func TestSystem_Busy(t *testing.T) {
	s := testSystem(t, "n1", nil, nil)
	ref, p := spawnTest(t, s, "a", 1, SpawnOptions{Mailbox: 2})

	if err := s.Tell(ref, block{}); err != nil {
		t.Fatal(err)
	}
	p.waitEntered(t) // the actor holds block; the mailbox is empty again
	for i := range 2 {
		if err := s.Tell(ref, incr{N: 1}); err != nil {
			t.Fatalf("Tell %d into a mailbox with room: %v", i, err)
		}
	}
	if err := s.Tell(ref, incr{N: 1}); !errors.Is(err, ErrBusy) {
		t.Fatalf("Tell into a full mailbox = %v, want ErrBusy", err)
	}
	if _, err := ask(t, s, ref, get{}); !errors.Is(err, ErrBusy) {
		t.Fatalf("Ask into a full mailbox = %v, want ErrBusy", err)
	}
	p.unblock()
	testutil.Until(t, 5*time.Second, "", func() bool { return s.mailboxLen(ref) == 0 })
	mustAsk(t, s, ref, get{}, 2) // the two accepted messages, not the refused one
}

func TestSystem_AskDeadline(t *testing.T) {
	s := testSystem(t, "n1", nil, nil)
	ref, p := spawnTest(t, s, "a", 1, SpawnOptions{})

	t.Run("Receive sees the asker's deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if _, err := s.Ask(ctx, ref, block{}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Ask = %v, want DeadlineExceeded", err)
		}
		p.waitEntered(t)
	})
	t.Run("queued Ask expires and is skipped", func(t *testing.T) {
		if err := s.Tell(ref, block{}); err != nil {
			t.Fatal(err)
		}
		p.waitEntered(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if _, err := s.Ask(ctx, ref, incr{N: 1}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Ask = %v, want DeadlineExceeded", err)
		}
		p.unblock()
		mustAsk(t, s, ref, get{}, 0)
		if n := p.incrs.Load(); n != 0 {
			t.Fatalf("the expired incr was processed %d times", n)
		}
	})
	t.Run("already expired context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := s.Ask(ctx, ref, get{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("Ask = %v, want Canceled", err)
		}
	})
}

func TestSystem_PanicRestart(t *testing.T) {
	s := testSystem(t, "n1", nil, nil)
	ref, p := spawnTest(t, s, "a", 1, SpawnOptions{Backoff: time.Millisecond})

	mustAsk(t, s, ref, incr{N: 5}, 5)
	_, err := ask(t, s, ref, boom{Msg: "bad tensor"})
	if !errors.Is(err, ErrPanicked) {
		t.Fatalf("Ask boom = %v, want ErrPanicked", err)
	}
	mustAsk(t, s, ref, get{}, 0) // a fresh instance from the Factory
	if c, st := p.created.Load(), p.stopped.Load(); c != 2 || st != 1 {
		t.Fatalf("created %d instances and stopped %d, want 2 and 1", c, st)
	}

	t.Run("messages queued across the crash are kept", func(t *testing.T) {
		for _, m := range []any{block{}, boom{Msg: "again"}, incr{N: 1}, incr{N: 1}, incr{N: 1}} {
			if err := s.Tell(ref, m); err != nil {
				t.Fatal(err)
			}
		}
		p.waitEntered(t)
		p.unblock()
		testutil.Until(t, 5*time.Second, "", func() bool { return p.created.Load() == 3 })
		mustAsk(t, s, ref, get{}, 3)
	})
}

func TestSystem_MaxRestarts(t *testing.T) {
	tests := []struct {
		name        string
		maxRestarts int
		wantCreated int32
	}{
		{name: "two restarts then failed", maxRestarts: 2, wantCreated: 3},
		{name: "negative never restarts", maxRestarts: -1, wantCreated: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := testSystem(t, "n1", nil, nil)
			type failure struct {
				ref Ref
				err error
			}
			failed := make(chan failure, 1)
			ref, p := spawnTest(t, s, "a", 7, SpawnOptions{
				MaxRestarts: tc.maxRestarts,
				Backoff:     time.Millisecond,
				OnFailed:    func(ref Ref, err error) { failed <- failure{ref, err} },
			})
			for range tc.wantCreated {
				if err := s.Tell(ref, boom{Msg: "always"}); err != nil {
					t.Fatal(err)
				}
			}
			var f failure
			select {
			case f = <-failed:
			case <-time.After(5 * time.Second):
				t.Fatal("OnFailed was not called")
			}
			if f.ref != ref || !errors.Is(f.err, ErrPanicked) {
				t.Fatalf("OnFailed(%s, %v), want (%s, ErrPanicked)", f.ref, f.err, ref)
			}
			if n := p.created.Load(); n != tc.wantCreated {
				t.Fatalf("created %d instances, want %d", n, tc.wantCreated)
			}
			if _, ok := s.Lookup("test", "a"); ok {
				t.Fatal("failed actor still registered")
			}
			if err := s.Tell(ref, get{}); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Tell to a failed actor = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestSystem_StartFailure(t *testing.T) {
	errStart := errors.New("no GPU")
	tests := []struct {
		name       string
		startErr   func(instance int32) error
		wantFailed bool
	}{
		{name: "first Start fails, restart succeeds", startErr: func(n int32) error {
			if n == 1 {
				return errStart
			}
			return nil
		}},
		{name: "Start always fails", startErr: func(int32) error { return errStart }, wantFailed: true},
		{name: "Start panics", startErr: func(int32) error { panic("driver") }, wantFailed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := testSystem(t, "n1", nil, nil)
			p := newProbe()
			p.startErr = tc.startErr
			failed := make(chan error, 1)
			ref := Ref{Kind: "test", ID: "a", Gen: 1}
			err := s.Spawn(ref, p.factory("n1"), SpawnOptions{
				MaxRestarts: 2,
				Backoff:     time.Millisecond,
				OnFailed:    func(_ Ref, err error) { failed <- err },
			})
			if err != nil {
				t.Fatal(err)
			}
			if !tc.wantFailed {
				mustAsk(t, s, ref, incr{N: 1}, 1)
				if n := p.created.Load(); n != 2 {
					t.Fatalf("created %d instances, want 2", n)
				}
				return
			}
			select {
			case err := <-failed:
				if !errors.Is(err, errStart) && !errors.Is(err, ErrPanicked) {
					t.Fatalf("OnFailed err = %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("OnFailed was not called")
			}
			if n := p.stopped.Load(); n != 0 {
				t.Fatalf("Stop called %d times on instances that never started", n)
			}
		})
	}
}

func TestSystem_StaleRef(t *testing.T) {
	s := testSystem(t, "n1", nil, nil)
	ref, _ := spawnTest(t, s, "a", 5, SpawnOptions{})
	for _, gen := range []uint64{0, 4, 6} {
		stale := ref
		stale.Gen = gen
		t.Run(stale.String(), func(t *testing.T) {
			if err := s.Tell(stale, incr{N: 1}); !errors.Is(err, ErrStaleRef) {
				t.Fatalf("Tell = %v, want ErrStaleRef", err)
			}
			if _, err := ask(t, s, stale, get{}); !errors.Is(err, ErrStaleRef) {
				t.Fatalf("Ask = %v, want ErrStaleRef", err)
			}
			if err := s.Stop(context.Background(), stale); !errors.Is(err, ErrStaleRef) {
				t.Fatalf("Stop = %v, want ErrStaleRef", err)
			}
		})
	}
	mustAsk(t, s, ref, get{}, 0) // untouched by the stale refs
}

func TestSystem_Spawn(t *testing.T) {
	s := testSystem(t, "n1", nil, nil)
	ref, _ := spawnTest(t, s, "a", 1, SpawnOptions{})
	p := newProbe()
	tests := []struct {
		name    string
		ref     Ref
		factory Factory
		wantErr error // nil: any error
	}{
		{name: "same kind and id", ref: Ref{Kind: "test", ID: "a", Gen: 2}, factory: p.factory("n1"), wantErr: ErrExists},
		{name: "other node", ref: Ref{Node: "n2", Kind: "test", ID: "b"}, factory: p.factory("n1")},
		{name: "no id", ref: Ref{Kind: "test"}, factory: p.factory("n1")},
		{name: "no factory", ref: Ref{Kind: "test", ID: "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Spawn(tc.ref, tc.factory, SpawnOptions{})
			if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("Spawn = %v, want %v", err, tc.wantErr)
			}
		})
	}
	if got, ok := s.Lookup("test", "a"); !ok || got != ref {
		t.Fatalf("Lookup = %v, %v; want %v", got, ok, ref)
	}
	if refs := s.Refs(); len(refs) != 1 || refs[0] != ref {
		t.Fatalf("Refs = %v", refs)
	}
}

func TestSystem_Stop(t *testing.T) {
	s := testSystem(t, "n1", nil, nil)
	ref, p := spawnTest(t, s, "a", 1, SpawnOptions{})
	mustAsk(t, s, ref, incr{N: 1}, 1)

	if err := s.Stop(context.Background(), ref); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if n := p.stopped.Load(); n != 1 {
		t.Fatalf("Stopper.Stop called %d times, want 1", n)
	}
	if _, ok := s.Lookup(ref.Kind, ref.ID); ok {
		t.Fatal("stopped actor still registered")
	}
	if err := s.Tell(ref, get{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Tell after Stop = %v, want ErrNotFound", err)
	}
	if err := s.Stop(context.Background(), ref); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Stop = %v, want ErrNotFound", err)
	}

	next := ref
	next.Gen = 2
	if err := s.Spawn(next, p.factory("n1"), SpawnOptions{}); err != nil {
		t.Fatalf("Spawn of the next generation: %v", err)
	}
	mustAsk(t, s, next, get{}, 0)
}

func TestSystem_PriorityStop(t *testing.T) {
	s := testSystem(t, "n1", nil, nil)
	const mailbox = 4
	ref, p := spawnTest(t, s, "a", 1, SpawnOptions{Mailbox: mailbox})
	if err := s.Tell(ref, block{}); err != nil {
		t.Fatal(err)
	}
	p.waitEntered(t)

	// Fill the mailbox with Asks that wait for their replies.
	errs := make(chan error, mailbox)
	var wg sync.WaitGroup
	for range mailbox {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := ask(t, s, ref, incr{N: 1})
			errs <- err
		}()
	}
	testutil.Until(t, 5*time.Second, "", func() bool { return s.mailboxLen(ref) == mailbox })
	if err := s.Tell(ref, incr{N: 1}); !errors.Is(err, ErrBusy) {
		t.Fatalf("mailbox not full: %v", err)
	}

	// The stop goes past the full mailbox and cancels the running Receive.
	if err := s.Stop(context.Background(), ref); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrStopped) {
			t.Fatalf("queued Ask = %v, want ErrStopped", err)
		}
	}
	if n := p.incrs.Load(); n != 0 {
		t.Fatalf("%d queued messages were processed after the stop", n)
	}
}

func TestSystem_Shutdown(t *testing.T) {
	s := testSystem(t, "n1", nil, nil)
	var probes []*probe
	for i := range 20 {
		ref, p := spawnTest(t, s, string(rune('a'+i)), 1, SpawnOptions{})
		probes = append(probes, p)
		if i%2 == 0 { // half of them busy in Receive
			if err := s.Tell(ref, block{}); err != nil {
				t.Fatal(err)
			}
			p.waitEntered(t)
		} else {
			mustAsk(t, s, ref, get{}, 0) // started, so Stop is due
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for i, p := range probes {
		if n := p.stopped.Load(); n != 1 {
			t.Fatalf("actor %d: Stop called %d times, want 1", i, n)
		}
	}
	if refs := s.Refs(); len(refs) != 0 {
		t.Fatalf("Refs after Shutdown = %v", refs)
	}
	ref := Ref{Kind: "test", ID: "a", Gen: 1}
	if err := s.Tell(ref, get{}); !errors.Is(err, ErrStopped) {
		t.Fatalf("Tell after Shutdown = %v, want ErrStopped", err)
	}
	if err := s.Spawn(ref, newProbe().factory("n1"), SpawnOptions{}); !errors.Is(err, ErrStopped) {
		t.Fatalf("Spawn after Shutdown = %v, want ErrStopped", err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

func TestSpawnOptions_Backoff(t *testing.T) {
	c := &cell{opts: SpawnOptions{Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}.withDefaults()}
	tests := []struct {
		restart int
		want    time.Duration
	}{
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{4, 800 * time.Millisecond},
		{5, time.Second},
		{60, time.Second},
	}
	for _, tc := range tests {
		if got := c.backoff(tc.restart); got != tc.want {
			t.Errorf("backoff(%d) = %s, want %s", tc.restart, got, tc.want)
		}
	}
}

func TestRegisterMessage(t *testing.T) {
	type wireA struct{ X int }
	type wireB struct{ X int }
	RegisterMessage("test.wire_a", &wireA{})
	RegisterMessage("test.wire_a", &wireA{}) // same pair again: fine

	tests := []struct {
		name string
		fn   func()
	}{
		{name: "name reused for another type", fn: func() { RegisterMessage("test.wire_a", wireB{}) }},
		{name: "type reused under another name", fn: func() { RegisterMessage("test.wire_a2", &wireA{}) }},
		{name: "nil prototype", fn: func() { RegisterMessage("test.nil", nil) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			tc.fn()
		})
	}

	if _, err := messageName(wireB{}); !errors.Is(err, ErrUnregisteredMessage) {
		t.Fatalf("messageName of an unregistered type = %v", err)
	}
	v, err := decodeMessage("test.wire_a", []byte{0x81, 0xa1, 'X', 0x07})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := v.(*wireA); !ok || got.X != 7 {
		t.Fatalf("decoded %#v, want &wireA{X: 7}", v)
	}
}
