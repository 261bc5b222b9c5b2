package node

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kilnml/kiln/node/internal/blobs"
	"github.com/kilnml/kiln/node/internal/runsearch"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// MLflow's tracking REST API, 2.0 paths (DESIGN.md §7), over the same
// experiments and runs as /v1, so that the mlflow client pointed at any node
// works unchanged. Built from MLflow's REST reference and its client
// (mlflow/store/tracking/rest_store.py at 2.11), field by field:
//
//   - GET requests take their fields as query parameters, POST requests as a
//     JSON body; unknown fields are ignored, as MLflow's server ignores them,
//     so newer clients keep working;
//   - int64 fields (timestamps, steps) come as JSON numbers or as strings,
//     and go out as numbers; run_id and its older name run_uuid are both
//     read and both written;
//   - errors are {"error_code", "message"} with MLflow's codes and statuses
//     (RESOURCE_DOES_NOT_EXIST is 404, which the client turns into None for
//     get-by-name).
//
// Access control: an experiment's name is its ACL name (kind experiment);
// reads need read on it, writes write.

const mlflowPrefix = "/api/2.0/mlflow/"

// mlflowError writes err as MLflow's error JSON.
func mlflowError(w http.ResponseWriter, err error) {
	code, status := "INTERNAL_ERROR", http.StatusInternalServerError
	switch structs.ErrorCode(err) {
	case structs.CodeInvalid, structs.CodeTooLarge:
		code, status = "INVALID_PARAMETER_VALUE", http.StatusBadRequest
	case structs.CodeNotFound:
		code, status = "RESOURCE_DOES_NOT_EXIST", http.StatusNotFound
	case structs.CodeConflict:
		code, status = "RESOURCE_ALREADY_EXISTS", http.StatusBadRequest
	case structs.CodePermissionDenied:
		code, status = "PERMISSION_DENIED", http.StatusForbidden
	case structs.CodeUnauthenticated:
		code, status = "UNAUTHENTICATED", http.StatusUnauthorized
	case structs.CodeNoLeader, structs.CodeUnavailable:
		code, status = "TEMPORARILY_UNAVAILABLE", http.StatusServiceUnavailable
	case structs.CodeOverloaded:
		code, status = "REQUEST_LIMIT_EXCEEDED", http.StatusTooManyRequests
	}
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, map[string]string{"error_code": code, "message": err.Error()})
}

// flexInt is an int64 that JSON may give as a number or a string, as
// protobuf's JSON mapping allows.
type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.Trim(b, `"`)
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		x, ferr := strconv.ParseFloat(string(b), 64)
		if ferr != nil || x != math.Trunc(x) {
			return errors.New("not an integer")
		}
		n = int64(x)
	}
	*f = flexInt(n)
	return nil
}

// flexFloat is a float64 that JSON may give as a number or as a string,
// "NaN" and "Infinity" included.
type flexFloat float64

func (f *flexFloat) UnmarshalJSON(b []byte) error {
	s := string(bytes.Trim(b, `"`))
	switch s {
	case "NaN":
		*f = flexFloat(math.NaN())
		return nil
	case "Infinity":
		*f = flexFloat(math.Inf(1))
		return nil
	case "-Infinity":
		*f = flexFloat(math.Inf(-1))
		return nil
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return errors.New("not a number")
	}
	*f = flexFloat(x)
	return nil
}

// mlflowRequest reads an MLflow request's fields into v: the JSON body of a
// POST, or a GET's query parameters (repeated ones as arrays).
func (a *Agent) mlflowRequest(w http.ResponseWriter, r *http.Request, v any) error {
	var raw []byte
	if r.Method == http.MethodGet {
		fields := map[string]any{}
		for k, vals := range r.URL.Query() {
			if len(vals) == 1 && !slices.Contains([]string{"experiment_ids", "order_by"}, k) {
				fields[k] = vals[0]
			} else {
				fields[k] = vals
			}
		}
		raw, _ = json.Marshal(fields)
	} else {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes))
		if err != nil {
			return structs.Errorf(structs.CodeTooLarge, "request body: %v", err)
		}
		raw = b
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return structs.Errorf(structs.CodeInvalid, "%v", jsonError(err))
	}
	return nil
}

