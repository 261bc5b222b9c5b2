package proc

import (
	"context"
	"fmt"
	"os/exec"
	"syscall"
	"time"
)

const (
	// DefaultGrace is how long Run lets a stopped command exit on SIGTERM
	// when its RunSpec sets no Grace.
	DefaultGrace = 10 * time.Second
	// waitDelay bounds how long a finished command's stragglers may keep
	// its output pipe open before Wait stops copying; they are then killed
	// with the rest of the group.
	waitDelay = time.Second
)

// RunSpec says how to run one one-shot command.
type RunSpec struct {
	// Command is the program and its arguments; Command[0] is what the
	// child sees as its name.
	Command []string
	// Path is the executable to run, as Policy.Check resolved it. Empty
	// means Command[0] resolved the same way in Dir.
	Path string
	// Env is the child's whole environment, already checked: nothing of
	// the agent's is added, and nil means an empty one.
	Env []string
	// Dir is the directory the command runs in; empty means the agent's.
	// With Policy.User set, that user must be able to enter it: Run does
	// not change its owner.
	Dir string
	// Policy is the node's exec config; Run uses only its User (whom the
	// command runs as). Checking the command is Check's job, before Run.
	Policy Policy
	// Log receives the command's stdout and stderr, and Run's notes of its
	// start, stop and exit; nil discards them.
	Log *Log
	// Grace is how long the command has to exit after SIGTERM before its
	// process group is killed; 0 means DefaultGrace.
	Grace time.Duration
}

// Result is how a command that Run started ended.
type Result struct {
	// ExitCode is the command's exit status, or -1 when a signal ended it.
	ExitCode int
	// Signaled reports that a signal ended the command (SIGKILL after the
	// grace period, or one from elsewhere).
	Signaled bool
	// Stopped reports that Run stopped the command because its context
	// ended; the command may still have exited on its own terms (a trainer
	// that saves a checkpoint on SIGTERM and exits 0).
	Stopped bool
	// Status says how the command ended, such as "exit status 3" or
	// "signal: killed".
	Status string
}

// Run runs spec's command to its end and reports how it ended. The command
// runs in a process group of its own (see Start). When ctx ends first, Run
// sends SIGTERM to the group, and SIGKILL once spec.Grace has passed. When
// the command has ended, by itself or stopped, whatever it left running in
// its group is killed, so that no stray worker keeps a GPU. Run returns
// only once the command has been reaped.
//
// The error is for a command that did not start: not found, refused by the
// kernel, exec.user unknown (wrapping ErrExecRefused), or ctx already done.
// How a started command ended is in the Result, never an error.
func Run(ctx context.Context, spec RunSpec) (Result, error) {
	if len(spec.Command) == 0 || spec.Command[0] == "" {
		return Result{}, fmt.Errorf("%w: no command to run", ErrBadCommand)
	}
	name := spec.Command[0]
	as, err := LookupUser(spec.Policy.User)
	if err != nil {
		return Result{}, fmt.Errorf("%w: command %q: exec.user: %w", ErrExecRefused, name, err)
	}
	path := spec.Path
	if path == "" {
		if path = resolveCommand(name, spec.Dir); path == "" {
			return Result{}, fmt.Errorf("%w: command %q is not found on this node's PATH", ErrBadCommand, name)
		}
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("proc: command %q not started: %w", name, err)
	}
	grace := spec.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}

	// The resolved path runs, under the name the command was given.
	cmd := exec.Command(path, spec.Command[1:]...)
	cmd.Args[0] = name
	cmd.Dir = spec.Dir
	cmd.Env = spec.Env
	if cmd.Env == nil {
		cmd.Env = []string{} // nil would make exec pass on the agent's
	}
	if spec.Log != nil {
		cmd.Stdout, cmd.Stderr = spec.Log, spec.Log
	}
	cmd.WaitDelay = waitDelay
	exited := make(chan struct{})
	var waitErr error // Wait's result; read only after exited is closed
	if err := Start(cmd, as, func(err error) {
		waitErr = err
		close(exited)
	}); err != nil {
		return Result{}, fmt.Errorf("proc: command %q: %w", name, err)
	}
	note := func(format string, args ...any) {
		if spec.Log != nil {
			spec.Log.Note(format, args...)
		}
	}
	note("started %q (pid %d)", spec.Command, cmd.Process.Pid)

	var res Result
	select {
	case <-exited:
	case <-ctx.Done():
		res.Stopped = true
		note("stopping (%v): SIGTERM to the process group", context.Cause(ctx))
		KillGroup(cmd, syscall.SIGTERM)
		timer := time.NewTimer(grace)
		select {
		case <-exited:
		case <-timer.C:
			note("still running %s after SIGTERM: SIGKILL to the process group", grace)
		}
		timer.Stop()
	}
	// Also reaches what the command left running after it exited.
	KillGroup(cmd, syscall.SIGKILL)
	<-exited

	if st := cmd.ProcessState; st != nil {
		res.ExitCode = st.ExitCode()
		res.Status = st.String()
		if ws, ok := st.Sys().(interface{ Signaled() bool }); ok {
			res.Signaled = ws.Signaled()
		}
	} else { // the wait itself failed; the command is gone all the same
		res.ExitCode = -1
		res.Status = waitErr.Error()
	}
	note("exited: %s", res.Status)
	return res, nil
}
