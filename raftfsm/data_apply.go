package raftfsm

import (
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Data records (DESIGN.md §7): datasets by name, their versions under them.
const (
	prefixDataset        = "ds/" // ds/<name>                       -> structs.Dataset
	prefixDatasetVersion = "dv/" // dv/<name>/<version, 20 digits>  -> structs.DatasetVersion
)

func datasetKey(name string) string { return prefixDataset + name }
func datasetVersionKey(name string, v uint64) string {
	return fmt.Sprintf("%s%s/%020d", prefixDatasetVersion, name, v)
}
func datasetVersionPrefix(name string) string { return prefixDatasetVersion + name + "/" }

var _ = registerCommands(structs.RangeData,
	handler{structs.DatasetVersionCreateType, applyDatasetVersionCreate},
	handler{structs.DatasetVersionDeleteType, applyDatasetVersionDelete},
	handler{structs.DatasetDeleteType, applyDatasetDelete},
	handler{structs.DatasetHoldersType, applyDatasetHolders},
)

func utcDataset(d *structs.Dataset) *structs.Dataset {
	d.CreatedAt, d.UpdatedAt = d.CreatedAt.UTC(), d.UpdatedAt.UTC()
	return d
}

func utcDatasetVersion(v *structs.DatasetVersion) *structs.DatasetVersion {
	v.CreatedAt = v.CreatedAt.UTC()
	return v
}

// applyDatasetVersionCreate numbers the version after the dataset's latest,
// creating the dataset on its first version.
func applyDatasetVersionCreate(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.DatasetVersionCreateRequest
	if err := decodeBody(structs.DatasetVersionCreateType, body, &req); err != nil {
		return nil, err
	}
	v := req.Version
	if err := v.Validate(); err != nil {
		return nil, err
	}
	var d structs.Dataset
	found, err := tx.get(datasetKey(v.Dataset), &d)
	if err != nil {
		return nil, err
	}
	if !found {
		d = structs.Dataset{Name: v.Dataset, CreatedAt: v.CreatedAt, CreateIndex: tx.index}
	}
	d.LatestVersion++
	d.UpdatedAt = v.CreatedAt
	d.ModifyIndex = tx.index
	v.Version = d.LatestVersion
	v.CreateIndex = tx.index
	if err := tx.put(datasetKey(d.Name), &d); err != nil {
		return nil, err
	}
	if err := tx.put(datasetVersionKey(v.Dataset, v.Version), &v); err != nil {
		return nil, err
	}
	return utcDatasetVersion(&v), nil
}

func applyDatasetVersionDelete(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.DatasetVersionDeleteRequest
	if err := decodeBody(structs.DatasetVersionDeleteType, body, &req); err != nil {
		return nil, err
	}
	var v structs.DatasetVersion
	found, err := tx.get(datasetVersionKey(req.Dataset, req.Version), &v)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "dataset %q has no version %d", req.Dataset, req.Version)
	}
	if !req.Force {
		if err := datasetInUse(tx, req.Dataset, []uint64{req.Version}); err != nil {
			return nil, err
		}
	}
	tx.del(datasetVersionKey(req.Dataset, req.Version))
	return nil, nil
}

