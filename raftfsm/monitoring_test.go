package raftfsm

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// monitoredFSM applies entries at increasing Raft indexes, as a log would.
type monitoredFSM struct {
	*FSM
	next uint64
}

// apply applies data from the next index on and returns the results.
func (m *monitoredFSM) apply(t testing.TB, data ...[]byte) []interface{} {
	t.Helper()
	res := m.ApplyBatch(commandLogs(m.next, data...))
	m.next += uint64(len(data))
	return res
}

// mustApply applies data; every entry must succeed.
func (m *monitoredFSM) mustApply(t testing.TB, data ...[]byte) []interface{} {
	t.Helper()
	first := m.next
	m.next += uint64(len(data))
	return mustApply(t, m.FSM, first, data...)
}

// monitoringFSM holds what monitors and alert rules refer to: deployments
// iris (model iris, versions 1 to 3) and wine, dataset version flowers:1
// (columns Sepal_Length and Species) and pipeline nightly.
func monitoringFSM(t testing.TB, opts ...fsmOption) *monitoredFSM {
	t.Helper()
	m := &monitoredFSM{FSM: testFSM(t, opts...), next: 1}
	m.mustApply(t, irisSetup(t,
		putDeployment(t, "iris", trafficOf(split(1, 100))),
		createModel(t, "wine", nil),
		encodeVersion(t, processVersion("wine")),
		putDeployment(t, "wine", trafficOf(split(1, 100))),
		createDatasetVersion(t, irisDataset("flowers")),
		putPipeline(t, twoSteps()),
	)...)
	return m
}

// monitorOf is deployment's monitor of reference's columns, created at t0.
func monitorOf(deployment, reference string, columns ...string) structs.Monitor {
	spec := structs.MonitorSpec{Deployment: deployment, ReferenceDataset: reference, FeatureColumns: columns}
	spec.Defaults()
	return structs.Monitor{Spec: spec, Reference: reference, Columns: columns, CreatedAt: t0}
}

func putMonitor(t testing.TB, m structs.Monitor) []byte {
	return encode(t, structs.MonitorPutType, &structs.MonitorPutRequest{Monitor: m})
}

func deleteMonitor(t testing.TB, deployment string) []byte {
	return encode(t, structs.MonitorDeleteType, &structs.NameRequest{Name: deployment})
}

// driftCheckAt is a check of deployment at at; samples tells checks apart.
func driftCheckAt(deployment string, at time.Time, samples int) structs.DriftCheck {
	p := 0.01
	return structs.DriftCheck{
		Deployment: deployment, CheckedAt: at, From: at.Add(-time.Hour), To: at, Reference: "flowers:1",
		Samples: samples, ShareDrifted: 0.5, DurationMS: 12,
		Features: []structs.FeatureDrift{
			{Name: "Sepal_Length", Test: "ks", Statistic: 0.4, PValue: &p, Threshold: 0.05, Drift: true, Reference: 150, Current: samples},
			{Name: "Species", Test: "chi2", Error: "no values in the window"},
		},
	}
}

func putDriftCheck(t testing.TB, c structs.DriftCheck) []byte {
	return encode(t, structs.DriftCheckPutType, &structs.DriftCheckPutRequest{Check: c})
}

// ruleOf is a rule on deployment with actions, created at t0.
func ruleOf(name, deployment string, actions ...structs.AlertAction) structs.AlertRule {
	spec := structs.AlertRuleSpec{Name: name, Deployment: deployment, Condition: "drift.share_drifted > 0.25", Actions: actions}
	spec.Defaults()
	return structs.AlertRule{Spec: spec, AppliedBy: "acc-1", CreatedAt: t0}
}

func putAlertRule(t testing.TB, r structs.AlertRule) []byte {
	return encode(t, structs.AlertRulePutType, &structs.AlertRulePutRequest{Rule: r})
}

func deleteAlertRule(t testing.TB, name string) []byte {
	return encode(t, structs.AlertRuleDeleteType, &structs.NameRequest{Name: name})
}

func moveAlert(t testing.TB, rule, from, to string, value float64, at time.Time) []byte {
	return encode(t, structs.AlertStateType, &structs.AlertStateRequest{Rule: rule, From: from, To: to, Value: value, At: at})
}

func alertActionStatus(t testing.TB, rule string, fired, index int, st structs.ActionStatus) []byte {
	return encode(t, structs.AlertActionType, &structs.AlertActionRequest{Rule: rule, Fired: fired, Index: index, Status: st})
}

func ackAlert(t testing.TB, rule, by string, at time.Time) []byte {
	return encode(t, structs.AlertAckType, &structs.AlertAckRequest{Rule: rule, By: by, At: at})
}

