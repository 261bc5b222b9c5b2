package structs

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Monitoring commands (DESIGN.md §8, "Monitoring"). They share
// RangePipelines with pipelines, after them. Never renumber.
const (
	// MonitorPutType creates or replaces a deployment's monitor.
	MonitorPutType MessageType = 102
	// MonitorDeleteType removes a deployment's monitor and its checks.
	MonitorDeleteType MessageType = 103
	// DriftCheckPutType records one drift check; Apply trims the series.
	DriftCheckPutType MessageType = 104
	// AlertRulePutType creates or replaces an alert rule.
	AlertRulePutType MessageType = 105
	// AlertRuleDeleteType removes an alert rule and its alert.
	AlertRuleDeleteType MessageType = 106
	// AlertStateType moves an alert from the state it was read in.
	AlertStateType MessageType = 107
	// AlertActionType records how one action of a firing alert went.
	AlertActionType MessageType = 108
	// AlertAckType acknowledges a firing alert.
	AlertAckType MessageType = 109
)

var _ = registerTypes(RangePipelines,
	TypeDef{MonitorPutType, "monitor_put"},
	TypeDef{MonitorDeleteType, "monitor_delete"},
	TypeDef{DriftCheckPutType, "drift_check_put"},
	TypeDef{AlertRulePutType, "alert_rule_put"},
	TypeDef{AlertRuleDeleteType, "alert_rule_delete"},
	TypeDef{AlertStateType, "alert_state"},
	TypeDef{AlertActionType, "alert_action"},
	TypeDef{AlertAckType, "alert_ack"},
)

// Drift tests a monitor may name (ml/drift computes them).
var (
	NumericDriftTests     = []string{"ks", "psi", "wasserstein"}
	CategoricalDriftTests = []string{"chi2", "jensenshannon"}
)

// Tasks a monitor scores live predictions for.
const (
	TaskClassification = "classification"
	TaskRegression     = "regression"
)

// Limits of monitoring.
const (
	MaxMonitorFeatures = 1024
	// MaxDriftChecks is how many checks a deployment keeps; Apply drops the
	// oldest beyond it.
	MaxDriftChecks  = 2000
	MinDriftPeriod  = time.Second
	MaxAlertActions = 8
	MaxConditionLen = 4096
)

// MonitorSpec is what a deployment's monitor checks, and how often.
type MonitorSpec struct {
	Deployment string `msgpack:"deployment" json:"deployment"`
	// ReferenceDataset is name:version; empty means the dataset of the
	// deployed version's lineage, resolved when the monitor is put.
	ReferenceDataset string `msgpack:"reference_dataset" json:"reference_dataset"`
	// FeatureColumns are the reference dataset's columns in the order of
	// the model's input values; empty means the columns named like the
	// model's feature names, ignoring case.
	FeatureColumns []string `msgpack:"feature_columns" json:"feature_columns"`
	// SampleRate is the share of requests written to the prediction log
	// (0 to 1).
	SampleRate float64 `msgpack:"sample_rate" json:"sample_rate"`
	// Schedule is the interval between checks; Window how far back a
	// check reads the log.
	Schedule string `msgpack:"schedule" json:"schedule"`
	Window   string `msgpack:"window" json:"window"`
	// MinSamples is the fewest logged rows a check tests; with fewer it is
	// recorded as skipped.
	MinSamples      int     `msgpack:"min_samples" json:"min_samples"`
	NumericTest     string  `msgpack:"numeric_test" json:"numeric_test"`
	CategoricalTest string  `msgpack:"categorical_test" json:"categorical_test"`
	Alpha           float64 `msgpack:"alpha" json:"alpha"`
	// Task says how labels are scored: classification or regression;
	// empty means the one the model's outputs imply.
	Task string `msgpack:"task,omitempty" json:"task,omitempty"`
}

