package node

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// browser is a test client that keeps cookies and does not follow
// redirects, as the dashboard's tests need to see them.
type browser struct {
	t    *testing.T
	a    *Agent
	http *http.Client
}

func newBrowser(t *testing.T, a *Agent) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, a: a, http: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type page struct {
	status int
	header http.Header
	body   string
}

func (b *browser) do(method, path string, form url.Values) page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, "http://"+b.a.HTTPAddr()+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.http.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, header: resp.Header, body: string(raw)}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]{32})"`)

// csrf is the CSRF token of the form on a page.
func (p page) csrf(t *testing.T) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no CSRF field on the page:\n%s", p.body)
	}
	return m[1]
}

func (p page) must(t *testing.T, status int, contains ...string) {
	t.Helper()
	if p.status != status {
		t.Fatalf("status %d, want %d:\n%s", p.status, status, p.body)
	}
	for _, s := range contains {
		if !strings.Contains(p.body, s) {
			t.Fatalf("the page lacks %q:\n%s", s, p.body)
		}
	}
}

// TestUI_OpenCluster: without ACLs, / sends browsers to /ui/ (API clients
// still get JSON), every page carries the open-cluster banner and the API
// call it shows, the lists page at 50, and a rollback needs the CSRF token.
func TestUI_OpenCluster(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	b := newBrowser(t, a)
	if p := b.do("GET", "/", nil); p.status != http.StatusSeeOther || p.header.Get("Location") != "/ui/" {
		t.Fatalf("GET / from a browser: %d %v", p.status, p.header)
	}
	if r := call(t, a, "GET", "/", ""); r.status != 404 || r.body["code"] != "not_found" {
		t.Fatalf("GET / from an API client: %d %v", r.status, r.body)
	}

	home := b.do("GET", "/ui/", nil)
	home.must(t, 200, "This cluster is open", a.cfg.NodeName, "Raft", `href="/v1/status"`, "Leader")
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options"} {
		if home.header.Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}
	if p := b.do("GET", "/ui/static/vendor/htmx.min.js", nil); p.status != 200 || len(p.body) < 10000 {
		t.Errorf("htmx: %d, %d bytes", p.status, len(p.body))
	}

	for i := range 51 {
		createModel(t, a, fmt.Sprintf("m%03d", i))
	}
	list := b.do("GET", "/ui/models", nil)
	list.must(t, 200, `href="/ui/models/m000"`, `href="/ui/models/m049"`, "50 on this page", `rel="next"`)
	if strings.Contains(list.body, "m050") {
		t.Fatal("the first page shows more than 50 models")
	}
	next := regexp.MustCompile(`href="(/ui/models\?cursor=[^"]+)"`).FindStringSubmatch(list.body)
	b.do("GET", strings.ReplaceAll(next[1], "&amp;", "&"), nil).must(t, 200, `href="/ui/models/m050"`, "1 on this page")
	found := b.do("GET", "/ui/models?prefix=m04", nil)
	found.must(t, 200, "10 on this page", `href="/ui/models/m040"`, `href="/ui/models/m049"`, `href="/v1/models?limit=50&amp;prefix=m04"`)
	if strings.Contains(found.body, "m039") || strings.Contains(found.body, "m050") || strings.Contains(found.body, `rel="next"`) {
		t.Errorf("the search shows models outside the prefix:\n%s", found.body)
	}

	// A deployment with a canary, then rollback from the page.
	createModel(t, a, "iris")
	file := readTestdata(t, linearIrisFile)
	uploadOK(t, a, "iris", "", file)
	uploadOK(t, a, "iris", "", file)
	deployAndWait(t, a, "iris")
	mustStatus(t, call(t, a, "PUT", "/v1/deployments/iris", `{"versions":[{"version":1,"weight":90},{"version":2,"weight":10}],"replicas":1}`), 200, "canary")
	model := b.do("GET", "/ui/models/iris", nil)
	model.must(t, 200, "<td>v1</td><td>90</td>", "<td>v2</td><td>10</td>", "Roll back", `href="/v1/models/iris"`)
	token := model.csrf(t)
	b.do("POST", "/ui/models/iris/rollback", url.Values{}).must(t, 403, "CSRF")
	b.do("POST", "/ui/models/iris/rollback", url.Values{"csrf": {"0123456789abcdef0123456789abcdef"}}).must(t, 403, "CSRF")
	if d := call(t, a, "GET", "/v1/deployments/iris", ""); len(d.body["traffic"].(map[string]any)["versions"].([]any)) != 2 {
		t.Fatal("a refused rollback changed the deployment")
	}
	done := b.do("POST", "/ui/models/iris/rollback", url.Values{"csrf": {token}})
	if done.status != http.StatusSeeOther || done.header.Get("Location") != "/ui/models/iris" {
		t.Fatalf("rollback: %d %v %s", done.status, done.header, done.body)
	}
	d := call(t, a, "GET", "/v1/deployments/iris", "")
	if vs := d.body["traffic"].(map[string]any)["versions"].([]any); len(vs) != 1 {
		t.Fatalf("after the rollback the traffic is %v", vs)
	}
	b.do("GET", "/ui/models/nope", nil).must(t, 404, "nope")
}

