//go:build unix

package proc

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"runtime"
	"strconv"
	"syscall"
)

// Start starts cmd in a process group of its own, so that stopping it
// reaches the processes it forks and not the agent, then waits for it on a
// goroutine and calls exited with Wait's result. With as set, the child runs
// as that user, with its primary and supplementary groups. Start overwrites
// cmd.SysProcAttr.
//
// On Linux the child also gets Pdeathsig = SIGKILL, so it dies with the agent
// even when the agent is killed with -9 and cannot clean up. Pdeathsig fires
// when the *thread* that forked the child ends, and Go ends a thread when a
// goroutine locked to it returns; so the goroutine that starts the child
// stays locked to its thread and waits there until the child has exited.
func Start(cmd *exec.Cmd, as *User, exited func(error)) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if as != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: as.UID, Gid: as.GID, Groups: as.Groups}
	}
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

// LookupUser finds the uid, gid and groups of exec.user. It returns nil when
// name is empty or is the user the agent already runs as: no switch is
// needed then, and a non-root agent could not set its groups anyway.
func LookupUser(name string) (*User, error) {
	if name == "" {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q has uid %q: %w", name, u.Uid, err)
	}
	if int(uid) == os.Geteuid() {
		return nil, nil
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q has gid %q: %w", name, u.Gid, err)
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("groups of user %q: %w", name, err)
	}
	as := &User{Name: name, UID: uint32(uid), GID: uint32(gid), Groups: []uint32{}}
	for _, id := range ids {
		g, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("user %q is in group %q: %w", name, id, err)
		}
		as.Groups = append(as.Groups, uint32(g))
	}
	return as, nil
}

// KillGroup signals the process group of cmd, started by Start. The group
// outlives its leader while any member does, so this also reaches a dead
// leader's children; once the group is empty the kernel answers ESRCH,
// which is fine.
func KillGroup(cmd *exec.Cmd, sig syscall.Signal) {
	_ = syscall.Kill(-cmd.Process.Pid, sig)
}