// Defaults fills the fields left empty with their defaults.
func (m *MonitorSpec) Defaults() {
	if m.SampleRate == 0 {
		m.SampleRate = 1
	}
	if m.Schedule == "" {
		m.Schedule = "1m"
	}
	if m.Window == "" {
		m.Window = "1h"
	}
	if m.MinSamples == 0 {
		m.MinSamples = 100
	}
	if m.NumericTest == "" {
		m.NumericTest = "ks"
	}
	if m.CategoricalTest == "" {
		m.CategoricalTest = "chi2"
	}
	if m.Alpha == 0 {
		m.Alpha = 0.05
	}
}

// Validate checks a monitor's own fields, after Defaults.
func (m *MonitorSpec) Validate() error {
	if err := ValidateName("deployment", m.Deployment); err != nil {
		return err
	}
	if m.ReferenceDataset != "" {
		if _, _, err := ParseDatasetRef("reference_dataset", m.ReferenceDataset); err != nil {
			return err
		}
	}
	if len(m.FeatureColumns) > MaxMonitorFeatures {
		return Errorf(CodeInvalid, "feature_columns has %d columns, more than %d", len(m.FeatureColumns), MaxMonitorFeatures)
	}
	seen := map[string]bool{}
	for i, c := range m.FeatureColumns {
		if c == "" || seen[c] {
			return Errorf(CodeInvalid, "feature_columns[%d] %q is empty or named twice", i, c)
		}
		seen[c] = true
	}
	if !(m.SampleRate > 0 && m.SampleRate <= 1) {
		return Errorf(CodeInvalid, "sample_rate %v is out of range: give a share above 0 and at most 1", m.SampleRate)
	}
	every, err := ParseSpan(m.Schedule)
	if err != nil || every < MinDriftPeriod {
		return Errorf(CodeInvalid, "schedule %q: give an interval of at least %s, such as 1m", m.Schedule, MinDriftPeriod)
	}
	if w, err := ParseSpan(m.Window); err != nil || w < MinDriftPeriod {
		return Errorf(CodeInvalid, "window %q: give a duration of at least %s, such as 1h", m.Window, MinDriftPeriod)
	}
	if m.MinSamples < 1 || m.MinSamples > 10_000_000 {
		return Errorf(CodeInvalid, "min_samples %d is out of range 1..10000000", m.MinSamples)
	}
	if !slices.Contains(NumericDriftTests, m.NumericTest) {
		return Errorf(CodeInvalid, "numeric_test %q is unknown: use one of %s", m.NumericTest, strings.Join(NumericDriftTests, ", "))
	}
	if !slices.Contains(CategoricalDriftTests, m.CategoricalTest) {
		return Errorf(CodeInvalid, "categorical_test %q is unknown: use one of %s", m.CategoricalTest, strings.Join(CategoricalDriftTests, ", "))
	}
	if !(m.Alpha > 0 && m.Alpha < 1) {
		return Errorf(CodeInvalid, "alpha %v is out of range: give a significance level between 0 and 1, such as 0.05", m.Alpha)
	}
	switch m.Task {
	case "", TaskClassification, TaskRegression:
	default:
		return Errorf(CodeInvalid, "task %q is unknown: use classification or regression", m.Task)
	}
	return nil
}

// Every is the schedule's interval; Validate has checked it.
func (m *MonitorSpec) Every() time.Duration { d, _ := ParseSpan(m.Schedule); return d }

// WindowSpan is the window's length; Validate has checked it.
func (m *MonitorSpec) WindowSpan() time.Duration { d, _ := ParseSpan(m.Window); return d }

// Monitor is a monitor's record: its spec with the reference resolved, and
// when it last checked.
type Monitor struct {
	Spec MonitorSpec `msgpack:"spec" json:"spec"`
	// Reference is the dataset version checks compare with (name:version),
	// and Columns the reference columns in input order, both resolved when
	// the monitor was put.
	Reference   string    `msgpack:"reference" json:"reference"`
	Columns     []string  `msgpack:"columns" json:"columns"`
	LastCheckAt time.Time `msgpack:"last_check_at" json:"last_check_at"`
	CreatedAt   time.Time `msgpack:"created_at" json:"created_at"`
	ModifyIndex uint64    `msgpack:"modify_index" json:"modify_index"`
}

