package node

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// The dashboard's pipeline pages (ui_endpoint.go has the frame): the list,
// a pipeline with its DAG and runs, and a run with its steps.

// dagNode and dagEdge are a pipeline's DAG laid out for SVG: layered, a
// step's layer one more than its deepest dependency's, steps of a layer in
// the spec's order.
type dagNode struct {
	Name, Type, State string
	Deps              []string
	X, Y, W, H        int
}

type dagEdge struct{ X1, Y1, X2, Y2 int }

type dag struct {
	Nodes         []dagNode
	Edges         []dagEdge
	Width, Height int
}

const (
	dagW, dagH   = 160, 38 // a step's box
	dagGX, dagGY = 60, 18  // gaps between layers, and between steps of a layer
)

// layoutDAG lays out steps ({"name", "type", "depends_on"} as the API
// gives them) colouring each by states[name]. Unknown dependencies are
// drawn from nothing; a cycle (the API refuses them) ends in layer order.
func layoutDAG(steps []map[string]any, states map[string]string) dag {
	layer := map[string]int{}
	deps := map[string][]string{}
	for _, s := range steps {
		name, _ := s["name"].(string)
		for _, d := range asList(s["depends_on"]) {
			deps[name] = append(deps[name], d)
		}
	}
	var depth func(string, int) int
	depth = func(n string, guard int) int {
		if l, ok := layer[n]; ok || guard > len(steps) {
			return l
		}
		l := 0
		for _, d := range deps[n] {
			l = max(l, depth(d, guard+1)+1)
		}
		layer[n] = l
		return l
	}
	rows := map[int]int{}
	pos := map[string]dagNode{}
	var out dag
	for _, s := range steps {
		name, _ := s["name"].(string)
		typ, _ := s["type"].(string)
		l := depth(name, 0)
		n := dagNode{Name: name, Type: typ, State: states[name], Deps: deps[name], W: dagW, H: dagH,
			X: 10 + l*(dagW+dagGX), Y: 10 + rows[l]*(dagH+dagGY)}
		if n.State == "" {
			n.State = "none"
		}
		rows[l]++
		pos[name] = n
		out.Nodes = append(out.Nodes, n)
		out.Width = max(out.Width, n.X+dagW+10)
		out.Height = max(out.Height, n.Y+dagH+10)
	}
	for _, s := range steps {
		name, _ := s["name"].(string)
		to := pos[name]
		for _, d := range deps[name] {
			if from, ok := pos[d]; ok {
				out.Edges = append(out.Edges, dagEdge{X1: from.X + from.W, Y1: from.Y + from.H/2, X2: to.X, Y2: to.Y + to.H/2})
			}
		}
	}
	return out
}

