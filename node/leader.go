package node

import (
	"context"
	"sync"
	"time"
)

// leaderTask is one capability's leader-only loop. It runs from
// establishLeadership until revokeLeadership, with a context cancelled at
// revocation, and must return soon after.
type leaderTask struct {
	name string
	run  func(ctx context.Context)
}

// leaderTasks lists the leader-only loops, one per capability, each in its
// leader_<capability>.go. A new capability adds a line.
func (a *Agent) leaderTasks() []leaderTask {
	return []leaderTask{
		{name: "membership", run: a.membershipLoop},
		{name: "placement", run: a.placementLoop},
		{name: "artifacts", run: a.artifactsLoop},
		{name: "scheduling", run: a.schedulingLoop},
		{name: "tuning", run: a.tuningLoop},
		{name: "sources", run: a.sourcesLoop},
		{name: "redis_resync", run: a.redisResyncLoop},
		{name: "pipelines", run: a.pipelinesLoop},
		{name: "monitoring", run: a.monitoringLeaderLoop},
	}
}

// monitorLeadership follows raft's leadership notifications: on gaining
// leadership it runs leaderLoop until the term ends or the agent stops.
func (a *Agent) monitorLeadership() {
	var stop context.CancelFunc
	done := make(chan struct{})
	close(done)
	for {
		select {
		case <-a.ctx.Done():
			if stop != nil {
				stop()
			}
			<-done
			return
		case isLeader := <-a.raft.LeaderCh():
			if stop != nil {
				stop()
				<-done
				stop = nil
			}
			a.leaderReady.Store(false)
			if !isLeader {
				a.logger.Info("lost leadership")
				a.events.add("leader", a.cfg.NodeName+" lost the leadership")
				continue
			}
			a.logger.Info("gained leadership")
			a.events.add("leader", a.cfg.NodeName+" became the leader")
			var ctx context.Context
			ctx, stop = context.WithCancel(a.ctx)
			done = make(chan struct{})
			go func() {
				defer close(done)
				a.leaderLoop(ctx)
			}()
		}
	}
}

// leaderLoop is one term of leadership: a barrier first, so the FSM holds
// everything committed before this term, then the leader tasks until ctx
// ends.
func (a *Agent) leaderLoop(ctx context.Context) {
	for {
		if err := a.raft.Barrier(30 * time.Second).Error(); err == nil {
			break
		} else {
			a.logger.Warn("leader barrier failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	revoke := a.establishLeadership(ctx)
	<-ctx.Done()
	a.revokeLeadership(revoke)
}

// establishLeadership marks the node ready to lead and starts every leader
// task; the returned func stops them.
func (a *Agent) establishLeadership(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, t := range a.leaderTasks() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.run(ctx)
		}()
	}
	a.leaderReady.Store(true)
	return func() {
		cancel()
		wg.Wait()
	}
}

// revokeLeadership stops the leader tasks and waits for them, so a new term
// never overlaps the last one's tasks.
func (a *Agent) revokeLeadership(stop func()) {
	a.leaderReady.Store(false)
	stop()
}
