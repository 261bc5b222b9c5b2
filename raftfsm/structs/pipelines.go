package structs

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Pipeline commands (DESIGN.md §8). Never renumber; add new ones at the
// end of RangePipelines.
const (
	// PipelinePutType creates or replaces a pipeline.
	PipelinePutType MessageType = 96
	// PipelineDeleteType removes a pipeline.
	PipelineDeleteType MessageType = 97
	// PipelineRunCreateType starts a run of a pipeline.
	PipelineRunCreateType MessageType = 98
	// PipelineRunStepType records step transitions of a run, each
	// compared with the state it moves from.
	PipelineRunStepType MessageType = 99
	// PipelineRunCancelType asks a run to stop.
	PipelineRunCancelType MessageType = 100
	// PipelineCachePutType records a step's outputs under the digest of
	// its inputs, for later runs to reuse.
	PipelineCachePutType MessageType = 101
	// PipelineRunApproveType records a person's decision on a run's
	// approval step.
	PipelineRunApproveType MessageType = 110
)

var _ = registerTypes(RangePipelines,
	TypeDef{PipelinePutType, "pipeline_put"},
	TypeDef{PipelineDeleteType, "pipeline_delete"},
	TypeDef{PipelineRunCreateType, "pipeline_run_create"},
	TypeDef{PipelineRunStepType, "pipeline_run_step"},
	TypeDef{PipelineRunCancelType, "pipeline_run_cancel"},
	TypeDef{PipelineCachePutType, "pipeline_cache_put"},
	TypeDef{PipelineRunApproveType, "pipeline_run_approve"},
)

// StepCacheEntry is a step's outputs for one digest of its inputs.
type StepCacheEntry struct {
	Pipeline string            `msgpack:"pipeline" json:"pipeline"`
	Step     string            `msgpack:"step" json:"step"`
	Key      string            `msgpack:"key" json:"key"` // hex sha256 of the inputs
	Outputs  map[string]string `msgpack:"outputs" json:"outputs"`
	RunID    string            `msgpack:"run_id" json:"run_id"`
	At       time.Time         `msgpack:"at" json:"at"`
}

// Cacheable reports whether a step type's outputs may be reused: not a
// step whose effect is outside its outputs (ingest, deploy) or that waits
// for something new (wait_for) or for a person (approval).
func Cacheable(stepType string) bool {
	switch stepType {
	case StepIngest, StepDeploy, StepWaitFor, StepApproval:
		return false
	}
	return true
}

// PipelinePutRequest creates or replaces a pipeline.
type PipelinePutRequest struct {
	Spec          PipelineSpec `msgpack:"spec"`
	AppliedBy     string       `msgpack:"applied_by,omitempty"`
	AppliedByHash string       `msgpack:"applied_by_hash,omitempty"`
	At            time.Time    `msgpack:"at"`
}

// Pipeline step types (DESIGN.md §8, "Pipelines").
const (
	StepIngest   = "ingest"
	StepFeatures = "features"
	StepTrain    = "train"
	StepTune     = "tune"
	StepEvaluate = "evaluate"
	StepDeploy   = "deploy"
	StepCommand  = "command"
	StepWaitFor  = "wait_for"
	StepApproval = "approval"
)

// StepTypes lists the step types, in the order errors name them.
var StepTypes = []string{StepIngest, StepFeatures, StepTrain, StepTune, StepEvaluate, StepDeploy, StepCommand, StepWaitFor, StepApproval}

// StepOutputs lists what each step type gives later steps, as
// steps.<name>.<output>. "metrics" stands for metrics.<any name>.
var StepOutputs = map[string][]string{
	StepIngest:   {"run", "dataset"},
	StepFeatures: {"dataset"},
	StepTrain:    {"job_id", "run_id", "model", "model_version", "dataset", "metrics"},
	StepTune:     {"tuning_id", "best_job", "model", "model_version", "metrics"},
	StepEvaluate: {"passed", "metrics"},
	StepDeploy:   {"model", "version", "promoted"},
	StepCommand:  {"job_id", "exit_code"},
	StepWaitFor:  {"dataset", "alert"},
	StepApproval: {"approved_by"},
}

