package actors

import (
	"context"
	"time"
)

// PassLoop is how a reconciler keeps what runs on its node equal to the
// registry: a pass whenever the tables it reads change (Index moves;
// Changed wakes it to look), and a full pass every Interval whatever the
// index says, to catch what a pass missed (a node that restarted, an actor
// that ended).
type PassLoop struct {
	Interval time.Duration
	// Index is the index of the last change to the tables the pass reads;
	// nil passes on every wake.
	Index   func() uint64
	Changed func() <-chan struct{}
	Pass    func(context.Context) error
	// Failed is told of a pass that failed while ctx was live.
	Failed func(error)
}

// Run runs passes until ctx ends.
func (l PassLoop) Run(ctx context.Context) {
	tick := time.NewTicker(l.Interval)
	defer tick.Stop()
	seen, full := uint64(0), true
	for {
		idx := uint64(0)
		if l.Index != nil {
			idx = l.Index()
		}
		if full || idx == 0 || idx != seen {
			seen = idx
			if err := l.Pass(ctx); err != nil && ctx.Err() == nil && l.Failed != nil {
				l.Failed(err)
			}
		}
		full = false
		select {
		case <-ctx.Done():
			return
		case <-l.Changed():
		case <-tick.C:
			full = true
		}
	}
}
