package node

import (
	"context"
	"time"

	"github.com/kilnml/kiln/actors/training"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// schedulingLoop runs on the leader: whenever jobs, the ledger or the nodes
// change (and at least every second), it runs the job scheduler and proposes
// its plan (DESIGN.md §7). A node whose job members it sees away longer than
// dead_node_reap, or that left, counts as gone: its jobs are lost.
func (a *Agent) schedulingLoop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	index := a.fsm.IndexFunc(raftfsm.TableJobs, raftfsm.TableJobAllocations, raftfsm.TableNodes, raftfsm.TableAllocations)
	missingSince := map[string]time.Time{}
	full, seen := true, uint64(0)
	for {
		changed := a.fsm.Changed()
		if idx := index(); full || idx != seen {
			seen = idx
			more, err := a.scheduleOnce(ctx, missingSince)
			if err != nil && ctx.Err() == nil {
				a.logger.Warn("job scheduling failed", "error", err)
			}
			if more {
				continue // the plan was cut at its bound: plan again now
			}
		}
		full = false
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
			full = true
		}
	}
}

// maxPlacementsPerPass bounds one pass, so that a huge queue is placed in
// steps that each commit.
const maxPlacementsPerPass = 4096

func (a *Agent) scheduleOnce(ctx context.Context, missingSince map[string]time.Time) (more bool, err error) {
	txn := a.fsm.ReadTxn()
	jobs, _, err := txn.Jobs("", 0)
	if err != nil {
		txn.Discard()
		return false, err
	}
	var active []*structs.Job
	for _, j := range jobs {
		if !j.Terminal() {
			active = append(active, j)
		}
	}
	if len(active) == 0 {
		txn.Discard()
		return false, nil
	}
	nodes, err := txn.Nodes()
	if err != nil {
		txn.Discard()
		return false, err
	}
	allocs, err := txn.Allocations()
	if err != nil {
		txn.Discard()
		return false, err
	}
	jobAllocs, err := txn.JobAllocations()
	txn.Discard()
	if err != nil {
		return false, err
	}
	now := time.Now()
	alive, gone := map[string]bool{}, map[string]bool{}
	for _, n := range nodes {
		if a.isAlive(n.ID) {
			alive[n.ID] = true
			delete(missingSince, n.ID)
			continue
		}
		if m, ok := a.gossip.goneMember(n.ID); ok && m.Status == "left" {
			gone[n.ID] = true
			continue
		}
		since, ok := missingSince[n.ID]
		if !ok {
			missingSince[n.ID] = now
		} else if now.Sub(since) >= a.cfg.DeadNodeReap {
			gone[n.ID] = true
		}
	}
	plan := training.Schedule(training.ScheduleInput{Nodes: nodes, Alive: alive, Gone: gone, Allocs: allocs, JobAllocs: jobAllocs,
		Jobs: active, MaxPlace: maxPlacementsPerPass, Now: now.UTC()})
	if len(plan.Place) == 0 && len(plan.Wait) == 0 && len(plan.Lose) == 0 {
		return false, nil
	}
	if len(plan.Place) > 0 || len(plan.Lose) > 0 {
		a.logger.Info("scheduling jobs", "place", len(plan.Place), "lose", len(plan.Lose))
	}
	for _, p := range training.SplitPlan(plan) {
		var res structs.JobPlanResult
		if _, err := a.propose(ctx, structs.JobPlanType, &p, &res); err != nil {
			return false, err
		}
		for _, r := range res.Refused {
			a.logger.Debug("job placement refused; planning again", "reason", r)
		}
	}
	return len(plan.Place) == maxPlacementsPerPass, nil
}
