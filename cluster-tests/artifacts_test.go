package clustertest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// A model file keeps artifact_replicas copies: when a node holding it dies
// and stays dead past dead_node_reap, the leader has another node fetch it,
// and the version's holders name that node instead; that node stores the
// pushed file byte for byte.
func TestCluster_ArtifactCopiesRestoredAfterHolderDeath(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: waits for gossip to declare a node dead and for the reap")
	}
	c := newCluster(t, 3, withHCL(`dead_node_reap = "3s"
serving {
  artifact_replicas = 2
}`))
	leader := c.waitLeader(leaderTimeout)
	leader.createModel("iris", nil)
	v := leader.push("iris", filepath.Join(testdataDir, "linear", "iris.json"), "")
	if len(v.Holders) != 2 {
		t.Fatalf("pushed version has holders %v, want 2 with artifact_replicas = 2", v.Holders)
	}
	// Kill a holder that is not the leader (of two holders, at least one is not).
	var victim *node
	for _, id := range v.Holders {
		if nd := c.byID(id); nd != nil && nd != leader {
			victim = nd
			break
		}
	}
	if victim == nil {
		t.Fatalf("no holder among %v besides the leader", v.Holders)
	}
	var spare *node
	for _, nd := range c.all() {
		if !slices.Contains(v.Holders, nd.id) {
			spare = nd
		}
	}
	victim.kill()
	c.waitLeaderAmong(leaderTimeout, c.others(victim)...)

	var got version
	testutil.WaitFor(t, 90*time.Second, func() error {
		got = version{}
		if err := c.others(victim)[0].getJSON("/v1/models/iris/versions/1?consistency=consistent", &got); err != nil {
			return err
		}
		if len(got.Holders) != 2 || slices.Contains(got.Holders, victim.id) || !slices.Contains(got.Holders, spare.id) {
			return fmt.Errorf("holders %v: want 2 alive ones, %s (%s) among them and not the dead %s", got.Holders, spare.name, spare.id, victim.name)
		}
		return nil
	})
	if got.Digest != v.Digest || got.Size != v.Size {
		t.Fatalf("version changed: %+v, pushed %+v", got, v)
	}
	// The new holder has the file, byte for byte.
	pushed, err := os.ReadFile(filepath.Join(testdataDir, "linear", "iris.json"))
	if err != nil {
		t.Fatal(err)
	}
	copied, err := os.ReadFile(filepath.Join(spare.dataDir(), "blobs", "sha256", v.Digest))
	if err != nil || !bytes.Equal(copied, pushed) {
		t.Fatalf("the new holder %s does not store the pushed file: %v (%d bytes, pushed %d)", spare.name, err, len(copied), len(pushed))
	}
}
