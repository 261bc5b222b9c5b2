package node

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// The dashboard (node/DESIGN.md, "Dashboard"). Every node serves it under
// /ui/. A page is server-rendered with html/template from what the JSON API
// answers: the handler calls the API in-process (uiAPI), with the browser's
// session token, so a page shows exactly what that token may read through
// the API, by the same read paths, and an action is the API's own write
// with its own checks and audit record. Nothing here reads the registry
// directly.

//go:embed ui/templates/*.html ui/static
var uiFiles embed.FS

const (
	uiSessionCookie = "kiln_session" // the token, with ACLs on
	uiCSRFCookie    = "kiln_csrf"    // double-submit token for the forms
	uiPageSize      = 50
)

// uiPages are the templates, each page with the layout, parsed once.
var uiPages = func() map[string]*template.Template {
	funcs := template.FuncMap{
		"since": func(s string) string {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return s
			}
			return time.Since(t).Round(time.Second).String() + " ago"
		},
		"when": func(v any) string {
			s, _ := v.(string)
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil || t.Year() <= 1 {
				return "–"
			}
			return t.UTC().Format("2006-01-02 15:04:05 UTC")
		},
		"unix": func(v any) string {
			var x float64
			switch t := v.(type) {
			case *float64:
				x = *t
			case float64:
				x = t
			}
			return time.Unix(int64(x), 0).UTC().Format("2006-01-02 15:04:05 UTC")
		},
		"num": func(v any) string {
			switch x := v.(type) {
			case *float64:
				if x == nil {
					return "–"
				}
				return strconv.FormatFloat(*x, 'g', 6, 64)
			case float64:
				return strconv.FormatFloat(x, 'f', -1, 64)
			case nil:
				return "–"
			}
			return fmt.Sprint(v)
		},
		"query": url.QueryEscape,
		"json": func(v any) (template.JS, error) {
			b, err := json.Marshal(v)
			return template.JS(b), err
		},
		"finished": func(state any) bool {
			s, _ := state.(string)
			return s == "succeeded" || s == "failed" || s == "cancelled"
		},
		"path": url.PathEscape,
	}
	pages := map[string]*template.Template{}
	for _, p := range []string{"cluster", "models", "model", "jobs", "job", "pipelines", "pipeline", "pipeline_run", "monitoring", "monitor", "experiments", "experiment", "compare", "tunings", "tuning", "data", "dataset", "feature_view", "access", "login", "error"} {
		pages[p] = template.Must(template.New(p).Funcs(funcs).ParseFS(uiFiles, "ui/templates/layout.html", "ui/templates/"+p+".html"))
	}
	return pages
}()

