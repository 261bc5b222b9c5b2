package node

import (
	"context"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// membershipLoop runs on the leader: it turns gossip membership into Raft
// configuration, on every membership event and at least every second.
func (a *Agent) membershipLoop(ctx context.Context) {
	r := &reconciler{
		a:            a,
		failingSince: map[raft.ServerID]time.Time{},
		healthySince: map[raft.ServerID]time.Time{},
		verified:     map[identityKey]bool{},
		refused:      map[identityKey]string{},
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		r.reconcile(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-a.gossip.events:
		}
	}
}

// reconciler turns gossip membership into Raft configuration. It lives for one
// term of leadership; its timers restart with a new leader, which can only delay
// a reap or a promotion, never hasten one.
type reconciler struct {
	a            *Agent
	failingSince map[raft.ServerID]time.Time // servers in the config not alive in gossip
	healthySince map[raft.ServerID]time.Time // non-voters continuously healthy since
	// verified holds, with TLS on, the members whose certificate was found to
	// name them this term, so the 1/s loop does not re-check them every pass.
	verified map[identityKey]bool
	// refused is the last identity refusal logged per member: each is logged
	// once, though it is checked again every pass.
	refused map[identityKey]string
}

func (r *reconciler) reconcile(ctx context.Context) {
	a := r.a
	future := a.raft.GetConfiguration()
	if err := future.Error(); err != nil {
		a.logger.Warn("reconcile: get configuration", "error", err)
		return
	}
	servers := future.Configuration().Servers
	alive := map[raft.ServerID]member{}
	for _, m := range a.gossip.alive() {
		alive[raft.ServerID(m.Meta.ID)] = m
	}
	inConfig := map[raft.ServerID]raft.Server{}
	for _, s := range servers {
		inConfig[s.ID] = s
	}
	now := time.Now()

	// 1. New members join as non-voters; a changed address is updated in place.
	// Under TLS neither happens before the member's certificate names it
	// (identity.go): otherwise any holder of a cluster certificate could claim
	// a node ID.
	for id, m := range alive {
		s, ok := inConfig[id]
		addr := raft.ServerAddress(m.Meta.RPCAddr)
		switch {
		case !ok:
			if !r.identityVerified(ctx, m) {
				continue
			}
			a.logger.Info("adding non-voter", "node", m.Name, "id", id, "addr", addr)
			if err := a.raft.AddNonvoter(id, addr, 0, 10*time.Second).Error(); err != nil {
				a.logger.Warn("add non-voter failed", "node", m.Name, "error", err)
			}
			return // one configuration change at a time
		case s.Address != addr && id != raft.ServerID(a.id):
			if !r.identityVerified(ctx, m) {
				continue
			}
			a.logger.Info("server address changed", "node", m.Name, "old", s.Address, "new", addr)
			var f raft.IndexFuture
			if s.Suffrage == raft.Voter {
				f = a.raft.AddVoter(id, addr, 0, 10*time.Second)
			} else {
				f = a.raft.AddNonvoter(id, addr, 0, 10*time.Second)
			}
			if err := f.Error(); err != nil {
				a.logger.Warn("address update failed", "node", m.Name, "error", err)
			}
			return
		}
	}

	// 2. Removal: a server that left is removed now; a dead one after
	// dead_node_reap, and only if the voters still alive keep a quorum.
	voters, aliveVoters := 0, 0
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			voters++
			if _, ok := alive[s.ID]; ok || s.ID == raft.ServerID(a.id) {
				aliveVoters++
			}
		}
	}
	for _, s := range servers {
		if s.ID == raft.ServerID(a.id) {
			continue
		}
		if _, ok := alive[s.ID]; ok {
			delete(r.failingSince, s.ID)
			continue
		}
		since, ok := r.failingSince[s.ID]
		if !ok {
			since = now
			r.failingSince[s.ID] = now
		}
		gone, known := a.gossip.goneMember(string(s.ID))
		left := known && gone.Status == "left"
		if !left && now.Sub(since) < a.cfg.DeadNodeReap {
			continue
		}
		if s.Suffrage == raft.Voter {
			remaining := voters - 1
			if aliveVoters < remaining/2+1 {
				a.logger.Warn("not removing failed voter: would leave no quorum", "id", s.ID, "voters", voters, "alive_voters", aliveVoters)
				continue
			}
		}
		a.logger.Info("removing server", "id", s.ID, "reason", map[bool]string{true: "left", false: "dead"}[left])
		if err := a.raft.RemoveServer(s.ID, 0, 10*time.Second).Error(); err != nil {
			a.logger.Warn("remove server failed", "id", s.ID, "error", err)
		}
		delete(r.failingSince, s.ID)
		return
	}

	// 3. Promotion: healthy non-voters become voters while voters < max_voters.
	if voters >= a.cfg.MaxVoters {
		return
	}
	var candidates []raft.Server
	for _, s := range servers {
		if s.Suffrage != raft.Nonvoter {
			continue
		}
		m, ok := alive[s.ID]
		if !ok || m.Status != "alive" || !r.caughtUp(ctx, m) {
			delete(r.healthySince, s.ID)
			continue
		}
		if _, ok := r.healthySince[s.ID]; !ok {
			r.healthySince[s.ID] = now
		}
		if now.Sub(r.healthySince[s.ID]) >= a.cfg.ServerStabilization && r.identityVerified(ctx, m) {
			candidates = append(candidates, s)
		}
	}
	sortServers(candidates)
	if len(candidates) > 0 {
		s := candidates[0]
		a.logger.Info("promoting non-voter", "id", s.ID)
		if err := a.raft.AddVoter(s.ID, s.Address, 0, 10*time.Second).Error(); err != nil {
			a.logger.Warn("promotion failed", "id", s.ID, "error", err)
		}
		delete(r.healthySince, s.ID)
	}
}

// caughtUpLag is how many entries a non-voter may trail the leader and still be
// promoted. A fresh node that needed a snapshot is far behind until it installs it.
const caughtUpLag = 1024

// caughtUp asks the member for its applied index.
func (r *reconciler) caughtUp(ctx context.Context, m member) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var st nodeStatusReply
	if err := r.a.trans.Call(ctx, m.Meta.RPCAddr, rpcNodeStatus, &nodeStatusArgs{}, &st); err != nil {
		return false
	}
	return st.AppliedIndex+caughtUpLag >= r.a.fsm.AppliedIndex()
}

func sortServers(s []raft.Server) {
	sort.Slice(s, func(i, j int) bool { return s[i].ID < s[j].ID })
}

func containsServer(s []raft.Server, id string) bool {
	for _, x := range s {
		if string(x.ID) == id {
			return true
		}
	}
	return false
}
