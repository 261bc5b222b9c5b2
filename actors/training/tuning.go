package training

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// TuningInput is what the leader knows of one tuning.
type TuningInput struct {
	Tuning *structs.Tuning
	// Jobs are the trials' jobs and Runs their runs, by ID (absent while
	// the leader's view lags).
	Jobs map[string]*structs.Job
	Runs map[string]*structs.Run
	// History returns a run's points of one metric, in the order logged.
	History func(run, key string) []structs.MetricPoint
}

// TuningDecision is one pass of a tuning: trials to start (their params;
// the leader makes the job IDs), trials to stop early, and the end.
type TuningDecision struct {
	Start []map[string]any
	Stop  map[int]string
	// Done: every trial ran; State is succeeded with the best trial, or
	// failed when none finished with the metric.
	Done      bool
	State     string
	Reason    string
	BestTrial int
	BestValue float64
}

// TrialParams are the params of trial i: the i-th point of the grid (axes
// in name order, the last varying fastest), or a random draw seeded by the
// spec's seed and i.
func TrialParams(spec *structs.TuningSpec, i int) map[string]any {
	keys := slices.Sorted(maps.Keys(spec.Space))
	out := make(map[string]any, len(keys))
	if spec.Search == structs.SearchGrid {
		for j := len(keys) - 1; j >= 0; j-- {
			vals := spec.Space[keys[j]].Values
			out[keys[j]] = vals[i%len(vals)]
			i /= len(vals)
		}
		return out
	}
	for j, k := range keys {
		r := spec.Space[k]
		u := unit(spec.Seed, uint64(i), uint64(j))
		switch r.Kind {
		case structs.RangeValues, structs.RangeChoice:
			out[k] = r.Values[min(int(u*float64(len(r.Values))), len(r.Values)-1)]
		case structs.RangeUniform:
			out[k] = r.Min + u*(r.Max-r.Min)
		case structs.RangeLogUniform:
			out[k] = math.Exp(math.Log(r.Min) + u*(math.Log(r.Max)-math.Log(r.Min)))
		case structs.RangeInt:
			lo, hi := math.Ceil(r.Min), math.Floor(r.Max)
			out[k] = min(lo+math.Floor(u*(hi-lo+1)), hi)
		}
	}
	return out
}

