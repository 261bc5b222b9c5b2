package node

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// The HCL form of a job spec, which `kiln jobs submit FILE.hcl` sends as
// JSON. HCL is read in node only (STYLE.md): the CLI calls ParseJobHCL.

// jobFile is the HCL form of a job spec: one job block, its label the name.
// The fields mirror structs.JobSpec; what they mean and allow is the node's
// to check.
type jobFile struct {
	Jobs []jobBlock `hcl:"job,block"`
}

type jobBlock struct {
	Name       string           `hcl:"name,label"`
	Experiment string           `hcl:"experiment,optional"`
	Trainer    trainerBlock     `hcl:"trainer,block"`
	Dataset    string           `hcl:"dataset,optional"`
	Target     string           `hcl:"target,optional"`
	Features   []string         `hcl:"features,optional"`
	Validation *validationBlock `hcl:"validation,block"`
	Params     *hcl.Attribute   `hcl:"params,optional"`
	Resources  *resourcesBlock  `hcl:"resources,block"`
	Nodes      int              `hcl:"nodes,optional"`
	Placement  string           `hcl:"placement,optional"`
	Priority   int              `hcl:"priority,optional"`
	Retries    int              `hcl:"retries,optional"`
	Timeout    string           `hcl:"timeout,optional"`
	RegisterAs string           `hcl:"register_as,optional"`
	// FeatureFrame trains from a point-in-time frame of features instead
	// of a dataset.
	FeatureFrame *featureFrameBlock `hcl:"feature_frame,block"`
	DefRange     hcl.Range          `hcl:",def_range"`
}

type featureFrameBlock struct {
	Service         string `hcl:"service"`
	EntityRows      string `hcl:"entity_rows"`
	TimestampColumn string `hcl:"timestamp_column,optional"`
	Output          string `hcl:"output,optional"`
}

type trainerBlock struct {
	Kind      string            `hcl:"kind"`
	Algorithm string            `hcl:"algorithm,optional"`
	Command   []string          `hcl:"command,optional"`
	Args      []string          `hcl:"args,optional"`
	Env       map[string]string `hcl:"env,optional"`
}

type validationBlock struct {
	Split   float64 `hcl:"split,optional"`
	KFold   int     `hcl:"k_fold,optional"`
	Dataset string  `hcl:"dataset,optional"`
}

type resourcesBlock struct {
	CPU         float64 `hcl:"cpu,optional"`
	MemoryMB    int64   `hcl:"memory_mb,optional"`
	GPUs        int     `hcl:"gpus,optional"`
	GPUModel    string  `hcl:"gpu_model,optional"`
	GPUMemoryMB int64   `hcl:"gpu_memory_mb,optional"`
}

// ParseJobHCL decodes an HCL job file into the spec the node takes. An
// unknown argument or block, a value of the wrong type, or a second job is
// an error naming filename and the line.
func ParseJobHCL(src []byte, filename string) (*structs.JobSpec, error) {
	f, diags := hclparse.NewParser().ParseHCL(src, filename)
	if diags.HasErrors() {
		return nil, hclDiagError(diags, nil)
	}
	var file jobFile
	if diags := gohcl.DecodeBody(f.Body, nil, &file); diags.HasErrors() {
		return nil, hclDiagError(diags, f.Body)
	}
	switch len(file.Jobs) {
	case 0:
		return nil, fmt.Errorf("%s: no job block: a job file holds one job \"NAME\" { ... }", filename)
	case 1:
	default:
		r := file.Jobs[1].DefRange
		return nil, fmt.Errorf("%s:%d: a second job block: a job file holds one job", r.Filename, r.Start.Line)
	}
	return file.Jobs[0].spec()
}

// spec converts a decoded job block into the spec the node takes; its label,
// when it has one, is the name.
func (b *jobBlock) spec() (*structs.JobSpec, error) {
	spec := &structs.JobSpec{
		Name:       b.Name,
		Experiment: b.Experiment,
		Trainer: structs.TrainerSpec{
			Kind: b.Trainer.Kind, Algorithm: b.Trainer.Algorithm,
			Command: b.Trainer.Command, Args: b.Trainer.Args, Env: b.Trainer.Env,
		},
		Dataset:    b.Dataset,
		Target:     b.Target,
		Features:   b.Features,
		Nodes:      b.Nodes,
		Placement:  b.Placement,
		Priority:   b.Priority,
		Retries:    b.Retries,
		Timeout:    b.Timeout,
		RegisterAs: b.RegisterAs,
	}
	if f := b.FeatureFrame; f != nil {
		spec.FeatureFrame = &structs.FeatureFrame{Service: f.Service, EntityRows: f.EntityRows, TimestampColumn: f.TimestampColumn, Output: f.Output}
	}
	if v := b.Validation; v != nil {
		spec.Validation = structs.ValidationSpec{Split: v.Split, KFold: v.KFold, Dataset: v.Dataset}
	}
	if r := b.Resources; r != nil {
		spec.Resources = structs.JobResources{CPU: r.CPU, MemoryMB: r.MemoryMB, GPUs: r.GPUs, GPUModel: r.GPUModel, GPUMemoryMB: r.GPUMemoryMB}
	}
	if b.Params != nil {
		params, err := hclParams(b.Params)
		if err != nil {
			return nil, err
		}
		spec.Params = params
	}
	return spec, nil
}

// hclParams reads params = { key = value, ... }: each value a number (sent
// as a JSON number), a string or a boolean, as the node accepts them.
func hclParams(attr *hcl.Attribute) (map[string]any, error) {
	pairs, diags := hcl.ExprMap(attr.Expr)
	if diags.HasErrors() {
		return nil, fmt.Errorf("%s: params must be an object such as { max_depth = 6 }", rangeLine(attr.Expr.Range()))
	}
	params := make(map[string]any, len(pairs))
	for _, p := range pairs {
		k, diags := p.Key.Value(nil)
		if diags.HasErrors() || k.IsNull() || k.Type() != cty.String {
			return nil, fmt.Errorf("%s: a params key must be a name or a string", rangeLine(p.Key.Range()))
		}
		key := k.AsString()
		if _, dup := params[key]; dup {
			return nil, fmt.Errorf("%s: params.%s is given twice", rangeLine(p.Key.Range()), key)
		}
		v, diags := p.Value.Value(nil)
		if diags.HasErrors() {
			return nil, fmt.Errorf("%s: params.%s: %s", rangeLine(p.Value.Range()), key, diagText(diags))
		}
		switch {
		case v.IsNull():
			return nil, fmt.Errorf("%s: params.%s is null: give a number, a string or a boolean", rangeLine(p.Value.Range()), key)
		case v.Type() == cty.Number:
			f, _ := v.AsBigFloat().Float64()
			params[key] = f
		case v.Type() == cty.String:
			params[key] = v.AsString()
		case v.Type() == cty.Bool:
			params[key] = v.True()
		default:
			return nil, fmt.Errorf("%s: params.%s must be a number, a string or a boolean, not type %s", rangeLine(p.Value.Range()), key, v.Type().FriendlyName())
		}
	}
	return params, nil
}

// rangeLine names a source position as file:line.
func rangeLine(r hcl.Range) string {
	return fmt.Sprintf("%s:%d", r.Filename, r.Start.Line)
}

// diagText is the summaries and details of diagnostics, without positions.
func diagText(diags hcl.Diagnostics) string {
	var parts []string
	for _, d := range diags {
		parts = append(parts, strings.TrimSuffix(d.Summary+": "+d.Detail, ": "))
	}
	return strings.Join(parts, "; ")
}
