package raftfsm

import (
	"github.com/kilnml/kiln/raftfsm/structs"
)

// Reads of training records: jobs and the members of placed ones.

// Job returns one job, or a not_found error.
func (t *Txn) Job(id string) (*structs.Job, error) {
	return readOne(t, jobKey(id), utcJob, func() error {
		return structs.Errorf(structs.CodeNotFound, "job %q not found", id)
	})
}

// Jobs returns up to limit jobs whose IDs sort after cursor (IDs sort by
// submission time), and the cursor of the next page.
func (t *Txn) Jobs(cursor string, limit int) ([]*structs.Job, string, error) {
	return readPage(t, prefixJob, cursor, limit, utcJob, func(j *structs.Job) string { return j.ID })
}

// JobAllocations returns the members of every placed or running job: what
// training holds of the capacity ledger.
func (t *Txn) JobAllocations() ([]*structs.JobAllocation, error) {
	out, _, err := readPage(t, prefixJobAlloc, "", 0, asIs[structs.JobAllocation], nil)
	return out, err
}

// Tuning returns one tuning, or a not_found error.
func (t *Txn) Tuning(id string) (*structs.Tuning, error) {
	return readOne(t, tuningKey(id), utcTuning, func() error {
		return structs.Errorf(structs.CodeNotFound, "tuning %q not found", id)
	})
}

// Tunings returns every tuning, in submission order.
func (t *Txn) Tunings() ([]*structs.Tuning, error) {
	out, _, err := readPage(t, prefixTuning, "", 0, utcTuning, nil)
	return out, err
}
