package node

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// The dashboard's model pages (ui_endpoint.go has the frame): the list,
// a model with its deployment, its serving charts and its actions.

// uiModels lists models, 50 a page, those starting with ?prefix= if given.
func (a *Agent) uiModels(q *uiReq) (string, error) {
	q.view.Title, q.view.Nav = "Models", "models"
	items, next, err := q.listPage("/v1/models", "prefix")
	if err != nil {
		return "", err
	}
	q.view.Data = map[string]any{"Models": items, "Next": next, "Prefix": q.r.URL.Query().Get("prefix")}
	return "models", nil
}

// uiModel shows one model: its versions and its deployment, with the
// actions the token may take.
func (a *Agent) uiModel(q *uiReq) (string, error) {
	name := q.r.PathValue("name")
	base := "/v1/models/" + url.PathEscape(name)
	q.view.Title, q.view.Nav, q.view.API = "Model "+name, "models", base
	var model map[string]any
	if err := q.api("GET", base, nil, &model); err != nil {
		return "", err
	}
	var versions struct {
		Items []map[string]any `json:"items"`
	}
	if err := q.api("GET", base+"/versions?limit="+strconv.Itoa(uiPageSize), nil, &versions); err != nil {
		return "", err
	}
	var deployment map[string]any
	err := q.api("GET", "/v1/deployments/"+url.PathEscape(name), nil, &deployment)
	if ue, ok := err.(*uiError); ok && ue.status == http.StatusNotFound {
		deployment, err = nil, nil
	}
	if err != nil && !isForbidden(err) {
		return "", err
	}
	var charts []uiChart
	if deployment != nil {
		charts = q.servingCharts(name)
	}
	q.view.Data = map[string]any{"Model": model, "Versions": versions.Items, "Deployment": deployment, "Charts": charts,
		"CanWrite": deployment != nil && q.mayWrite(structs.KindDeployment, name)}
	return "model", nil
}

// uiRollback rolls a deployment back to its previous traffic split.
func (a *Agent) uiRollback(q *uiReq) error {
	name := q.r.PathValue("name")
	if err := q.api("POST", "/v1/deployments/"+url.PathEscape(name)+"/rollback", nil, nil); err != nil {
		return err
	}
	http.Redirect(q.w, q.r, "/ui/models/"+url.PathEscape(name), http.StatusSeeOther)
	return nil
}

// servingCharts reads a deployment's last hour (GET
// /v1/deployments/{name}/timeseries) as charts: requests a second, one
// series per version, then each version's latency percentiles.
func (q *uiReq) servingCharts(name string) []uiChart {
	var ts struct {
		Points []struct {
			At       time.Time           `json:"at"`
			Versions []TimeSeriesVersion `json:"versions"`
		} `json:"points"`
	}
	if err := q.api("GET", "/v1/deployments/"+url.PathEscape(name)+"/timeseries?window=1h", nil, &ts); err != nil || len(ts.Points) == 0 {
		return nil
	}
	var versions []uint64
	for _, p := range ts.Points {
		for _, v := range p.Versions {
			if !slices.Contains(versions, v.Version) {
				versions = append(versions, v.Version)
			}
		}
	}
	if len(versions) == 0 {
		return nil // nothing served in the window: no chart to draw
	}
	slices.Sort(versions)
	x := make([]float64, len(ts.Points))
	for i, p := range ts.Points {
		x[i] = float64(p.At.Unix())
	}
	at := func(i int, version uint64) *TimeSeriesVersion {
		for k := range ts.Points[i].Versions {
			if ts.Points[i].Versions[k].Version == version {
				return &ts.Points[i].Versions[k]
			}
		}
		return nil
	}
	rate := uiChart{Title: "Requests a second, by version", Time: true, XLabel: "time", X: x}
	charts := []uiChart{}
	for _, v := range versions {
		label := "v" + strconv.FormatUint(v, 10)
		rs := uiSeries{Label: label}
		lat := uiChart{Title: "Latency of " + label + " (ms)", Time: true, XLabel: "time", X: x,
			Series: []uiSeries{{Label: "p50"}, {Label: "p95"}, {Label: "p99"}}}
		for i := range ts.Points {
			p := at(i, v)
			if p == nil {
				zero := 0.0
				rs.Values = append(rs.Values, &zero)
				for k := range lat.Series {
					lat.Series[k].Values = append(lat.Series[k].Values, nil)
				}
				continue
			}
			r, p50, p95, p99 := p.RequestsSec, p.P50MS, p.P95MS, p.P99MS
			rs.Values = append(rs.Values, &r)
			lat.Series[0].Values = append(lat.Series[0].Values, &p50)
			lat.Series[1].Values = append(lat.Series[1].Values, &p95)
			lat.Series[2].Values = append(lat.Series[2].Values, &p99)
		}
		rate.Series = append(rate.Series, rs)
		charts = append(charts, lat)
	}
	return append([]uiChart{rate}, charts...)
}

// uiTraffic sets a deployment's traffic split and replicas from the model
// page's form (weight_N per version, 0 leaving it out; replicas), keeping
// everything else of the deployment as it is: shift weights, promote a
// version to 100, scale.
func (a *Agent) uiTraffic(q *uiReq) error {
	name := q.r.PathValue("name")
	path := "/v1/deployments/" + url.PathEscape(name)
	var d map[string]any
	if err := q.api("GET", path, nil, &d); err != nil {
		return err
	}
	var versions []map[string]any
	for key, vals := range q.r.PostForm {
		v, ok := strings.CutPrefix(key, "weight_")
		if !ok || len(vals) != 1 {
			continue
		}
		version, err := strconv.ParseUint(v, 10, 64)
		weight, werr := strconv.Atoi(strings.TrimSpace(vals[0]))
		if err != nil || werr != nil || weight < 0 {
			return &uiError{status: http.StatusBadRequest, code: "invalid", msg: fmt.Sprintf("weight of version %s must be a whole number from 0, not %q", v, vals[0]), path: path}
		}
		if weight > 0 {
			versions = append(versions, map[string]any{"version": version, "weight": weight})
		}
	}
	slices.SortFunc(versions, func(x, y map[string]any) int { return int(x["version"].(uint64)) - int(y["version"].(uint64)) })
	replicas, err := strconv.Atoi(strings.TrimSpace(q.r.PostFormValue("replicas")))
	if err != nil {
		return &uiError{status: http.StatusBadRequest, code: "invalid", msg: fmt.Sprintf("replicas must be a whole number, not %q", q.r.PostFormValue("replicas")), path: path}
	}
	body := map[string]any{"versions": versions, "replicas": replicas}
	traffic, _ := d["traffic"].(map[string]any)
	if shadow, ok := traffic["shadow"]; ok {
		body["shadow"] = shadow
	}
	for _, k := range []string{"batching", "resources", "timeout_ms", "feature_service"} {
		if v, ok := d[k]; ok {
			body[k] = v
		}
	}
	if err := q.api("PUT", path, body, nil); err != nil {
		return err
	}
	http.Redirect(q.w, q.r, "/ui/models/"+url.PathEscape(name), http.StatusSeeOther)
	return nil
}
