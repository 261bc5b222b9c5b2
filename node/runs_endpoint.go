package node

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kilnml/kiln/node/internal/runsearch"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// Experiments and runs in Kiln's own API (DESIGN.md §7); mlflow_endpoint.go
// serves the same records as MLflow's REST API.

// runView is a run as /v1 shows it.
type runView struct {
	ID              string               `json:"id"`
	Name            string               `json:"name"`
	Experiment      string               `json:"experiment"`
	ExperimentID    string               `json:"experiment_id"`
	Status          string               `json:"status"`
	LifecycleStage  string               `json:"lifecycle_stage"`
	JobID           string               `json:"job_id,omitempty"`
	Params          map[string]string    `json:"params"`
	Metrics         map[string]jsonFloat `json:"metrics"`
	Tags            map[string]string    `json:"tags"`
	Artifacts       []string             `json:"artifacts"`
	StartTime       time.Time            `json:"start_time"`
	EndTime         *time.Time           `json:"end_time,omitempty"`
	DurationSeconds float64              `json:"duration_seconds"`
}

func viewRun(txn *raftfsm.Txn, r *structs.Run, now time.Time) (*runView, error) {
	v := &runView{ID: r.ID, Name: r.Name, ExperimentID: r.ExperimentID, Status: r.Status, LifecycleStage: r.Stage, JobID: r.JobID,
		Params: orEmpty(r.Params), Tags: orEmpty(r.Tags), Metrics: map[string]jsonFloat{}, Artifacts: []string{},
		StartTime: time.UnixMilli(r.StartTime).UTC()}
	if e, err := txn.Experiment(r.ExperimentID); err == nil {
		v.Experiment = e.Name
	}
	for k, m := range r.Metrics {
		v.Metrics[k] = jsonFloat(m.Value)
	}
	arts, err := txn.RunArtifacts(r.ID)
	if err != nil {
		return nil, err
	}
	for _, a := range arts {
		v.Artifacts = append(v.Artifacts, a.Path)
	}
	end := now
	if r.EndTime > 0 {
		t := time.UnixMilli(r.EndTime).UTC()
		v.EndTime, end = &t, t
	}
	if r.StartTime > 0 {
		v.DurationSeconds = end.Sub(v.StartTime).Seconds()
	}
	return v, nil
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// experimentName is the ACL name of a run: its experiment's name.
func experimentName(txn *raftfsm.Txn, id string) string {
	if e, err := txn.Experiment(id); err == nil {
		return e.Name
	}
	return ""
}

func (a *Agent) handleExperimentList(w http.ResponseWriter, r *http.Request) {
	serveRead(a, w, r, func(txn *raftfsm.Txn) (any, error) {
		exps, err := txn.Experiments()
		if err != nil {
			return nil, err
		}
		exps = slices.DeleteFunc(exps, func(e *structs.Experiment) bool {
			return !a.allowed(r, structs.KindExperiment, e.Name, structs.AccessRead)
		})
		for _, e := range exps {
			if e.Tags == nil {
				e.Tags = map[string]string{}
			}
		}
		return map[string]any{"items": exps}, nil
	})
}

// handleRunList answers GET /v1/runs?experiment=NAME&filter=...&order_by=...
// &limit=N&cursor=C: MLflow's search syntax (filter: metrics.auc > 0.9 and
// params.max_depth > 4; order_by: metrics.auc desc, comma-separated).
func (a *Agent) handleRunList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for key := range q {
		switch key {
		case "experiment", "filter", "order_by", "limit", "cursor", "consistency", "index":
		default:
			writeError(w, structs.Errorf(structs.CodeInvalid, "unknown query parameter %q: use experiment, filter, order_by, limit or cursor", key))
			return
		}
	}
	filter, err := runsearch.ParseRunFilter(q.Get("filter"))
	if err != nil {
		writeError(w, structs.Errorf(structs.CodeInvalid, "filter: %v", err))
		return
	}
	var clauses []string
	if s := q.Get("order_by"); s != "" {
		clauses = strings.Split(s, ",")
	}
	order, err := runsearch.ParseOrderBy(clauses)
	if err != nil {
		writeError(w, structs.Errorf(structs.CodeInvalid, "order_by: %v", err))
		return
	}
	_, limit, err := listParams(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if limit == 0 {
		limit = 1000
	}
	now := time.Now()
	serveRead(a, w, r, func(txn *raftfsm.Txn) (any, error) {
		var expID string
		if name := q.Get("experiment"); name != "" {
			e, err := txn.ExperimentByName(name)
			if err != nil {
				return nil, err
			}
			expID = e.ID
		}
		runs, err := txn.Runs()
		if err != nil {
			return nil, err
		}
		readable := map[string]bool{} // experiment ID -> the token may read it
		runs = slices.DeleteFunc(runs, func(run *structs.Run) bool {
			ok, seen := readable[run.ExperimentID]
			if !seen {
				ok = a.allowed(r, structs.KindExperiment, experimentName(txn, run.ExperimentID), structs.AccessRead)
				readable[run.ExperimentID] = ok
			}
			return !ok || run.Stage != structs.StageActive || (expID != "" && run.ExperimentID != expID) || !filter.Match(run)
		})
		runsearch.SortRuns(runs, order)
		page, next, err := runsearch.Page(runs, q.Get("cursor"), limit)
		if err != nil {
			return nil, structs.Errorf(structs.CodeInvalid, "cursor: %v", err)
		}
		items := make([]*runView, len(page))
		for i, run := range page {
			if items[i], err = viewRun(txn, run, now); err != nil {
				return nil, err
			}
		}
		return map[string]any{"items": items, "next_cursor": next}, nil
	})
}

func (a *Agent) handleRunGet(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	serveRead(a, w, r, func(txn *raftfsm.Txn) (*runView, error) {
		run, err := txn.Run(id)
		if err != nil {
			return nil, err
		}
		if err := a.authorize(r, structs.KindExperiment, experimentName(txn, run.ExperimentID), structs.AccessRead); err != nil {
			return nil, err
		}
		return viewRun(txn, run, time.Now())
	})
}

// handleRunMetricHistory answers every point of one metric of a run.
func (a *Agent) handleRunMetricHistory(w http.ResponseWriter, r *http.Request) {
	id, key := r.PathValue("id"), r.PathValue("key")
	serveRead(a, w, r, func(txn *raftfsm.Txn) (any, error) {
		run, err := txn.Run(id)
		if err != nil {
			return nil, err
		}
		if err := a.authorize(r, structs.KindExperiment, experimentName(txn, run.ExperimentID), structs.AccessRead); err != nil {
			return nil, err
		}
		points, err := txn.MetricHistory(id, key)
		if err != nil {
			return nil, err
		}
		out := make([]mlflowMetric, len(points))
		for i, p := range points {
			out[i] = mlflowMetric{p.Key, jsonFloat(p.Value), p.Timestamp, p.Step}
		}
		return map[string]any{"run_id": id, "key": key, "points": out}, nil
	})
}

// runsEndpoint: experiments and runs, in Kiln's API and in MLflow's.
func (a *Agent) runsEndpoint() endpoint {
	x := structs.KindExperiment
	e := endpoint{routes: []route{
		{pattern: "GET /v1/experiments", handler: a.handleExperimentList, kind: x, need: needList},
		{pattern: "GET /v1/runs", handler: a.handleRunList, kind: x, need: needList},
		{pattern: "GET /v1/runs/{id}", handler: a.handleRunGet, kind: x, need: needBody},
		{pattern: "GET /v1/runs/{id}/metrics/{key...}", handler: a.handleRunMetricHistory, kind: x, need: needBody},
	}}
	e.routes = append(e.routes, a.mlflowRoutes()...)
	return e
}