var (
	webhook     = structs.AlertAction{Kind: structs.ActionWebhook, URL: "https://hooks.example.com/kiln"}
	retrain     = structs.AlertAction{Kind: structs.ActionRunPipeline, Pipeline: "nightly", Params: map[string]any{"reason": "drift"}}
	rollbackAct = structs.AlertAction{Kind: structs.ActionRollback}
)

// assertCodes checks each result's error code ("" for success).
func assertCodes(t *testing.T, res []interface{}, want ...string) {
	t.Helper()
	if len(res) != len(want) {
		t.Fatalf("%d results, want %d", len(res), len(want))
	}
	for i, code := range want {
		if got := codeOf(res[i]); got != code {
			t.Errorf("command %d: code %q, want %q (%v)", i, got, code, res[i])
		}
	}
}

// errorText is res's error message, or "".
func errorText(res interface{}) string {
	if err, ok := res.(error); ok {
		return err.Error()
	}
	return ""
}

func readTxn(t *testing.T, f *monitoredFSM) *Txn {
	t.Helper()
	txn := f.ReadTxn()
	t.Cleanup(txn.Discard)
	return txn
}

func TestFSM_MonitorPut(t *testing.T) {
	f := monitoringFSM(t)
	replaced := monitorOf("iris", "flowers:1", "Sepal_Length", "Species")
	replaced.Spec.Schedule = "5m"
	replaced.CreatedAt = t0.Add(3 * time.Hour) // the second put's clock; the first's stays
	res := f.apply(t,
		putMonitor(t, monitorOf("nope", "flowers:1", "Sepal_Length")),
		putMonitor(t, monitorOf("iris", "nope:1", "Sepal_Length")),
		putMonitor(t, monitorOf("iris", "flowers:2", "Sepal_Length")),
		putMonitor(t, monitorOf("iris", "flowers", "Sepal_Length")),
		putMonitor(t, monitorOf("iris", "flowers:1", "Sepal_Length", "Petal_Width")),
		putMonitor(t, monitorOf("iris", "flowers:1")),
		putMonitor(t, monitorOf("iris", "flowers:1", "Sepal_Length")),
		putDriftCheck(t, driftCheckAt("iris", t0.Add(time.Hour), 100)),
		putMonitor(t, replaced),
	)
	assertCodes(t, res,
		structs.CodeNotFound, // no such deployment
		structs.CodeNotFound, // no such dataset
		structs.CodeNotFound, // no such dataset version
		structs.CodeInvalid,  // a dataset without its version
		structs.CodeInvalid,  // a column the version lacks
		structs.CodeInvalid,  // no column
		"", "", "")
	if msg := errorText(res[4]); !strings.Contains(msg, "feature_columns[1]") || !strings.Contains(msg, "Petal_Width") {
		t.Errorf("error for a missing column = %q, want it to name feature_columns[1] and Petal_Width", msg)
	}
	if m, ok := res[6].(*structs.Monitor); !ok || m.ModifyIndex != f.next-3 || !m.CreatedAt.Equal(t0) || !m.LastCheckAt.IsZero() {
		t.Fatalf("first put = %+v, want created at t0, never checked", res[6])
	}

	m, err := readTxn(t, f).Monitor("iris")
	if err != nil {
		t.Fatalf("Monitor(iris): %v", err)
	}
	if !m.CreatedAt.Equal(t0) || !m.LastCheckAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("after a second put: created %v, last check %v; want both kept (%v, %v)", m.CreatedAt, m.LastCheckAt, t0, t0.Add(time.Hour))
	}
	if m.Spec.Schedule != "5m" || !reflect.DeepEqual(m.Columns, []string{"Sepal_Length", "Species"}) || m.ModifyIndex != f.next-1 {
		t.Errorf("after a second put: %+v, want the new spec and columns at index %d", m, f.next-1)
	}
	if _, err := readTxn(t, f).Monitor("wine"); codeOf(err) != structs.CodeNotFound {
		t.Errorf("Monitor(wine) = %v, want not_found", err)
	}
}