// TestUI_Access: with ACLs on, pages need a signed-in token kept in an
// HttpOnly, SameSite=Strict cookie; a page shows what the token may read,
// and only a token that may write a deployment sees its actions.
func TestUI_Access(t *testing.T) {
	a, mgmt := aclSetup(t)
	mustStatus(t, callAs(t, a, mgmt, "POST", "/v1/models", `{"name":"fraud"}`), 201, "create")
	mustStatus(t, callAs(t, a, mgmt, "PUT", "/v1/deployments/fraud", `{"versions":[{"version":0,"weight":1}],"replicas":1}`), 400, "a deployment needs a version")
	reader := tokenFor(t, a, mgmt, "reader", `
model "*"      { policy = "read" }
deployment "*" { policy = "read" }
node           { policy = "read" }
`)
	predictOnly := tokenFor(t, a, mgmt, "predictor", `predict "*" { policy = "allow" }`)

	b := newBrowser(t, a)
	p := b.do("GET", "/ui/models", nil)
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/ui/login?next=%2Fui%2Fmodels" {
		t.Fatalf("a page without a session: %d %v", p.status, p.header)
	}
	login := b.do("GET", "/ui/login?next=/ui/models", nil)
	login.must(t, 200, `type="password"`, `name="next" value="/ui/models"`)
	if strings.Contains(login.body, "This cluster is open") {
		t.Fatal("the open banner shows with ACLs on")
	}
	b.do("POST", "/ui/login", url.Values{"csrf": {login.csrf(t)}, "token": {"not-a-token"}, "next": {"/ui/models"}}).must(t, 401, "not valid")
	b.do("POST", "/ui/login", url.Values{"token": {reader}, "next": {"/ui/models"}}).must(t, 403, "CSRF")

	in := b.do("POST", "/ui/login", url.Values{"csrf": {login.csrf(t)}, "token": {reader}, "next": {"https://evil.example/"}})
	if in.status != http.StatusSeeOther || in.header.Get("Location") != "/ui/" {
		t.Fatalf("login: %d %v (a foreign next must not be followed)", in.status, in.header)
	}
	cookie := in.header.Get("Set-Cookie")
	for _, want := range []string{"kiln_session=" + reader, "HttpOnly", "SameSite=Strict"} {
		if !strings.Contains(cookie, want) {
			t.Errorf("session cookie %q lacks %q", cookie, want)
		}
	}
	if strings.Contains(in.header.Get("Location"), reader) {
		t.Fatal("the token is in a URL")
	}
	b.do("GET", "/ui/models", nil).must(t, 200, `href="/ui/models/fraud"`, "Sign out")
	model := b.do("GET", "/ui/models/fraud", nil)
	model.must(t, 200, "Model fraud")
	if strings.Contains(model.body, "Roll back") {
		t.Fatal("a read-only token is offered a rollback")
	}
	// The cluster page's peers need operator read, which the reader lacks:
	// the section is left out, the page still renders.
	home := b.do("GET", "/ui/", nil)
	home.must(t, 200, "Nodes")
	if strings.Contains(home.body, "Raft peers") {
		t.Fatal("a token without operator read sees the Raft peers")
	}

	pb := newBrowser(t, a)
	form := pb.do("GET", "/ui/login", nil)
	pb.do("POST", "/ui/login", url.Values{"csrf": {form.csrf(t)}, "token": {predictOnly}, "next": {"/ui/models/fraud"}})
	denied := pb.do("GET", "/ui/models/fraud", nil)
	denied.must(t, 403, `lacks &#34;read&#34; on model &#34;fraud&#34;`)
	if strings.Contains(denied.body, "Roll back") {
		t.Fatal("a predict-only token is offered an action")
	}
	pb.do("GET", "/ui/models", nil).must(t, 200, "0 on this page")
}

