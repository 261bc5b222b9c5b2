package serving

import (
	"errors"
	"os/exec"
	"syscall"
)

// startChild starts cmd and waits for it on a goroutine. Windows has no
// process groups of the Unix kind nor a parent-death signal: a server's own
// children are not reached by Close, and a server outlives an agent that is
// killed. Kiln's supported platform is Linux; this keeps the build working.
// as is always nil here: lookupRunAs refuses exec.user.
func startChild(cmd *exec.Cmd, as *runAs, exited func(error)) error {
	if as != nil {
		return errors.New("serving: exec.user is not supported on windows")
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { exited(cmd.Wait()) }()
	return nil
}

// lookupRunAs refuses exec.user: running a process as another account is
// implemented for unix only.
func lookupRunAs(name string) (*runAs, error) {
	if name == "" {
		return nil, nil
	}
	return nil, errors.New("running processes as another user (exec.user) is not supported on windows")
}

// killGroup stops the server process itself; Windows has no SIGTERM, so
// every signal kills.
func killGroup(p *processInstance, _ syscall.Signal) {
	_ = p.cmd.Process.Kill()
}