func TestFSM_DriftCheckPut(t *testing.T) {
	f := monitoringFSM(t)
	f.mustApply(t, putMonitor(t, monitorOf("iris", "flowers:1", "Sepal_Length")))
	invalid := driftCheckAt("iris", time.Time{}, 1)
	res := f.apply(t,
		putDriftCheck(t, driftCheckAt("wine", t0, 1)), // wine has no monitor
		putDriftCheck(t, invalid),
		putDriftCheck(t, driftCheckAt("iris", t0.Add(2*time.Minute), 2)),
		putDriftCheck(t, driftCheckAt("iris", t0.Add(1*time.Minute), 1)), // late: kept, but the monitor's time stays
	)
	assertCodes(t, res, structs.CodeNotFound, structs.CodeInvalid, "", "")

	txn := readTxn(t, f)
	m, err := txn.Monitor("iris")
	if err != nil || !m.LastCheckAt.Equal(t0.Add(2*time.Minute)) || m.ModifyIndex != f.next-2 {
		t.Fatalf("monitor = %+v, %v; want last check at t0+2m, modified by that check (index %d)", m, err, f.next-2)
	}
	checks, err := txn.DriftChecks("iris", time.Time{}, 0)
	if err != nil || len(checks) != 2 || checks[0].Samples != 1 || checks[1].Samples != 2 {
		t.Fatalf("DriftChecks = %+v, %v; want the t0+1m and t0+2m checks, oldest first", checks, err)
	}
	want := driftCheckAt("iris", t0.Add(2*time.Minute), 2)
	latest, err := txn.LatestDriftCheck("iris")
	if err != nil || !reflect.DeepEqual(latest, &want) {
		t.Fatalf("LatestDriftCheck = %+v, %v\nwant %+v", latest, err, want)
	}
	if c, err := txn.LatestDriftCheck("wine"); codeOf(err) != structs.CodeNotFound || c != nil {
		t.Fatalf("LatestDriftCheck(wine) = %v, %v; want not_found: wine has no monitor", c, err)
	}
}

func TestFSM_DriftChecksKeepTheLatest(t *testing.T) {
	f := monitoringFSM(t)
	f.mustApply(t,
		putMonitor(t, monitorOf("iris", "flowers:1", "Sepal_Length")),
		putMonitor(t, monitorOf("wine", "flowers:1", "Sepal_Length")),
		putDriftCheck(t, driftCheckAt("wine", t0, 1)),
		putDriftCheck(t, driftCheckAt("wine", t0.Add(time.Second), 2)),
	)
	const puts = structs.MaxDriftChecks + 5
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	cmds := make([][]byte, puts)
	for i := range cmds {
		cmds[i] = putDriftCheck(t, driftCheckAt("iris", at(i), i))
	}
	f.mustApply(t, cmds...)

	txn := readTxn(t, f)
	samples := func(cs []*structs.DriftCheck) []int {
		out := make([]int, len(cs))
		for i, c := range cs {
			out[i] = c.Samples
		}
		return out
	}
	// brief names checks i..j as "N checks, i..j" rather than listing them.
	brief := func(s []int) string {
		if len(s) == 0 {
			return "no checks"
		}
		return fmt.Sprintf("%d checks, %d..%d", len(s), s[0], s[len(s)-1])
	}
	span := func(from, to int) []int {
		out := make([]int, 0, to-from)
		for i := from; i < to; i++ {
			out = append(out, i)
		}
		return out
	}
	all, err := txn.DriftChecks("iris", time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := samples(all), span(5, puts); !reflect.DeepEqual(got, want) {
		t.Errorf("after %d checks, DriftChecks = %s; want the latest %d: %s", puts, brief(got), structs.MaxDriftChecks, brief(want))
	}
	tests := []struct {
		name  string
		since time.Time
		limit int
		want  []int
	}{
		{name: "since a check's time", since: at(100), want: span(100, puts)},
		{name: "since between two checks", since: at(100).Add(time.Millisecond), want: span(101, puts)},
		{name: "limit keeps the latest", limit: 3, want: span(puts-3, puts)},
		{name: "since and limit", since: at(100), limit: 2, want: span(puts-2, puts)},
		{name: "since after the last", since: at(puts), want: []int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := txn.DriftChecks("iris", tt.since, tt.limit)
			if err != nil || !reflect.DeepEqual(samples(got), tt.want) {
				t.Fatalf("DriftChecks(%v, %d) = %s, %v; want %s", tt.since, tt.limit, brief(samples(got)), err, brief(tt.want))
			}
		})
	}
	if latest, err := txn.LatestDriftCheck("iris"); err != nil || latest.Samples != puts-1 || !latest.CheckedAt.Equal(at(puts-1)) {
		t.Fatalf("LatestDriftCheck = %+v, %v; want check %d", latest, err, puts-1)
	}
	// Another deployment's checks are its own.
	if wine, err := txn.DriftChecks("wine", time.Time{}, 0); err != nil || !reflect.DeepEqual(samples(wine), []int{1, 2}) {
		t.Fatalf("DriftChecks(wine) = %v, %v; want its 2 checks", samples(wine), err)
	}
}

