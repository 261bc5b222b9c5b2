package node

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/node/internal/blobs"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// memSnapshotSink is a raft.SnapshotSink in memory.
type memSnapshotSink struct{ bytes.Buffer }

func (s *memSnapshotSink) ID() string    { return "mem" }
func (s *memSnapshotSink) Cancel() error { return nil }
func (s *memSnapshotSink) Close() error  { return nil }

// registrySnapshot applies a registry with model iris deployed on node-1, its
// one allocation having allocID, to a scratch FSM, and returns its snapshot.
// Apply takes any allocation ID without '/' (the leader's placement makes
// them), so ".." gets into the state this way.
func registrySnapshot(t *testing.T, allocID string) []byte {
	t.Helper()
	cfg := raftfsm.DefaultConfig()
	cfg.InMemory = true
	fsm, err := raftfsm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer fsm.Close()
	cmds := []struct {
		typ structs.MessageType
		cmd any
	}{
		{structs.ModelCreateType, &structs.ModelCreateRequest{Model: structs.Model{Name: "iris"}}},
		{structs.VersionCreateType, &structs.VersionCreateRequest{Version: structs.ModelVersion{
			Model: "iris", Format: "linear", Digest: strings.Repeat("ab", 32), Holders: []string{"node-1"},
		}}},
		{structs.NodeUpsertType, &structs.NodeUpsertRequest{Node: structs.Node{ID: "node-1", Name: "node-1"}}},
		{structs.DeploymentPutType, &structs.DeploymentPutRequest{Deployment: structs.Deployment{
			Name: "iris", Replicas: 1, Traffic: structs.Traffic{Versions: []structs.TrafficSplit{{Version: 1, Weight: 1}}},
		}}},
		{structs.AllocPlanType, &structs.AllocPlanRequest{Add: []structs.Allocation{
			{ID: allocID, Deployment: "iris", Version: 1, NodeID: "node-1"},
		}}},
	}
	var logs []*raft.Log
	for i, c := range cmds {
		data, err := structs.Encode(c.typ, c.cmd)
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: data})
	}
	for i, res := range fsm.ApplyBatch(logs) {
		if err, ok := res.(error); ok {
			t.Fatalf("command %d: %v", i+1, err)
		}
	}
	snap, err := fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var sink memSnapshotSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	return sink.Bytes()
}

func modelNames(t *testing.T, a *Agent) string {
	t.Helper()
	r := call(t, a, "GET", "/v1/models?consistency=consistent", "")
	if r.status != 200 {
		t.Fatalf("list models: %d %v", r.status, r.body)
	}
	var names []string
	items, _ := r.body["items"].([]any)
	for _, it := range items {
		m, _ := it.(map[string]any)
		names = append(names, fmt.Sprint(m["name"]))
	}
	return strings.Join(names, ",")
}

func TestSnapshotRestore_RefusesRecordsTheAPIRefuses(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	if r := call(t, a, "POST", "/v1/models", `{"name":"keep"}`); r.status != 201 {
		t.Fatalf("create: %d %v", r.status, r.body)
	}

	// A well-formed stream that Restore alone would load.
	bad := registrySnapshot(t, "..")
	r := call(t, a, "PUT", "/v1/snapshot", string(bad))
	if r.status != 400 || r.body["code"] != structs.CodeInvalid || !strings.Contains(fmt.Sprint(r.body["error"]), `allocation "..": id ".." is not an ID`) {
		t.Fatalf("restore of a crafted snapshot: %d %v", r.status, r.body)
	}
	if got := modelNames(t, a); got != "keep" {
		t.Fatalf("models after a refused restore = %q, want keep", got)
	}

	// A truncated stream is refused the same way.
	r = call(t, a, "PUT", "/v1/snapshot", string(bad[:len(bad)/2]))
	if r.status != 400 || r.body["code"] != structs.CodeInvalid {
		t.Fatalf("restore of a truncated snapshot: %d %v", r.status, r.body)
	}

	// The same registry with an allocation as placement names them restores.
	good := registrySnapshot(t, structs.NewID(time.Now()))
	if r := call(t, a, "PUT", "/v1/snapshot", string(good)); r.status != 200 {
		t.Fatalf("restore of a valid snapshot: %d %v", r.status, r.body)
	}
	if got := modelNames(t, a); got != "iris" {
		t.Fatalf("models after the restore = %q, want iris", got)
	}
}

