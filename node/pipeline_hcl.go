package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// The HCL form of a pipeline, which `kiln pipelines apply FILE.hcl` sends
// as JSON. HCL is read in node only (STYLE.md): the CLI calls
// ParsePipelineHCL.
//
// References. A step's text fields hold references, "${params.lr}" or
// "${steps.train.model_version}", that a run resolves when the step starts.
// To HCL, ${...} in a quoted string (or a heredoc) is an interpolation, to
// evaluate now. Rather than making users write "$${...}", the parser keeps
// every interpolation as the text it was written as: before decoding, each
// one in the file's syntax tree becomes the literal string "${" + its
// source + "}", so the decoded value reads exactly as the file does, and
// the literal parts around it keep HCL's escapes ("\"", "\n"). The tree is
// rewritten rather than the bytes, so positions in errors stay those of
// the file. Template directives (%{if}, %{for}) are refused: a pipeline
// file has no HCL variables to test or loop over. A reference written
// bare, without quotes (version = steps.train.model_version), is refused
// with the quoted form to write instead.

// pipelineFile is the HCL form of a pipeline: one pipeline block, its label
// the name. The fields mirror structs.PipelineSpec; what they mean and
// allow is the node's to check.
type pipelineFile struct {
	Pipelines []pipelineBlock `hcl:"pipeline,block"`
}

type pipelineBlock struct {
	Name        string               `hcl:"name,label"`
	Description string               `hcl:"description,optional"`
	Schedule    string               `hcl:"schedule,optional"`
	CatchUp     string               `hcl:"catch_up,optional"`
	MaxParallel int                  `hcl:"max_parallel,optional"`
	Params      []pipelineParamBlock `hcl:"param,block"`
	Steps       []stepBlock          `hcl:"step,block"`
	DefRange    hcl.Range            `hcl:",def_range"`
}

// pipelineParamBlock declares a param of the pipeline and its default; a
// param with no default is null until a run gives it.
type pipelineParamBlock struct {
	Name     string         `hcl:"name,label"`
	Default  *hcl.Attribute `hcl:"default,optional"`
	DefRange hcl.Range      `hcl:",def_range"`
}

// stepBlock is one step; its type says which of the type fields it takes.
type stepBlock struct {
	Name      string             `hcl:"name,label"`
	Type      string             `hcl:"type"`
	DependsOn []string           `hcl:"depends_on,optional"`
	Retries   int                `hcl:"retries,optional"`
	Timeout   string             `hcl:"timeout,optional"`
	Cache     bool               `hcl:"cache,optional"`
	Source    string             `hcl:"source,optional"`
	Features  *featureFrameBlock `hcl:"features,block"`
	Job       *stepBodyBlock     `hcl:"job,block"`
	Tuning    *stepBodyBlock     `hcl:"tuning,block"`
	Evaluate  *evaluateBlock     `hcl:"evaluate,block"`
	Deploy    *deployBlock       `hcl:"deploy,block"`
	Command   []string           `hcl:"command,optional"`
	Env       map[string]string  `hcl:"env,optional"`
	WaitFor   *waitForBlock      `hcl:"wait_for,block"`
	Approval  *approvalBlock     `hcl:"approval,block"`
	DefRange  hcl.Range          `hcl:",def_range"`
}

// stepBodyBlock keeps a job or tuning block's body, decoded as a job file's
// job or a tuning file's tuning, whose label it lacks.
type stepBodyBlock struct {
	Body hcl.Body `hcl:",remain"`
}

type evaluateBlock struct {
	Model   string `hcl:"model"`
	Version string `hcl:"version"`
	Dataset string `hcl:"dataset"`
	Target  string `hcl:"target"`
	Gate    string `hcl:"gate,optional"`
}