func asList(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// uiPipelines lists pipelines, 50 a page, and the approval steps that
// wait for a decision.
func (a *Agent) uiPipelines(q *uiReq) (string, error) {
	q.view.Title, q.view.Nav = "Pipelines", "pipelines"
	items, next, err := q.listPage("/v1/pipelines")
	if err != nil {
		return "", err
	}
	var approvals struct {
		Items []map[string]any `json:"items"`
	}
	if err := q.api("GET", "/v1/approvals", nil, &approvals); err != nil && !isForbidden(err) {
		return "", err
	}
	q.view.Data = map[string]any{"Pipelines": items, "Next": next, "Approvals": approvals.Items}
	return "pipelines", nil
}

// uiPipeline shows a pipeline: its DAG coloured by the latest run, its
// runs, and a run button for a token that may write it.
func (a *Agent) uiPipeline(q *uiReq) (string, error) {
	name := q.r.PathValue("name")
	base := "/v1/pipelines/" + url.PathEscape(name)
	q.view.Title, q.view.Nav, q.view.API = "Pipeline "+name, "pipelines", base
	var p map[string]any
	if err := q.api("GET", base, nil, &p); err != nil {
		return "", err
	}
	var runs struct {
		Items []map[string]any `json:"items"`
	}
	if err := q.api("GET", base+"/runs?limit="+strconv.Itoa(uiPageSize), nil, &runs); err != nil {
		return "", err
	}
	states := map[string]string{}
	if len(runs.Items) > 0 {
		states = stepStates(runs.Items[0])
	}
	spec, _ := p["spec"].(map[string]any)
	q.view.Data = map[string]any{"Pipeline": p, "DAG": layoutDAG(asMaps(spec["steps"]), states), "Runs": runs.Items,
		"CanWrite": q.mayWrite(structs.KindPipeline, name)}
	return "pipeline", nil
}

// uiPipelineRun shows one run: the DAG coloured by its steps, and each
// step's timing, attempts, cache hit, node and error.
func (a *Agent) uiPipelineRun(q *uiReq) (string, error) {
	name, id := q.r.PathValue("name"), q.r.PathValue("id")
	base := "/v1/pipelines/" + url.PathEscape(name)
	path := base + "/runs/" + url.PathEscape(id)
	q.view.Title, q.view.Nav, q.view.API, q.view.Live = "Run "+id+" of "+name, "pipelines", path, true
	var p, run map[string]any
	if err := q.api("GET", base, nil, &p); err != nil {
		return "", err
	}
	if err := q.api("GET", path, nil, &run); err != nil {
		return "", err
	}
	state, _ := run["state"].(string)
	q.view.Live = state != "succeeded" && state != "failed" && state != "cancelled"
	spec, _ := p["spec"].(map[string]any)
	var awaiting []map[string]any // approval steps that wait for a decision
	for _, st := range asMaps(run["steps"]) {
		if st["type"] == structs.StepApproval && st["state"] == structs.StepRunning && st["decision"] == nil {
			awaiting = append(awaiting, st)
		}
	}
	q.view.Data = map[string]any{"Name": name, "Run": run, "DAG": layoutDAG(asMaps(spec["steps"]), stepStates(run)),
		"CanWrite": q.mayWrite(structs.KindPipeline, name), "Awaiting": awaiting}
	return "pipeline_run", nil
}

// uiPipelineApprove approves or rejects (approve=false) an approval step
// with the form's comment, then shows the run.
func (a *Agent) uiPipelineApprove(q *uiReq) error {
	name, id, step := q.r.PathValue("name"), q.r.PathValue("id"), q.r.PathValue("step")
	run := "/v1/pipelines/" + url.PathEscape(name) + "/runs/" + url.PathEscape(id)
	body := map[string]any{"approve": q.r.PostFormValue("approve") == "true", "comment": q.r.PostFormValue("comment")}
	if err := q.api("POST", run+"/steps/"+url.PathEscape(step)+"/approve", body, nil); err != nil {
		return err
	}
	http.Redirect(q.w, q.r, "/ui/pipelines/"+url.PathEscape(name)+"/runs/"+url.PathEscape(id), http.StatusSeeOther)
	return nil
}

func stepStates(run map[string]any) map[string]string {
	states := map[string]string{}
	for _, s := range asMaps(run["steps"]) {
		n, _ := s["name"].(string)
		st, _ := s["state"].(string)
		states[n] = st
	}
	return states
}

func asMaps(v any) []map[string]any {
	l, _ := v.([]any)
	out := make([]map[string]any, 0, len(l))
	for _, x := range l {
		if m, ok := x.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// uiPipelineAction starts a run, or cancels or retries one, then shows it.
func (a *Agent) uiPipelineAction(verb string) func(*uiReq) error {
	return func(q *uiReq) error {
		name := q.r.PathValue("name")
		base := "/v1/pipelines/" + url.PathEscape(name)
		var run struct {
			ID string `json:"id"`
		}
		path := base + "/runs"
		if verb != "run" {
			path += "/" + url.PathEscape(q.r.PathValue("id")) + "/" + verb
		}
		var body any
		if verb == "run" {
			body = map[string]any{}
		}
		if err := q.api("POST", path, body, &run); err != nil {
			return err
		}
		http.Redirect(q.w, q.r, "/ui/pipelines/"+url.PathEscape(name)+"/runs/"+url.PathEscape(run.ID), http.StatusSeeOther)
		return nil
	}
}
