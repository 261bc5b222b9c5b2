package raftfsm

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Training records (DESIGN.md §7): jobs by ID, and the members of placed or
// running jobs by node, which the capacity ledger reads.
const (
	prefixJob      = "j/"  // j/<job id>                     -> structs.Job
	prefixJobAlloc = "jl/" // jl/<node id>/<job id>/<rank>   -> structs.JobAllocation
)

func jobKey(id string) string               { return prefixJob + id }
func jobAllocNodePrefix(node string) string { return prefixJobAlloc + node + "/" }
func jobAllocKey(a *structs.JobAllocation) string {
	return jobAllocNodePrefix(a.NodeID) + a.JobID + "/" + strconv.Itoa(a.Rank)
}

var _ = registerCommands(structs.RangeTraining,
	handler{structs.JobSubmitType, applyJobSubmit},
	handler{structs.JobPlanType, applyJobPlan},
	handler{structs.JobUpdateType, applyJobUpdate},
	handler{structs.JobCancelType, applyJobCancel},
)

func utcJob(j *structs.Job) *structs.Job {
	j.SubmittedAt, j.StartedAt, j.FinishedAt = j.SubmittedAt.UTC(), j.StartedAt.UTC(), j.FinishedAt.UTC()
	for i := range j.History {
		j.History[i].At = j.History[i].At.UTC()
	}
	return j
}

func (t *applyTxn) job(id string) (*structs.Job, error) {
	var j structs.Job
	found, err := t.get(jobKey(id), &j)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "job %q not found", id)
	}
	return &j, nil
}

// record moves the job to state, with its reason, in its history (which
// keeps the first event and the latest ones).
func record(j *structs.Job, state, reason string, at time.Time) {
	j.State, j.Reason = state, reason
	j.History = append(j.History, structs.JobEvent{State: state, At: at, Reason: structs.TruncateUTF8(reason, structs.MaxBadRowReasonLen)})
	if n := len(j.History); n > structs.MaxJobHistory {
		j.History = append(j.History[:1], j.History[n-structs.MaxJobHistory+1:]...)
	}
}

// applyJobSubmit records a pending job. It pins the dataset (and the
// validation dataset) to a version, checks the target and features against
// its columns, and refuses a job that no registered node could ever hold.
func applyJobSubmit(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.JobSubmitRequest
	if err := decodeBody(structs.JobSubmitType, body, &req); err != nil {
		return nil, err
	}
	if req.RetryOf != "" {
		var old structs.Job
		if found, err := tx.get(jobKey(req.RetryOf), &old); err != nil {
			return nil, err
		} else if !found {
			return nil, structs.Errorf(structs.CodeNotFound, "job %q not found", req.RetryOf)
		}
		if !old.Terminal() {
			return nil, structs.Errorf(structs.CodeConflict, "job %s is %s: only a finished job is retried; cancel it first", req.RetryOf, old.State)
		}
	}
	j, err := tx.submitJob(req.ID, req.Spec, req.SubmittedAt)
	if err != nil {
		return nil, err
	}
	if req.RetryOf != "" {
		j.RetryOf = req.RetryOf
		if err := tx.put(jobKey(j.ID), j); err != nil {
			return nil, err
		}
	}
	return utcJob(j), nil
}

