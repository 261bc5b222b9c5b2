package raftfsm

import (
	"fmt"
	"maps"
	"math"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Tracking records (DESIGN.md §7): experiments, runs, and the history of
// each run's metrics.
const (
	prefixExperiment     = "ex/"  // ex/<id>                          -> structs.Experiment
	prefixExperimentName = "exn/" // exn/<name>                       -> structs.ExperimentName
	prefixExperimentSeq  = "exq/" // exq/last                         -> structs.ExperimentCounter
	prefixRun            = "ru/"  // ru/<run id>                      -> structs.Run
	prefixMetric         = "rm/"  // rm/<run>/<key, escaped>/<index>-<pos> -> structs.MetricRecord
)

func experimentKey(id string) string       { return prefixExperiment + id }
func experimentNameKey(name string) string { return prefixExperimentName + name }
func runKey(id string) string              { return prefixRun + id }

const experimentSeqKey = prefixExperimentSeq + "last"

// metricPrefix is where the points of one metric of one run live; the key is
// escaped because metric names may hold '/'.
func metricPrefix(run, key string) string {
	return prefixMetric + run + "/" + url.QueryEscape(key) + "/"
}

func metricKey(m *structs.MetricRecord) string {
	return fmt.Sprintf("%s%020d-%06d", metricPrefix(m.RunID, m.Key), m.Index, m.Pos)
}

var _ = registerCommands(structs.RangeTraining,
	handler{structs.ExperimentCreateType, applyExperimentCreate},
	handler{structs.ExperimentDeleteType, applyExperimentDelete},
	handler{structs.RunCreateType, applyRunCreate},
	handler{structs.RunUpdateType, applyRunUpdate},
	handler{structs.RunLogType, applyRunLog},
)

func utcExperiment(e *structs.Experiment) *structs.Experiment {
	e.CreatedAt, e.UpdatedAt = e.CreatedAt.UTC(), e.UpdatedAt.UTC()
	return e
}

func validateTrackingMap(field string, m map[string]string, maxValue int) error {
	if len(m) > structs.MaxRunKeys {
		return structs.Errorf(structs.CodeInvalid, "%s has %d keys, more than %d", field, len(m), structs.MaxRunKeys)
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if err := structs.ValidateTrackingKey(field+" key", k); err != nil {
			return err
		}
		if len(m[k]) > maxValue {
			return structs.Errorf(structs.CodeInvalid, "%s.%s is %d bytes, more than %d", field, k, len(m[k]), maxValue)
		}
	}
	return nil
}

// createExperiment creates an experiment named name with the next ID (the
// default experiment takes "0").
func (t *applyTxn) createExperiment(name, location string, tags map[string]string, at time.Time) (*structs.Experiment, error) {
	if err := structs.ValidateExperimentName("name", name); err != nil {
		return nil, err
	}
	var existing structs.ExperimentName
	if found, err := t.get(experimentNameKey(name), &existing); err != nil {
		return nil, err
	} else if found {
		return nil, structs.Errorf(structs.CodeConflict, "experiment %q exists (id %s)", name, existing.ID)
	}
	if err := validateTrackingMap("tags", tags, structs.MaxRunTagValueLen); err != nil {
		return nil, err
	}
	if len(location) > 1024 {
		return nil, structs.Errorf(structs.CodeInvalid, "artifact_location is longer than 1024 bytes")
	}
	id := structs.DefaultExperimentID
	if name != structs.DefaultExperiment {
		var seq structs.ExperimentCounter
		if _, err := t.get(experimentSeqKey, &seq); err != nil {
			return nil, err
		}
		seq.Last++
		if err := t.put(experimentSeqKey, &seq); err != nil {
			return nil, err
		}
		id = strconv.FormatUint(seq.Last, 10)
	}
	if location == "" {
		location = "mlflow-artifacts:/" + id
	}
	e := &structs.Experiment{ID: id, Name: name, ArtifactLocation: location, Stage: structs.StageActive, Tags: tags,
		CreatedAt: at, UpdatedAt: at, CreateIndex: t.index}
	if err := t.put(experimentKey(id), e); err != nil {
		return nil, err
	}
	if err := t.put(experimentNameKey(name), &structs.ExperimentName{Name: name, ID: id}); err != nil {
		return nil, err
	}
	return e, nil
}

// experimentNamed returns the experiment named name, creating it when it
// does not exist (jobs name their experiment).
func (t *applyTxn) experimentNamed(name string, at time.Time) (*structs.Experiment, error) {
	var n structs.ExperimentName
	found, err := t.get(experimentNameKey(name), &n)
	if err != nil {
		return nil, err
	}
	if !found {
		return t.createExperiment(name, "", nil, at)
	}
	return t.experiment(n.ID)
}

func (t *applyTxn) experiment(id string) (*structs.Experiment, error) {
	var e structs.Experiment
	found, err := t.get(experimentKey(id), &e)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "experiment %q not found", id)
	}
	return &e, nil
}

