package node

import (
	"fmt"
	"net/url"
	"slices"
	"time"
)

// The dashboard's monitoring pages (ui_endpoint.go has the frame).

// uiChart is one chart: x values (unix seconds when Time is set) and one
// or more series over them. The template draws it with uPlot (kiln.js)
// and writes the same numbers as a table.
type uiChart struct {
	Title string `json:"title"`
	Time  bool   `json:"time"`
	// Span is the seconds a time chart shows up to its newest point (an
	// hour when 0).
	Span   int        `json:"span,omitempty"`
	XLabel string     `json:"xlabel"`
	X      []float64  `json:"x"`
	Series []uiSeries `json:"series"`
}

type uiSeries struct {
	Label  string     `json:"label"`
	Values []*float64 `json:"values"` // nil: no value at that x
}

// Rows gives the chart's numbers row by row, for its table.
func (c uiChart) Rows() [][]*float64 {
	rows := make([][]*float64, len(c.X))
	for i := range c.X {
		x := c.X[i]
		rows[i] = append(rows[i], &x)
		for _, s := range c.Series {
			rows[i] = append(rows[i], s.Values[i])
		}
	}
	return rows
}

// uiMonitoring lists the monitors and the alerts, firing and resolved,
// with the actions they took.
func (a *Agent) uiMonitoring(q *uiReq) (string, error) {
	q.view.Title, q.view.Nav, q.view.API, q.view.Live = "Monitoring", "monitoring", "/v1/alerts", true
	var monitors, alerts struct {
		Items []map[string]any `json:"items"`
	}
	if err := q.api("GET", "/v1/monitors?limit=200", nil, &monitors); err != nil {
		return "", err
	}
	if err := q.api("GET", "/v1/alerts", nil, &alerts); err != nil {
		return "", err
	}
	q.view.Data = map[string]any{"Monitors": monitors.Items, "Alerts": alerts.Items}
	return "monitoring", nil
}

// uiMonitor shows a deployment's drift over the last day, one chart per
// feature (the statistic and its threshold at each check), and its
// performance from feedback labels by hour over the last day. The page is
// live, so the layout loads the chart scripts.
func (a *Agent) uiMonitor(q *uiReq) (string, error) {
	name := q.r.PathValue("name")
	path := "/v1/monitors/" + url.PathEscape(name) + "/drift"
	q.view.Title, q.view.Nav, q.view.API, q.view.Live = "Monitoring "+name, "monitoring", path, true
	var monitor map[string]any
	if err := q.api("GET", "/v1/monitors/"+url.PathEscape(name), nil, &monitor); err != nil {
		return "", err
	}
	var checks struct {
		Items []struct {
			CheckedAt time.Time `json:"checked_at"`
			Skipped   string    `json:"skipped"`
			Features  []struct {
				Name      string  `json:"name"`
				Test      string  `json:"test"`
				Statistic float64 `json:"statistic"`
				Threshold float64 `json:"threshold"`
				Drift     bool    `json:"drift"`
				Error     string  `json:"error"`
			} `json:"features"`
		} `json:"items"`
	}
	if err := q.api("GET", path, nil, &checks); err != nil {
		return "", err
	}
	charts := map[string]*uiChart{}
	var order []string
	var xs []float64
	for i, c := range checks.Items {
		xs = append(xs, float64(c.CheckedAt.Unix()))
		for _, f := range c.Features {
			ch, ok := charts[f.Name]
			if !ok {
				ch = &uiChart{Title: f.Name + " (" + f.Test + ")", Time: true, Span: 86400, XLabel: "checked at",
					Series: []uiSeries{{Label: "statistic"}, {Label: "threshold"}}}
				charts[f.Name] = ch
				order = append(order, f.Name)
			}
			for len(ch.Series[0].Values) < i {
				ch.Series[0].Values = append(ch.Series[0].Values, nil)
				ch.Series[1].Values = append(ch.Series[1].Values, nil)
			}
			if f.Error == "" {
				s, t := f.Statistic, f.Threshold
				ch.Series[0].Values = append(ch.Series[0].Values, &s)
				ch.Series[1].Values = append(ch.Series[1].Values, &t)
			}
		}
	}
	slices.Sort(order)
	list := make([]uiChart, 0, len(order))
	for _, n := range order {
		ch := charts[n]
		for len(ch.Series[0].Values) < len(xs) {
			ch.Series[0].Values = append(ch.Series[0].Values, nil)
			ch.Series[1].Values = append(ch.Series[1].Values, nil)
		}
		ch.X = xs
		list = append(list, *ch)
	}
	var perf map[string]any
	var perfCharts []uiChart
	if q.api("GET", "/v1/deployments/"+url.PathEscape(name)+"/performance?window=24h&step=1h", nil, &perf) == nil {
		perfCharts = performanceCharts(perf)
	}
	q.view.Data = map[string]any{"Monitor": monitor, "DriftCharts": list, "PerfCharts": perfCharts, "Checks": len(checks.Items), "Performance": perf}
	return "monitor", nil
}

// performanceCharts draws a performance report's series (?step=): one
// chart per metric the task has, one line per version, a point per step
// with labelled rows.
func performanceCharts(perf map[string]any) []uiChart {
	metrics := []string{"accuracy", "f1"}
	if perf["task"] == "regression" {
		metrics = []string{"rmse", "mae"}
	}
	steps := asMaps(perf["series"])
	xs := make([]float64, len(steps))
	vals := map[string]map[float64][]*float64{} // metric → version → value per step
	var versions []float64
	for i, st := range steps {
		at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(st["from"]))
		if err != nil {
			return nil
		}
		xs[i] = float64(at.Unix())
		for _, v := range asMaps(st["versions"]) {
			ver, _ := v["version"].(float64)
			if !slices.Contains(versions, ver) {
				versions = append(versions, ver)
			}
			for _, m := range metrics {
				if x, ok := v[m].(float64); ok {
					if vals[m] == nil {
						vals[m] = map[float64][]*float64{}
					}
					if vals[m][ver] == nil {
						vals[m][ver] = make([]*float64, len(steps))
					}
					vals[m][ver][i] = &x
				}
			}
		}
	}
	slices.Sort(versions)
	var charts []uiChart
	for _, m := range metrics {
		if len(vals[m]) == 0 {
			continue
		}
		c := uiChart{Title: m + " by hour, from feedback", Time: true, Span: 86400, XLabel: "hour from", X: xs}
		for _, ver := range versions {
			col := vals[m][ver]
			if col == nil {
				col = make([]*float64, len(xs)) // a version without this metric
			}
			c.Series = append(c.Series, uiSeries{Label: fmt.Sprintf("v%v", ver), Values: col})
		}
		charts = append(charts, c)
	}
	return charts
}