// mlflowHandler adapts a handler that returns its answer or an error.
func (a *Agent) mlflowHandler(h func(w http.ResponseWriter, r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		out, err := h(w, r)
		if err != nil {
			mlflowError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	}
}

// --- experiments -------------------------------------------------------

type mlflowTag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type mlflowExperiment struct {
	ExperimentID     string      `json:"experiment_id"`
	Name             string      `json:"name"`
	ArtifactLocation string      `json:"artifact_location"`
	LifecycleStage   string      `json:"lifecycle_stage"`
	LastUpdateTime   int64       `json:"last_update_time"`
	CreationTime     int64       `json:"creation_time"`
	Tags             []mlflowTag `json:"tags,omitempty"`
}

func toMLflowExperiment(e *structs.Experiment) mlflowExperiment {
	return mlflowExperiment{ExperimentID: e.ID, Name: e.Name, ArtifactLocation: e.ArtifactLocation, LifecycleStage: e.Stage,
		LastUpdateTime: e.UpdatedAt.UnixMilli(), CreationTime: e.CreatedAt.UnixMilli(), Tags: tagList(e.Tags)}
}

func tagList(m map[string]string) []mlflowTag {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]mlflowTag, len(keys))
	for i, k := range keys {
		out[i] = mlflowTag{k, m[k]}
	}
	return out
}

func tagMap(tags []mlflowTag) map[string]string {
	if len(tags) == 0 {
		return nil
	}
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[t.Key] = t.Value
	}
	return m
}

// experimentByID reads an experiment and checks the token may access it.
func (a *Agent) experimentByID(r *http.Request, txn *raftfsm.Txn, id string, want structs.ACLAccess) (*structs.Experiment, error) {
	if id == "" {
		return nil, structs.Errorf(structs.CodeInvalid, "missing value for required parameter 'experiment_id'")
	}
	e, err := txn.Experiment(id)
	if err != nil {
		return nil, err
	}
	return e, a.authorize(r, structs.KindExperiment, e.Name, want)
}

func (a *Agent) mlflowExperimentCreate(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		Name             string      `json:"name"`
		ArtifactLocation string      `json:"artifact_location"`
		Tags             []mlflowTag `json:"tags"`
	}
	if err := a.mlflowRequest(w, r, &req); err != nil {
		return nil, err
	}
	if req.Name == "" {
		return nil, structs.Errorf(structs.CodeInvalid, "missing value for required parameter 'name'")
	}
	if err := a.authorize(r, structs.KindExperiment, req.Name, structs.AccessWrite); err != nil {
		return nil, err
	}
	var e structs.Experiment
	if _, err := a.propose(r.Context(), structs.ExperimentCreateType, &structs.ExperimentCreateRequest{
		Name: req.Name, ArtifactLocation: req.ArtifactLocation, Tags: tagMap(req.Tags), At: time.Now().UTC(),
	}, &e); err != nil {
		return nil, err
	}
	return map[string]string{"experiment_id": e.ID}, nil
}

func (a *Agent) mlflowExperimentGet(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		ExperimentID string `json:"experiment_id"`
	}
	if err := a.mlflowRequest(w, r, &req); err != nil {
		return nil, err
	}
	txn, err := a.readTxn(w, r)
	if err != nil {
		return nil, err
	}
	defer txn.Discard()
	e, err := a.experimentByID(r, txn, req.ExperimentID, structs.AccessRead)
	if err != nil {
		return nil, err
	}
	return map[string]any{"experiment": toMLflowExperiment(e)}, nil
}

func (a *Agent) mlflowExperimentGetByName(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		Name string `json:"experiment_name"`
	}
	if err := a.mlflowRequest(w, r, &req); err != nil {
		return nil, err
	}
	txn, err := a.readTxn(w, r)
	if err != nil {
		return nil, err
	}
	defer txn.Discard()
	e, err := txn.ExperimentByName(req.Name)
	if err != nil {
		return nil, err
	}
	if err := a.authorize(r, structs.KindExperiment, e.Name, structs.AccessRead); err != nil {
		return nil, err
	}
	return map[string]any{"experiment": toMLflowExperiment(e)}, nil
}

// searchMax is a search's max_results: MLflow's default 1,000 when unset,
// at most 50,000.
func searchMax(n flexInt) (int, error) {
	switch {
	case n <= 0:
		return runsearch.DefaultMaxResults, nil
	case n > runsearch.MaxResults:
		return 0, structs.Errorf(structs.CodeInvalid, "max_results must be at most %d, not %d", runsearch.MaxResults, n)
	}
	return int(n), nil
}

// runsearch's errors are already invalid_argument errors, returned as they
// are by the searches below.

