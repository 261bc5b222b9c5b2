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
	"github.com/kilnml/kiln/raftfsm/structs"
)

// raftNode is one raft server over InmemTransport with this FSM on disk.
type raftNode struct {
	id    raft.ServerID
	addr  raft.ServerAddress
	trans *raft.InmemTransport
	fsm   *FSM
	raft  *raft.Raft
}

func newRaftNode(t *testing.T, id string, logs *syncBuffer) *raftNode {
	t.Helper()
	n := &raftNode{id: raft.ServerID(id)}
	n.addr, n.trans = raft.NewInmemTransport(raft.ServerAddress(id))
	n.fsm = testFSM(t, onDisk(t.TempDir()))

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
	conf.Logger = hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Warn, Output: logs})

	r, err := raft.NewRaft(conf, n.fsm, raft.NewInmemStore(), raft.NewInmemStore(), raft.NewInmemSnapshotStore(), n.trans)
	if err != nil {
		t.Fatal(err)
	}
	n.raft = r
	t.Cleanup(func() { // runs before the FSM's Close, registered earlier
		if err := r.Shutdown().Error(); err != nil {
			t.Errorf("raft shutdown %s: %v", id, err)
		}
		n.trans.Close()
	})
	return n
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
	waitFor(t, 10*time.Second, func() bool {
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
		waitFor(t, 10*time.Second, func() bool { return n.fsm.AppliedIndex() >= index })
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
		_, last = apply(upsertNode(t, fmt.Sprintf("node-%d", i), 4+i))
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
}
