package raftfsm

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Serving records (DESIGN.md §6): versions under their model, deployments by
// model name, allocations by ID.
const (
	prefixVersion    = "v/" // v/<model>/<version, 20 digits> -> structs.ModelVersion
	prefixDeployment = "d/" // d/<model name>                  -> structs.Deployment
	prefixAlloc      = "a/" // a/<allocation id>               -> structs.Allocation
)

// versionKey zero-pads the number so that versions sort numerically.
func versionKey(model string, v uint64) string {
	return fmt.Sprintf("%s%s/%020d", prefixVersion, model, v)
}
func versionPrefix(model string) string { return prefixVersion + model + "/" }
func deploymentKey(name string) string  { return prefixDeployment + name }
func allocKey(id string) string         { return prefixAlloc + id }
func versionCursor(v uint64) string     { return fmt.Sprintf("%020d", v) }

var _ = registerCommands(structs.RangeServing,
	handler{structs.VersionCreateType, applyVersionCreate},
	handler{structs.VersionDeleteType, applyVersionDelete},
	handler{structs.AliasSetType, applyAliasSet},
	handler{structs.DeploymentPutType, applyDeploymentPut},
	handler{structs.DeploymentRollbackType, applyDeploymentRollback},
	handler{structs.DeploymentDeleteType, applyDeploymentDelete},
	handler{structs.AllocPlanType, applyAllocPlanUnchecked},
	handler{structs.AllocStatusType, applyAllocStatus},
	handler{structs.AllocPlanFitType, applyAllocPlan},
	handler{structs.VersionHoldersType, applyVersionHolders},
)

func utcVersion(v *structs.ModelVersion) *structs.ModelVersion {
	v.CreatedAt = v.CreatedAt.UTC()
	return v
}

func utcDeployment(d *structs.Deployment) *structs.Deployment {
	d.CreatedAt, d.UpdatedAt = d.CreatedAt.UTC(), d.UpdatedAt.UTC()
	return d
}

func utcAlloc(a *structs.Allocation) *structs.Allocation {
	a.CreatedAt = a.CreatedAt.UTC()
	return a
}

func (t *applyTxn) deployment(name string) (*structs.Deployment, error) {
	var d structs.Deployment
	found, err := t.get(deploymentKey(name), &d)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "deployment %q not found", name)
	}
	return &d, nil
}

func (t *applyTxn) versionExists(model string, v uint64) (bool, error) {
	var mv structs.ModelVersion
	return t.get(versionKey(model, v), &mv)
}

func applyVersionCreate(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.VersionCreateRequest
	if err := decodeBody(structs.VersionCreateType, body, &req); err != nil {
		return nil, err
	}
	v := req.Version
	if err := v.Validate(); err != nil {
		return nil, err
	}
	m, err := tx.model(v.Model)
	if err != nil {
		return nil, err
	}
	m.LatestVersion++
	m.ModifyIndex = tx.index
	v.Version = m.LatestVersion
	v.CreateIndex = tx.index
	if err := tx.put(modelKey(m.Name), m); err != nil {
		return nil, err
	}
	if err := tx.put(versionKey(v.Model, v.Version), &v); err != nil {
		return nil, err
	}
	return utcVersion(&v), nil
}

func applyVersionDelete(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.VersionDeleteRequest
	if err := decodeBody(structs.VersionDeleteType, body, &req); err != nil {
		return nil, err
	}
	m, err := tx.model(req.Model)
	if err != nil {
		return nil, err
	}
	ok, err := tx.versionExists(req.Model, req.Version)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, structs.Errorf(structs.CodeNotFound, "model %q has no version %d", req.Model, req.Version)
	}
	var d structs.Deployment
	found, err := tx.get(deploymentKey(req.Model), &d)
	if err != nil {
		return nil, err
	}
	if found && slices.Contains(d.Traffic.ServedVersions(), req.Version) {
		return nil, structs.Errorf(structs.CodeConflict, "version %d of model %q is deployed; change the deployment first", req.Version, req.Model)
	}
	changed := false
	for _, alias := range sortedAliasKeys(m.Aliases) {
		if m.Aliases[alias] == req.Version {
			delete(m.Aliases, alias)
			changed = true
		}
	}
	if changed {
		m.ModifyIndex = tx.index
		if err := tx.put(modelKey(m.Name), m); err != nil {
			return nil, err
		}
	}
	tx.del(versionKey(req.Model, req.Version))
	return nil, nil
}

