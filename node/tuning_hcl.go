package node

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// The HCL form of a tuning spec, which `kiln tune submit FILE.hcl` sends as
// JSON. Its job block is a job file's job without the label (the trials
// take the tuning's name) and each param block one axis of the space.

// tuningFile is the HCL form of a tuning spec: one tuning block, its label
// the name. The fields mirror structs.TuningSpec; what they mean and allow
// is the node's to check.
type tuningFile struct {
	Tunings []tuningBlock `hcl:"tuning,block"`
}

type tuningBlock struct {
	Name           string              `hcl:"name,label"`
	Search         string              `hcl:"search,optional"`
	MaxTrials      int                 `hcl:"max_trials,optional"`
	Parallelism    int                 `hcl:"parallelism,optional"`
	Metric         string              `hcl:"metric,optional"`
	Goal           string              `hcl:"goal,optional"`
	Job            tuningJobBlock      `hcl:"job,block"`
	Params         []paramBlock        `hcl:"param,block"`
	EarlyStopping  *earlyStoppingBlock `hcl:"early_stopping,block"`
	RegisterBestAs string              `hcl:"register_best_as,optional"`
	Seed           uint64              `hcl:"seed,optional"`
	DefRange       hcl.Range           `hcl:",def_range"`
}

// tuningJobBlock keeps the job block's body to decode as a jobBlock, whose
// label it lacks, and to find register_as in.
type tuningJobBlock struct {
	Body hcl.Body `hcl:",remain"`
}

type paramBlock struct {
	Name     string         `hcl:"name,label"`
	Kind     string         `hcl:"kind"`
	Values   *hcl.Attribute `hcl:"values,optional"`
	Min      float64        `hcl:"min,optional"`
	Max      float64        `hcl:"max,optional"`
	DefRange hcl.Range      `hcl:",def_range"`
}

type earlyStoppingBlock struct {
	Kind        string `hcl:"kind"`
	Metric      string `hcl:"metric,optional"`
	Goal        string `hcl:"goal,optional"`
	MinSteps    int    `hcl:"min_steps,optional"`
	MinTrials   int    `hcl:"min_trials,optional"`
	MinResource int    `hcl:"min_resource,optional"`
	Reduction   int    `hcl:"reduction,optional"`
}

// ParseTuningHCL decodes an HCL tuning file into the spec the node takes.
// An unknown argument or block, a value of the wrong type, a second tuning,
// a param given twice or a register_as in the job (trials register nothing:
// register_best_as does) is an error naming filename and the line.
func ParseTuningHCL(src []byte, filename string) (*structs.TuningSpec, error) {
	f, diags := hclparse.NewParser().ParseHCL(src, filename)
	if diags.HasErrors() {
		return nil, hclDiagError(diags, nil)
	}
	var file tuningFile
	if diags := gohcl.DecodeBody(f.Body, nil, &file); diags.HasErrors() {
		return nil, hclDiagError(diags, f.Body)
	}
	switch len(file.Tunings) {
	case 0:
		return nil, fmt.Errorf("%s: no tuning block: a tuning file holds one tuning \"NAME\" { ... }", filename)
	case 1:
	default:
		return nil, fmt.Errorf("%s: a second tuning block: a tuning file holds one tuning", rangeLine(file.Tunings[1].DefRange))
	}
	b := file.Tunings[0]
	spec, err := b.spec(f.Body, "job")
	if err != nil {
		return nil, err
	}
	spec.Name = b.Name
	return spec, nil
}

// spec converts a decoded tuning block (a tuning file's, or a pipeline's
// tune step's, whose job field is named jobField in errors) into the spec
// the node takes; its name is the caller's to set.
func (b *tuningBlock) spec(file hcl.Body, jobField string) (*structs.TuningSpec, error) {
	var jb jobBlock
	if diags := gohcl.DecodeBody(b.Job.Body, nil, &jb); diags.HasErrors() {
		return nil, hclDiagError(diags, file)
	}
	if jb.RegisterAs != "" {
		content, _, _ := b.Job.Body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "register_as"}}})
		return nil, fmt.Errorf("%s: %s.register_as is not for trials: give register_best_as in the tuning block", rangeLine(content.Attributes["register_as"].Range), jobField)
	}
	job, err := jb.spec()
	if err != nil {
		return nil, err
	}
	spec := &structs.TuningSpec{
		Job:            *job,
		Search:         b.Search,
		Space:          make(map[string]structs.ParamRange, len(b.Params)),
		MaxTrials:      b.MaxTrials,
		Parallelism:    b.Parallelism,
		Metric:         b.Metric,
		Goal:           b.Goal,
		RegisterBestAs: b.RegisterBestAs,
		Seed:           b.Seed,
	}
	for _, p := range b.Params {
		if _, dup := spec.Space[p.Name]; dup {
			return nil, fmt.Errorf("%s: param %q is given twice", rangeLine(p.DefRange), p.Name)
		}
		r := structs.ParamRange{Kind: p.Kind, Min: p.Min, Max: p.Max}
		if p.Values != nil {
			values, err := hclParamValues(p.Name, p.Values)
			if err != nil {
				return nil, err
			}
			r.Values = values
		}
		spec.Space[p.Name] = r
	}
	if e := b.EarlyStopping; e != nil {
		spec.EarlyStopping = &structs.EarlyStopping{
			Kind: e.Kind, Metric: e.Metric, Goal: e.Goal,
			MinSteps: e.MinSteps, MinTrials: e.MinTrials, MinResource: e.MinResource, Reduction: e.Reduction,
		}
	}
	return spec, nil
}

// hclParamValues reads a param's values = [...]: each a number (sent as a
// JSON number), a string or a boolean, as params take them.
func hclParamValues(param string, attr *hcl.Attribute) ([]any, error) {
	exprs, diags := hcl.ExprList(attr.Expr)
	if diags.HasErrors() {
		return nil, fmt.Errorf("%s: param %q values must be a list such as [3, 6]", rangeLine(attr.Expr.Range()), param)
	}
	values := make([]any, 0, len(exprs))
	for i, e := range exprs {
		x, diags := e.Value(nil)
		if diags.HasErrors() {
			return nil, fmt.Errorf("%s: param %q values[%d]: %s", rangeLine(e.Range()), param, i, diagText(diags))
		}
		switch {
		case x.IsNull():
			return nil, fmt.Errorf("%s: param %q values[%d] is null: give a number, a string or a boolean", rangeLine(e.Range()), param, i)
		case x.Type() == cty.Number:
			f, _ := x.AsBigFloat().Float64()
			values = append(values, f)
		case x.Type() == cty.String:
			values = append(values, x.AsString())
		case x.Type() == cty.Bool:
			values = append(values, x.True())
		default:
			return nil, fmt.Errorf("%s: param %q values[%d] must be a number, a string or a boolean, not type %s", rangeLine(e.Range()), param, i, x.Type().FriendlyName())
		}
	}
	return values, nil
}
