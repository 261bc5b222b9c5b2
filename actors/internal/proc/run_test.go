//go:build unix

package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// shRun runs scripts with /bin/sh -c in a temporary directory of its own,
// logging to run.log there.
type shRun struct {
	dir string
	log *Log
}

func newShRun(t *testing.T) *shRun {
	t.Helper()
	dir := t.TempDir()
	l, err := OpenLog(filepath.Join(dir, "run.log"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &shRun{dir: dir, log: l}
}

func (r *shRun) run(ctx context.Context, script string, env []string, grace time.Duration) (Result, error) {
	return Run(ctx, RunSpec{
		Command: []string{"/bin/sh", "-c", script},
		Env:     env,
		Dir:     r.dir,
		Log:     r.log,
		Grace:   grace,
	})
}

// runSh runs script to its end and returns the result and the log.
func runSh(t *testing.T, script string, env []string) (Result, *Log) {
	t.Helper()
	r := newShRun(t)
	res, err := r.run(context.Background(), script, env, 0)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res, r.log
}

func TestRun_ExitCode(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   Result
	}{
		{"exit 0", Result{ExitCode: 0, Status: "exit status 0"}},
		{"exit 3", Result{ExitCode: 3, Status: "exit status 3"}},
		{"kill -9 $$", Result{ExitCode: -1, Signaled: true, Status: "signal: killed"}},
	} {
		t.Run(tc.script, func(t *testing.T) {
			t.Parallel()
			res, _ := runSh(t, tc.script, nil)
			if res != tc.want {
				t.Fatalf("Run = %+v, want %+v", res, tc.want)
			}
		})
	}
}

// TestRun_Env checks that the child sees the environment it was given and
// nothing of the agent's, also when it was given none.
func TestRun_Env(t *testing.T) {
	t.Setenv("KILN_TEST_AGENT_SECRET", "agent's")
	const script = `echo "A=${A-unset}"; echo "CUDA=${CUDA_VISIBLE_DEVICES-unset}"; echo "SECRET=${KILN_TEST_AGENT_SECRET-unset}"; echo "HOME=${HOME-unset}"; pwd`
	for _, tc := range []struct {
		name string
		env  []string
		want []string
	}{
		{"given", []string{"A=1 2", "CUDA_VISIBLE_DEVICES=0,3"}, []string{"A=1 2", "CUDA=0,3", "SECRET=unset", "HOME=unset"}},
		{"none", nil, []string{"A=unset", "CUDA=unset", "SECRET=unset", "HOME=unset"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, l := runSh(t, script, tc.env)
			got := l.Tail(5)
			if len(got) != 5 || !reflect.DeepEqual(got[:4], tc.want) {
				t.Fatalf("the child printed %q, want %q and its dir", got, tc.want)
			}
			if dir := filepath.Dir(l.Path()); got[4] != dir {
				t.Fatalf("the child ran in %q, want %q", got[4], dir)
			}
		})
	}
}

// TestRun_Log checks that stdout and stderr land in the log, with Kiln's
// notes of the start and exit, and that Tail gives the output's last lines.
func TestRun_Log(t *testing.T) {
	res, l := runSh(t,
		`i=1; while [ $i -le 30 ]; do echo "out $i"; i=$((i+1)); done; echo "err: no GPU" >&2; exit 2`, nil)
	if res.ExitCode != 2 {
		t.Fatalf("Run = %+v, want exit code 2", res)
	}
	if got, want := l.Tail(3), []string{"out 29", "out 30", "err: no GPU"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Tail(3) = %q, want %q", got, want)
	}
	b, err := os.ReadFile(l.Path())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"out 1\n", "[kiln] ", `started ["/bin/sh" "-c"`, "exited: exit status 2"} {
		if !bytes.Contains(b, []byte(s)) {
			t.Errorf("the log lacks %q:\n%s", s, b)
		}
	}
}

