package node

import (
	"reflect"
	"strings"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// examplePipelineHCL is the pipeline of the CLI's help: a step of every
// type but tune, with references in plain fields, nested blocks, job
// params and command lists.
const examplePipelineHCL = `pipeline "churn" {
  description  = "nightly churn model"
  schedule     = "0 3 * * *"
  catch_up     = "latest"
  max_parallel = 3

  param "lr" {
    default = 0.1
  }
  param "min_auc" {
    default = 0.85
  }
  param "region" {
    default = "eu"
  }
  param "dry_run" {
    default = false
  }

  step "ingest" {
    type   = "ingest"
    source = "txns"
  }
  step "frame" {
    type       = "features"
    depends_on = ["ingest"]
    features {
      service     = "churn"
      entity_rows = "${steps.ingest.dataset}"
      output      = "churn-frame"
    }
  }
  step "train" {
    type       = "train"
    depends_on = ["frame"]
    retries    = 2
    timeout    = "1h"
    cache      = true
    job {
      trainer {
        kind      = "builtin"
        algorithm = "gbdt"
      }
      dataset     = "${steps.frame.dataset}"
      target      = "churned"
      params      = { learning_rate = "${params.lr}", max_depth = 6, tag = "churn-${params.region}" }
      register_as = "churn"
    }
  }
  step "eval" {
    type       = "evaluate"
    depends_on = ["train"]
    evaluate {
      model   = "churn"
      version = "${steps.train.model_version}"
      dataset = "holdout:3"
      target  = "churned"
      gate    = "metrics.auc >= 0.85 && metrics.auc >= champion.auc - 0.01"
    }
  }
  step "deploy" {
    type       = "deploy"
    depends_on = ["eval"]
    deploy {
      model          = "churn"
      version        = "${steps.train.model_version}"
      canary         = 10
      watch          = "10m"
      max_error_rate = 0.01
      max_p99_ms     = 50
    }
  }
  step "report" {
    type       = "command"
    depends_on = ["frame"]
    command    = ["/usr/bin/report", "${steps.frame.dataset}", "--region=${ params.region }"]
    env        = { X = "1", DATASET = "${steps.frame.dataset}" }
  }
  step "wait" {
    type = "wait_for"
    wait_for {
      dataset = "labels"
    }
  }
  step "signoff" {
    type       = "approval"
    depends_on = ["eval"]
    approval {
      message = "promote churn v${steps.train.model_version}?"
    }
  }
}
`

var examplePipelineSpec = structs.PipelineSpec{
	Name:        "churn",
	Description: "nightly churn model",
	Schedule:    "0 3 * * *",
	CatchUp:     "latest",
	MaxParallel: 3,
	Params:      map[string]any{"lr": 0.1, "min_auc": 0.85, "region": "eu", "dry_run": false},
	Steps: []structs.StepSpec{
		{Name: "ingest", Type: "ingest", Source: "txns"},
		{Name: "frame", Type: "features", DependsOn: []string{"ingest"},
			Features: &structs.FeatureFrame{Service: "churn", EntityRows: "${steps.ingest.dataset}", Output: "churn-frame"}},
		{Name: "train", Type: "train", DependsOn: []string{"frame"}, Retries: 2, Timeout: "1h", Cache: true,
			Job: &structs.JobSpec{
				Trainer:    structs.TrainerSpec{Kind: "builtin", Algorithm: "gbdt"},
				Dataset:    "${steps.frame.dataset}",
				Target:     "churned",
				Params:     map[string]any{"learning_rate": "${params.lr}", "max_depth": 6.0, "tag": "churn-${params.region}"},
				RegisterAs: "churn",
			}},
		{Name: "eval", Type: "evaluate", DependsOn: []string{"train"},
			Evaluate: &structs.EvaluateStep{Model: "churn", Version: "${steps.train.model_version}", Dataset: "holdout:3", Target: "churned",
				Gate: "metrics.auc >= 0.85 && metrics.auc >= champion.auc - 0.01"}},
		{Name: "deploy", Type: "deploy", DependsOn: []string{"eval"},
			Deploy: &structs.DeployStep{Model: "churn", Version: "${steps.train.model_version}", Canary: 10, Watch: "10m", MaxErrorRate: 0.01, MaxP99MS: 50}},
		{Name: "report", Type: "command", DependsOn: []string{"frame"},
			Command: []string{"/usr/bin/report", "${steps.frame.dataset}", "--region=${params.region}"},
			Env:     map[string]string{"X": "1", "DATASET": "${steps.frame.dataset}"}},
		{Name: "wait", Type: "wait_for", WaitFor: &structs.WaitForStep{Dataset: "labels"}},
		{Name: "signoff", Type: "approval", DependsOn: []string{"eval"},
			Approval: &structs.ApprovalStep{Message: "promote churn v${steps.train.model_version}?"}},
	},
}

func TestParsePipelineHCL_ConvertsToPipelineSpec(t *testing.T) {
	cases := []struct {
		name string
		hcl  string
		want structs.PipelineSpec
	}{
		{"example", examplePipelineHCL, examplePipelineSpec},
		{"tune step, param without default", `
pipeline "search" {
  param "data" {}
  step "tune" {
    type = "tune"
    tuning {
      metric = "auc"
      job {
        trainer {
          kind = "builtin"
        }
        dataset = "${params.data}"
      }
      param "max_depth" {
        kind   = "values"
        values = [3, 6]
      }
      register_best_as = "best"
    }
  }
}`, structs.PipelineSpec{
			Name:   "search",
			Params: map[string]any{"data": nil},
			Steps: []structs.StepSpec{{Name: "tune", Type: "tune", Tuning: &structs.TuningSpec{
				Job:            structs.JobSpec{Trainer: structs.TrainerSpec{Kind: "builtin"}, Dataset: "${params.data}"},
				Space:          map[string]structs.ParamRange{"max_depth": {Kind: "values", Values: []any{3.0, 6.0}}},
				Metric:         "auc",
				RegisterBestAs: "best",
			}}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePipelineHCL([]byte(tc.hcl), "pipeline.hcl")
			if err != nil {
				t.Fatalf("ParsePipelineHCL: %v", err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("spec\n%#v\nwant\n%#v", *got, tc.want)
			}
		})
	}
}

// The example is a spec the node takes: its references name params and
// outputs of steps upstream, as Validate checks them.
func TestParsePipelineHCL_ExampleValidates(t *testing.T) {
	spec, err := ParsePipelineHCL([]byte(examplePipelineHCL), "pipeline.hcl")
	if err != nil {
		t.Fatal(err)
	}
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		t.Fatalf("the example does not validate: %v", err)
	}
	refs, err := spec.Steps[2].References()
	if err != nil || len(refs) != 3 {
		t.Fatalf("train's references = %+v, %v; want dataset and two params", refs, err)
	}
}

// References are kept as the text written, wherever they are; the literal
// text around them keeps HCL's escapes.
func TestParsePipelineHCL_KeepsReferencesAsWritten(t *testing.T) {
	step := func(body string) string {
		return "pipeline \"p\" {\n  step \"a\" {\n    type = \"command\"\n" + body + "\n  }\n}\n"
	}
	cases := []struct {
		name, hcl string
		want      []string
	}{
		{"alone", step(`    command = ["${params.x}"]`), []string{"${params.x}"}},
		{"spaces inside", step(`    command = ["${  steps.b.exit_code }"]`), []string{"${steps.b.exit_code}"}},
		{"in text", step(`    command = ["a-${params.x}-b${steps.b.job_id}"]`), []string{"a-${params.x}-b${steps.b.job_id}"}},
		{"metrics", step(`    command = ["${steps.t.metrics.auc}"]`), []string{"${steps.t.metrics.auc}"}},
		{"escapes around", step(`    command = ["say \"${params.x}\"\tnow"]`), []string{"say \"${params.x}\"\tnow"}},
		{"escaped dollar", step(`    command = ["$${params.x}"]`), []string{"${params.x}"}},
		{"not a reference", step(`    command = ["${upper(params.x)}", "${1 + 2}"]`), []string{"${upper(params.x)}", "${1 + 2}"}},
		{"heredoc", step("    command = [<<EOT\nrun ${params.x}\nEOT\n    ]"), []string{"run ${params.x}\n"}},
		{"several", step(`    command = ["/bin/sh", "-c", "echo ${params.x} > ${steps.b.dataset}"]`), []string{"/bin/sh", "-c", "echo ${params.x} > ${steps.b.dataset}"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePipelineHCL([]byte(tc.hcl), "p.hcl")
			if err != nil {
				t.Fatalf("ParsePipelineHCL: %v", err)
			}
			if c := got.Steps[0].Command; !reflect.DeepEqual(c, tc.want) {
				t.Errorf("command = %q, want %q", c, tc.want)
			}
		})
	}
}

func TestParsePipelineHCL_ErrorsNameFileLineAndKey(t *testing.T) {
	const cmd = "  step \"a\" {\n    type    = \"command\"\n    command = [\"/bin/true\"]\n  }\n" // lines 2-5
	trainStep := func(job string) string {
		return "pipeline \"p\" {\n  step \"t\" {\n    type = \"train\"\n    job {\n      trainer {\n        kind = \"builtin\"\n      }\n" + job + "    }\n  }\n}\n"
	}
	cases := []struct {
		name, hcl string
		msgs      []string // parts the error must hold
	}{
		{"unknown pipeline argument", "pipeline \"p\" {\n" + cmd + "  parallel = 3\n}\n",
			[]string{"p.hcl:6,", "Unsupported argument", `"parallel"`}},
		{"unknown step argument", "pipeline \"p\" {\n  step \"a\" {\n    type  = \"command\"\n    image = \"x\"\n  }\n}\n",
			[]string{"p.hcl:4,", "Unsupported argument", `"image"`}},
		{"unknown job argument", trainStep("      colour = \"red\"\n"),
			[]string{"p.hcl:8,", "Unsupported argument", `"colour"`}},
		{"wrong type in the job", trainStep("      nodes = \"two\"\n"),
			[]string{"p.hcl:8,", "pipeline.step.job.nodes", "a number is required"}},
		{"job params not an object", trainStep("      params = 3\n"),
			[]string{"p.hcl:8: params must be an object"}},
		{"unknown evaluate argument", "pipeline \"p\" {\n  step \"e\" {\n    type = \"evaluate\"\n    evaluate {\n      model   = \"m\"\n      version = \"1\"\n      dataset = \"d:1\"\n      target  = \"y\"\n      metric  = \"auc\"\n    }\n  }\n}\n",
			[]string{"p.hcl:9,", "Unsupported argument", `"metric"`}},
		{"deploy without canary", "pipeline \"p\" {\n  step \"d\" {\n    type = \"deploy\"\n    deploy {\n      model   = \"m\"\n      version = \"1\"\n      watch   = \"1m\"\n    }\n  }\n}\n",
			[]string{"p.hcl:4,", "Missing required argument", `"canary"`}},
		{"tune job register_as", "pipeline \"p\" {\n  step \"t\" {\n    type = \"tune\"\n    tuning {\n      job {\n        trainer {\n          kind = \"builtin\"\n        }\n        register_as = \"m\"\n      }\n    }\n  }\n}\n",
			[]string{"p.hcl:9: tuning.job.register_as is not for trials"}},
		{"unknown tuning argument", "pipeline \"p\" {\n  step \"t\" {\n    type = \"tune\"\n    tuning {\n      trials = 3\n      job {\n        trainer {\n          kind = \"builtin\"\n        }\n      }\n    }\n  }\n}\n",
			[]string{"p.hcl:5,", "Unsupported argument", `"trials"`}},
		{"step without type", "pipeline \"p\" {\n  step \"a\" {\n    command = [\"/bin/true\"]\n  }\n}\n",
			[]string{"p.hcl:2,", "Missing required argument", `"type"`}},
		{"step twice", "pipeline \"p\" {\n" + cmd + cmd + "}\n",
			[]string{`p.hcl:6: step "a" is declared twice (first at line 2)`}},
		{"param twice", "pipeline \"p\" {\n  param \"x\" {\n    default = 1\n  }\n  param \"x\" {}\n" + cmd + "}\n",
			[]string{`p.hcl:5: param "x" is declared twice (first at line 2)`}},
		{"param default a list", "pipeline \"p\" {\n  param \"x\" {\n    default = [1]\n  }\n" + cmd + "}\n",
			[]string{"p.hcl:3: param x default must be a number, a string or a boolean, not type tuple"}},
		{"unknown param argument", "pipeline \"p\" {\n  param \"x\" {\n    value = 1\n  }\n" + cmd + "}\n",
			[]string{"p.hcl:3,", "Unsupported argument", `"value"`}},
		{"bare reference", "pipeline \"p\" {\n  step \"a\" {\n    type    = \"command\"\n    command = [steps.b.job_id]\n  }\n}\n",
			[]string{"p.hcl:4,", "Reference outside a string", `"${steps.b.job_id}"`}},
		{"bare reference in params", trainStep("      params = { lr = params.lr }\n"),
			[]string{"p.hcl:8,", "Reference outside a string", `"${params.lr}"`}},
		{"other variable", "pipeline \"p\" {\n  step \"a\" {\n    type    = \"command\"\n    command = [var.x]\n  }\n}\n",
			[]string{"p.hcl:4,", "Variables not allowed"}},
		{"template directive", "pipeline \"p\" {\n  step \"a\" {\n    type    = \"command\"\n    command = [\"%{ if true }x%{ endif }\"]\n  }\n}\n",
			[]string{"p.hcl:4,", "Template directive"}},
		{"for directive", "pipeline \"p\" {\n  step \"a\" {\n    type    = \"command\"\n    command = [\"a%{ for x in [1] }${x}%{ endfor }\"]\n  }\n}\n",
			[]string{"p.hcl:4,", "Template directive"}},
		{"wrong type", "pipeline \"p\" {\n  max_parallel = \"many\"\n" + cmd + "}\n",
			[]string{"p.hcl:2,", "pipeline.max_parallel", "a number is required"}},
		{"syntax", "pipeline \"p\" {\n  schedule = = 1\n}\n", []string{"p.hcl:2,"}},
		{"no pipeline", "# nothing\n", []string{"p.hcl: no pipeline block"}},
		{"two pipelines", "pipeline \"a\" {\n" + cmd + "}\n\npipeline \"b\" {\n" + cmd + "}\n",
			[]string{"p.hcl:8: a second pipeline block"}},
		{"pipeline without a name", "pipeline {\n" + cmd + "}\n", []string{"p.hcl:1,", "name"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := ParsePipelineHCL([]byte(tc.hcl), "p.hcl")
			if err == nil {
				t.Fatalf("ParsePipelineHCL = %+v, want an error", spec)
			}
			for _, m := range tc.msgs {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q lacks %q", err, m)
				}
			}
		})
	}
}

// A .json file is the API's spec, as is.
func TestParsePipelineHCL_JSONFile(t *testing.T) {
	good := `{
  "name": "p",
  "params": {"x": 1},
  "steps": [{"name": "a", "type": "command", "command": ["/bin/echo", "${params.x}"]}]
}`
	spec, err := ParsePipelineHCL([]byte(good), "p.json")
	if err != nil {
		t.Fatal(err)
	}
	want := structs.PipelineSpec{Name: "p", Params: map[string]any{"x": 1.0},
		Steps: []structs.StepSpec{{Name: "a", Type: "command", Command: []string{"/bin/echo", "${params.x}"}}}}
	if !reflect.DeepEqual(*spec, want) {
		t.Errorf("spec\n%#v\nwant\n%#v", *spec, want)
	}
	cases := []struct{ name, json, msg string }{
		{"unknown field", "{\n  \"name\": \"p\",\n  \"stepz\": []\n}", `p.json:3: json: unknown field "stepz"`},
		{"wrong type", "{\n  \"name\": \"p\",\n  \"max_parallel\": \"3\"\n}", "p.json:3: max_parallel: string given, want int"},
		{"unknown nested field", "{\n  \"name\": \"p\",\n  \"steps\": [{\n    \"name\": \"a\",\n    \"image\": \"x\"\n  }]\n}", `p.json:5: json: unknown field "image"`},
		{"syntax", "{\n  \"name\": \"p\",,\n}", "p.json:2:"},
		{"no name", `{"steps": []}`, "p.json: no name"},
		{"empty", ``, "p.json: empty"},
		{"two objects", `{"name": "p"} {}`, "p.json:1: data after"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePipelineHCL([]byte(tc.json), "p.json")
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %v, want one holding %q", err, tc.msg)
			}
		})
	}
}

// Whatever the bytes, ParsePipelineHCL answers a spec or an error.
func FuzzParsePipelineHCL(f *testing.F) {
	f.Add([]byte(examplePipelineHCL), false)
	f.Add([]byte("pipeline \"p\" {\n  step \"a\" {\n    type = \"command\"\n    command = [\"${~ params.x ~}\", <<EOT\n${steps.a.b}%{ if x }y%{ endif }\nEOT\n    ]\n  }\n}\n"), false)
	f.Add([]byte(`{"name": "p", "steps": [{"name": "a"}]}`), true)
	f.Fuzz(func(t *testing.T, src []byte, isJSON bool) {
		name := "fuzz.hcl"
		if isJSON {
			name = "fuzz.json"
		}
		spec, err := ParsePipelineHCL(src, name)
		if (spec == nil) == (err == nil) {
			t.Fatalf("ParsePipelineHCL = %v, %v: want a spec or an error", spec, err)
		}
	})
}