// viewStages reads an MLflow view type (ACTIVE_ONLY by default,
// DELETED_ONLY, ALL) as the test of a lifecycle stage it keeps.
func viewStages(view string) (func(stage string) bool, error) {
	switch view {
	case "", "ACTIVE_ONLY", "1":
		return func(stage string) bool { return stage == structs.StageActive }, nil
	case "DELETED_ONLY", "2":
		return func(stage string) bool { return stage == structs.StageDeleted }, nil
	case "ALL", "3":
		return func(string) bool { return true }, nil
	}
	return nil, structs.Errorf(structs.CodeInvalid, "view type %q is not ACTIVE_ONLY, DELETED_ONLY or ALL", view)
}

func (a *Agent) mlflowExperimentSearch(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		MaxResults flexInt  `json:"max_results"`
		PageToken  string   `json:"page_token"`
		Filter     string   `json:"filter"`
		OrderBy    []string `json:"order_by"`
		ViewType   string   `json:"view_type"`
	}
	if err := a.mlflowRequest(w, r, &req); err != nil {
		return nil, err
	}
	filter, err := runsearch.ParseExperimentFilter(req.Filter)
	if err != nil {
		return nil, err
	}
	order, err := runsearch.ParseExperimentOrderBy(req.OrderBy)
	if err != nil {
		return nil, err
	}
	max, err := searchMax(req.MaxResults)
	if err != nil {
		return nil, err
	}
	inView, err := viewStages(req.ViewType)
	if err != nil {
		return nil, err
	}
	txn, err := a.readTxn(w, r)
	if err != nil {
		return nil, err
	}
	defer txn.Discard()
	exps, err := txn.Experiments()
	if err != nil {
		return nil, err
	}
	var keep []*structs.Experiment
	for _, e := range exps {
		if inView(e.Stage) && filter.Match(e) && a.allowed(r, structs.KindExperiment, e.Name, structs.AccessRead) {
			keep = append(keep, e)
		}
	}
	runsearch.SortExperiments(keep, order)
	page, next, err := runsearch.Page(keep, req.PageToken, max)
	if err != nil {
		return nil, err
	}
	out := make([]mlflowExperiment, len(page))
	for i, e := range page {
		out[i] = toMLflowExperiment(e)
	}
	resp := map[string]any{"experiments": out}
	if next != "" {
		resp["next_page_token"] = next
	}
	return resp, nil
}

// mlflowExperimentDelete serves delete and restore.
func (a *Agent) mlflowExperimentDelete(restore bool) func(w http.ResponseWriter, r *http.Request) (any, error) {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		var req struct {
			ExperimentID string `json:"experiment_id"`
		}
		if err := a.mlflowRequest(w, r, &req); err != nil {
			return nil, err
		}
		txn := a.fsm.ReadTxn()
		_, err := a.experimentByID(r, txn, req.ExperimentID, structs.AccessWrite)
		txn.Discard()
		if err != nil {
			return nil, err
		}
		if _, err := a.propose(r.Context(), structs.ExperimentDeleteType, &structs.ExperimentDeleteRequest{
			ID: req.ExperimentID, Restore: restore, At: time.Now().UTC(),
		}, nil); err != nil {
			return nil, err
		}
		return map[string]any{}, nil
	}
}

// --- runs ----------------------------------------------------------------

type mlflowRunInfo struct {
	RunID          string `json:"run_id"`
	RunUUID        string `json:"run_uuid"`
	RunName        string `json:"run_name"`
	ExperimentID   string `json:"experiment_id"`
	UserID         string `json:"user_id"`
	Status         string `json:"status"`
	StartTime      int64  `json:"start_time"`
	EndTime        int64  `json:"end_time,omitempty"`
	ArtifactURI    string `json:"artifact_uri"`
	LifecycleStage string `json:"lifecycle_stage"`
}

type mlflowMetric struct {
	Key       string    `json:"key"`
	Value     jsonFloat `json:"value"`
	Timestamp int64     `json:"timestamp"`
	Step      int64     `json:"step"`
}

// jsonFloat is a float64 whose NaN and infinities go out as the strings
// protobuf's JSON mapping uses ("NaN", "Infinity", "-Infinity"): a metric
// may be NaN, and encoding/json refuses it.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	x := float64(f)
	switch {
	case math.IsNaN(x):
		return []byte(`"NaN"`), nil
	case math.IsInf(x, 1):
		return []byte(`"Infinity"`), nil
	case math.IsInf(x, -1):
		return []byte(`"-Infinity"`), nil
	}
	return json.Marshal(x)
}