// submitJob records a pending job and its run (a job submitted, or a
// tuning's trial).
func (t *applyTxn) submitJob(id string, spec structs.JobSpec, at time.Time) (*structs.Job, error) {
	if err := structs.ValidateID("id", id); err != nil {
		return nil, err
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	var existing structs.Job
	if found, err := t.get(jobKey(id), &existing); err != nil {
		return nil, err
	} else if found {
		return nil, structs.Errorf(structs.CodeConflict, "job %q exists", id)
	}
	if spec.Dataset != "" {
		v, err := t.pinDataset("dataset", &spec.Dataset)
		if err != nil {
			return nil, err
		}
		if err := checkColumns(&spec, v); err != nil {
			return nil, err
		}
	}
	if spec.Validation.Dataset != "" {
		if _, err := t.pinDataset("validation.dataset", &spec.Validation.Dataset); err != nil {
			return nil, err
		}
	}
	if err := t.jobFeasible(&spec); err != nil {
		return nil, err
	}
	j := &structs.Job{ID: id, Spec: spec, RunID: id, SubmittedAt: at,
		CreateIndex: t.index, ModifyIndex: t.index, Allocations: []structs.JobAllocation{}}
	record(j, structs.JobPending, "waiting for its first placement", at)
	if err := t.createJobRun(j); err != nil {
		return nil, err
	}
	if err := t.put(jobKey(j.ID), j); err != nil {
		return nil, err
	}
	return j, nil
}

// pinDataset resolves *ref (name or name:version) to the version the state
// holds, and rewrites it as name:version.
func (t *applyTxn) pinDataset(field string, ref *string) (*structs.DatasetVersion, error) {
	name, n, err := structs.ParseDatasetRef(field, *ref)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		var d structs.Dataset
		found, err := t.get(datasetKey(name), &d)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, structs.Errorf(structs.CodeInvalid, "%s: dataset %q not found", field, name)
		}
		n = d.LatestVersion
	}
	var v structs.DatasetVersion
	found, err := t.get(datasetVersionKey(name, n), &v)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeInvalid, "%s: dataset %q has no version %d", field, name, n)
	}
	if len(v.FailedValidation) > 0 {
		return nil, structs.Errorf(structs.CodeInvalid, "%s: dataset %s failed its source's validation (%s); name a version that passed", field, v.Ref(), strings.Join(v.FailedValidation, "; "))
	}
	*ref = v.Ref()
	return &v, nil
}

// checkColumns checks the target and features against the dataset's columns.
func checkColumns(spec *structs.JobSpec, v *structs.DatasetVersion) error {
	has := func(name string) bool {
		return slices.ContainsFunc(v.Columns, func(c structs.DatasetColumn) bool { return c.Name == name })
	}
	if spec.Target != "" && !has(spec.Target) {
		return structs.Errorf(structs.CodeInvalid, "target %q is not a column of dataset %s", spec.Target, v.Ref())
	}
	for i, f := range spec.Features {
		if !has(f) {
			return structs.Errorf(structs.CodeInvalid, "features[%d] %q is not a column of dataset %s", i, f, v.Ref())
		}
	}
	return nil
}

// jobFeasible refuses a job that no set of registered nodes could hold even
// empty: fewer nodes than it asks have the CPUs, memory and GPUs of one
// member (and, for a process, allow its command). Busy is not impossible:
// a job that fits an empty node waits for capacity.
func (t *applyTxn) jobFeasible(spec *structs.JobSpec) error {
	fit, why := 0, ""
	err := t.scanValues(prefixNode, func(val []byte) (bool, error) {
		var n structs.Node
		if err := msgpack.Unmarshal(val, &n); err != nil {
			return false, err
		}
		if reason := memberFits(spec, &n); reason != "" {
			if why == "" {
				why = reason
			}
		} else {
			fit++
		}
		return fit < spec.Nodes, nil // enough is enough
	})
	if err != nil {
		return err
	}
	if fit < spec.Nodes {
		if why == "" {
			why = "no node is registered"
		}
		return structs.Errorf(structs.CodeInvalid, "no placement could ever hold this job: %d of the %d nodes it asks could hold a member (%s)", fit, spec.Nodes, why)
	}
	return nil
}

// memberFits says why node n could never hold one member of spec, even
// empty; "" when it could.
func memberFits(spec *structs.JobSpec, n *structs.Node) string {
	r := &spec.Resources
	if c := n.Resources.CPUCores; c > 0 && float64(c) < r.CPU {
		return fmt.Sprintf("node %s has %d CPUs, the job asks %g", n.Name, c, r.CPU)
	}
	if m := n.Resources.MemoryMB; m > 0 && m < r.MemoryMB {
		return fmt.Sprintf("node %s has %d MB of memory, the job asks %d", n.Name, m, r.MemoryMB)
	}
	if r.GPUs > 0 {
		gpus := 0
		for _, g := range n.Resources.GPUs {
			if r.GPUFits(g) {
				gpus++
			}
		}
		if gpus < r.GPUs {
			what := "GPUs"
			if r.GPUModel != "" || r.GPUMemoryMB > 0 {
				what = fmt.Sprintf("GPUs matching %q with %d MB", r.GPUModel, r.GPUMemoryMB)
			}
			return fmt.Sprintf("node %s has %d %s, the job asks %d", n.Name, gpus, what, r.GPUs)
		}
	}
	if spec.Trainer.Kind == structs.TrainerProcess && !n.Exec.Allows(spec.Trainer.Command[0]) {
		return fmt.Sprintf("node %s's exec config does not allow %q", n.Name, spec.Trainer.Command[0])
	}
	return ""
}

