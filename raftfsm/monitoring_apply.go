package raftfsm

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Monitoring (DESIGN.md §8): monitors and their drift checks, alert rules
// and their alerts. The prediction log is not here: it is node-local.
const (
	prefixMonitor    = "mo/" // mo/<deployment>                 -> structs.Monitor
	prefixDriftCheck = "dc/" // dc/<deployment>/<unix nanos, 20 digits> -> structs.DriftCheck
	prefixAlertRule  = "ar/" // ar/<name>                       -> structs.AlertRule
	prefixAlert      = "al/" // al/<rule>                       -> structs.Alert
)

func monitorKey(deployment string) string       { return prefixMonitor + deployment }
func driftCheckPrefix(deployment string) string { return prefixDriftCheck + deployment + "/" }
func driftCheckKey(deployment string, at time.Time) string {
	return driftCheckPrefix(deployment) + fmt.Sprintf("%020d", at.UnixNano())
}
func alertRuleKey(name string) string { return prefixAlertRule + name }
func alertKey(rule string) string     { return prefixAlert + rule }

var _ = registerCommands(structs.RangePipelines,
	handler{structs.MonitorPutType, applyMonitorPut},
	handler{structs.MonitorDeleteType, applyMonitorDelete},
	handler{structs.DriftCheckPutType, applyDriftCheckPut},
	handler{structs.AlertRulePutType, applyAlertRulePut},
	handler{structs.AlertRuleDeleteType, applyAlertRuleDelete},
	handler{structs.AlertStateType, applyAlertState},
	handler{structs.AlertActionType, applyAlertAction},
	handler{structs.AlertAckType, applyAlertAck},
)

// applyMonitorPut creates or replaces a deployment's monitor. The
// deployment and the reference must exist, and the reference must have
// every column the monitor reads.
func applyMonitorPut(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.MonitorPutRequest
	if err := decodeBody(structs.MonitorPutType, body, &req); err != nil {
		return nil, err
	}
	m := req.Monitor
	if err := m.Spec.Validate(); err != nil {
		return nil, err
	}
	if _, err := getNamed[structs.Deployment](tx, deploymentKey(m.Spec.Deployment), "deployment", m.Spec.Deployment); err != nil {
		return nil, err
	}
	name, version, err := structs.ParseDatasetRef("reference", m.Reference)
	if err != nil || version == 0 {
		return nil, structs.Errorf(structs.CodeInvalid, "reference %q must name a dataset version, name:version", m.Reference)
	}
	ref, err := getNamed[structs.DatasetVersion](tx, datasetVersionKey(name, version), "dataset version", m.Reference)
	if err != nil {
		return nil, err
	}
	if len(m.Columns) == 0 || len(m.Columns) > structs.MaxMonitorFeatures {
		return nil, structs.Errorf(structs.CodeInvalid, "columns names %d columns: a monitor reads 1 to %d", len(m.Columns), structs.MaxMonitorFeatures)
	}
	for i, c := range m.Columns {
		if !slices.ContainsFunc(ref.Columns, func(d structs.DatasetColumn) bool { return d.Name == c }) {
			return nil, structs.Errorf(structs.CodeInvalid, "feature_columns[%d]: dataset %s has no column %q", i, m.Reference, c)
		}
	}
	var old structs.Monitor
	found, err := tx.get(monitorKey(m.Spec.Deployment), &old)
	if err != nil {
		return nil, err
	}
	if found {
		m.CreatedAt, m.LastCheckAt = old.CreatedAt, old.LastCheckAt
	}
	m.ModifyIndex = tx.index
	if err := tx.put(monitorKey(m.Spec.Deployment), &m); err != nil {
		return nil, err
	}
	return utcMonitor(&m), nil
}

// applyMonitorDelete removes a monitor and its checks.
func applyMonitorDelete(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.NameRequest
	if err := decodeBody(structs.MonitorDeleteType, body, &req); err != nil {
		return nil, err
	}
	if _, err := getNamed[structs.Monitor](tx, monitorKey(req.Name), "monitor of deployment", req.Name); err != nil {
		return nil, err
	}
	for _, k := range tx.keysUnder(driftCheckPrefix(req.Name)) {
		tx.del(k)
	}
	tx.del(monitorKey(req.Name))
	return nil, nil
}