// Limits of a pipeline.
const (
	MaxPipelineSteps  = 256
	MaxPipelineParams = 64
	MaxMaxParallel    = 256
	MaxStepRetries    = 10
	MaxGateLen        = 4096
)

// Catch-up policies: what a schedule does about ticks missed while no
// leader ran.
const (
	CatchUpLatest = "latest" // one run, for the latest missed tick (default)
	CatchUpNone   = "none"   // no run for missed ticks; the next tick fires
	CatchUpAll    = "all"    // a run for every missed tick, at most 100
)

// PipelineSpec is a pipeline as a user declares it.
type PipelineSpec struct {
	Name        string `msgpack:"name" json:"name"`
	Description string `msgpack:"description,omitempty" json:"description,omitempty"`
	// Schedule is a cron expression (or an interval) that starts runs.
	Schedule string `msgpack:"schedule,omitempty" json:"schedule,omitempty"`
	CatchUp  string `msgpack:"catch_up,omitempty" json:"catch_up,omitempty"`
	// MaxParallel bounds the steps of one run that run at once.
	MaxParallel int `msgpack:"max_parallel" json:"max_parallel"`
	// Triggers start a run on an event: a source's run that wrote a new
	// dataset version.
	Triggers []PipelineTrigger `msgpack:"triggers,omitempty" json:"triggers,omitempty"`
	// Params are the parameters and their defaults; a run may override
	// them, and steps refer to them as ${params.name}.
	Params map[string]any `msgpack:"params,omitempty" json:"params,omitempty"`
	Steps  []StepSpec     `msgpack:"steps" json:"steps"`
}

// PipelineTrigger starts a run when a source's run writes a dataset
// version (alerts, the other trigger, come with monitoring).
type PipelineTrigger struct {
	Source string `msgpack:"source" json:"source"`
}

// StepSpec is one step of a pipeline. Its type says which of the type
// fields it takes. Text fields may hold references, ${params.lr} or
// ${steps.train.model_version}, resolved when the step starts.
type StepSpec struct {
	Name      string   `msgpack:"name" json:"name"`
	Type      string   `msgpack:"type" json:"type"`
	DependsOn []string `msgpack:"depends_on,omitempty" json:"depends_on,omitempty"`
	Retries   int      `msgpack:"retries,omitempty" json:"retries,omitempty"`
	Timeout   string   `msgpack:"timeout,omitempty" json:"timeout,omitempty"`
	// Cache reuses the outputs of an earlier attempt of the step whose
	// inputs (its resolved spec and the digests of what it reads) were the
	// same.
	Cache bool `msgpack:"cache,omitempty" json:"cache,omitempty"`

	// ingest: the source to run.
	Source string `msgpack:"source,omitempty" json:"source,omitempty"`
	// features: a frame of a feature service for a dataset of entity rows.
	Features *FeatureFrame `msgpack:"features,omitempty" json:"features,omitempty"`
	// train: a job spec; command: a process job's trainer is built from
	// Command and Env.
	Job *JobSpec `msgpack:"job,omitempty" json:"job,omitempty"`
	// tune: a tuning spec.
	Tuning *TuningSpec `msgpack:"tuning,omitempty" json:"tuning,omitempty"`
	// evaluate: a model version scored on a dataset version, and a gate.
	Evaluate *EvaluateStep `msgpack:"evaluate,omitempty" json:"evaluate,omitempty"`
	// deploy: a canary and its watch.
	Deploy *DeployStep `msgpack:"deploy,omitempty" json:"deploy,omitempty"`
	// command: a process.
	Command []string          `msgpack:"command,omitempty" json:"command,omitempty"`
	Env     map[string]string `msgpack:"env,omitempty" json:"env,omitempty"`
	// wait_for: a dataset version or an alert.
	WaitFor *WaitForStep `msgpack:"wait_for,omitempty" json:"wait_for,omitempty"`
	// approval: a person's decision, asked with a message.
	Approval *ApprovalStep `msgpack:"approval,omitempty" json:"approval,omitempty"`
}

// ApprovalStep waits for a person to approve or reject the run at this
// point (POST .../runs/{id}/steps/{step}/approve): approved, the step
// succeeds and the run goes on; rejected, it fails and its dependents are
// skipped. Message says what is being decided.
type ApprovalStep struct {
	Message string `msgpack:"message" json:"message"`
}

