package node

import (
	"net/http"
	"slices"
	"strings"
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
	if err := nameFromPath("name", &spec.Name, r.PathValue("name")); err != nil {
		writeError(w, err)
		return
	}
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
	req := &structs.PipelinePutRequest{Spec: spec, At: time.Now().UTC()}
	if id := acl.FromContext(r.Context()); id != nil && id.Token != nil {
		req.AppliedBy, req.AppliedByHash = id.Token.AccessorID, id.Token.SecretHash
	}
	serveWrite[structs.Pipeline](a, w, r, structs.PipelinePutType, req, http.StatusOK)
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

// pipelineApproveRequest is POST .../runs/{id}/steps/{step}/approve.
type pipelineApproveRequest struct {
	Approve *bool  `json:"approve"`
	Comment string `json:"comment"`
}

// handlePipelineStepApprove records a person's decision on an approval
// step: who (the token's description and accessor; "anonymous" with
// access control off), yes or no, and a comment.
func (a *Agent) handlePipelineStepApprove(w http.ResponseWriter, r *http.Request) {
	var req pipelineApproveRequest
	if err := a.decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.Approve == nil {
		writeError(w, structs.Errorf(structs.CodeInvalid, "approve is required: true to approve, false to reject"))
		return
	}
	by := "anonymous"
	if id := acl.FromContext(r.Context()); id != nil && id.Token != nil {
		by = "token " + id.Token.AccessorID
		if id.Token.Description != "" {
			by = id.Token.Description + " (" + by + ")"
		}
	}
	serveWrite[structs.PipelineRun](a, w, r, structs.PipelineRunApproveType, &structs.PipelineRunApproveRequest{
		Pipeline: r.PathValue("name"), RunID: r.PathValue("id"), Step: r.PathValue("step"),
		Decision: structs.ApprovalDecision{Approved: *req.Approve, By: by, Comment: req.Comment, At: time.Now().UTC()},
	}, http.StatusOK)
}

// PendingApproval is an approval step that waits for a decision, in GET
// /v1/approvals.
type PendingApproval struct {
	Pipeline string    `json:"pipeline"`
	RunID    string    `json:"run_id"`
	Step     string    `json:"step"`
	Message  string    `json:"message"`
	Since    time.Time `json:"since"`
}

// handleApprovals lists the approval steps of runs that have not ended
// which wait for a decision, oldest first, on the pipelines the token may
// read.
func (a *Agent) handleApprovals(w http.ResponseWriter, r *http.Request) {
	serveRead(a, w, r, func(txn *raftfsm.Txn) (any, error) {
		runs, err := txn.ActivePipelineRuns()
		if err != nil {
			return nil, err
		}
		items := []PendingApproval{}
		for _, run := range runs {
			if run.CancelRequested || !a.allowed(r, structs.KindPipeline, run.Pipeline, structs.AccessRead) {
				continue
			}
			for _, st := range run.Steps {
				if st.Type != structs.StepApproval || st.State != structs.StepRunning || st.Decision != nil {
					continue
				}
				pa := PendingApproval{Pipeline: run.Pipeline, RunID: run.ID, Step: st.Name, Since: st.StartedAt}
				// The actor writes the message with the run's params in it;
				// until it has, the spec's.
				if m, ok := strings.CutPrefix(st.Waiting, structs.AwaitingApproval); ok {
					pa.Message = m
				} else if i := slices.IndexFunc(run.Spec.Steps, func(s structs.StepSpec) bool { return s.Name == st.Name }); i >= 0 && run.Spec.Steps[i].Approval != nil {
					pa.Message = run.Spec.Steps[i].Approval.Message
				}
				items = append(items, pa)
			}
		}
		slices.SortFunc(items, func(x, y PendingApproval) int { return x.Since.Compare(y.Since) })
		return map[string]any{"items": items}, nil
	})
}

// pipelineRetryRequest is POST .../runs/{id}/retry.
type pipelineRetryRequest struct {
	From string `json:"from"`
}

// handlePipelineRunRetry starts a new run of an ended one from one of its
// steps: the step and every step downstream of it run again; the steps
// before it that succeeded are carried over as cached, with their outputs.
func (a *Agent) handlePipelineRunRetry(w http.ResponseWriter, r *http.Request) {
	var req pipelineRetryRequest
	if err := a.decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	name, id := r.PathValue("name"), r.PathValue("id")
	txn := a.fsm.ReadTxn()
	old, err := txn.PipelineRun(name, id)
	var p *structs.Pipeline
	if err == nil {
		p, err = txn.Pipeline(name)
	}
	txn.Discard()
	if err != nil {
		writeError(w, err)
		return
	}
	if !old.Terminal() {
		writeError(w, structs.Errorf(structs.CodeConflict, "run %s is %s; retry a run that has ended", id, old.State))
		return
	}
	if !slices.ContainsFunc(p.Spec.Steps, func(s structs.StepSpec) bool { return s.Name == req.From }) {
		writeError(w, structs.Errorf(structs.CodeInvalid, "from: pipeline %q has no step %q", name, req.From))
		return
	}
	again := downstream(&p.Spec, req.From)
	var seed []structs.StepStatus
	for _, s := range old.Steps {
		if again[s.Name] || (s.State != structs.StepSucceeded && s.State != structs.StepCached) {
			continue
		}
		if !slices.ContainsFunc(p.Spec.Steps, func(st structs.StepSpec) bool { return st.Name == s.Name }) {
			continue // the pipeline no longer has it
		}
		s.State, s.Cached = structs.StepCached, true
		seed = append(seed, s)
	}
	now := time.Now().UTC()
	var run structs.PipelineRun
	idx, err := a.propose(r.Context(), structs.PipelineRunCreateType, &structs.PipelineRunCreateRequest{
		ID: structs.NewID(now), Pipeline: name, Params: old.Params, Trigger: "retry", RetryOf: id, Seed: seed, At: now}, &run)
	if err != nil {
		writeError(w, err)
		return
	}
	writeCommitted(w, http.StatusCreated, idx, pipelineRunJSON(&run))
}

// downstream is a step and every step that depends on it, directly or not.
func downstream(spec *structs.PipelineSpec, from string) map[string]bool {
	out := map[string]bool{from: true}
	for changed := true; changed; {
		changed = false
		for _, st := range spec.Steps {
			if out[st.Name] {
				continue
			}
			for _, d := range st.DependsOn {
				if out[d] {
					out[st.Name], changed = true, true
					break
				}
			}
		}
	}
	return out
}

// handlePipelineStepLogs serves a step's job's logs, as GET
// /v1/jobs/{id}/logs does (?follow=true streams them).
func (a *Agent) handlePipelineStepLogs(w http.ResponseWriter, r *http.Request) {
	txn := a.fsm.ReadTxn()
	run, err := txn.PipelineRun(r.PathValue("name"), r.PathValue("id"))
	txn.Discard()
	if err != nil {
		writeError(w, err)
		return
	}
	st := run.Step(r.PathValue("step"))
	if st == nil {
		writeError(w, structs.Errorf(structs.CodeNotFound, "run %s has no step %q", run.ID, r.PathValue("step")))
		return
	}
	job := st.Outputs["job_id"]
	if job == "" {
		writeError(w, structs.Errorf(structs.CodeNotFound, "step %s has no job (it is %s)", st.Name, st.State))
		return
	}
	r.SetPathValue("id", job)
	a.handleJobLogs(w, r)
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
		{pattern: "POST /v1/pipelines/{name}/runs/{id}/retry", handler: a.handlePipelineRunRetry, kind: p, need: needWrite, name: pathName},
		{pattern: "GET /v1/approvals", handler: a.handleApprovals, kind: p, need: needList},
		{pattern: "POST /v1/pipelines/{name}/runs/{id}/steps/{step}/approve", handler: a.handlePipelineStepApprove, kind: p, need: needWrite, name: pathName},
		{pattern: "GET /v1/pipelines/{name}/runs/{id}/steps/{step}/logs", handler: a.handlePipelineStepLogs, kind: p, need: needRead, name: pathName},
	}}
}
