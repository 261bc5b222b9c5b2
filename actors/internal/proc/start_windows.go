package proc

import (
	"errors"
	"os/exec"
	"syscall"
)

// Start starts cmd and waits for it on a goroutine. Windows has no process
// groups of the Unix kind nor a parent-death signal: a child's own children
// are not reached by KillGroup, and a child outlives an agent that is
// killed. Kiln's supported platform is Linux; this keeps the build working.
// as is always nil here: LookupUser refuses exec.user.
func Start(cmd *exec.Cmd, as *User, exited func(error)) error {
	if as != nil {
		return errors.New("proc: exec.user is not supported on windows")
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { exited(cmd.Wait()) }()
	return nil
}

// LookupUser refuses exec.user: running a process as another account is
// implemented for unix only.
func LookupUser(name string) (*User, error) {
	if name == "" {
		return nil, nil
	}
	return nil, errors.New("running processes as another user (exec.user) is not supported on windows")
}

// KillGroup kills the process itself; Windows has no SIGTERM, so every
// signal kills.
func KillGroup(cmd *exec.Cmd, _ syscall.Signal) {
	_ = cmd.Process.Kill()
}
