package runsearch

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// testRuns are four runs, in the order the filter tables list their IDs:
// a1 has everything, b2 is running with a NaN metric and its own run-name
// tag, c3 has non-numeric params and no metrics, a0 has no params, tags or
// metrics at all.
func testRuns() []*structs.Run {
	return []*structs.Run{
		{
			ID: "a1", Name: "alpha (1)", UserID: "ann", Status: structs.RunFinished,
			StartTime: 1000, EndTime: 2000,
			Params: map[string]string{"lr": "0.1", "max_depth": "6", "optimizer": "Adam", "path": "a.c"},
			Tags:   map[string]string{"team": "vision", "note": "it's", "my key": "spaced"},
			Metrics: map[string]structs.MetricPoint{
				"auc": {Key: "auc", Value: 0.9}, "val-loss": {Key: "val-loss", Value: 0.2},
				"train/loss": {Key: "train/loss", Value: 0.5},
			},
		},
		{
			ID: "b2", Name: "beta_1", UserID: "bob", Status: structs.RunRunning,
			StartTime: 3000,
			Params:    map[string]string{"lr": "0.01", "max_depth": "10", "optimizer": "adam", "path": "abc"},
			Tags:      map[string]string{"team": "nlp", runNameTag: "beta-tag"},
			Metrics: map[string]structs.MetricPoint{
				"auc": {Key: "auc", Value: 0.7}, "loss": {Key: "loss", Value: math.NaN()},
			},
		},
		{
			ID: "c3", Name: "gamma 100%", UserID: "ann", Status: structs.RunFailed,
			StartTime: 2000, EndTime: 2500,
			Params: map[string]string{"lr": "high", "max_depth": "deep", "optimizer": "sgd", "path": "a_c"},
			Tags:   map[string]string{"team": "Vision"},
		},
		{ID: "a0", Name: "100 runs", Status: structs.RunKilled, StartTime: 3000},
	}
}

