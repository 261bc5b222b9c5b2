//go:build unix

package serving

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// TestCheckExec checks what serving makes of proc's check (whose cases
// proc's own tests cover): the model is named, a refusal stays
// ErrExecRefused, a command that cannot run is a bad model, and a version may
// set Kiln's own variables, which the runtime then overrides.
func TestCheckExec(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on PATH")
	}
	sh, _ = filepath.Abs(sh)
	for _, tc := range []struct {
		name     string
		policy   ExecPolicy
		command  []string
		env      map[string]string
		wantPath string   // when allowed
		wantIs   error    // when refused
		wantMsg  []string // in the refusal
	}{
		{"allowed", execAny, []string{"sh", "-c", "true"}, nil, sh, nil, nil},
		{"Kiln's variables pass", execAny, []string{"sh"}, map[string]string{"KILN_PORT": "1", "CUDA_VISIBLE_DEVICES": "0"}, sh, nil, nil},
		{"exec disabled", ExecPolicy{}, []string{"sh"}, nil,
			"", ErrExecRefused, []string{`command "sh"`, "exec.enabled is false"}},
		{"LD_PRELOAD refused", execAny, []string{"sh"}, map[string]string{"LD_PRELOAD": "/tmp/evil.so"},
			"", ErrExecRefused, []string{"sets LD_PRELOAD", "exec.allowed_env"}},
		{"no command", execAny, nil, nil, "", ml.ErrBadModel, []string{"has no command"}},
		{"bare name missing", execAny, []string{"kiln-test-missing"}, nil,
			"", ml.ErrBadModel, []string{"not found on this node's PATH"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, err := checkExec(tc.policy, "iris", structs.ProcessSpec{Command: tc.command, Env: tc.env}, t.TempDir())
			if tc.wantIs == nil {
				if err != nil || path != tc.wantPath {
					t.Fatalf("checkExec = %q, %v; want %q allowed", path, err, tc.wantPath)
				}
				return
			}
			if !errors.Is(err, tc.wantIs) {
				t.Fatalf("checkExec = %q, %v; want an error wrapping %v", path, err, tc.wantIs)
			}
			for _, s := range append(tc.wantMsg, `model "iris"`) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("err = %v, want it to mention %s", err, s)
				}
			}
		})
	}
}

// TestProcessModel_ExecRefused checks that a refused command never runs
// and leaves nothing behind.
func TestProcessModel_ExecRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		policy  ExecPolicy
		env     map[string]string
		wantMsg string
	}{
		{"exec disabled", ExecPolicy{}, nil, "exec.enabled is false"},
		{"command not allowed", ExecPolicy{NodeExec: structs.NodeExec{Enabled: true, AllowedCommands: []string{"python3"}}}, nil, "exec.allowed_commands"},
		{"LD_PRELOAD", execAny, map[string]string{"LD_PRELOAD": "/tmp/x.so"}, "LD_PRELOAD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			m, err := StartProcess(context.Background(), ProcessConfig{
				Spec:    structs.ProcessSpec{Command: []string{"sh", "-c", "echo ran > ran.txt; exec sleep 30"}, Env: tc.env},
				Model:   "iris",
				WorkDir: dir,
				Logger:  testLogger(t),
				Exec:    tc.policy,
			})
			if err == nil {
				m.Close()
				t.Fatal("StartProcess ran a refused command")
			}
			if !errors.Is(err, ErrExecRefused) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("err = %v, want ErrExecRefused mentioning %s", err, tc.wantMsg)
			}
			time.Sleep(50 * time.Millisecond) // a started shell would have written by now
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("the refused start left %v in its work dir", entries)
			}
		})
	}
}

// TestProcessModel_RunsAsExecUser runs a server as exec.user; it needs root
// and the "nobody" account.
func TestProcessModel_RunsAsExecUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root can run a process as another user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	policy := execAny
	policy.User = "nobody"
	// The server says who it runs as, then exits: the failed start's error
	// carries its last output.
	_, err = StartProcess(context.Background(), ProcessConfig{
		Spec:   structs.ProcessSpec{Command: []string{"sh", "-c", `echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)" >&2; touch written-by-server || exit 4; exit 3`}},
		Model:  "iris",
		Logger: testLogger(t),
		Exec:   policy,
	})
	if err == nil {
		t.Fatal("the server was meant to exit")
	}
	msg := err.Error()
	if !strings.Contains(msg, "exit status 3") {
		t.Fatalf("err = %v, want exit status 3 (4: the server could not write to its work dir)", err)
	}
	want := "uid=" + nobody.Uid + " gid=" + nobody.Gid
	if !strings.Contains(msg, want) {
		t.Fatalf("err = %v, want the server to run as %s", err, want)
	}
	groups := msg[strings.Index(msg, "groups=")+len("groups="):]
	groups, _, _ = strings.Cut(groups, " (")
	if slices.Contains(strings.Fields(groups), "0") {
		t.Fatalf("err = %v: the server kept root's group", err)
	}

	// An unknown user refuses the start.
	policy.User = "kiln-test-no-such-user"
	_, err = StartProcess(context.Background(), ProcessConfig{
		Spec: structs.ProcessSpec{Command: []string{"sh", "-c", "exit 0"}}, Model: "iris", Logger: testLogger(t), Exec: policy,
	})
	if !errors.Is(err, ErrExecRefused) || !strings.Contains(err.Error(), "exec.user") {
		t.Fatalf("err = %v, want ErrExecRefused about exec.user", err)
	}
}
