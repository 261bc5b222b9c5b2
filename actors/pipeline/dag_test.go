package pipeline

import (
	"slices"
	"testing"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// diamond is a -> (b, c) -> d, and e alone.
func diamond(maxParallel int) *structs.PipelineSpec {
	cmd := func(name string, deps ...string) structs.StepSpec {
		return structs.StepSpec{Name: name, Type: structs.StepCommand, Command: []string{"/bin/true"}, DependsOn: deps, Retries: 1}
	}
	return &structs.PipelineSpec{Name: "d", MaxParallel: maxParallel, Steps: []structs.StepSpec{
		cmd("a"), cmd("b", "a"), cmd("c", "a"), cmd("d", "b", "c"), cmd("e"),
	}}
}

func states(kv ...string) map[string]*structs.StepStatus {
	out := map[string]*structs.StepStatus{}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = &structs.StepStatus{Name: kv[i], State: kv[i+1], Attempts: 1}
	}
	return out
}

func TestPlanRun(t *testing.T) {
	const (
		w  = structs.StepWaiting
		r  = structs.StepRunning
		ok = structs.StepSucceeded
		f  = structs.StepFailed
		sk = structs.StepSkipped
	)
	tests := []struct {
		name       string
		spec       *structs.PipelineSpec
		steps      map[string]*structs.StepStatus
		cancel     bool
		slots      int
		start      []string
		retry      []string
		skip       []string
		stop       []string
		state      string
		cancelWait []string
	}{
		{name: "first the roots", spec: diamond(4), steps: states(), slots: -1, start: []string{"a", "e"}, state: structs.PipelineRunning},
		{name: "the branches in parallel", spec: diamond(4), steps: states("a", ok, "e", r), slots: -1, start: []string{"b", "c"}, state: structs.PipelineRunning},
		{name: "max_parallel bounds the start", spec: diamond(2), steps: states("a", ok, "e", r), slots: -1, start: []string{"b"}, state: structs.PipelineRunning},
		{name: "a cluster-wide limit too", spec: diamond(4), steps: states("a", ok, "e", r), slots: 1, start: []string{"b"}, state: structs.PipelineRunning},
		{name: "the join waits for both", spec: diamond(4), steps: states("a", ok, "b", ok, "c", r, "e", ok), slots: -1, state: structs.PipelineRunning},
		{name: "the join starts", spec: diamond(4), steps: states("a", ok, "b", ok, "c", ok, "e", ok), slots: -1, start: []string{"d"}, state: structs.PipelineRunning},
		{name: "all done", spec: diamond(4), steps: states("a", ok, "b", ok, "c", ok, "d", structs.StepCached, "e", ok), slots: -1, state: structs.PipelineSucceeded},
		{name: "a failure with a retry left is retried", spec: diamond(4), steps: states("a", ok, "b", f, "c", ok, "e", ok), slots: -1, retry: []string{"b"}, state: structs.PipelineRunning},
		{name: "a retry waits for a slot, the run goes on", spec: diamond(1), steps: states("a", ok, "b", f, "c", r, "e", ok), slots: -1, state: structs.PipelineRunning},
		{name: "the branch's dependants are skipped", spec: diamond(4), steps: func() map[string]*structs.StepStatus {
			s := states("a", ok, "b", f, "c", r, "e", ok)
			s["b"].Attempts = 2 // retries: 1, so 2 attempts is the last
			return s
		}(), slots: -1, skip: []string{"d"}, state: structs.PipelineRunning},
		{name: "and the run fails once the rest ends", spec: diamond(4), steps: func() map[string]*structs.StepStatus {
			s := states("a", ok, "b", f, "c", ok, "d", sk, "e", ok)
			s["b"].Attempts = 2
			return s
		}(), slots: -1, state: structs.PipelineFailed},
		{name: "a failed root skips all below it", spec: diamond(4), steps: func() map[string]*structs.StepStatus {
			s := states("a", f, "e", ok)
			s["a"].Attempts = 2
			return s
		}(), slots: -1, skip: []string{"b", "c", "d"}, state: structs.PipelineFailed},
		{name: "cancel stops the running and ends the waiting", spec: diamond(4), steps: states("a", ok, "b", r, "e", ok), cancel: true, slots: -1,
			stop: []string{"b"}, cancelWait: []string{"c", "d"}, state: structs.PipelineCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := PlanRun(Input{Spec: tt.spec, Steps: tt.steps, Cancel: tt.cancel, Slots: tt.slots})
			for _, c := range []struct {
				what      string
				got, want []string
			}{{"start", p.Start, tt.start}, {"retry", p.Retry, tt.retry}, {"skip", p.Skip, tt.skip}, {"stop", p.Stop, tt.stop}, {"cancel waiting", p.CancelWaiting, tt.cancelWait}} {
				if !slices.Equal(c.got, c.want) {
					t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
				}
			}
			if p.State != tt.state {
				t.Errorf("state = %s, want %s", p.State, tt.state)
			}
		})
	}
}

// TestPlanRun_IsDeterministic: two actors given one state decide the same.
func TestPlanRun_IsDeterministic(t *testing.T) {
	in := Input{Spec: diamond(3), Steps: states("a", structs.StepSucceeded), Slots: -1}
	first := PlanRun(in)
	for range 100 {
		if p := PlanRun(in); !slices.Equal(p.Start, first.Start) || p.State != first.State {
			t.Fatalf("plan %+v, then %+v", first, p)
		}
	}
}

// TestPlanRun_RetryBackoff: a failed step waits out its backoff before its
// retry, and the plan says when to look again.
func TestPlanRun_RetryBackoff(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := states("a", structs.StepFailed)
	steps["a"].FinishedAt = t0
	in := Input{Spec: diamond(4), Steps: steps, Slots: -1}
	in.Now = t0.Add(500 * time.Millisecond)
	p := PlanRun(in)
	if len(p.Retry) != 0 || !p.Wake.Equal(t0.Add(time.Second)) || p.State != structs.PipelineRunning {
		t.Fatalf("before the backoff: %+v; want no retry, a wake at 1s, the run still running", p)
	}
	in.Now = t0.Add(time.Second)
	if p := PlanRun(in); len(p.Retry) != 1 {
		t.Fatalf("after the backoff: %+v; want a retry", p)
	}
	for attempts, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 10: time.Minute} {
		if got := RetryBackoff(attempts); got != want {
			t.Errorf("RetryBackoff(%d) = %v, want %v", attempts, got, want)
		}
	}
}
