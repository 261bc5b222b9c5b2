package node

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
)

// The dashboard's experiment pages (ui_endpoint.go has the frame): the
// experiments, an experiment's runs in a table sorted by any column, and a
// comparison of chosen runs with their metric curves overlaid.

// uiExperiments lists experiments.
func (a *Agent) uiExperiments(q *uiReq) (string, error) {
	q.view.Title, q.view.Nav, q.view.API = "Experiments", "experiments", "/v1/experiments"
	var list struct {
		Items []map[string]any `json:"items"`
	}
	if err := q.api("GET", "/v1/experiments", nil, &list); err != nil {
		return "", err
	}
	q.view.Data = map[string]any{"Experiments": list.Items}
	return "experiments", nil
}

// uiExperiment shows an experiment's runs, 50 a page, with a column for
// every param and metric of the page; ?order_by= and ?filter= are the API's
// (MLflow's syntax), so a column header sorts by asking the API.
func (a *Agent) uiExperiment(q *uiReq) (string, error) {
	name := q.r.PathValue("name")
	in := q.r.URL.Query()
	query := url.Values{"experiment": {name}, "limit": {strconv.Itoa(uiPageSize)}}
	for _, k := range []string{"order_by", "filter", "cursor"} {
		if v := in.Get(k); v != "" {
			query.Set(k, v)
		}
	}
	path := "/v1/runs?" + query.Encode()
	q.view.Title, q.view.Nav, q.view.API = "Experiment "+name, "experiments", path
	var list struct {
		Items []struct {
			ID      string            `json:"id"`
			Name    string            `json:"name"`
			Status  string            `json:"status"`
			Start   any               `json:"start_time"`
			Params  map[string]string `json:"params"`
			Metrics map[string]any    `json:"metrics"`
		} `json:"items"`
		Next string `json:"next_cursor"`
	}
	if err := q.api("GET", path, nil, &list); err != nil {
		return "", err
	}
	var params, metrics []string
	for _, r := range list.Items {
		for k := range r.Params {
			if !slices.Contains(params, k) {
				params = append(params, k)
			}
		}
		for k := range r.Metrics {
			if !slices.Contains(metrics, k) {
				metrics = append(metrics, k)
			}
		}
	}
	slices.Sort(params)
	slices.Sort(metrics)
	type row struct {
		ID, Name, Status string
		Start            float64
		Params           []string
		Metrics          []any
	}
	rows := make([]row, len(list.Items))
	for i, r := range list.Items {
		rows[i] = row{ID: r.ID, Name: r.Name, Status: r.Status, Start: millis(r.Start) / 1000}
		for _, p := range params {
			rows[i].Params = append(rows[i].Params, r.Params[p])
		}
		for _, m := range metrics {
			rows[i].Metrics = append(rows[i].Metrics, r.Metrics[m])
		}
	}
	sortLink := func(key string) string {
		order := key + " DESC"
		if in.Get("order_by") == order {
			order = key + " ASC"
		}
		v := url.Values{"order_by": {order}}
		if f := in.Get("filter"); f != "" {
			v.Set("filter", f)
		}
		return "?" + v.Encode()
	}
	var paramLinks, metricLinks []string
	for _, p := range params {
		paramLinks = append(paramLinks, sortLink("params."+p))
	}
	for _, m := range metrics {
		metricLinks = append(metricLinks, sortLink("metrics."+m))
	}
	q.view.Data = map[string]any{"Name": name, "Params": params, "Metrics": metrics, "ParamLinks": paramLinks,
		"MetricLinks": metricLinks, "Rows": rows, "Next": list.Next, "Filter": in.Get("filter"), "OrderBy": in.Get("order_by")}
	return "experiment", nil
}

