package node

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if an agent leaves a goroutine behind after Shutdown
// (STYLE.md rule 6).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("os/signal.signal_recv"))
}
