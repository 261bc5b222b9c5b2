package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kilnml/kiln/actors/monitor"
	"github.com/kilnml/kiln/actors/serving"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// monitoringLeader is the leader's monitoring state for one term: the
// checks and actions under way, and the serving stats it has read, from
// which windows of latency and errors are taken.
type monitoringLeader struct {
	a *Agent

	mu       sync.Mutex
	checking map[string]bool // deployments with a drift check under way
	acting   map[string]bool // "rule/fired/index" of actions under way
	wg       sync.WaitGroup

	// stats holds each deployment's cluster-wide serving stats, read once
	// per evaluation, oldest first, for as long as the longest window.
	stats map[string][]statsReading
}

type statsReading struct {
	at    time.Time
	stats []serving.VersionStats
}

// maxStatsAge is how far back stats readings are kept: the longest window
// a rule may use to see latency and errors.
const maxStatsAge = time.Hour

// monitoringLoop runs drift checks when they are due, evaluates alert rules
// and runs the actions of firing alerts, every monitoring.alert_interval,
// for as long as this node leads.
func (a *Agent) monitoringLeaderLoop(ctx context.Context) {
	l := &monitoringLeader{a: a, checking: map[string]bool{}, acting: map[string]bool{}, stats: map[string][]statsReading{}}
	defer l.wg.Wait()
	tick := time.NewTicker(a.cfg.Monitoring.AlertInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		l.startChecks(ctx, now)
		l.evaluate(ctx, now)
		l.startActions(ctx, now)
	}
}

// startChecks starts the drift checks that are due, one per deployment at
// a time, each recorded when it ends.
func (l *monitoringLeader) startChecks(ctx context.Context, now time.Time) {
	txn := l.a.fsm.ReadTxn()
	mons, err := txn.Monitors()
	txn.Discard()
	if err != nil {
		return
	}
	for _, m := range mons {
		if !monitor.Due(m, now) {
			continue
		}
		l.mu.Lock()
		busy := l.checking[m.Spec.Deployment]
		l.checking[m.Spec.Deployment] = true
		l.mu.Unlock()
		if busy {
			continue
		}
		l.wg.Add(1)
		go func(m *structs.Monitor) {
			defer l.wg.Done()
			defer func() {
				l.mu.Lock()
				delete(l.checking, m.Spec.Deployment)
				l.mu.Unlock()
			}()
			c, err := l.a.driftCheck(ctx, m, now)
			if err != nil {
				l.a.logger.Warn("drift check failed", "deployment", m.Spec.Deployment, "error", err)
				c = &structs.DriftCheck{Deployment: m.Spec.Deployment, CheckedAt: now.UTC(), Reference: m.Reference, Skipped: "the check failed: " + err.Error()}
			}
			if _, err := l.a.propose(ctx, structs.DriftCheckPutType, &structs.DriftCheckPutRequest{Check: *c}, nil); err != nil && ctx.Err() == nil {
				l.a.logger.Warn("recording a drift check failed", "deployment", m.Spec.Deployment, "error", err)
			}
		}(m)
	}
}

// evaluate runs every rule's condition and proposes the alerts' moves.
func (l *monitoringLeader) evaluate(ctx context.Context, now time.Time) {
	txn := l.a.fsm.ReadTxn()
	rules, err := txn.AlertRules()
	if err != nil {
		txn.Discard()
		return
	}
	type evalCtx struct {
		rule  *structs.AlertRule
		alert *structs.Alert
		cond  *monitor.Condition
	}
	var work []evalCtx
	deployments := map[string]bool{}
	for _, r := range rules {
		al, err := txn.Alert(r.Spec.Name)
		if err != nil {
			continue
		}
		if _, err := txn.Deployment(r.Spec.Deployment); err != nil {
			continue // deleted: nothing to watch until it is deployed again
		}
		cond, err := monitor.Compile(r.Spec.Condition, monitorFeatures(txn, r.Spec.Deployment))
		if err != nil {
			// The monitor changed under the rule: it stays as it is.
			l.a.logger.Warn("alert rule no longer compiles", "rule", r.Spec.Name, "error", err)
			continue
		}
		work = append(work, evalCtx{r, al, cond})
		deployments[r.Spec.Deployment] = true
	}
	txn.Discard()
	for d := range deployments {
		l.readStats(ctx, d, now)
	}
	perf := map[string]*performanceReport{}
	for _, w := range work {
		env := l.env(ctx, w.rule, now, w.cond.UsesPerformance, perf)
		holds, value, err := w.cond.Eval(env)
		if err != nil {
			l.a.logger.Warn("alert condition failed", "rule", w.rule.Spec.Name, "error", err)
			continue
		}
		next := monitor.Step(w.alert.State, w.alert.Since, holds, now, w.rule.Spec.ForSpan())
		if next == w.alert.State {
			continue
		}
		req := &structs.AlertStateRequest{Rule: w.rule.Spec.Name, From: w.alert.State, To: next, Value: value, At: now.UTC()}
		if _, err := l.a.propose(ctx, structs.AlertStateType, req, nil); err != nil && ctx.Err() == nil {
			l.a.logger.Warn("moving an alert failed", "rule", w.rule.Spec.Name, "to", next, "error", err)
			continue
		}
		l.a.logger.Info("alert moved", "rule", w.rule.Spec.Name, "deployment", w.rule.Spec.Deployment, "from", w.alert.State, "to", next, "value", value)
	}
}

