package node

import (
	"reflect"
	"strings"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// exampleTuningHCL is the tuning file of the CLI's help, every block in it.
const exampleTuningHCL = `tuning "xgb-search" {
  search      = "random"
  max_trials  = 20
  parallelism = 2
  metric      = "auc"
  goal        = "maximize"
  job {
    trainer {
      kind      = "builtin"
      algorithm = "gbdt"
    }
    dataset = "agaricus"
    target  = "label"
    params  = { objective = "binary:logistic" }
    validation {
      split = 0.2
    }
  }
  param "max_depth" {
    kind   = "values"
    values = [3, 4, 6]
  }
  param "learning_rate" {
    kind = "loguniform"
    min  = 0.01
    max  = 0.3
  }
  early_stopping {
    kind   = "asha"
    metric = "valid_logloss"
    goal   = "minimize"
  }
  register_best_as = "agaricus-best"
}
`

func TestParseTuningHCL_ConvertsToTuningSpec(t *testing.T) {
	cases := []struct {
		name string
		hcl  string
		want structs.TuningSpec
	}{
		{"example", exampleTuningHCL, structs.TuningSpec{
			Name: "xgb-search",
			Job: structs.JobSpec{
				Trainer:    structs.TrainerSpec{Kind: "builtin", Algorithm: "gbdt"},
				Dataset:    "agaricus",
				Target:     "label",
				Params:     map[string]any{"objective": "binary:logistic"},
				Validation: structs.ValidationSpec{Split: 0.2},
			},
			Search: "random",
			Space: map[string]structs.ParamRange{
				"max_depth":     {Kind: "values", Values: []any{3.0, 4.0, 6.0}},
				"learning_rate": {Kind: "loguniform", Min: 0.01, Max: 0.3},
			},
			MaxTrials:      20,
			Parallelism:    2,
			Metric:         "auc",
			Goal:           "maximize",
			EarlyStopping:  &structs.EarlyStopping{Kind: "asha", Metric: "valid_logloss", Goal: "minimize"},
			RegisterBestAs: "agaricus-best",
		}},
		{"grid of mixed values, median stopping, seed", `
tuning "grid" {
  metric = "accuracy"
  seed   = 42
  job {
    experiment = "iris"
    trainer {
      kind = "builtin"
    }
    resources {
      cpu = 2
    }
    timeout = "10m"
  }
  param "penalty" {
    kind   = "choice"
    values = ["l1", "l2", true, -1.5]
  }
  param "max_iter" {
    kind = "int"
    min  = 10
    max  = 100
  }
  early_stopping {
    kind         = "median"
    min_steps    = 5
    min_trials   = 3
    min_resource = 2
    reduction    = 4
  }
}`, structs.TuningSpec{
			Name: "grid",
			Job: structs.JobSpec{
				Experiment: "iris",
				Trainer:    structs.TrainerSpec{Kind: "builtin"},
				Resources:  structs.JobResources{CPU: 2},
				Timeout:    "10m",
			},
			Space: map[string]structs.ParamRange{
				"penalty":  {Kind: "choice", Values: []any{"l1", "l2", true, -1.5}},
				"max_iter": {Kind: "int", Min: 10, Max: 100},
			},
			Metric:        "accuracy",
			Seed:          42,
			EarlyStopping: &structs.EarlyStopping{Kind: "median", MinSteps: 5, MinTrials: 3, MinResource: 2, Reduction: 4},
		}},
		{"no early stopping, empty values", `
tuning "t" {
  job {
    trainer {
      kind = "builtin"
    }
  }
  param "x" {
    kind   = "values"
    values = []
  }
}`, structs.TuningSpec{
			Name:  "t",
			Job:   structs.JobSpec{Trainer: structs.TrainerSpec{Kind: "builtin"}},
			Space: map[string]structs.ParamRange{"x": {Kind: "values", Values: []any{}}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTuningHCL([]byte(tc.hcl), "tune.hcl")
			if err != nil {
				t.Fatalf("ParseTuningHCL: %v", err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("spec\n%#v\nwant\n%#v", *got, tc.want)
			}
		})
	}
}

// The example is a spec the node takes: its job gets the tuning's name.
func TestParseTuningHCL_ExampleValidates(t *testing.T) {
	spec, err := ParseTuningHCL([]byte(exampleTuningHCL), "tune.hcl")
	if err != nil {
		t.Fatal(err)
	}
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		t.Errorf("the example does not validate: %v", err)
	}
	if spec.Job.Name != "xgb-search" {
		t.Errorf("job name %q, want the tuning's", spec.Job.Name)
	}
}

func TestParseTuningHCL_ErrorsNameFileLineAndKey(t *testing.T) {
	const job = "  job {\n    trainer {\n      kind = \"builtin\"\n    }\n  }\n" // lines 2-6
	cases := []struct {
		name, hcl string
		msgs      []string // parts the error must hold
	}{
		{"unknown argument", "tuning \"a\" {\n" + job + "  trials = 3\n}\n",
			[]string{"tune.hcl:7,", "Unsupported argument", `"trials"`}},
		{"unknown argument in the job", "tuning \"a\" {\n  job {\n    trainer {\n      kind = \"builtin\"\n    }\n    colour = \"red\"\n  }\n}\n",
			[]string{"tune.hcl:6,", "Unsupported argument", `"colour"`}},
		{"wrong type in the job", "tuning \"a\" {\n  job {\n    trainer {\n      kind = \"builtin\"\n    }\n    nodes = \"two\"\n  }\n}\n",
			[]string{"tune.hcl:6,", "tuning.job.nodes", "a number is required"}},
		{"job params not an object", "tuning \"a\" {\n  job {\n    trainer {\n      kind = \"builtin\"\n    }\n    params = 3\n  }\n}\n",
			[]string{"tune.hcl:6: params must be an object"}},
		{"job register_as", "tuning \"a\" {\n  job {\n    trainer {\n      kind = \"builtin\"\n    }\n    register_as = \"m\"\n  }\n}\n",
			[]string{"tune.hcl:6: job.register_as is not for trials: give register_best_as"}},
		{"job with a label", "tuning \"a\" {\n  job \"j\" {\n    trainer {\n      kind = \"builtin\"\n    }\n  }\n}\n",
			[]string{"tune.hcl:2,", "Extraneous label"}},
		{"job without a trainer", "tuning \"a\" {\n  job {\n    dataset = \"d\"\n  }\n}\n",
			[]string{"tune.hcl:", "Missing trainer block"}},
		{"missing job", "tuning \"a\" {\n  metric = \"auc\"\n}\n",
			[]string{"tune.hcl:1,", "Missing job block"}},
		{"two jobs", "tuning \"a\" {\n" + job + job + "}\n",
			[]string{"tune.hcl:7,", "Duplicate job block"}},
		{"wrong type", "tuning \"a\" {\n" + job + "  max_trials = \"many\"\n}\n",
			[]string{"tune.hcl:7,", "tuning.max_trials", "a number is required"}},
		{"negative seed", "tuning \"a\" {\n" + job + "  seed = -1\n}\n",
			[]string{"tune.hcl:7,", "tuning.seed"}},
		{"param without kind", "tuning \"a\" {\n" + job + "  param \"x\" {\n    min = 1\n  }\n}\n",
			[]string{"tune.hcl:7,", `Missing required argument`, `"kind"`}},
		{"param without a name", "tuning \"a\" {\n" + job + "  param {\n    kind = \"int\"\n  }\n}\n",
			[]string{"tune.hcl:7,", "name"}},
		{"param twice", "tuning \"a\" {\n" + job + "  param \"x\" {\n    kind = \"int\"\n  }\n  param \"x\" {\n    kind = \"uniform\"\n  }\n}\n",
			[]string{`tune.hcl:10: param "x" is given twice`}},
		{"param unknown argument", "tuning \"a\" {\n" + job + "  param \"x\" {\n    kind = \"int\"\n    step = 2\n  }\n}\n",
			[]string{"tune.hcl:9,", "Unsupported argument", `"step"`}},
		{"values not a list", "tuning \"a\" {\n" + job + "  param \"x\" {\n    kind   = \"values\"\n    values = 3\n  }\n}\n",
			[]string{`tune.hcl:9: param "x" values must be a list`}},
		{"values holding a list", "tuning \"a\" {\n" + job + "  param \"x\" {\n    kind   = \"values\"\n    values = [\n      1,\n      [2, 3],\n    ]\n  }\n}\n",
			[]string{`tune.hcl:11: param "x" values[1] must be a number, a string or a boolean, not type tuple`}},
		{"values holding null", "tuning \"a\" {\n" + job + "  param \"x\" {\n    kind   = \"values\"\n    values = [null]\n  }\n}\n",
			[]string{`tune.hcl:9: param "x" values[0] is null`}},
		{"values holding a variable", "tuning \"a\" {\n" + job + "  param \"x\" {\n    kind   = \"values\"\n    values = [y]\n  }\n}\n",
			[]string{`tune.hcl:9: param "x" values[0]:`, "Variables not allowed"}},
		{"early_stopping unknown argument", "tuning \"a\" {\n" + job + "  early_stopping {\n    kind     = \"asha\"\n    patience = 3\n  }\n}\n",
			[]string{"tune.hcl:9,", "Unsupported argument", `"patience"`}},
		{"early_stopping without kind", "tuning \"a\" {\n" + job + "  early_stopping {\n    metric = \"loss\"\n  }\n}\n",
			[]string{"tune.hcl:7,", `"kind"`}},
		{"syntax", "tuning \"a\" {\n" + job + "  max_trials = = 1\n}\n",
			[]string{"tune.hcl:7,"}},
		{"a job file", "job \"a\" {\n  trainer {\n    kind = \"builtin\"\n  }\n}\n",
			[]string{"tune.hcl:1,", "Unsupported block type", `"job"`}},
		{"no tuning", "# nothing\n", []string{"tune.hcl: no tuning block"}},
		{"two tunings", "tuning \"a\" {\n" + job + "}\n\ntuning \"b\" {\n" + job + "}\n",
			[]string{"tune.hcl:9: a second tuning block"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := ParseTuningHCL([]byte(tc.hcl), "tune.hcl")
			if err == nil {
				t.Fatalf("ParseTuningHCL = %+v, want an error", spec)
			}
			for _, m := range tc.msgs {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q lacks %q", err, m)
				}
			}
		})
	}
}

// Whatever the bytes, ParseTuningHCL answers a spec or an error.
func FuzzParseTuningHCL(f *testing.F) {
	f.Add([]byte(exampleTuningHCL))
	f.Add([]byte("tuning \"a\" {\n  job {\n    register_as = \"m\"\n  }\n  param \"x\" {\n    kind = \"values\"\n    values = [1, \"a\", null]\n  }\n}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		spec, err := ParseTuningHCL(src, "fuzz.hcl")
		if (spec == nil) == (err == nil) {
			t.Fatalf("ParseTuningHCL = %v, %v: want a spec or an error", spec, err)
		}
	})
}