func TestFSM_MonitorDeleteRemovesItsChecks(t *testing.T) {
	f := monitoringFSM(t)
	f.mustApply(t,
		putMonitor(t, monitorOf("iris", "flowers:1", "Sepal_Length")),
		putMonitor(t, monitorOf("wine", "flowers:1", "Sepal_Length")),
		putDriftCheck(t, driftCheckAt("iris", t0, 1)),
		putDriftCheck(t, driftCheckAt("iris", t0.Add(time.Minute), 2)),
		putDriftCheck(t, driftCheckAt("wine", t0, 3)),
	)
	res := f.apply(t, deleteMonitor(t, "iris"), deleteMonitor(t, "iris"), putDriftCheck(t, driftCheckAt("iris", t0.Add(time.Hour), 4)))
	assertCodes(t, res, "", structs.CodeNotFound, structs.CodeNotFound)

	txn := readTxn(t, f)
	if m, err := txn.Monitor("iris"); codeOf(err) != structs.CodeNotFound {
		t.Fatalf("Monitor(iris) after delete = %+v, %v; want not_found", m, err)
	}
	if checks, err := txn.DriftChecks("iris", time.Time{}, 0); err != nil || len(checks) != 0 {
		t.Fatalf("DriftChecks(iris) after delete = %+v, %v; want none", checks, err)
	}
	mons, err := txn.Monitors()
	if err != nil || len(mons) != 1 || mons[0].Spec.Deployment != "wine" {
		t.Fatalf("Monitors = %+v, %v; want wine's alone", mons, err)
	}
	if checks, err := txn.DriftChecks("wine", time.Time{}, 0); err != nil || len(checks) != 1 || checks[0].Samples != 3 {
		t.Fatalf("DriftChecks(wine) = %+v, %v; want its check", checks, err)
	}

	// A monitor put again starts a new series.
	f.mustApply(t, putMonitor(t, monitorOf("iris", "flowers:1", "Sepal_Length")))
	m, err := readTxn(t, f).Monitor("iris")
	if err != nil || !m.LastCheckAt.IsZero() {
		t.Fatalf("Monitor(iris) put again = %+v, %v; want never checked", m, err)
	}
}

func TestFSM_AlertRulePut(t *testing.T) {
	f := monitoringFSM(t)
	noCondition := ruleOf("drifting", "iris")
	noCondition.Spec.Condition = " "
	again := ruleOf("drifting", "iris", webhook)
	again.CreatedAt = t0.Add(time.Hour)
	res := f.apply(t,
		putAlertRule(t, ruleOf("drifting", "nope")),
		putAlertRule(t, ruleOf("drifting", "iris", webhook, structs.AlertAction{Kind: structs.ActionRunPipeline, Pipeline: "missing"})),
		putAlertRule(t, noCondition),
		putAlertRule(t, ruleOf("drifting", "iris", webhook, retrain, rollbackAct)),
		moveAlert(t, "drifting", structs.AlertInactive, structs.AlertFiring, 0.5, t0.Add(time.Minute)),
		ackAlert(t, "drifting", "acc-2", t0.Add(2*time.Minute)),
		putAlertRule(t, again),
	)
	assertCodes(t, res, structs.CodeNotFound, structs.CodeInvalid, structs.CodeInvalid, "", "", "", "")
	if msg := errorText(res[1]); !strings.Contains(msg, "actions[1].pipeline") || !strings.Contains(msg, "missing") {
		t.Errorf("error for a missing pipeline = %q, want it to name actions[1].pipeline and the pipeline", msg)
	}
	if r, ok := res[3].(*structs.AlertRule); !ok || r.ModifyIndex != f.next-4 || len(r.Spec.Actions) != 3 || r.Spec.Window != "5m" {
		t.Fatalf("first put = %+v, want the rule with its 3 actions and defaults", res[3])
	}

	txn := readTxn(t, f)
	r, err := txn.AlertRule("drifting")
	if err != nil || !r.CreatedAt.Equal(t0) || r.ModifyIndex != f.next-1 || !reflect.DeepEqual(r.Spec.Actions, []structs.AlertAction{webhook}) {
		t.Fatalf("rule after a second put = %+v, %v; want created at t0, the new actions, modified at %d", r, err, f.next-1)
	}
	// The fired, acknowledged alert starts again from inactive, since the
	// put; its firings are still counted, so that a late status of the
	// earlier firing cannot pass for one of the next.
	want := &structs.Alert{Rule: "drifting", Deployment: "iris", State: structs.AlertInactive, Since: again.CreatedAt,
		Fired: 1, FiredAt: t0.Add(time.Minute), ModifyIndex: f.next - 1}
	if a, err := txn.Alert("drifting"); err != nil || !reflect.DeepEqual(a, want) {
		t.Fatalf("alert after a second put = %+v, %v\nwant %+v", a, err, want)
	}
}

