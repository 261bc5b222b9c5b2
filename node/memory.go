package node

import (
	"runtime/debug"
	"time"
)

// reclaimInterval is how often an idle agent hands freed memory back to the OS.
const reclaimInterval = 30 * time.Second

// reclaimLoop returns memory to the OS once the agent goes quiet. After a burst of
// writes the Go heap goal stays at twice the burst's peak, and an idle process
// collects only every two minutes, so the garbage of the burst would otherwise sit
// in RSS long after the burst ended. A forced collection every 30 s while idle
// costs nothing measurable; under load the runtime's own pacing is left alone.
func (a *Agent) reclaimLoop() {
	tick := time.NewTicker(reclaimInterval)
	defer tick.Stop()
	last := a.fsm.AppliedIndex()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-tick.C:
		}
		now := a.fsm.AppliedIndex()
		if now-last < 100 {
			debug.FreeOSMemory()
		}
		last = now
	}
}
