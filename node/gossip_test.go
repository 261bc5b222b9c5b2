package node

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"
)

func testGossip() *gossip {
	return &gossip{logger: hclog.NewNullLogger(), up: map[string]member{}, gone: map[string]member{}, events: make(chan struct{}, 1)}
}

func mlNode(t *testing.T, name string, meta memberMeta) *memberlist.Node {
	t.Helper()
	b, err := msgpack.Marshal(meta)
	if err != nil {
		t.Fatal(err)
	}
	return &memberlist.Node{Name: name, Addr: net.ParseIP("10.0.0.1"), Port: 7072, Meta: b}
}

// The members gossip reports alive come from memberlist's callbacks, so a
// join, a meta update and a leave each show in alive() and nothing reads
// memberlist's records outside its lock.
func TestGossip_AliveFollowsEvents(t *testing.T) {
	g := testGossip()
	n1 := mlNode(t, "n1", memberMeta{ID: "id-1", RPCAddr: "10.0.0.1:7071"})
	g.NotifyJoin(n1)
	g.NotifyJoin(mlNode(t, "n2", memberMeta{ID: "id-2", RPCAddr: "10.0.0.2:7071"}))
	if got := g.alive(); len(got) != 2 || got[0].Meta.ID != "id-1" || got[1].Meta.ID != "id-2" {
		t.Fatalf("alive after two joins = %+v", got)
	}
	g.NotifyUpdate(mlNode(t, "n1", memberMeta{ID: "id-1", RPCAddr: "10.0.0.1:7071", HasState: true}))
	if m, ok := g.aliveMember("id-1"); !ok || !m.Meta.HasState {
		t.Fatalf("alive member after a meta update = %+v %v, want HasState", m, ok)
	}
	g.NotifyLeave(mlNode(t, "n1", memberMeta{ID: "id-1", RPCAddr: "10.0.0.1:7071", Leaving: true}))
	if got := g.alive(); len(got) != 1 || got[0].Meta.ID != "id-2" {
		t.Fatalf("alive after n1 left = %+v", got)
	}
	if m, ok := g.goneMember("id-1"); !ok || m.Status != "left" {
		t.Fatalf("gone member n1 = %+v %v, want left", m, ok)
	}
	// An update for a member already gone does not bring it back.
	g.NotifyUpdate(mlNode(t, "n1", memberMeta{ID: "id-1", RPCAddr: "10.0.0.1:7071"}))
	if _, ok := g.aliveMember("id-1"); ok {
		t.Fatal("a late update brought back a member that left")
	}
}

// Peers that left or died are forgotten after goneRetention, and beyond
// maxGone the oldest go first.
func TestGossip_GoneIsBounded(t *testing.T) {
	g := testGossip()
	g.NotifyLeave(mlNode(t, "old", memberMeta{ID: "old", RPCAddr: "10.0.0.9:7071"}))
	g.mu.Lock()
	m := g.gone["old"]
	m.GoneAt = time.Now().Add(-goneRetention - time.Minute)
	g.gone["old"] = m
	g.mu.Unlock()
	for i := range maxGone + 10 {
		g.NotifyLeave(mlNode(t, fmt.Sprintf("n%d", i), memberMeta{ID: fmt.Sprintf("id-%d", i), RPCAddr: "10.0.0.1:7071"}))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.gone) != maxGone {
		t.Fatalf("%d gone members remembered, want %d", len(g.gone), maxGone)
	}
	if _, ok := g.gone["old"]; ok {
		t.Fatal("a member gone longer than goneRetention is still remembered")
	}
	if _, ok := g.gone[fmt.Sprintf("id-%d", maxGone+9)]; !ok {
		t.Fatal("the most recent gone member was dropped")
	}
}