type mlflowRun struct {
	Info mlflowRunInfo `json:"info"`
	Data struct {
		Metrics []mlflowMetric `json:"metrics,omitempty"`
		Params  []mlflowTag    `json:"params,omitempty"`
		Tags    []mlflowTag    `json:"tags,omitempty"`
	} `json:"data"`
	Inputs struct{} `json:"inputs"`
}

// runArtifactURI is where a run's artifacts live for an MLflow client: the
// artifacts proxy of whichever node it asks.
func runArtifactURI(txn *raftfsm.Txn, run *structs.Run) string {
	loc := "mlflow-artifacts:/" + run.ExperimentID
	if e, err := txn.Experiment(run.ExperimentID); err == nil && e.ArtifactLocation != "" {
		loc = e.ArtifactLocation
	}
	return loc + "/" + run.ID + "/artifacts"
}

func toMLflowRunInfo(txn *raftfsm.Txn, run *structs.Run) mlflowRunInfo {
	return mlflowRunInfo{RunID: run.ID, RunUUID: run.ID, RunName: run.Name, ExperimentID: run.ExperimentID, UserID: run.UserID,
		Status: run.Status, StartTime: run.StartTime, EndTime: run.EndTime, ArtifactURI: runArtifactURI(txn, run), LifecycleStage: run.Stage}
}

func toMLflowRun(txn *raftfsm.Txn, run *structs.Run) mlflowRun {
	var out mlflowRun
	out.Info = toMLflowRunInfo(txn, run)
	keys := make([]string, 0, len(run.Metrics))
	for k := range run.Metrics {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		m := run.Metrics[k]
		out.Data.Metrics = append(out.Data.Metrics, mlflowMetric{m.Key, jsonFloat(m.Value), m.Timestamp, m.Step})
	}
	out.Data.Params = tagList(run.Params)
	out.Data.Tags = tagList(run.Tags)
	return out
}

// runRef is the run a request names, by run_id or the older run_uuid.
type runRef struct {
	RunID   string `json:"run_id"`
	RunUUID string `json:"run_uuid"`
}

func (ref runRef) id() (string, error) {
	if ref.RunID != "" {
		return ref.RunID, nil
	}
	if ref.RunUUID != "" {
		return ref.RunUUID, nil
	}
	return "", structs.Errorf(structs.CodeInvalid, "missing value for required parameter 'run_id'")
}

// runFor reads the run a request names and checks the token's access to
// its experiment.
func (a *Agent) runFor(r *http.Request, txn *raftfsm.Txn, ref runRef, want structs.ACLAccess) (*structs.Run, error) {
	id, err := ref.id()
	if err != nil {
		return nil, err
	}
	run, err := txn.Run(id)
	if err != nil {
		return nil, err
	}
	return run, a.authorize(r, structs.KindExperiment, experimentName(txn, run.ExperimentID), want)
}

// writableRun reads a run for a write: locally first, and at the leader's
// index when this node has not seen it yet (created a moment ago elsewhere).
func (a *Agent) writableRun(r *http.Request, ref runRef) (*structs.Run, error) {
	txn := a.fsm.ReadTxn()
	run, err := a.runFor(r, txn, ref, structs.AccessWrite)
	txn.Discard()
	if structs.ErrorCode(err) != structs.CodeNotFound {
		return run, err
	}
	txn, cerr := a.consistentTxn(r.Context())
	if cerr != nil {
		return nil, err
	}
	defer txn.Discard()
	return a.runFor(r, txn, ref, structs.AccessWrite)
}

func (a *Agent) mlflowRunCreate(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		ExperimentID string      `json:"experiment_id"`
		UserID       string      `json:"user_id"`
		RunName      string      `json:"run_name"`
		StartTime    flexInt     `json:"start_time"`
		Tags         []mlflowTag `json:"tags"`
	}
	if err := a.mlflowRequest(w, r, &req); err != nil {
		return nil, err
	}
	if req.ExperimentID == "" {
		req.ExperimentID = structs.DefaultExperimentID
	}
	txn := a.fsm.ReadTxn()
	_, err := a.experimentByID(r, txn, req.ExperimentID, structs.AccessWrite)
	txn.Discard()
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	tags := tagMap(req.Tags)
	name := req.RunName
	if name == "" {
		name = tags["mlflow.runName"]
	}
	if name == "" {
		name = "run-" + now.Format("20060102-150405")
	}
	if tags == nil {
		tags = map[string]string{}
	}
	tags["mlflow.runName"] = name
	if req.UserID != "" {
		tags["mlflow.user"] = req.UserID
	}
	start := int64(req.StartTime)
	if start == 0 {
		start = now.UnixMilli()
	}
	run := structs.Run{ID: mlflowRunID(), ExperimentID: req.ExperimentID, Name: name, UserID: req.UserID, StartTime: start, Tags: tags}
	var stored structs.Run
	if _, err := a.propose(r.Context(), structs.RunCreateType, &structs.RunCreateRequest{Run: run}, &stored); err != nil {
		return nil, err
	}
	txn = a.fsm.ReadTxn()
	defer txn.Discard()
	return map[string]any{"run": toMLflowRun(txn, &stored)}, nil
}

