package transport

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

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

// TestMain fails the run if a test leaves a goroutine behind (STYLE.md rule 6).
func TestMain(m *testing.M) { testutil.Main(m) }
