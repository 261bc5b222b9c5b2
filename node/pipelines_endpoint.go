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

// pipelinesEndpoint: pipelines.
func (a *Agent) pipelinesEndpoint() endpoint {
	p := structs.KindPipeline
	return endpoint{routes: []route{
		{pattern: "PUT /v1/pipelines/{name}", handler: a.handlePipelinePut, kind: p, need: needWrite, name: pathName},
		{pattern: "GET /v1/pipelines", handler: a.handlePipelineList, kind: p, need: needList},
		{pattern: "GET /v1/pipelines/{name}", handler: handleNamedGet(a, func(t *raftfsm.Txn) func(string) (*structs.Pipeline, error) { return t.Pipeline }), kind: p, need: needRead, name: pathName},
		{pattern: "DELETE /v1/pipelines/{name}", handler: a.handleNamedDelete(structs.PipelineDeleteType), kind: p, need: needWrite, name: pathName},
	}}
}