// AwaitingApproval begins the Waiting of an undecided approval step; its
// message follows.
const AwaitingApproval = "awaiting approval: "

// MaxApprovalMessage bounds an approval step's message and a decision's
// comment.
const MaxApprovalMessage = 4096

// EvaluateStep scores a model version on a dataset version. Gate is an
// expression over metrics.<name> (this evaluation) and champion.<name>
// (the deployed version's, on the same data) that must hold for the step
// to pass.
type EvaluateStep struct {
	Model   string `msgpack:"model" json:"model"`
	Version string `msgpack:"version" json:"version"`
	Dataset string `msgpack:"dataset" json:"dataset"`
	Target  string `msgpack:"target" json:"target"`
	Gate    string `msgpack:"gate,omitempty" json:"gate,omitempty"`
}

// DeployStep puts a version on a canary, watches it, and promotes it or
// rolls it back.
type DeployStep struct {
	Model   string `msgpack:"model" json:"model"`
	Version string `msgpack:"version" json:"version"`
	// Canary is the traffic weight (1-99) of the new version while watched.
	Canary int `msgpack:"canary" json:"canary"`
	// Watch is how long the canary is watched ("10m").
	Watch string `msgpack:"watch" json:"watch"`
	// MaxErrorRate and MaxP99MS roll the canary back when exceeded.
	MaxErrorRate float64 `msgpack:"max_error_rate,omitempty" json:"max_error_rate,omitempty"`
	MaxP99MS     float64 `msgpack:"max_p99_ms,omitempty" json:"max_p99_ms,omitempty"`
}

// WaitForStep waits for a dataset version (a new one after the run
// started) or an alert.
type WaitForStep struct {
	Dataset string `msgpack:"dataset,omitempty" json:"dataset,omitempty"`
	Alert   string `msgpack:"alert,omitempty" json:"alert,omitempty"`
}

// refRE finds the references in a step's text fields.
var refRE = regexp.MustCompile(`\$\{([^}]*)\}`)

// Reference is one ${...} in a step: params.<name> or
// steps.<step>.<output>[.<metric>].
type Reference struct {
	Path  string // the field it is in, e.g. steps.deploy.deploy.version
	Text  string // what is inside ${}
	Step  string // the step referred to; "" for a param
	Name  string // the param, or the step's output
	Extra string // the metric, for metrics.<name>
}

// parseReference reads one reference's text.
func parseReference(path, text string) (Reference, error) {
	r := Reference{Path: path, Text: text}
	parts := strings.Split(strings.TrimSpace(text), ".")
	switch {
	case len(parts) == 2 && parts[0] == "params":
		r.Name = parts[1]
		return r, nil
	case (len(parts) == 3 || len(parts) == 4) && parts[0] == "steps":
		r.Step, r.Name = parts[1], parts[2]
		if len(parts) == 4 {
			if r.Name != "metrics" {
				return r, Errorf(CodeInvalid, "%s: reference ${%s}: only metrics has a fourth part (steps.STEP.metrics.NAME)", path, text)
			}
			r.Extra = parts[3]
		} else if r.Name == "metrics" {
			return r, Errorf(CodeInvalid, "%s: reference ${%s}: name the metric, steps.%s.metrics.NAME", path, text, r.Step)
		}
		return r, nil
	}
	return r, Errorf(CodeInvalid, "%s: reference ${%s} is neither params.NAME nor steps.STEP.OUTPUT", path, text)
}