func TestFSM_AlertState(t *testing.T) {
	f := monitoringFSM(t)
	f.mustApply(t, putAlertRule(t, ruleOf("drifting", "iris", webhook, retrain)))
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	const (
		inactive = structs.AlertInactive
		pending  = structs.AlertPending
		firing   = structs.AlertFiring
		resolved = structs.AlertResolved
	)
	pendingActions := func(m int) []structs.ActionStatus {
		return []structs.ActionStatus{
			{Kind: structs.ActionWebhook, Status: structs.ActionPending, At: at(m)},
			{Kind: structs.ActionRunPipeline, Status: structs.ActionPending, At: at(m)},
		}
	}
	steps := []struct {
		name  string
		cmd   []byte
		code  string
		check func(t *testing.T, a *structs.Alert)
	}{
		{name: "from a state it is not in", cmd: moveAlert(t, "drifting", pending, firing, 0.3, at(1)), code: structs.CodeConflict},
		{name: "inactive to resolved is no move", cmd: moveAlert(t, "drifting", inactive, resolved, 0.3, at(1)), code: structs.CodeInvalid},
		{name: "inactive to an unknown state", cmd: moveAlert(t, "drifting", inactive, "exploded", 0.3, at(1)), code: structs.CodeInvalid},
		{name: "unknown rule", cmd: moveAlert(t, "nope", inactive, pending, 0.3, at(1)), code: structs.CodeNotFound},
		{name: "inactive to pending", cmd: moveAlert(t, "drifting", inactive, pending, 0.3, at(1)), check: func(t *testing.T, a *structs.Alert) {
			if a.State != pending || !a.Since.Equal(at(1)) || a.Value != 0.3 || a.Fired != 0 || a.Actions != nil {
				t.Errorf("alert = %+v, want pending since t0+1m, not fired", a)
			}
		}},
		{name: "pending to firing", cmd: moveAlert(t, "drifting", pending, firing, 0.4, at(2)), check: func(t *testing.T, a *structs.Alert) {
			if a.State != firing || !a.Since.Equal(at(2)) || a.Value != 0.4 || a.Fired != 1 || !a.FiredAt.Equal(at(2)) || !reflect.DeepEqual(a.Actions, pendingActions(2)) {
				t.Errorf("alert = %+v, want firing once since t0+2m, both actions pending", a)
			}
		}},
		{name: "acknowledged", cmd: ackAlert(t, "drifting", "acc-2", at(3))},
		{name: "action 0 done", cmd: alertActionStatus(t, "drifting", 1, 0, structs.ActionStatus{Status: structs.ActionDone, Attempts: 1, At: at(3)})},
		{name: "firing to firing updates the value", cmd: moveAlert(t, "drifting", firing, firing, 0.9, at(4)), check: func(t *testing.T, a *structs.Alert) {
			if a.State != firing || !a.Since.Equal(at(2)) || a.Value != 0.9 || a.Fired != 1 || !a.FiredAt.Equal(at(2)) ||
				a.AckedBy != "acc-2" || a.Actions[0].Status != structs.ActionDone || a.Actions[1].Status != structs.ActionPending {
				t.Errorf("alert = %+v, want the value 0.9 and nothing else changed", a)
			}
		}},
		{name: "firing to pending is no move", cmd: moveAlert(t, "drifting", firing, pending, 0.1, at(5)), code: structs.CodeInvalid},
		{name: "firing to resolved", cmd: moveAlert(t, "drifting", firing, resolved, 0.1, at(5)), check: func(t *testing.T, a *structs.Alert) {
			if a.State != resolved || !a.Since.Equal(at(5)) || a.Fired != 1 || !a.FiredAt.Equal(at(2)) || a.Actions[0].Status != structs.ActionDone {
				t.Errorf("alert = %+v, want resolved since t0+5m, the firing's record kept", a)
			}
		}},
		{name: "resolved to inactive is no move", cmd: moveAlert(t, "drifting", resolved, inactive, 0, at(6)), code: structs.CodeInvalid},
		{name: "late evaluator", cmd: moveAlert(t, "drifting", firing, resolved, 0.1, at(6)), code: structs.CodeConflict},
		{name: "resolved to firing fires again", cmd: moveAlert(t, "drifting", resolved, firing, 0.7, at(7)), check: func(t *testing.T, a *structs.Alert) {
			if a.State != firing || a.Fired != 2 || !a.FiredAt.Equal(at(7)) || a.AckedBy != "" || !a.AckedAt.IsZero() || !reflect.DeepEqual(a.Actions, pendingActions(7)) {
				t.Errorf("alert = %+v, want fired twice, at t0+7m, unacknowledged, actions pending again", a)
			}
		}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := readTxnAlert(t, f, "drifting")
			res := f.apply(t, st.cmd)[0]
			if got := codeOf(res); got != st.code {
				t.Fatalf("code %q, want %q (%v)", got, st.code, res)
			}
			after := readTxnAlert(t, f, "drifting")
			if st.code != "" {
				if !reflect.DeepEqual(after, before) {
					t.Fatalf("a refused move changed the alert: %+v, then %+v", before, after)
				}
				return
			}
			if a, ok := res.(*structs.Alert); ok && !reflect.DeepEqual(a, after) {
				t.Errorf("result %+v differs from the stored alert %+v", a, after)
			}
			if after.ModifyIndex != f.next-1 {
				t.Errorf("ModifyIndex = %d, want %d", after.ModifyIndex, f.next-1)
			}
			if st.check != nil {
				st.check(t, after)
			}
		})
	}
}