func sortedAliasKeys(m structs.VersionMap) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func applyAliasSet(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.AliasSetRequest
	if err := decodeBody(structs.AliasSetType, body, &req); err != nil {
		return nil, err
	}
	if err := structs.ValidateName("alias", req.Alias); err != nil {
		return nil, err
	}
	m, err := tx.model(req.Model)
	if err != nil {
		return nil, err
	}
	if req.Version == 0 {
		if _, ok := m.Aliases[req.Alias]; !ok {
			return nil, structs.Errorf(structs.CodeNotFound, "model %q has no alias %q", req.Model, req.Alias)
		}
		delete(m.Aliases, req.Alias)
	} else {
		ok, err := tx.versionExists(req.Model, req.Version)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, structs.Errorf(structs.CodeNotFound, "model %q has no version %d", req.Model, req.Version)
		}
		if m.Aliases == nil {
			m.Aliases = make(structs.VersionMap)
		}
		m.Aliases[req.Alias] = req.Version
		if len(m.Aliases) > structs.MaxAliases {
			return nil, structs.Errorf(structs.CodeInvalid, "model %q would have %d aliases, more than %d", req.Model, len(m.Aliases), structs.MaxAliases)
		}
	}
	m.UpdatedAt = req.UpdatedAt
	m.ModifyIndex = tx.index
	if err := tx.put(modelKey(m.Name), m); err != nil {
		return nil, err
	}
	tx.touch(TableRoutes)
	return utcModel(m), nil
}

// checkServedVersions reports the first version the traffic names that the
// model does not have.
func checkServedVersions(tx *applyTxn, model string, t *structs.Traffic) error {
	for _, v := range t.ServedVersions() {
		ok, err := tx.versionExists(model, v)
		if err != nil {
			return err
		}
		if !ok {
			return structs.Errorf(structs.CodeNotFound, "model %q has no version %d", model, v)
		}
	}
	return nil
}

func sameTraffic(a, b *structs.Traffic) bool {
	return a.Shadow == b.Shadow && slices.Equal(a.Versions, b.Versions)
}

func applyDeploymentPut(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.DeploymentPutRequest
	if err := decodeBody(structs.DeploymentPutType, body, &req); err != nil {
		return nil, err
	}
	d := req.Deployment
	if err := d.Validate(); err != nil {
		return nil, err
	}
	if _, err := tx.model(d.Name); err != nil {
		return nil, err
	}
	if err := checkServedVersions(tx, d.Name, &d.Traffic); err != nil {
		return nil, err
	}
	if d.FeatureService != "" {
		if _, err := getNamed[structs.FeatureService](tx, featureServiceKey(d.FeatureService), "feature service", d.FeatureService); err != nil {
			return nil, structs.Errorf(structs.CodeInvalid, "feature_service: %v", err)
		}
	}
	var old structs.Deployment
	found, err := tx.get(deploymentKey(d.Name), &old)
	if err != nil {
		return nil, err
	}
	d.History = nil
	d.CreateIndex = tx.index
	if found {
		d.CreatedAt, d.CreateIndex, d.History = old.CreatedAt, old.CreateIndex, old.History
		if !sameTraffic(&old.Traffic, &d.Traffic) {
			d.History = append(d.History, old.Traffic)
			if n := len(d.History) - structs.MaxRollbackHistory; n > 0 {
				d.History = d.History[n:]
			}
		}
	}
	d.ModifyIndex = tx.index
	if err := tx.put(deploymentKey(d.Name), &d); err != nil {
		return nil, err
	}
	return utcDeployment(&d), nil
}