// mlflowRunID makes a run ID as MLflow does: 32 random lowercase hex
// digits.
func mlflowRunID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (a *Agent) mlflowRunGet(w http.ResponseWriter, r *http.Request) (any, error) {
	var req runRef
	if err := a.mlflowRequest(w, r, &req); err != nil {
		return nil, err
	}
	txn, err := a.readTxn(w, r)
	if err != nil {
		return nil, err
	}
	defer txn.Discard()
	run, err := a.runFor(r, txn, req, structs.AccessRead)
	if err != nil {
		return nil, err
	}
	return map[string]any{"run": toMLflowRun(txn, run)}, nil
}

func (a *Agent) mlflowRunUpdate(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		runRef
		Status  string  `json:"status"`
		EndTime flexInt `json:"end_time"`
		RunName string  `json:"run_name"`
	}
	if err := a.mlflowRequest(w, r, &req); err != nil {
		return nil, err
	}
	run, err := a.writableRun(r, req.runRef)
	if err != nil {
		return nil, err
	}
	var stored structs.Run
	if _, err := a.propose(r.Context(), structs.RunUpdateType, &structs.RunUpdateRequest{
		ID: run.ID, Status: req.Status, EndTime: int64(req.EndTime), Name: req.RunName,
	}, &stored); err != nil {
		return nil, err
	}
	txn := a.fsm.ReadTxn()
	defer txn.Discard()
	return map[string]any{"run_info": toMLflowRunInfo(txn, &stored)}, nil
}

// mlflowRunDelete serves delete and restore.
func (a *Agent) mlflowRunDelete(stage string) func(w http.ResponseWriter, r *http.Request) (any, error) {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		var req runRef
		if err := a.mlflowRequest(w, r, &req); err != nil {
			return nil, err
		}
		run, err := a.writableRun(r, req)
		if err != nil {
			return nil, err
		}
		if _, err := a.propose(r.Context(), structs.RunUpdateType, &structs.RunUpdateRequest{ID: run.ID, Stage: stage}, nil); err != nil {
			return nil, err
		}
		return map[string]any{}, nil
	}
}

// logToRun writes params, tags and metrics of one run: metrics alone
// through the run logger, which gathers a run's points.
func (a *Agent) logToRun(r *http.Request, ref runRef, req *structs.RunLogRequest) (any, error) {
	run, err := a.writableRun(r, ref)
	if err != nil {
		return nil, err
	}
	req.RunID = run.ID
	if err := a.runLog.Log(r.Context(), req); err != nil {
		return nil, err
	}
	return map[string]any{}, nil
}

type mlflowMetricIn struct {
	Key       string    `json:"key"`
	Value     flexFloat `json:"value"`
	Timestamp flexInt   `json:"timestamp"`
	Step      flexInt   `json:"step"`
}

func (m mlflowMetricIn) point() structs.MetricPoint {
	ts := int64(m.Timestamp)
	if ts == 0 {
		ts = time.Now().UnixMilli()
	}
	return structs.MetricPoint{Key: m.Key, Value: float64(m.Value), Timestamp: ts, Step: int64(m.Step)}
}

func (a *Agent) mlflowLogMetric(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		runRef
		mlflowMetricIn
	}
	if err := a.mlflowRequest(w, r, &req); err != nil {
		return nil, err
	}
	if req.Key == "" {
		return nil, structs.Errorf(structs.CodeInvalid, "missing value for required parameter 'key'")
	}
	return a.logToRun(r, req.runRef, &structs.RunLogRequest{Metrics: []structs.MetricPoint{req.point()}})
}

func (a *Agent) mlflowLogParam(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		runRef
		mlflowTag
	}
	if err := a.mlflowRequest(w, r, &req); err != nil {
		return nil, err
	}
	return a.logToRun(r, req.runRef, &structs.RunLogRequest{Params: []structs.KeyValue{{Key: req.Key, Value: req.Value}}})
}