type deployBlock struct {
	Model        string  `hcl:"model"`
	Version      string  `hcl:"version"`
	Canary       int     `hcl:"canary"`
	Watch        string  `hcl:"watch"`
	MaxErrorRate float64 `hcl:"max_error_rate,optional"`
	MaxP99MS     float64 `hcl:"max_p99_ms,optional"`
}

type approvalBlock struct {
	Message string `hcl:"message"`
}

type waitForBlock struct {
	Dataset string `hcl:"dataset,optional"`
	Alert   string `hcl:"alert,optional"`
}

// ParsePipelineHCL decodes a pipeline file into the spec the node takes: an
// HCL file holding one pipeline "NAME" { ... } block or, when filename ends
// in .json, the spec's JSON as the API takes it (with its name). An unknown
// argument, block or field, a value of the wrong type, a second pipeline,
// or a step or param declared twice is an error naming filename and the
// line. ${...} references are kept as written (see above); the spec itself
// (types, the graph, the references) is the node's to check.
func ParsePipelineHCL(src []byte, filename string) (*structs.PipelineSpec, error) {
	if strings.HasSuffix(filename, ".json") {
		return parsePipelineJSON(src, filename)
	}
	f, diags := hclparse.NewParser().ParseHCL(src, filename)
	if diags.HasErrors() {
		return nil, hclDiagError(diags, nil)
	}
	if body, ok := f.Body.(*hclsyntax.Body); ok {
		if diags := keepReferences(body, src); diags.HasErrors() {
			return nil, hclDiagError(diags, f.Body)
		}
	}
	var file pipelineFile
	if diags := gohcl.DecodeBody(f.Body, nil, &file); diags.HasErrors() {
		return nil, hclDiagError(diags, f.Body)
	}
	switch len(file.Pipelines) {
	case 0:
		return nil, fmt.Errorf("%s: no pipeline block: a pipeline file holds one pipeline \"NAME\" { ... }", filename)
	case 1:
	default:
		return nil, fmt.Errorf("%s: a second pipeline block: a pipeline file holds one pipeline", rangeLine(file.Pipelines[1].DefRange))
	}
	return file.Pipelines[0].spec(f.Body)
}

// spec converts a decoded pipeline block; file is the file's body, for the
// keys of errors inside step blocks.
func (b *pipelineBlock) spec(file hcl.Body) (*structs.PipelineSpec, error) {
	spec := &structs.PipelineSpec{
		Name:        b.Name,
		Description: b.Description,
		Schedule:    b.Schedule,
		CatchUp:     b.CatchUp,
		MaxParallel: b.MaxParallel,
		Steps:       make([]structs.StepSpec, 0, len(b.Steps)),
	}
	params := declaredNames{}
	for _, p := range b.Params {
		if err := params.add("param", p.Name, p.DefRange); err != nil {
			return nil, err
		}
		if spec.Params == nil {
			spec.Params = map[string]any{}
		}
		spec.Params[p.Name] = nil
		if p.Default != nil {
			v, err := hclScalar(p.Default.Expr, "param "+p.Name+" default", true)
			if err != nil {
				return nil, err
			}
			spec.Params[p.Name] = v
		}
	}
	steps := declaredNames{}
	for i := range b.Steps {
		s := &b.Steps[i]
		if err := steps.add("step", s.Name, s.DefRange); err != nil {
			return nil, err
		}
		step, err := s.spec(file)
		if err != nil {
			return nil, err
		}
		spec.Steps = append(spec.Steps, step)
	}
	return spec, nil
}

