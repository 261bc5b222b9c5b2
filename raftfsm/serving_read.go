package raftfsm

import (
	"strconv"

	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/vmihailenco/msgpack/v5"
)

// Reads of serving records: versions, deployments, allocations.

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
