package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// The dashboard in a real browser: headless Chromium (Debian's chromium
// package, which .ci/run installs) driven with chromedp. Screenshots go to
// $KILN_TEST_ARTIFACTS when it is set (one PNG per page), else to the
// test's temporary directory.

// chromiumPath finds the browser, or skips the test.
func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium on this machine (apt-get install chromium); the dashboard's browser test needs one")
	return ""
}

// axeScript fetches axe-core from the npm registry (npm pack), or skips.
func axeScript(t *testing.T) string {
	dir := t.TempDir()
	cmd := exec.Command("npm", "pack", "--silent", "axe-core@4.14.1")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("npm pack axe-core: %v: %s", err, out)
	}
	if out, err := exec.Command("tar", "-xzf", filepath.Join(dir, "axe-core-4.14.1.tgz"), "-C", dir, "package/axe.min.js").CombinedOutput(); err != nil {
		t.Fatalf("untar axe-core: %v: %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "package", "axe.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func artifactsDir(t *testing.T) string {
	if d := os.Getenv("KILN_TEST_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// newBrowserCtx starts headless Chromium; it is killed when the test ends.
func newBrowserCtx(t *testing.T) context.Context {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1280, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 10*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// axeViolations runs axe-core on the open page and returns its violations'
// ids and the first node of each.
func axeViolations(ctx context.Context, axe string) ([]string, error) {
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](axe+";0")); err != nil {
		return nil, err
	}
	return chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`axe.run(document, {runOnly: ["wcag2a", "wcag2aa"]}).then(r => r.violations.map(v => v.id + ": " + v.help + " (" + v.nodes[0].html.slice(0, 120) + ")"))`,
		chromedp.EvalAwaitPromise))
}

// TestCluster_DashboardInABrowser opens every page through a node that
// holds none of the model's replicas and checks what a person sees: names,
// states, numbers that match the JSON API, a chart with data points; then
// rolls a canary back by clicking, and runs axe-core on every page.
func TestCluster_DashboardInABrowser(t *testing.T) {
	ctx := newBrowserCtx(t)
	axe := axeScript(t)
	shots := artifactsDir(t)
	c := newCluster(t, 3, withHCL(execAnyHCL))
	nodes := c.all()
	leader := c.waitLeader(leaderTimeout)
	c.waitRegistered(leader, 3)

	// A model with two versions and a 90/10 canary.
	n1 := nodes[0]
	n1.createModel("iris", nil)
	n1.push("iris", filepath.Join(testdataDir, "linear/iris.json"), "")
	n1.push("iris", filepath.Join(testdataDir, "linear/iris.json"), "")
	n1.write("PUT", "/v1/deployments/iris", map[string]any{"versions": []map[string]any{{"version": 1, "weight": 100}}, "replicas": 1}, 200)
	c.waitRunning(n1, "iris", 1, 1)
	n1.write("PUT", "/v1/deployments/iris", map[string]any{"versions": []map[string]any{{"version": 1, "weight": 90}, {"version": 2, "weight": 10}}, "replicas": 1}, 200)
	d := c.waitRunning(n1, "iris", 1, 1, 2)
	holders := map[string]bool{}
	for _, r := range d.ReplicaStates {
		holders[r.NodeID] = true
	}
	var via *node
	for _, nd := range nodes {
		if !holders[nd.id] {
			via = nd
		}
	}
	if via == nil {
		t.Skip("every node holds a replica; the page would not be read through a forwarder")
	}
	// A finished built-in training job, a pipeline run and a monitor.
	iris := filepath.Join(testdataDir, "datasets", "iris.csv")
	var ds datasetVersion
	n1.upload("/v1/datasets/iris/versions", "", iris, &ds)
	j := n1.submitJob(map[string]any{"name": "iris-softmax", "experiment": "iris",
		"trainer": map[string]any{"kind": "builtin", "algorithm": "softmax_regression"}, "dataset": "iris", "target": "Species",
		"validation": map[string]any{"split": 0.3}})
	j = n1.waitJobState(j.ID, 90*time.Second, "succeeded")
	n1.write("PUT", "/v1/pipelines/nightly", map[string]any{"steps": []map[string]any{
		{"name": "prepare", "type": "command", "command": []string{"/bin/sh", "-c", "true"}},
		{"name": "train", "type": "command", "depends_on": []string{"prepare"}, "command": []string{"/bin/sh", "-c", "true"}},
	}}, 200)
	var run struct {
		ID string `json:"id"`
	}
	r := n1.write("POST", "/v1/pipelines/nightly/runs", map[string]any{}, 201)
	if err := json.Unmarshal(r.body, &run); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, func() error {
		var got struct {
			State string `json:"state"`
		}
		if err := n1.getJSON("/v1/pipelines/nightly/runs/"+run.ID, &got); err != nil || got.State != "succeeded" {
			return fmt.Errorf("pipeline run is %q (%v)", got.State, err)
		}
		return nil
	})
	// A run that waits at an approval step, for a person to click.
	n1.write("PUT", "/v1/pipelines/release", map[string]any{"steps": []map[string]any{
		{"name": "build", "type": "command", "command": []string{"/bin/sh", "-c", "true"}},
		{"name": "signoff", "type": "approval", "depends_on": []string{"build"}, "approval": map[string]any{"message": "ship it?"}},
	}}, 200)
	var release struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(n1.write("POST", "/v1/pipelines/release/runs", map[string]any{}, 201).body, &release); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, func() error {
		var got struct {
			Items []struct {
				Message string `json:"message"`
			} `json:"items"`
		}
		if err := n1.getJSON("/v1/approvals", &got); err != nil || len(got.Items) != 1 || got.Items[0].Message != "ship it?" {
			return fmt.Errorf("approvals %+v (%v)", got, err)
		}
		return nil
	})
	mon := n1.write("PUT", "/v1/monitors/iris", map[string]any{"reference_dataset": "iris:1", "schedule": "1h", "min_samples": 10}, http.StatusOK)
	rows, _ := readIris(t, iris)
	for _, row := range rows[:40] {
		if r, _, err := via.predict("iris", map[string]any{"instances": [][]float64{row}}); err != nil || r.status != 200 {
			t.Fatalf("predict: %v %v", r, err)
		}
	}
	n1.write("POST", fmt.Sprintf("/v1/monitors/iris/check?index=%d", mon.index()), nil, http.StatusOK)
	// The model page charts the last hour once a node has sampled some
	// predictions (every 10 s, from a first reading that may come after the
	// ones above): predict until one has.
	testutil.WaitFor(t, 60*time.Second, func() error {
		for _, row := range rows[:5] {
			if r, _, err := via.predict("iris", map[string]any{"instances": [][]float64{row}}); err != nil || r.status != 200 {
				return fmt.Errorf("predict: %v %v", r, err)
			}
		}
		var ts struct {
			Points []struct {
				Versions []any `json:"versions"`
			} `json:"points"`
		}
		if err := via.getJSON("/v1/deployments/iris/timeseries", &ts); err != nil {
			return err
		}
		for _, p := range ts.Points {
			if len(p.Versions) > 0 {
				return nil
			}
		}
		return fmt.Errorf("no node has sampled the predictions yet: %+v", ts.Points)
	})

	base := via.baseURL()
	visit := func(path, wantSelector string) string {
		t.Helper()
		vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(vctx, chromedp.Navigate(base+path), chromedp.WaitVisible(chromedp.CSS(wantSelector))); err != nil {
			html, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.outerHTML : ''"))
			t.Fatalf("%s: no %s on the page: %v\n%s", path, wantSelector, err, html)
		}
		text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("%s: screenshot: %v", path, err)
		}
		name := strings.Trim(strings.NewReplacer("/", "_", "?", "_", "=", "_").Replace(path), "_") + ".png"
		if err := os.WriteFile(filepath.Join(shots, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
		if v, err := axeViolations(ctx, axe); err != nil || len(v) > 0 {
			t.Errorf("%s: accessibility violations %v (%v)", path, v, err)
		}
		return text
	}
	expect := func(path, text string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("%s shows no %q:\n%s", path, w, text)
			}
		}
	}

	home := visit("/ui/", "table")
	expect("/ui/", home, "Leader", "n1", "n2", "n3", "alive")
	expect("/ui/models", visit("/ui/models", "table"), "iris")
	model := visit("/ui/models/iris", "figure.chart .plot[data-points]")
	expect("/ui/models/iris", model, "90", "10", "running", "Requests a second")
	if points, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("figure.chart .plot"), "data-points")); err != nil || points.Value == "" || points.Value == "0" {
		t.Errorf("the first chart has %q points (%v)", points.Value, err)
	}
	expect("/ui/jobs", visit("/ui/jobs", "table"), "iris-softmax", "succeeded")
	expect("/ui/jobs/"+j.ID, visit("/ui/jobs/"+j.ID, "figure.chart .plot[data-points]"), "State history", "accuracy",
		fmt.Sprint(j.Metrics["accuracy"]))
	expect("/ui/experiments/iris", visit("/ui/experiments/iris", "table"), "metrics.accuracy")
	expect("/ui/tuning", visit("/ui/tuning", "table"), "No tuning studies")
	expect("/ui/data", visit("/ui/data", "table"), "iris", "No feature views")
	expect("/ui/data/datasets/iris", visit("/ui/data/datasets/iris", "svg.hist"), "150 rows", "Sepal_Length")
	expect("/ui/pipelines/nightly", visit("/ui/pipelines/nightly", "svg"), "prepare", "train", "succeeded")
	expect("/ui/pipelines", visit("/ui/pipelines", "#approvals"), "Awaiting approval", "ship it?", "signoff")
	releasePage := "/ui/pipelines/release/runs/" + release.ID
	expect(releasePage, visit(releasePage, `button[name="approve"][value="true"]`), "signoff: awaiting approval: ship it?")
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`input[name="comment"]`), "checked by the browser test"),
		chromedp.Click(chromedp.CSS(`button[name="approve"][value="true"]`)),
		chromedp.WaitVisible(chromedp.CSS("main h1")),
	); err != nil {
		t.Fatalf("approve click: %v", err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		var got struct {
			State string `json:"state"`
		}
		if err := n1.getJSON("/v1/pipelines/release/runs/"+release.ID, &got); err != nil || got.State != "succeeded" {
			return fmt.Errorf("release run is %q after the approval click (%v)", got.State, err)
		}
		return nil
	})
	expect("/ui/monitoring/iris", visit("/ui/monitoring/iris", "figure.chart .plot[data-points]"), "Petal_Length")
	// The page polls; after htmx swaps its content in anew, the charts
	// are drawn again rather than left empty.
	if drawn, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`new Promise(function (ok) {
		document.addEventListener("htmx:after:swap", function () { setTimeout(function () {
			ok(document.querySelectorAll("figure.chart .plot[data-points] canvas").length > 0);
		}, 100); }, { once: true });
	})`, chromedp.EvalAwaitPromise)); err != nil || !drawn {
		t.Errorf("/ui/monitoring/iris after a refresh: charts drawn %v (%v)", drawn, err)
	}
	expect("/ui/monitoring", visit("/ui/monitoring", "table"), "iris:1")
	expect("/ui/access", visit("/ui/access", "main p"), "Access control is off")

	// Roll the canary back by clicking; the API then shows one version.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/ui/models/iris"),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/rollback"] button`)),
		chromedp.Click(chromedp.CSS(`form[action$="/rollback"] button`)),
		chromedp.WaitVisible(chromedp.CSS("main h1")),
	); err != nil {
		t.Fatalf("rollback click: %v", err)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		var got deployment
		if err := via.getJSON("/v1/deployments/iris?consistency=consistent", &got); err != nil {
			return err
		}
		if len(got.Traffic.Versions) != 1 {
			return fmt.Errorf("traffic after the rollback click: %+v", got.Traffic)
		}
		return nil
	})
	// A job's page follows the job: open it while the job runs, and the
	// page shows it succeeded without a reload (htmx polls every 3 s).
	live := n1.submitJob(shJob("sleeper", "sleep 4", map[string]any{"cpu": 0.1}))
	n1.waitJobState(live.ID, 30*time.Second, "running")
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/jobs/"+live.ID), chromedp.WaitVisible(chromedp.CSS("#live"))); err != nil {
		t.Fatalf("job page: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(wctx, chromedp.WaitVisible(chromedp.CSS(`#live .state.succeeded`))); err != nil {
		t.Fatalf("the open job page never showed the job succeeded: %v", err)
	}
	seen := time.Now()
	var done struct {
		FinishedAt time.Time `json:"finished_at"`
	}
	if err := via.getJSON("/v1/jobs/"+live.ID, &done); err != nil {
		t.Fatal(err)
	}
	t.Logf("a job's success reached its open page %v after the job finished", seen.Sub(done.FinishedAt).Round(10*time.Millisecond))
	t.Logf("screenshots in %s", shots)
}

