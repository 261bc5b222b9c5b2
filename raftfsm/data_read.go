package raftfsm

import (
	"strconv"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Reads of data records: datasets and their versions.

// Dataset returns the named dataset, or a not_found error.
func (t *Txn) Dataset(name string) (*structs.Dataset, error) {
	return readOne(t, datasetKey(name), utcDataset, func() error {
		return structs.Errorf(structs.CodeNotFound, "dataset %q not found", name)
	})
}

// Datasets returns up to limit datasets whose names sort after cursor, in
// name order, and the cursor of the next page ("" when this page is the last).
func (t *Txn) Datasets(cursor string, limit int) ([]*structs.Dataset, string, error) {
	return readPage(t, prefixDataset, cursor, limit, utcDataset, func(d *structs.Dataset) string { return d.Name })
}

// DatasetVersion returns one version of a dataset; version 0 is the latest.
func (t *Txn) DatasetVersion(name string, v uint64) (*structs.DatasetVersion, error) {
	if v == 0 {
		d, err := t.Dataset(name)
		if err != nil {
			return nil, err
		}
		v = d.LatestVersion
	}
	return readOne(t, datasetVersionKey(name, v), utcDatasetVersion, func() error {
		return structs.Errorf(structs.CodeNotFound, "dataset %q has no version %d", name, v)
	})
}

// DatasetVersions returns up to limit versions of a dataset numbered above
// cursor (a version number in decimal, "" for the start), in order, and the
// cursor of the next page.
func (t *Txn) DatasetVersions(name, cursor string, limit int) ([]*structs.DatasetVersion, string, error) {
	cursor, err := versionCursorOf(cursor)
	if err != nil {
		return nil, "", err
	}
	return readPage(t, datasetVersionPrefix(name), cursor, limit, utcDatasetVersion,
		func(v *structs.DatasetVersion) string { return strconv.FormatUint(v.Version, 10) })
}
