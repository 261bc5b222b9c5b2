package clustertest

import (
	"os/exec"
	"runtime"
	"syscall"
)

// On Linux every agent gets Pdeathsig = SIGKILL, so the kernel kills it if the
// test binary dies before its cleanups run (a panic elsewhere, a -timeout kill).
// Pdeathsig fires when the *thread* that forked the child exits, and the Go
// runtime ends a thread when a goroutine locked to it exits; so all agents are
// forked from one goroutine locked to its thread for the whole run.

type spawnRequest struct {
	cmd  *exec.Cmd
	done chan error
}

var spawnCh chan spawnRequest

// startSpawner starts the forking goroutine; stop it by calling the returned func
// once every agent has been reaped.
func startSpawner() (stop func()) {
	spawnCh = make(chan spawnRequest)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		for req := range spawnCh {
			req.done <- req.cmd.Start()
		}
	}()
	return func() {
		close(spawnCh)
		<-exited
	}
}

// startProcess starts cmd from the spawner's thread.
func startProcess(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	req := spawnRequest{cmd: cmd, done: make(chan error, 1)}
	spawnCh <- req
	return <-req.done
}
