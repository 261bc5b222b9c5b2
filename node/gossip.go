package node

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"
)

// maxMetaSize is memberlist's limit on node meta; we check ours at start.
const maxMetaSize = memberlist.MetaMaxSize

// memberMeta is what every node gossips about itself. It is small and changes
// rarely: addresses, identity, and the bootstrap facts other nodes need before
// Raft runs.
type memberMeta struct {
	ID       string `msgpack:"i"`
	RPCAddr  string `msgpack:"r"`
	HTTPAddr string `msgpack:"h"`
	Version  string `msgpack:"v"`
	Expect   int    `msgpack:"e"`
	// HasState says the node has Raft state (bootstrapped or joined); a node that
	// sees one never bootstraps a new cluster.
	HasState bool `msgpack:"s"`
	// Leaving is gossiped just before a graceful leave. memberlist tells us that a
	// node is gone but not whether it left or died (its Node.State is never
	// updated), so this flag is how peers tell the two apart.
	Leaving bool `msgpack:"l,omitempty"`
}

func decodeMeta(b []byte) (memberMeta, error) {
	var m memberMeta
	// A fresh decoder: see structs.Decode.
	if err := msgpack.NewDecoder(bytes.NewReader(b)).Decode(&m); err != nil {
		return m, fmt.Errorf("node: member meta: %w", err)
	}
	if m.ID == "" || m.RPCAddr == "" {
		return m, fmt.Errorf("node: member meta lacks id or rpc address")
	}
	return m, nil
}

// member is a gossip peer with its decoded meta.
type member struct {
	Name   string
	Addr   string // gossip ip:port
	Status string // alive, suspect, dead, left
	Meta   memberMeta
	// GoneAt is when a member that left or died was last seen going.
	GoneAt time.Time
}

// Peers that left or died are remembered (for the leader's reap, and for
// the members list) for goneRetention, and at most maxGone of them, the
// most recent kept: a cluster whose nodes come and go for months must not
// grow the list for ever.
const (
	goneRetention = 24 * time.Hour
	maxGone       = 1024
)

// gossip wraps memberlist: it owns the local meta and turns memberlist events into
// a wake-up channel for the leader's reconcile loop and a record of which peers
// left on purpose (removed from Raft at once) and which died (reaped later).
type gossip struct {
	logger hclog.Logger
	ml     *memberlist.Memberlist

	mu   sync.Mutex
	meta memberMeta // guarded by mu
	// up holds the members memberlist reports up (alive or suspect), by
	// memberlist name, copied in its event callbacks, which run under its
	// lock: memberlist changes its Node records under that lock, so reading
	// them from Members() elsewhere would race with it.
	up     map[string]member // guarded by mu
	gone   map[string]member // guarded by mu: by node ID, peers that left or died
	events chan struct{}     // wakes the reconciler; buffered, never blocks
	// seen records joins and leaves for the dashboard's events (events.go).
	seen *eventRing

	// changes counts membership events; aliveCache is alive()'s answer as of
	// a count, so the request path (which asks per prediction) decodes the
	// members' meta only after something changed.
	changes    atomic.Uint64
	aliveCache atomic.Pointer[aliveSet]
}

type aliveSet struct {
	changes uint64
	members []member
	byID    map[string]member
}

// newGossip starts memberlist; kr, when not nil, is the keyring it encrypts
// with (and then cfg.EncryptKey is only how kr began).
func newGossip(cfg *Config, meta memberMeta, kr *keyring, seen *eventRing, logger hclog.Logger) (*gossip, error) {
	g := &gossip{logger: logger, meta: meta, up: map[string]member{}, gone: map[string]member{}, events: make(chan struct{}, 1), seen: seen}
	if b, _ := msgpack.Marshal(meta); len(b) > maxMetaSize {
		return nil, fmt.Errorf("node: member meta is %d bytes, over memberlist's %d", len(b), maxMetaSize)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeName
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.GossipPort
	mc.AdvertiseAddr = cfg.advertiseIP()
	mc.AdvertisePort = cfg.GossipPort
	if kr != nil {
		mc.Keyring = kr.kr
	}
	mc.Delegate = g
	mc.Events = g
	mc.Logger = logger.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("node: gossip: %w", err)
	}
	g.ml = ml
	return g, nil
}

// NodeMeta implements memberlist.Delegate.
func (g *gossip) NodeMeta(limit int) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	b, err := msgpack.Marshal(g.meta)
	if err != nil || len(b) > limit {
		g.logger.Error("node meta does not fit", "bytes", len(b), "limit", limit, "error", err)
		return nil
	}
	return b
}

func (g *gossip) NotifyMsg([]byte)                           {}
func (g *gossip) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (g *gossip) LocalState(join bool) []byte                { return nil }
func (g *gossip) MergeRemoteState(buf []byte, join bool)     {}

// NotifyJoin implements memberlist.EventDelegate.
func (g *gossip) NotifyJoin(n *memberlist.Node) {
	if m, err := decodeMeta(n.Meta); err == nil {
		g.mu.Lock()
		delete(g.gone, m.ID)
		g.up[n.Name] = member{Name: n.Name, Addr: n.Address(), Status: "alive", Meta: m}
		g.mu.Unlock()
	}
	g.logger.Info("member joined", "name", n.Name, "addr", n.Address())
	g.seen.add("join", n.Name+" joined ("+n.Address()+")")
	g.wake()
}

