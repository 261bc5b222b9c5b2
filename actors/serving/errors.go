package serving

import (
	"github.com/kilnml/kiln/actors/internal/proc"
	"github.com/kilnml/kiln/raftfsm/structs"
)

var (
	// ErrExecRefused is wrapped by the error of a process replica that this
	// node's exec config does not let start: its command, a variable of its
	// environment, or exec.user. It is proc's, which training's jobs wrap
	// too.
	ErrExecRefused = proc.ErrExecRefused

	// ErrOverloaded is what a request to a remote replica gets at once,
	// instead of a place in the queue, when that replica's outbox already
	// holds outboxQueueBatches messages' worth of this node's requests. It
	// carries CodeBusy: the router tries another replica, and the ingress
	// answers 429 with Retry-After when none takes it.
	ErrOverloaded = structs.Errorf(CodeBusy, "serving: too many requests queued for the replica; retry later")
)
