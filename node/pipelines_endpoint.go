package node

import (
	"net/http"
	"time"

	"github.com/expr-lang/expr"

	"github.com/kilnml/kiln/node/internal/acl"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// Pipelines (DESIGN.md §8): declared with PUT, validated as a whole (the
// graph and references in structs, gate expressions here, where expr-lang
// is), stored with the accessor of the token that applied them: a
// pipeline's runs act with that token's rights, never more.

// compileGate checks a gate expression: a condition over metrics.<name>
// (the step's evaluation) and champion.<name> (the deployed version's).
func compileGate(path, gate string) error {
	env := map[string]any{"metrics": map[string]float64{}, "champion": map[string]float64{}}
	if _, err := expr.Compile(gate, expr.Env(env), expr.AsBool()); err != nil {
		return structs.Errorf(structs.CodeInvalid, "%s: gate %q does not compile: %v", path, gate, err)
	}
	return nil
}

func (a *Agent) handlePipelinePut(w http.ResponseWriter, r *http.Request) {
	var spec structs.PipelineSpec
	if err := a.decodeBody(w, r, &spec); err != nil {
		writeError(w, err)
		return
	}
	name := r.PathValue("name")
	if spec.Name != "" && spec.Name != name {
		writeError(w, structs.Errorf(structs.CodeInvalid, "name %q differs from the path's %q", spec.Name, name))
		return
	}
	spec.Name = name
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		writeError(w, err)
		return
	}
	if spec.Schedule != "" {
		if sched, _ := structs.ParseSchedule(spec.Schedule); sched.Cron != "" {
			if _, err := cronParser.Parse(sched.Cron); err != nil {
				writeError(w, structs.Errorf(structs.CodeInvalid, "schedule %q: %v", spec.Schedule, err))
				return
			}
		}
	}
	for _, st := range spec.Steps {
		if st.Evaluate != nil && st.Evaluate.Gate != "" {
			if err := compileGate("steps."+st.Name+".evaluate.gate", st.Evaluate.Gate); err != nil {
				writeError(w, err)
				return
			}
		}
	}
	appliedBy := ""
	if id := acl.FromContext(r.Context()); id != nil && id.Token != nil {
		appliedBy = id.Token.AccessorID
	}
	serveWrite[structs.Pipeline](a, w, r, structs.PipelinePutType, &structs.PipelinePutRequest{Spec: spec, AppliedBy: appliedBy, At: time.Now().UTC()}, http.StatusOK)
}

func (a *Agent) handlePipelineList(w http.ResponseWriter, r *http.Request) {
	serveList(a, w, r, structs.KindPipeline,
		func(txn *raftfsm.Txn) func(string, int) ([]*structs.Pipeline, string, error) { return txn.Pipelines },
		func(p *structs.Pipeline) string { return p.Spec.Name }, func(p *structs.Pipeline) *structs.Pipeline { return p })
}

// pipelineRunRequest is POST /v1/pipelines/{name}/runs.
type pipelineRunRequest struct {
	Params map[string]any `json:"params"`
}

// pipelineRunView is a run as the API shows it.
type pipelineRunView struct {
	*structs.PipelineRun
	DurationSeconds float64 `json:"duration_seconds"`
}

func pipelineRunJSON(r *structs.PipelineRun) *pipelineRunView {
	v := &pipelineRunView{PipelineRun: r}
	end := r.FinishedAt
	if end.IsZero() {
		end = time.Now()
	}
	v.DurationSeconds = end.Sub(r.CreatedAt).Seconds()
	return v
}

func (a *Agent) handlePipelineRunCreate(w http.ResponseWriter, r *http.Request) {
	var req pipelineRunRequest
	if r.ContentLength != 0 {
		if err := a.decodeBody(w, r, &req); err != nil {
			writeError(w, err)
			return
		}
	}
	now := time.Now().UTC()
	var run structs.PipelineRun
	idx, err := a.propose(r.Context(), structs.PipelineRunCreateType, &structs.PipelineRunCreateRequest{
		ID: structs.NewID(now), Pipeline: r.PathValue("name"), Params: req.Params, Trigger: "manual", At: now}, &run)
	if err != nil {
		writeError(w, err)
		return
	}
	writeCommitted(w, http.StatusCreated, idx, pipelineRunJSON(&run))
}

func (a *Agent) handlePipelineRunGet(w http.ResponseWriter, r *http.Request) {
	serveRead(a, w, r, func(txn *raftfsm.Txn) (*pipelineRunView, error) {
		run, err := txn.PipelineRun(r.PathValue("name"), r.PathValue("id"))
		if err != nil {
			return nil, err
		}
		return pipelineRunJSON(run), nil
	})
}

func (a *Agent) handlePipelineRunList(w http.ResponseWriter, r *http.Request) {
	cursor, limit, err := listParams(r)
	if err != nil {
		writeError(w, err)
		return
	}
	name := r.PathValue("name")
	serveRead(a, w, r, func(txn *raftfsm.Txn) (any, error) {
		if _, err := txn.Pipeline(name); err != nil {
			return nil, err
		}
		items, next, err := txn.PipelineRuns(name, cursor, limit)
		if err != nil {
			return nil, err
		}
		views := make([]*pipelineRunView, len(items))
		for i, it := range items {
			views[i] = pipelineRunJSON(it)
		}
		return map[string]any{"items": views, "next_cursor": next}, nil
	})
}

func (a *Agent) handlePipelineRunCancel(w http.ResponseWriter, r *http.Request) {
	serveWrite[structs.PipelineRun](a, w, r, structs.PipelineRunCancelType,
		&structs.PipelineRunCancelRequest{Pipeline: r.PathValue("name"), RunID: r.PathValue("id"), At: time.Now().UTC()}, http.StatusOK)
}

// pipelinesEndpoint: pipelines.
func (a *Agent) pipelinesEndpoint() endpoint {
	p := structs.KindPipeline
	return endpoint{routes: []route{
		{pattern: "PUT /v1/pipelines/{name}", handler: a.handlePipelinePut, kind: p, need: needWrite, name: pathName},
		{pattern: "GET /v1/pipelines", handler: a.handlePipelineList, kind: p, need: needList},
		{pattern: "GET /v1/pipelines/{name}", handler: handleNamedGet(a, func(t *raftfsm.Txn) func(string) (*structs.Pipeline, error) { return t.Pipeline }), kind: p, need: needRead, name: pathName},
		{pattern: "DELETE /v1/pipelines/{name}", handler: a.handleNamedDelete(structs.PipelineDeleteType), kind: p, need: needWrite, name: pathName},
		{pattern: "POST /v1/pipelines/{name}/runs", handler: a.handlePipelineRunCreate, kind: p, need: needWrite, name: pathName},
		{pattern: "GET /v1/pipelines/{name}/runs", handler: a.handlePipelineRunList, kind: p, need: needRead, name: pathName},
		{pattern: "GET /v1/pipelines/{name}/runs/{id}", handler: a.handlePipelineRunGet, kind: p, need: needRead, name: pathName},
		{pattern: "POST /v1/pipelines/{name}/runs/{id}/cancel", handler: a.handlePipelineRunCancel, kind: p, need: needWrite, name: pathName},
	}}
}
