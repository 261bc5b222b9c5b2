package node

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// The dashboard's job pages (ui_endpoint.go has the frame).

// uiJobs lists jobs, 50 a page: the queue and the running ones first as the
// API orders them, with their nodes and GPUs.
func (a *Agent) uiJobs(q *uiReq) (string, error) {
	q.view.Title, q.view.Nav, q.view.Live = "Jobs", "jobs", true
	items, next, err := q.listPage("/v1/jobs")
	if err != nil {
		return "", err
	}
	q.view.Data = map[string]any{"Jobs": items, "Next": next}
	return "jobs", nil
}

// uiJob shows a job: its state history, allocations, log tail, final
// metrics, and a chart of each metric's steps from its run.
func (a *Agent) uiJob(q *uiReq) (string, error) {
	id := q.r.PathValue("id")
	path := "/v1/jobs/" + url.PathEscape(id)
	q.view.Title, q.view.Nav, q.view.API, q.view.Live = "Job "+id, "jobs", path, true
	var job map[string]any
	if err := q.api("GET", path, nil, &job); err != nil {
		return "", err
	}
	if spec, ok := job["spec"].(map[string]any); ok {
		q.view.Title = fmt.Sprintf("Job %v", spec["name"])
	}
	// A finished job no longer changes: its page stops polling (and keeps
	// its charts, which a refresh would have to redraw).
	state, _ := job["state"].(string)
	q.view.Live = !slices.Contains([]string{"succeeded", "failed", "cancelled", "lost"}, state)
	var charts []uiChart
	runID, _ := job["run_id"].(string)
	metrics, _ := job["metrics"].(map[string]any)
	keys := make([]string, 0, len(metrics))
	for k := range metrics {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if runID == "" {
			break
		}
		var hist struct {
			Points []struct {
				Step  float64 `json:"step"`
				Value any     `json:"value"`
			} `json:"points"`
		}
		if err := q.api("GET", "/v1/runs/"+url.PathEscape(runID)+"/metrics/"+url.PathEscape(k), nil, &hist); err != nil {
			continue // the run may be unreadable to this token; the final value still shows
		}
		c := uiChart{Title: k + " by step", XLabel: "step", Series: []uiSeries{{Label: k}}}
		for _, p := range hist.Points {
			if v, ok := p.Value.(float64); ok {
				c.X, c.Series[0].Values = append(c.X, p.Step), append(c.Series[0].Values, &v)
			}
		}
		if len(c.X) > 0 {
			charts = append(charts, c)
		}
	}
	spec, _ := job["spec"].(map[string]any)
	name, _ := spec["name"].(string)
	q.view.Data = map[string]any{"Job": job, "Charts": charts, "CanWrite": q.mayWrite(structs.KindJob, name)}
	return "job", nil
}

// uiJobCancel asks to cancel a job.
func (a *Agent) uiJobCancel(q *uiReq) error {
	id := q.r.PathValue("id")
	if err := q.api("POST", "/v1/jobs/"+url.PathEscape(id)+"/cancel", nil, nil); err != nil {
		return err
	}
	http.Redirect(q.w, q.r, "/ui/jobs/"+url.PathEscape(id), http.StatusSeeOther)
	return nil
}

// uiJobRetry submits a finished job again and shows the new job.
func (a *Agent) uiJobRetry(q *uiReq) error {
	var j struct {
		ID string `json:"id"`
	}
	if err := q.api("POST", "/v1/jobs/"+url.PathEscape(q.r.PathValue("id"))+"/retry", nil, &j); err != nil {
		return err
	}
	http.Redirect(q.w, q.r, "/ui/jobs/"+url.PathEscape(j.ID), http.StatusSeeOther)
	return nil
}