func (t *applyTxn) run(id string) (*structs.Run, error) {
	var r structs.Run
	found, err := t.get(runKey(id), &r)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "run %q not found", id)
	}
	return &r, nil
}

func applyExperimentCreate(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.ExperimentCreateRequest
	if err := decodeBody(structs.ExperimentCreateType, body, &req); err != nil {
		return nil, err
	}
	e, err := tx.createExperiment(req.Name, req.ArtifactLocation, req.Tags, req.At)
	if err != nil {
		return nil, err
	}
	return utcExperiment(e), nil
}

func applyExperimentDelete(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.ExperimentDeleteRequest
	if err := decodeBody(structs.ExperimentDeleteType, body, &req); err != nil {
		return nil, err
	}
	e, err := tx.experiment(req.ID)
	if err != nil {
		return nil, err
	}
	switch {
	case req.ID == structs.DefaultExperimentID && !req.Restore:
		return nil, structs.Errorf(structs.CodeInvalid, "the default experiment cannot be deleted")
	case req.Restore && e.Stage == structs.StageActive:
		return nil, structs.Errorf(structs.CodeInvalid, "experiment %q is not deleted", req.ID)
	case !req.Restore && e.Stage == structs.StageDeleted:
		return nil, structs.Errorf(structs.CodeInvalid, "experiment %q is already deleted", req.ID)
	}
	e.Stage = structs.StageDeleted
	if req.Restore {
		e.Stage = structs.StageActive
	}
	e.UpdatedAt = req.At
	if err := tx.put(experimentKey(e.ID), e); err != nil {
		return nil, err
	}
	return utcExperiment(e), nil
}

// applyRunCreate creates a run in an experiment that is active.
func applyRunCreate(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.RunCreateRequest
	if err := decodeBody(structs.RunCreateType, body, &req); err != nil {
		return nil, err
	}
	r := req.Run
	if err := tx.checkNewRun(&r); err != nil {
		return nil, err
	}
	e, err := tx.experiment(r.ExperimentID)
	if structs.ErrorCode(err) == structs.CodeNotFound && r.ExperimentID == structs.DefaultExperimentID {
		e, err = tx.experimentNamed(structs.DefaultExperiment, time.UnixMilli(r.StartTime).UTC())
	}
	if err != nil {
		return nil, err
	}
	if e.Stage != structs.StageActive {
		return nil, structs.Errorf(structs.CodeInvalid, "experiment %q is deleted: its runs cannot be created", e.ID)
	}
	if err := tx.putNewRun(&r); err != nil {
		return nil, err
	}
	return &r, nil
}

func (t *applyTxn) checkNewRun(r *structs.Run) error {
	if r.ID == "" || len(r.ID) > 64 || !isIDText(r.ID) {
		return structs.Errorf(structs.CodeInvalid, "run id %.64q must be 1 to 64 letters, digits, _ or -", r.ID)
	}
	if err := validateTrackingMap("params", r.Params, structs.MaxParamValueLen); err != nil {
		return err
	}
	if err := validateTrackingMap("tags", r.Tags, structs.MaxRunTagValueLen); err != nil {
		return err
	}
	if len(r.Name) > structs.MaxTrackingKeyLen || len(r.UserID) > structs.MaxTrackingKeyLen {
		return structs.Errorf(structs.CodeInvalid, "run_name and user_id are at most %d bytes", structs.MaxTrackingKeyLen)
	}
	var existing structs.Run
	if found, err := t.get(runKey(r.ID), &existing); err != nil {
		return err
	} else if found {
		return structs.Errorf(structs.CodeConflict, "run %q exists", r.ID)
	}
	return nil
}

func (t *applyTxn) putNewRun(r *structs.Run) error {
	if r.Status == "" {
		r.Status = structs.RunRunning
	}
	r.Stage = structs.StageActive
	r.Metrics = map[string]structs.MetricPoint{}
	r.CreateIndex, r.ModifyIndex = t.index, t.index
	return t.put(runKey(r.ID), r)
}