// readStats records a deployment's cluster-wide serving stats now, and
// forgets readings older than maxStatsAge.
func (l *monitoringLeader) readStats(ctx context.Context, deployment string, now time.Time) {
	stats, _ := l.a.clusterStats(ctx, deployment, false)
	rs := append(l.stats[deployment], statsReading{at: now, stats: stats})
	for len(rs) > 1 && now.Sub(rs[0].at) > maxStatsAge {
		rs = rs[1:]
	}
	l.stats[deployment] = rs
}

// window is the stats of the last span: the latest reading less the
// oldest one within span.
func (l *monitoringLeader) window(deployment string, span time.Duration, now time.Time) []serving.VersionStats {
	rs := l.stats[deployment]
	if len(rs) == 0 {
		return nil
	}
	base := rs[0]
	for _, r := range rs {
		if now.Sub(r.at) <= span {
			base = r
			break
		}
	}
	if len(rs) == 1 {
		return serving.SubtractStats(rs[0].stats, nil)
	}
	return serving.SubtractStats(rs[len(rs)-1].stats, base.stats)
}

// env builds what a rule's condition sees.
func (l *monitoringLeader) env(ctx context.Context, r *structs.AlertRule, now time.Time, withPerf bool, cache map[string]*performanceReport) monitor.Env {
	d := r.Spec.Deployment
	env := monitor.Env{Drift: monitor.Drift{AgeSeconds: math.MaxFloat64, Features: map[string]monitor.Feature{}}}
	txn := l.a.fsm.ReadTxn()
	check, _ := txn.LatestDriftCheck(d)
	dep, _ := txn.Deployment(d)
	txn.Discard()
	if check != nil && check.Skipped == "" {
		env.Drift.ShareDrifted, env.Drift.Samples = check.ShareDrifted, check.Samples
		env.Drift.AgeSeconds = now.Sub(check.CheckedAt).Seconds()
		for _, f := range check.Features {
			env.Drift.Features[f.Name] = featureEnv(&f)
			if f.Drift {
				env.Drift.Drifted++
			}
		}
		if check.Prediction != nil {
			env.Drift.Prediction = featureEnv(check.Prediction)
		}
	}
	win := l.window(d, r.Spec.WindowSpan(), now)
	all := serving.SumStats(win)
	env.Requests = float64(all.Requests)
	env.Errors = errorsEnv(all.Requests, all.Errors)
	env.Latency = monitor.Latency{P50MS: all.P50MS, P95MS: all.P95MS, P99MS: all.P99MS}
	if dep != nil && len(dep.Traffic.Versions) > 1 {
		canary := dep.Traffic.Versions[0]
		for _, v := range dep.Traffic.Versions {
			if v.Version > canary.Version {
				canary = v
			}
		}
		env.Canary = monitor.Canary{Version: int(canary.Version), Weight: canary.Weight}
		for _, s := range win {
			if s.Version == canary.Version {
				env.Canary.Requests = float64(s.Requests)
				env.Canary.Errors = errorsEnv(s.Requests, s.Errors)
				env.Canary.Latency = monitor.Latency{P50MS: s.P50MS, P95MS: s.P95MS, P99MS: s.P99MS}
			}
		}
	}
	if withPerf {
		key := d + "/" + r.Spec.Window
		p, ok := cache[key]
		if !ok {
			p = l.a.performance(ctx, d, r.Spec.WindowSpan(), 0)
			cache[key] = p
		}
		if p.All != nil {
			env.Performance = perfEnv(p.All)
		}
	}
	return env
}

func featureEnv(f *structs.FeatureDrift) monitor.Feature {
	out := monitor.Feature{Statistic: f.Statistic, Drift: f.Drift, PValue: math.NaN()}
	if f.PValue != nil {
		out.PValue = *f.PValue
	}
	return out
}

func errorsEnv(requests, errors uint64) monitor.Errors {
	e := monitor.Errors{Count: float64(errors)}
	if requests > 0 {
		e.Rate = float64(errors) / float64(requests)
	}
	return e
}

