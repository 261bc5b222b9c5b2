package node

import (
	"net/url"
	"os/user"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/raftfsm/structs"
)

func TestCheckExecUser_RefusesWhatTheAgentCannotDo(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, err := strconv.Atoi(nobody.Uid)
	if err != nil {
		t.Skipf("uid %q of nobody is not a number", nobody.Uid)
	}
	tests := []struct {
		name    string
		user    string
		euid    int
		wantErr string // "" for none
	}{
		{"no exec.user", "", 1000, ""},
		{"root may switch", "nobody", 0, ""},
		{"the agent's own user", "nobody", uid, ""},
		{"another user, not root", "nobody", uid + 1, `exec.user is "nobody"`},
		{"unknown user", "kiln-test-no-such-user", 0, `exec.user "kiln-test-no-such-user"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkExecUser(tc.user, tc.euid)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("checkExecUser = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("checkExecUser = %v, want an error mentioning %s", err, tc.wantErr)
			}
		})
	}
}

func TestNew_RefusesUnknownExecUser(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeName, cfg.BindAddr, cfg.DataDir = "t", "127.0.1.254", t.TempDir()
	cfg.Exec = ExecConfig{Enabled: true, AllowedCommands: []string{"*"}, User: "kiln-test-no-such-user"}
	a, err := New(cfg, nil)
	if err == nil {
		a.Shutdown()
		t.Fatal("New started an agent whose exec.user does not exist")
	}
	if !strings.Contains(err.Error(), "exec.user") {
		t.Fatalf("New = %v, want an error about exec.user", err)
	}
}

func TestSameNodeRecord_ComparesExec(t *testing.T) {
	base := structs.Node{ID: "n1", Name: "a", Exec: structs.NodeExec{Enabled: true, AllowedCommands: []string{"python3"}}}
	tests := []struct {
		name string
		exec structs.NodeExec
		same bool
	}{
		{"unchanged", structs.NodeExec{Enabled: true, AllowedCommands: []string{"python3"}}, true},
		{"disabled", structs.NodeExec{AllowedCommands: []string{"python3"}}, false},
		{"another command", structs.NodeExec{Enabled: true, AllowedCommands: []string{"python3", "/opt/*/serve"}}, false},
		{"nothing allowed", structs.NodeExec{Enabled: true}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			other := base
			other.Exec = tc.exec
			if got := sameNodeRecord(&base, &other); got != tc.same {
				t.Fatalf("sameNodeRecord = %v, want %v", got, tc.same)
			}
		})
	}
}

// The node's record carries its exec config, and a process version whose
// command no node allows is shown unplaced with the reason.
func TestAgent_ProcessVersionUnplacedWhereExecForbids(t *testing.T) {
	a := testNode(t, func(c *Config) {
		c.Exec = ExecConfig{Enabled: true, AllowedCommands: []string{"python3"}}
	})
	waitLeader(t, a)
	testutil.Until(t, 10*time.Second, "the node's record with its exec config", func() bool {
		r := call(t, a, "GET", "/v1/nodes", "")
		items, _ := r.body["items"].([]any)
		if len(items) != 1 {
			return false
		}
		exec, _ := items[0].(map[string]any)["exec"].(map[string]any)
		cmds, _ := exec["allowed_commands"].([]any)
		return exec["enabled"] == true && len(cmds) == 1 && cmds[0] == "python3"
	})

	createModel(t, a, "proc")
	uploadOK(t, a, "proc", "format=process&process="+url.QueryEscape(`{"command":["sh","-c","exit 1"]}`), nil)
	if r := call(t, a, "PUT", "/v1/deployments/proc", `{"versions":[{"version":1,"weight":1}],"replicas":1}`); r.status != 200 {
		t.Fatalf("deploy: %d %v", r.status, r.body)
	}
	var last apiResp
	testutil.Until(t, 10*time.Second, "the unplaced replica's reason", func() bool {
		last = call(t, a, "GET", "/v1/deployments/proc", "")
		unplaced, _ := last.body["unplaced"].(map[string]any)
		v1, _ := unplaced["1"].(map[string]any)
		reason, _ := v1["reason"].(string)
		return v1["replicas"] == float64(1) &&
			strings.Contains(reason, `no alive node allows command "sh"`) && strings.Contains(reason, "exec.allowed_commands")
	})
	if reps, _ := last.body["replica_states"].([]any); len(reps) != 0 {
		t.Errorf("replicas %v placed on a node that does not allow the command", reps)
	}
}