// applyDatasetDelete removes a dataset with its versions; a later upload
// under the name starts again at version 1.
func applyDatasetDelete(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.DatasetDeleteRequest
	if err := decodeBody(structs.DatasetDeleteType, body, &req); err != nil {
		return nil, err
	}
	var d structs.Dataset
	found, err := tx.get(datasetKey(req.Name), &d)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "dataset %q not found", req.Name)
	}
	var keys []string
	var versions []uint64
	err = tx.scanValues(datasetVersionPrefix(req.Name), func(val []byte) (bool, error) {
		var v structs.DatasetVersion
		if err := msgpack.Unmarshal(val, &v); err != nil {
			return false, err
		}
		keys = append(keys, datasetVersionKey(v.Dataset, v.Version))
		versions = append(versions, v.Version)
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	if !req.Force {
		if err := datasetInUse(tx, req.Name, versions); err != nil {
			return nil, err
		}
	}
	for _, k := range keys {
		tx.del(k)
	}
	tx.del(datasetKey(req.Name))
	return nil, nil
}

// datasetInUse refuses the deletion of versions that a model version's
// lineage names, or that a job that has not ended reads, naming the first
// such user.
func datasetInUse(tx *applyTxn, name string, versions []uint64) error {
	refs := make([]string, len(versions))
	for i, v := range versions {
		refs[i] = structs.DatasetRef(name, v)
	}
	var job *structs.Job
	err := tx.scanValues(prefixJob, func(val []byte) (bool, error) {
		var j structs.Job
		if err := msgpack.Unmarshal(val, &j); err != nil {
			return false, err
		}
		if !j.Terminal() && (slices.Contains(refs, j.Spec.Dataset) || slices.Contains(refs, j.Spec.Validation.Dataset)) {
			job = &j
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	if job != nil {
		return structs.Errorf(structs.CodeConflict, "dataset %s is read by job %s (%s), which is %s; cancel it first, or pass force", job.Spec.Dataset, job.ID, job.Spec.Name, job.State)
	}
	var user *structs.ModelVersion
	err = tx.scanValues(prefixVersion, func(val []byte) (bool, error) {
		var mv structs.ModelVersion
		if err := msgpack.Unmarshal(val, &mv); err != nil {
			return false, err
		}
		if slices.Contains(refs, mv.Lineage.Dataset) {
			user = &mv
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	if user != nil {
		return structs.Errorf(structs.CodeConflict, "dataset %s is the lineage of version %d of model %q; delete that first, or pass force", user.Lineage.Dataset, user.Version, user.Model)
	}
	return nil
}

// scanValues calls fn with every value under prefix, as the batch's
// transaction sees them, until fn returns false. Like keysUnder it does not
// see the command's own staged writes.
func (t *applyTxn) scanValues(prefix string, fn func(val []byte) (bool, error)) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte(prefix)
	opts.PrefetchValues = false // callers often stop early
	it := t.txn.NewIterator(opts)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		more := true
		err := it.Item().Value(func(val []byte) (err error) {
			more, err = fn(val)
			return err
		})
		if err != nil {
			return fmt.Errorf("raftfsm: scan %s: %w", prefix, err)
		}
		if !more {
			return nil
		}
	}
	return nil
}

// scanPrefixes calls fn with every value under each of prefixes, as the
// batch's transaction sees them, with one iterator: Badger sorts a
// transaction's pending writes for every new iterator, which a command that
// reads many prefixes would otherwise pay each time. Like keysUnder it does
// not see the command's own staged writes; staged deletes are skipped.
func (t *applyTxn) scanPrefixes(prefixes []string, fn func(val []byte) error) error {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	it := t.txn.NewIterator(opts)
	defer it.Close()
	for _, p := range prefixes {
		for it.Seek([]byte(p)); it.ValidForPrefix([]byte(p)); it.Next() {
			if i, ok := t.staged[string(it.Item().Key())]; ok && t.ops[i].del {
				continue
			}
			if err := it.Item().Value(fn); err != nil {
				return fmt.Errorf("raftfsm: scan %s: %w", p, err)
			}
		}
	}
	return nil
}

// applyDatasetHolders replaces the holders of the version's file or of its
// quarantine, whichever the digest names.
func applyDatasetHolders(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.DatasetHoldersRequest
	if err := decodeBody(structs.DatasetHoldersType, body, &req); err != nil {
		return nil, err
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var v structs.DatasetVersion
	key := datasetVersionKey(req.Dataset, req.Version)
	found, err := tx.get(key, &v)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "dataset %q has no version %d", req.Dataset, req.Version)
	}
	switch {
	case v.Digest == req.Digest:
		v.Holders = slices.Clone(req.Holders)
	case v.Quarantine != nil && v.Quarantine.Digest == req.Digest:
		v.Quarantine.Holders = slices.Clone(req.Holders)
	case v.Sample != nil && v.Sample.Digest == req.Digest:
		v.Sample.Holders = slices.Clone(req.Holders)
	default:
		return nil, structs.Errorf(structs.CodeConflict, "version %d of dataset %q has no blob %.12s", req.Version, req.Dataset, req.Digest)
	}
	if err := tx.put(key, &v); err != nil {
		return nil, err
	}
	return utcDatasetVersion(&v), nil
}

func datasetKeyOf(raw []byte) (string, error) {
	var d structs.Dataset
	if err := structs.Decode(raw, &d); err != nil {
		return "", err
	}
	if d.Name == "" {
		return "", fmt.Errorf("dataset record without name")
	}
	return datasetKey(d.Name), nil
}

func datasetVersionKeyOf(raw []byte) (string, error) {
	var v structs.DatasetVersion
	if err := structs.Decode(raw, &v); err != nil {
		return "", err
	}
	if v.Dataset == "" || v.Version == 0 {
		return "", fmt.Errorf("dataset version record without dataset or number")
	}
	return datasetVersionKey(v.Dataset, v.Version), nil
}

func validateDatasetRecord(raw []byte) error {
	var d structs.Dataset
	if err := structs.Decode(raw, &d); err != nil {
		return err
	}
	if err := structs.ValidateName("name", d.Name); err != nil {
		return recordError(d.Name, err)
	}
	return nil
}

func validateDatasetVersionRecord(raw []byte) error {
	var v structs.DatasetVersion
	if err := structs.Decode(raw, &v); err != nil {
		return err
	}
	id := v.Ref()
	if err := v.Validate(); err != nil {
		return recordError(id, err)
	}
	if v.Version == 0 {
		return recordError(id, structs.Errorf(structs.CodeInvalid, "version is required (versions start at 1)"))
	}
	return nil
}