// uiEndpoint: the dashboard's pages, its static files and its actions.
// Routes take needSession: the handler reads the session cookie itself.
func (a *Agent) uiEndpoint() endpoint {
	static, err := fs.Sub(uiFiles, "ui/static")
	if err != nil {
		panic(err)
	}
	files := http.StripPrefix("/ui/static/", http.FileServerFS(static))
	return endpoint{routes: []route{
		{pattern: "GET /{$}", handler: a.uiRoot, need: needSession},
		{pattern: "GET /ui/static/", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=86400")
			files.ServeHTTP(w, r)
		}, need: needSession},
		{pattern: "GET /ui/{$}", handler: a.uiPage(a.uiCluster), need: needSession},
		{pattern: "GET /ui/login", handler: a.uiLoginForm, need: needSession},
		{pattern: "POST /ui/login", handler: a.uiLogin, need: needSession},
		{pattern: "POST /ui/logout", handler: a.uiLogout, need: needSession},
		{pattern: "GET /ui/models", handler: a.uiPage(a.uiModels), need: needSession},
		{pattern: "GET /ui/models/{name}", handler: a.uiPage(a.uiModel), need: needSession},
		{pattern: "POST /ui/models/{name}/rollback", handler: a.uiAction(a.uiRollback), need: needSession},
		{pattern: "POST /ui/models/{name}/traffic", handler: a.uiAction(a.uiTraffic), need: needSession},
		{pattern: "GET /ui/jobs", handler: a.uiPage(a.uiJobs), need: needSession},
		{pattern: "GET /ui/access", handler: a.uiPage(a.uiAccess), need: needSession},
		{pattern: "GET /ui/monitoring", handler: a.uiPage(a.uiMonitoring), need: needSession},
		{pattern: "GET /ui/experiments", handler: a.uiPage(a.uiExperiments), need: needSession},
		{pattern: "GET /ui/data", handler: a.uiPage(a.uiData), need: needSession},
		{pattern: "GET /ui/data/datasets/{name}", handler: a.uiPage(a.uiDataset), need: needSession},
		{pattern: "GET /ui/data/features/{name}", handler: a.uiPage(a.uiFeatureView), need: needSession},
		{pattern: "GET /ui/experiments/{name}", handler: a.uiPage(a.uiExperiment), need: needSession},
		{pattern: "GET /ui/experiments/{name}/compare", handler: a.uiPage(a.uiCompare), need: needSession},
		{pattern: "GET /ui/tuning", handler: a.uiPage(a.uiTunings), need: needSession},
		{pattern: "GET /ui/tuning/{id}", handler: a.uiPage(a.uiTuning), need: needSession},
		{pattern: "GET /ui/monitoring/{name}", handler: a.uiPage(a.uiMonitor), need: needSession},
		{pattern: "GET /ui/pipelines", handler: a.uiPage(a.uiPipelines), need: needSession},
		{pattern: "GET /ui/pipelines/{name}", handler: a.uiPage(a.uiPipeline), need: needSession},
		{pattern: "GET /ui/pipelines/{name}/runs/{id}", handler: a.uiPage(a.uiPipelineRun), need: needSession},
		{pattern: "POST /ui/pipelines/{name}/runs", handler: a.uiAction(a.uiPipelineAction("run")), need: needSession},
		{pattern: "POST /ui/pipelines/{name}/runs/{id}/cancel", handler: a.uiAction(a.uiPipelineAction("cancel")), need: needSession},
		{pattern: "POST /ui/pipelines/{name}/runs/{id}/steps/{step}/approve", handler: a.uiAction(a.uiPipelineApprove), need: needSession},
		{pattern: "POST /ui/pipelines/{name}/runs/{id}/retry", handler: a.uiAction(a.uiPipelineAction("retry")), need: needSession},
		{pattern: "GET /ui/jobs/{id}", handler: a.uiPage(a.uiJob), need: needSession},
		{pattern: "POST /ui/jobs/{id}/cancel", handler: a.uiAction(a.uiJobCancel), need: needSession},
		{pattern: "POST /ui/jobs/{id}/retry", handler: a.uiAction(a.uiJobRetry), need: needSession},
	}}
}

// uiRoot sends browsers to the dashboard; an API client asking for / gets
// the API's 404, as before.
func (a *Agent) uiRoot(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	writeError(w, structs.Errorf(structs.CodeNotFound, "no route for %s %s; the dashboard is at /ui/", r.Method, r.URL.Path))
}

// uiView is what every page's template gets.
type uiView struct {
	Title string
	Nav   string // the section, for the menu
	// Open is set when ACLs are off: the banner says anyone may do anything.
	Open bool
	// SignedIn is set with ACLs on and a valid session.
	SignedIn bool
	// Stale is set when a read could not reach a leader and shows this
	// node's own, possibly old, copy.
	Stale bool
	// API is the JSON API call the page shows, for its link.
	API string
	// Live pages poll: htmx asks for the page again every few seconds
	// and swaps in its content (render answers an htmx request with the
	// content alone). Self is the page's own address.
	Live bool
	Self string
	CSRF string
	Node string
	Data any
}

// uiReq is one page request: the browser's token and what the API answered.
type uiReq struct {
	a     *Agent
	r     *http.Request
	w     http.ResponseWriter
	token string
	view  *uiView
}

