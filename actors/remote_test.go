package actors

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/transport"
)

// testPair returns two Systems, n1 and n2, each on its own transport on
// 127.0.0.1, resolving each other.
func testPair(t testing.TB) (n1, n2 *System) {
	t.Helper()
	addrs := map[string]string{}
	resolve := func(node string) (string, error) {
		if a, ok := addrs[node]; ok {
			return a, nil
		}
		return "", fmt.Errorf("unknown node %q", node)
	}
	newNode := func(id string) *System {
		cfg := transport.DefaultConfig()
		cfg.BindAddr = "127.0.0.1:0"
		tr, err := transport.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Shutdown() })
		addrs[id] = tr.Addr()
		return testSystem(t, id, tr, resolve)
	}
	return newNode("n1"), newNode("n2")
}

func TestSystem_Remote(t *testing.T) {
	n1, n2 := testPair(t)
	ref, _ := spawnTest(t, n2, "a", 3, SpawnOptions{Backoff: time.Millisecond})

	t.Run("Tell and Ask", func(t *testing.T) {
		for range 3 {
			if err := n1.Tell(ref, incr{N: 2}); err != nil {
				t.Fatalf("remote Tell: %v", err)
			}
		}
		mustAsk(t, n1, ref, get{}, 6)
		got, err := ask(t, n1, ref, getReport{})
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := got.(*report); !ok || *r != (report{Count: 6, Node: "n2"}) {
			t.Fatalf("remote reply %#v, want &report{6, n2}", got)
		}
	})

	tests := []struct {
		name     string
		ref      Ref
		msg      any
		wantErr  error
		wantCode string // the *transport.RemoteError code, when the remote side failed
	}{
		{name: "unknown actor", ref: Ref{Node: "n2", Kind: "test", ID: "zz", Gen: 3}, msg: get{}, wantErr: ErrNotFound, wantCode: "actor_not_found"},
		{name: "stale gen", ref: Ref{Node: "n2", Kind: "test", ID: "a", Gen: 2}, msg: get{}, wantErr: ErrStaleRef, wantCode: "actor_stale_ref"},
		{name: "panic", ref: ref, msg: boom{Msg: "remote"}, wantErr: ErrPanicked, wantCode: "actor_panicked"},
		{name: "plain Receive error", ref: ref, msg: fail{Msg: "bad input"}, wantCode: transport.CodeInternal},
		{name: "unregistered message fails before sending", ref: ref, msg: unregistered{}, wantErr: ErrUnregisteredMessage},
		{name: "unknown node", ref: Ref{Node: "n9", Kind: "test", ID: "a", Gen: 3}, msg: get{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ask(t, n1, tc.ref, tc.msg)
			if err == nil {
				t.Fatal("Ask succeeded")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Ask = %v, want %v", err, tc.wantErr)
			}
			var re *transport.RemoteError
			if got := errors.As(err, &re); got != (tc.wantCode != "") || (got && re.Code != tc.wantCode) {
				t.Fatalf("Ask = %v (remote %v), want remote code %q", err, re, tc.wantCode)
			}
		})
	}

	t.Run("busy", func(t *testing.T) {
		ref, p := spawnTest(t, n2, "small", 1, SpawnOptions{Mailbox: 2})
		if err := n2.Tell(ref, block{}); err != nil {
			t.Fatal(err)
		}
		p.waitEntered(t)
		for range 2 {
			if err := n1.Tell(ref, incr{N: 1}); err != nil {
				t.Fatalf("remote Tell with room: %v", err)
			}
		}
		if err := n1.Tell(ref, incr{N: 1}); !errors.Is(err, ErrBusy) {
			t.Fatalf("remote Tell into a full mailbox = %v, want ErrBusy", err)
		}
		if _, err := ask(t, n1, ref, get{}); !errors.Is(err, ErrBusy) {
			t.Fatalf("remote Ask into a full mailbox = %v, want ErrBusy", err)
		}
		p.unblock()
		testutil.Until(t, 5*time.Second, "", func() bool { return n2.mailboxLen(ref) == 0 })
	})

	t.Run("deadline", func(t *testing.T) {
		blocked, bp := spawnTest(t, n2, "blocked", 1, SpawnOptions{})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if _, err := n1.Ask(ctx, blocked, block{}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("remote Ask = %v, want DeadlineExceeded", err)
		}
		bp.waitEntered(t)
	})

	t.Run("message for another node is not forwarded", func(t *testing.T) {
		misrouted := Ref{Node: "n1", Kind: "test", ID: "a", Gen: 3}
		_, err := n2.handleDeliver(context.Background(), decoderFunc(func(v any) error {
			*(v.(*deliverArgsIn)) = deliverArgsIn{Ref: misrouted, Ask: true, Name: "test.get"}
			return nil
		}))
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("handleDeliver = %v, want ErrNotFound", err)
		}
	})
}

type decoderFunc func(v any) error

func (f decoderFunc) Decode(v any) error { return f(v) }

func TestSystem_RemoteWithoutTransport(t *testing.T) {
	s := testSystem(t, "n1", nil, nil)
	if err := s.Tell(Ref{Node: "n2", Kind: "test", ID: "a"}, get{}); err == nil {
		t.Fatal("Tell to a remote ref without a transport succeeded")
	}
}

// FuzzDecodeDelivery feeds arbitrary bytes to the decoding of a remote delivery.
func FuzzDecodeDelivery(f *testing.F) {
	for _, m := range []any{incr{N: 3}, get{}, &report{Count: 1, Node: "n"}} {
		name, _ := messageName(m)
		b, err := msgpackMarshal(&deliverArgs{Ref: Ref{Node: "n1", Kind: "k", ID: "i", Gen: 9}, Ask: true, Name: name, Body: m})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var in deliverArgsIn
		if err := msgpackUnmarshal(data, &in); err != nil {
			return
		}
		_, _ = decodeMessage(in.Name, in.Body)
	})
}