func matchingIDs(f RunFilter, runs []*structs.Run) []string {
	ids := []string{}
	for _, r := range runs {
		if f.Match(r) {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

func TestRunFilter_Match(t *testing.T) {
	all := []string{"a1", "b2", "c3", "a0"}
	cases := []struct {
		filter string
		want   []string
	}{
		// Empty filters match everything.
		{"", all},
		{"  \t\n", all},

		// Metrics, every comparator; NaN and missing metrics.
		{"metrics.auc > 0.8", []string{"a1"}},
		{"metrics.auc >= 0.7", []string{"a1", "b2"}},
		{"metrics.auc < 0.8", []string{"b2"}},
		{"metrics.auc <= 0.9", []string{"a1", "b2"}},
		{"metrics.auc = 0.7", []string{"b2"}},
		{"metrics.auc != 0.7", []string{"a1"}},
		{"metric.auc > .5", []string{"a1", "b2"}},
		{"metrics.auc > -1e3", []string{"a1", "b2"}},
		{"metrics.auc > 9e-1", []string{}},
		{"metrics.auc>0.8", []string{"a1"}},
		{"metrics.loss != 1", []string{"b2"}},
		{"metrics.loss < 100", []string{}},
		{"metrics.loss = 1", []string{}},
		{"metrics.missing != 1", []string{}},

		// Quoted keys.
		{"metrics.`val-loss` < 0.3", []string{"a1"}},
		{`metrics."train/loss" = 0.5`, []string{"a1"}},
		{"`metrics`.auc > 0.8", []string{"a1"}},
		{"tags.`my key` = 'spaced'", []string{"a1"}},
		{`tags."my key" = 'spaced'`, []string{"a1"}},

		// Params and tags: = != LIKE ILIKE; a missing key never matches.
		{"params.optimizer = 'Adam'", []string{"a1"}},
		{`params.optimizer = "Adam"`, []string{"a1"}},
		{"param.optimizer != 'Adam'", []string{"b2", "c3"}},
		{"parameter.optimizer LIKE 'A%'", []string{"a1"}},
		{"parameters.optimizer like 'a%'", []string{"b2"}},
		{"params.optimizer ILIKE 'a%'", []string{"a1", "b2"}},
		{"params.optimizer ilike 'ADAM'", []string{"a1", "b2"}},
		{"tags.team = 'vision'", []string{"a1"}},
		{"tag.team ILIKE 'VISION'", []string{"a1", "c3"}},
		{"tags.team != 'nlp'", []string{"a1", "c3"}},
		{"tags.missing != 'x'", []string{}},

		// LIKE: wildcards, escapes, regular expression metacharacters.
		{"params.path LIKE 'a_c'", []string{"a1", "b2", "c3"}},
		{"params.path LIKE 'a.c'", []string{"a1"}},
		{`params.path LIKE 'a\_c'`, []string{"c3"}},
		{"params.path LIKE 'a%'", []string{"a1", "b2", "c3"}},
		{"params.path LIKE '%c'", []string{"a1", "b2", "c3"}},
		{"params.path LIKE 'b%'", []string{}},
		{"params.path LIKE 'ab'", []string{}},
		{"run_name LIKE '%(1)'", []string{"a1"}},
		{"run_name LIKE 'alpha*'", []string{}},
		{`run_name LIKE '%100\%'`, []string{"c3"}},
		{"run_name LIKE '100%'", []string{"a0"}},
		{"run_name LIKE '%'", all},

		// String escapes.
		{"tags.note = 'it''s'", []string{"a1"}},
		{`tags.note = 'it\'s'`, []string{"a1"}},
		{`tags.note = "it's"`, []string{"a1"}},

		// mlflow.runName: the tag when set, the run's name otherwise.
		{`tags."mlflow.runName" = 'alpha (1)'`, []string{"a1"}},
		{"tags.mlflow.runName = 'beta-tag'", []string{"b2"}},
		{"tags.`mlflow.runName` = 'beta_1'", []string{}},

		// Kiln's numeric comparison of params and tags: "10" > 4 holds,
		// and values that are not numbers match nothing.
		{"params.max_depth > 4", []string{"a1", "b2"}},
		{"params.max_depth < 8", []string{"a1"}},
		{"params.max_depth >= '10'", []string{"b2"}},
		{"params.lr <= 0.05", []string{"b2"}},
		{"params.lr > -1", []string{"a1", "b2"}},

		// Attributes, with every prefix and none.
		{"attributes.status = 'FINISHED'", []string{"a1"}},
		{"attribute.status = 'FINISHED'", []string{"a1"}},
		{"attr.status != 'FINISHED'", []string{"b2", "c3", "a0"}},
		{"run.status = 'KILLED'", []string{"a0"}},
		{"status ILIKE 'run%'", []string{"b2"}},
		{"attributes.user_id = 'ann'", []string{"a1", "c3"}},
		{"user_id = ''", []string{"a0"}},
		{"attributes.run_name = 'beta_1'", []string{"b2"}},
		{`attributes."run name" = 'beta_1'`, []string{"b2"}},
		{"`Run Name` = 'beta_1'", []string{"b2"}},
		{"run_id = 'b2'", []string{"b2"}},
		{"attributes.run_id IN ('a1', 'c3')", []string{"a1", "c3"}},
		{`run_id in ("b2")`, []string{"b2"}},
		{"run_id NOT IN ('a1')", []string{"b2", "c3", "a0"}},
		{"run_id not in ('a1','b2','c3','a0')", []string{}},
		{"run_id LIKE 'a%'", []string{"a1", "a0"}},
		{"start_time > 1500", []string{"b2", "c3", "a0"}},
		{"attributes.start_time = 3000", []string{"b2", "a0"}},
		{"created >= 3000", []string{"b2", "a0"}},
		{"Created < 1500", []string{"a1"}},
		{"end_time > 0", []string{"a1", "c3"}},
		{"end_time != 2000", []string{"c3"}},
		{"end_time <= 2500", []string{"a1", "c3"}},
		{"artifact_uri LIKE '%'", []string{}},

		// Conjunctions.
		{"metrics.auc > 0.5 and params.optimizer = 'adam'", []string{"b2"}},
		{"metrics.auc > 0.5 AND tags.team = 'nlp' AnD status = 'RUNNING'", []string{"b2"}},
		{"user_id = 'ann' AND params.max_depth > 1", []string{"a1"}},
		{"run_id IN ('a1','b2') AND metrics.auc < 0.8", []string{"b2"}},
	}
	for _, tc := range cases {
		t.Run(tc.filter, func(t *testing.T) {
			f, err := ParseRunFilter(tc.filter)
			if err != nil {
				t.Fatalf("ParseRunFilter(%q): %v", tc.filter, err)
			}
			if got := matchingIDs(f, testRuns()); !slices.Equal(got, tc.want) {
				t.Fatalf("ParseRunFilter(%q) matches %v, want %v", tc.filter, got, tc.want)
			}
		})
	}
}

func TestRunFilter_ArtifactURI(t *testing.T) {
	uri := func(r *structs.Run) string {
		if r.ID == "a0" {
			return ""
		}
		return "s3://bucket/0/" + r.ID + "/artifacts"
	}
	cases := []struct {
		filter string
		want   []string
	}{
		{"artifact_uri LIKE 's3://bucket/%'", []string{"a1", "b2", "c3"}},
		{"attributes.artifact_uri = 's3://bucket/0/b2/artifacts'", []string{"b2"}},
		{"artifact_uri != 'x'", []string{"a1", "b2", "c3"}},
	}
	for _, tc := range cases {
		t.Run(tc.filter, func(t *testing.T) {
			f, err := ParseRunFilter(tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			if got := matchingIDs(f, testRuns()); len(got) != 0 {
				t.Fatalf("without a resolver %q matches %v", tc.filter, got)
			}
			if got := matchingIDs(f.WithArtifactURI(uri), testRuns()); !slices.Equal(got, tc.want) {
				t.Fatalf("%q matches %v, want %v", tc.filter, got, tc.want)
			}
		})
	}
}

func TestRunFilter_ZeroAndNil(t *testing.T) {
	var f RunFilter
	if !f.Match(&structs.Run{}) {
		t.Fatal("the zero RunFilter refuses a run")
	}
	if f.Match(nil) {
		t.Fatal("a nil run matches")
	}
}

func TestParseRunFilter_Keys(t *testing.T) {
	cases := []struct {
		filter string
		entity Entity
		key    string
		op     op
	}{
		{"metrics.auc > 1", EntityMetric, "auc", opGt},
		{"metrics.`a b.c` = 1", EntityMetric, "a b.c", opEq},
		{`params."x""y" = 'v'`, EntityParam, `x"y`, opEq},
		{"params.`x``y` = 'v'", EntityParam, "x`y", opEq},
		{"tags.v1.0rc LIKE 'v'", EntityTag, "v1.0rc", opLike},
		{"tags.mlflow.source.name ILIKE 'v'", EntityTag, "mlflow.source.name", opILike},
		{"tags.ключ = 'v'", EntityTag, "ключ", opEq},
		{"created <= 1", EntityAttribute, AttrStartTime, opLe},
		{`"Run name" = 'x'`, EntityAttribute, AttrRunName, opEq},
		{"run_id NOT   IN ('a')", EntityAttribute, AttrRunID, opNotIn},
		{"end_time >= 1", EntityAttribute, AttrEndTime, opGe},
		{"start_time < 1", EntityAttribute, AttrStartTime, opLt},
		{"user_id != 'x'", EntityAttribute, AttrUserID, opNe},
		{"run_id In ('a')", EntityAttribute, AttrRunID, opIn},
	}
	for _, tc := range cases {
		t.Run(tc.filter, func(t *testing.T) {
			f, err := ParseRunFilter(tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			if len(f.clauses) != 1 {
				t.Fatalf("%d clauses, want 1", len(f.clauses))
			}
			c := f.clauses[0]
			if c.entity != tc.entity || c.key != tc.key || c.op != tc.op {
				t.Fatalf("got %s %q %s, want %s %q %s", c.entity, c.key, c.op, tc.entity, tc.key, tc.op)
			}
		})
	}
}

// checkInvalid fails unless err is a client error whose message holds want.
func checkInvalid(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one naming %s", want)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v does not wrap ErrInvalid", err)
	}
	if code := structs.ErrorCode(err); code != structs.CodeInvalid {
		t.Fatalf("error %v has code %q, want %q", err, code, structs.CodeInvalid)
	}
	if !strings.HasPrefix(err.Error(), "runsearch: ") {
		t.Fatalf("error %q lacks the package prefix", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name %s", err, want)
	}
}

func TestParseRunFilter_Errors(t *testing.T) {
	cases := []struct {
		filter string
		want   string // what the message must name
	}{
		{"metrics.auc > 0.5 OR params.x = 'y'", "invalid clause(s) in filter string: 'OR'"},
		{"metrics.auc > 0.5 AND", "'AND'"},
		{"metrics.auc > 0.5 AND AND metrics.auc > 1", "'AND'"},
		{"AND metrics.auc > 1", "'AND'"},
		{"NOT metrics.auc > 1", "'NOT'"},
		{"(metrics.auc > 1)", "'('"},
		{"metrics.auc > 1; DROP TABLE runs", "';'"},
		{"metrics.auc > 1 2", "'2'"},
		{"metrics.auc > 1 params.x = 'y'", "'params.x'"},
		{"'x' = params.a", "''x''"},
		{"foo.bar = 'x'", "invalid entity type 'foo'"},
		{"Metrics.auc > 1", "'Metrics'"},
		{`"metrics".auc > 1`, "invalid entity type 'metrics'"},
		{"datasets.name = 'x'", "dataset filters are not supported"},
		{"dataset.digest = 'x'", "'dataset.digest'"},
		{"attributes.color = 'x'", "invalid attribute key 'color'"},
		{"colour = 'x'", "'colour'"},
		{"attributes.experiment_id = '0'", "'experiment_id'"},
		{"metrics.`a`.b > 1", "quote the whole key"},
		{"metrics.`` > 1", "empty key"},
		{"metrics.auc = 'high'", "'high'"},
		{"metrics.auc = \"0.5\"", `'"0.5"'`},
		{"metrics.auc > abc", "'abc'"},
		{"metrics.auc LIKE '0.%'", "'LIKE'"},
		{"metrics.auc IN (1)", "'IN'"},
		{"metrics.auc <> 1", "'<>'"},
		{"metrics.auc == 1", "'=='"},
		{"metrics.auc => 1", "'>'"},
		{"metrics.auc 1", "found '1'"},
		{"metrics.auc", "end of input"},
		{"metrics.auc >", "end of input"},
		{"metrics.val-loss > 1", "'-'"},
		{"metrics.val-loss > 1", "backquotes"},
		{"metrics.auc > 4abc", "'4abc'"},
		{"metrics.auc > 1.2.3", "'1.2.3'"},
		{"params.x ! 'a'", "'!'"},
		{"params.x NOT LIKE 'a'", "'NOT'"},
		{"params.lr > 'high'", "'high'"},
		{"params.lr >= abc", "'abc'"},
		{"params.lr = 0.1", "'0.1'"},
		{"params.lr = abc", "'abc'"},
		{"params.lr = `abc`", "'`abc`'"},
		{"params.lr IN ('a')", "'IN'"},
		{"tags.t NOT IN ('a')", "'NOT IN'"},
		{"status IN ('RUNNING')", "only the run_id attribute takes a list"},
		{"run_name > 'a'", "'>'"},
		{"run_id IN ()", "'()'"},
		{"run_id IN ('a', 1)", "'1'"},
		{"run_id IN 'a'", "''a''"},
		{"run_id IN ('a' 'b')", "''b''"},
		{"run_id IN ('a',)", "')'"},
		{"run_id IN ('a'", "end of input"},
		{"run_id NOT ('a')", "'NOT'"},
		{"run_id = 'a", "unterminated string ''a'"},
		{"metrics.`auc = 1", "unterminated quoted key"},
		{`tags."a = 'b'`, "unterminated quoted key"},
		{"start_time > 'yesterday'", "'yesterday'"},
		{"start_time LIKE '1%'", "'LIKE'"},
		{"end_time IN ('1')", "'IN'"},
		{"run_id = 'a' OR run_id = 'b'", "only AND joins clauses"},
	}
	for _, tc := range cases {
		t.Run(tc.filter, func(t *testing.T) {
			_, err := ParseRunFilter(tc.filter)
			checkInvalid(t, err, tc.want)
		})
	}
}

func TestParseRunFilter_LongTokenIsCut(t *testing.T) {
	long := strings.Repeat("é", 200)
	_, err := ParseRunFilter("metrics.auc > 1 " + long)
	checkInvalid(t, err, "…")
	if len(err.Error()) > 200 {
		t.Fatalf("error of %d bytes for a long token: %q", len(err.Error()), err)
	}
	if !strings.Contains(err.Error(), strings.Repeat("é", 32)+"…") {
		t.Fatalf("error %q cut a character in two", err)
	}
}