func perfEnv(p *VersionPerformance) monitor.Performance {
	get := func(v *float64) float64 {
		if v == nil {
			return 0
		}
		return *v
	}
	return monitor.Performance{Labeled: float64(p.Labeled), Accuracy: get(p.Accuracy), F1: get(p.F1), AUC: get(p.AUC),
		LogLoss: get(p.LogLoss), RMSE: get(p.RMSE), MAE: get(p.MAE)}
}

// startActions starts the actions of firing alerts that are pending, or
// retrying and due, each once at a time.
func (l *monitoringLeader) startActions(ctx context.Context, now time.Time) {
	txn := l.a.fsm.ReadTxn()
	alerts, err := txn.Alerts()
	if err != nil {
		txn.Discard()
		return
	}
	for _, al := range alerts {
		if al.State != structs.AlertFiring && al.State != structs.AlertResolved {
			continue
		}
		rule, err := txn.AlertRule(al.Rule)
		if err != nil || len(rule.Spec.Actions) != len(al.Actions) {
			continue
		}
		for i, st := range al.Actions {
			due := st.Status == structs.ActionPending ||
				(st.Status == structs.ActionRetrying && now.Sub(st.At) >= monitor.Backoff(st.Attempts))
			if !due {
				continue
			}
			key := fmt.Sprintf("%s/%d/%d", al.Rule, al.Fired, i)
			l.mu.Lock()
			busy := l.acting[key]
			l.acting[key] = true
			l.mu.Unlock()
			if busy {
				continue
			}
			l.wg.Add(1)
			go func(al structs.Alert, act structs.AlertAction, st structs.ActionStatus, i int) {
				defer l.wg.Done()
				defer func() {
					l.mu.Lock()
					delete(l.acting, key)
					l.mu.Unlock()
				}()
				l.act(ctx, rule, &al, act, st, i)
			}(*al, rule.Spec.Actions[i], st, i)
		}
	}
	txn.Discard()
}

// act runs one action and records how it went: done, retrying with
// backoff, or failed after monitor.MaxAttempts (or at once, when retrying
// cannot help).
func (l *monitoringLeader) act(ctx context.Context, rule *structs.AlertRule, al *structs.Alert, act structs.AlertAction, st structs.ActionStatus, i int) {
	result, err, retry := l.run(ctx, rule, al, act)
	st.Attempts++
	st.At = time.Now().UTC()
	st.Result = result
	switch {
	case err == nil:
		st.Status, st.Error = structs.ActionDone, ""
	case retry && st.Attempts < monitor.MaxAttempts:
		st.Status, st.Error = structs.ActionRetrying, err.Error()
	default:
		st.Status, st.Error = structs.ActionFailed, err.Error()
	}
	if ctx.Err() != nil {
		return // a new leader runs it again
	}
	req := &structs.AlertActionRequest{Rule: al.Rule, Fired: al.Fired, Index: i, Status: st}
	if _, perr := l.a.propose(ctx, structs.AlertActionType, req, nil); perr != nil && ctx.Err() == nil {
		l.a.logger.Warn("recording an alert action failed", "rule", al.Rule, "action", act.Kind, "error", perr)
	}
	if err != nil {
		l.a.logger.Warn("alert action failed", "rule", al.Rule, "action", act.Kind, "attempt", st.Attempts, "error", err)
	} else {
		l.a.logger.Info("alert action done", "rule", al.Rule, "action", act.Kind, "result", result)
	}
}

// run does one action. retry says whether trying again may help.
func (l *monitoringLeader) run(ctx context.Context, rule *structs.AlertRule, al *structs.Alert, act structs.AlertAction) (result string, err error, retry bool) {
	if err := l.a.authorizeRule(rule, act); err != nil {
		return "", err, false
	}
	switch act.Kind {
	case structs.ActionWebhook:
		return "", l.webhook(ctx, rule, al, act.URL), true
	case structs.ActionRollback:
		var d structs.Deployment
		_, err := l.a.propose(ctx, structs.DeploymentRollbackType, &structs.DeploymentRollbackRequest{Name: rule.Spec.Deployment, UpdatedAt: time.Now().UTC()}, &d)
		if err != nil {
			return "", err, structs.ErrorCode(err) == structs.CodeUnavailable || structs.ErrorCode(err) == structs.CodeNoLeader
		}
		return fmt.Sprintf("traffic %v", d.Traffic.Versions), nil, false
	case structs.ActionRunPipeline:
		now := time.Now().UTC()
		var run structs.PipelineRun
		_, err := l.a.propose(ctx, structs.PipelineRunCreateType, &structs.PipelineRunCreateRequest{
			ID: structs.NewID(now), Pipeline: act.Pipeline, Params: act.Params, Trigger: "alert:" + rule.Spec.Name, At: now}, &run)
		if err != nil {
			return "", err, structs.ErrorCode(err) == structs.CodeUnavailable || structs.ErrorCode(err) == structs.CodeNoLeader
		}
		return "run " + run.ID, nil, false
	}
	return "", fmt.Errorf("unknown action %q", act.Kind), false
}