// uiPage wraps a page: it checks the session (with ACLs on, no valid
// session sends the browser to the login page), renders the page's
// template with what fill put in the view, and answers an error page on
// an API error.
func (a *Agent) uiPage(fill func(*uiReq) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, ok := a.uiSession(w, r)
		if !ok {
			return
		}
		page, err := fill(q)
		if err != nil {
			q.renderError(err)
			return
		}
		q.render(http.StatusOK, page)
	}
}

// uiSession starts a uiReq: the session's token and the CSRF cookie. With
// ACLs on and no valid session it redirects to the login page and reports
// false.
func (a *Agent) uiSession(w http.ResponseWriter, r *http.Request) (*uiReq, bool) {
	q := &uiReq{a: a, r: r, w: w, view: &uiView{Open: a.acl == nil, Node: a.cfg.NodeName}}
	if c, err := r.Cookie(uiSessionCookie); err == nil {
		q.token = c.Value
	}
	if a.acl != nil {
		if _, err := a.acl.Resolve(q.token); q.token == "" || err != nil {
			http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return nil, false
		}
		q.view.SignedIn = true
	}
	q.view.CSRF = uiCSRF(w, r)
	return q, true
}

// uiCSRF returns the browser's CSRF token, setting the cookie on first use.
// Forms carry it in a hidden field, and an action must present both equal
// (uiAction): a page of another site can neither read the cookie nor, with
// SameSite=Strict, send it.
func uiCSRF(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(uiCSRFCookie); err == nil && len(c.Value) == 32 {
		return c.Value
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	v := hex.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: uiCSRFCookie, Value: v, Path: "/ui/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	return v
}

// uiAction wraps a POST from a page's form: session, then the CSRF check
// (403 without it), then do, which answers the redirect or an error page.
func (a *Agent) uiAction(do func(*uiReq) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !uiCSRFValid(r) {
			http.Error(w, "403 forbidden: the form's CSRF token is missing or does not match; reload the page and try again", http.StatusForbidden)
			return
		}
		q, ok := a.uiSession(w, r)
		if !ok {
			return
		}
		if err := do(q); err != nil {
			q.renderError(err)
		}
	}
}

func uiCSRFValid(r *http.Request) bool {
	c, err := r.Cookie(uiCSRFCookie)
	if err != nil || len(c.Value) != 32 {
		return false
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
	form := r.PostFormValue("csrf")
	return subtle.ConstantTimeCompare([]byte(form), []byte(c.Value)) == 1
}

// apiAnswer is what an in-process API call answered.
type apiAnswer struct {
	status int
	header http.Header
	body   bytes.Buffer
}

func (w *apiAnswer) Header() http.Header { return w.header }
func (w *apiAnswer) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(b)
}
func (w *apiAnswer) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

