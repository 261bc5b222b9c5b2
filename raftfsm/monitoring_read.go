package raftfsm

import (
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Monitor returns a deployment's monitor.
func (t *Txn) Monitor(deployment string) (*structs.Monitor, error) {
	return readOne(t, monitorKey(deployment), utcMonitor, func() error {
		return structs.Errorf(structs.CodeNotFound, "deployment %q has no monitor", deployment)
	})
}

// Monitors returns every monitor, by deployment.
func (t *Txn) Monitors() ([]*structs.Monitor, error) {
	items, _, err := readPage(t, prefixMonitor, "", 0, utcMonitor, func(m *structs.Monitor) string { return m.Spec.Deployment })
	return items, err
}

// DriftChecks returns a deployment's checks at or after since, oldest
// first, at most limit of the latest (limit <= 0: all).
func (t *Txn) DriftChecks(deployment string, since time.Time, limit int) ([]*structs.DriftCheck, error) {
	cursor := ""
	if since.UnixNano() > 0 {
		cursor = driftCheckKey(deployment, since.Add(-1))[len(driftCheckPrefix(deployment)):]
	}
	items, _, err := readPage(t, driftCheckPrefix(deployment), cursor, 0, utcDriftCheck, func(c *structs.DriftCheck) string { return "" })
	if err != nil {
		return nil, err
	}
	if limit > 0 && len(items) > limit {
		items = items[len(items)-limit:]
	}
	return items, nil
}

// LatestDriftCheck returns a deployment's last check, or nil.
func (t *Txn) LatestDriftCheck(deployment string) (*structs.DriftCheck, error) {
	m, err := t.Monitor(deployment)
	if err != nil || m.LastCheckAt.IsZero() {
		return nil, err
	}
	c, err := readOne(t, driftCheckKey(deployment, m.LastCheckAt), utcDriftCheck, func() error { return nil })
	if c == nil && err == nil {
		return nil, nil
	}
	return c, err
}

// AlertRule returns an alert rule by name.
func (t *Txn) AlertRule(name string) (*structs.AlertRule, error) {
	return readOne(t, alertRuleKey(name), utcAlertRule, func() error {
		return structs.Errorf(structs.CodeNotFound, "alert rule %q not found", name)
	})
}

// AlertRules returns every alert rule, by name.
func (t *Txn) AlertRules() ([]*structs.AlertRule, error) {
	items, _, err := readPage(t, prefixAlertRule, "", 0, utcAlertRule, func(r *structs.AlertRule) string { return r.Spec.Name })
	return items, err
}

// Alert returns a rule's alert.
func (t *Txn) Alert(rule string) (*structs.Alert, error) {
	return readOne(t, alertKey(rule), utcAlert, func() error {
		return structs.Errorf(structs.CodeNotFound, "alert rule %q not found", rule)
	})
}

// Alerts returns every rule's alert, by rule.
func (t *Txn) Alerts() ([]*structs.Alert, error) {
	items, _, err := readPage(t, prefixAlert, "", 0, utcAlert, func(a *structs.Alert) string { return a.Rule })
	return items, err
}