// unit is a deterministic number in [0, 1) from a seed and two indexes
// (splitmix64 of their mix).
func unit(seed, i, j uint64) float64 {
	x := seed ^ (i+1)*0x9e3779b97f4a7c15 ^ (j+1)*0xbf58476d1ce4e5b9
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

// better reports whether a beats b under goal.
func better(goal string, a, b float64) bool {
	if goal == structs.GoalMinimize {
		return a < b
	}
	return a > b
}

// DecideTuning computes one pass of a tuning. It is a pure function of the
// registry, so a new leader decides what the old one would have.
func DecideTuning(in TuningInput) TuningDecision {
	tu := in.Tuning
	spec := &tu.Spec
	d := TuningDecision{Stop: map[int]string{}, BestTrial: -1}
	running := 0
	for _, tr := range tu.Trials {
		j := in.Jobs[tr.JobID]
		if j == nil || !j.Terminal() {
			running++
		}
	}
	// Best so far, among finished trials with the metric.
	for _, tr := range tu.Trials {
		v, ok := finalValue(in, tr, spec.Metric)
		if ok && (d.BestTrial < 0 || better(spec.Goal, v, d.BestValue)) {
			d.BestTrial, d.BestValue = tr.Index, v
		}
	}
	if es := spec.EarlyStopping; es != nil {
		for _, tr := range tu.Trials {
			j := in.Jobs[tr.JobID]
			if tr.StoppedEarly || j == nil || j.State != structs.JobRunning {
				continue
			}
			if reason := stopReason(in, tr, es); reason != "" {
				d.Stop[tr.Index] = reason
			}
		}
	}
	limit := spec.MaxTrials
	if spec.Search == structs.SearchGrid {
		limit = min(limit, spec.GridSize())
	}
	for n := len(tu.Trials); n < limit && running < spec.Parallelism; n++ {
		d.Start = append(d.Start, TrialParams(spec, n))
		running++
	}
	if len(tu.Trials) >= limit && running == 0 {
		d.Done = true
		if d.BestTrial >= 0 {
			d.State = structs.TuningSucceeded
		} else {
			d.State, d.Reason = structs.TuningFailed, fmt.Sprintf("no trial finished with metric %q", spec.Metric)
		}
	}
	return d
}

// finalValue is a finished trial's value of the tuning's metric: its run's
// latest point of it.
func finalValue(in TuningInput, tr structs.Trial, metric string) (float64, bool) {
	j := in.Jobs[tr.JobID]
	if j == nil || j.State != structs.JobSucceeded || tr.StoppedEarly {
		return 0, false
	}
	if v, ok := j.Metrics[metric]; ok {
		return v, true
	}
	if r := in.Runs[j.RunID]; r != nil {
		if m, ok := r.Metrics[metric]; ok {
			return m.Value, true
		}
	}
	return 0, false
}

// stepValues returns a trial's intermediate values by step (the last point
// logged at each step), and its last step.
func stepValues(in TuningInput, tr structs.Trial, metric string) (map[int64]float64, int64) {
	j := in.Jobs[tr.JobID]
	if j == nil || in.History == nil {
		return nil, 0
	}
	out := map[int64]float64{}
	last := int64(-1)
	for _, p := range in.History(j.RunID, metric) {
		out[p.Step] = p.Value
		last = max(last, p.Step)
	}
	return out, last
}

// stepValueAt is the value at the last step at or before s.
func stepValueAt(vals map[int64]float64, s int64) (float64, bool) {
	best, found := int64(-1), false
	for step := range vals {
		if step <= s && step > best {
			best, found = step, true
		}
	}
	return vals[best], found
}

// stopReason says why early stopping stops a running trial, "" to go on.
func stopReason(in TuningInput, tr structs.Trial, es *structs.EarlyStopping) string {
	mine, last := stepValues(in, tr, es.Metric)
	if last < 0 {
		return ""
	}
	switch es.Kind {
	case structs.StopMedian:
		if last < int64(es.MinSteps) {
			return ""
		}
		v, _ := stepValueAt(mine, last)
		var others []float64
		for _, o := range in.Tuning.Trials {
			if j := in.Jobs[o.JobID]; o.Index == tr.Index || j == nil || j.State != structs.JobSucceeded || o.StoppedEarly {
				continue
			}
			vals, _ := stepValues(in, o, es.Metric)
			if ov, ok := stepValueAt(vals, last); ok {
				others = append(others, ov)
			}
		}
		if len(others) < es.MinTrials {
			return ""
		}
		sort.Float64s(others)
		med := others[len(others)/2]
		if len(others)%2 == 0 {
			med = (others[len(others)/2-1] + others[len(others)/2]) / 2
		}
		if better(es.Goal, med, v) {
			return fmt.Sprintf("median: %s %.6g at step %d is worse than the median %.6g of %d finished trials", es.Metric, v, last, med, len(others))
		}
	case structs.StopASHA:
		for rung := int64(es.MinResource); rung <= last; rung *= int64(es.Reduction) {
			v, ok := stepValueAt(mine, rung)
			if !ok {
				continue
			}
			var at []float64
			for _, o := range in.Tuning.Trials {
				vals, olast := stepValues(in, o, es.Metric)
				if olast < rung {
					continue
				}
				if ov, ok := stepValueAt(vals, rung); ok {
					at = append(at, ov)
				}
			}
			keep := len(at) / es.Reduction
			if keep < 1 {
				continue // too few trials at this rung to judge yet
			}
			slices.SortFunc(at, func(a, b float64) int {
				switch {
				case better(es.Goal, a, b):
					return -1
				case better(es.Goal, b, a):
					return 1
				}
				return 0
			})
			if better(es.Goal, at[keep-1], v) {
				return fmt.Sprintf("asha: %s %.6g at step %d is not in the best %d of the %d trials that reached it", es.Metric, v, rung, keep, len(at))
			}
		}
	}
	return ""
}
