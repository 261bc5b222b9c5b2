package pipeline

import (
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Input is what Plan decides from.
type Input struct {
	Spec *structs.PipelineSpec
	// Steps holds each step's status by name; a step missing from it is
	// waiting with no attempt.
	Steps map[string]*structs.StepStatus
	// Cancel asks the run to stop.
	Cancel bool
	// Slots bounds the steps that may start now beyond the pipeline's own
	// max_parallel (a cluster-wide limit); < 0 means no such bound.
	Slots int
	// Now is the time of the plan: a failed step is retried once its
	// backoff (RetryBackoff of its attempts) has passed since it failed.
	// The zero time retries at once.
	Now time.Time
}

// RetryBackoff is the wait before a step's next attempt after attempts
// failed ones: 1 s, doubling, at most a minute.
func RetryBackoff(attempts int) time.Duration {
	d := time.Second
	for i := 1; i < attempts && d < time.Minute; i++ {
		d *= 2
	}
	return min(d, time.Minute)
}

// Plan is what a run does next.
type Plan struct {
	// Start lists the steps to start (a first attempt), in spec order.
	Start []string
	// Retry lists failed steps with retries left, to start again.
	Retry []string
	// Wake is when a retry waiting for its backoff is due; zero when none
	// waits.
	Wake time.Time
	// Skip lists waiting steps that can never run: a dependency failed for
	// good, was skipped, or was cancelled.
	Skip []string
	// Stop lists running steps to stop (the run is cancelled).
	Stop []string
	// CancelWaiting lists waiting steps a cancel ends.
	CancelWaiting []string
	// State is the run's state once the plan is applied.
	State string
}

func status(in *Input, name string) *structs.StepStatus {
	if s, ok := in.Steps[name]; ok && s != nil {
		return s
	}
	return &structs.StepStatus{Name: name, State: structs.StepWaiting}
}

// failedForGood reports whether a step failed with no retry left.
func failedForGood(spec *structs.StepSpec, s *structs.StepStatus) bool {
	return s.State == structs.StepFailed && (s.Attempts > spec.Retries || s.NoRetry)
}

// PlanRun decides the next moves of a run. It is pure: the same input
// gives the same plan.
func PlanRun(in Input) Plan {
	var p Plan
	spec := in.Spec
	final := make(map[string]string, len(spec.Steps)) // state after this plan
	running := 0
	for i := range spec.Steps {
		s := status(&in, spec.Steps[i].Name)
		final[s.Name] = s.State
		if s.State == structs.StepRunning {
			running++
		}
	}
	if in.Cancel {
		for i := range spec.Steps {
			s := status(&in, spec.Steps[i].Name)
			switch {
			case s.State == structs.StepRunning:
				p.Stop = append(p.Stop, s.Name)
				final[s.Name] = structs.StepCancelled
			case s.State == structs.StepWaiting || (s.State == structs.StepFailed && !failedForGood(&spec.Steps[i], s)):
				p.CancelWaiting = append(p.CancelWaiting, s.Name)
				final[s.Name] = structs.StepCancelled
			}
		}
		p.State = runState(spec, final, nil, true)
		return p
	}
	// Skips propagate in dependency order: a step skipped here makes its
	// dependants skipped in the same plan. Steps are visited in an order
	// where dependencies come first.
	for _, i := range topoOrder(spec) {
		st := &spec.Steps[i]
		if final[st.Name] != structs.StepWaiting {
			continue
		}
		for _, d := range st.DependsOn {
			ds := final[d]
			dspec := stepSpec(spec, d)
			if ds == structs.StepSkipped || ds == structs.StepCancelled || (ds == structs.StepFailed && failedForGood(dspec, status(&in, d))) {
				p.Skip = append(p.Skip, st.Name)
				final[st.Name] = structs.StepSkipped
				break
			}
		}
	}
	free := spec.MaxParallel - running
	if in.Slots >= 0 {
		free = min(free, in.Slots)
	}
	for i := range spec.Steps {
		st := &spec.Steps[i]
		if free <= 0 {
			break
		}
		s := status(&in, st.Name)
		switch {
		case final[st.Name] == structs.StepFailed && !failedForGood(st, s):
			if due := s.FinishedAt.Add(RetryBackoff(s.Attempts)); !in.Now.IsZero() && in.Now.Before(due) {
				if p.Wake.IsZero() || due.Before(p.Wake) {
					p.Wake = due
				}
				continue
			}
			p.Retry = append(p.Retry, st.Name)
			final[st.Name] = structs.StepRunning
			free--
		case final[st.Name] == structs.StepWaiting && depsDone(st, final):
			p.Start = append(p.Start, st.Name)
			final[st.Name] = structs.StepRunning
			free--
		}
	}
	p.State = runState(spec, final, retriesLeft(&in), false)
	return p
}

// retriesLeft lists the failed steps that still have a retry.
func retriesLeft(in *Input) map[string]bool {
	out := map[string]bool{}
	for i := range in.Spec.Steps {
		st := &in.Spec.Steps[i]
		if s := status(in, st.Name); s.State == structs.StepFailed && !failedForGood(st, s) {
			out[st.Name] = true
		}
	}
	return out
}

func stepSpec(spec *structs.PipelineSpec, name string) *structs.StepSpec {
	for i := range spec.Steps {
		if spec.Steps[i].Name == name {
			return &spec.Steps[i]
		}
	}
	return &structs.StepSpec{}
}

// depsDone reports whether every dependency succeeded (or was cached).
func depsDone(st *structs.StepSpec, final map[string]string) bool {
	for _, d := range st.DependsOn {
		if s := final[d]; s != structs.StepSucceeded && s != structs.StepCached {
			return false
		}
	}
	return true
}

// runState is the run's state given its steps': running while any step
// runs or may still start (or be retried); else cancelled if the run was,
// failed if any step failed, succeeded otherwise.
func runState(spec *structs.PipelineSpec, final map[string]string, retry map[string]bool, cancelled bool) string {
	anyFailed, anyActive := false, false
	for i := range spec.Steps {
		name := spec.Steps[i].Name
		switch final[name] {
		case structs.StepRunning, structs.StepWaiting:
			anyActive = true
		case structs.StepFailed:
			if retry[name] {
				anyActive = true // it will run again when a slot frees
			} else {
				anyFailed = true
			}
		}
	}
	switch {
	case anyActive:
		return structs.PipelineRunning
	case cancelled:
		return structs.PipelineCancelled
	case anyFailed:
		return structs.PipelineFailed
	}
	return structs.PipelineSucceeded
}

// topoOrder lists the steps' indexes with every step after its
// dependencies (the spec is validated: no cycle), stable in spec order.
func topoOrder(spec *structs.PipelineSpec) []int {
	index := make(map[string]int, len(spec.Steps))
	for i := range spec.Steps {
		index[spec.Steps[i].Name] = i
	}
	done := make([]bool, len(spec.Steps))
	var out []int
	var visit func(i int)
	visit = func(i int) {
		if done[i] {
			return
		}
		done[i] = true
		for _, d := range spec.Steps[i].DependsOn {
			visit(index[d])
		}
		out = append(out, i)
	}
	for i := range spec.Steps {
		visit(i)
	}
	return out
}
