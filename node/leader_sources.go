package node

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// sourcesLoop runs on the leader (DESIGN.md §8): it places each source's
// ingestion actor on a live node (again when that node dies), fires
// schedules once per tick cluster-wide, and compacts feature values past
// their retention.
func (a *Agent) sourcesLoop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	index := a.fsm.IndexFunc(raftfsm.TableSources, raftfsm.TableNodes)
	full, seen := true, uint64(0)
	var lastCompact time.Time
	for {
		changed := a.fsm.Changed()
		if idx := index(); full || idx != seen {
			seen = idx
			if err := a.sourcesPass(ctx); err != nil && ctx.Err() == nil {
				a.logger.Warn("source placement failed", "error", err)
			}
		}
		if time.Since(lastCompact) >= a.cfg.FeatureStore.CompactInterval {
			lastCompact = time.Now()
			if err := a.compactFeatures(ctx); err != nil && ctx.Err() == nil {
				a.logger.Warn("feature compaction failed", "error", err)
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

// cronParser reads the 5-field cron expressions of schedules, and the
// @hourly kind of descriptor.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// nextTick is when a schedule fires next after its last tick (or the
// source's creation).
func nextTick(sched structs.Schedule, after time.Time) (time.Time, error) {
	if sched.Interval > 0 {
		return after.Add(sched.Interval), nil
	}
	c, err := cronParser.Parse(sched.Cron)
	if err != nil {
		return time.Time{}, err
	}
	return c.Next(after), nil
}

func (a *Agent) sourcesPass(ctx context.Context) error {
	txn := a.fsm.ReadTxn()
	sources, _, err := txn.Sources("", 0)
	if err != nil {
		txn.Discard()
		return err
	}
	nodes, err := txn.Nodes()
	txn.Discard()
	if err != nil {
		return err
	}
	var alive []*structs.Node
	for _, n := range nodes {
		if a.isAlive(n.ID) {
			alive = append(alive, n)
		}
	}
	load := map[string]int{}
	for _, s := range sources {
		if s.Node != "" {
			load[s.Node]++
		}
	}
	now := time.Now().UTC()
	for _, s := range sources {
		if s.Spec.Kind == structs.SourcePush {
			continue
		}
		if s.Node == "" || !a.isAlive(s.Node) {
			if to := placeSource(s, alive, load); to != s.Node {
				req := &structs.SourceAssignRequest{Name: s.Spec.Name, Node: to, Expect: s.Node, At: now}
				if _, err := a.propose(ctx, structs.SourceAssignType, req, nil); err != nil {
					return err
				}
				load[s.Node]--
				load[to]++
				a.logger.Info("source placed", "source", s.Spec.Name, "node", to, "from", s.Node)
			}
		}
		if s.Spec.Kind == structs.SourceDataset && !s.Paused {
			if err := a.triggerOnNewVersion(ctx, s, now); err != nil {
				return err
			}
		}
		if s.Spec.Schedule == "" || s.Paused || structs.StreamingKind(s.Spec.Kind) {
			continue
		}
		sched, err := structs.ParseSchedule(s.Spec.Schedule)
		if err != nil {
			continue // validated at apply; a newer syntax this node lacks
		}
		from := s.LastScheduledAt
		if from.IsZero() {
			from = s.CreatedAt
		}
		due, err := nextTick(sched, from)
		if err != nil || due.After(now) {
			continue
		}
		// Fire the latest tick that is due, once: ticks missed while no
		// leader ran make one run, not a burst.
		for {
			next, err := nextTick(sched, due)
			if err != nil || next.After(now) {
				break
			}
			due = next
		}
		req := &structs.SourceTriggerRequest{Name: s.Spec.Name, Tick: due, At: now}
		if _, err := a.propose(ctx, structs.SourceTriggerType, req, nil); err != nil && structs.ErrorCode(err) != structs.CodeConflict {
			return err
		}
	}
	return nil
}

// triggerOnNewVersion asks for a run of a dataset source when its dataset
// has a version past the source's position and no run is under way or
// asked for.
func (a *Agent) triggerOnNewVersion(ctx context.Context, s *structs.Source, now time.Time) error {
	if s.LastRun != nil && (!s.LastRun.Terminal() || s.LastRun.State == structs.SourceRunFailed) {
		return nil // running, or failed: the actor retries with backoff
	}
	if s.Triggers > 0 && (s.LastRun == nil || s.LastRun.Trigger < s.Triggers) {
		return nil // a run is asked for already
	}
	txn := a.fsm.ReadTxn()
	d, err := txn.Dataset(s.Spec.FromDataset.Name)
	txn.Discard()
	if err != nil {
		return nil // not there (yet, or any more)
	}
	done, _ := strconv.ParseUint(s.Position["version"], 10, 64)
	if d.LatestVersion <= done {
		return nil
	}
	_, err = a.propose(ctx, structs.SourceTriggerType, &structs.SourceTriggerRequest{Name: s.Spec.Name, At: now}, nil)
	return err
}

// placeSource chooses the node for a source's actor: the node a file
// source names (by ID or name), else the live node with the fewest
// sources (then the lowest ID). "" when none fits.
func placeSource(s *structs.Source, alive []*structs.Node, load map[string]int) string {
	var best *structs.Node
	for _, n := range alive {
		if s.Spec.File != nil && s.Spec.File.Node != "" && s.Spec.File.Node != n.ID && s.Spec.File.Node != n.Name {
			continue
		}
		if best == nil || load[n.ID] < load[best.ID] || (load[n.ID] == load[best.ID] && n.ID < best.ID) {
			best = n
		}
	}
	if best == nil {
		return ""
	}
	return best.ID
}

// maxCompactPerCommand bounds the values one compaction command deletes.
const maxCompactPerCommand = 5000

// compactFeatures deletes, for each view with a retention, the values
// older than it (and than the view's TTL and longest window, which reads
// still need), and the values left by deleted views.
func (a *Agent) compactFeatures(ctx context.Context) error {
	txn := a.fsm.ReadTxn()
	views, _, err := txn.FeatureViews("", 0)
	if err != nil {
		txn.Discard()
		return err
	}
	orphans, err := txn.OrphanFeatureValues()
	txn.Discard()
	if err != nil {
		return err
	}
	now := time.Now()
	type job struct {
		view   string
		before int64
	}
	var jobs []job
	for _, v := range views {
		keep := v.RetainDuration()
		if keep == 0 {
			continue
		}
		keep = max(keep, v.TTLDuration())
		for _, f := range v.Features {
			keep = max(keep, f.WindowDuration())
		}
		jobs = append(jobs, job{v.Name, now.Add(-keep).UnixNano()})
	}
	for _, o := range orphans {
		if !slices.ContainsFunc(views, func(v *structs.FeatureView) bool { return v.Name == o }) {
			jobs = append(jobs, job{o, 0})
		}
	}
	for _, j := range jobs {
		for ctx.Err() == nil {
			var res structs.FeatureCompactResult
			req := &structs.FeatureCompactRequest{View: j.view, Before: j.before, Limit: maxCompactPerCommand}
			if _, err := a.propose(ctx, structs.FeatureCompactType, req, &res); err != nil {
				return err
			}
			if !res.More {
				break
			}
		}
	}
	return nil
}