// applyJobPlan applies each placement, wait and loss of the plan on its own:
// one that no longer holds (the job moved on, the capacity is taken) is
// refused and listed in the result, and the scheduler plans it again.
func applyJobPlan(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.JobPlanRequest
	if err := decodeBody(structs.JobPlanType, body, &req); err != nil {
		return nil, err
	}
	res := &structs.JobPlanResult{Refused: []string{}}
	refuse := func(id string, err error) { res.Refused = append(res.Refused, id+": "+err.Error()) }
	for _, l := range req.Lose {
		if err := loseJob(tx, &l, req.At); err != nil {
			if structs.ErrorCode(err) == structs.CodeInternal {
				return nil, err
			}
			refuse(l.JobID, err)
		}
	}
	if len(req.Place) > 0 {
		var nodes []string
		for _, p := range req.Place {
			for _, a := range p.Allocations {
				nodes = append(nodes, a.NodeID)
			}
		}
		ledger, err := loadLedger(tx, nodes)
		if err != nil {
			return nil, err
		}
		for i := range req.Place {
			err := placeJob(tx, ledger, &req.Place[i], req.At)
			switch {
			case err == nil:
				res.Placed++
			case structs.ErrorCode(err) == structs.CodeInternal:
				return nil, err
			default:
				refuse(req.Place[i].JobID, err)
			}
		}
	}
	for _, w := range req.Wait {
		j, err := tx.job(w.JobID)
		if err != nil || j.State != structs.JobPending || j.Reason == w.Reason {
			continue
		}
		j.Reason = structs.TruncateUTF8(w.Reason, structs.MaxBadRowReasonLen)
		j.ModifyIndex = tx.index
		if err := tx.putJob(j); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// placeJob commits all members of one pending job, or none.
func placeJob(tx *applyTxn, ledger capacityLedger, p *structs.JobPlacement, at time.Time) error {
	j, err := tx.job(p.JobID)
	if err != nil {
		return err
	}
	if j.State != structs.JobPending || j.Attempt != p.Attempt {
		return structs.Errorf(structs.CodeConflict, "job is %s at attempt %d, the plan was for a pending attempt %d", j.State, j.Attempt, p.Attempt)
	}
	if len(p.Allocations) != j.Spec.Nodes {
		return structs.Errorf(structs.CodeInvalid, "%d members placed, the job asks %d", len(p.Allocations), j.Spec.Nodes)
	}
	// Check every member against a copy of the touched nodes' loads, so a
	// gang that fails half way holds nothing.
	trial := capacityLedger{}
	nodes := make([]*structs.Node, len(p.Allocations))
	for i := range p.Allocations {
		a := &p.Allocations[i]
		if a.Rank != i || a.JobID != j.ID {
			return structs.Errorf(structs.CodeInvalid, "allocations[%d] is rank %d of job %q", i, a.Rank, a.JobID)
		}
		if slices.ContainsFunc(p.Allocations[:i], func(o structs.JobAllocation) bool { return o.NodeID == a.NodeID }) {
			return structs.Errorf(structs.CodeInvalid, "two members on node %q", a.NodeID)
		}
		var n structs.Node
		found, err := tx.get(nodeKey(a.NodeID), &n)
		if err != nil {
			return err
		}
		if !found {
			return structs.Errorf(structs.CodeNotFound, "node %q not found", a.NodeID)
		}
		nodes[i] = &n
		if l := ledger[n.ID]; l != nil && trial[n.ID] == nil {
			trial[n.ID] = l.clone()
		}
		if err := trial.placeJob(&n, a, &j.Spec.Resources); err != nil {
			return structs.Errorf(structs.CodeConflict, "%v", err)
		}
	}
	for id, l := range trial {
		ledger[id] = l
	}
	j.Attempt++
	j.Allocations = make([]structs.JobAllocation, len(p.Allocations))
	for i, a := range p.Allocations {
		a.Attempt, a.State, a.NodeName, a.Addr = j.Attempt, structs.JobPlaced, nodes[i].Name, ""
		j.Allocations[i] = a
		if err := tx.put(jobAllocKey(&a), &a); err != nil {
			return err
		}
	}
	j.ExitCode, j.LogTail, j.ModifyIndex = nil, nil, tx.index
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	record(j, structs.JobPlaced, "attempt "+strconv.Itoa(j.Attempt)+" on "+strings.Join(names, ", "), at)
	return tx.putJob(j)
}

// release deletes the ledger records of the job's members.
func release(tx *applyTxn, j *structs.Job) {
	for i := range j.Allocations {
		tx.del(jobAllocKey(&j.Allocations[i]))
	}
}

// retryOrEnd sends a job whose attempt ended early back to pending while it
// has retries left, and otherwise ends it in final.
func retryOrEnd(tx *applyTxn, j *structs.Job, final, reason string, at time.Time) {
	release(tx, j)
	switch {
	case j.CancelRequested:
		j.CancelRequested = false
		record(j, structs.JobCancelled, "cancelled", at)
		j.FinishedAt = at
	case j.Attempt <= j.Spec.Retries:
		record(j, structs.JobPending, fmt.Sprintf("%s; retry %d of %d", reason, j.Attempt, j.Spec.Retries), at)
	default:
		record(j, final, reason, at)
		j.FinishedAt = at
	}
	j.ModifyIndex = tx.index
}

func loseJob(tx *applyTxn, l *structs.JobLoss, at time.Time) error {
	j, err := tx.job(l.JobID)
	if err != nil {
		return err
	}
	if (j.State != structs.JobPlaced && j.State != structs.JobRunning) || j.Attempt != l.Attempt {
		return structs.Errorf(structs.CodeConflict, "job is %s at attempt %d, not placed or running at attempt %d", j.State, j.Attempt, l.Attempt)
	}
	retryOrEnd(tx, j, structs.JobLost, "lost: "+l.Reason, at)
	return tx.putJob(j)
}

// applyJobUpdate records a member's report. A report for an attempt that is
// no longer the job's is refused: its node stops what it runs.
func applyJobUpdate(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.JobUpdateRequest
	if err := decodeBody(structs.JobUpdateType, body, &req); err != nil {
		return nil, err
	}
	j, err := tx.job(req.JobID)
	if err != nil {
		return nil, err
	}
	if (j.State != structs.JobPlaced && j.State != structs.JobRunning) || j.Attempt != req.Attempt {
		return nil, structs.Errorf(structs.CodeConflict, "job %q is %s at attempt %d; the report is for attempt %d", j.ID, j.State, j.Attempt, req.Attempt)
	}
	if req.Rank < 0 || req.Rank >= len(j.Allocations) || j.Allocations[req.Rank].NodeID != req.NodeID {
		return nil, structs.Errorf(structs.CodeInvalid, "job %q has no member %d on node %q", j.ID, req.Rank, req.NodeID)
	}
	m := &j.Allocations[req.Rank]
	if len(req.LogTail) > structs.MaxJobLogTail || len(req.Metrics) > structs.MaxJobMetrics || len(req.Addr) > 256 {
		return nil, structs.Errorf(structs.CodeInvalid, "log_tail, metrics or addr is too long")
	}
	switch req.State {
	case structs.JobRunning:
		m.State, m.Addr = structs.JobRunning, req.Addr
		if j.State == structs.JobPlaced && allMembers(j, structs.JobRunning, structs.JobSucceeded) {
			j.StartedAt = req.At
			record(j, structs.JobRunning, "", req.At)
		}
	case structs.JobSucceeded:
		m.State = structs.JobSucceeded
		if req.Rank == 0 {
			j.Metrics, j.ModelVersion = req.Metrics, req.ModelVersion
		}
		if allMembers(j, structs.JobSucceeded) {
			release(tx, j)
			j.FinishedAt = req.At
			record(j, structs.JobSucceeded, "", req.At)
		}
	case structs.JobFailed:
		m.State = structs.JobFailed
		j.ExitCode, j.LogTail = req.ExitCode, truncateLines(req.LogTail)
		reason := req.Reason
		if reason == "" && req.ExitCode != nil {
			reason = fmt.Sprintf("member %d on %s exited with code %d", req.Rank, m.NodeName, *req.ExitCode)
		}
		retryOrEnd(tx, j, structs.JobFailed, structs.TruncateUTF8(reason, structs.MaxBadRowReasonLen), req.At)
	default:
		return nil, structs.Errorf(structs.CodeInvalid, "state %q is not running, succeeded or failed", req.State)
	}
	j.ModifyIndex = tx.index
	if err := tx.putJob(j); err != nil {
		return nil, err
	}
	if j.State == structs.JobPlaced || j.State == structs.JobRunning {
		if err := tx.put(jobAllocKey(m), m); err != nil {
			return nil, err
		}
	}
	return utcJob(j), nil
}

func allMembers(j *structs.Job, states ...string) bool {
	for _, a := range j.Allocations {
		if !slices.Contains(states, a.State) {
			return false
		}
	}
	return true
}

func truncateLines(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = structs.TruncateUTF8(l, structs.MaxJobLogLineLen)
	}
	return out
}

// applyJobCancel cancels a pending job at once; a placed or running one is
// marked, and ends cancelled when a member reports it stopped (or is lost).
func applyJobCancel(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.JobCancelRequest
	if err := decodeBody(structs.JobCancelType, body, &req); err != nil {
		return nil, err
	}
	j, err := tx.job(req.JobID)
	if err != nil {
		return nil, err
	}
	switch {
	case j.Terminal():
		return nil, structs.Errorf(structs.CodeConflict, "job %q already ended: %s", j.ID, j.State)
	case j.State == structs.JobPending:
		j.FinishedAt = req.At
		record(j, structs.JobCancelled, "cancelled before it was placed", req.At)
	default:
		j.CancelRequested = true
	}
	j.ModifyIndex = tx.index
	if err := tx.putJob(j); err != nil {
		return nil, err
	}
	return utcJob(j), nil
}

func jobKeyOf(raw []byte) (string, error) {
	var j structs.Job
	if err := structs.Decode(raw, &j); err != nil {
		return "", err
	}
	if j.ID == "" {
		return "", fmt.Errorf("job record without id")
	}
	return jobKey(j.ID), nil
}

func jobAllocKeyOf(raw []byte) (string, error) {
	var a structs.JobAllocation
	if err := structs.Decode(raw, &a); err != nil {
		return "", err
	}
	if a.JobID == "" || a.NodeID == "" {
		return "", fmt.Errorf("job allocation record without job or node")
	}
	return jobAllocKey(&a), nil
}

func validateJobRecord(raw []byte) error {
	var j structs.Job
	if err := structs.Decode(raw, &j); err != nil {
		return err
	}
	if err := structs.ValidateID("id", j.ID); err != nil {
		return recordError(j.ID, err)
	}
	if err := j.Spec.Validate(); err != nil {
		return recordError(j.ID, err)
	}
	return nil
}

func validateJobAllocRecord(raw []byte) error {
	var a structs.JobAllocation
	if err := structs.Decode(raw, &a); err != nil {
		return err
	}
	if err := structs.ValidateID("job_id", a.JobID); err != nil {
		return recordError(a.JobID, err)
	}
	if a.NodeID == "" || len(a.NodeID) > structs.MaxNodeIDLen || strings.Contains(a.NodeID, "/") {
		return recordError(a.JobID, structs.Errorf(structs.CodeInvalid, "node_id %q is not a node ID", a.NodeID))
	}
	return nil
}