func (a *Agent) mlflowSetTag(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		runRef
		mlflowTag
	}
	if err := a.mlflowRequest(w, r, &req); err != nil {
		return nil, err
	}
	return a.logToRun(r, req.runRef, &structs.RunLogRequest{Tags: []structs.KeyValue{{Key: req.Key, Value: req.Value}}})
}

func (a *Agent) mlflowDeleteTag(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		runRef
		Key string `json:"key"`
	}
	if err := a.mlflowRequest(w, r, &req); err != nil {
		return nil, err
	}
	return a.logToRun(r, req.runRef, &structs.RunLogRequest{DeleteTags: []string{req.Key}})
}

func (a *Agent) mlflowLogBatch(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		runRef
		Metrics []mlflowMetricIn `json:"metrics"`
		Params  []mlflowTag      `json:"params"`
		Tags    []mlflowTag      `json:"tags"`
	}
	if err := a.mlflowRequest(w, r, &req); err != nil {
		return nil, err
	}
	log := &structs.RunLogRequest{}
	for _, m := range req.Metrics {
		log.Metrics = append(log.Metrics, m.point())
	}
	for _, p := range req.Params {
		log.Params = append(log.Params, structs.KeyValue{Key: p.Key, Value: p.Value})
	}
	for _, t := range req.Tags {
		log.Tags = append(log.Tags, structs.KeyValue{Key: t.Key, Value: t.Value})
	}
	return a.logToRun(r, req.runRef, log)
}

func (a *Agent) mlflowRunSearch(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		ExperimentIDs []string `json:"experiment_ids"`
		Filter        string   `json:"filter"`
		RunViewType   string   `json:"run_view_type"`
		MaxResults    flexInt  `json:"max_results"`
		OrderBy       []string `json:"order_by"`
		PageToken     string   `json:"page_token"`
	}
	if err := a.mlflowRequest(w, r, &req); err != nil {
		return nil, err
	}
	filter, err := runsearch.ParseRunFilter(req.Filter)
	if err != nil {
		return nil, err
	}
	order, err := runsearch.ParseOrderBy(req.OrderBy)
	if err != nil {
		return nil, err
	}
	max, err := searchMax(req.MaxResults)
	if err != nil {
		return nil, err
	}
	inView, err := viewStages(req.RunViewType)
	if err != nil {
		return nil, err
	}
	txn, err := a.readTxn(w, r)
	if err != nil {
		return nil, err
	}
	defer txn.Discard()
	for _, id := range req.ExperimentIDs {
		if _, err := a.experimentByID(r, txn, id, structs.AccessRead); err != nil {
			return nil, err
		}
	}
	runs, err := txn.Runs()
	if err != nil {
		return nil, err
	}
	uri := func(run *structs.Run) string { return runArtifactURI(txn, run) }
	filter = filter.WithArtifactURI(uri)
	var keep []*structs.Run
	for _, run := range runs {
		if inView(run.Stage) && slices.Contains(req.ExperimentIDs, run.ExperimentID) && filter.Match(run) {
			keep = append(keep, run)
		}
	}
	runsearch.SortRunsWith(keep, order, uri)
	page, next, err := runsearch.Page(keep, req.PageToken, max)
	if err != nil {
		return nil, err
	}
	if next == "" {
		next = runsearch.FullPageToken(req.PageToken, len(page), max)
	}
	out := make([]mlflowRun, len(page))
	for i, run := range page {
		out[i] = toMLflowRun(txn, run)
	}
	resp := map[string]any{"runs": out}
	if next != "" {
		resp["next_page_token"] = next
	}
	return resp, nil
}

func (a *Agent) mlflowMetricHistory(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		runRef
		MetricKey  string  `json:"metric_key"`
		MaxResults flexInt `json:"max_results"`
		PageToken  string  `json:"page_token"`
	}
	if err := a.mlflowRequest(w, r, &req); err != nil {
		return nil, err
	}
	if req.MetricKey == "" {
		return nil, structs.Errorf(structs.CodeInvalid, "missing value for required parameter 'metric_key'")
	}
	txn, err := a.readTxn(w, r)
	if err != nil {
		return nil, err
	}
	defer txn.Discard()
	run, err := a.runFor(r, txn, req.runRef, structs.AccessRead)
	if err != nil {
		return nil, err
	}
	points, err := txn.MetricHistory(run.ID, req.MetricKey)
	if err != nil {
		return nil, err
	}
	max := int(req.MaxResults)
	if max <= 0 {
		max = len(points) + 1
	}
	page, next, err := runsearch.Page(points, req.PageToken, max)
	if err != nil {
		return nil, err
	}
	out := make([]mlflowMetric, len(page))
	for i, p := range page {
		out[i] = mlflowMetric{p.Key, jsonFloat(p.Value), p.Timestamp, p.Step}
	}
	resp := map[string]any{"metrics": out}
	if next != "" {
		resp["next_page_token"] = next
	}
	return resp, nil
}

