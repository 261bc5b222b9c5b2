package training

import (
	"fmt"
	"strings"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

func TestTrialParams(t *testing.T) {
	grid := &structs.TuningSpec{Search: structs.SearchGrid, Space: map[string]structs.ParamRange{
		"depth": {Kind: structs.RangeValues, Values: []any{4.0, 6.0}},
		"lr":    {Kind: structs.RangeValues, Values: []any{0.1, 0.3, 1.0}},
	}}
	seen := map[string]bool{}
	for i := range 6 {
		p := TrialParams(grid, i)
		seen[fmt.Sprint(p["depth"], p["lr"])] = true
	}
	if len(seen) != 6 || grid.GridSize() != 6 {
		t.Fatalf("grid points %v (size %d), want the 6 distinct pairs", seen, grid.GridSize())
	}
	if p := TrialParams(grid, 1); p["depth"] != 4.0 || p["lr"] != 0.3 {
		t.Fatalf("trial 1 = %v, want depth 4, lr 0.3 (the last axis fastest)", p)
	}
	random := &structs.TuningSpec{Search: structs.SearchRandom, Seed: 7, Space: map[string]structs.ParamRange{
		"lr":    {Kind: structs.RangeLogUniform, Min: 1e-4, Max: 1},
		"n":     {Kind: structs.RangeInt, Min: 10, Max: 20},
		"drop":  {Kind: structs.RangeUniform, Min: 0, Max: 0.5},
		"model": {Kind: structs.RangeChoice, Values: []any{"a", "b"}},
	}}
	for i := range 200 {
		p := TrialParams(random, i)
		lr, n, drop := p["lr"].(float64), p["n"].(float64), p["drop"].(float64)
		if lr < 1e-4 || lr > 1 || n < 10 || n > 20 || n != float64(int(n)) || drop < 0 || drop > 0.5 || (p["model"] != "a" && p["model"] != "b") {
			t.Fatalf("trial %d params %v out of their ranges", i, p)
		}
		if again := TrialParams(random, i); fmt.Sprint(again) != fmt.Sprint(p) {
			t.Fatalf("trial %d drew %v, then %v", i, p, again)
		}
	}
}

// tuningCase is a tuning with trials whose jobs are in the given states,
// with step losses.
func tuningCase(es *structs.EarlyStopping, states []string, losses [][]float64) TuningInput {
	tu := &structs.Tuning{ID: "t", BestTrial: -1, Spec: structs.TuningSpec{Search: structs.SearchGrid, MaxTrials: 6, Parallelism: 2,
		Metric: "loss", Goal: structs.GoalMinimize, EarlyStopping: es,
		Space: map[string]structs.ParamRange{"x": {Kind: structs.RangeValues, Values: []any{1.0, 2.0, 3.0, 4.0, 5.0, 6.0}}}}}
	tu.Spec.Normalize()
	in := TuningInput{Tuning: tu, Jobs: map[string]*structs.Job{}, Runs: map[string]*structs.Run{}}
	hist := map[string][]structs.MetricPoint{}
	for i, st := range states {
		id := fmt.Sprint("job", i)
		tu.Trials = append(tu.Trials, structs.Trial{Index: i, JobID: id})
		j := &structs.Job{ID: id, RunID: id, State: st}
		if st == structs.JobSucceeded {
			j.Metrics = map[string]float64{"loss": losses[i][len(losses[i])-1]}
		}
		in.Jobs[id] = j
		for s, v := range losses[i] {
			hist[id] = append(hist[id], structs.MetricPoint{Key: "loss", Step: int64(s + 1), Value: v})
		}
	}
	in.History = func(run, key string) []structs.MetricPoint { return hist[run] }
	return in
}

func TestDecideTuning(t *testing.T) {
	// Nothing started: two trials (the parallelism) start.
	d := DecideTuning(tuningCase(nil, nil, nil))
	if len(d.Start) != 2 || d.Start[0]["x"] != 1.0 || d.Start[1]["x"] != 2.0 || d.Done {
		t.Fatalf("first decision %+v", d)
	}
	// One running, one done: one more starts; the done one is the best so far.
	d = DecideTuning(tuningCase(nil, []string{structs.JobSucceeded, structs.JobRunning}, [][]float64{{0.5, 0.2}, {1, 0.9}}))
	if len(d.Start) != 1 || d.Start[0]["x"] != 3.0 || d.BestTrial != 0 || d.BestValue != 0.2 {
		t.Fatalf("second decision %+v", d)
	}
	// All six ended: done, the lowest loss the best.
	all := []string{structs.JobSucceeded, structs.JobSucceeded, structs.JobFailed, structs.JobSucceeded, structs.JobCancelled, structs.JobSucceeded}
	d = DecideTuning(tuningCase(nil, all, [][]float64{{0.5}, {0.3}, {0.1}, {0.4}, {0.05}, {0.6}}))
	if !d.Done || d.State != structs.TuningSucceeded || d.BestTrial != 1 {
		t.Fatalf("final decision %+v, want done with trial 1 (failed and cancelled ones do not count)", d)
	}
	// None with the metric: failed.
	d = DecideTuning(tuningCase(nil, []string{structs.JobFailed, structs.JobFailed, structs.JobFailed, structs.JobFailed, structs.JobFailed, structs.JobFailed}, make([][]float64, 6)))
	if !d.Done || d.State != structs.TuningFailed {
		t.Fatalf("decision with no result %+v", d)
	}
}

func TestDecideTuning_EarlyStopping(t *testing.T) {
	median := &structs.EarlyStopping{Kind: structs.StopMedian, MinTrials: 2}
	in := tuningCase(median, []string{structs.JobSucceeded, structs.JobSucceeded, structs.JobRunning, structs.JobRunning},
		[][]float64{{0.5, 0.3}, {0.7, 0.4}, {0.9, 0.8}, {0.4}})
	d := DecideTuning(in)
	if !strings.Contains(d.Stop[2], "median") || len(d.Stop) != 1 {
		t.Fatalf("median stops %v, want trial 2 only (worse than the median at step 2; trial 3 is better)", d.Stop)
	}
	asha := &structs.EarlyStopping{Kind: structs.StopASHA, MinResource: 1, Reduction: 2}
	in = tuningCase(asha, []string{structs.JobRunning, structs.JobRunning, structs.JobSucceeded},
		[][]float64{{0.9, 0.8}, {0.2, 0.1}, {0.3, 0.2}})
	d = DecideTuning(in)
	if !strings.Contains(d.Stop[0], "asha") || len(d.Stop) != 1 {
		t.Fatalf("asha stops %v, want trial 0 only (not in the best half at step 1)", d.Stop)
	}
}