// readTxnAlert reads rule's alert in a transaction of its own.
func readTxnAlert(t *testing.T, f *monitoredFSM, rule string) *structs.Alert {
	t.Helper()
	txn := f.ReadTxn()
	defer txn.Discard()
	a, err := txn.Alert(rule)
	if err != nil {
		t.Fatalf("Alert(%s): %v", rule, err)
	}
	return a
}

func TestFSM_AlertAction(t *testing.T) {
	f := monitoringFSM(t)
	f.mustApply(t,
		putAlertRule(t, ruleOf("drifting", "iris", webhook, retrain)),
		moveAlert(t, "drifting", structs.AlertInactive, structs.AlertFiring, 0.5, t0),
	)
	longErr := strings.Repeat("é", 600) // 1200 bytes
	status := func(s string) structs.ActionStatus {
		return structs.ActionStatus{Kind: structs.ActionRollback, Status: s, Attempts: 2, At: t0.Add(time.Minute), Result: "run-1"}
	}
	retrying := status(structs.ActionRetrying)
	retrying.Error = longErr
	res := f.apply(t,
		alertActionStatus(t, "drifting", 0, 0, status(structs.ActionDone)),  // a firing before this one
		alertActionStatus(t, "drifting", 2, 0, status(structs.ActionDone)),  // a firing not yet
		alertActionStatus(t, "drifting", 1, 2, status(structs.ActionDone)),  // no action 2
		alertActionStatus(t, "drifting", 1, -1, status(structs.ActionDone)), // no action -1
		alertActionStatus(t, "drifting", 1, 0, status("exploded")),          // no such status
		alertActionStatus(t, "nope", 1, 0, status(structs.ActionDone)),      // no such rule
		alertActionStatus(t, "drifting", 1, 0, retrying),
		alertActionStatus(t, "drifting", 1, 0, status(structs.ActionDone)),
		alertActionStatus(t, "drifting", 1, 0, status(structs.ActionFailed)), // done already
		alertActionStatus(t, "drifting", 1, 1, status(structs.ActionFailed)),
		alertActionStatus(t, "drifting", 1, 1, status(structs.ActionPending)), // failed already
	)
	assertCodes(t, res,
		structs.CodeConflict, structs.CodeConflict, structs.CodeConflict, structs.CodeConflict, structs.CodeInvalid, structs.CodeNotFound,
		"", "", structs.CodeConflict, "", structs.CodeConflict)
	a, ok := res[6].(*structs.Alert)
	if !ok {
		t.Fatalf("result of a retrying status = %v", res[6])
	}
	got := a.Actions[0]
	if got.Kind != structs.ActionWebhook || got.Status != structs.ActionRetrying || got.Attempts != 2 || got.Result != "run-1" {
		t.Errorf("action 0 = %+v, want retrying, attempt 2, kind kept webhook", got)
	}
	if len(got.Error) > 1024 || !utf8.ValidString(got.Error) || !strings.HasPrefix(longErr, got.Error) || len(got.Error) < 1022 {
		t.Errorf("error of %d bytes kept as %d bytes (valid UTF-8: %v), want the first 1024 bytes at most, cut between runes",
			len(longErr), len(got.Error), utf8.ValidString(got.Error))
	}

	now := readTxnAlert(t, f, "drifting")
	want := []structs.ActionStatus{
		{Kind: structs.ActionWebhook, Status: structs.ActionDone, Attempts: 2, At: t0.Add(time.Minute), Result: "run-1"},
		{Kind: structs.ActionRunPipeline, Status: structs.ActionFailed, Attempts: 2, At: t0.Add(time.Minute), Result: "run-1"},
	}
	if !reflect.DeepEqual(now.Actions, want) || now.ModifyIndex != f.next-2 {
		t.Fatalf("actions = %+v (index %d)\nwant %+v (index %d)", now.Actions, now.ModifyIndex, want, f.next-2)
	}

	// After the alert fires again, a status of the first firing is stale.
	res = f.apply(t,
		moveAlert(t, "drifting", structs.AlertFiring, structs.AlertResolved, 0, t0.Add(time.Hour)),
		moveAlert(t, "drifting", structs.AlertResolved, structs.AlertFiring, 0.8, t0.Add(2*time.Hour)),
		alertActionStatus(t, "drifting", 1, 1, status(structs.ActionDone)),
		alertActionStatus(t, "drifting", 2, 1, status(structs.ActionDone)),
	)
	assertCodes(t, res, "", "", structs.CodeConflict, "")
}