// applyDriftCheckPut records a check and its time on the monitor, and
// drops the oldest checks beyond MaxDriftChecks. A check older than the
// monitor's last one is kept in the series but does not move it back.
func applyDriftCheckPut(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.DriftCheckPutRequest
	if err := decodeBody(structs.DriftCheckPutType, body, &req); err != nil {
		return nil, err
	}
	c := req.Check
	if err := c.Validate(); err != nil {
		return nil, err
	}
	m, err := getNamed[structs.Monitor](tx, monitorKey(c.Deployment), "monitor of deployment", c.Deployment)
	if err != nil {
		return nil, err
	}
	if err := tx.put(driftCheckKey(c.Deployment, c.CheckedAt), &c); err != nil {
		return nil, err
	}
	if c.CheckedAt.After(m.LastCheckAt) {
		m.LastCheckAt = c.CheckedAt
		m.ModifyIndex = tx.index
		if err := tx.put(monitorKey(c.Deployment), m); err != nil {
			return nil, err
		}
	}
	// keysUnder sees the stored keys, not this command's own write.
	keys := tx.keysUnder(driftCheckPrefix(c.Deployment))
	if own := driftCheckKey(c.Deployment, c.CheckedAt); !slices.Contains(keys, own) {
		keys = append(keys, own)
		slices.Sort(keys)
	}
	for len(keys) > structs.MaxDriftChecks {
		tx.del(keys[0])
		keys = keys[1:]
	}
	return nil, nil
}

// applyAlertRulePut creates or replaces a rule; its alert starts again
// from inactive. The node has compiled the condition against the
// deployment's monitor; Apply checks what the registry holds.
func applyAlertRulePut(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.AlertRulePutRequest
	if err := decodeBody(structs.AlertRulePutType, body, &req); err != nil {
		return nil, err
	}
	r := req.Rule
	if err := r.Spec.Validate(); err != nil {
		return nil, err
	}
	if _, err := getNamed[structs.Deployment](tx, deploymentKey(r.Spec.Deployment), "deployment", r.Spec.Deployment); err != nil {
		return nil, err
	}
	for i, a := range r.Spec.Actions {
		if a.Kind != structs.ActionRunPipeline {
			continue
		}
		if _, err := getNamed[structs.Pipeline](tx, pipelineKey(a.Pipeline), "pipeline", a.Pipeline); err != nil {
			return nil, structs.Errorf(structs.CodeInvalid, "actions[%d].pipeline: %v", i, err)
		}
	}
	at := r.CreatedAt // the time of this put
	var old structs.AlertRule
	found, err := tx.get(alertRuleKey(r.Spec.Name), &old)
	if err != nil {
		return nil, err
	}
	if found {
		r.CreatedAt = old.CreatedAt
	}
	r.ModifyIndex = tx.index
	if err := tx.put(alertRuleKey(r.Spec.Name), &r); err != nil {
		return nil, err
	}
	// The firing count carries over, so that a late action status of a
	// firing before the put can never pass for one of a later firing.
	a := structs.Alert{Rule: r.Spec.Name, Deployment: r.Spec.Deployment, State: structs.AlertInactive, Since: at, ModifyIndex: tx.index}
	var prev structs.Alert
	if found, err := tx.get(alertKey(r.Spec.Name), &prev); err != nil {
		return nil, err
	} else if found {
		a.Fired, a.FiredAt = prev.Fired, prev.FiredAt
	}
	if err := tx.put(alertKey(r.Spec.Name), &a); err != nil {
		return nil, err
	}
	return utcAlertRule(&r), nil
}

func applyAlertRuleDelete(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.NameRequest
	if err := decodeBody(structs.AlertRuleDeleteType, body, &req); err != nil {
		return nil, err
	}
	if _, err := getNamed[structs.AlertRule](tx, alertRuleKey(req.Name), "alert rule", req.Name); err != nil {
		return nil, err
	}
	tx.del(alertRuleKey(req.Name))
	tx.del(alertKey(req.Name))
	return nil, nil
}

