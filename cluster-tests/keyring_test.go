package clustertest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

func newGossipKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// allAlive checks that every node sees want alive members.
func allAlive(nodes []*node, want int) error {
	for _, nd := range nodes {
		ms, err := nd.members()
		if err != nil {
			return err
		}
		alive := 0
		for _, m := range ms {
			if m.Status == "alive" {
				alive++
			}
		}
		if alive != want {
			return fmt.Errorf("%s sees %d alive members, want %d: %+v", nd.name, alive, want, ms)
		}
	}
	return nil
}

// TestCluster_GossipKeyRotation rotates the gossip key of a running 3-node
// cluster with the CLI (install, use, remove) while it keeps its members and
// takes writes; a node restarted afterwards rejoins with the saved keyring,
// and a node that knows only the old key no longer gets in.
func TestCluster_GossipKeyRotation(t *testing.T) {
	oldKey, newKey := newGossipKey(t), newGossipKey(t)
	c := newCluster(t, 3, withHCL(fmt.Sprintf("encrypt = %q", oldKey)))
	nodes := c.all()
	step := func(via *node, verb string, args ...string) {
		t.Helper()
		if out, err := via.cli("operator gossip keyring "+verb, args...); err != nil {
			t.Fatalf("keyring %s through %s: %v %s", verb, via.name, err, out)
		}
		holdsFor(t, time.Second, func() error { return allAlive(nodes, 3) })
	}
	if _, err := nodes[0].cli("operator gossip keyring use", newKey); err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Fatalf("use of a key not installed: %v, want it refused", err)
	}
	step(nodes[0], "install", newKey)
	nodes[0].createModel("after-install", nil)
	step(nodes[1], "use", newKey)
	nodes[1].createModel("after-use", nil)
	if _, err := nodes[2].cli("operator gossip keyring remove", newKey); err == nil || !strings.Contains(err.Error(), "primary") {
		t.Fatalf("removing the primary key: %v, want it refused", err)
	}
	step(nodes[2], "remove", oldKey)
	nodes[2].createModel("after-remove", nil)

	out, err := nodes[0].cli("operator gossip keyring list", "-format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Keys []struct {
			Key       string `json:"key"`
			Installed int    `json:"installed"`
			Primary   int    `json:"primary"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Keys) != 1 || list.Keys[0].Key != newKey || list.Keys[0].Installed != 3 || list.Keys[0].Primary != 3 {
		t.Fatalf("keyring after the rotation: %+v, want only the new key, primary on 3 nodes", list.Keys)
	}

	// A restart keeps the rotated keyring, though the config still says oldKey.
	nodes[2].stop()
	nodes[2].restart()
	c.waitVoters(3, leaderTimeout)
	testutil.WaitFor(t, 20*time.Second, func() error { return allAlive(nodes, 3) })
	if !nodes[2].logContains("gossip keyring loaded from the data dir") {
		t.Error("the restarted node did not load its saved keyring")
	}

	// A newcomer with only the old key cannot join any more.
	outsider := c.newNode("n4", allocIP(t), 0, []string{nodes[0].ip}, "")
	outsider.start()
	holdsFor(t, 3*time.Second, func() error { return allAlive(nodes, 3) })
	outsider.killQuietly()
}