// mlflowRoutes are MLflow's tracking API paths. Each handler checks access
// on the experiment it reads or writes (needBody).
func (a *Agent) mlflowRoutes() []route {
	x := structs.KindExperiment
	h := a.mlflowHandler
	rows := []struct {
		methods []string
		path    string
		handler func(http.ResponseWriter, *http.Request) (any, error)
	}{
		{[]string{"POST"}, "experiments/create", a.mlflowExperimentCreate},
		{[]string{"GET"}, "experiments/get", a.mlflowExperimentGet},
		{[]string{"GET"}, "experiments/get-by-name", a.mlflowExperimentGetByName},
		{[]string{"GET", "POST"}, "experiments/search", a.mlflowExperimentSearch},
		{[]string{"POST"}, "experiments/delete", a.mlflowExperimentDelete(false)},
		{[]string{"POST"}, "experiments/restore", a.mlflowExperimentDelete(true)},
		{[]string{"POST"}, "runs/create", a.mlflowRunCreate},
		{[]string{"GET"}, "runs/get", a.mlflowRunGet},
		{[]string{"POST"}, "runs/update", a.mlflowRunUpdate},
		{[]string{"POST"}, "runs/delete", a.mlflowRunDelete(structs.StageDeleted)},
		{[]string{"POST"}, "runs/restore", a.mlflowRunDelete(structs.StageActive)},
		{[]string{"GET", "POST"}, "runs/search", a.mlflowRunSearch},
		{[]string{"POST"}, "runs/log-metric", a.mlflowLogMetric},
		{[]string{"POST"}, "runs/log-parameter", a.mlflowLogParam},
		{[]string{"POST"}, "runs/log-batch", a.mlflowLogBatch},
		{[]string{"POST"}, "runs/set-tag", a.mlflowSetTag},
		{[]string{"POST"}, "runs/delete-tag", a.mlflowDeleteTag},
		{[]string{"GET"}, "metrics/get-history", a.mlflowMetricHistory},
	}
	out := []route{
		{pattern: "PUT " + mlflowArtifactsPath + "/{path...}", handler: h(a.mlflowArtifactPut), kind: x, need: needBody},
		{pattern: "GET " + mlflowArtifactsPath + "/{path...}", handler: a.mlflowArtifactGet, kind: x, need: needBody},
		{pattern: "GET " + mlflowArtifactsPath, handler: h(a.mlflowArtifactList), kind: x, need: needBody},
	}
	for _, row := range rows {
		for _, m := range row.methods {
			out = append(out, route{pattern: m + " " + mlflowPrefix + row.path, handler: h(row.handler), kind: x, need: needBody})
		}
	}
	return out
}

// --- the artifacts proxy --------------------------------------------------

// A run's artifact_uri, mlflow-artifacts:/<experiment>/<run>/artifacts, makes
// the client send its files here: PUT to upload, GET to download, and GET
// with ?path= to list a directory. Each file is a blob, copied to
// artifact_replicas nodes before it is recorded, like a model file.

const mlflowArtifactsPath = "/api/2.0/mlflow-artifacts/artifacts"

// artifactRef splits <experiment>/<run>/artifacts[/<path>] into the run
// and the path inside its artifacts ("" for the root).
func artifactRef(p string) (run, rel string, err error) {
	parts := strings.SplitN(strings.Trim(p, "/"), "/", 4)
	if len(parts) < 3 || parts[2] != "artifacts" || parts[1] == "" {
		return "", "", structs.Errorf(structs.CodeInvalid, "artifact path %q is not <experiment_id>/<run_id>/artifacts/<path>", p)
	}
	if len(parts) == 4 {
		rel = parts[3]
	}
	return parts[1], rel, nil
}