// spec converts a decoded step block.
func (s *stepBlock) spec(file hcl.Body) (structs.StepSpec, error) {
	step := structs.StepSpec{
		Name: s.Name, Type: s.Type, DependsOn: s.DependsOn, Retries: s.Retries, Timeout: s.Timeout, Cache: s.Cache,
		Source: s.Source, Command: s.Command, Env: s.Env,
	}
	if f := s.Features; f != nil {
		step.Features = &structs.FeatureFrame{Service: f.Service, EntityRows: f.EntityRows, TimestampColumn: f.TimestampColumn, Output: f.Output}
	}
	if s.Job != nil {
		var jb jobBlock
		if diags := gohcl.DecodeBody(s.Job.Body, nil, &jb); diags.HasErrors() {
			return step, hclDiagError(diags, file)
		}
		job, err := jb.spec()
		if err != nil {
			return step, err
		}
		step.Job = job
	}
	if s.Tuning != nil {
		t, err := stepTuning(s.Tuning.Body, file)
		if err != nil {
			return step, err
		}
		step.Tuning = t
	}
	if e := s.Evaluate; e != nil {
		step.Evaluate = &structs.EvaluateStep{Model: e.Model, Version: e.Version, Dataset: e.Dataset, Target: e.Target, Gate: e.Gate}
	}
	if d := s.Deploy; d != nil {
		step.Deploy = &structs.DeployStep{Model: d.Model, Version: d.Version, Canary: d.Canary, Watch: d.Watch, MaxErrorRate: d.MaxErrorRate, MaxP99MS: d.MaxP99MS}
	}
	if w := s.WaitFor; w != nil {
		step.WaitFor = &structs.WaitForStep{Dataset: w.Dataset, Alert: w.Alert}
	}
	if ap := s.Approval; ap != nil {
		step.Approval = &structs.ApprovalStep{Message: ap.Message}
	}
	return step, nil
}

// stepTuning decodes a tune step's tuning block: a tuning file's tuning
// without its label (the step names the tuning), converted as
// ParseTuningHCL converts one.
func stepTuning(body, file hcl.Body) (*structs.TuningSpec, error) {
	var b tuningBlock
	if diags := gohcl.DecodeBody(body, nil, &b); diags.HasErrors() {
		return nil, hclDiagError(diags, file)
	}
	return b.spec(file, "tuning.job")
}

// hclScalar reads a number (as a JSON number), a string or a boolean, as
// params take them; what names the value in errors. null is nil when
// nullOK.
func hclScalar(expr hcl.Expression, what string, nullOK bool) (any, error) {
	v, diags := expr.Value(nil)
	if diags.HasErrors() {
		return nil, fmt.Errorf("%s: %s: %s", rangeLine(expr.Range()), what, diagText(diags))
	}
	switch {
	case v.IsNull() && nullOK:
		return nil, nil
	case v.IsNull():
		return nil, fmt.Errorf("%s: %s is null: give a number, a string or a boolean", rangeLine(expr.Range()), what)
	case v.Type() == cty.Number:
		f, _ := v.AsBigFloat().Float64()
		return f, nil
	case v.Type() == cty.String:
		return v.AsString(), nil
	case v.Type() == cty.Bool:
		return v.True(), nil
	}
	return nil, fmt.Errorf("%s: %s must be a number, a string or a boolean, not type %s", rangeLine(expr.Range()), what, v.Type().FriendlyName())
}

// keepReferences rewrites the interpolations of every template in body
// into the literal text they were written as (see the top of this file),
// and refuses template directives and bare references.
func keepReferences(body *hclsyntax.Body, src []byte) hcl.Diagnostics {
	k := &referenceKeeper{src: src}
	return hclsyntax.Walk(body, k)
}

// referenceKeeper is the hclsyntax.Walker of keepReferences.
type referenceKeeper struct {
	src []byte
	// inKey counts the object keys being walked: a key's bare name
	// (params = { steps = 1 }) parses as a traversal, not a reference.
	inKey int
}