func applyDeploymentRollback(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.DeploymentRollbackRequest
	if err := decodeBody(structs.DeploymentRollbackType, body, &req); err != nil {
		return nil, err
	}
	d, err := tx.deployment(req.Name)
	if err != nil {
		return nil, err
	}
	if len(d.History) == 0 {
		return nil, structs.Errorf(structs.CodeConflict, "deployment %q has no earlier traffic to roll back to", req.Name)
	}
	prev := d.History[len(d.History)-1]
	if err := checkServedVersions(tx, d.Name, &prev); err != nil {
		// Only a rejection is reworded: a store failure must stay one, or Apply
		// would count it as a deterministic rejection and go on.
		var ce *structs.CodedError
		if !errors.As(err, &ce) {
			return nil, err
		}
		return nil, structs.Errorf(ce.Code, "cannot roll back deployment %q: %s", req.Name, ce.Message)
	}
	d.History = d.History[:len(d.History)-1]
	d.Traffic = prev
	d.UpdatedAt = req.UpdatedAt
	d.ModifyIndex = tx.index
	if err := tx.put(deploymentKey(d.Name), d); err != nil {
		return nil, err
	}
	return utcDeployment(d), nil
}

func applyDeploymentDelete(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.DeploymentDeleteRequest
	if err := decodeBody(structs.DeploymentDeleteType, body, &req); err != nil {
		return nil, err
	}
	if _, err := tx.deployment(req.Name); err != nil {
		return nil, err
	}
	if err := deleteAllocs(tx, func(a *structs.Allocation) bool { return a.Deployment == req.Name }); err != nil {
		return nil, err
	}
	// Its monitor and drift checks go with it; alert rules stay (they are
	// not evaluated while the deployment does not exist), so that deleting
	// and deploying again keeps them.
	for _, k := range tx.keysUnder(driftCheckPrefix(req.Name)) {
		tx.del(k)
	}
	if found, err := tx.get(monitorKey(req.Name), &structs.Monitor{}); err != nil {
		return nil, err
	} else if found {
		tx.del(monitorKey(req.Name))
	}
	tx.del(deploymentKey(req.Name))
	return nil, nil
}

// deleteAllocs stages the deletion of every allocation match selects.
func deleteAllocs(tx *applyTxn, match func(*structs.Allocation) bool) error {
	for _, k := range tx.keysUnder(prefixAlloc) {
		var a structs.Allocation
		if _, err := tx.get(k, &a); err != nil {
			return err
		}
		if match(&a) {
			tx.del(k)
		}
	}
	return nil
}

// applyAllocPlan applies the leader's placement (AllocPlanFitType):
// removes first, then adds, all or nothing. Each add is checked against the
// state as it is now, not as the leader saw it: its deployment serves its
// version, its node exists, its ID is new, and it fits beside the node's
// other allocations (capacity.go).
func applyAllocPlan(tx *applyTxn, body []byte) (interface{}, error) {
	return applyPlan(tx, structs.AllocPlanFitType, body, true)
}

// applyAllocPlanUnchecked applies an AllocPlanType entry as binaries before
// the capacity check did, so that a log replayed reaches the same state.
// Leaders propose AllocPlanFitType now.
func applyAllocPlanUnchecked(tx *applyTxn, body []byte) (interface{}, error) {
	return applyPlan(tx, structs.AllocPlanType, body, false)
}

