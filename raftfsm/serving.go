package raftfsm

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/vmihailenco/msgpack/v5"
)

// Serving records (DESIGN.md §6): versions under their model, deployments by
// model name, allocations by ID.
const (
	prefixVersion    = "v/" // v/<model>/<version, 20 digits> -> structs.ModelVersion
	prefixDeployment = "d/" // d/<model name>                  -> structs.Deployment
	prefixAlloc      = "a/" // a/<allocation id>               -> structs.Allocation
)

// versionKey zero-pads the number so that versions sort numerically.
// isServingKey reports keys whose records routing reads.
func isServingKey(key string) bool {
	return strings.HasPrefix(key, prefixVersion) || strings.HasPrefix(key, prefixDeployment) || strings.HasPrefix(key, prefixAlloc)
}

func versionKey(model string, v uint64) string {
	return fmt.Sprintf("%s%s/%020d", prefixVersion, model, v)
}
func versionPrefix(model string) string { return prefixVersion + model + "/" }
func deploymentKey(name string) string  { return prefixDeployment + name }
func allocKey(id string) string         { return prefixAlloc + id }
func versionCursor(v uint64) string     { return fmt.Sprintf("%020d", v) }

func init() {
	commands[structs.VersionCreateType] = applyVersionCreate
	commands[structs.VersionDeleteType] = applyVersionDelete
	commands[structs.AliasSetType] = applyAliasSet
	commands[structs.DeploymentPutType] = applyDeploymentPut
	commands[structs.DeploymentRollbackType] = applyDeploymentRollback
	commands[structs.DeploymentDeleteType] = applyDeploymentDelete
	commands[structs.AllocPlanType] = applyAllocPlan
	commands[structs.AllocStatusType] = applyAllocStatus
}

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

// keysUnder lists the keys under prefix as the batch's transaction sees them.
// Commands use it to delete a record's dependents; the command's own staged
// writes are not included, which no caller needs.
func (t *applyTxn) keysUnder(prefix string) []string {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte(prefix)
	opts.PrefetchValues = false
	it := t.txn.NewIterator(opts)
	defer it.Close()
	var keys []string
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, string(it.Item().KeyCopy(nil)))
	}
	return keys
}

func (t *applyTxn) model(name string) (*structs.Model, error) {
	var m structs.Model
	found, err := t.get(modelKey(name), &m)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "model %q not found", name)
	}
	return &m, nil
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
	tx.serving = true
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

func applyAllocPlan(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.AllocPlanRequest
	if err := decodeBody(structs.AllocPlanType, body, &req); err != nil {
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
		msg := truncateAllocMessage(u.Message)
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

// truncateAllocMessage cuts msg to at most structs.MaxAllocMessageLen bytes,
// backing off to the start of a UTF-8 sequence so that a multi-byte character
// is not split.
func truncateAllocMessage(msg string) string {
	n := structs.MaxAllocMessageLen
	if len(msg) <= n {
		return msg
	}
	for i := 1; i < utf8.UTFMax && n > 0 && !utf8.RuneStart(msg[n]); i++ {
		n--
	}
	return msg[:n]
}

// Version returns one version of a model, or a not_found error.
func (t *Txn) Version(model string, v uint64) (*structs.ModelVersion, error) {
	if t.err != nil {
		return nil, t.err
	}
	var mv structs.ModelVersion
	found, err := getRecord(t.txn, versionKey(model, v), &mv)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "model %q has no version %d", model, v)
	}
	return utcVersion(&mv), nil
}

// Versions returns up to limit versions of a model numbered above cursor (a
// version number in decimal, "" for the start), in order, and the cursor of the
// next page ("" when this page is the last).
func (t *Txn) Versions(model, cursor string, limit int) (items []*structs.ModelVersion, next string, err error) {
	if t.err != nil {
		return nil, "", t.err
	}
	if cursor != "" {
		n, perr := strconv.ParseUint(cursor, 10, 64)
		if perr != nil {
			return nil, "", structs.Errorf(structs.CodeInvalid, "cursor %q is not a version number", cursor)
		}
		cursor = versionCursor(n)
	}
	err = t.scan(versionPrefix(model), cursor, limit, func(val []byte) error {
		v := new(structs.ModelVersion)
		if err := msgpack.Unmarshal(val, v); err != nil {
			return err
		}
		items = append(items, utcVersion(v))
		return nil
	}, func() { next = strconv.FormatUint(items[len(items)-1].Version, 10) })
	return items, next, err
}

// AllVersions calls fn for every version of every model, for the blob collector.
func (t *Txn) AllVersions(fn func(*structs.ModelVersion)) error {
	if t.err != nil {
		return t.err
	}
	return t.scan(prefixVersion, "", 0, func(val []byte) error {
		v := new(structs.ModelVersion)
		if err := msgpack.Unmarshal(val, v); err != nil {
			return err
		}
		fn(utcVersion(v))
		return nil
	}, nil)
}

// Deployment returns the named deployment, or a not_found error.
func (t *Txn) Deployment(name string) (*structs.Deployment, error) {
	if t.err != nil {
		return nil, t.err
	}
	var d structs.Deployment
	found, err := getRecord(t.txn, deploymentKey(name), &d)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "deployment %q not found", name)
	}
	return utcDeployment(&d), nil
}

// Deployments returns up to limit deployments whose names sort after cursor.
func (t *Txn) Deployments(cursor string, limit int) (items []*structs.Deployment, next string, err error) {
	if t.err != nil {
		return nil, "", t.err
	}
	err = t.scan(prefixDeployment, cursor, limit, func(val []byte) error {
		d := new(structs.Deployment)
		if err := msgpack.Unmarshal(val, d); err != nil {
			return err
		}
		items = append(items, utcDeployment(d))
		return nil
	}, func() { next = items[len(items)-1].Name })
	return items, next, err
}

// Allocations returns every allocation, in ID order.
func (t *Txn) Allocations() ([]*structs.Allocation, error) {
	if t.err != nil {
		return nil, t.err
	}
	var out []*structs.Allocation
	err := t.scan(prefixAlloc, "", 0, func(val []byte) error {
		a := new(structs.Allocation)
		if err := msgpack.Unmarshal(val, a); err != nil {
			return err
		}
		out = append(out, utcAlloc(a))
		return nil
	}, nil)
	return out, err
}