func (k *referenceKeeper) Enter(n hclsyntax.Node) hcl.Diagnostics {
	switch e := n.(type) {
	case *hclsyntax.ObjectConsKeyExpr:
		k.inKey++
	case *hclsyntax.TemplateWrapExpr:
		// A string that is one interpolation, "${steps.a.b}".
		lit, diags := k.literal(e.Wrapped)
		if diags.HasErrors() {
			return diags
		}
		e.Wrapped = lit
	case *hclsyntax.TemplateExpr:
		for i, part := range e.Parts {
			if _, ok := part.(*hclsyntax.LiteralValueExpr); ok {
				continue
			}
			lit, diags := k.literal(part)
			if diags.HasErrors() {
				return diags
			}
			e.Parts[i] = lit
		}
	case *hclsyntax.ScopeTraversalExpr:
		// Interpolations were made literals on the way down, so a
		// traversal reached here is outside any string.
		if root := e.Traversal.RootName(); k.inKey == 0 && (root == "steps" || root == "params") {
			text := k.text(e.SrcRange)
			return hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  "Reference outside a string",
				Detail:   fmt.Sprintf("a reference is resolved by the run and written in a string: %q", "${"+text+"}"),
				Subject:  e.SrcRange.Ptr(),
			}}
		}
	}
	return nil
}

func (k *referenceKeeper) Exit(n hclsyntax.Node) hcl.Diagnostics {
	if _, ok := n.(*hclsyntax.ObjectConsKeyExpr); ok {
		k.inKey--
	}
	return nil
}

// literal is the string an interpolation was written as, ${...}, in place
// of the interpolation. A template directive's part starts at its %{.
func (k *referenceKeeper) literal(part hclsyntax.Expression) (hclsyntax.Expression, hcl.Diagnostics) {
	r := part.Range()
	text := k.text(r)
	if strings.HasPrefix(text, "%{") {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Template directive in a pipeline file",
			Detail:   "%{...} directives are not supported: a pipeline file has no HCL variables; write references as ${params.NAME} or ${steps.STEP.OUTPUT}",
			Subject:  r.Ptr(),
		}}
	}
	return &hclsyntax.LiteralValueExpr{Val: cty.StringVal("${" + text + "}"), SrcRange: r}, nil
}

// text is the source of a range, "" when the range is not within src.
func (k *referenceKeeper) text(r hcl.Range) string {
	if r.Start.Byte < 0 || r.End.Byte > len(k.src) || r.Start.Byte > r.End.Byte {
		return ""
	}
	return string(k.src[r.Start.Byte:r.End.Byte])
}

// parsePipelineJSON decodes a pipeline's JSON as the API takes it,
// refusing unknown fields; the file must name the pipeline.
func parsePipelineJSON(src []byte, filename string) (*structs.PipelineSpec, error) {
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.DisallowUnknownFields()
	var spec structs.PipelineSpec
	if err := dec.Decode(&spec); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, fmt.Errorf("%s:%d: %v", filename, jsonLine(src, se.Offset), err)
		case errors.As(err, &te):
			return nil, fmt.Errorf("%s:%d: %s: %s given, want %s", filename, jsonLine(src, te.Offset), te.Field, te.Value, te.Type)
		case errors.Is(err, io.EOF):
			return nil, fmt.Errorf("%s: empty: a pipeline file holds the pipeline's JSON object", filename)
		}
		offset := dec.InputOffset()
		// The decoder is past an unknown field's value by now: the line is
		// the field's own, where the file first holds it as a key.
		if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			if loc := regexp.MustCompile(regexp.QuoteMeta(field) + `\s*:`).FindIndex(src); loc != nil {
				offset = int64(loc[0])
			}
		}
		return nil, fmt.Errorf("%s:%d: %v", filename, jsonLine(src, offset), err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s:%d: data after the pipeline's JSON object", filename, jsonLine(src, dec.InputOffset()))
	}
	if spec.Name == "" {
		return nil, fmt.Errorf("%s: no name: a pipeline file names its pipeline (\"name\": \"NAME\")", filename)
	}
	return &spec, nil
}

// jsonLine is the 1-based line of a byte offset in src.
func jsonLine(src []byte, offset int64) int {
	offset = min(max(offset, 0), int64(len(src)))
	return 1 + bytes.Count(src[:offset], []byte("\n"))
}
