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
// pushed file byte for byte. A dataset's file and its quarantine keep theirs
// the same way, and a node that holds neither previews the dataset's rows.
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
	// The dataset goes to the same two nodes as the model file, so that one
	// death costs both a copy.
	// Holders are chosen at random: an attempt that lands elsewhere is
	// deleted, and the next one differs in its bad row, so in its digest.
	var ds datasetVersion
	for attempt := 0; ; attempt++ {
		if attempt == 30 {
			t.Fatalf("30 dataset uploads never landed on the model file's holders %v", v.Holders)
		}
		ds = datasetVersion{}
		leader.upload("/v1/datasets/flowers/versions", "mode=lenient", writeBadIris(t, attempt), &ds)
		if slices.Equal(slices.Sorted(slices.Values(ds.Holders)), slices.Sorted(slices.Values(v.Holders))) {
			break
		}
		leader.write("DELETE", fmt.Sprintf("/v1/datasets/flowers/versions/%d", ds.Version), nil, 204)
	}
	if ds.Quarantine == nil || ds.Quarantine.Rows != 1 || !slices.Equal(ds.Quarantine.Holders, ds.Holders) {
		t.Fatalf("dataset version %+v, want one quarantined row held where the file is", ds)
	}
	// The node that holds neither file previews the dataset's rows, typed.
	var spare *node
	for _, nd := range c.all() {
		if !slices.Contains(v.Holders, nd.id) {
			spare = nd
		}
	}
	var preview struct {
		Columns []string `json:"columns"`
		Rows    [][]any  `json:"rows"`
	}
	if err := spare.getJSON(fmt.Sprintf("/v1/datasets/flowers/versions/%d/rows?limit=3&consistency=consistent", ds.Version), &preview); err != nil {
		t.Fatalf("rows through %s: %v", spare.name, err)
	}
	if len(preview.Rows) != 3 || len(preview.Columns) != 6 || preview.Rows[0][1] != 5.1 || preview.Rows[2][5] != "setosa" {
		t.Fatalf("preview through %s = %+v, want iris's first 3 rows", spare.name, preview)
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
	dsPath := fmt.Sprintf("/v1/datasets/flowers/versions/%d?consistency=consistent", ds.Version)
	testutil.WaitFor(t, 60*time.Second, func() error {
		var d datasetVersion
		if err := c.others(victim)[0].getJSON(dsPath, &d); err != nil {
			return err
		}
		for _, h := range [][]string{d.Holders, d.Quarantine.Holders} {
			if len(h) != 2 || slices.Contains(h, victim.id) {
				return fmt.Errorf("dataset holders %v and quarantine holders %v: want 2 alive ones each", d.Holders, d.Quarantine.Holders)
			}
		}
		return nil
	})
	for _, digest := range []string{ds.Digest, ds.Quarantine.Digest} {
		if _, err := os.Stat(filepath.Join(spare.dataDir(), "blobs", "sha256", digest)); err != nil {
			t.Fatalf("the new holder %s lacks dataset blob %.12s: %v", spare.name, digest, err)
		}
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

// datasetVersion is the part of a dataset version the tests read.
type datasetVersion struct {
	Dataset    string   `json:"dataset"`
	Version    uint64   `json:"version"`
	Digest     string   `json:"digest"`
	Rows       int64    `json:"rows"`
	Holders    []string `json:"holders"`
	Quarantine *struct {
		Digest  string   `json:"digest"`
		Rows    int64    `json:"rows"`
		Holders []string `json:"holders"`
	} `json:"quarantine"`
}

// writeBadIris writes iris.csv with one malformed row added, which holds n,
// and returns its path.
func writeBadIris(t *testing.T, n int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdataDir, "datasets", "iris.csv"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "iris-bad.csv")
	if err := os.WriteFile(path, fmt.Appendf(b, "1,2,%d\n", n), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
