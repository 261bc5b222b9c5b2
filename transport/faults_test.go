package transport

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestFaults_Drop(t *testing.T) {
	a := testTransport(t, withBind("127.0.0.1:0"))
	b := testTransport(t, withBind("127.0.0.2:0"))
	registerTestMethods(a)
	registerTestMethods(b)

	call := func(from, to *Transport) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var reply echoReply
		return from.Call(ctx, to.Addr(), "echo", &echoArgs{N: 1}, &reply)
	}
	// Open sessions both ways, so the fault has live connections to cut.
	if err := call(a, b); err != nil {
		t.Fatalf("a->b: %v", err)
	}
	if err := call(b, a); err != nil {
		t.Fatalf("b->a: %v", err)
	}

	a.Faults().Set("127.0.0.2", Fault{Drop: true})
	if err := call(a, b); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("a->b with a dropping b: %v, want ErrUnreachable", err)
	}
	err := call(b, a)
	var re *RemoteError
	if err == nil || errors.As(err, &re) {
		t.Fatalf("b->a with a dropping b: %v, want a network error", err)
	}
	if !errors.Is(err, ErrUnreachable) && !errors.Is(err, ErrConnLost) {
		t.Fatalf("b->a error %v wraps neither ErrUnreachable nor ErrConnLost", err)
	}

	a.Faults().Clear("127.0.0.2:9999") // the port is ignored
	if len(a.Faults().Rules()) != 0 {
		t.Fatalf("rules after Clear: %v", a.Faults().Rules())
	}
	if err := call(a, b); err != nil {
		t.Fatalf("a->b after Clear: %v", err)
	}
	if err := call(b, a); err != nil {
		t.Fatalf("b->a after Clear: %v", err)
	}
}

func TestFaults_Delay(t *testing.T) {
	a := testTransport(t, withBind("127.0.0.1:0"))
	b := testTransport(t, withBind("127.0.0.2:0"))
	registerTestMethods(b)
	call := func() (time.Duration, error) {
		start := time.Now()
		var reply echoReply
		err := a.Call(context.Background(), b.Addr(), "echo", &echoArgs{N: 1}, &reply)
		return time.Since(start), err
	}
	if _, err := call(); err != nil { // session set up before the fault: it applies to live connections
		t.Fatal(err)
	}
	const delay = 150 * time.Millisecond
	a.Faults().Set("127.0.0.2", Fault{Delay: delay})
	took, err := call()
	if err != nil {
		t.Fatal(err)
	}
	if took < delay {
		t.Fatalf("call took %s with a %s write delay", took, delay)
	}
	t.Run("deadline shorter than the delay", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), delay/3)
		defer cancel()
		if err := a.Call(ctx, b.Addr(), "echo", &echoArgs{}, nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
	})
	a.Faults().ClearAll()
	if _, err := call(); err != nil {
		t.Fatal(err)
	}
}

func TestFaults_NormalizeHost(t *testing.T) {
	tests := []struct{ in, want string }{
		{"127.0.0.2", "127.0.0.2"},
		{"127.0.0.2:7071", "127.0.0.2"},
		{"[::1]:7071", "::1"},
		{"0:0::1", "::1"},
		{"Node1.Example", "node1.example"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := normalizeHost(tc.in); got != tc.want {
				t.Fatalf("normalizeHost(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
