package raftfsm

import (
	"strconv"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Reads of serving records: versions, deployments, allocations.

// Version returns one version of a model, or a not_found error.
func (t *Txn) Version(model string, v uint64) (*structs.ModelVersion, error) {
	return readOne(t, versionKey(model, v), utcVersion, func() error {
		return structs.Errorf(structs.CodeNotFound, "model %q has no version %d", model, v)
	})
}

// versionCursorOf turns a page cursor given as a version number in decimal
// ("" for the start) into the key suffix it stands for.
func versionCursorOf(cursor string) (string, error) {
	if cursor == "" {
		return "", nil
	}
	n, err := strconv.ParseUint(cursor, 10, 64)
	if err != nil {
		return "", structs.Errorf(structs.CodeInvalid, "cursor %q is not a version number", cursor)
	}
	return versionCursor(n), nil
}

// Versions returns up to limit versions of a model numbered above cursor (a
// version number in decimal, "" for the start), in order, and the cursor of the
// next page ("" when this page is the last).
func (t *Txn) Versions(model, cursor string, limit int) ([]*structs.ModelVersion, string, error) {
	cursor, err := versionCursorOf(cursor)
	if err != nil {
		return nil, "", err
	}
	return readPage(t, versionPrefix(model), cursor, limit, utcVersion,
		func(v *structs.ModelVersion) string { return strconv.FormatUint(v.Version, 10) })
}

// AllVersions calls fn for every version of every model.
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
	return readOne(t, deploymentKey(name), utcDeployment, func() error {
		return structs.Errorf(structs.CodeNotFound, "deployment %q not found", name)
	})
}

// Deployments returns up to limit deployments whose names sort after cursor.
func (t *Txn) Deployments(cursor string, limit int) ([]*structs.Deployment, string, error) {
	return readPage(t, prefixDeployment, cursor, limit, utcDeployment, func(d *structs.Deployment) string { return d.Name })
}

// Allocations returns every allocation, in ID order.
func (t *Txn) Allocations() ([]*structs.Allocation, error) {
	out, _, err := readPage(t, prefixAlloc, "", 0, utcAlloc, nil)
	return out, err
}