// MonitorPutRequest creates or replaces a monitor, with its reference
// resolved by the node that took the request (Apply checks it exists).
type MonitorPutRequest struct {
	Monitor Monitor `msgpack:"monitor"`
}

// AlertAckRequest acknowledges rule's firing alert: By (a token's
// accessor, or "anonymous") has seen it.
type AlertAckRequest struct {
	Rule string    `msgpack:"rule"`
	By   string    `msgpack:"by"`
	At   time.Time `msgpack:"at"`
}

// FeatureDrift is one test of one feature (or of the predictions).
type FeatureDrift struct {
	Name      string   `msgpack:"name" json:"name"`
	Test      string   `msgpack:"test" json:"test"`
	Statistic float64  `msgpack:"statistic" json:"statistic"`
	PValue    *float64 `msgpack:"p_value" json:"p_value"`
	Threshold float64  `msgpack:"threshold" json:"threshold"`
	Drift     bool     `msgpack:"drift" json:"drift"`
	Reference int      `msgpack:"reference" json:"reference"`
	Current   int      `msgpack:"current" json:"current"`
	// Error says why the feature could not be tested (no values in the
	// window); the other fields are then zero.
	Error string `msgpack:"error,omitempty" json:"error,omitempty"`
}

// DriftCheck is one check of a deployment's live window against its
// reference.
type DriftCheck struct {
	Deployment string    `msgpack:"deployment" json:"deployment"`
	CheckedAt  time.Time `msgpack:"checked_at" json:"checked_at"`
	From       time.Time `msgpack:"from" json:"from"`
	To         time.Time `msgpack:"to" json:"to"`
	Reference  string    `msgpack:"reference" json:"reference"`
	// Samples is the logged rows in the window; NodesMissing the nodes
	// whose log could not be read.
	Samples      int            `msgpack:"samples" json:"samples"`
	NodesMissing int            `msgpack:"nodes_missing" json:"nodes_missing"`
	Features     []FeatureDrift `msgpack:"features" json:"features"`
	Prediction   *FeatureDrift  `msgpack:"prediction" json:"prediction"`
	// ShareDrifted is the share of features whose test found drift.
	ShareDrifted float64 `msgpack:"share_drifted" json:"share_drifted"`
	// Skipped says why nothing was tested (fewer than min_samples rows).
	Skipped    string `msgpack:"skipped,omitempty" json:"skipped,omitempty"`
	DurationMS int64  `msgpack:"duration_ms" json:"duration_ms"`
}

// DriftCheckPutRequest records a check.
type DriftCheckPutRequest struct {
	Check DriftCheck `msgpack:"check"`
}

// Alert actions.
const (
	ActionWebhook     = "webhook"
	ActionRollback    = "rollback"
	ActionRunPipeline = "run_pipeline"
)

// AlertAction is what a rule does when its alert fires.
type AlertAction struct {
	Kind     string         `msgpack:"kind" json:"kind"`
	URL      string         `msgpack:"url,omitempty" json:"url,omitempty"`
	Pipeline string         `msgpack:"pipeline,omitempty" json:"pipeline,omitempty"`
	Params   map[string]any `msgpack:"params,omitempty" json:"params,omitempty"`
}

// AlertRuleSpec is an alert rule as a user declares it.
type AlertRuleSpec struct {
	Name       string `msgpack:"name" json:"name"`
	Deployment string `msgpack:"deployment" json:"deployment"`
	// Condition is an expression over drift, performance, latency, errors,
	// requests and canary (actors/monitor.Env) that is true while the
	// alert should be active.
	Condition string `msgpack:"condition" json:"condition"`
	// For is how long the condition must hold before the alert fires.
	For string `msgpack:"for" json:"for"`
	// Window is how far back latency, errors and performance look.
	Window  string        `msgpack:"window" json:"window"`
	Actions []AlertAction `msgpack:"actions" json:"actions"`
}