// TestUI_Jobs: a finished built-in job shows on the jobs page and on its
// own, with its state history, placement, final metrics and a chart (with
// its table) of each metric it logged by step.
func TestUI_Jobs(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	waitRegistered(t, a)
	if r := pushDataset(t, a, "iris", "", readTestdata(t, irisCSV)); r.status != 201 {
		t.Fatalf("push: %d %v", r.status, r.body)
	}
	r := call(t, a, "POST", "/v1/jobs", `{"name": "iris-softmax", "experiment": "iris", "trainer": {"kind": "builtin", "algorithm": "softmax_regression"},
		"dataset": "iris", "target": "Species", "validation": {"split": 0.3}, "resources": {"cpu": 1}}`)
	mustStatus(t, r, 201, "submit")
	id := r.body["id"].(string)
	j := waitJob(t, a, id)
	b := newBrowser(t, a)
	b.do("GET", "/ui/jobs", nil).must(t, 200, `href="/ui/jobs/`+id+`"`, "iris-softmax", `class="state succeeded"`, a.cfg.NodeName)
	p := b.do("GET", "/ui/jobs/"+id, nil)
	acc := j["metrics"].(map[string]any)["accuracy"].(float64)
	p.must(t, 200, "Job iris-softmax", "State history", "pending", "running", "succeeded",
		"<td>accuracy</td><td>"+strconv.FormatFloat(acc, 'f', -1, 64)+"</td>", `href="/v1/jobs/`+id+`"`)
	if strings.Contains(p.body, "Cancel the job") || !strings.Contains(p.body, `action="/ui/jobs/`+id+`/retry"`) {
		t.Error("a finished job offers a cancel, or no retry")
	}
	if !strings.Contains(p.body, `<figure class="chart">`) || !strings.Contains(p.body, `class="series">{"title":"accuracy by step","time":false,"xlabel":"step","x":[`) {
		t.Errorf("no chart with data on the job page:\n%s", p.body)
	}
	b.do("GET", "/ui/jobs/01abcdefghjkmnpqrstvwxyz00", nil).must(t, 404)
	// Retry: a form of the finished job's page submits it again, and the
	// browser lands on the new job, which names the first.
	if b.do("POST", "/ui/jobs/"+id+"/retry", url.Values{}).status != 403 {
		t.Error("a retry without the CSRF token is not refused")
	}
	done := b.do("POST", "/ui/jobs/"+id+"/retry", url.Values{"csrf": {p.csrf(t)}})
	loc := done.header.Get("Location")
	if done.status != http.StatusSeeOther || !strings.HasPrefix(loc, "/ui/jobs/") || loc == "/ui/jobs/"+id {
		t.Fatalf("retry: %d to %q", done.status, loc)
	}
	retry := waitJob(t, a, strings.TrimPrefix(loc, "/ui/jobs/"))
	if retry["retry_of"] != id || retry["state"] != "succeeded" {
		t.Fatalf("the retried job: %v", retry)
	}
	b.do("GET", loc, nil).must(t, 200, "Retry of", `href="/ui/jobs/`+id+`"`)
}

// TestUI_AccessPage: tokens and policies without secrets for a token that
// may read them; others see only their own token.
func TestUI_AccessPage(t *testing.T) {
	a, mgmt := aclSetup(t)
	reader := tokenFor(t, a, mgmt, "reader", `model "*" { policy = "read" }`)
	signIn := func(token string) *browser {
		b := newBrowser(t, a)
		form := b.do("GET", "/ui/login", nil)
		b.do("POST", "/ui/login", url.Values{"csrf": {form.csrf(t)}, "token": {token}, "next": {"/ui/access"}})
		return b
	}
	p := signIn(mgmt).do("GET", "/ui/access", nil)
	p.must(t, 200, "Tokens", "Policies", "reader", `model &#34;*&#34; { policy = &#34;read&#34; }`)
	for _, secret := range []string{mgmt, reader} {
		if strings.Contains(p.body, secret) {
			t.Fatal("the access page shows a token's secret")
		}
	}
	p = signIn(reader).do("GET", "/ui/access", nil)
	p.must(t, 200, "Your token", "may not read the cluster")
	if strings.Contains(p.body, "<h2 id=\"tokens\">") {
		t.Fatal("a token without acl read sees the token list")
	}
	open := testNode(t)
	waitLeader(t, open)
	newBrowser(t, open).do("GET", "/ui/access", nil).must(t, 200, "Access control is off")
}

