package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

type echoArgs struct {
	Text string
	N    int
}

type echoReply struct {
	Text string
	N    int
}

type codedErr struct{ code, msg string }

func (e *codedErr) Error() string   { return e.msg }
func (e *codedErr) ErrCode() string { return e.code }

// registerTestMethods installs the handlers the RPC tests call.
func registerTestMethods(tr *Transport) {
	tr.Register("echo", func(ctx context.Context, dec Decoder) (any, error) {
		var a echoArgs
		if err := dec.Decode(&a); err != nil {
			return nil, err
		}
		return &echoReply{Text: a.Text, N: a.N + 1}, nil
	})
	tr.Register("fail", func(ctx context.Context, dec Decoder) (any, error) {
		return nil, fmt.Errorf("wrapped: %w", &codedErr{code: "quota_exceeded", msg: "too many"})
	})
	tr.Register("fail_plain", func(ctx context.Context, dec Decoder) (any, error) {
		return nil, errors.New("plain failure")
	})
	tr.Register("panic", func(ctx context.Context, dec Decoder) (any, error) {
		panic("handler bug")
	})
	tr.Register("deadline", func(ctx context.Context, dec Decoder) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	tr.Register("unencodable", func(ctx context.Context, dec Decoder) (any, error) {
		return make(chan int), nil
	})
}

func TestTransport_Call(t *testing.T) {
	server := testTransport(t)
	registerTestMethods(server)
	client := testTransport(t)

	tests := []struct {
		name     string
		method   string
		wantCode string // "" means success
		wantMsg  string
	}{
		{name: "round trip", method: "echo"},
		{name: "remote error code preserved through wrapping", method: "fail", wantCode: "quota_exceeded", wantMsg: "wrapped: too many"},
		{name: "error without code is internal", method: "fail_plain", wantCode: CodeInternal, wantMsg: "plain failure"},
		{name: "unknown method", method: "nope", wantCode: CodeUnknownMethod},
		{name: "handler panic is internal", method: "panic", wantCode: CodeInternal},
		{name: "unencodable reply is internal", method: "unencodable", wantCode: CodeInternal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var reply echoReply
			err := client.Call(ctx, server.Addr(), tc.method, &echoArgs{Text: "hi", N: 41}, &reply)
			if tc.wantCode == "" {
				if err != nil {
					t.Fatalf("Call: %v", err)
				}
				if reply != (echoReply{Text: "hi", N: 42}) {
					t.Fatalf("reply = %+v", reply)
				}
				return
			}
			var re *RemoteError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v (%T), want *RemoteError", err, err)
			}
			if re.Code != tc.wantCode {
				t.Fatalf("code = %q, want %q (message %q)", re.Code, tc.wantCode, re.Message)
			}
			if tc.wantMsg != "" && re.Message != tc.wantMsg {
				t.Fatalf("message = %q, want %q", re.Message, tc.wantMsg)
			}
			if errors.Is(err, ErrUnreachable) || errors.Is(err, ErrConnLost) {
				t.Fatalf("a remote failure must not look like a network failure: %v", err)
			}
		})
	}
}