// Defaults fills the fields left empty.
func (r *AlertRuleSpec) Defaults() {
	if r.For == "" {
		r.For = "0s"
	}
	if r.Window == "" {
		r.Window = "5m"
	}
}

// Validate checks the rule's own fields, after Defaults; the condition is
// compiled by the node (actors/monitor), which knows its names.
func (r *AlertRuleSpec) Validate() error {
	if err := ValidateName("name", r.Name); err != nil {
		return err
	}
	if err := ValidateName("deployment", r.Deployment); err != nil {
		return err
	}
	if strings.TrimSpace(r.Condition) == "" || len(r.Condition) > MaxConditionLen {
		return Errorf(CodeInvalid, "condition is empty or longer than %d bytes", MaxConditionLen)
	}
	if d, err := ParseSpan(r.For); err != nil || d < 0 {
		return Errorf(CodeInvalid, "for %q is not a duration, such as 0s or 5m", r.For)
	}
	if d, err := ParseSpan(r.Window); err != nil || d < time.Second {
		return Errorf(CodeInvalid, "window %q: give a duration of at least 1s, such as 5m", r.Window)
	}
	if len(r.Actions) > MaxAlertActions {
		return Errorf(CodeInvalid, "actions has %d entries, more than %d", len(r.Actions), MaxAlertActions)
	}
	for i, a := range r.Actions {
		if err := a.validate(fmt.Sprintf("actions[%d]", i)); err != nil {
			return err
		}
	}
	return nil
}

func (a *AlertAction) validate(path string) error {
	switch a.Kind {
	case ActionWebhook:
		u, err := url.Parse(a.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Errorf(CodeInvalid, "%s.url %q: give an http or https URL", path, a.URL)
		}
		if a.Pipeline != "" || a.Params != nil {
			return Errorf(CodeInvalid, "%s: a webhook takes url only", path)
		}
	case ActionRollback:
		if a.URL != "" || a.Pipeline != "" || a.Params != nil {
			return Errorf(CodeInvalid, "%s: rollback takes no fields: it rolls back the rule's deployment", path)
		}
	case ActionRunPipeline:
		if err := ValidateName(path+".pipeline", a.Pipeline); err != nil {
			return err
		}
		if a.URL != "" {
			return Errorf(CodeInvalid, "%s: run_pipeline takes pipeline and params, not url", path)
		}
	default:
		return Errorf(CodeInvalid, "%s.kind %q is unknown: use webhook, rollback or run_pipeline", path, a.Kind)
	}
	return nil
}

// ForSpan is the rule's for duration; Validate has checked it.
func (r *AlertRuleSpec) ForSpan() time.Duration { d, _ := ParseSpan(r.For); return d }

// WindowSpan is the rule's window; Validate has checked it.
func (r *AlertRuleSpec) WindowSpan() time.Duration { d, _ := ParseSpan(r.Window); return d }

// AlertRule is a rule's record. Its actions run with the permissions of
// the token that applied it (AppliedBy, an accessor), as a pipeline's do.
type AlertRule struct {
	Spec          AlertRuleSpec `msgpack:"spec" json:"spec"`
	AppliedBy     string        `msgpack:"applied_by,omitempty" json:"applied_by,omitempty"`
	AppliedByHash string        `msgpack:"applied_by_hash,omitempty" json:"-"`
	CreatedAt     time.Time     `msgpack:"created_at" json:"created_at"`
	ModifyIndex   uint64        `msgpack:"modify_index" json:"modify_index"`
}

// AlertRulePutRequest creates or replaces a rule. A replaced rule's alert
// starts again from inactive.
type AlertRulePutRequest struct {
	Rule AlertRule `msgpack:"rule"`
}