func isIDText(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func applyRunUpdate(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.RunUpdateRequest
	if err := decodeBody(structs.RunUpdateType, body, &req); err != nil {
		return nil, err
	}
	r, err := tx.run(req.ID)
	if err != nil {
		return nil, err
	}
	switch req.Status {
	case "":
	case structs.RunRunning, structs.RunScheduled, structs.RunFinished, structs.RunFailed, structs.RunKilled:
		r.Status = req.Status
	default:
		return nil, structs.Errorf(structs.CodeInvalid, "status %q is not RUNNING, SCHEDULED, FINISHED, FAILED or KILLED", req.Status)
	}
	switch req.Stage {
	case "":
	case structs.StageActive, structs.StageDeleted:
		r.Stage = req.Stage
	default:
		return nil, structs.Errorf(structs.CodeInvalid, "lifecycle stage %q is not active or deleted", req.Stage)
	}
	if req.EndTime != 0 {
		r.EndTime = req.EndTime
	}
	if req.Name != "" {
		if len(req.Name) > structs.MaxTrackingKeyLen {
			return nil, structs.Errorf(structs.CodeInvalid, "run_name is longer than %d bytes", structs.MaxTrackingKeyLen)
		}
		r.Name = req.Name
		if r.Tags == nil {
			r.Tags = map[string]string{}
		}
		r.Tags["mlflow.runName"] = req.Name
	}
	r.ModifyIndex = tx.index
	if err := tx.put(runKey(r.ID), r); err != nil {
		return nil, err
	}
	return r, nil
}

// applyRunLog records metric points, params and tags. A param, once set,
// keeps its value (as MLflow: changing it is invalid_argument); the whole
// batch is refused then, and nothing of it applies.
func applyRunLog(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.RunLogRequest
	if err := decodeBody(structs.RunLogType, body, &req); err != nil {
		return nil, err
	}
	r, err := tx.run(req.RunID)
	if err != nil {
		return nil, err
	}
	if r.Stage == structs.StageDeleted {
		return nil, structs.Errorf(structs.CodeInvalid, "run %q is deleted", r.ID)
	}
	if len(req.Metrics) > structs.MaxRunLogMetrics || len(req.Params) > structs.MaxRunLogParams || len(req.Tags) > structs.MaxRunLogTags {
		return nil, structs.Errorf(structs.CodeInvalid, "a batch logs at most %d metrics, %d params and %d tags", structs.MaxRunLogMetrics, structs.MaxRunLogParams, structs.MaxRunLogTags)
	}
	if err := logToRun(tx, r, &req); err != nil {
		return nil, err
	}
	r.ModifyIndex = tx.index
	if err := tx.put(runKey(r.ID), r); err != nil {
		return nil, err
	}
	return nil, nil
}

// logToRun applies a log request to r (which the caller stores).
func logToRun(tx *applyTxn, r *structs.Run, req *structs.RunLogRequest) error {
	for i, p := range req.Params {
		if err := structs.ValidateTrackingKey("params key", p.Key); err != nil {
			return err
		}
		if len(p.Value) > structs.MaxParamValueLen {
			return structs.Errorf(structs.CodeInvalid, "param %s is %d bytes, more than %d", p.Key, len(p.Value), structs.MaxParamValueLen)
		}
		if old, ok := r.Params[p.Key]; ok && old != p.Value {
			return structs.Errorf(structs.CodeInvalid, "changing param values is not allowed: param %q of run %q is %q, params[%d] says %q", p.Key, r.ID, old, i, p.Value)
		}
		if r.Params == nil {
			r.Params = map[string]string{}
		}
		r.Params[p.Key] = p.Value
	}
	for _, t := range req.Tags {
		if err := structs.ValidateTrackingKey("tags key", t.Key); err != nil {
			return err
		}
		if len(t.Value) > structs.MaxRunTagValueLen {
			return structs.Errorf(structs.CodeInvalid, "tag %s is %d bytes, more than %d", t.Key, len(t.Value), structs.MaxRunTagValueLen)
		}
		if r.Tags == nil {
			r.Tags = map[string]string{}
		}
		r.Tags[t.Key] = t.Value
	}
	for _, k := range req.DeleteTags {
		if _, ok := r.Tags[k]; !ok {
			return structs.Errorf(structs.CodeNotFound, "run %q has no tag %q", r.ID, k)
		}
		delete(r.Tags, k)
	}
	for i, m := range req.Metrics {
		if err := structs.ValidateTrackingKey("metrics key", m.Key); err != nil {
			return err
		}
		if math.IsInf(m.Value, 0) {
			// MLflow stores ±Inf as the largest finite values.
			m.Value = math.Copysign(math.MaxFloat64, m.Value)
		}
		rec := structs.MetricRecord{RunID: r.ID, MetricPoint: m, Index: tx.index, Pos: i}
		if err := tx.put(metricKey(&rec), &rec); err != nil {
			return err
		}
		if r.Metrics == nil {
			r.Metrics = map[string]structs.MetricPoint{}
		}
		if old, ok := r.Metrics[m.Key]; !ok || m.Step > old.Step || (m.Step == old.Step && m.Timestamp >= old.Timestamp) {
			r.Metrics[m.Key] = m
		}
	}
	if len(r.Params) > structs.MaxRunKeys || len(r.Tags) > structs.MaxRunKeys || len(r.Metrics) > structs.MaxRunKeys {
		return structs.Errorf(structs.CodeInvalid, "run %q would have more than %d params, tags or metric keys", r.ID, structs.MaxRunKeys)
	}
	return nil
}

func experimentKeyOf(raw []byte) (string, error) {
	var e structs.Experiment
	if err := structs.Decode(raw, &e); err != nil {
		return "", err
	}
	if e.ID == "" {
		return "", fmt.Errorf("experiment record without id")
	}
	return experimentKey(e.ID), nil
}

func experimentNameKeyOf(raw []byte) (string, error) {
	var n structs.ExperimentName
	if err := structs.Decode(raw, &n); err != nil {
		return "", err
	}
	if n.Name == "" {
		return "", fmt.Errorf("experiment name record without name")
	}
	return experimentNameKey(n.Name), nil
}

func experimentSeqKeyOf(raw []byte) (string, error) {
	var c structs.ExperimentCounter
	if err := structs.Decode(raw, &c); err != nil {
		return "", err
	}
	return experimentSeqKey, nil
}

func runKeyOf(raw []byte) (string, error) {
	var r structs.Run
	if err := structs.Decode(raw, &r); err != nil {
		return "", err
	}
	if r.ID == "" {
		return "", fmt.Errorf("run record without id")
	}
	return runKey(r.ID), nil
}

func metricKeyOf(raw []byte) (string, error) {
	var m structs.MetricRecord
	if err := structs.Decode(raw, &m); err != nil {
		return "", err
	}
	if m.RunID == "" || m.Key == "" {
		return "", fmt.Errorf("metric record without run or key")
	}
	return metricKey(&m), nil
}

func validateExperimentRecord(raw []byte) error {
	var e structs.Experiment
	if err := structs.Decode(raw, &e); err != nil {
		return err
	}
	if err := structs.ValidateExperimentName("name", e.Name); err != nil {
		return recordError(e.ID, err)
	}
	return validateTrackingMap("tags", e.Tags, structs.MaxRunTagValueLen)
}

func validateExperimentNameRecord(raw []byte) error {
	var n structs.ExperimentName
	if err := structs.Decode(raw, &n); err != nil {
		return err
	}
	return structs.ValidateExperimentName("name", n.Name)
}

func validateExperimentSeqRecord(raw []byte) error {
	var c structs.ExperimentCounter
	return structs.Decode(raw, &c)
}

func validateRunRecord(raw []byte) error {
	var r structs.Run
	if err := structs.Decode(raw, &r); err != nil {
		return err
	}
	if r.ID == "" || len(r.ID) > 64 || !isIDText(r.ID) {
		return recordError(r.ID, structs.Errorf(structs.CodeInvalid, "run id is not valid"))
	}
	if err := validateTrackingMap("params", r.Params, structs.MaxParamValueLen); err != nil {
		return recordError(r.ID, err)
	}
	return validateTrackingMap("tags", r.Tags, structs.MaxRunTagValueLen)
}

func validateMetricRecord(raw []byte) error {
	var m structs.MetricRecord
	if err := structs.Decode(raw, &m); err != nil {
		return err
	}
	return structs.ValidateTrackingKey("key", m.Key)
}

// runStatusOf is the MLflow status of a job's run in each job state.
var runStatusOf = map[string]string{
	structs.JobPending: structs.RunScheduled, structs.JobPlaced: structs.RunScheduled, structs.JobRunning: structs.RunRunning,
	structs.JobSucceeded: structs.RunFinished, structs.JobFailed: structs.RunFailed, structs.JobLost: structs.RunFailed,
	structs.JobCancelled: structs.RunKilled,
}

// putJob stores a job and keeps its run's status, end time and final
// metrics in step with it.
func (t *applyTxn) putJob(j *structs.Job) error {
	if err := t.put(jobKey(j.ID), j); err != nil {
		return err
	}
	r, err := t.run(j.RunID)
	if structs.ErrorCode(err) == structs.CodeNotFound {
		return nil // a job from before runs existed
	}
	if err != nil {
		return err
	}
	status := runStatusOf[j.State]
	if r.Status == status && !j.Terminal() {
		return nil
	}
	r.Status = status
	if j.Terminal() {
		r.EndTime = j.FinishedAt.UnixMilli()
		if j.State == structs.JobSucceeded && len(j.Metrics) > 0 {
			final := &structs.RunLogRequest{RunID: r.ID}
			for _, k := range slices.Sorted(maps.Keys(j.Metrics)) {
				final.Metrics = append(final.Metrics, structs.MetricPoint{Key: k, Value: j.Metrics[k], Timestamp: r.EndTime})
			}
			if err := logToRun(t, r, final); err != nil {
				return err
			}
		}
	}
	r.ModifyIndex = t.index
	return t.put(runKey(r.ID), r)
}

// createJobRun creates the run of a new job, in its experiment (created on
// first use): named after the job, its params as strings.
func (t *applyTxn) createJobRun(j *structs.Job) error {
	e, err := t.experimentNamed(j.Spec.Experiment, j.SubmittedAt)
	if err != nil {
		return err
	}
	params := map[string]string{}
	for k, v := range j.Spec.Params {
		params[k] = structs.TruncateUTF8(fmt.Sprint(v), structs.MaxParamValueLen)
	}
	r := &structs.Run{ID: j.RunID, ExperimentID: e.ID, Name: j.Spec.Name, Status: structs.RunScheduled,
		StartTime: j.SubmittedAt.UnixMilli(), Params: params, JobID: j.ID,
		Tags: map[string]string{"mlflow.runName": j.Spec.Name, "kiln.job_id": j.ID}}
	if a := j.Spec.Trainer.Algorithm; a != "" {
		r.Tags["kiln.algorithm"] = a
	}
	if j.Spec.Dataset != "" {
		r.Tags["kiln.dataset"] = j.Spec.Dataset
	}
	if err := t.checkNewRun(r); err != nil {
		return err
	}
	return t.putNewRun(r)
}

// Run artifacts: ra/<run>/<path, escaped> -> structs.RunArtifact.
const prefixRunArtifact = "ra/"

func runArtifactPrefix(run string) string { return prefixRunArtifact + run + "/" }
func runArtifactKey(run, path string) string {
	return runArtifactPrefix(run) + url.PathEscape(path)
}

var _ = registerCommands(structs.RangeTraining, handler{structs.RunArtifactPutType, applyRunArtifactPut})

// applyRunArtifactPut records a run's file (replacing one at the same path)
// or, for the same digest, its new holders.
func applyRunArtifactPut(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.RunArtifactPutRequest
	if err := decodeBody(structs.RunArtifactPutType, body, &req); err != nil {
		return nil, err
	}
	a := req.Artifact
	if err := a.Validate(); err != nil {
		return nil, err
	}
	if req.HoldersOnly {
		var old structs.RunArtifact
		found, err := tx.get(runArtifactKey(a.RunID, a.Path), &old)
		if err != nil {
			return nil, err
		}
		if !found || old.Digest != a.Digest {
			return nil, structs.Errorf(structs.CodeConflict, "run %q artifact %q is no longer blob %.12s", a.RunID, a.Path, a.Digest)
		}
	}
	r, err := tx.run(a.RunID)
	if err != nil {
		return nil, err
	}
	if r.Stage == structs.StageDeleted {
		return nil, structs.Errorf(structs.CodeInvalid, "run %q is deleted", r.ID)
	}
	if err := tx.put(runArtifactKey(a.RunID, a.Path), &a); err != nil {
		return nil, err
	}
	return &a, nil
}

func runArtifactKeyOf(raw []byte) (string, error) {
	var a structs.RunArtifact
	if err := structs.Decode(raw, &a); err != nil {
		return "", err
	}
	if a.RunID == "" || a.Path == "" {
		return "", fmt.Errorf("run artifact record without run or path")
	}
	return runArtifactKey(a.RunID, a.Path), nil
}

func validateRunArtifactRecord(raw []byte) error {
	var a structs.RunArtifact
	if err := structs.Decode(raw, &a); err != nil {
		return err
	}
	if err := a.Validate(); err != nil {
		return recordError(a.RunID+"/"+a.Path, err)
	}
	return nil
}