func TestTransport_CallDeadline(t *testing.T) {
	server := testTransport(t)
	registerTestMethods(server)
	release := make(chan struct{})
	handlerDeadline := make(chan time.Duration, 1)
	server.Register("stuck", func(ctx context.Context, dec Decoder) (any, error) {
		dl, _ := ctx.Deadline()
		handlerDeadline <- time.Until(dl)
		<-release // ignores ctx on purpose: the client must give up on its own
		return nil, nil
	})
	t.Cleanup(func() { close(release) })
	client := testTransport(t)
	// Open the session first, so that a slow dial on a loaded machine does not
	// use up the short deadlines below.
	if err := client.Call(context.Background(), server.Addr(), "echo", &echoArgs{}, nil); err != nil {
		t.Fatal(err)
	}
	waitHandler := func(t *testing.T) time.Duration {
		t.Helper()
		select {
		case left := <-handlerDeadline:
			return left
		case <-time.After(5 * time.Second):
			t.Fatal("the request never reached the handler")
			return 0
		}
	}

	t.Run("client gives up on a handler that ignores ctx", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		err := client.Call(ctx, server.Addr(), "stuck", nil, nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
		if left := waitHandler(t); left <= 0 || left > 100*time.Millisecond {
			t.Fatalf("handler saw %s left of the deadline, want (0, 100ms]", left)
		}
	})
	t.Run("handler that honours ctx reports deadline_exceeded", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		err := client.Call(ctx, server.Addr(), "deadline", nil, nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("cancel aborts the call", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- client.Call(ctx, server.Addr(), "stuck", nil, nil) }()
		waitHandler(t) // the request reached the handler
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("session still usable afterwards", func(t *testing.T) {
		var reply echoReply
		if err := client.Call(context.Background(), server.Addr(), "echo", &echoArgs{N: 1}, &reply); err != nil || reply.N != 2 {
			t.Fatalf("Call: %v, reply %+v", err, reply)
		}
	})
}

func TestTransport_ConcurrentCalls(t *testing.T) {
	server := testTransport(t)
	registerTestMethods(server)
	client := testTransport(t)

	const workers, callsEach = 64, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range callsEach {
				var reply echoReply
				want := w*1000 + i
				if err := client.Call(context.Background(), server.Addr(), "echo", &echoArgs{Text: "x", N: want}, &reply); err != nil {
					errs <- err
					return
				}
				if reply.N != want+1 {
					errs <- fmt.Errorf("worker %d got reply %d, want %d", w, reply.N, want+1)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	client.mu.Lock()
	n := len(client.peers)
	client.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d pooled peers, want one session reused by all calls", n)
	}
}

func TestTransport_Redial(t *testing.T) {
	server := testTransport(t)
	registerTestMethods(server)
	addr := server.Addr()
	client := testTransport(t)

	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var reply echoReply
		return client.Call(ctx, addr, "echo", &echoArgs{N: 1}, &reply)
	}
	if err := call(); err != nil {
		t.Fatalf("first call: %v", err)
	}
	client.mu.Lock()
	first := client.peers[addr].sess
	client.mu.Unlock()

	server.Shutdown()
	// Usually ErrUnreachable (the dead session is noticed, or its stream cannot
	// open, and the redial fails). When the session dies in the middle of the
	// write, yamux cannot say whether the frame left, and the honest answer is
	// ErrConnLost.
	if err := call(); !errors.Is(err, ErrUnreachable) && !errors.Is(err, ErrConnLost) {
		t.Fatalf("call to a stopped server: %v, want ErrUnreachable or ErrConnLost", err)
	}

	restarted := testTransport(t, withBind(addr))
	registerTestMethods(restarted)
	if err := call(); err != nil {
		t.Fatalf("call after restart: %v", err)
	}
	client.mu.Lock()
	second := client.peers[addr].sess
	client.mu.Unlock()
	if second == first {
		t.Fatal("the broken session was reused")
	}
}

func TestTransport_Shutdown(t *testing.T) {
	server := testTransport(t)
	registerTestMethods(server)
	client := testTransport(t)
	if err := client.Call(context.Background(), server.Addr(), "echo", &echoArgs{}, nil); err != nil {
		t.Fatalf("Call: %v", err)
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); client.Shutdown() }()
	}
	wg.Wait()
	if err := client.Call(context.Background(), server.Addr(), "echo", &echoArgs{}, nil); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Call after Shutdown: %v, want ErrShutdown", err)
	}
	if _, err := client.StreamLayer().Dial("127.0.0.1:1", time.Second); err == nil {
		t.Fatal("raft Dial after Shutdown succeeded")
	}
	if _, err := client.StreamLayer().Accept(); err == nil {
		t.Fatal("raft Accept after Shutdown succeeded")
	}
}

