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

func TestExecPolicy_Check(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on PATH")
	}
	sh, _ = filepath.Abs(sh)
	dir := t.TempDir()
	allow := func(cmds ...string) ExecPolicy {
		return ExecPolicy{NodeExec: structs.NodeExec{Enabled: true, AllowedCommands: cmds}}
	}
	withEnv := func(p ExecPolicy, names ...string) ExecPolicy {
		p.AllowedEnv = names
		return p
	}
	for _, tc := range []struct {
		name     string
		policy   ExecPolicy
		command  []string
		env      map[string]string
		wantPath string   // when allowed
		wantIs   error    // when refused
		wantMsg  []string // in the refusal
	}{
		{"exec disabled", ExecPolicy{NodeExec: structs.NodeExec{AllowedCommands: []string{"*"}}}, []string{"sh"}, nil,
			"", ErrExecRefused, []string{`command "sh"`, "exec.enabled is false"}},
		{"enabled, nothing allowed", allow(), []string{"sh"}, nil,
			"", ErrExecRefused, []string{`command "sh"`, "exec.allowed_commands"}},
		{"star allows any", allow("*"), []string{"sh", "-c", "true"}, nil, sh, nil, nil},
		{"as written", allow("sh"), []string{"sh"}, nil, sh, nil, nil},
		{"as resolved on PATH", allow(filepath.Join(filepath.Dir(sh), "*")), []string{"sh"}, nil, sh, nil, nil},
		{"other command", allow("python3", "/opt/models/*/serve"), []string{"sh"}, nil,
			"", ErrExecRefused, []string{`command "sh" (` + sh + `)`, `exec.allowed_commands ["python3" "/opt/models/*/serve"]`}},
		{"glob does not cross directories", allow("/opt/models/*/serve"), []string{"/opt/models/a/b/serve"}, nil,
			"", ErrExecRefused, []string{"/opt/models/a/b/serve"}},
		{"absolute path", allow("/opt/models/*/serve"), []string{"/opt/models/iris/serve"}, nil, "/opt/models/iris/serve", nil, nil},
		{"relative path resolves in the work dir", allow(filepath.Join(dir, "serve")), []string{"./serve"}, nil, filepath.Join(dir, "serve"), nil, nil},
		{"relative path cannot climb out of the glob", allow(filepath.Join(dir, "*")), []string{"../serve"}, nil,
			"", ErrExecRefused, []string{`command "../serve"`}},
		{"bare name matched as written, missing", allow("kiln-test-missing"), []string{"kiln-test-missing"}, nil,
			"", ml.ErrBadModel, []string{"not found on this node's PATH"}},
		{"LD_PRELOAD refused", allow("*"), []string{"sh"}, map[string]string{"LD_PRELOAD": "/tmp/evil.so"},
			"", ErrExecRefused, []string{"sets LD_PRELOAD", "exec.allowed_env"}},
		{"LD_LIBRARY_PATH refused", allow("*"), []string{"sh"}, map[string]string{"LD_LIBRARY_PATH": "/tmp"},
			"", ErrExecRefused, []string{"sets LD_LIBRARY_PATH"}},
		{"any LD_ refused", allow("*"), []string{"sh"}, map[string]string{"LD_AUDIT": "/tmp/a.so"},
			"", ErrExecRefused, []string{"sets LD_AUDIT"}},
		{"PATH refused", allow("*"), []string{"sh"}, map[string]string{"PATH": "/tmp"},
			"", ErrExecRefused, []string{"sets PATH"}},
		{"LD_PRELOAD allowed when listed", withEnv(allow("*"), "LD_PRELOAD"), []string{"sh"}, map[string]string{"LD_PRELOAD": "/opt/jemalloc.so"}, sh, nil, nil},
		{"listing one allows only that one", withEnv(allow("*"), "PATH"), []string{"sh"}, map[string]string{"PATH": "/bin", "LD_PRELOAD": "x"},
			"", ErrExecRefused, []string{"sets LD_PRELOAD"}},
		{"other variables pass", allow("*"), []string{"sh"}, map[string]string{"OMP_NUM_THREADS": "4", "MODE": "fast"}, sh, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, err := tc.policy.check("iris", structs.ProcessSpec{Command: tc.command, Env: tc.env}, dir)
			if tc.wantIs == nil {
				if err != nil || path != tc.wantPath {
					t.Fatalf("check = %q, %v; want %q allowed", path, err, tc.wantPath)
				}
				return
			}
			if !errors.Is(err, tc.wantIs) {
				t.Fatalf("check = %q, %v; want an error wrapping %v", path, err, tc.wantIs)
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