// TestSnapshotRestore_ThroughFollower restores through a follower, which
// hands the file to the leader once and waits for it within a deadline.
func TestSnapshotRestore_ThroughFollower(t *testing.T) {
	a, b := testPair(t)
	waitLeader(t, a)
	testutil.Until(t, 10*time.Second, "the follower to know the leader", func() bool {
		addr, _ := b.raft.LeaderWithID()
		return addr != ""
	})
	var mu sync.Mutex // guards hops and deadlines
	var hops []int
	var deadlines []bool
	a.trans.Register(rpcSnapshotRestore, func(ctx context.Context, dec transport.Decoder) (any, error) {
		_, ok := ctx.Deadline()
		var args snapshotRestoreArgs
		if err := dec.Decode(&args); err != nil {
			return nil, err
		}
		mu.Lock()
		deadlines = append(deadlines, ok)
		hops = append(hops, args.Hops)
		mu.Unlock()
		return a.handleSnapshotRestoreRPC(ctx, decoded(args))
	})
	t.Cleanup(func() { a.trans.Register(rpcSnapshotRestore, a.handleSnapshotRestoreRPC) })

	good := registrySnapshot(t, structs.NewID(time.Now()))
	if r := call(t, b, "PUT", "/v1/snapshot", string(good)); r.status != 200 {
		t.Fatalf("restore through the follower: %d %v", r.status, r.body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(deadlines) != 1 || !deadlines[0] || len(hops) != 1 || hops[0] != 1 {
		t.Errorf("leader saw %d restore calls, deadlines %v, hops %v; want one, with a deadline, one hop", len(deadlines), deadlines, hops)
	}
	if got := modelNames(t, b); got != "iris" {
		t.Fatalf("models after the restore = %q, want iris", got)
	}
}

// decoded hands already decoded snapshot.restore arguments to a handler.
type decoded snapshotRestoreArgs

func (d decoded) Decode(v any) error {
	*v.(*snapshotRestoreArgs) = snapshotRestoreArgs(d)
	return nil
}

// TestSnapshotRestore_HandedOnAtMostOnce sends a restore to a node that is
// not the leader, as a follower with a stale view of the leader would: it is
// refused, the copy dropped, and nothing handed on.
func TestSnapshotRestore_HandedOnAtMostOnce(t *testing.T) {
	a, b := testPair(t)
	waitLeader(t, a)
	puts := countCalls(t, a, blobs.MethodPut, a.xfer.HandlePut)
	restores := countCalls(t, a, rpcSnapshotRestore, a.handleSnapshotRestoreRPC)

	digest := storeBlob(t, b.blobs, registrySnapshot(t, structs.NewID(time.Now()))) // the copy a follower pushed
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var reply snapshotRestoreReply
	err := a.trans.Call(ctx, b.trans.Addr(), rpcSnapshotRestore, &snapshotRestoreArgs{Digest: digest, Hops: 1}, &reply)
	if code := remoteCode(err); code != structs.CodeNotLeader || !strings.Contains(err.Error(), "at most once") {
		t.Fatalf("restore on a non-leader: %v (code %q), want not_leader", err, code)
	}
	if httpStatus(structs.CodeNotLeader) != 503 {
		t.Errorf("not_leader answers %d, want 503", httpStatus(structs.CodeNotLeader))
	}
	if puts.Load() != 0 || restores.Load() != 0 {
		t.Errorf("the refused restore was handed on: %d blob.put, %d snapshot.restore calls to the leader", puts.Load(), restores.Load())
	}
	if _, ok := b.blobs.Has(digest); ok {
		t.Error("the refusing node kept the copy it was sent")
	}
}