// TestCluster_DashboardACLInABrowser: with ACLs on, the browser is sent to
// the login page, signs in by typing a token, and a predict-only token is
// offered no action; a POST without the CSRF token is refused with 403.
func TestCluster_DashboardACLInABrowser(t *testing.T) {
	ctx := newBrowserCtx(t)
	c := newCluster(t, 1, withACL())
	nd := c.all()[0]
	nd.createModel("iris", nil)
	nd.push("iris", filepath.Join(testdataDir, "linear/iris.json"), "")
	nd.write("PUT", "/v1/deployments/iris", map[string]any{"versions": []map[string]any{{"version": 1, "weight": 100}}, "replicas": 1}, 200)
	c.waitRunning(nd, "iris", 1, 1)
	_, reader := createToken(t, nd, "reader", `model "*" { policy = "read" }
deployment "*" { policy = "read" }
predict "*" { policy = "allow" }`)
	base := nd.baseURL()
	// A page without a session sends the browser to the login form, which
	// comes back to the page.
	signIn := func(from, token string) {
		t.Helper()
		vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(vctx,
			chromedp.Navigate(base+from),
			chromedp.WaitVisible(chromedp.CSS("#token")),
			chromedp.SendKeys(chromedp.CSS("#token"), token),
			chromedp.Submit(chromedp.CSS("#token")),
			chromedp.WaitVisible(chromedp.CSS("#deployment")), // the model page's, not the login page's

		); err != nil {
			t.Fatalf("sign in: %v", err)
		}
	}
	signIn("/ui/models/iris", reader)
	url, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || url != base+"/ui/models/iris" {
		t.Fatalf("after signing in the browser is at %q (%v), want the page it asked for", url, err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil || !strings.Contains(text, "Traffic split") || strings.Contains(text, "Roll back") {
		t.Fatalf("a read-and-predict token's model page: %v\n%s", err, text)
	}
	// The page's own form posted without its CSRF field is refused.
	status, err := chromedp.Run(ctx, chromedp.Evaluate[float64](
		`fetch("/ui/models/iris/rollback", {method: "POST", body: new URLSearchParams({csrf: ""})}).then(r => r.status)`,
		chromedp.EvalAwaitPromise))
	if err != nil || status != 403 {
		t.Fatalf("a POST without the CSRF token: %v %v, want 403", status, err)
	}
	signIn("/ui/login?next=/ui/models/iris", c.token)
	text, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil || !strings.Contains(text, "Roll back") {
		t.Fatalf("the management token is offered no rollback: %v\n%s", err, text)
	}
}