// References lists the step's references, each with the path of its field.
func (s *StepSpec) References() ([]Reference, error) {
	var out []Reference
	var firstErr error
	add := func(field, v string) {
		for _, m := range refRE.FindAllStringSubmatch(v, -1) {
			r, err := parseReference("steps."+s.Name+"."+field, m[1])
			if err != nil && firstErr == nil {
				firstErr = err
			}
			out = append(out, r)
		}
	}
	add("source", s.Source)
	for i, c := range s.Command {
		add(fmt.Sprintf("command[%d]", i), c)
	}
	for _, k := range sortedKeys(s.Env) {
		add("env."+k, s.Env[k])
	}
	if f := s.Features; f != nil {
		add("features.service", f.Service)
		add("features.entity_rows", f.EntityRows)
		add("features.output", f.Output)
	}
	if j := s.Job; j != nil {
		add("job.dataset", j.Dataset)
		add("job.validation.dataset", j.Validation.Dataset)
		add("job.register_as", j.RegisterAs)
		if f := j.FeatureFrame; f != nil {
			add("job.feature_frame.entity_rows", f.EntityRows)
		}
		for _, k := range sortedKeys(j.Params) {
			if v, ok := j.Params[k].(string); ok {
				add("job.params."+k, v)
			}
		}
	}
	if e := s.Evaluate; e != nil {
		add("evaluate.model", e.Model)
		add("evaluate.version", e.Version)
		add("evaluate.dataset", e.Dataset)
	}
	if d := s.Deploy; d != nil {
		add("deploy.model", d.Model)
		add("deploy.version", d.Version)
	}
	if w := s.WaitFor; w != nil {
		add("wait_for.dataset", w.Dataset)
	}
	return out, firstErr
}

// Normalize fills defaults.
func (p *PipelineSpec) Normalize() {
	if p.MaxParallel == 0 {
		p.MaxParallel = 4
	}
	if p.CatchUp == "" {
		p.CatchUp = CatchUpLatest
	}
}

// Validate checks a normalized spec: names, types, the fields each type
// takes, the graph (unknown dependencies, cycles) and the references (to
// params that exist, to outputs that the step's dependencies give). Errors
// name the path of the offending field, as steps.train.depends_on[1].
// What needs other code (a gate expression's syntax, a job spec against
// the registry) is checked by the node.
func (p *PipelineSpec) Validate() error {
	if err := ValidateName("name", p.Name); err != nil {
		return err
	}
	if len(p.Description) > MaxDescriptionLen {
		return Errorf(CodeInvalid, "description is %d bytes, more than %d", len(p.Description), MaxDescriptionLen)
	}
	if p.Schedule != "" {
		if _, err := ParseSchedule(p.Schedule); err != nil {
			return Errorf(CodeInvalid, "schedule %q: %v", p.Schedule, err)
		}
	}
	if !slices.Contains([]string{CatchUpLatest, CatchUpNone, CatchUpAll}, p.CatchUp) {
		return Errorf(CodeInvalid, "catch_up %q: use latest, none or all", p.CatchUp)
	}
	if p.MaxParallel < 1 || p.MaxParallel > MaxMaxParallel {
		return Errorf(CodeInvalid, "max_parallel %d is outside 1-%d", p.MaxParallel, MaxMaxParallel)
	}
	for i, t := range p.Triggers {
		if err := ValidateName(fmt.Sprintf("triggers[%d].source", i), t.Source); err != nil {
			return err
		}
	}
	if len(p.Params) > MaxPipelineParams {
		return Errorf(CodeInvalid, "params has %d entries, more than %d", len(p.Params), MaxPipelineParams)
	}
	for _, k := range sortedKeys(p.Params) {
		if err := ValidateColumnName("params key", k); err != nil {
			return err
		}
		switch p.Params[k].(type) {
		case string, float64, int, int64, bool, nil:
		default:
			return Errorf(CodeInvalid, "params.%s: a param is a number, a string or a boolean", k)
		}
	}
	if len(p.Steps) == 0 || len(p.Steps) > MaxPipelineSteps {
		return Errorf(CodeInvalid, "steps must list 1 to %d steps", MaxPipelineSteps)
	}
	index := make(map[string]int, len(p.Steps))
	for i := range p.Steps {
		s := &p.Steps[i]
		if err := ValidateColumnName(fmt.Sprintf("steps[%d].name", i), s.Name); err != nil {
			return err
		}
		if j, dup := index[s.Name]; dup {
			return Errorf(CodeInvalid, "steps[%d].name %q is also steps[%d]'s", i, s.Name, j)
		}
		index[s.Name] = i
	}
	for i := range p.Steps {
		if err := p.Steps[i].validate(index); err != nil {
			return err
		}
	}
	if cycle := p.cycle(index); cycle != nil {
		return Errorf(CodeInvalid, "steps.%s.depends_on: the steps form a cycle: %s", cycle[0], strings.Join(cycle, " -> "))
	}
	for i := range p.Steps {
		if err := p.checkReferences(&p.Steps[i], index); err != nil {
			return err
		}
	}
	return nil
}

