package structs

import (
	"strings"
	"testing"
)

// mlPipeline is a valid pipeline of every kind of step: ingest, a frame,
// train, evaluate with a gate, deploy, and a command on the side.
func mlPipeline() PipelineSpec {
	return PipelineSpec{
		Name: "churn", Schedule: "0 3 * * *", MaxParallel: 3,
		Params: map[string]any{"lr": 0.1, "min_auc": 0.85},
		Steps: []StepSpec{
			{Name: "ingest", Type: StepIngest, Source: "txns"},
			{Name: "frame", Type: StepFeatures, DependsOn: []string{"ingest"},
				Features: &FeatureFrame{Service: "churn", EntityRows: "${steps.ingest.dataset}", Output: "churn-frame"}},
			{Name: "train", Type: StepTrain, DependsOn: []string{"frame"}, Retries: 2, Timeout: "1h", Cache: true,
				Job: &JobSpec{Name: "churn", Trainer: TrainerSpec{Kind: TrainerBuiltin, Algorithm: "gbdt"},
					Dataset: "${steps.frame.dataset}", Target: "churned", Params: map[string]any{"learning_rate": "${params.lr}"}, RegisterAs: "churn"}},
			{Name: "report", Type: StepCommand, DependsOn: []string{"frame"}, Command: []string{"/usr/bin/report", "${steps.frame.dataset}"}},
			{Name: "eval", Type: StepEvaluate, DependsOn: []string{"train"},
				Evaluate: &EvaluateStep{Model: "churn", Version: "${steps.train.model_version}", Dataset: "holdout:3", Target: "churned",
					Gate: "metrics.auc >= 0.85 && metrics.auc >= champion.auc - 0.01"}},
			{Name: "deploy", Type: StepDeploy, DependsOn: []string{"eval", "report"},
				Deploy: &DeployStep{Model: "churn", Version: "${steps.train.model_version}", Canary: 10, Watch: "10m", MaxErrorRate: 0.01}},
		},
	}
}

func TestPipelineSpec_Validate(t *testing.T) {
	p := mlPipeline()
	p.Normalize()
	if err := p.Validate(); err != nil {
		t.Fatalf("valid pipeline: %v", err)
	}
	tests := []struct {
		name   string
		change func(*PipelineSpec)
		want   string
	}{
		{"unknown dependency", func(p *PipelineSpec) { p.Steps[5].DependsOn = []string{"eval", "nope"} }, `steps.deploy.depends_on[1]: no step is named "nope"`},
		{"self dependency", func(p *PipelineSpec) { p.Steps[0].DependsOn = []string{"ingest"} }, "steps.ingest.depends_on[0]: a step cannot depend on itself"},
		{"cycle", func(p *PipelineSpec) { p.Steps[0].DependsOn = []string{"train"} }, "cycle: ingest -> train -> frame -> ingest"},
		{"unknown type", func(p *PipelineSpec) { p.Steps[3].Type = "email" }, `steps.report.type "email"`},
		{"missing type field", func(p *PipelineSpec) { p.Steps[2].Job = nil }, "steps.train.job is required for a train step"},
		{"field of another type", func(p *PipelineSpec) { p.Steps[0].Command = []string{"x"} }, "steps.ingest.command is not for a ingest step"},
		{"unknown output", func(p *PipelineSpec) { p.Steps[5].Deploy.Version = "${steps.train.version}" }, `steps.deploy.deploy.version: ${steps.train.version}: a train step has no output "version"`},
		{"unknown step in reference", func(p *PipelineSpec) { p.Steps[4].Evaluate.Version = "${steps.fit.model_version}" }, `no step is named "fit"`},
		{"reference to a step not upstream", func(p *PipelineSpec) { p.Steps[3].Command[1] = "${steps.train.model}" }, "step report does not depend on train"},
		{"unknown param", func(p *PipelineSpec) { p.Steps[2].Job.Params["learning_rate"] = "${params.rate}" }, `steps.train.job.params.learning_rate: ${params.rate}: the pipeline has no param "rate"`},
		{"metrics without a name", func(p *PipelineSpec) { p.Steps[5].Deploy.Version = "${steps.eval.metrics}" }, "name the metric"},
		{"bad reference", func(p *PipelineSpec) { p.Steps[5].Deploy.Model = "${model}" }, "neither params.NAME nor steps.STEP.OUTPUT"},
		{"duplicate step", func(p *PipelineSpec) { p.Steps[3].Name = "train" }, `steps[3].name "train" is also steps[2]'s`},
		{"bad canary", func(p *PipelineSpec) { p.Steps[5].Deploy.Canary = 100 }, "steps.deploy.deploy.canary 100"},
		{"bad watch", func(p *PipelineSpec) { p.Steps[5].Deploy.Watch = "soon" }, "steps.deploy.deploy.watch"},
		{"bad timeout", func(p *PipelineSpec) { p.Steps[2].Timeout = "-1h" }, "steps.train.timeout"},
		{"too many retries", func(p *PipelineSpec) { p.Steps[2].Retries = 11 }, "steps.train.retries 11"},
		{"bad schedule", func(p *PipelineSpec) { p.Schedule = "at dawn" }, `schedule "at dawn"`},
		{"bad catch-up", func(p *PipelineSpec) { p.CatchUp = "some" }, `catch_up "some"`},
		{"no steps", func(p *PipelineSpec) { p.Steps = nil }, "steps must list"},
		{"wait_for both", func(p *PipelineSpec) {
			p.Steps = append(p.Steps, StepSpec{Name: "w", Type: StepWaitFor, WaitFor: &WaitForStep{Dataset: "a", Alert: "b"}})
		}, "steps.w.wait_for takes a dataset or an alert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mlPipeline()
			tt.change(&p)
			p.Normalize()
			err := p.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
