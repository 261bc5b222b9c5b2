package node

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the run if an agent leaves a goroutine behind after Shutdown
// (STYLE.md rule 6).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		// goleak alone waits well under a second; goroutines of a component that
		// was just shut down may need longer on a loaded machine.
		err := goleak.Find(goleak.IgnoreTopFunction("os/signal.signal_recv"))
		for deadline := time.Now().Add(10 * time.Second); err != nil && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
			err = goleak.Find(goleak.IgnoreTopFunction("os/signal.signal_recv"))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "goroutines outlived the tests:", err)
			code = 1
		}
	}
	os.Exit(code)
}