func TestFSM_AlertAckOnlyWhileFiring(t *testing.T) {
	f := monitoringFSM(t)
	f.mustApply(t, putAlertRule(t, ruleOf("drifting", "iris", webhook)))
	res := f.apply(t,
		ackAlert(t, "drifting", "acc-2", t0),
		moveAlert(t, "drifting", structs.AlertInactive, structs.AlertPending, 0.3, t0),
		ackAlert(t, "drifting", "acc-2", t0),
		moveAlert(t, "drifting", structs.AlertPending, structs.AlertFiring, 0.3, t0.Add(time.Minute)),
		ackAlert(t, "drifting", "acc-2", t0.Add(2*time.Minute)),
		moveAlert(t, "drifting", structs.AlertFiring, structs.AlertResolved, 0.1, t0.Add(3*time.Minute)),
		ackAlert(t, "drifting", "acc-3", t0.Add(4*time.Minute)),
		ackAlert(t, "nope", "acc-2", t0),
	)
	assertCodes(t, res, structs.CodeConflict, "", structs.CodeConflict, "", "", "", structs.CodeConflict, structs.CodeNotFound)
	if a, ok := res[4].(*structs.Alert); !ok || a.AckedBy != "acc-2" || !a.AckedAt.Equal(t0.Add(2*time.Minute)) || a.State != structs.AlertFiring {
		t.Fatalf("acknowledged alert = %+v, want acked by acc-2 at t0+2m", res[4])
	}
	// Resolving keeps the acknowledgement of the firing it was for.
	if a := readTxnAlert(t, f, "drifting"); a.AckedBy != "acc-2" || a.State != structs.AlertResolved {
		t.Fatalf("alert = %+v, want resolved, acked by acc-2", a)
	}
}

func TestFSM_AlertRuleDeleteRemovesItsAlert(t *testing.T) {
	f := monitoringFSM(t)
	f.mustApply(t,
		putAlertRule(t, ruleOf("drifting", "iris", webhook)),
		putAlertRule(t, ruleOf("slow", "iris")),
		moveAlert(t, "drifting", structs.AlertInactive, structs.AlertFiring, 0.3, t0),
	)
	res := f.apply(t,
		deleteAlertRule(t, "drifting"),
		deleteAlertRule(t, "drifting"),
		moveAlert(t, "drifting", structs.AlertFiring, structs.AlertResolved, 0, t0),
		ackAlert(t, "drifting", "acc-2", t0),
	)
	assertCodes(t, res, "", structs.CodeNotFound, structs.CodeNotFound, structs.CodeNotFound)
	txn := readTxn(t, f)
	if r, err := txn.AlertRule("drifting"); codeOf(err) != structs.CodeNotFound {
		t.Fatalf("AlertRule after delete = %+v, %v; want not_found", r, err)
	}
	if a, err := txn.Alert("drifting"); codeOf(err) != structs.CodeNotFound {
		t.Fatalf("Alert after delete = %+v, %v; want not_found", a, err)
	}
	rules, err := txn.AlertRules()
	if err != nil || len(rules) != 1 || rules[0].Spec.Name != "slow" {
		t.Fatalf("AlertRules = %+v, %v; want slow alone", rules, err)
	}
	alerts, err := txn.Alerts()
	if err != nil || len(alerts) != 1 || alerts[0].Rule != "slow" {
		t.Fatalf("Alerts = %+v, %v; want slow's alone", alerts, err)
	}
}

// monitoringState is every monitoring record of an FSM.
type monitoringState struct {
	Index       uint64
	Monitors    []*structs.Monitor
	DriftChecks map[string][]*structs.DriftCheck
	AlertRules  []*structs.AlertRule
	Alerts      []*structs.Alert
}

func readMonitoringState(t testing.TB, f *FSM) monitoringState {
	t.Helper()
	txn := f.ReadTxn()
	defer txn.Discard()
	st := monitoringState{Index: txn.Index(), DriftChecks: map[string][]*structs.DriftCheck{}}
	var err error
	if st.Monitors, err = txn.Monitors(); err != nil {
		t.Fatalf("Monitors: %v", err)
	}
	for _, m := range st.Monitors {
		if st.DriftChecks[m.Spec.Deployment], err = txn.DriftChecks(m.Spec.Deployment, time.Time{}, 0); err != nil {
			t.Fatalf("DriftChecks: %v", err)
		}
	}
	if st.AlertRules, err = txn.AlertRules(); err != nil {
		t.Fatalf("AlertRules: %v", err)
	}
	if st.Alerts, err = txn.Alerts(); err != nil {
		t.Fatalf("Alerts: %v", err)
	}
	return st
}

