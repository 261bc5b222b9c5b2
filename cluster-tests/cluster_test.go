package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

func TestCluster_Formation(t *testing.T) {
	c := newCluster(t, 3)
	n1 := c.all()[0]

	// The CLI, as an operator runs it.
	var members struct {
		Items []member `json:"items"`
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		out, err := n1.cli("members", "-format", "json")
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(out), &members); err != nil {
			return fmt.Errorf("kiln members output: %v\n%s", err, out)
		}
		alive := 0
		for _, m := range members.Items {
			if m.Status == "alive" {
				alive++
			}
		}
		if len(members.Items) != 3 || alive != 3 {
			return fmt.Errorf("kiln members: want 3 alive, got %+v", members.Items)
		}
		return nil
	})

	out, err := n1.cli("operator raft list-peers", "-format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var peers struct {
		Items []peer `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &peers); err != nil {
		t.Fatalf("list-peers output: %v\n%s", err, out)
	}
	voters, leaders := 0, 0
	for _, p := range peers.Items {
		if p.Voter && p.Suffrage == "Voter" {
			voters++
		}
		if p.Leader {
			leaders++
		}
	}
	if len(peers.Items) != 3 || voters != 3 || leaders != 1 {
		t.Fatalf("list-peers: want 3 voters and one leader, got %+v", peers.Items)
	}
	for _, nd := range c.all() {
		if !slices.ContainsFunc(peers.Items, func(p peer) bool { return p.ID == nd.id && p.Address == nd.rpcAddr() && p.Name == nd.name }) {
			t.Errorf("list-peers lacks %s (%s at %s): %+v", nd.name, nd.id, nd.rpcAddr(), peers.Items)
		}
	}

	// The table format names the leader too.
	table, err := n1.cli("operator raft list-peers")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(table, "leader") != 1 || !strings.Contains(table, "NODE") {
		t.Errorf("list-peers table should show one leader:\n%s", table)
	}

	// Every node registers itself in the registry; kiln status answers.
	testutil.WaitFor(t, 15*time.Second, func() error {
		out, err := n1.cli("nodes", "-format", "json")
		if err != nil {
			return err
		}
		var nodes struct {
			Items []struct {
				ID     string `json:"id"`
				Name   string `json:"name"`
				Status string `json:"status"`
			} `json:"items"`
		}
		if err := json.Unmarshal([]byte(out), &nodes); err != nil {
			return fmt.Errorf("kiln nodes output: %v\n%s", err, out)
		}
		if len(nodes.Items) != 3 {
			return fmt.Errorf("kiln nodes: want 3 records, got %+v", nodes.Items)
		}
		return nil
	})
	out, err = c.all()[2].cli("status", "-format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var st nodeStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.NodeName != "n3" || st.LeaderID == "" {
		t.Errorf("kiln status on n3: %v\n%s", err, out)
	}
}

// TestCluster_RetryJoinOutlastsSelf: every example config lists all servers in
// retry_join, the node itself included. A node that starts first must keep
// trying the others and not count reaching itself as having joined.
func TestCluster_RetryJoinOutlastsSelf(t *testing.T) {
	c := emptyCluster(t)
	ip1, ip2 := allocIP(t), allocIP(t)
	n1 := c.newNode("n1", ip1, 2, []string{ip1, ip2}, "")
	n2 := c.newNode("n2", ip2, 2, nil, "") // waits to be found
	n1.start()
	n1.waitUp()
	testutil.WaitFor(t, 10*time.Second, func() error {
		if !n1.logContains("join") {
			return fmt.Errorf("n1 has not tried to join yet")
		}
		return nil
	})
	n2.start()
	n2.waitUp()
	testutil.WaitFor(t, 20*time.Second, func() error {
		ms, err := n2.members()
		if err != nil {
			return err
		}
		if len(ms) != 2 {
			return fmt.Errorf("n2 sees members %+v; n1 stopped retrying its retry_join", ms)
		}
		return nil
	})
	c.waitLeader(leaderTimeout)
	c.waitVoters(2, leaderTimeout)
}

func TestCluster_Replication(t *testing.T) {
	c := newCluster(t, 3)
	n1 := c.all()[0]

	idx := n1.createModel("churn", map[string]string{"team": "risk"})
	if idx == 0 {
		t.Fatal("create returned no X-Kiln-Index")
	}
	for _, nd := range c.all() {
		// ?index= makes the read wait for the write locally; no polling needed.
		r := nd.mustCall("GET", fmt.Sprintf("/v1/models/churn?index=%d", idx), nil, http.StatusOK)
		if r.index() < idx || r.header.Get("X-Kiln-Known-Leader") != "true" || r.header.Get("X-Kiln-Last-Contact") == "" {
			t.Errorf("%s: read headers %v, want X-Kiln-Index >= %d, X-Kiln-Known-Leader true, X-Kiln-Last-Contact", nd.name, r.header, idx)
		}
		var m model
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatal(err)
		}
		if m.Name != "churn" || m.Tags["team"] != "risk" || m.CreateIndex != idx {
			t.Errorf("%s: model after create = %+v, want tags team=risk, create_index %d", nd.name, m, idx)
		}
	}

	leader := c.waitLeader(leaderTimeout)
	follower := c.others(leader)[0]
	r := follower.write("PATCH", "/v1/models/churn",
		map[string]any{"tags": map[string]any{"stage": "prod", "team": nil}}, http.StatusOK)
	var patched model
	if err := json.Unmarshal(r.body, &patched); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"stage": "prod"}
	if !maps.Equal(patched.Tags, want) || r.index() <= idx {
		t.Fatalf("PATCH via follower %s answered %+v at index %d, want tags %v after index %d", follower.name, patched, r.index(), want, idx)
	}
	for _, nd := range c.all() {
		var m model
		if err := nd.getJSON(fmt.Sprintf("/v1/models/churn?index=%d", r.index()), &m); err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(m.Tags, want) || m.ModifyIndex != r.index() {
			t.Errorf("%s: model after patch = %+v, want tags %v modify_index %d", nd.name, m, want, r.index())
		}
		// A consistent read on any node sees the acknowledged write without ?index.
		var cm model
		if err := nd.getJSON("/v1/models/churn?consistency=consistent", &cm); err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(cm.Tags, want) {
			t.Errorf("%s: consistent read = %+v, want tags %v", nd.name, cm, want)
		}
	}
}

func TestCluster_LeaderKill(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.waitLeader(leaderTimeout)
	leader.createModel("before", nil)

	survivors := c.others(leader)
	// How fast is BenchmarkFailover's to measure; here only that writes go on.
	took := killLeaderAndWrite(t, leader, survivors, "during")
	t.Logf("failover: %s from SIGKILL of %s to the first write acknowledged through another node", took, leader.name)
	c.waitLeaderAmong(leaderTimeout, survivors...)
	idx := survivors[1].createModel("while-down", nil)

	leader.restart()
	want := []string{"before", "during", "while-down"}
	testutil.WaitFor(t, 30*time.Second, func() error {
		st, err := leader.status()
		if err != nil {
			return err
		}
		if st.LeaderID == "" || st.AppliedIndex < idx {
			return fmt.Errorf("restarted %s: leader %q, applied %d, want a leader and index >= %d", leader.name, st.LeaderID, st.AppliedIndex, idx)
		}
		names, err := leader.modelNames("consistency=stale")
		if err != nil {
			return err
		}
		if !slices.Equal(names, want) {
			return fmt.Errorf("restarted %s has models %v, want %v", leader.name, names, want)
		}
		return nil
	})
	c.waitVoters(3, leaderTimeout)
}

// TestCluster_FullRestart kills every node with SIGKILL after the log has been
// compacted into snapshots, restarts them all on their data dirs and expects
// the registry back, with no write lost.
func TestCluster_FullRestart(t *testing.T) {
	c := newCluster(t, 3, withHCL(`raft {
  snapshot_threshold = 64
  trailing_logs      = 16
  snapshot_interval  = "1s"
}`))
	leader := c.waitLeader(leaderTimeout)
	// Write until every node has taken a snapshot and compacted its log (the
	// leader packs concurrent writes into one entry, so count entries by result).
	var want []string
	testutil.WaitFor(t, 30*time.Second, func() error {
		for range 20 {
			name := fmt.Sprintf("m%03d", len(want))
			c.all()[len(want)%3].createModel(name, nil)
			want = append(want, name)
		}
		for _, nd := range c.all() {
			if !nd.logContains("compacting logs") {
				return fmt.Errorf("%s has not compacted its log yet", nd.name)
			}
		}
		return nil
	})
	// One more write after the snapshots, so the restart needs the log too.
	leader.createModel("zz-last", nil)
	want = append(want, "zz-last")

	for _, nd := range c.all() {
		nd.kill()
	}
	for _, nd := range c.all() {
		nd.start()
	}
	for _, nd := range c.all() {
		nd.waitUp()
	}
	c.waitLeader(leaderTimeout)
	for _, nd := range c.all() {
		names, err := nd.modelNames("consistency=consistent")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(names, want) {
			t.Errorf("%s after a full restart has %d models, want %d", nd.name, len(names), len(want))
		}
	}
	c.all()[1].createModel("after-restart", nil)
}

// killLeaderAndWrite kills the leader with SIGKILL and writes model `name`
// through the survivors until one write is acknowledged; it returns the time
// from the kill to that acknowledgement.
func killLeaderAndWrite(t testing.TB, leader *node, survivors []*node, name string) time.Duration {
	t.Helper()
	leader.kill()
	start := time.Now()
	for i := 0; ; i++ {
		nd := survivors[i%len(survivors)]
		r, err := nd.call("POST", "/v1/models", map[string]any{"name": name})
		if err == nil && r.status == http.StatusCreated {
			return time.Since(start)
		}
		if err == nil && r.status == http.StatusConflict {
			// An earlier attempt whose answer was lost did land; it counts.
			return time.Since(start)
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("no write acknowledged within a minute of killing the leader: %v %v", r, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCluster_SnapshotCatchUp(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: 300 writes and a snapshot install")
	}
	c := newCluster(t, 3, withHCL(`raft {
  snapshot_threshold = 64
  trailing_logs      = 16
  snapshot_interval  = "1s"
}`))
	leader := c.waitLeader(leaderTimeout)

	const total = 300
	var want []string
	for i := range total {
		want = append(want, fmt.Sprintf("m%03d", i))
	}
	inParallel(t, 8, total, func(i int) error {
		_, err := leader.tryCreateModel(want[i], nil)
		return err
	})
	growLogPastOneSegment(t, leader)

	// Keep appending until every node has compacted its log past the first WAL
	// segment, which raft-wal then deletes: now a new node cannot be served
	// from the log.
	testutil.WaitFor(t, 30*time.Second, func() error {
		for i := range 10 {
			leader.write("PATCH", "/v1/models/bulk", map[string]any{"tags": map[string]string{"t63": fmt.Sprint("pad-", i)}}, http.StatusOK)
		}
		for _, nd := range c.all() {
			first, err := filepath.Glob(filepath.Join(nd.dataDir(), "raft", "wal", "00000000000000000001-*.wal"))
			if err != nil {
				return err
			}
			if len(first) > 0 {
				return fmt.Errorf("%s still holds its first WAL segment %s", nd.name, first[0])
			}
		}
		return nil
	})

	n4 := c.addNode("")
	want = append([]string{"bulk"}, want...)
	testutil.WaitFor(t, 60*time.Second, func() error {
		names, err := n4.modelNames("consistency=stale")
		if err != nil {
			return err
		}
		if !slices.Equal(names, want) {
			return fmt.Errorf("n4 has %d of %d models", len(names), len(want))
		}
		return nil
	})
	if !n4.logContains("Installed remote snapshot") {
		t.Errorf("n4 caught up without installing a snapshot: the leader still had the compacted log")
	}
	c.waitVoters(4, 60*time.Second)
	testutil.WaitFor(t, 10*time.Second, func() error {
		ps, err := leader.peers()
		if err != nil {
			return err
		}
		if i := slices.IndexFunc(ps, func(p peer) bool { return p.ID == n4.id }); i < 0 || !ps[i].Voter {
			return fmt.Errorf("n4 is not a voter: %+v", ps)
		}
		return nil
	})
}

// growLogPastOneSegment writes about 70 MB of log entries (large tag updates of
// one model). raft-wal keeps compacted entries readable until their 64 MiB
// segment is sealed and deleted, so without this a new node is sent the whole
// log from index 1 and never needs a snapshot.
func growLogPastOneSegment(t testing.TB, nd *node) {
	t.Helper()
	nd.createModel("bulk", nil)
	tags := map[string]string{}
	for i := range 64 {
		tags[fmt.Sprintf("t%02d", i)] = strings.Repeat(string(rune('a'+i%26)), 4000)
	}
	const writes = 280 // x 64 x 4000 bytes ~ 72 MB
	inParallel(t, 4, writes, func(i int) error {
		tags := maps.Clone(tags)
		tags["t00"] = fmt.Sprintf("%d-%s", i, tags["t00"][:3000])
		r, _, err := nd.tryWrite("PATCH", "/v1/models/bulk", map[string]any{"tags": tags})
		if err == nil && r.status != http.StatusOK {
			err = fmt.Errorf("PATCH bulk: %s", r)
		}
		return err
	})
}

func TestCluster_NonVotersBeyondMaxVoters(t *testing.T) {
	c := newCluster(t, 3, withHCL(`max_voters = 3`))
	leader := c.waitLeader(leaderTimeout)
	n4 := c.addNode("")

	testutil.WaitFor(t, 30*time.Second, func() error {
		ps, err := leader.peers()
		if err != nil {
			return err
		}
		if i := slices.IndexFunc(ps, func(p peer) bool { return p.ID == n4.id }); i < 0 {
			return fmt.Errorf("n4 is not in the Raft configuration yet: %+v", ps)
		}
		return nil
	})
	idx := c.all()[1].createModel("replicated", nil)
	var m model
	if err := n4.getJSON(fmt.Sprintf("/v1/models/replicated?consistency=stale&index=%d", idx), &m); err != nil {
		t.Fatalf("non-voter n4 does not replicate: %v", err)
	}

	// Promotion would come after server_stabilization_time (1s) plus a reconcile
	// tick; watching for several times that shows it does not come.
	holdsFor(t, 5*time.Second, func() error {
		ps, err := leader.peers()
		if err != nil {
			return err
		}
		voters := 0
		for _, p := range ps {
			if p.Voter {
				voters++
			}
			if p.ID == n4.id && (p.Voter || p.Suffrage != "Nonvoter") {
				return fmt.Errorf("n4 became %s with max_voters = 3: %+v", p.Suffrage, ps)
			}
		}
		if len(ps) != 4 || voters != 3 {
			return fmt.Errorf("want 3 voters and n4 as non-voter, got %+v", ps)
		}
		return nil
	})
}

func TestCluster_GracefulLeave(t *testing.T) {
	for _, tt := range []struct {
		name        string
		leaderLeave bool
	}{
		{"follower", false},
		{"leader", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, 3)
			leader := c.waitLeader(leaderTimeout)
			leaver := c.others(leader)[0]
			if tt.leaderLeave {
				leaver = leader
			}
			stayers := c.others(leaver)

			if code := leaver.stop(); code != 0 {
				t.Fatalf("%s exited %d after SIGTERM, want 0", leaver.name, code)
			}
			testutil.WaitFor(t, 15*time.Second, func() error {
				out, err := stayers[0].cli("operator raft list-peers", "-format", "json")
				if err != nil {
					return err
				}
				var peers struct {
					Items []peer `json:"items"`
				}
				if err := json.Unmarshal([]byte(out), &peers); err != nil {
					return err
				}
				if len(peers.Items) != 2 || slices.ContainsFunc(peers.Items, func(p peer) bool { return p.ID == leaver.id }) {
					return fmt.Errorf("list-peers still has %s: %+v", leaver.name, peers.Items)
				}
				return nil
			})
			// Two voters, both up: the cluster still takes writes.
			stayers[1].createModel("after-leave", nil)
			testutil.WaitFor(t, 15*time.Second, func() error {
				for _, nd := range stayers {
					ms, err := nd.members()
					if err != nil {
						return err
					}
					i := slices.IndexFunc(ms, func(m member) bool { return m.Name == leaver.name })
					if i < 0 || ms[i].Status != "left" {
						return fmt.Errorf("members on %s should show %s as left: %+v", nd.name, leaver.name, ms)
					}
				}
				return nil
			})
		})
	}
}

func TestCluster_DeadNodeReap(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: waits for gossip to declare a node dead and for the reap")
	}
	c := newCluster(t, 4, withHCL(`dead_node_reap = "3s"`))
	leader := c.waitLeader(leaderTimeout)
	victim := c.others(leader)[0]
	victim.kill()
	start := time.Now()

	testutil.WaitFor(t, 45*time.Second, func() error {
		ps, err := leader.peers()
		if err != nil {
			return err
		}
		if slices.ContainsFunc(ps, func(p peer) bool { return p.ID == victim.id }) {
			return fmt.Errorf("killed %s is still a peer: %+v", victim.name, ps)
		}
		return nil
	})
	t.Logf("%s reaped %s after kill -9", victim.name, time.Since(start).Round(100*time.Millisecond))
	c.waitVoters(3, 10*time.Second)
	c.others(leader)[0].createModel("after-reap", nil)

	ms, err := leader.members()
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(ms, func(m member) bool { return m.Name == victim.name }); i < 0 || ms[i].Status != "dead" {
		t.Errorf("members should show reaped %s as dead: %+v", victim.name, ms)
	}

	// The reaped node comes back on its data dir: it is let in again, catches up
	// and is promoted back to voter.
	victim.restart()
	c.waitVoters(4, 30*time.Second)
	var m model
	if err := victim.getJSON("/v1/models/after-reap?consistency=stale&index=1", &m); err != nil {
		t.Fatalf("returning %s lacks the write made while it was gone: %v", victim.name, err)
	}
}

func TestCluster_Partition(t *testing.T) {
	c := newCluster(t, 3)
	isolated := c.waitLeader(leaderTimeout) // the hard case: cut off the leader
	majority := c.others(isolated)
	isolated.createModel("before", nil)

	for _, nd := range majority {
		isolated.dropTraffic(nd.ip)
		nd.dropTraffic(isolated.ip)
	}
	newLeader := c.waitLeaderAmong(leaderTimeout, majority...)
	t.Logf("isolated leader %s; %s leads the majority", isolated.name, newLeader.name)

	idx := majority[1].createModel("majority-write", nil)

	r, err := isolated.call("POST", "/v1/models", map[string]any{"name": "minority-write"})
	if err != nil {
		t.Fatalf("write via isolated %s: %v", isolated.name, err)
	}
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("write via isolated %s: %s, want 503 with Retry-After", isolated.name, r)
	}
	// The isolated node still serves stale reads, and says it knows no leader;
	// a default read needs a known leader.
	r = isolated.mustCall("GET", "/v1/models/before?consistency=stale", nil, http.StatusOK)
	if got := r.header.Get("X-Kiln-Known-Leader"); got != "false" {
		t.Errorf("stale read on isolated %s: X-Kiln-Known-Leader = %q, want false", isolated.name, got)
	}
	if r = isolated.mustCall("GET", "/v1/models/before", nil, http.StatusServiceUnavailable); r.errorCode() == "" {
		t.Errorf("default read on isolated %s: %s, want a JSON error with a code", isolated.name, r)
	}

	for _, nd := range c.all() {
		nd.clearFaults()
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		var m model
		if err := isolated.getJSON(fmt.Sprintf("/v1/models/majority-write?consistency=stale&index=%d", idx), &m); err != nil {
			return err
		}
		st, err := isolated.status()
		if err != nil {
			return err
		}
		if st.RaftState != "Follower" && st.RaftState != "Leader" {
			return fmt.Errorf("healed %s is %s", isolated.name, st.RaftState)
		}
		return nil
	})
	c.waitLeader(leaderTimeout)

	// The write the isolated node refused never reached a majority, so it must
	// not surface after the heal.
	for _, nd := range c.all() {
		names, err := nd.modelNames("consistency=consistent")
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"before", "majority-write"}; !slices.Equal(names, want) {
			t.Errorf("%s has models %v after the heal, want %v", nd.name, names, want)
		}
	}
}

func TestCluster_SnapshotSaveRestore(t *testing.T) {
	c := newCluster(t, 3)
	nodes := c.all()
	saved := []string{"keep-a", "keep-b", "keep-c"}
	for _, name := range saved {
		nodes[0].createModel(name, map[string]string{"v": "1"})
	}
	file := filepath.Join(t.TempDir(), "registry.snap")
	if out, err := nodes[0].cli("snapshot save", file); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(out, "Saved snapshot") {
		t.Errorf("snapshot save printed %q", out)
	}

	nodes[1].createModel("extra-1", nil)
	nodes[2].createModel("extra-2", nil)
	r := nodes[0].write("PATCH", "/v1/models/keep-a", map[string]any{"tags": map[string]any{"v": "2"}}, http.StatusOK)

	// Restore through a follower, which hands the upload on to the leader.
	leader := c.waitLeader(leaderTimeout)
	if out, err := c.others(leader)[0].cli("snapshot restore", file); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(out, "Restored snapshot") {
		t.Errorf("snapshot restore printed %q", out)
	}

	for _, nd := range nodes {
		testutil.WaitFor(t, 20*time.Second, func() error {
			names, err := nd.modelNames(fmt.Sprintf("consistency=stale&index=%d", r.index()))
			if err != nil {
				return err
			}
			if !slices.Equal(names, saved) {
				return fmt.Errorf("%s has models %v after restore, want %v", nd.name, names, saved)
			}
			var m model
			if err := nd.getJSON("/v1/models/keep-a?consistency=stale", &m); err != nil {
				return err
			}
			if m.Tags["v"] != "1" {
				return fmt.Errorf("%s: keep-a has tags %v after restore, want v=1", nd.name, m.Tags)
			}
			return nil
		})
	}
	// The leader restored the file as a Raft snapshot, which the followers can
	// only get by installing it over the network.
	for _, nd := range c.others(leader) {
		if !nd.logContains("Installed remote snapshot") {
			t.Errorf("follower %s did not install the restored snapshot from the leader", nd.name)
		}
	}
	// The restored registry takes writes.
	nodes[2].createModel("after-restore", nil)
}

func TestCluster_BadConfig(t *testing.T) {
	tests := []struct {
		name    string
		hcl     string
		wantPos string // file:line,col or file:line
		wantKey string
	}{
		{"unknown top-level key", "node_name = \"x\"\ndata_dir = \"/tmp/x\"\nbogus_key = 1\n", ":3,", "bogus_key"},
		{"unknown key in a block", "node_name = \"x\"\nraft {\n  snapshot_treshold = 5\n}\n", ":3,", "snapshot_treshold"},
		{"bad duration", "node_name = \"x\"\ndead_node_reap = \"soon\"\n", ":2", "dead_node_reap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.hcl")
			if err := os.WriteFile(path, []byte(tt.hcl), 0o640); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, kilnBinary(), "agent", "-config", path).CombinedOutput()
			if err == nil {
				t.Fatalf("kiln agent accepted the config:\n%s", out)
			}
			if ctx.Err() != nil {
				t.Fatalf("kiln agent did not exit on a bad config: %s", out)
			}
			if !strings.Contains(string(out), path+tt.wantPos) || !strings.Contains(string(out), tt.wantKey) {
				t.Errorf("error should name %s%s and %q, got:\n%s", path, tt.wantPos, tt.wantKey, out)
			}
		})
	}
}