// alertMoves are the state changes an evaluator may ask for.
var alertMoves = map[string][]string{
	structs.AlertInactive: {structs.AlertPending, structs.AlertFiring},
	structs.AlertResolved: {structs.AlertPending, structs.AlertFiring},
	structs.AlertPending:  {structs.AlertFiring, structs.AlertInactive},
	structs.AlertFiring:   {structs.AlertResolved, structs.AlertFiring},
}

// applyAlertState moves an alert from the state the evaluator read. A move
// to firing counts a firing and sets every action of the rule pending; a
// move from firing to firing only updates the value.
func applyAlertState(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.AlertStateRequest
	if err := decodeBody(structs.AlertStateType, body, &req); err != nil {
		return nil, err
	}
	a, err := getNamed[structs.Alert](tx, alertKey(req.Rule), "alert", req.Rule)
	if err != nil {
		return nil, err
	}
	if a.State != req.From {
		return nil, structs.Errorf(structs.CodeConflict, "alert %q is %s, not %s", req.Rule, a.State, req.From)
	}
	if !slices.Contains(alertMoves[req.From], req.To) {
		return nil, structs.Errorf(structs.CodeInvalid, "alert %q cannot move from %s to %s", req.Rule, req.From, req.To)
	}
	a.Value = req.Value
	if req.To != a.State {
		a.State, a.Since = req.To, req.At
		if req.To == structs.AlertFiring {
			r, err := getNamed[structs.AlertRule](tx, alertRuleKey(req.Rule), "alert rule", req.Rule)
			if err != nil {
				return nil, err
			}
			a.Fired++
			a.FiredAt = req.At
			a.AckedBy, a.AckedAt = "", time.Time{}
			a.Actions = make([]structs.ActionStatus, len(r.Spec.Actions))
			for i, act := range r.Spec.Actions {
				a.Actions[i] = structs.ActionStatus{Kind: act.Kind, Status: structs.ActionPending, At: req.At}
			}
		}
	}
	a.ModifyIndex = tx.index
	if err := tx.put(alertKey(req.Rule), a); err != nil {
		return nil, err
	}
	return utcAlert(a), nil
}

// applyAlertAction records an action's status for the firing it belongs
// to; a status for an earlier firing, or for an action already done or
// failed, is refused (conflict).
func applyAlertAction(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.AlertActionRequest
	if err := decodeBody(structs.AlertActionType, body, &req); err != nil {
		return nil, err
	}
	a, err := getNamed[structs.Alert](tx, alertKey(req.Rule), "alert", req.Rule)
	if err != nil {
		return nil, err
	}
	if req.Fired != a.Fired || req.Index < 0 || req.Index >= len(a.Actions) {
		return nil, structs.Errorf(structs.CodeConflict, "alert %q has no action %d of firing %d", req.Rule, req.Index, req.Fired)
	}
	switch cur := a.Actions[req.Index].Status; cur {
	case structs.ActionDone, structs.ActionFailed:
		return nil, structs.Errorf(structs.CodeConflict, "action %d of alert %q is %s already", req.Index, req.Rule, cur)
	}
	switch req.Status.Status {
	case structs.ActionPending, structs.ActionDone, structs.ActionFailed, structs.ActionRetrying:
	default:
		return nil, structs.Errorf(structs.CodeInvalid, "status %q is not an action status", req.Status.Status)
	}
	st := req.Status
	st.Kind = a.Actions[req.Index].Kind
	st.Error = structs.TruncateUTF8(st.Error, 1024)
	a.Actions[req.Index] = st
	a.ModifyIndex = tx.index
	if err := tx.put(alertKey(req.Rule), a); err != nil {
		return nil, err
	}
	return utcAlert(a), nil
}