// Alert states. An alert is inactive until its condition holds, pending
// while it has held for less than the rule's for, firing after, and
// resolved once it stops holding (until it holds again).
const (
	AlertInactive = "inactive"
	AlertPending  = "pending"
	AlertFiring   = "firing"
	AlertResolved = "resolved"
)

// Action statuses.
const (
	ActionPending  = "pending"  // not yet run, or being retried
	ActionDone     = "done"     // ran
	ActionFailed   = "failed"   // gave up after its retries, or cannot run
	ActionRetrying = "retrying" // failed, and will be tried again
)

// ActionStatus is how one action of the current firing went.
type ActionStatus struct {
	Kind     string    `msgpack:"kind" json:"kind"`
	Status   string    `msgpack:"status" json:"status"`
	Error    string    `msgpack:"error,omitempty" json:"error,omitempty"`
	Attempts int       `msgpack:"attempts" json:"attempts"`
	At       time.Time `msgpack:"at" json:"at"`
	// Result names what the action made: the pipeline run's ID, the
	// traffic rolled back to.
	Result string `msgpack:"result,omitempty" json:"result,omitempty"`
}

// Alert is a rule's current state.
type Alert struct {
	Rule       string    `msgpack:"rule" json:"rule"`
	Deployment string    `msgpack:"deployment" json:"deployment"`
	State      string    `msgpack:"state" json:"state"`
	Since      time.Time `msgpack:"since" json:"since"`
	// Value is the condition's left-hand side (the share of drifted
	// features in drift.share_drifted > 0.25) when the alert last moved;
	// the evaluator does not write every evaluation's value to the
	// registry. /metrics's kiln_alert_value shows the same.
	Value float64 `msgpack:"value" json:"value"`
	// FiredAt is when the alert last fired; Fired how many times.
	FiredAt     time.Time      `msgpack:"fired_at" json:"fired_at"`
	Fired       int            `msgpack:"fired" json:"fired"`
	Actions     []ActionStatus `msgpack:"actions" json:"actions"`
	AckedBy     string         `msgpack:"acked_by,omitempty" json:"acked_by,omitempty"`
	AckedAt     time.Time      `msgpack:"acked_at" json:"acked_at"`
	ModifyIndex uint64         `msgpack:"modify_index" json:"modify_index"`
}

// AlertStateRequest moves rule's alert from From to To (Apply refuses it
// if the alert is no longer in From, so a late evaluator changes nothing).
// A move to firing resets the actions to pending.
type AlertStateRequest struct {
	Rule  string    `msgpack:"rule"`
	From  string    `msgpack:"from"`
	To    string    `msgpack:"to"`
	Value float64   `msgpack:"value"`
	At    time.Time `msgpack:"at"`
}

// AlertActionRequest records the status of action Index of the firing
// numbered Fired (a status for an earlier firing is dropped).
type AlertActionRequest struct {
	Rule   string       `msgpack:"rule"`
	Fired  int          `msgpack:"fired"`
	Index  int          `msgpack:"index"`
	Status ActionStatus `msgpack:"status"`
}

// Validate checks a check's own fields.
func (c *DriftCheck) Validate() error {
	if err := ValidateName("deployment", c.Deployment); err != nil {
		return err
	}
	if c.CheckedAt.IsZero() || c.CheckedAt.UnixNano() <= 0 {
		return Errorf(CodeInvalid, "checked_at is missing")
	}
	if len(c.Features) > MaxMonitorFeatures {
		return Errorf(CodeInvalid, "features has %d entries, more than %d", len(c.Features), MaxMonitorFeatures)
	}
	if c.Samples < 0 || c.ShareDrifted < 0 || c.ShareDrifted > 1 {
		return Errorf(CodeInvalid, "samples is negative, or share_drifted outside 0..1")
	}
	return nil
}
