package actors

import (
	"context"
	"fmt"
	"time"
)

// Ref names one actor: what it is (Kind, ID), where it runs (Node) and which
// allocation it belongs to (Gen).
type Ref struct {
	Node string `msgpack:"node"`
	Kind string `msgpack:"kind"`
	ID   string `msgpack:"id"`
	// Gen is the Raft index of the allocation that placed the actor. It is a
	// fencing token: a message addressed with another Gen than the running
	// actor's fails with ErrStaleRef, so a Ref kept from a previous allocation
	// cannot reach its successor.
	Gen uint64 `msgpack:"gen"`
}

// String returns "kind/id@node#gen".
func (r Ref) String() string {
	return fmt.Sprintf("%s/%s@%s#%d", r.Kind, r.ID, r.Node, r.Gen)
}

// Actor handles the messages of one actor, one at a time, on the actor's own
// goroutine: Receive needs no locking for the actor's state.
//
// ctx ends when the actor is stopped, and for an Ask also when the asker's
// context ends. The returned value and error are the Ask's reply; for a Tell
// they are dropped (errors are logged). A panic is recovered: the asker gets
// ErrPanicked and the instance is replaced by a fresh one from the Factory.
type Actor interface {
	Receive(ctx context.Context, msg any) (any, error)
}

// Deferred is a reply that Receive hands back instead of a value when the
// answer comes from work the actor has passed on (a batch it queued for
// scoring, say): the runtime calls it on a goroutine of its own, with the
// message's context, and its result is the reply. The actor meanwhile goes on
// with its mailbox. A Deferred must only wait for its result; it must not
// touch the actor's state, which belongs to Receive. A panic in it answers
// ErrPanicked but does not restart the actor.
type Deferred func(ctx context.Context) (any, error)

// Starter is implemented by actors that need setup (loading a model, say)
// before their first message. Start runs on the actor's goroutine, while
// messages already queue; ctx ends when the actor is stopped. A failed Start
// counts as a crash, and must release what it acquired: Stop is not called.
type Starter interface {
	Start(ctx context.Context) error
}

// Stopper is implemented by actors that hold resources. Stop is called once per
// instance that started, when it is retired: on Stop, on Shutdown, and before a
// crashed instance is replaced.
type Stopper interface {
	Stop()
}

// Factory makes a fresh actor instance, at spawn and at each restart. Restarts
// begin from the state the Factory gives, not from the crashed instance's.
type Factory func() (Actor, error)

// Defaults of SpawnOptions.
const (
	DefaultMailbox       = 64
	DefaultMaxRestarts   = 5
	DefaultRestartWindow = time.Minute
	DefaultBackoff       = 100 * time.Millisecond
	DefaultMaxBackoff    = 10 * time.Second
)

// SpawnOptions tune one actor; zero fields take the defaults above.
type SpawnOptions struct {
	// Mailbox is the number of messages that may wait; beyond it Tell and Ask
	// fail with ErrBusy.
	Mailbox int
	// MaxRestarts is how many crashes within RestartWindow are restarted; the
	// next one stops the actor and calls OnFailed. Negative: never restart.
	MaxRestarts   int
	RestartWindow time.Duration
	// Backoff is the pause before the first restart, doubled for each further
	// crash in the window, up to MaxBackoff.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// OnFailed is called, on the actor's goroutine after it has left the System,
	// when the actor gives up after too many crashes. err wraps the last crash.
	OnFailed func(ref Ref, err error)
}

func (o SpawnOptions) withDefaults() SpawnOptions {
	if o.Mailbox <= 0 {
		o.Mailbox = DefaultMailbox
	}
	if o.MaxRestarts == 0 {
		o.MaxRestarts = DefaultMaxRestarts
	}
	if o.RestartWindow <= 0 {
		o.RestartWindow = DefaultRestartWindow
	}
	if o.Backoff <= 0 {
		o.Backoff = DefaultBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = max(DefaultMaxBackoff, o.Backoff)
	}
	return o
}
