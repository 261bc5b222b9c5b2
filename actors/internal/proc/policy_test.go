//go:build unix

package proc

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

func TestPolicy_Check(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on PATH")
	}
	sh, _ = filepath.Abs(sh)
	dir := t.TempDir()
	allow := func(cmds ...string) Policy {
		return Policy{NodeExec: structs.NodeExec{Enabled: true, AllowedCommands: cmds}}
	}
	withEnv := func(p Policy, names ...string) Policy {
		p.AllowedEnv = names
		return p
	}
	reserved := []string{"KILN_JOB_ID", "CUDA_VISIBLE_DEVICES"}
	for _, tc := range []struct {
		name     string
		policy   Policy
		command  []string
		env      map[string]string
		wantPath string   // when allowed
		wantIs   error    // when refused
		wantMsg  []string // in the refusal
	}{
		{"exec disabled", Policy{NodeExec: structs.NodeExec{AllowedCommands: []string{"*"}}}, []string{"sh"}, nil,
			"", ErrExecRefused, []string{`command "sh"`, "exec.enabled is false"}},
		{"enabled, nothing allowed", allow(), []string{"sh"}, nil,
			"", ErrExecRefused, []string{`command "sh"`, "exec.allowed_commands"}},
		{"star allows any", allow("*"), []string{"sh", "-c", "true"}, nil, sh, nil, nil},
		{"as written", allow("sh"), []string{"sh"}, nil, sh, nil, nil},
		{"as resolved on PATH", allow(filepath.Join(filepath.Dir(sh), "*")), []string{"sh"}, nil, sh, nil, nil},
		{"other command", allow("python3", "/opt/train/*/run"), []string{"sh"}, nil,
			"", ErrExecRefused, []string{`command "sh" (` + sh + `)`, `exec.allowed_commands ["python3" "/opt/train/*/run"]`}},
		{"glob does not cross directories", allow("/opt/train/*/run"), []string{"/opt/train/a/b/run"}, nil,
			"", ErrExecRefused, []string{"/opt/train/a/b/run"}},
		{"absolute path", allow("/opt/train/*/run"), []string{"/opt/train/iris/run"}, nil, "/opt/train/iris/run", nil, nil},
		{"relative path resolves in the dir", allow(filepath.Join(dir, "run")), []string{"./run"}, nil, filepath.Join(dir, "run"), nil, nil},
		{"relative path cannot climb out of the glob", allow(filepath.Join(dir, "*")), []string{"../run"}, nil,
			"", ErrExecRefused, []string{`command "../run"`}},
		{"no command", allow("*"), nil, nil, "", ErrBadCommand, []string{"has no command"}},
		{"empty command", allow("*"), []string{""}, nil, "", ErrBadCommand, []string{"has no command"}},
		{"bare name matched as written, missing", allow("kiln-test-missing"), []string{"kiln-test-missing"}, nil,
			"", ErrBadCommand, []string{"not found on this node's PATH"}},
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
		{"reserved variable", allow("*"), []string{"sh"}, map[string]string{"MODE": "fast", "CUDA_VISIBLE_DEVICES": "0,1"},
			"", ErrBadCommand, []string{"sets CUDA_VISIBLE_DEVICES", "Kiln sets itself"}},
		{"refusal comes before a reserved variable", allow("*"), []string{"sh"}, map[string]string{"KILN_JOB_ID": "x", "PATH": "/tmp"},
			"", ErrExecRefused, []string{"sets PATH"}},
		{"refusal comes before a missing command", allow("*"), []string{"kiln-test-missing"}, map[string]string{"LD_PRELOAD": "x"},
			"", ErrExecRefused, []string{"sets LD_PRELOAD"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, err := tc.policy.Check(`job "j1"`, tc.command, tc.env, dir, reserved)
			if tc.wantIs == nil {
				if err != nil || path != tc.wantPath {
					t.Fatalf("Check = %q, %v; want %q allowed", path, err, tc.wantPath)
				}
				return
			}
			if !errors.Is(err, tc.wantIs) {
				t.Fatalf("Check = %q, %v; want an error wrapping %v", path, err, tc.wantIs)
			}
			for _, s := range append(tc.wantMsg, `job "j1"`) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("err = %v, want it to mention %s", err, s)
				}
			}
		})
	}
}