func (s *StepSpec) validate(index map[string]int) error {
	path := "steps." + s.Name
	if !slices.Contains(StepTypes, s.Type) {
		return Errorf(CodeInvalid, "%s.type %q: use one of %s", path, s.Type, strings.Join(StepTypes, ", "))
	}
	for j, d := range s.DependsOn {
		field := fmt.Sprintf("%s.depends_on[%d]", path, j)
		if _, ok := index[d]; !ok {
			return Errorf(CodeInvalid, "%s: no step is named %q", field, d)
		}
		if d == s.Name {
			return Errorf(CodeInvalid, "%s: a step cannot depend on itself", field)
		}
		if slices.Index(s.DependsOn, d) != j {
			return Errorf(CodeInvalid, "%s: %q is listed twice", field, d)
		}
	}
	if s.Cache && !Cacheable(s.Type) {
		return Errorf(CodeInvalid, "%s.cache: a %s step acts outside its outputs, so they cannot be reused", path, s.Type)
	}
	if s.Retries < 0 || s.Retries > MaxStepRetries {
		return Errorf(CodeInvalid, "%s.retries %d is outside 0-%d", path, s.Retries, MaxStepRetries)
	}
	if s.Timeout != "" {
		if d, err := ParseSpan(s.Timeout); err != nil || d <= 0 {
			return Errorf(CodeInvalid, "%s.timeout %q is not a positive duration", path, s.Timeout)
		}
	}
	given := map[string]bool{
		"source": s.Source != "", "features": s.Features != nil, "job": s.Job != nil, "tuning": s.Tuning != nil,
		"evaluate": s.Evaluate != nil, "deploy": s.Deploy != nil, "command": len(s.Command) > 0, "wait_for": s.WaitFor != nil,
		"approval": s.Approval != nil,
	}
	want := map[string]string{
		StepIngest: "source", StepFeatures: "features", StepTrain: "job", StepTune: "tuning",
		StepEvaluate: "evaluate", StepDeploy: "deploy", StepCommand: "command", StepWaitFor: "wait_for",
		StepApproval: "approval",
	}[s.Type]
	for _, f := range []string{"source", "features", "job", "tuning", "evaluate", "deploy", "command", "wait_for", "approval"} {
		switch {
		case f == want && !given[f]:
			return Errorf(CodeInvalid, "%s.%s is required for a %s step", path, f, s.Type)
		case f != want && given[f]:
			return Errorf(CodeInvalid, "%s.%s is not for a %s step", path, f, s.Type)
		}
	}
	if len(s.Env) > 0 && s.Type != StepCommand {
		return Errorf(CodeInvalid, "%s.env is for a command step", path)
	}
	switch s.Type {
	case StepEvaluate:
		e := s.Evaluate
		for _, f := range []struct{ name, v string }{{"model", e.Model}, {"version", e.Version}, {"dataset", e.Dataset}, {"target", e.Target}} {
			if f.v == "" {
				return Errorf(CodeInvalid, "%s.evaluate.%s is required", path, f.name)
			}
		}
		if len(e.Gate) > MaxGateLen {
			return Errorf(CodeInvalid, "%s.evaluate.gate is %d bytes, more than %d", path, len(e.Gate), MaxGateLen)
		}
	case StepDeploy:
		d := s.Deploy
		if d.Model == "" || d.Version == "" {
			return Errorf(CodeInvalid, "%s.deploy.model and version are required", path)
		}
		if d.Canary < 1 || d.Canary > 99 {
			return Errorf(CodeInvalid, "%s.deploy.canary %d is outside 1-99: the weight of the new version while watched", path, d.Canary)
		}
		if w, err := ParseSpan(d.Watch); err != nil || w <= 0 {
			return Errorf(CodeInvalid, "%s.deploy.watch %q is not a positive duration", path, d.Watch)
		}
		if d.MaxErrorRate < 0 || d.MaxErrorRate > 1 {
			return Errorf(CodeInvalid, "%s.deploy.max_error_rate %g is outside [0, 1]", path, d.MaxErrorRate)
		}
		if d.MaxP99MS < 0 {
			return Errorf(CodeInvalid, "%s.deploy.max_p99_ms is negative", path)
		}
	case StepApproval:
		if m := strings.TrimSpace(s.Approval.Message); m == "" || len(m) > MaxApprovalMessage {
			return Errorf(CodeInvalid, "%s.approval.message is required, at most %d bytes: what the approver decides", path, MaxApprovalMessage)
		}
	case StepWaitFor:
		if (s.WaitFor.Dataset == "") == (s.WaitFor.Alert == "") {
			return Errorf(CodeInvalid, "%s.wait_for takes a dataset or an alert", path)
		}
	case StepFeatures:
		if s.Features.Service == "" || s.Features.EntityRows == "" || s.Features.Output == "" {
			return Errorf(CodeInvalid, "%s.features: service, entity_rows and output are required", path)
		}
	}
	return nil
}

