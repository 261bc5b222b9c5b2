package node

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
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
	now := time.Now()
	for _, v := range views.Items {
		v["freshness"] = viewFreshness(v, now)
	}
	for _, s := range sources.Items {
		if at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(s["last_ingest_at"])); err == nil && at.Year() > 1 {
			s["lag"] = now.Sub(at).Round(time.Second).String()
		}
	}
	q.view.Data = map[string]any{"Datasets": datasets.Items, "Sources": sources.Items, "Views": views.Items}
	return "data", nil
}

// freshness is how current a feature view is: the age of its newest value
// against its TTL (a value older than the TTL reads as no value).
type freshness struct {
	Lag   string // age of the newest value, "" with none
	State string // fresh, stale (lag past the TTL), no TTL, or empty
}

func viewFreshness(v map[string]any, now time.Time) freshness {
	newest, err := time.Parse(time.RFC3339Nano, fmt.Sprint(v["newest_value_at"]))
	if err != nil || newest.Year() <= 1 {
		return freshness{State: "empty"}
	}
	lag := now.Sub(newest)
	f := freshness{Lag: lag.Round(time.Second).String(), State: "no TTL"}
	if ttl, _ := v["ttl"].(string); ttl != "" {
		if d, err := structs.ParseSpan(ttl); err == nil && d > 0 {
			f.State = "fresh"
			if lag > d {
				f.State = "stale"
			}
		}
	}
	return f
}

// uiFeatureView shows a feature view, its freshness, and a lookup box: the
// entity's join keys as a form (GET, a read) whose answer is an online
// read of every feature of the view, as POST /v1/features/online gives it.
func (a *Agent) uiFeatureView(q *uiReq) (string, error) {
	name := q.r.PathValue("name")
	path := "/v1/feature-views/" + url.PathEscape(name)
	q.view.Title, q.view.Nav, q.view.API = "Feature view "+name, "data", path
	var view map[string]any
	if err := q.api("GET", path, nil, &view); err != nil {
		return "", err
	}
	var entity struct {
		JoinKeys []string `json:"join_keys"`
	}
	if err := q.api("GET", "/v1/entities/"+url.PathEscape(fmt.Sprint(view["entity"])), nil, &entity); err != nil {
		return "", err
	}
	in := q.r.URL.Query()
	keys := make([]map[string]string, len(entity.JoinKeys))
	asked := map[string]string{}
	for i, k := range entity.JoinKeys {
		keys[i] = map[string]string{"Name": k, "Value": in.Get(k)}
		if v := in.Get(k); v != "" {
			asked[k] = v
		}
	}
	data := map[string]any{"View": view, "Freshness": viewFreshness(view, time.Now()), "Keys": keys}
	if len(asked) > 0 {
		var answer struct {
			Features []string `json:"features"`
			Rows     []struct {
				Values     map[string]any `json:"values"`
				Timestamps map[string]any `json:"timestamps"`
			} `json:"rows"`
		}
		err := q.api("POST", "/v1/features/online", map[string]any{"features": []string{name + ":*"}, "entities": asked}, &answer)
		switch {
		case err != nil:
			data["LookupError"] = err.Error()
		case len(answer.Rows) == 1:
			var found []map[string]any
			for _, f := range answer.Features {
				feature := f
				if _, after, ok := strings.Cut(f, ":"); ok {
					feature = after
				}
				found = append(found, map[string]any{"Name": feature, "Value": answer.Rows[0].Values[f], "At": answer.Rows[0].Timestamps[f]})
			}
			data["Found"] = found
		}
		q.view.API = "/v1/features/online"
	}
	q.view.Data = data
	return "feature_view", nil
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