// applyAlertAck acknowledges a firing alert, until it fires again.
func applyAlertAck(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.AlertAckRequest
	if err := decodeBody(structs.AlertAckType, body, &req); err != nil {
		return nil, err
	}
	a, err := getNamed[structs.Alert](tx, alertKey(req.Rule), "alert", req.Rule)
	if err != nil {
		return nil, err
	}
	if a.State != structs.AlertFiring {
		return nil, structs.Errorf(structs.CodeConflict, "alert %q is %s: only a firing alert is acknowledged", req.Rule, a.State)
	}
	a.AckedBy, a.AckedAt = req.By, req.At
	a.ModifyIndex = tx.index
	if err := tx.put(alertKey(req.Rule), a); err != nil {
		return nil, err
	}
	return utcAlert(a), nil
}

func utcMonitor(m *structs.Monitor) *structs.Monitor {
	m.CreatedAt, m.LastCheckAt = m.CreatedAt.UTC(), m.LastCheckAt.UTC()
	return m
}

func utcDriftCheck(c *structs.DriftCheck) *structs.DriftCheck {
	c.CheckedAt, c.From, c.To = c.CheckedAt.UTC(), c.From.UTC(), c.To.UTC()
	return c
}

func utcAlertRule(r *structs.AlertRule) *structs.AlertRule {
	r.CreatedAt = r.CreatedAt.UTC()
	return r
}

func utcAlert(a *structs.Alert) *structs.Alert {
	a.Since, a.FiredAt, a.AckedAt = a.Since.UTC(), a.FiredAt.UTC(), a.AckedAt.UTC()
	for i := range a.Actions {
		a.Actions[i].At = a.Actions[i].At.UTC()
	}
	return a
}

func monitorKeyOf(raw []byte) (string, error) {
	var m structs.Monitor
	if err := structs.Decode(raw, &m); err != nil {
		return "", err
	}
	if m.Spec.Deployment == "" {
		return "", fmt.Errorf("monitor without deployment")
	}
	return monitorKey(m.Spec.Deployment), nil
}

func validateMonitorRecord(raw []byte) error {
	var m structs.Monitor
	if err := structs.Decode(raw, &m); err != nil {
		return err
	}
	return recordErrorOrNil(m.Spec.Deployment, m.Spec.Validate())
}

func driftCheckKeyOf(raw []byte) (string, error) {
	var c structs.DriftCheck
	if err := structs.Decode(raw, &c); err != nil {
		return "", err
	}
	if c.Deployment == "" {
		return "", fmt.Errorf("drift check without deployment")
	}
	return driftCheckKey(c.Deployment, c.CheckedAt), nil
}

func validateDriftCheckRecord(raw []byte) error {
	var c structs.DriftCheck
	if err := structs.Decode(raw, &c); err != nil {
		return err
	}
	return recordErrorOrNil(c.Deployment, c.Validate())
}

func alertRuleKeyOf(raw []byte) (string, error) {
	var r structs.AlertRule
	if err := structs.Decode(raw, &r); err != nil {
		return "", err
	}
	if r.Spec.Name == "" {
		return "", fmt.Errorf("alert rule without name")
	}
	return alertRuleKey(r.Spec.Name), nil
}

func validateAlertRuleRecord(raw []byte) error {
	var r structs.AlertRule
	if err := structs.Decode(raw, &r); err != nil {
		return err
	}
	return recordErrorOrNil(r.Spec.Name, r.Spec.Validate())
}

func alertKeyOf(raw []byte) (string, error) {
	var a structs.Alert
	if err := structs.Decode(raw, &a); err != nil {
		return "", err
	}
	if a.Rule == "" {
		return "", fmt.Errorf("alert without rule")
	}
	return alertKey(a.Rule), nil
}

func validateAlertRecord(raw []byte) error {
	var a structs.Alert
	if err := structs.Decode(raw, &a); err != nil {
		return err
	}
	if err := structs.ValidateName("rule", a.Rule); err != nil {
		return recordError(a.Rule, err)
	}
	if _, ok := alertMoves[a.State]; !ok {
		return recordError(a.Rule, structs.Errorf(structs.CodeInvalid, "state %q is unknown: one of %s", a.State, strings.Join([]string{structs.AlertInactive, structs.AlertPending, structs.AlertFiring, structs.AlertResolved}, ", ")))
	}
	return nil
}
