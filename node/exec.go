package node

import (
	"fmt"
	"os"
	"os/user"
	"runtime"
	"slices"
	"strconv"

	"github.com/kilnml/kiln/actors/serving"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// nodeRecord is the part of the exec config that the node's registry record
// carries, for placement.
func (c ExecConfig) nodeRecord() structs.NodeExec {
	return structs.NodeExec{Enabled: c.Enabled, AllowedCommands: slices.Clone(c.AllowedCommands)}
}

// sameExec reports whether two node records carry the same exec config.
func sameExec(a, b structs.NodeExec) bool {
	return a.Enabled == b.Enabled && slices.Equal(a.AllowedCommands, b.AllowedCommands)
}

// servingPolicy is the exec config as the serving package checks it when a
// process replica starts.
func (c ExecConfig) servingPolicy() serving.ExecPolicy {
	return serving.ExecPolicy{
		NodeExec:   c.nodeRecord(),
		User:       c.User,
		AllowedEnv: slices.Clone(c.AllowedEnv),
	}
}

// checkExecUser refuses an exec.user that the agent, running with effective
// uid euid, cannot switch to: only root starts processes as another user.
// It is not part of Config.Validate, which must not depend on the machine.
func checkExecUser(name string, euid int) error {
	if name == "" {
		return nil
	}
	if runtime.GOOS == "windows" {
		return fmt.Errorf("node: exec.user %q: running processes as another user is not supported on windows", name)
	}
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("node: exec.user %q: %w", name, err)
	}
	if euid != 0 && u.Uid != strconv.Itoa(euid) {
		return fmt.Errorf("node: exec.user is %q (uid %s), but the agent runs as uid %d, not root: only root can start processes as another user; run the agent as root or as %q, or remove exec.user",
			name, u.Uid, euid, name)
	}
	return nil
}

// agentEUID is the agent's effective uid; -1 on windows.
var agentEUID = os.Geteuid

// unplacedReasons says, by version, why the unplaced replicas of d find no
// node, for the versions that no alive node may run at all. A version that
// some node may run but none has room for gets no reason: its count says
// enough.
func (a *Agent) unplacedReasons(txn *raftfsm.Txn, d *structs.Deployment, allocs []*structs.Allocation) map[string]string {
	unplaced := serving.Unplaced(d, allocs)
	if len(unplaced) == 0 {
		return nil
	}
	nodes, err := txn.Nodes()
	if err != nil {
		return nil
	}
	var out map[string]string
	for ver := range unplaced {
		v, err := txn.Version(d.Name, ver)
		if err != nil {
			continue
		}
		if reason := serving.UnplacedReason(v, nodes, a.isAlive); reason != "" {
			if out == nil {
				out = map[string]string{}
			}
			out[strconv.FormatUint(ver, 10)] = reason
		}
	}
	return out
}