// uiCompare overlays the chosen runs' metric curves: one chart per metric,
// one series per run, by step.
func (a *Agent) uiCompare(q *uiReq) (string, error) {
	name := q.r.PathValue("name")
	ids := q.r.URL.Query()["run"]
	q.view.Title, q.view.Nav, q.view.API = "Compare runs of "+name, "experiments", "/v1/runs?experiment="+url.QueryEscape(name)
	if len(ids) > 10 {
		ids = ids[:10]
	}
	type runInfo struct {
		ID      string            `json:"id"`
		Name    string            `json:"name"`
		Params  map[string]string `json:"params"`
		Metrics map[string]any    `json:"metrics"`
	}
	var runs []runInfo
	keys := []string{}
	for _, id := range ids {
		var r runInfo
		if err := q.api("GET", "/v1/runs/"+url.PathEscape(id), nil, &r); err != nil {
			return "", err
		}
		runs = append(runs, r)
		for k := range r.Metrics {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	var charts []uiChart
	for _, k := range keys {
		byRun := make([]map[float64]float64, len(runs))
		var steps []float64
		for i, r := range runs {
			byRun[i] = map[float64]float64{}
			var hist struct {
				Points []struct {
					Step  float64 `json:"step"`
					Value any     `json:"value"`
				} `json:"points"`
			}
			if err := q.api("GET", "/v1/runs/"+url.PathEscape(r.ID)+"/metrics/"+url.PathEscape(k), nil, &hist); err != nil {
				continue
			}
			for _, p := range hist.Points {
				if v, ok := p.Value.(float64); ok {
					if _, seen := byRun[i][p.Step]; !seen && !slices.Contains(steps, p.Step) {
						steps = append(steps, p.Step)
					}
					byRun[i][p.Step] = v
				}
			}
		}
		slices.Sort(steps)
		c := uiChart{Title: k + " by step", XLabel: "step", X: steps}
		for i, r := range runs {
			s := uiSeries{Label: r.Name + " (" + r.ID + ")"}
			for _, st := range steps {
				if v, ok := byRun[i][st]; ok {
					s.Values = append(s.Values, &v)
				} else {
					s.Values = append(s.Values, nil)
				}
			}
			c.Series = append(c.Series, s)
		}
		if len(steps) > 0 {
			charts = append(charts, c)
		}
	}
	q.view.Data = map[string]any{"Name": name, "Runs": runs, "Charts": charts}
	return "compare", nil
}

// millis reads MLflow's int64 milliseconds, which its JSON writes as a
// string.
func millis(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case string:
		f, _ := strconv.ParseFloat(x, 64)
		return f
	}
	return 0
}

// uiTunings lists tuning studies, newest first, with their best trial.
func (a *Agent) uiTunings(q *uiReq) (string, error) {
	q.view.Title, q.view.Nav, q.view.API, q.view.Live = "Tuning studies", "experiments", "/v1/tuning", true
	var list struct {
		Items []map[string]any `json:"items"`
	}
	if err := q.api("GET", "/v1/tuning", nil, &list); err != nil {
		return "", err
	}
	slices.Reverse(list.Items)
	if len(list.Items) > uiPageSize {
		list.Items = list.Items[:uiPageSize]
	}
	q.view.Data = map[string]any{"Studies": list.Items}
	return "tunings", nil
}

// uiTuning shows one study: its search, each trial's parameters, state and
// value, and the early-stopping decisions, with a chart of the value by
// trial.
func (a *Agent) uiTuning(q *uiReq) (string, error) {
	id := q.r.PathValue("id")
	path := "/v1/tuning/" + url.PathEscape(id)
	q.view.Title, q.view.Nav, q.view.API = "Tuning "+id, "experiments", path
	var body json.RawMessage
	if err := q.api("GET", path, nil, &body); err != nil {
		return "", err
	}
	var raw map[string]any
	var study struct {
		State  string `json:"state"`
		Trials []struct {
			Index        int            `json:"index"`
			JobID        string         `json:"job_id"`
			Params       map[string]any `json:"params"`
			State        string         `json:"state"`
			Value        *float64       `json:"value"`
			StoppedEarly bool           `json:"stopped_early"`
			StopReason   string         `json:"stop_reason"`
		} `json:"trials"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return "", err
	}
	if err := json.Unmarshal(body, &study); err != nil {
		return "", err
	}
	if spec, ok := raw["spec"].(map[string]any); ok && spec["name"] != nil {
		q.view.Title = fmt.Sprintf("Tuning %v", spec["name"])
	}
	q.view.Live = study.State == "running"
	var params []string
	chart := uiChart{Title: "Trial values", XLabel: "trial", Series: []uiSeries{{Label: "value"}}}
	stopped := 0
	for _, tr := range study.Trials {
		for k := range tr.Params {
			if !slices.Contains(params, k) {
				params = append(params, k)
			}
		}
		if tr.StoppedEarly {
			stopped++
		}
		chart.X = append(chart.X, float64(tr.Index))
		chart.Series[0].Values = append(chart.Series[0].Values, tr.Value)
	}
	slices.Sort(params)
	var charts []uiChart
	if len(chart.X) > 0 {
		charts = append(charts, chart)
	}
	q.view.Data = map[string]any{"Study": raw, "Trials": study.Trials, "Params": params, "Stopped": stopped, "Charts": charts}
	return "tuning", nil
}
