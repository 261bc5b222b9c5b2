package proc

import "errors"

var (
	// ErrExecRefused is wrapped by the error of a command that this node's
	// exec config does not let run: the command itself, a variable of its
	// environment, or exec.user.
	ErrExecRefused = errors.New("proc: refused by this node's exec config")

	// ErrBadCommand is wrapped by the error of a command that cannot run
	// whatever the node's config: it is empty or not found, or its
	// environment sets a variable that Kiln sets itself.
	ErrBadCommand = errors.New("proc: bad command")
)