// TestUI_Pipelines: a diamond pipeline's DAG is drawn in layers (a, then b
// and c, then d) with arrows, the run button starts a run from the page,
// and the run's page colours each step by its state and lists its steps.
func TestUI_Pipelines(t *testing.T) {
	a := testNode(t, withExec)
	waitLeader(t, a)
	waitRegistered(t, a)
	step := func(name string, deps ...string) string {
		d, _ := json.Marshal(deps)
		return fmt.Sprintf(`{"name": %q, "type": "command", "depends_on": %s, "command": ["/bin/sh", "-c", "true"]}`, name, d)
	}
	spec := `{"steps": [` + strings.Join([]string{step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")}, ",") + `]}`
	mustStatus(t, call(t, a, "PUT", "/v1/pipelines/diamond", spec), 200, "put")
	b := newBrowser(t, a)
	b.do("GET", "/ui/pipelines", nil).must(t, 200, `href="/ui/pipelines/diamond"`, "<td>4</td>", "manual")
	p := b.do("GET", "/ui/pipelines/diamond", nil)
	p.must(t, 200, "<svg", "No runs yet", "Run the pipeline now", "<td>d</td><td>command</td><td>b, c</td>")
	// Layers: a at x=10, b and c at x=230, d at x=450; four arrows.
	for _, box := range []string{`<rect x="10" y="10"`, `<rect x="230" y="10"`, `<rect x="230" y="66"`, `<rect x="450" y="10"`} {
		if !strings.Contains(p.body, box) {
			t.Errorf("the DAG lacks %s:\n%s", box, p.body)
		}
	}
	if n := strings.Count(p.body, "<line "); n != 4 {
		t.Errorf("%d edges, want 4", n)
	}
	started := b.do("POST", "/ui/pipelines/diamond/runs", url.Values{"csrf": {p.csrf(t)}})
	loc := started.header.Get("Location")
	if started.status != http.StatusSeeOther || !strings.HasPrefix(loc, "/ui/pipelines/diamond/runs/") {
		t.Fatalf("run from the page: %d %v %s", started.status, started.header, started.body)
	}
	id := strings.TrimPrefix(loc, "/ui/pipelines/diamond/runs/")
	waitPipelineRun(t, a, "diamond", id)
	run := b.do("GET", loc, nil)
	run.must(t, 200, `class="state succeeded"`, `<g class="step succeeded">`, "Retry from the failed steps")
	if strings.Count(run.body, `<g class="step succeeded">`) != 4 {
		t.Errorf("not every step is drawn as succeeded:\n%s", run.body)
	}
}

// TestUI_Monitoring: after two drift checks, the monitoring page lists the
// monitor, and the deployment's page draws each feature's statistic
// against its threshold, with the same numbers in its table.
func TestUI_Monitoring(t *testing.T) {
	a := servedIris(t)
	x, _ := irisRows(t)
	mustStatus(t, call(t, a, "PUT", "/v1/monitors/iris", `{"reference_dataset":"iris:1","schedule":"1h","min_samples":50}`), 200, "monitor")
	predictRows(t, a, x, "a", 0)
	first := call(t, a, "POST", "/v1/monitors/iris/check", "")
	mustStatus(t, first, 200, "check")
	predictRows(t, a, x, "b", 3)
	mustStatus(t, call(t, a, "POST", "/v1/monitors/iris/check", ""), 200, "check")
	b := newBrowser(t, a)
	b.do("GET", "/ui/monitoring", nil).must(t, 200, `href="/ui/monitoring/iris"`, "iris:1", "No alerts.")
	p := b.do("GET", "/ui/monitoring/iris", nil)
	p.must(t, 200, "2 checks", "Petal_Length (ks)", "Sepal_Width (ks)", `"series":[{"label":"statistic","values":[`, "uPlot.iife.min.js")
	stat := first.body["features"].([]any)[0].(map[string]any)["statistic"].(float64)
	if !strings.Contains(p.body, strconv.FormatFloat(stat, 'g', 6, 64)) {
		t.Errorf("the first check's statistic %v is not in the tables", stat)
	}
	// Feedback labels make the performance chart: accuracy by hour, a
	// line for version 1 whose newest point is the API's score.
	var fb []string
	for i := range x {
		fb = append(fb, fmt.Sprintf(`{"id":"a%d","label":%d}`, i, i*3/len(x)))
	}
	mustStatus(t, call(t, a, "POST", "/v1/feedback", `{"deployment":"iris","items":[`+strings.Join(fb, ",")+`]}`), 200, "feedback")
	perf := call(t, a, "GET", "/v1/deployments/iris/performance?window=24h&step=1h", "")
	series := perf.body["series"].([]any)
	last := series[len(series)-1].(map[string]any)["versions"].([]any)[0].(map[string]any)
	acc := strconv.FormatFloat(last["accuracy"].(float64), 'g', 6, 64)
	p = b.do("GET", "/ui/monitoring/iris", nil)
	p.must(t, 200, "accuracy by hour, from feedback", `"span":86400`, `{"label":"v1","values":[`, "<td>"+acc+"</td>")
}

// TestUI_Experiments: two built-in runs of one experiment show in its
// table with a column per metric; a header sorts through the API's
// order_by; comparing them overlays their curves, one series per run.
func TestUI_Experiments(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	waitRegistered(t, a)
	if r := pushDataset(t, a, "iris", "", readTestdata(t, irisCSV)); r.status != 201 {
		t.Fatalf("push: %d %v", r.status, r.body)
	}
	var ids []string
	for _, split := range []string{"0.3", "0.5"} {
		r := call(t, a, "POST", "/v1/jobs", `{"name": "iris-`+split+`", "experiment": "iris", "trainer": {"kind": "builtin", "algorithm": "softmax_regression"},
			"dataset": "iris", "target": "Species", "validation": {"split": `+split+`}, "resources": {"cpu": 1}}`)
		mustStatus(t, r, 201, "submit")
		j := waitJob(t, a, r.body["id"].(string))
		ids = append(ids, j["run_id"].(string))
	}
	b := newBrowser(t, a)
	b.do("GET", "/ui/experiments", nil).must(t, 200, `href="/ui/experiments/iris"`)
	p := b.do("GET", "/ui/experiments/iris", nil)
	p.must(t, 200, ids[0], ids[1], ">metrics.accuracy</a>", `href="?order_by=metrics.accuracy&#43;DESC"`)
	sorted := b.do("GET", "/ui/experiments/iris?order_by=metrics.accuracy+DESC", nil)
	sorted.must(t, 200, "sorted by metrics.accuracy DESC")
	b.do("GET", "/ui/experiments/iris?filter=metrics.accuracy+%3E+2", nil).must(t, 200, "No runs match the filter")
	b.do("GET", "/ui/experiments/iris?filter=metrics.accuracy+%3E%3E", nil).must(t, 400, "filter")
	cmp := b.do("GET", "/ui/experiments/iris/compare?run="+ids[0]+"&run="+ids[1], nil)
	cmp.must(t, 200, "accuracy by step", `"label":"iris-0.3`, `"label":"iris-0.5`)
}

// TestUI_Data: a dataset's page shows its versions and the chosen one's
// columns with statistics and a histogram per numeric column.
func TestUI_Data(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	if r := pushDataset(t, a, "iris", "", readTestdata(t, irisCSV)); r.status != 201 {
		t.Fatalf("push: %d %v", r.status, r.body)
	}
	b := newBrowser(t, a)
	b.do("GET", "/ui/data", nil).must(t, 200, `href="/ui/data/datasets/iris"`, "No sources.", "No feature views.")
	p := b.do("GET", "/ui/data/datasets/iris", nil)
	p.must(t, 200, "Version 1: 150 rows", "<td>Sepal_Length</td>", "<td>Species</td>", "setosa (50)", `<svg class="hist"`)
	if n := strings.Count(p.body, `<svg class="hist"`); n != 5 {
		t.Errorf("%d histograms, want one per numeric column (_index_ and four measures)", n)
	}
	b.do("GET", "/ui/data/datasets/iris?version=7", nil).must(t, 404)
}

// TestUI_ServingTimeSeries: samples around 30 predictions hold 30
// requests of version 1 at 10 s a slot, which the API returns and the
// model page charts.
func TestUI_ServingTimeSeries(t *testing.T) {
	a := servedIris(t)
	now := time.Now()
	a.sampleTimeSeries(now.Add(-20 * time.Second)) // the baseline
	x, _ := irisRows(t)
	for i := range 30 {
		r := call(t, a, "POST", "/v1/models/iris:predict", fmt.Sprintf(`{"instances":[%s]}`, mustJSON(t, x[i])))
		mustStatus(t, r, 200, "predict")
	}
	a.sampleTimeSeries(now.Add(-10 * time.Second))
	r := call(t, a, "GET", "/v1/deployments/iris/timeseries?window=1h", "")
	mustStatus(t, r, 200, "timeseries")
	// The agent's own sampler may add a point in between: the requests add
	// up to 30 over the points whatever their split.
	total := 0.0
	for _, p := range r.body["points"].([]any) {
		for _, v := range p.(map[string]any)["versions"].([]any) {
			v := v.(map[string]any)
			if v["version"] != 1.0 || v["p50_ms"].(float64) <= 0 {
				t.Fatalf("point %v, want version 1 with a latency", v)
			}
			total += v["requests_per_sec"].(float64) * 10
		}
	}
	if total != 30 {
		t.Fatalf("%v requests in the series, want 30: %s", total, r.raw)
	}
	mustStatus(t, call(t, a, "GET", "/v1/deployments/iris/timeseries?window=2h", ""), 400, "a window past the ring")
	p := newBrowser(t, a).do("GET", "/ui/models/iris", nil)
	p.must(t, 200, "Serving, last hour", "Requests a second, by version", "Latency of v1 (ms)", `{"label":"v1","values":[`)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestUI_LivePages: the cluster, jobs and monitoring pages poll themselves through
// htmx, and an htmx request gets the page's content alone.
func TestUI_LivePages(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	b := newBrowser(t, a)
	b.do("GET", "/ui/jobs", nil).must(t, 200, `<div id="live" hx-get="/ui/jobs" hx-trigger="every 3s"`, "<html")
	req, _ := http.NewRequest("GET", "http://"+a.HTTPAddr()+"/ui/jobs", nil)
	req.Header.Set("HX-Request", "true")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || strings.Contains(string(body), "<html") || !strings.Contains(string(body), "No jobs yet") {
		t.Fatalf("an htmx refresh: %d\n%s", resp.StatusCode, body)
	}
	b.do("GET", "/ui/monitoring", nil).must(t, 200, `<div id="live" hx-get="/ui/monitoring"`, `src="/ui/static/kiln.js"`)
	if p := b.do("GET", "/ui/models", nil); strings.Contains(p.body, `id="live"`) {
		t.Error("the models page polls")
	}
}

// TestUI_Traffic: the model page's form shifts the weights and scales,
// keeping the rest of the deployment (its batching); a bad weight is
// refused naming it.
func TestUI_Traffic(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	createModel(t, a, "iris")
	file := readTestdata(t, linearIrisFile)
	uploadOK(t, a, "iris", "", file)
	uploadOK(t, a, "iris", "", file)
	mustStatus(t, call(t, a, "PUT", "/v1/deployments/iris", `{"versions":[{"version":1,"weight":1}],"replicas":1,"batching":{"max_batch":8,"max_wait_ms":2}}`), 200, "deploy")
	b := newBrowser(t, a)
	p := b.do("GET", "/ui/models/iris", nil)
	p.must(t, 200, `name="weight_1" type="number" min="0" max="100" value="1"`, `name="weight_2" type="number" min="0" max="100" value=""`)
	csrf := p.csrf(t)
	b.do("POST", "/ui/models/iris/traffic", url.Values{"csrf": {csrf}, "weight_1": {"-3"}, "replicas": {"1"}}).must(t, 400, "weight of version 1")
	done := b.do("POST", "/ui/models/iris/traffic", url.Values{"csrf": {csrf}, "weight_1": {"80"}, "weight_2": {"20"}, "replicas": {"2"}})
	if done.status != http.StatusSeeOther {
		t.Fatalf("traffic: %d %s", done.status, done.body)
	}
	d := call(t, a, "GET", "/v1/deployments/iris", "")
	got := mustJSON(t, d.body["traffic"].(map[string]any)["versions"])
	if got != `[{"version":1,"weight":80},{"version":2,"weight":20}]` || d.body["replicas"] != 2.0 || d.body["batching"].(map[string]any)["max_batch"] != 8.0 {
		t.Fatalf("deployment after the form: %v", d.body)
	}
	if h, _ := d.body["history"].([]any); len(h) != 1 {
		t.Errorf("history %v: the old split should be kept for a rollback", h)
	}
}

// TestUI_Events: GET /v1/events lists the node's own join and its
// leadership, and the cluster page merges them with the registry's events
// (a deployment changed, a job's states).
func TestUI_Events(t *testing.T) {
	a := servedIris(t)
	r := call(t, a, "GET", "/v1/events", "")
	mustStatus(t, r, 200, "events")
	if !strings.Contains(r.raw, a.cfg.NodeName+" joined") || !strings.Contains(r.raw, a.cfg.NodeName+" became the leader") {
		t.Fatalf("events %s, want the node's join and leadership", r.raw)
	}
	mustStatus(t, call(t, a, "GET", "/v1/events?limit=0", ""), 400, "limit 0")
	p := newBrowser(t, a).do("GET", "/ui/", nil)
	p.must(t, 200, "Recent events", a.cfg.NodeName+" became the leader", "deployment iris changed")
}

// TestUI_Tuning: the studies page lists a tuning, and its page shows every
// trial with its parameter, state and the value the API reports, the best
// linked, and a chart of the values.
func TestUI_Tuning(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	waitRegistered(t, a)
	if r := pushDataset(t, a, "iris", "", readTestdata(t, irisCSV)); r.status != 201 {
		t.Fatalf("push: %d %v", r.status, r.body)
	}
	b := newBrowser(t, a)
	b.do("GET", "/ui/tuning", nil).must(t, 200, "No tuning studies")
	id, tu := runTuning(t, a, irisTuning("l2-search", ""))
	b.do("GET", "/ui/tuning", nil).must(t, 200, `href="/ui/tuning/`+id+`">l2-search</a>`, "succeeded", "2 of 2")
	want := []string{"<th scope=\"col\">l2</th>", `<figure class="chart">`, "/v1/tuning/" + id, `href="/ui/jobs/` + tu["best_job"].(string) + `">`}
	for _, tr := range tu["trials"].([]any) {
		tr := tr.(map[string]any)
		want = append(want, "<code>"+tr["job_id"].(string)+"</code>", "<td>"+strconv.FormatFloat(tr["value"].(float64), 'g', 6, 64)+"</td>")
	}
	p := b.do("GET", "/ui/tuning/"+id, nil)
	p.must(t, 200, want...)
	if strings.Contains(p.body, `id="live"`) {
		t.Error("a finished study's page still polls")
	}
	b.do("GET", "/ui/tuning/nosuch", nil).must(t, 400, `id &#34;nosuch&#34; is not an ID`)
}

// TestUI_FeatureView: the data page shows each view's last write, newest
// value and freshness against its TTL, and the view's lookup box runs an
// online read.
func TestUI_FeatureView(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	featureSetup(t, a)
	b := newBrowser(t, a)
	b.do("GET", "/ui/data", nil).must(t, 200, `href="/ui/data/features/txn_stats">txn_stats</a>`, `<span class="state empty">empty</span>`)
	// A value from January is past the view's 24 h TTL.
	res := call(t, a, "POST", "/v1/sources/txns/records", `{"user_id": 1, "ts": "2026-01-01T10:00:00Z", "amount": 10.5, "country": "fr"}`)
	mustStatus(t, res, 200, "push")
	v := call(t, a, "GET", "/v1/feature-views/txn_stats", "")
	if v.body["newest_value_at"] != "2026-01-01T10:00:00Z" || v.body["last_write_at"] == nil || v.body["rows"] != 1.0 {
		t.Fatalf("view after one push: %s", v.raw)
	}
	b.do("GET", "/ui/data", nil).must(t, 200, "2026-01-01 10:00:00 UTC", `<span class="state stale">stale</span>`)
	b.do("GET", "/ui/data/features/txn_stats?user_id=1", nil).must(t, 200, `<span class="state stale">stale</span>`,
		`name="user_id" value="1"`, "no value (none written, or older than the TTL)", "/v1/features/online")
	res = call(t, a, "POST", "/v1/sources/txns/records", `{"user_id": 2, "ts": "`+nowRFC3339()+`", "amount": 3.5, "country": "it"}`)
	mustStatus(t, res, 200, "push")
	b.do("GET", "/ui/data", nil).must(t, 200, `<span class="state fresh">fresh</span>`)
	b.do("GET", "/ui/data/features/txn_stats?user_id=2", nil).must(t, 200, `<span class="state fresh">fresh</span>`,
		"<td>amount</td><td>3.5</td>", "<td>country</td><td>it</td>", "<td>amount_cents</td><td>350</td>")
	b.do("GET", "/ui/data/features/txn_stats?user_id=x%1f", nil).must(t, 200, `role="alert"`)
	b.do("GET", "/ui/data/features/nosuch", nil).must(t, 404, "nosuch")
}

// TestUI_ClusterUse: the nodes API and the cluster page show what a running
// job holds of its node: CPU, memory and the GPU, linked to the job.
func TestUI_ClusterUse(t *testing.T) {
	a := testNode(t, withExec, func(c *Config) { c.GPUs = []GPUDecl{{Model: "T4", MemoryMB: 16384, Count: 2}} })
	waitLeader(t, a)
	waitRegistered(t, a)
	r := call(t, a, "POST", "/v1/jobs", `{"name": "holder", "trainer": {"kind": "process", "command": ["/bin/sh", "-c", "exec sleep 60"]},
		"resources": {"cpu": 0.5, "memory_mb": 64, "gpus": 1}}`)
	mustStatus(t, r, 201, "submit")
	id := r.body["id"].(string)
	t.Cleanup(func() {
		call(t, a, "POST", "/v1/jobs/"+id+"/cancel", "")
		waitJob(t, a, id)
	})
	testutil.WaitFor(t, 20*time.Second, func() error {
		n := call(t, a, "GET", "/v1/nodes", "")
		use := n.body["items"].([]any)[0].(map[string]any)["use"].(map[string]any)
		gpus := use["gpus"].([]any)
		if use["cpu"] != 0.5 || use["memory_mb"] != 64.0 || len(gpus) != 1 || gpus[0].(map[string]any)["job_id"] != id || gpus[0].(map[string]any)["job_name"] != "holder" {
			return fmt.Errorf("use %v", use)
		}
		return nil
	})
	b := newBrowser(t, a)
	b.do("GET", "/ui/", nil).must(t, 200, "<td>0.5 of ", "<td>64 of ",
		`MiB: <a href="/ui/jobs/`+id+`">job `+id+` rank 0</a>`, "#1 T4 16384 MiB: free")
	// An ended job holds nothing.
	call(t, a, "POST", "/v1/jobs/"+id+"/cancel", "")
	waitJob(t, a, id)
	n := call(t, a, "GET", "/v1/nodes", "")
	if use := n.body["items"].([]any)[0].(map[string]any)["use"].(map[string]any); use["cpu"] != 0.0 || len(use["gpus"].([]any)) != 0 {
		t.Fatalf("use after the job ended: %v", use)
	}
}

// fakeNvidiaSMI puts an nvidia-smi on PATH that reports two GPUs: their
// inventory, and utilisation 37% and "[N/A]" with memory in use.
func fakeNvidiaSMI(t *testing.T) {
	dir := t.TempDir()
	script := `#!/bin/sh
case "$1" in
--query-gpu=index,uuid,name,memory.total) printf '0, GPU-fake-0, Fake A100, 40960\n1, GPU-fake-1, Fake A100, 40960\n' ;;
--query-gpu=index,utilization.gpu,memory.used) printf '0, 37, 1200\n1, [N/A], 0\n' ;;
*) exit 2 ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "nvidia-smi"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// TestUI_GPUUse: a node whose GPUs nvidia-smi found reads their use every
// 10 s; the API gathers the readings and the cluster page charts them.
func TestUI_GPUUse(t *testing.T) {
	fakeNvidiaSMI(t)
	a := testNode(t)
	waitLeader(t, a)
	waitRegistered(t, a)
	if a.resources.GPUSource != "nvidia-smi" || len(a.resources.GPUs) != 2 || a.resources.GPUs[1].UUID != "GPU-fake-1" {
		t.Fatalf("fingerprint %+v", a.resources)
	}
	now := time.Now()
	a.sampleGPUs(now.Add(-tsStep))
	a.sampleGPUs(now)
	r := call(t, a, "GET", "/v1/nodes/gpus/timeseries?window=5m", "")
	mustStatus(t, r, 200, "gpu series")
	nodes := r.body["nodes"].([]any)
	if len(nodes) != 1 {
		t.Fatalf("gpu series %s", r.raw)
	}
	points := nodes[0].(map[string]any)["points"].([]any)
	if len(points) != 2 {
		t.Fatalf("points %s", r.raw)
	}
	gpus := points[1].(map[string]any)["gpus"].([]any)
	g0, g1 := gpus[0].(map[string]any), gpus[1].(map[string]any)
	if g0["utilization_pct"] != 37.0 || g0["memory_used_mb"] != 1200.0 || g1["utilization_pct"] != nil {
		t.Fatalf("readings %v", gpus)
	}
	if r := call(t, a, "GET", "/v1/nodes/gpus/timeseries?window=2h", ""); r.status != 400 || !strings.Contains(r.raw, "window") {
		t.Fatalf("a window past the ring: %d %s", r.status, r.raw)
	}
	b := newBrowser(t, a)
	b.do("GET", "/ui/", nil).must(t, 200, "GPU use, last hour", "GPU utilisation on "+a.cfg.NodeName+" (%)",
		`{"label":"GPU 0","values":[37,37]}`, `{"label":"GPU 1","values":[null,null]}`, "#1 Fake A100 40960 MiB: free")
}

// TestUI_PipelineApproval: the pipelines page lists an approval step that
// waits; the run's page approves it with a comment (CSRF required), and
// the run goes on and shows who decided.
func TestUI_PipelineApproval(t *testing.T) {
	a := testNode(t, withExec)
	waitLeader(t, a)
	waitRegistered(t, a)
	mustStatus(t, call(t, a, "PUT", "/v1/pipelines/release", approvalPipeline), 200, "put")
	r := call(t, a, "POST", "/v1/pipelines/release/runs", `{}`)
	mustStatus(t, r, 201, "run")
	id := r.body["id"].(string)
	waitStep(t, a, "release", id, "signoff", "running")
	b := newBrowser(t, a)
	testutil.WaitFor(t, 10*time.Second, func() error {
		if p := b.do("GET", "/ui/pipelines", nil); !strings.Contains(p.body, "ship build v1?") {
			return fmt.Errorf("no pending approval on the pipelines page")
		}
		return nil
	})
	b.do("GET", "/ui/pipelines", nil).must(t, 200, "Awaiting approval", `href="/ui/pipelines/release/runs/`+id+`#approve"`, "<td>signoff</td>")
	runPage := "/ui/pipelines/release/runs/" + id
	p := b.do("GET", runPage, nil)
	p.must(t, 200, `action="/ui/pipelines/release/runs/`+id+`/steps/signoff/approve"`, `name="approve" value="true"`, "signoff: awaiting approval: ship build v1?")
	action := runPage + "/steps/signoff/approve"
	if b.do("POST", action, url.Values{"approve": {"true"}}).status != 403 {
		t.Fatal("an approval without the CSRF token was taken")
	}
	done := b.do("POST", action, url.Values{"csrf": {p.csrf(t)}, "approve": {"true"}, "comment": {"ship it"}})
	if done.status != http.StatusSeeOther || done.header.Get("Location") != runPage {
		t.Fatalf("approve: %d %s", done.status, done.body)
	}
	if run := waitPipelineRun(t, a, "release", id); run["state"] != "succeeded" {
		t.Fatalf("run after the approval: %v", run)
	}
	b.do("GET", runPage, nil).must(t, 200, "approved by anonymous", ": ship it")
}
