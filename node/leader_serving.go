package node

import (
	"context"
	"time"

	"github.com/kilnml/kiln/actors/serving"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// placementLoop runs on the leader: whenever the registry or membership
// changes (and at least every second), it computes the placement plan and
// proposes it when it is not empty.
func (a *Agent) placementLoop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	full, seen := true, uint64(0)
	index := a.fsm.IndexFunc(raftfsm.ServingTables...)
	for {
		changed := a.fsm.Changed()
		// Registry writes that leave serving state alone need no plan; the
		// tick covers changes of liveness and of the node table.
		if idx := index(); full || idx != seen {
			seen = idx
			if err := a.placeOnce(ctx); err != nil && ctx.Err() == nil {
				a.logger.Warn("placement failed", "error", err)
			}
		}
		full = false
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
			full = true
			continue
		}
		// Coalesce bursts of serving changes into one pass.
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (a *Agent) placeOnce(ctx context.Context) error {
	txn := a.fsm.ReadTxn()
	deployments, _, err := txn.Deployments("", 0)
	if err != nil {
		txn.Discard()
		return err
	}
	if len(deployments) == 0 {
		allocs, err := txn.Allocations()
		txn.Discard()
		if err != nil || len(allocs) == 0 {
			return err
		}
		return a.proposeCmd(ctx, structs.AllocPlanFitType, &structs.AllocPlanRequest{Remove: allocIDs(allocs)})
	}
	allocs, err := txn.Allocations()
	if err != nil {
		txn.Discard()
		return err
	}
	nodes, err := txn.Nodes()
	if err != nil {
		txn.Discard()
		return err
	}
	jobAllocs, err := txn.JobAllocations()
	if err != nil {
		txn.Discard()
		return err
	}
	alive := map[string]bool{}
	for _, n := range nodes {
		alive[n.ID] = a.isAlive(n.ID)
	}
	plan := serving.Plan(serving.PlanInput{
		Deployments: deployments,
		Version: func(model string, v uint64) *structs.ModelVersion {
			mv, err := txn.Version(model, v)
			if err != nil {
				return nil
			}
			return mv
		},
		Allocs:    allocs,
		JobAllocs: jobAllocs,
		Nodes:     nodes,
		Alive:     alive,
		NewID:     func() string { return structs.NewID(time.Now()) },
	})
	txn.Discard()
	if len(plan.Add) == 0 && len(plan.Remove) == 0 {
		return nil
	}
	now := time.Now().UTC()
	for i := range plan.Add {
		plan.Add[i].CreatedAt = now
	}
	a.logger.Info("placing replicas", "add", len(plan.Add), "remove", len(plan.Remove))
	return a.proposeCmd(ctx, structs.AllocPlanFitType, &plan)
}

func allocIDs(allocs []*structs.Allocation) []string {
	ids := make([]string, len(allocs))
	for i, a := range allocs {
		ids[i] = a.ID
	}
	return ids
}