func applyPlan(tx *applyTxn, t structs.MessageType, body []byte, checkFit bool) (interface{}, error) {
	var req structs.AllocPlanRequest
	if err := decodeBody(t, body, &req); err != nil {
		return nil, err
	}
	for _, id := range req.Remove {
		var a structs.Allocation
		found, err := tx.get(allocKey(id), &a)
		if err != nil {
			return nil, err
		}
		if found {
			tx.del(allocKey(id))
		}
	}
	// Read after the removes: a plan may reuse what it frees.
	var ledger capacityLedger
	if checkFit && len(req.Add) > 0 {
		nodes := make([]string, len(req.Add))
		for i := range req.Add {
			nodes[i] = req.Add[i].NodeID
		}
		var err error
		if ledger, err = loadLedger(tx, nodes); err != nil {
			return nil, err
		}
	}
	deployments := map[string]*structs.Deployment{}
	for i, a := range req.Add {
		if a.ID == "" || len(a.ID) > 64 || strings.Contains(a.ID, "/") {
			return nil, structs.Errorf(structs.CodeInvalid, "add[%d].id %q is invalid", i, a.ID)
		}
		d, ok := deployments[a.Deployment]
		if !ok {
			d = new(structs.Deployment)
			found, err := tx.get(deploymentKey(a.Deployment), d)
			if err != nil {
				return nil, err
			}
			if !found {
				return nil, structs.Errorf(structs.CodeNotFound, "add[%d]: deployment %q not found", i, a.Deployment)
			}
			deployments[a.Deployment] = d
		}
		if !slices.Contains(d.Traffic.ServedVersions(), a.Version) {
			return nil, structs.Errorf(structs.CodeInvalid, "add[%d]: deployment %q does not serve version %d", i, a.Deployment, a.Version)
		}
		var n structs.Node
		found, err := tx.get(nodeKey(a.NodeID), &n)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, structs.Errorf(structs.CodeNotFound, "add[%d]: node %q not found", i, a.NodeID)
		}
		var existing structs.Allocation
		if found, err := tx.get(allocKey(a.ID), &existing); err != nil {
			return nil, err
		} else if found {
			return nil, structs.Errorf(structs.CodeConflict, "add[%d]: allocation %q exists", i, a.ID)
		}
		if checkFit {
			if err := ledger.place(i, &n, &a); err != nil {
				return nil, err
			}
		}
		a.State, a.Message = structs.AllocPending, ""
		a.CreateIndex, a.ModifyIndex = tx.index, tx.index
		if err := tx.put(allocKey(a.ID), &a); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

func applyAllocStatus(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.AllocStatusRequest
	if err := decodeBody(structs.AllocStatusType, body, &req); err != nil {
		return nil, err
	}
	applied := 0
	for _, u := range req.Updates {
		switch u.State {
		case structs.AllocPending, structs.AllocRunning, structs.AllocFailed:
		default:
			continue
		}
		var a structs.Allocation
		found, err := tx.get(allocKey(u.ID), &a)
		if err != nil {
			return nil, err
		}
		if !found || a.NodeID != u.NodeID {
			continue
		}
		// Compared after truncation, so that a node repeating a long message
		// does not rewrite the record each time.
		msg := structs.TruncateUTF8(u.Message, structs.MaxAllocMessageLen)
		if a.State == u.State && a.Message == msg {
			continue
		}
		a.State, a.Message = u.State, msg
		a.ModifyIndex = tx.index
		if err := tx.put(allocKey(a.ID), &a); err != nil {
			return nil, err
		}
		applied++
	}
	return applied, nil
}

func versionKeyOf(raw []byte) (string, error) {
	var v structs.ModelVersion
	if err := structs.Decode(raw, &v); err != nil {
		return "", err
	}
	if v.Model == "" || v.Version == 0 {
		return "", fmt.Errorf("version record without model or number")
	}
	return versionKey(v.Model, v.Version), nil
}

func deploymentKeyOf(raw []byte) (string, error) {
	var d structs.Deployment
	if err := structs.Decode(raw, &d); err != nil {
		return "", err
	}
	if d.Name == "" {
		return "", fmt.Errorf("deployment record without name")
	}
	return deploymentKey(d.Name), nil
}

func allocKeyOf(raw []byte) (string, error) {
	var a structs.Allocation
	if err := structs.Decode(raw, &a); err != nil {
		return "", err
	}
	if a.ID == "" {
		return "", fmt.Errorf("allocation record without id")
	}
	return allocKey(a.ID), nil
}

// applyVersionHolders replaces the holders of a version's artifact.
func applyVersionHolders(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.VersionHoldersRequest
	if err := decodeBody(structs.VersionHoldersType, body, &req); err != nil {
		return nil, err
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var v structs.ModelVersion
	found, err := tx.get(versionKey(req.Model, req.Version), &v)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "version %d of model %q not found", req.Version, req.Model)
	}
	if v.Digest != req.Digest {
		return nil, structs.Errorf(structs.CodeConflict, "version %d of model %q has artifact %.12s, not %.12s", req.Version, req.Model, v.Digest, req.Digest)
	}
	v.Holders = slices.Clone(req.Holders)
	if err := tx.put(versionKey(req.Model, req.Version), &v); err != nil {
		return nil, err
	}
	return utcVersion(&v), nil
}
