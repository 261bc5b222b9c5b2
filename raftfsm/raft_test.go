package raftfsm

import (
	"bytes"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// raftNode is one raft server over InmemTransport with this FSM on disk. Its raft
// stores and FSM directory outlive a restart.
type raftNode struct {
	id    raft.ServerID
	addr  raft.ServerAddress
	dir   string
	logs  *syncBuffer
	store *raft.InmemStore // log and stable store
	snaps *raft.InmemSnapshotStore
	trans *raft.InmemTransport
	fsm   *FSM
	raft  *raft.Raft
}

func newRaftNode(t *testing.T, id string, logs *syncBuffer) *raftNode {
	t.Helper()
	n := &raftNode{
		id: raft.ServerID(id), addr: raft.ServerAddress(id), dir: t.TempDir(), logs: logs,
		store: raft.NewInmemStore(), snaps: raft.NewInmemSnapshotStore(),
	}
	n.start(t)
	t.Cleanup(func() { n.stop(t) })
	return n
}

func (n *raftNode) start(t *testing.T) {
	t.Helper()
	_, n.trans = raft.NewInmemTransport(n.addr)
	fsm, err := New(Config{Dir: n.dir})
	must(t, err)
	n.fsm = fsm

	conf := raft.DefaultConfig()
	conf.LocalID = n.id
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.SnapshotThreshold = 1 << 40 // snapshots only when the test asks
	conf.SnapshotInterval = time.Hour
	conf.TrailingLogs = 2 // so that a new server needs InstallSnapshot
	conf.NoSnapshotRestoreOnStart = true
	conf.Logger = hclog.New(&hclog.LoggerOptions{Name: string(n.id), Level: hclog.Warn, Output: n.logs})

	n.raft, err = raft.NewRaft(conf, n.fsm, n.store, n.store, n.snaps, n.trans)
	must(t, err)
}

// stop shuts raft down, then closes the FSM, as the node does.
func (n *raftNode) stop(t *testing.T) {
	if err := n.raft.Shutdown().Error(); err != nil {
		t.Errorf("raft shutdown %s: %v", n.id, err)
	}
	n.trans.Close()
	if err := n.fsm.Close(); err != nil {
		t.Errorf("fsm close %s: %v", n.id, err)
	}
}

// syncBuffer collects the raft servers' logs, shown only when the test fails.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func connectAll(nodes ...*raftNode) {
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.trans.Connect(b.addr, b.trans)
			}
		}
	}
}

func waitLeader(t *testing.T, nodes ...*raftNode) *raftNode {
	t.Helper()
	var leader *raftNode
	testutil.Until(t, 10*time.Second, "", func() bool {
		for _, n := range nodes {
			if n.raft.State() == raft.Leader {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

func waitConverged(t *testing.T, index uint64, nodes ...*raftNode) state {
	t.Helper()
	for _, n := range nodes {
		testutil.Until(t, 10*time.Second, "", func() bool { return n.fsm.AppliedIndex() >= index })
	}
	want := readState(t, nodes[0].fsm)
	for _, n := range nodes[1:] {
		assertSameState(t, want, readState(t, n.fsm))
	}
	return want
}

func TestFSM_RaftCluster(t *testing.T) {
	logs := &syncBuffer{}
	t.Cleanup(func() { // runs last
		if t.Failed() {
			t.Logf("raft logs:\n%s", logs.String())
		}
	})
	n1, n2, n3 := newRaftNode(t, "n1", logs), newRaftNode(t, "n2", logs), newRaftNode(t, "n3", logs)
	connectAll(n1, n2, n3)
	boot := raft.Configuration{Servers: []raft.Server{
		{ID: n1.id, Address: n1.addr}, {ID: n2.id, Address: n2.addr}, {ID: n3.id, Address: n3.addr},
	}}
	must(t, n1.raft.BootstrapCluster(boot).Error())
	leader := waitLeader(t, n1, n2, n3)

	apply := func(data []byte) (interface{}, uint64) {
		t.Helper()
		f := leader.raft.Apply(data, 5*time.Second)
		must(t, f.Error())
		return f.Response(), f.Index()
	}
	for i := range 10 {
		apply(createModel(t, fmt.Sprintf("model-%02d", i), map[string]string{"i": strconv.Itoa(i)}))
	}
	if res, _ := apply(createModel(t, "model-03", nil)); codeOf(res) != structs.CodeConflict {
		t.Fatalf("duplicate create through raft: response %v, want already_exists", res)
	}
	res, last := apply(updateModel(t, "model-03", map[string]*string{"i": nil, "x": ptr("y")}))
	if m, ok := res.(*structs.Model); !ok || m.ModifyIndex != last {
		t.Fatalf("update through raft: response %+v, want the model at index %d", res, last)
	}
	st := waitConverged(t, last, n1, n2, n3)
	if len(st.Models) != 10 {
		t.Fatalf("%d models, want 10", len(st.Models))
	}

	// Compact the log, then add a server: it can only catch up by InstallSnapshot.
	must(t, leader.raft.Snapshot().Error())
	for i := range 5 {
		apply(upsertNode(t, fmt.Sprintf("node-%d", i), 4+i))
	}
	n4 := newRaftNode(t, "n4", logs)
	connectAll(n1, n2, n3, n4)
	add := leader.raft.AddVoter(n4.id, n4.addr, 0, 5*time.Second)
	must(t, add.Error())
	st = waitConverged(t, add.Index(), n1, n2, n3, n4)
	if len(st.Models) != 10 || len(st.Nodes) != 5 {
		t.Fatalf("%d models and %d nodes, want 10 and 5", len(st.Models), len(st.Nodes))
	}
	if idx := n4.raft.Stats()["last_snapshot_index"]; idx == "0" {
		t.Fatal("the new server caught up without a snapshot; the test does not cover InstallSnapshot")
	}

	// The new server applies further entries like the others.
	_, last = apply(deleteModel(t, "model-00"))
	waitConverged(t, last, n1, n2, n3, n4)

	// A follower restarts on the same FSM directory and raft stores: raft replays
	// its log from the last snapshot, the FSM skips what it has, and catches up.
	follower := n2
	if follower == leader {
		follower = n3
	}
	follower.stop(t)
	_, last = apply(updateModel(t, "model-01", map[string]*string{"while": ptr("down")}))
	before := follower.fsm.AppliedIndex()
	follower.start(t)
	if got := follower.fsm.AppliedIndex(); got != before {
		t.Fatalf("AppliedIndex after reopen = %d, want %d", got, before)
	}
	connectAll(n1, n2, n3, n4)
	st = waitConverged(t, last, n1, n2, n3, n4)
	if m := st.Models[0]; m.Name != "model-01" || m.Tags["while"] != "down" || m.ModifyIndex != last {
		t.Fatalf("model-01 after the restart = %+v", m)
	}
}