func (a *Agent) mlflowArtifactPut(w http.ResponseWriter, r *http.Request) (any, error) {
	w, body := longRequest(w, r, a.cfg.Limits.UploadIdleTimeout)
	runID, rel, err := artifactRef(r.PathValue("path"))
	if err != nil {
		return nil, err
	}
	if err := structs.ValidateArtifactPath(rel); err != nil {
		return nil, err
	}
	run, err := a.writableRun(r, runRef{RunID: runID})
	if err != nil {
		return nil, err
	}
	release, err := a.acquireUpload()
	if err != nil {
		return nil, err
	}
	defer release()
	tmp, digest, size, err := a.blobs.Ingest(body, a.cfg.MaxArtifactBytes)
	switch {
	case errors.Is(err, blobs.ErrTooLarge):
		return nil, structs.Errorf(structs.CodeTooLarge, "artifact is larger than serving.max_artifact_bytes (%d bytes)", a.cfg.MaxArtifactBytes)
	case errors.Is(err, errUploadStalled):
		return nil, stalledError(a.cfg.Limits.UploadIdleTimeout)
	case err != nil:
		return nil, structs.Errorf(structs.CodeInvalid, "reading the artifact: %v", err)
	}
	if err := a.blobs.Commit(tmp, digest); err != nil {
		return nil, err
	}
	holders, err := a.replicateBlobs(r.Context(), digest)
	if err != nil {
		return nil, err
	}
	art := structs.RunArtifact{RunID: run.ID, Path: rel, Digest: digest, Size: size, Holders: holders}
	if _, err := a.propose(r.Context(), structs.RunArtifactPutType, &structs.RunArtifactPutRequest{Artifact: art}, nil); err != nil {
		return nil, err
	}
	return map[string]any{}, nil
}

// mlflowArtifactGet downloads one file.
func (a *Agent) mlflowArtifactGet(w http.ResponseWriter, r *http.Request) {
	runID, rel, err := artifactRef(r.PathValue("path"))
	if err != nil {
		mlflowError(w, err)
		return
	}
	txn, err := a.readTxn(w, r)
	if err != nil {
		mlflowError(w, err)
		return
	}
	run, err := a.runFor(r, txn, runRef{RunID: runID}, structs.AccessRead)
	var art *structs.RunArtifact
	if err == nil {
		art, err = txn.RunArtifact(run.ID, rel)
	}
	txn.Discard()
	if err != nil {
		mlflowError(w, err)
		return
	}
	path, err := a.xfer.Ensure(r.Context(), art.Digest, art.Holders)
	if err != nil {
		mlflowError(w, structs.Errorf(structs.CodeUnavailable, "artifact %s of run %s could not be fetched from its holders: %v", rel, run.ID, err))
		return
	}
	f, err := os.Open(path)
	if err != nil {
		mlflowError(w, err)
		return
	}
	defer f.Close()
	w, _ = longRequest(w, r, a.cfg.Limits.UploadIdleTimeout)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(art.Size, 10))
	_, _ = io.Copy(w, f)
}

type mlflowFileInfo struct {
	Path     string `json:"path"`
	IsDir    bool   `json:"is_dir"`
	FileSize int64  `json:"file_size,omitempty"`
}

// mlflowArtifactList lists one directory of a run's artifacts: base names,
// subdirectories once each. A file's own path, or nothing, lists as {}.
func (a *Agent) mlflowArtifactList(w http.ResponseWriter, r *http.Request) (any, error) {
	runID, dir, err := artifactRef(r.URL.Query().Get("path"))
	if err != nil {
		return nil, err
	}
	txn, err := a.readTxn(w, r)
	if err != nil {
		return nil, err
	}
	defer txn.Discard()
	run, err := a.runFor(r, txn, runRef{RunID: runID}, structs.AccessRead)
	if err != nil {
		return nil, err
	}
	arts, err := txn.RunArtifacts(run.ID)
	if err != nil {
		return nil, err
	}
	prefix := ""
	if dir != "" {
		prefix = strings.TrimSuffix(dir, "/") + "/"
	}
	var files []mlflowFileInfo
	seen := map[string]bool{}
	for _, art := range arts {
		rest, ok := strings.CutPrefix(art.Path, prefix)
		if !ok || rest == "" {
			continue
		}
		name, _, isDir := strings.Cut(rest, "/")
		if seen[name] {
			continue
		}
		seen[name] = true
		fi := mlflowFileInfo{Path: name, IsDir: isDir}
		if !isDir {
			fi.FileSize = art.Size
		}
		files = append(files, fi)
	}
	if len(files) == 0 {
		return map[string]any{}, nil
	}
	return map[string]any{"files": files}, nil
}