// cycle returns the steps of a dependency cycle, first step repeated at
// the end, or nil when the graph has none.
func (p *PipelineSpec) cycle(index map[string]int) []string {
	const (
		unseen = iota
		open
		done
	)
	state := make([]int, len(p.Steps))
	var stack []string
	var found []string
	var visit func(i int) bool
	visit = func(i int) bool {
		state[i] = open
		stack = append(stack, p.Steps[i].Name)
		for _, d := range p.Steps[i].DependsOn {
			j := index[d]
			switch state[j] {
			case open:
				k := slices.Index(stack, d)
				found = append(slices.Clone(stack[k:]), d)
				return true
			case unseen:
				if visit(j) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[i] = done
		return false
	}
	for i := range p.Steps {
		if state[i] == unseen && visit(i) {
			return found
		}
	}
	return nil
}

// upstream reports whether step a is among b's dependencies, directly or
// through others.
func (p *PipelineSpec) upstream(a, b string, index map[string]int) bool {
	seen := map[string]bool{}
	var walk func(s string) bool
	walk = func(s string) bool {
		for _, d := range p.Steps[index[s]].DependsOn {
			if d == a {
				return true
			}
			if !seen[d] {
				seen[d] = true
				if walk(d) {
					return true
				}
			}
		}
		return false
	}
	return walk(b)
}

func (p *PipelineSpec) checkReferences(s *StepSpec, index map[string]int) error {
	refs, err := s.References()
	if err != nil {
		return err
	}
	for _, r := range refs {
		if r.Step == "" {
			if _, ok := p.Params[r.Name]; !ok {
				return Errorf(CodeInvalid, "%s: ${%s}: the pipeline has no param %q", r.Path, r.Text, r.Name)
			}
			continue
		}
		j, ok := index[r.Step]
		if !ok {
			return Errorf(CodeInvalid, "%s: ${%s}: no step is named %q", r.Path, r.Text, r.Step)
		}
		if !p.upstream(r.Step, s.Name, index) {
			return Errorf(CodeInvalid, "%s: ${%s}: step %s does not depend on %s, so its outputs may not exist yet; add it to depends_on", r.Path, r.Text, s.Name, r.Step)
		}
		if !slices.Contains(StepOutputs[p.Steps[j].Type], r.Name) {
			return Errorf(CodeInvalid, "%s: ${%s}: a %s step has no output %q (it has %s)", r.Path, r.Text, p.Steps[j].Type, r.Name, strings.Join(StepOutputs[p.Steps[j].Type], ", "))
		}
	}
	return nil
}

// Pipeline is a pipeline's record: its spec, and who applied it.
type Pipeline struct {
	Spec PipelineSpec `msgpack:"spec" json:"spec"`
	// AppliedBy is the accessor of the token that applied the pipeline:
	// its runs act with that token's rights, never more.
	AppliedBy string `msgpack:"applied_by,omitempty" json:"applied_by,omitempty"`
	// AppliedByHash is that token's secret hash, by which its runs find
	// its current rights (the token's record is keyed by it).
	AppliedByHash string `msgpack:"applied_by_hash,omitempty" json:"-"`
	// SourceRuns holds, per triggering source, the last source run that
	// started a run of the pipeline.
	SourceRuns map[string]uint64 `msgpack:"source_runs,omitempty" json:"source_runs,omitempty"`
	// LastTick is the schedule's last tick that started a run.
	LastTick    time.Time `msgpack:"last_tick,omitempty" json:"last_tick,omitempty"`
	CreatedAt   time.Time `msgpack:"created_at" json:"created_at"`
	UpdatedAt   time.Time `msgpack:"updated_at" json:"updated_at"`
	CreateIndex uint64    `msgpack:"create_index" json:"create_index"`
	ModifyIndex uint64    `msgpack:"modify_index" json:"modify_index"`
}

// Pipeline run and step states.
const (
	PipelinePending   = "pending"
	PipelineRunning   = "running"
	PipelineSucceeded = "succeeded"
	PipelineFailed    = "failed"
	PipelineCancelled = "cancelled"

	StepWaiting   = "waiting"   // its dependencies have not all succeeded yet
	StepRunning   = "running"   // an attempt runs (or waits for placement)
	StepSucceeded = "succeeded" // its outputs are set
	StepFailed    = "failed"    // its last attempt failed; retries may remain
	StepSkipped   = "skipped"   // a dependency failed, was skipped or cancelled
	StepCached    = "cached"    // an earlier attempt's outputs, for the same inputs
	StepCancelled = "cancelled"
)

// StepStatus is where one step of a run stands.
type StepStatus struct {
	Name string `msgpack:"name" json:"name"`
	// Type is the step's type, as the run's spec has it.
	Type       string            `msgpack:"type,omitempty" json:"type,omitempty"`
	State      string            `msgpack:"state" json:"state"`
	Attempts   int               `msgpack:"attempts" json:"attempts"`
	NodeName   string            `msgpack:"node_name,omitempty" json:"node_name,omitempty"`
	StartedAt  time.Time         `msgpack:"started_at,omitempty" json:"started_at,omitempty"`
	FinishedAt time.Time         `msgpack:"finished_at,omitempty" json:"finished_at,omitempty"`
	Outputs    map[string]string `msgpack:"outputs,omitempty" json:"outputs,omitempty"`
	Cached     bool              `msgpack:"cached,omitempty" json:"cached,omitempty"`
	// Waiting says why a running step has not started yet (placement).
	Waiting string `msgpack:"waiting,omitempty" json:"waiting,omitempty"`
	Error   string `msgpack:"error,omitempty" json:"error,omitempty"`
	// NoRetry marks a failure a retry would repeat (a gate that did not
	// hold, a reference with no value): retries left are not used.
	NoRetry bool `msgpack:"no_retry,omitempty" json:"no_retry,omitempty"`
	// Decision is a person's answer to an approval step.
	Decision *ApprovalDecision `msgpack:"decision,omitempty" json:"decision,omitempty"`
}

// ApprovalDecision is who approved or rejected an approval step, and when.
type ApprovalDecision struct {
	Approved bool      `msgpack:"approved" json:"approved"`
	By       string    `msgpack:"by" json:"by"`
	Comment  string    `msgpack:"comment,omitempty" json:"comment,omitempty"`
	At       time.Time `msgpack:"at" json:"at"`
}

// PipelineRun is one run of a pipeline: the spec as it was when the run
// started, the params, and where each step stands.
type PipelineRun struct {
	ID       string         `msgpack:"id" json:"id"`
	Pipeline string         `msgpack:"pipeline" json:"pipeline"`
	Spec     PipelineSpec   `msgpack:"spec" json:"-"`
	Params   map[string]any `msgpack:"params,omitempty" json:"params,omitempty"`
	// Trigger is "manual", or "schedule" with the tick in Tick.
	Trigger         string       `msgpack:"trigger" json:"trigger"`
	Tick            time.Time    `msgpack:"tick,omitempty" json:"tick,omitempty"`
	RetryOf         string       `msgpack:"retry_of,omitempty" json:"retry_of,omitempty"`
	State           string       `msgpack:"state" json:"state"`
	Steps           []StepStatus `msgpack:"steps" json:"steps"`
	CancelRequested bool         `msgpack:"cancel_requested,omitempty" json:"cancel_requested,omitempty"`
	AppliedBy       string       `msgpack:"applied_by,omitempty" json:"-"`
	AppliedByHash   string       `msgpack:"applied_by_hash,omitempty" json:"-"`
	CreatedAt       time.Time    `msgpack:"created_at" json:"created_at"`
	UpdatedAt       time.Time    `msgpack:"updated_at" json:"updated_at"`
	FinishedAt      time.Time    `msgpack:"finished_at,omitempty" json:"finished_at,omitempty"`
	CreateIndex     uint64       `msgpack:"create_index" json:"create_index"`
	ModifyIndex     uint64       `msgpack:"modify_index" json:"modify_index"`
}

// Terminal reports whether the run has ended.
func (r *PipelineRun) Terminal() bool {
	return r.State == PipelineSucceeded || r.State == PipelineFailed || r.State == PipelineCancelled
}

// Step returns the status of a step of the run.
func (r *PipelineRun) Step(name string) *StepStatus {
	for i := range r.Steps {
		if r.Steps[i].Name == name {
			return &r.Steps[i]
		}
	}
	return nil
}

// PipelineRunCreateRequest starts a run. Params override the pipeline's
// defaults (a param the pipeline lacks is refused).
type PipelineRunCreateRequest struct {
	ID       string         `msgpack:"id"`
	Pipeline string         `msgpack:"pipeline"`
	Params   map[string]any `msgpack:"params,omitempty"`
	Trigger  string         `msgpack:"trigger"`
	Tick     time.Time      `msgpack:"tick,omitempty"`
	// RetryOf and Seed make a retry of an earlier run from one of its
	// steps: Seed holds the statuses of the steps not downstream of it
	// that succeeded, carried over as cached.
	RetryOf string       `msgpack:"retry_of,omitempty"`
	Seed    []StepStatus `msgpack:"seed,omitempty"`
	// Source and SourceRun: the source run that triggers this run; Apply
	// refuses one at or before the last it started a run for.
	Source    string    `msgpack:"source,omitempty"`
	SourceRun uint64    `msgpack:"source_run,omitempty"`
	At        time.Time `msgpack:"at"`
}

// StepUpdate moves one step from the state From to Status.
type StepUpdate struct {
	From   string     `msgpack:"from"`
	Status StepStatus `msgpack:"status"`
}

// PipelineRunStepRequest records step transitions and the run's state
// after them. Apply refuses the whole request (already_exists) when a step
// is not in its From state: another actor of the run moved it first.
type PipelineRunStepRequest struct {
	Pipeline string       `msgpack:"pipeline"`
	RunID    string       `msgpack:"run_id"`
	Updates  []StepUpdate `msgpack:"updates"`
	State    string       `msgpack:"state"`
	At       time.Time    `msgpack:"at"`
}

// PipelineRunApproveRequest decides a run's approval step; the apply
// takes it only while the step runs (its dependencies succeeded) and has
// no decision yet.
type PipelineRunApproveRequest struct {
	Pipeline string           `msgpack:"pipeline"`
	RunID    string           `msgpack:"run_id"`
	Step     string           `msgpack:"step"`
	Decision ApprovalDecision `msgpack:"decision"`
}

// PipelineRunCancelRequest asks a run to stop.
type PipelineRunCancelRequest struct {
	Pipeline string    `msgpack:"pipeline"`
	RunID    string    `msgpack:"run_id"`
	At       time.Time `msgpack:"at"`
}

// ResolvedParams merges a run's params over the pipeline's defaults,
// refusing a param the pipeline does not declare.
func (p *PipelineSpec) ResolvedParams(given map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(p.Params))
	for k, v := range p.Params {
		out[k] = v
	}
	for _, k := range sortedKeys(given) {
		if _, ok := p.Params[k]; !ok {
			return nil, Errorf(CodeInvalid, "params.%s: the pipeline declares no such param", k)
		}
		switch given[k].(type) {
		case string, float64, int, int64, bool, nil:
		default:
			return nil, Errorf(CodeInvalid, "params.%s: a param is a number, a string or a boolean", k)
		}
		out[k] = given[k]
	}
	return out, nil
}

// StepStates lists the valid step states.
var StepStates = []string{StepWaiting, StepRunning, StepSucceeded, StepFailed, StepSkipped, StepCached, StepCancelled}

// PipelineStates lists the valid run states.
var PipelineStates = []string{PipelinePending, PipelineRunning, PipelineSucceeded, PipelineFailed, PipelineCancelled}
