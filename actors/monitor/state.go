package monitor

import (
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Step is the state an alert moves to: from its state (held since since),
// with the condition holding or not at now, and the rule's for duration.
// It returns the state unchanged when nothing moves.
func Step(state string, since time.Time, holds bool, now time.Time, hold time.Duration) string {
	switch state {
	case structs.AlertInactive, structs.AlertResolved:
		if !holds {
			return state
		}
		if hold <= 0 {
			return structs.AlertFiring
		}
		return structs.AlertPending
	case structs.AlertPending:
		if !holds {
			return structs.AlertInactive
		}
		if now.Sub(since) >= hold {
			return structs.AlertFiring
		}
		return state
	case structs.AlertFiring:
		if !holds {
			return structs.AlertResolved
		}
	}
	return state
}

// MaxAttempts bounds how often a failing action is tried.
const MaxAttempts = 8

// Backoff is the wait before attempt n+1 of an action that has failed n
// times: 1 s, doubling, at most 5 min.
func Backoff(n int) time.Duration {
	d := time.Second << min(max(n-1, 0), 9)
	return min(d, 5*time.Minute)
}

// Due reports whether a monitor's next check is due at now.
func Due(m *structs.Monitor, now time.Time) bool {
	return m.LastCheckAt.IsZero() || now.Sub(m.LastCheckAt) >= m.Spec.Every()
}
