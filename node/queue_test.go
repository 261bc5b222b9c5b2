package node

import (
	"context"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// A full forwarder queue refuses the next write at once with overloaded
// (429), instead of queueing it behind a leader that cannot keep up.
func TestForwarder_FullQueueRefuses(t *testing.T) {
	a := &Agent{ctx: context.Background()}
	f := &forwarder{a: a, limit: 2, inflight: maxForwardInflight} // no send loop starts
	f.queue = []*pendingWrite{{}, {}}
	_, err := f.forward(context.Background(), []byte{byte(structs.ModelCreateType)})
	if structs.ErrorCode(err) != structs.CodeOverloaded {
		t.Fatalf("forward on a full queue = %v, want code %s", err, structs.CodeOverloaded)
	}
	if httpStatus(structs.ErrorCode(err)) != 429 {
		t.Fatalf("overloaded maps to %d, want 429", httpStatus(structs.ErrorCode(err)))
	}
	if len(f.queue) != 2 {
		t.Fatalf("queue holds %d writes after a refusal, want 2", len(f.queue))
	}
}

// The committer takes what fits and refuses the rest of a submission.
func TestCommitter_FullQueueRefuses(t *testing.T) {
	a := &Agent{ctx: context.Background()}
	c := &committer{a: a, limit: 3, inflight: maxCommitInflight} // no commit loop starts
	c.queue = []*commitWaiter{{}}
	chans := c.submit([][]byte{{1}, {2}, {3}, {4}})
	if len(c.queue) != 3 {
		t.Fatalf("queue holds %d commands, want 3 (the limit)", len(c.queue))
	}
	for i, ch := range chans {
		select {
		case out := <-ch:
			if i < 2 {
				t.Fatalf("command %d fit in the queue but got an outcome: %v", i, out.err)
			}
			if structs.ErrorCode(out.err) != structs.CodeOverloaded {
				t.Fatalf("command %d: %v, want overloaded", i, out.err)
			}
		default:
			if i >= 2 {
				t.Fatalf("command %d did not fit but got no outcome", i)
			}
		}
	}
}