func TestFSM_MonitoringSnapshotRestore(t *testing.T) {
	src := monitoringFSM(t)
	src.mustApply(t,
		putMonitor(t, monitorOf("iris", "flowers:1", "Sepal_Length", "Species")),
		putMonitor(t, monitorOf("wine", "flowers:1", "Sepal_Length")),
		putDriftCheck(t, driftCheckAt("iris", t0, 10)),
		putDriftCheck(t, driftCheckAt("iris", t0.Add(time.Minute), 20)),
		putDriftCheck(t, driftCheckAt("wine", t0, 30)),
		putAlertRule(t, ruleOf("drifting", "iris", webhook, retrain, rollbackAct)),
		putAlertRule(t, ruleOf("slow", "wine")),
		moveAlert(t, "drifting", structs.AlertInactive, structs.AlertFiring, 0.5, t0.Add(time.Minute)),
		ackAlert(t, "drifting", "acc-2", t0.Add(2*time.Minute)),
		alertActionStatus(t, "drifting", 1, 1, structs.ActionStatus{Status: structs.ActionFailed, Error: "pipeline refused", Attempts: 3, At: t0.Add(3 * time.Minute)}),
	)
	want := readMonitoringState(t, src.FSM)
	if len(want.Monitors) != 2 || len(want.DriftChecks["iris"]) != 2 || len(want.DriftChecks["wine"]) != 1 ||
		len(want.AlertRules) != 2 || len(want.Alerts) != 2 || want.Alerts[0].Fired != 1 || want.Alerts[0].AckedBy != "acc-2" {
		t.Fatalf("source state = %+v", want)
	}
	stream := snapshotBytes(t, src.FSM)
	if err := ValidateSnapshot(bytes.NewReader(stream)); err != nil {
		t.Fatalf("ValidateSnapshot: %v", err)
	}

	tests := []struct {
		name   string
		target func(t *testing.T) []fsmOption
	}{
		{name: "to memory", target: func(*testing.T) []fsmOption { return nil }},
		{name: "to disk", target: func(t *testing.T) []fsmOption { return []fsmOption{onDisk(t.TempDir())} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := testFSM(t, tt.target(t)...)
			fillTarget(t, dst)
			must(t, restoreBytes(dst, stream))
			got := readMonitoringState(t, dst)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("restored state differs\nwant %+v\ngot  %+v", want, got)
			}
			if again := snapshotBytes(t, dst); !bytes.Equal(again, stream) {
				t.Fatal("snapshot of the restored state differs from the one restored")
			}
			// The restored alert goes on from where it was.
			res := dst.Apply(commandLogs(want.Index+1, moveAlert(t, "drifting", structs.AlertFiring, structs.AlertResolved, 0.1, t0.Add(time.Hour)))[0])
			if a, ok := res.(*structs.Alert); !ok || a.State != structs.AlertResolved || a.Fired != 1 {
				t.Fatalf("alert_state after restore = %+v", res)
			}
		})
	}
}

// TestFSM_DeploymentDeleteRemovesItsMonitor: a deleted deployment's monitor
// and checks go with it; its alert rules stay, as do other deployments'.
func TestFSM_DeploymentDeleteRemovesItsMonitor(t *testing.T) {
	f := monitoringFSM(t)
	f.mustApply(t,
		putMonitor(t, monitorOf("iris", "flowers:1", "Sepal_Length")),
		putMonitor(t, monitorOf("wine", "flowers:1", "Sepal_Length")),
		putDriftCheck(t, driftCheckAt("iris", t0, 1)),
		putDriftCheck(t, driftCheckAt("wine", t0, 2)),
		putAlertRule(t, ruleOf("drifting", "iris")),
		deleteDeployment(t, "iris"),
	)
	txn := readTxn(t, f)
	if m, err := txn.Monitor("iris"); codeOf(err) != structs.CodeNotFound {
		t.Fatalf("Monitor(iris) after the deployment's delete = %+v, %v; want not_found", m, err)
	}
	if checks, _ := txn.DriftChecks("iris", time.Time{}, 0); len(checks) != 0 {
		t.Fatalf("iris keeps %d checks", len(checks))
	}
	if checks, _ := txn.DriftChecks("wine", time.Time{}, 0); len(checks) != 1 {
		t.Fatalf("wine has %d checks, want 1", len(checks))
	}
	if _, err := txn.AlertRule("drifting"); err != nil {
		t.Fatalf("the rule went with the deployment: %v", err)
	}
}
