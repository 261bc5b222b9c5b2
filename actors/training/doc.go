// Package training runs training jobs (DESIGN.md §7): the scheduler, a pure
// function from the registry to a placement plan that the leader proposes
// (Schedule), and the job actors that run each placed member on its node.
//
// One capacity ledger serves training and serving: the scheduler counts
// serving's allocations with the jobs' members, and Apply re-checks each
// placement against both (raftfsm's capacity.go), so a job never gets a GPU a
// replica holds, nor the reverse.
package training
