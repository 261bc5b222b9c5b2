package node

import (
	"net/url"
	"strconv"
)

// The dashboard's data pages (ui_endpoint.go has the frame): datasets,
// sources and feature views, and a dataset's version with its schema,
// per-column statistics, histograms and quarantined rows.

// uiData lists datasets, sources and feature views.
func (a *Agent) uiData(q *uiReq) (string, error) {
	q.view.Title, q.view.Nav, q.view.API = "Data and features", "data", "/v1/datasets"
	var datasets, sources, views struct {
		Items []map[string]any `json:"items"`
	}
	if err := q.api("GET", "/v1/datasets?limit="+strconv.Itoa(uiPageSize), nil, &datasets); err != nil {
		return "", err
	}
	if err := q.api("GET", "/v1/sources?limit="+strconv.Itoa(uiPageSize), nil, &sources); err != nil && !isForbidden(err) {
		return "", err
	}
	if err := q.api("GET", "/v1/feature-views?limit="+strconv.Itoa(uiPageSize), nil, &views); err != nil && !isForbidden(err) {
		return "", err
	}
	q.view.Data = map[string]any{"Datasets": datasets.Items, "Sources": sources.Items, "Views": views.Items}
	return "data", nil
}

// histBar is one bar of a column's histogram, laid out for SVG.
type histBar struct {
	X, Y, W, H int
	Lo, Hi     float64
	Count      int64
}

const histW, histH = 240, 60

// histBars lays out a histogram ({"edges", "counts"}) as bars scaled to
// the tallest.
func histBars(h map[string]any) []histBar {
	edges, _ := h["edges"].([]any)
	counts, _ := h["counts"].([]any)
	if len(counts) == 0 || len(edges) != len(counts)+1 {
		return nil
	}
	var top float64
	for _, c := range counts {
		top = max(top, c.(float64))
	}
	w := histW / len(counts)
	bars := make([]histBar, len(counts))
	for i, c := range counts {
		n := c.(float64)
		h := 0
		if top > 0 {
			h = int(n / top * histH)
		}
		bars[i] = histBar{X: i * w, Y: histH - h, W: max(w-1, 1), H: h, Lo: edges[i].(float64), Hi: edges[i+1].(float64), Count: int64(n)}
	}
	return bars
}

// uiDataset shows a dataset's versions and one version (?version=, the
// latest by default) in full.
func (a *Agent) uiDataset(q *uiReq) (string, error) {
	name := q.r.PathValue("name")
	base := "/v1/datasets/" + url.PathEscape(name)
	var versions struct {
		Items []map[string]any `json:"items"`
	}
	if err := q.api("GET", base+"/versions?limit="+strconv.Itoa(uiPageSize), nil, &versions); err != nil {
		return "", err
	}
	chosen := q.r.URL.Query().Get("version")
	if chosen == "" && len(versions.Items) > 0 {
		chosen = numString(versions.Items[len(versions.Items)-1]["version"])
	}
	q.view.Title, q.view.Nav, q.view.API = "Dataset "+name, "data", base+"/versions"
	data := map[string]any{"Name": name, "Versions": versions.Items}
	if chosen != "" {
		var v map[string]any
		path := base + "/versions/" + url.PathEscape(chosen)
		if err := q.api("GET", path, nil, &v); err != nil {
			return "", err
		}
		q.view.API = path
		hists := map[string][]histBar{}
		for _, c := range asMaps(v["columns"]) {
			if num, ok := c["numeric"].(map[string]any); ok {
				if h, ok := num["histogram"].(map[string]any); ok {
					hists[c["name"].(string)] = histBars(h)
				}
			}
		}
		data["Version"], data["Histograms"] = v, hists
	}
	q.view.Data = data
	return "dataset", nil
}

func numString(v any) string {
	if f, ok := v.(float64); ok {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return ""
}