// api calls the JSON API in-process with the session's token and decodes
// the answer into out. A read that finds no leader is repeated against this
// node's own copy (?consistency=stale) and the page marked stale. An answer
// that is not 2xx is returned as the API's error.
func (q *uiReq) api(method, path string, body any, out any) error {
	ans := q.call(method, path, body)
	if ans.status == http.StatusServiceUnavailable && method == http.MethodGet && !strings.Contains(path, "consistency=") {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		if again := q.call(method, path+sep+"consistency=stale", nil); again.status < 300 {
			ans = again
			q.view.Stale = true
		}
	}
	if ans.header.Get("X-Kiln-Known-Leader") == "false" {
		q.view.Stale = true
	}
	if ans.status >= 300 {
		var e struct {
			Code  string `json:"code"`
			Error string `json:"error"`
		}
		_ = json.Unmarshal(ans.body.Bytes(), &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(ans.body.String())
		}
		return &uiError{status: ans.status, code: e.Code, msg: e.Error, path: path}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(ans.body.Bytes(), out)
}

func (q *uiReq) call(method, path string, body any) *apiAnswer {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(q.r.Context(), method, path, rd)
	ans := &apiAnswer{header: http.Header{}}
	if err != nil {
		ans.status = http.StatusBadRequest
		ans.body.WriteString(err.Error())
		return ans
	}
	req.RemoteAddr = q.r.RemoteAddr
	if q.token != "" {
		req.Header.Set("X-Kiln-Token", q.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	q.a.api.ServeHTTP(ans, req)
	return ans
}

// uiError is an API error shown on a page.
type uiError struct {
	status    int
	code, msg string
	path      string
}

func (e *uiError) Error() string { return fmt.Sprintf("%s %s: %s", e.path, e.code, e.msg) }

func (q *uiReq) renderError(err error) {
	status := http.StatusInternalServerError
	msg := err.Error()
	if ue, ok := err.(*uiError); ok {
		status, msg = ue.status, ue.msg
		q.view.API = ue.path
	}
	q.view.Title = http.StatusText(status)
	q.view.Data = map[string]any{"Status": status, "Message": msg}
	q.render(status, "error")
}

func (q *uiReq) render(status int, page string) {
	var buf bytes.Buffer
	tmpl := "layout"
	if q.r.Header.Get("HX-Request") == "true" {
		tmpl = "content" // a live page's refresh: the content alone
	}
	q.view.Self = q.r.URL.RequestURI()
	if err := uiPages[page].ExecuteTemplate(&buf, tmpl, q.view); err != nil {
		q.a.logger.Error("dashboard template", "page", page, "error", err)
		http.Error(q.w, "500 internal error: the page did not render", http.StatusInternalServerError)
		return
	}
	h := q.w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'")
	q.w.WriteHeader(status)
	_, _ = q.w.Write(buf.Bytes())
}

// uiLoginForm asks for a token (with ACLs on; without, there is nothing
// to sign in to).
func (a *Agent) uiLoginForm(w http.ResponseWriter, r *http.Request) {
	q := &uiReq{a: a, r: r, w: w, view: &uiView{Title: "Sign in", Open: a.acl == nil, Node: a.cfg.NodeName}}
	q.view.CSRF = uiCSRF(w, r)
	q.view.Data = map[string]any{"Next": safeNext(r.URL.Query().Get("next"))}
	q.render(http.StatusOK, "login")
}

// uiLogin checks the token and keeps it in an HttpOnly, SameSite=Strict
// cookie; it never travels in a URL.
func (a *Agent) uiLogin(w http.ResponseWriter, r *http.Request) {
	if !uiCSRFValid(r) {
		http.Error(w, "403 forbidden: the form's CSRF token is missing or does not match; reload the page and try again", http.StatusForbidden)
		return
	}
	next := safeNext(r.PostFormValue("next"))
	token := strings.TrimSpace(r.PostFormValue("token"))
	if a.acl != nil {
		if _, err := a.acl.Resolve(token); token == "" || err != nil {
			q := &uiReq{a: a, r: r, w: w, view: &uiView{Title: "Sign in", Node: a.cfg.NodeName, CSRF: uiCSRF(w, r)}}
			q.view.Data = map[string]any{"Next": next, "Error": "That token is not valid on this cluster."}
			q.render(http.StatusUnauthorized, "login")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: uiSessionCookie, Value: token, Path: "/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (a *Agent) uiLogout(w http.ResponseWriter, r *http.Request) {
	if !uiCSRFValid(r) {
		http.Error(w, "403 forbidden: the form's CSRF token is missing or does not match", http.StatusForbidden)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: uiSessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

// safeNext keeps a post-login redirect on this dashboard.
func safeNext(s string) string {
	if !strings.HasPrefix(s, "/ui/") || strings.HasPrefix(s, "//") || strings.Contains(s, "\\") {
		return "/ui/"
	}
	return s
}

// uiCluster is the cluster page: this node's view, the nodes and the Raft
// peers.
func (a *Agent) uiCluster(q *uiReq) (string, error) {
	q.view.Title, q.view.Nav, q.view.API, q.view.Live = "Cluster", "cluster", "/v1/status", true
	var status map[string]any
	if err := q.api("GET", "/v1/status", nil, &status); err != nil {
		return "", err
	}
	var nodes struct {
		Items []NodeResponse `json:"items"`
	}
	if err := q.api("GET", "/v1/nodes", nil, &nodes); err != nil {
		return "", err
	}
	rows := make([]uiNode, len(nodes.Items))
	for i, n := range nodes.Items {
		rows[i] = uiNode{NodeResponse: n, GPUs: gpuUse(n)}
	}
	var peers struct {
		Items []map[string]any `json:"items"`
	}
	peersErr := q.api("GET", "/v1/operator/raft/peers", nil, &peers)
	var gpus struct {
		Nodes []NodeGPUSeries `json:"nodes"`
	}
	_ = q.api("GET", "/v1/nodes/gpus/timeseries", nil, &gpus)
	q.view.Data = map[string]any{"Status": status, "Nodes": rows, "Peers": peers.Items, "PeersHidden": peersErr != nil,
		"Events": q.recentEvents(30), "GPUCharts": gpuCharts(gpus.Nodes)}
	return "cluster", nil
}

// gpuCharts draws each node's GPU utilisation over the last hour, a line
// per device.
func gpuCharts(nodes []NodeGPUSeries) []uiChart {
	var charts []uiChart
	for _, n := range nodes {
		c := uiChart{Title: "GPU utilisation on " + n.NodeName + " (%)", Time: true, XLabel: "time"}
		col := map[int]int{} // device index → series
		for i, p := range n.Points {
			c.X = append(c.X, float64(p.At.Unix()))
			for _, g := range p.GPUs {
				s, ok := col[g.Index]
				if !ok {
					s = len(c.Series)
					col[g.Index] = s
					c.Series = append(c.Series, uiSeries{Label: fmt.Sprintf("GPU %d", g.Index), Values: make([]*float64, len(n.Points))})
				}
				c.Series[s].Values[i] = g.UtilPct
			}
		}
		charts = append(charts, c)
	}
	return charts
}

// uiNode is a node of the cluster page: the API's record, and its GPUs
// with what holds each.
type uiNode struct {
	NodeResponse
	GPUs []uiGPU
}

// uiGPU is one device of a node with what holds it.
type uiGPU struct {
	structs.GPU
	Held string // "job ID rank N", "replica of NAME vN", or ""
	Link string // the holder's page
}

// gpuUse pairs a node's GPUs with their holders.
func gpuUse(n NodeResponse) []uiGPU {
	out := make([]uiGPU, len(n.Resources.GPUs))
	for i, g := range n.Resources.GPUs {
		out[i].GPU = g
		for _, u := range n.Use.GPUs {
			switch {
			case u.Index != g.Index:
			case u.JobID != "":
				out[i].Held, out[i].Link = fmt.Sprintf("job %s rank %d", u.JobID, u.Rank), "/ui/jobs/"+url.PathEscape(u.JobID)
			default:
				out[i].Held, out[i].Link = fmt.Sprintf("replica of %s v%d", u.Deployment, u.Version), "/ui/models/"+url.PathEscape(u.Deployment)
			}
		}
	}
	return out
}

// uiEvent is one line of the cluster page's recent events.
type uiEvent struct {
	At         time.Time
	Kind, Text string
}

// recentEvents merges, newest first, what the nodes saw (GET /v1/events:
// joins, leaves, leadership) with what the registry records: job state
// changes, deployments changed, alerts fired or resolved. A source the
// token may not read is left out.
func (q *uiReq) recentEvents(n int) []uiEvent {
	var out []uiEvent
	var events struct {
		Items []ClusterEvent `json:"items"`
	}
	if q.api("GET", "/v1/events?limit="+strconv.Itoa(n), nil, &events) == nil {
		for _, e := range events.Items {
			out = append(out, uiEvent{At: e.At, Kind: e.Kind, Text: e.Text})
		}
	}
	var jobs, deps, alerts struct {
		Items []map[string]any `json:"items"`
	}
	if q.api("GET", "/v1/jobs?limit=50", nil, &jobs) == nil {
		for _, j := range jobs.Items {
			spec, _ := j["spec"].(map[string]any)
			for _, h := range asMaps(j["history"]) {
				if at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(h["at"])); err == nil {
					out = append(out, uiEvent{At: at, Kind: "job", Text: fmt.Sprintf("job %v %v", spec["name"], h["state"])})
				}
			}
		}
	}
	if q.api("GET", "/v1/deployments?limit=50", nil, &deps) == nil {
		for _, d := range deps.Items {
			if at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(d["updated_at"])); err == nil {
				out = append(out, uiEvent{At: at, Kind: "deployment", Text: fmt.Sprintf("deployment %v changed", d["name"])})
			}
		}
	}
	if q.api("GET", "/v1/alerts", nil, &alerts) == nil {
		for _, al := range alerts.Items {
			if at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(al["since"])); err == nil {
				out = append(out, uiEvent{At: at, Kind: "alert", Text: fmt.Sprintf("alert %v on %v %v", al["rule"], al["deployment"], al["state"])})
			}
		}
	}
	slices.SortFunc(out, func(x, y uiEvent) int { return y.At.Compare(x.At) })
	return out[:min(n, len(out))]
}

// uiAccess lists tokens (never their secrets) and policies, for a token
// with read on acl, and says which token the browser holds.
func (a *Agent) uiAccess(q *uiReq) (string, error) {
	q.view.Title, q.view.Nav, q.view.API = "Access", "access", "/v1/acl/tokens"
	data := map[string]any{"Enabled": a.acl != nil}
	q.view.Data = data
	if a.acl == nil {
		return "access", nil
	}
	var self map[string]any
	if err := q.api("GET", "/v1/acl/token/self", nil, &self); err != nil {
		return "", err
	}
	delete(self, "secret_id")
	data["Self"] = self
	var tokens, policies struct {
		Items []map[string]any `json:"items"`
	}
	err := q.api("GET", "/v1/acl/tokens", nil, &tokens)
	if isForbidden(err) {
		data["Hidden"] = true
		return "access", nil
	}
	if err != nil {
		return "", err
	}
	if err := q.api("GET", "/v1/acl/policies", nil, &policies); err != nil {
		return "", err
	}
	for _, t := range tokens.Items {
		delete(t, "secret_id")
	}
	data["Tokens"], data["Policies"] = tokens.Items, policies.Items
	return "access", nil
}

// mayWrite reports whether the session's token may write the named
// resource (always, with ACLs off): pages offer actions only then.
func (q *uiReq) mayWrite(kind structs.ACLKind, name string) bool {
	id, err := q.a.aclIdentity(q.token)
	if err != nil {
		return false
	}
	return id == nil || id.Check(kind, name, structs.AccessWrite) == nil
}

// isForbidden reports whether an API call was refused for the token's
// rights (403), which a page shows as a section left out.
func isForbidden(err error) bool {
	ue, ok := err.(*uiError)
	return ok && ue.status == http.StatusForbidden
}

// listPage reads one page of a list (?limit=50, the page's ?cursor= and
// the named query parameters passed on) and sets the page's API link.
func (q *uiReq) listPage(base string, pass ...string) ([]map[string]any, string, error) {
	path := base + "?limit=" + strconv.Itoa(uiPageSize)
	for _, k := range append([]string{"cursor"}, pass...) {
		if v := q.r.URL.Query().Get(k); v != "" {
			path += "&" + k + "=" + url.QueryEscape(v)
		}
	}
	q.view.API = path
	var list struct {
		Items []map[string]any `json:"items"`
		Next  string           `json:"next_cursor"`
	}
	err := q.api("GET", path, nil, &list)
	return list.Items, list.Next, err
}
