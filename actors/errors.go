package actors

import (
	"errors"

	"github.com/kilnml/kiln/transport"
)

// Sentinel errors. They are returned wrapped with the Ref or detail (test with
// errors.Is) and carry a code across transport, so errors.Is works the same for
// a remote Ref as for a local one.
var (
	// ErrBusy: the actor's mailbox is full. Callers shed load (HTTP 429/503) or
	// try another replica; nothing was queued.
	ErrBusy error = &codedError{code: "actor_busy", msg: "actors: mailbox full"}

	// ErrNotFound: no actor with the Ref's Kind and ID runs on its node.
	ErrNotFound error = &codedError{code: "actor_not_found", msg: "actors: actor not found"}

	// ErrStaleRef: an actor with the Ref's Kind and ID runs, but under another
	// Gen (allocation index). The Ref is a fencing token from an older (or newer)
	// allocation, and must not reach this instance.
	ErrStaleRef error = &codedError{code: "actor_stale_ref", msg: "actors: stale actor ref"}

	// ErrExists: Spawn found an actor with the same Kind and ID running.
	ErrExists error = &codedError{code: "actor_exists", msg: "actors: actor already running"}

	// ErrStopped: the actor (or the whole System) is stopping or stopped; the
	// message was not, or will not be, processed.
	ErrStopped error = &codedError{code: "actor_stopped", msg: "actors: actor stopped"}

	// ErrPanicked: Receive (or the Factory, or Start) panicked; wrapped with the
	// panic value. The instance is being replaced.
	ErrPanicked error = &codedError{code: "actor_panicked", msg: "actors: actor panicked"}

	// ErrUnregisteredMessage: a message or reply crossing nodes has a type (or
	// wire name) not registered with RegisterMessage.
	ErrUnregisteredMessage error = &codedError{code: "actor_unregistered_message", msg: "actors: unregistered message type"}
)

// sentinels maps wire codes back to the errors above on the calling node.
var sentinels = func() map[string]error {
	m := make(map[string]error)
	for _, err := range []error{ErrBusy, ErrNotFound, ErrStaleRef, ErrExists, ErrStopped, ErrPanicked, ErrUnregisteredMessage} {
		m[err.(*codedError).code] = err
	}
	return m
}()

// codedError is a sentinel with a transport error code.
type codedError struct {
	code string
	msg  string
}

func (e *codedError) Error() string   { return e.msg }
func (e *codedError) ErrCode() string { return e.code }

// remoteError is a failure reported by a remote System: it Is the local
// sentinel of the same code, and As a *transport.RemoteError.
type remoteError struct {
	sentinel error
	remote   *transport.RemoteError
}

func (e *remoteError) Error() string   { return e.remote.Message }
func (e *remoteError) Unwrap() []error { return []error{e.sentinel, e.remote} }

// fromRemote turns a transport error into one that matches the sentinels.
func fromRemote(err error) error {
	var re *transport.RemoteError
	if !errors.As(err, &re) {
		return err
	}
	if sentinel, ok := sentinels[re.Code]; ok {
		return &remoteError{sentinel: sentinel, remote: re}
	}
	return err
}