// TestRun_Stop checks what cancelling the context does: SIGTERM to the
// command, SIGKILL after the grace period to one that ignores it, and the
// end of whatever else is left in its process group.
func TestRun_Stop(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		grace  time.Duration
		want   Result
	}{
		{
			name:   "exits on SIGTERM",
			script: `trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done`,
			grace:  time.Minute, // the test would time out had it waited for SIGKILL
			want:   Result{ExitCode: 7, Stopped: true, Status: "exit status 7"},
		},
		{
			name:   "ignores SIGTERM",
			script: `trap '' TERM; echo ready; while :; do sleep 0.05; done`,
			grace:  200 * time.Millisecond,
			want:   Result{ExitCode: -1, Signaled: true, Stopped: true, Status: "signal: killed"},
		},
		{
			// The grandchild ignores SIGTERM and outlives the command: the
			// SIGKILL to the group after the exit must reach it.
			name: "leaves a grandchild behind",
			script: `(trap '' TERM; exec sleep 300) >/dev/null 2>&1 & echo $! > grandchild.pid
				trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done`,
			grace: time.Minute,
			want:  Result{ExitCode: 0, Stopped: true, Status: "exit status 0"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newShRun(t)
			ctx, cancel := context.WithCancel(context.Background())
			var (
				res     Result
				err     error
				stopped = make(chan struct{})
			)
			go func() {
				defer close(stopped)
				res, err = r.run(ctx, tc.script, nil, tc.grace)
			}()
			t.Cleanup(func() { cancel(); <-stopped }) // should the test fail first
			// Stop it once it says it has set its traps.
			testutil.Until(t, 10*time.Second, "the command to start", func() bool {
				return slices.Contains(r.log.Tail(5), "ready")
			})
			cancel()
			<-stopped
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res != tc.want {
				t.Fatalf("Run = %+v, want %+v; output %q", res, tc.want, r.log.Tail(5))
			}
			if b, _ := os.ReadFile(r.log.Path()); !bytes.Contains(b, []byte("SIGTERM to the process group")) {
				t.Errorf("the log does not say the command was stopped:\n%s", b)
			}
			if pidFile := filepath.Join(r.dir, "grandchild.pid"); fileExists(pidFile) {
				pid := readPid(t, pidFile)
				t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) }) // should the test fail
				testutil.Until(t, 5*time.Second, fmt.Sprintf("grandchild %d to be killed", pid), func() bool { return processGone(pid) })
			}
		})
	}
}

// TestRun_Stragglers checks that Run returns once the command exits, even
// while something it started keeps its output open, and kills that too.
func TestRun_Stragglers(t *testing.T) {
	r := newShRun(t)
	res, err := r.run(context.Background(), `sleep 300 & echo $! > grandchild.pid; exit 3`, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Result{ExitCode: 3, Status: "exit status 3"}); res != want {
		t.Fatalf("Run = %+v, want %+v", res, want)
	}
	pid := readPid(t, filepath.Join(r.dir, "grandchild.pid"))
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) }) // should the test fail
	testutil.Until(t, 5*time.Second, fmt.Sprintf("grandchild %d to be killed", pid), func() bool { return processGone(pid) })
}

func TestRun_NotStarted(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		command []string
		user    string
		wantIs  error
		wantMsg string
	}{
		{"no command", context.Background(), nil, "", ErrBadCommand, "no command"},
		{"not on PATH", context.Background(), []string{"kiln-test-no-such-trainer"}, "", ErrBadCommand, "not found on this node's PATH"},
		{"no such file", context.Background(), []string{"./kiln-test-no-such-trainer"}, "", os.ErrNotExist, "kiln-test-no-such-trainer"},
		{"unknown user", context.Background(), []string{"/bin/sh", "-c", "touch ran"}, "kiln-test-no-such-user", ErrExecRefused, "exec.user"},
		{"context already done", cancelled, []string{"/bin/sh", "-c", "touch ran"}, "", context.Canceled, "not started"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			res, err := Run(tc.ctx, RunSpec{Command: tc.command, Dir: dir, Policy: Policy{User: tc.user}})
			if !errors.Is(err, tc.wantIs) || !strings.Contains(fmt.Sprint(err), tc.wantMsg) {
				t.Fatalf("Run = %+v, %v; want an error wrapping %v that mentions %q", res, err, tc.wantIs, tc.wantMsg)
			}
			if fileExists(filepath.Join(dir, "ran")) {
				t.Fatal("the command ran")
			}
		})
	}
}

// TestRun_AsUser runs a command as exec.user; it needs root and the
// "nobody" account.
func TestRun_AsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root can run a process as another user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	r := newShRun(t)
	res, err := Run(context.Background(), RunSpec{
		Command: []string{"/bin/sh", "-c", `echo "uid=$(id -u) gid=$(id -g)"; echo "groups=$(id -G)"`},
		Env:     []string{"PATH=/usr/bin:/bin"},
		Dir:     "/",   // the test's own directories are root's alone
		Log:     r.log, // written by the agent, not the child
		Policy:  Policy{User: "nobody"},
	})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Run = %+v, %v; output %q", res, err, r.log.Tail(5))
	}
	out := r.log.Tail(2)
	if want := "uid=" + nobody.Uid + " gid=" + nobody.Gid; len(out) != 2 || out[0] != want {
		t.Fatalf("the command printed %q, want it to run as %s", out, want)
	}
	if slices.Contains(strings.Fields(strings.TrimPrefix(out[1], "groups=")), "0") {
		t.Fatalf("the command kept root's group: %q", out[1])
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// readPid waits for path to hold a pid and returns it.
func readPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	testutil.Until(t, 5*time.Second, "a pid in "+path, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

// processGone reports whether pid no longer runs. A killed process whose
// parent died stays a zombie until init reaps it; it runs no more.
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, os.ErrNotExist) {
		// On Linux it has just gone; elsewhere there is no /proc to see a
		// zombie by, and an orphan's is reaped at once anyway.
		return runtime.GOOS == "linux"
	}
	i := bytes.LastIndexByte(stat, ')') // the state follows the command name
	return err == nil && i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}