func TestTransport_UnknownProtocolByte(t *testing.T) {
	server := testTransport(t)
	conn, err := net.Dial("tcp", server.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{0x7f}); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes, want the server to close the connection", n)
	}
}

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr bool
	}{
		{name: "default", mutate: func(*Config) {}},
		{name: "empty bind", mutate: func(c *Config) { c.BindAddr = "" }, wantErr: true},
		{name: "bind without port", mutate: func(c *Config) { c.BindAddr = "127.0.0.1" }, wantErr: true},
		{name: "bind bad port", mutate: func(c *Config) { c.BindAddr = "127.0.0.1:http" }, wantErr: true},
		{name: "advertise port 0", mutate: func(c *Config) { c.AdvertiseAddr = "10.0.0.1:0" }, wantErr: true},
		{name: "advertise unspecified", mutate: func(c *Config) { c.AdvertiseAddr = "0.0.0.0:7071" }, wantErr: true},
		{name: "advertise name", mutate: func(c *Config) { c.AdvertiseAddr = "node1.example:7071" }},
		{name: "negative dial timeout", mutate: func(c *Config) { c.DialTimeout = -time.Second }, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if (err != nil) != tc.wantErr {
				t.Fatalf("Validate() = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

// FuzzServeRequest feeds arbitrary bytes to the server's request decoder: it
// must answer or give up, never panic or hang.
func FuzzServeRequest(f *testing.F) {
	tr := &Transport{ctx: context.Background(), handlers: map[string]Handler{}}
	registerTestMethods(tr)
	tr.logger = testTransportLogger()
	for _, args := range []any{&echoArgs{Text: "a", N: 1}, nil, []int{1, 2}} {
		var buf bytes.Buffer
		if err := encodeRequest(context.Background(), &buf, "echo", args); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Add([]byte{0x82, 0xa1, 'm', 0xa4, 'e', 'c', 'h', 'o'})
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		tr.serveRequest(bytes.NewReader(data), &out)
	})
}

func TestTransport_AdvertiseAddr(t *testing.T) {
	t.Run("explicit", func(t *testing.T) {
		tr := testTransport(t, func(c *Config) { c.AdvertiseAddr = "10.1.2.3:7071" })
		if got := tr.Addr(); got != "10.1.2.3:7071" {
			t.Fatalf("Addr = %q", got)
		}
		if got := tr.StreamLayer().Addr().String(); got != "10.1.2.3:7071" {
			t.Fatalf("raft address = %q, want the advertised one", got)
		}
	})
	t.Run("listener address", func(t *testing.T) {
		tr := testTransport(t, withBind("127.0.0.2:0"))
		host, port, err := net.SplitHostPort(tr.Addr())
		if err != nil || host != "127.0.0.2" || port == "0" {
			t.Fatalf("Addr = %q, want 127.0.0.2 and the chosen port", tr.Addr())
		}
	})
	t.Run("unspecified bind uses a private IP or says so", func(t *testing.T) {
		tr, err := New(Config{BindAddr: "0.0.0.0:0"})
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New = %v, want ErrInvalidConfig when no private IP exists", err)
			}
			return
		}
		defer tr.Shutdown()
		host, _, _ := net.SplitHostPort(tr.Addr())
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			t.Fatalf("Addr = %q, want a concrete IP", tr.Addr())
		}
	})
}

// A request longer than MaxRequestBytes fails to decode on the server, which
// answers instead of buffering it; a request within the limit still works.
func TestTransport_MaxRequestBytes(t *testing.T) {
	server := testTransport(t, func(c *Config) { c.MaxRequestBytes = 4 << 10 })
	server.Register("size", func(ctx context.Context, dec Decoder) (any, error) {
		var b []byte
		if err := dec.Decode(&b); err != nil {
			return nil, fmt.Errorf("decode: %w", err)
		}
		return len(b), nil
	})
	client := testTransport(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int
	if err := client.Call(ctx, server.Addr(), "size", make([]byte, 1<<10), &n); err != nil || n != 1<<10 {
		t.Fatalf("1 KiB request: n=%d err=%v", n, err)
	}
	err := client.Call(ctx, server.Addr(), "size", make([]byte, 64<<10), &n)
	if err == nil || !strings.Contains(err.Error(), "max_request_bytes") {
		t.Fatalf("64 KiB request over a 4 KiB limit: err=%v, want a max_request_bytes refusal", err)
	}
	// The connection is still usable afterwards.
	if err := client.Call(ctx, server.Addr(), "size", []byte{1}, &n); err != nil || n != 1 {
		t.Fatalf("request after the refusal: n=%d err=%v", n, err)
	}
}
