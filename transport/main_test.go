package transport

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines leaked by the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines waits up to timeout for every goroutine but the test
// runner's own to exit, and returns the stacks of those left.
func leakedGoroutines(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for {
		var leaked []string
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		// The first stack is this goroutine's own.
		for _, g := range strings.Split(string(buf), "\n\n")[1:] {
			if benignGoroutine(g) {
				continue
			}
			leaked = append(leaked, g)
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func benignGoroutine(stack string) bool {
	for _, s := range []string{
		"os/signal.signal_recv", // started by signal.Notify in the runtime
		"runtime.ensureSigM",
	} {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return strings.TrimSpace(stack) == ""
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testTransport starts a transport on a free port of 127.0.0.1 (or the bind
// address an option sets) and shuts it down when the test ends.
func testTransport(t testing.TB, opts ...func(*Config)) *Transport {
	t.Helper()
	cfg := DefaultConfig()
	cfg.BindAddr = "127.0.0.1:0"
	cfg.DialTimeout = 2 * time.Second
	for _, o := range opts {
		o(&cfg)
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { tr.Shutdown() })
	return tr
}

func withBind(addr string) func(*Config) {
	return func(c *Config) { c.BindAddr = addr }
}

func testTransportLogger() hclog.Logger { return hclog.NewNullLogger() }
