//go:build unix

package serving

import (
	"os/exec"
	"runtime"
	"syscall"
)

// startChild starts cmd in a process group of its own, so that stopping it
// reaches the workers a server forks (gunicorn, torchserve) and not the agent,
// then waits for it on a goroutine and calls exited with Wait's result.
//
// On Linux the child also gets Pdeathsig = SIGKILL, so it dies with the agent
// even when the agent is killed with -9 and cannot clean up. Pdeathsig fires
// when the *thread* that forked the child ends, and Go ends a thread when a
// goroutine locked to it returns; so the goroutine that starts the child
// stays locked to its thread and waits there until the child has exited.
func startChild(cmd *exec.Cmd, exited func(error)) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setDeathSignal(cmd.SysProcAttr)
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the child
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited(cmd.Wait())
	}()
	return <-started
}

// killGroup signals p's process group. The group outlives its leader while
// any member does, so this also reaches a dead server's children; once the
// group is empty the kernel answers ESRCH, which is fine.
func killGroup(p *processInstance, sig syscall.Signal) {
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}
