package transport

import (
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// countingFSM records the distinct entries applied; enough to see replication
// happen. Distinct, because an Apply retried after a lost leadership may have
// been committed twice.
type countingFSM struct {
	mu      sync.Mutex
	entries map[string]bool
}

func (f *countingFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.entries == nil {
		f.entries = make(map[string]bool)
	}
	f.entries[string(l.Data)] = true
	return nil
}

func (f *countingFSM) applied() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.entries)
}

func (f *countingFSM) Snapshot() (raft.FSMSnapshot, error) { return noopSnapshot{}, nil }
func (f *countingFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type noopSnapshot struct{}

func (noopSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (noopSnapshot) Release()                             {}

type raftNode struct {
	tr   *Transport
	raft *raft.Raft
	fsm  *countingFSM
}

// testRaftCluster starts one raft server per bind IP, each over its own
// Transport, bootstraps them as voters and waits for a leader.
func testRaftCluster(t *testing.T, ips []string, opts ...func(*Config)) []*raftNode {
	t.Helper()
	nodes := make([]*raftNode, len(ips))
	var servers []raft.Server
	for i, ip := range ips {
		tr := testTransport(t, append([]func(*Config){withBind(ip + ":0")}, opts...)...)
		nodes[i] = &raftNode{tr: tr, fsm: &countingFSM{}}
		servers = append(servers, raft.Server{
			ID:      raft.ServerID(fmt.Sprintf("node%d", i)),
			Address: raft.ServerAddress(tr.Addr()),
		})
	}
	for i, n := range nodes {
		conf := raft.DefaultConfig()
		conf.LocalID = servers[i].ID
		conf.HeartbeatTimeout = 200 * time.Millisecond
		conf.ElectionTimeout = 200 * time.Millisecond
		conf.LeaderLeaseTimeout = 100 * time.Millisecond
		conf.CommitTimeout = 5 * time.Millisecond
		conf.Logger = hclog.NewNullLogger()
		netTrans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  n.tr.StreamLayer(),
			MaxPool: 3,
			Timeout: time.Second,
			Logger:  hclog.NewNullLogger(),
		})
		store := raft.NewInmemStore()
		r, err := raft.NewRaft(conf, n.fsm, store, store, raft.NewInmemSnapshotStore(), netTrans)
		if err != nil {
			t.Fatalf("NewRaft: %v", err)
		}
		n.raft = r
		// Registered after the transport's cleanup, so it runs first: raft stops
		// before its transport goes away.
		t.Cleanup(func() { r.Shutdown().Error() })
	}
	if err := nodes[0].raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	testutil.Until(t, 10*time.Second, "", func() bool { return leaderOf(nodes) != nil })
	return nodes
}

// apply commits data through whichever node leads, retrying when leadership
// moves (a loaded test machine can miss a heartbeat).
func apply(t *testing.T, nodes []*raftNode, data string) {
	t.Helper()
	testutil.Until(t, 10*time.Second, "", func() bool {
		leader := leaderOf(nodes)
		return leader != nil && leader.raft.Apply([]byte(data), 2*time.Second).Error() == nil
	})
}

func leaderOf(nodes []*raftNode) *raftNode {
	for _, n := range nodes {
		if n.raft.State() == raft.Leader {
			return n
		}
	}
	return nil
}

func TestTransport_RaftStreamLayer(t *testing.T) {
	nodes := testRaftCluster(t, []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"})
	for i := range 10 {
		apply(t, nodes, fmt.Sprintf("entry-%d", i))
	}
	for _, n := range nodes {
		testutil.Until(t, 5*time.Second, "", func() bool { return n.fsm.applied() == 10 })
	}
	leader := leaderOf(nodes)
	testutil.Until(t, 5*time.Second, "", func() bool {
		leader = leaderOf(nodes)
		return leader != nil && string(leader.raft.Leader()) == leader.tr.Addr()
	})

	t.Run("Drop isolates the leader and Clear heals", func(t *testing.T) {
		var others []*raftNode
		for _, n := range nodes {
			if n != leader {
				others = append(others, n)
				leader.tr.Faults().Set(n.tr.Addr(), Fault{Drop: true})
			}
		}
		apply(t, others, "after-partition")
		if n := leader.fsm.applied(); n != 10 {
			t.Fatalf("isolated old leader applied %d entries, want 10", n)
		}

		leader.tr.Faults().ClearAll()
		testutil.Until(t, 10*time.Second, "", func() bool { return leader.fsm.applied() == 11 })
	})
}
