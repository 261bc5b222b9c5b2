package serving

import (
	"os/exec"
	"syscall"
)

// startChild starts cmd and waits for it on a goroutine. Windows has no
// process groups of the Unix kind nor a parent-death signal: a server's own
// children are not reached by Close, and a server outlives an agent that is
// killed. Kiln's supported platform is Linux; this keeps the build working.
func startChild(cmd *exec.Cmd, exited func(error)) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { exited(cmd.Wait()) }()
	return nil
}

// killGroup stops the server process itself; Windows has no SIGTERM, so
// every signal kills.
func killGroup(p *processInstance, _ syscall.Signal) {
	_ = p.cmd.Process.Kill()
}