// webhookTimeout bounds one webhook call.
const webhookTimeout = 10 * time.Second

// webhook POSTs the alert as JSON; any 2xx answer is success.
func (l *monitoringLeader) webhook(ctx context.Context, rule *structs.AlertRule, al *structs.Alert, url string) error {
	body, _ := json.Marshal(map[string]any{
		"rule": rule.Spec.Name, "deployment": rule.Spec.Deployment, "condition": rule.Spec.Condition,
		"state": al.State, "value": al.Value, "since": al.Since, "fired_at": al.FiredAt, "fired": al.Fired,
	})
	ctx, cancel := context.WithTimeout(ctx, webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "kiln/"+Version)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

// authorizeRule checks an action against the rights, as they are now, of
// the token that applied the rule; without ACLs every action may run.
func (a *Agent) authorizeRule(rule *structs.AlertRule, act structs.AlertAction) error {
	if a.acl == nil || act.Kind == structs.ActionWebhook {
		return nil
	}
	if rule.AppliedByHash == "" {
		return structs.Errorf(structs.CodePermissionDenied, "alert rule %s was applied without a token; apply it again with one", rule.Spec.Name)
	}
	id, err := a.acl.ResolveHash(rule.AppliedByHash)
	if err != nil {
		return structs.Errorf(structs.CodePermissionDenied, "the token that applied alert rule %s (%s) can no longer act: %v", rule.Spec.Name, rule.AppliedBy, err)
	}
	kind, name := structs.KindDeployment, rule.Spec.Deployment
	if act.Kind == structs.ActionRunPipeline {
		kind, name = structs.KindPipeline, act.Pipeline
	}
	if !id.Allowed(kind, name, structs.AccessWrite) {
		return structs.Errorf(structs.CodePermissionDenied, "the token that applied alert rule %s (%s) may not write %s %q", rule.Spec.Name, rule.AppliedBy, kind, name)
	}
	return nil
}

// alertCollector exports every alert's state from this node's registry, so
// that any node's /metrics shows them: kiln_alert_state is 1 for the
// alert's current state, and kiln_alert_value its last value.
type alertCollector struct{ a *Agent }

var (
	alertStateDesc = prometheus.NewDesc("kiln_alert_state", "1 for the state each alert rule's alert is in.", []string{"rule", "deployment", "state"}, nil)
	alertValueDesc = prometheus.NewDesc("kiln_alert_value", "The value of each alert rule's condition when last evaluated.", []string{"rule", "deployment"}, nil)
	alertFiredDesc = prometheus.NewDesc("kiln_alert_fired_total", "How many times each alert rule's alert has fired.", []string{"rule", "deployment"}, nil)
	driftShareDesc = prometheus.NewDesc("kiln_drift_share_drifted", "The share of drifted features in each deployment's latest drift check.", []string{"deployment"}, nil)
)

func (c alertCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- alertStateDesc
	ch <- alertValueDesc
	ch <- alertFiredDesc
	ch <- driftShareDesc
}

func (c alertCollector) Collect(ch chan<- prometheus.Metric) {
	if c.a.fsm == nil {
		return
	}
	txn := c.a.fsm.ReadTxn()
	defer txn.Discard()
	alerts, _ := txn.Alerts()
	for _, al := range alerts {
		for _, s := range []string{structs.AlertInactive, structs.AlertPending, structs.AlertFiring, structs.AlertResolved} {
			v := 0.0
			if al.State == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(alertStateDesc, prometheus.GaugeValue, v, al.Rule, al.Deployment, s)
		}
		ch <- prometheus.MustNewConstMetric(alertValueDesc, prometheus.GaugeValue, al.Value, al.Rule, al.Deployment)
		ch <- prometheus.MustNewConstMetric(alertFiredDesc, prometheus.CounterValue, float64(al.Fired), al.Rule, al.Deployment)
	}
	mons, _ := txn.Monitors()
	for _, m := range mons {
		if c, _ := txn.LatestDriftCheck(m.Spec.Deployment); c != nil && c.Skipped == "" {
			ch <- prometheus.MustNewConstMetric(driftShareDesc, prometheus.GaugeValue, c.ShareDrifted, m.Spec.Deployment)
		}
	}
}