// NotifyLeave fires for a graceful leave and for a death alike; the Leaving flag
// in the node's last meta tells them apart.
func (g *gossip) NotifyLeave(n *memberlist.Node) {
	status := "dead"
	m, err := decodeMeta(n.Meta)
	if err == nil && m.Leaving {
		status = "left"
	}
	g.mu.Lock()
	delete(g.up, n.Name)
	if err == nil {
		now := time.Now()
		g.gone[m.ID] = member{Name: n.Name, Addr: n.Address(), Status: status, Meta: m, GoneAt: now}
		g.pruneGone(now)
	}
	g.mu.Unlock()
	g.logger.Info("member gone", "name", n.Name, "status", status)
	g.seen.add("leave", n.Name+" "+map[string]string{"dead": "died", "left": "left"}[status])
	g.wake()
}

// pruneGone forgets peers gone longer than goneRetention, then the oldest
// beyond maxGone. Call with mu held.
func (g *gossip) pruneGone(now time.Time) {
	for id, m := range g.gone {
		if now.Sub(m.GoneAt) > goneRetention {
			delete(g.gone, id)
		}
	}
	for len(g.gone) > maxGone {
		oldest := ""
		for id, m := range g.gone {
			if oldest == "" || m.GoneAt.Before(g.gone[oldest].GoneAt) {
				oldest = id
			}
		}
		delete(g.gone, oldest)
	}
}

// NotifyUpdate implements memberlist.EventDelegate: a member's meta changed.
func (g *gossip) NotifyUpdate(n *memberlist.Node) {
	if m, err := decodeMeta(n.Meta); err == nil {
		g.mu.Lock()
		if _, ok := g.up[n.Name]; ok {
			g.up[n.Name] = member{Name: n.Name, Addr: n.Address(), Status: "alive", Meta: m}
		}
		g.mu.Unlock()
	}
	g.wake()
}

func (g *gossip) wake() {
	g.changes.Add(1)
	select {
	case g.events <- struct{}{}:
	default:
	}
}

// setHasState updates the gossiped HasState flag.
func (g *gossip) setHasState() {
	g.mu.Lock()
	changed := !g.meta.HasState
	g.meta.HasState = true
	g.mu.Unlock()
	if changed {
		err := g.ml.UpdateNode(5 * time.Second)
		g.changes.Add(1) // our own meta changed
		if err != nil {
			g.logger.Warn("could not gossip updated meta", "error", err)
		}
	}
}

// alive lists the members memberlist considers up, with valid meta. memberlist
// does not expose "suspect" (Node.State is never updated), so they are all alive.
// The slice is the caller's.
func (g *gossip) alive() []member {
	return slices.Clone(g.aliveSet().members)
}

// aliveMember returns the alive member with the given node ID.
func (g *gossip) aliveMember(id string) (member, bool) {
	m, ok := g.aliveSet().byID[id]
	return m, ok
}

func (g *gossip) aliveSet() *aliveSet {
	n := g.changes.Load()
	if c := g.aliveCache.Load(); c != nil && c.changes == n {
		return c
	}
	set := &aliveSet{changes: n, byID: map[string]member{}}
	g.mu.Lock()
	for _, m := range g.up {
		set.members = append(set.members, m)
		set.byID[m.Meta.ID] = m
	}
	g.mu.Unlock()
	slices.SortFunc(set.members, func(a, b member) int { return strings.Compare(a.Name, b.Name) })
	g.aliveCache.Store(set)
	return set
}

// goneMember reports whether a node left or died, as last seen by gossip.
func (g *gossip) goneMember(id string) (member, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.gone[id]
	return m, ok
}

// all lists alive members and the ones that left or died since this agent started.
func (g *gossip) all() []member {
	out := g.alive()
	seen := map[string]bool{}
	for _, m := range out {
		seen[m.Meta.ID] = true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, m := range g.gone {
		if !seen[id] {
			out = append(out, m)
		}
	}
	return out
}

// joinLoop joins the given peers, retrying with backoff until one answers or ctx ends.
func (g *gossip) joinLoop(ctx context.Context, peers []string, defaultPort int, interval time.Duration) {
	if len(peers) == 0 {
		return
	}
	// memberlist counts contacting ourselves as a successful join, so a node that
	// lists its own address (every node of a shared config does) would stop
	// retrying before any peer is up.
	self := g.ml.LocalNode().Address()
	var addrs []string
	for _, p := range peers {
		if a := withDefaultPort(p, defaultPort); !isSelf(a, self) {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return
	}
	wait := interval
	for {
		n, err := g.ml.Join(addrs)
		if n > 0 {
			g.logger.Info("joined cluster", "contacted", n)
			return
		}
		g.logger.Warn("join failed, retrying", "peers", addrs, "in", wait, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, 30*time.Second)
	}
}

// withDefaultPort appends port to an address that has none.
func withDefaultPort(addr string, port int) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(addr, strconv.Itoa(port))
}

// leave gossips the Leaving flag, so peers record a departure rather than a
// death, then leaves.
func (g *gossip) leave(timeout time.Duration) error {
	g.mu.Lock()
	g.meta.Leaving = true
	g.mu.Unlock()
	err := g.ml.UpdateNode(timeout)
	g.changes.Add(1)
	if err != nil {
		g.logger.Warn("could not gossip the leaving flag", "error", err)
	}
	return g.ml.Leave(timeout)
}
func (g *gossip) shutdown() error { return g.ml.Shutdown() }

// isSelf reports whether addr (host:port) names the local gossip address self.
func isSelf(addr, self string) bool {
	if addr == self {
		return true
	}
	host, port, err := net.SplitHostPort(addr)
	sHost, sPort, err2 := net.SplitHostPort(self)
	if err != nil || err2 != nil || port != sPort {
		return false
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return false
	}
	for _, ip := range ips {
		if ip.String() == sHost {
			return true
		}
	}
	return false
}
