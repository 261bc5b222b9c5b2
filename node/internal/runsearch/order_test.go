package runsearch

import (
	"math"
	"slices"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

func TestParseOrderBy(t *testing.T) {
	cases := []struct {
		clauses []string
		want    []OrderBy
	}{
		{nil, nil},
		{[]string{"metrics.auc DESC"}, []OrderBy{{EntityMetric, "auc", false}}},
		{[]string{"metrics.auc desc"}, []OrderBy{{EntityMetric, "auc", false}}},
		{[]string{"metrics.auc+desc"}, []OrderBy{{EntityMetric, "auc", false}}},
		{[]string{"metric.`val-loss` asc"}, []OrderBy{{EntityMetric, "val-loss", true}}},
		{[]string{"params.lr"}, []OrderBy{{EntityParam, "lr", true}}},
		{[]string{"param.lr Asc"}, []OrderBy{{EntityParam, "lr", true}}},
		{[]string{"attributes.start_time ASC"}, []OrderBy{{EntityAttribute, AttrStartTime, true}}},
		{[]string{"start_time"}, []OrderBy{{EntityAttribute, AttrStartTime, true}}},
		{[]string{"created desc"}, []OrderBy{{EntityAttribute, AttrStartTime, false}}},
		{[]string{"run.run_name"}, []OrderBy{{EntityAttribute, AttrRunName, true}}},
		{[]string{"tags.`my key` Desc"}, []OrderBy{{EntityTag, "my key", false}}},
		{[]string{`tags."mlflow.runName"`}, []OrderBy{{EntityTag, runNameTag, true}}},
		{[]string{"tags.mlflow.runName DESC"}, []OrderBy{{EntityTag, runNameTag, false}}},
		{[]string{"  metrics.auc   DESC  "}, []OrderBy{{EntityMetric, "auc", false}}},
		{
			[]string{"metrics.auc DESC", "params.lr", "artifact_uri"},
			[]OrderBy{{EntityMetric, "auc", false}, {EntityParam, "lr", true}, {EntityAttribute, AttrArtifactURI, true}},
		},
		// The same key under two entities is two fields.
		{
			[]string{"metrics.x", "params.x"},
			[]OrderBy{{EntityMetric, "x", true}, {EntityParam, "x", true}},
		},
	}
	for _, tc := range cases {
		t.Run(fmtClauses(tc.clauses), func(t *testing.T) {
			got, err := ParseOrderBy(tc.clauses)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func fmtClauses(c []string) string {
	if len(c) == 0 {
		return "none"
	}
	s := c[0]
	for _, x := range c[1:] {
		s += "," + x
	}
	return s
}

func TestParseOrderBy_Errors(t *testing.T) {
	cases := []struct {
		clauses []string
		want    string
	}{
		{[]string{""}, "''"},
		{[]string{"   "}, "end of input"},
		{[]string{"metrics.auc DOWN"}, "'DOWN'"},
		{[]string{"metrics.auc DESC extra"}, "'extra'"},
		{[]string{"metrics.auc, params.lr"}, "','"},
		{[]string{"color"}, "invalid attribute key 'color'"},
		{[]string{`"run name"`}, "'run name'"},
		{[]string{"foo.bar"}, "invalid entity type 'foo'"},
		{[]string{"datasets.name"}, "dataset filters are not supported"},
		{[]string{"'metrics.auc'"}, "''metrics.auc''"},
		{[]string{"metrics.auc = 1"}, "'='"},
		{[]string{"metrics.a-b"}, "'-'"},
		{[]string{"metrics.`auc"}, "unterminated"},
		{[]string{"metrics.auc", "metrics.auc DESC"}, "duplicate fields: 'metrics.auc DESC'"},
		{[]string{"start_time", "created DESC"}, "duplicate fields: 'created DESC'"},
		{[]string{"params.lr", "params.`lr`"}, "duplicate"},
	}
	for _, tc := range cases {
		t.Run(fmtClauses(tc.clauses), func(t *testing.T) {
			_, err := ParseOrderBy(tc.clauses)
			checkInvalid(t, err, tc.want)
		})
	}
}

// sortRuns are five runs for ordering: s2's auc is NaN, s3 has none, s1
// and s5 tie on auc, s4 and s5 tie on start_time.
func sortRuns() []*structs.Run {
	m := func(v float64) map[string]structs.MetricPoint {
		return map[string]structs.MetricPoint{"auc": {Key: "auc", Value: v}}
	}
	return []*structs.Run{
		{ID: "s1", Name: "b", Status: structs.RunFinished, StartTime: 100, EndTime: 150, Metrics: m(0.5),
			Params: map[string]string{"lr": "0.1", "n": "9"}, Tags: map[string]string{"team": "x"}},
		{ID: "s2", Name: "a", Status: structs.RunFailed, StartTime: 200, EndTime: 900, Metrics: m(math.NaN()),
			Params: map[string]string{"lr": "0.01", "n": "10"}},
		{ID: "s3", Name: "c", Status: structs.RunRunning, StartTime: 300,
			Params: map[string]string{"lr": "1e-3"}, Tags: map[string]string{"team": "y"}},
		{ID: "s4", Name: "B", Status: structs.RunFinished, StartTime: 400, EndTime: 500, Metrics: m(0.9),
			Tags: map[string]string{runNameTag: "zz"}},
		{ID: "s5", Name: "a", Status: structs.RunKilled, StartTime: 400, EndTime: 450, Metrics: m(0.5),
			Params: map[string]string{"lr": "0.1"}},
	}
}

func runIDs(runs []*structs.Run) []string {
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	return ids
}

func TestSortRuns(t *testing.T) {
	cases := []struct {
		order []string
		want  []string
	}{
		// MLflow's natural order: start_time DESC, then run_id ASC.
		{nil, []string{"s4", "s5", "s3", "s2", "s1"}},
		// Present values, then NaN, then missing, in both directions;
		// ties fall back to the natural order.
		{[]string{"metrics.auc"}, []string{"s5", "s1", "s4", "s2", "s3"}},
		{[]string{"metrics.auc ASC"}, []string{"s5", "s1", "s4", "s2", "s3"}},
		{[]string{"metrics.auc DESC"}, []string{"s4", "s5", "s1", "s2", "s3"}},
		{[]string{"metrics.nothing DESC"}, []string{"s4", "s5", "s3", "s2", "s1"}},
		// Params compare as strings ("10" < "9"), missing last.
		{[]string{"params.lr"}, []string{"s2", "s5", "s1", "s3", "s4"}},
		{[]string{"params.lr DESC"}, []string{"s3", "s5", "s1", "s2", "s4"}},
		{[]string{"params.n"}, []string{"s2", "s1", "s4", "s5", "s3"}},
		{[]string{"params.n DESC"}, []string{"s1", "s2", "s4", "s5", "s3"}},
		// Tags, with mlflow.runName falling back to the name.
		{[]string{"tags.team DESC"}, []string{"s3", "s1", "s4", "s5", "s2"}},
		{[]string{"tags.mlflow.runName"}, []string{"s5", "s2", "s1", "s3", "s4"}},
		// Attributes.
		{[]string{"start_time"}, []string{"s1", "s2", "s3", "s4", "s5"}},
		{[]string{"attributes.start_time DESC"}, []string{"s4", "s5", "s3", "s2", "s1"}},
		{[]string{"end_time"}, []string{"s1", "s5", "s4", "s2", "s3"}},
		{[]string{"end_time DESC"}, []string{"s2", "s4", "s5", "s1", "s3"}},
		{[]string{"run_name"}, []string{"s4", "s5", "s2", "s1", "s3"}},
		{[]string{"status DESC"}, []string{"s3", "s5", "s4", "s1", "s2"}},
		{[]string{"run_id DESC"}, []string{"s5", "s4", "s3", "s2", "s1"}},
		// Without a resolver no run has an artifact URI: natural order.
		{[]string{"artifact_uri DESC"}, []string{"s4", "s5", "s3", "s2", "s1"}},
		// Several clauses, in turn.
		{[]string{"params.lr DESC", "metrics.auc DESC"}, []string{"s3", "s5", "s1", "s2", "s4"}},
		{[]string{"status", "metrics.auc DESC"}, []string{"s2", "s4", "s1", "s5", "s3"}},
		{[]string{"run_name", "start_time"}, []string{"s4", "s2", "s5", "s1", "s3"}},
	}
	for _, tc := range cases {
		t.Run(fmtClauses(tc.order), func(t *testing.T) {
			order, err := ParseOrderBy(tc.order)
			if err != nil {
				t.Fatal(err)
			}
			// Every starting order gives the same result.
			for _, start := range [][]*structs.Run{sortRuns(), reversed(sortRuns())} {
				SortRuns(start, order)
				if got := runIDs(start); !slices.Equal(got, tc.want) {
					t.Fatalf("order %v gives %v, want %v", tc.order, got, tc.want)
				}
			}
		})
	}
}

func reversed[T any](s []T) []T {
	slices.Reverse(s)
	return s
}

func TestSortRunsWith_ArtifactURI(t *testing.T) {
	uri := func(r *structs.Run) string {
		if r.ID == "s3" {
			return ""
		}
		return "file:///art/" + map[string]string{"s1": "c", "s2": "a", "s4": "b", "s5": "d"}[r.ID]
	}
	for _, tc := range []struct {
		order string
		want  []string
	}{
		{"artifact_uri", []string{"s2", "s4", "s1", "s5", "s3"}},
		{"artifact_uri DESC", []string{"s5", "s1", "s4", "s2", "s3"}},
	} {
		t.Run(tc.order, func(t *testing.T) {
			order, err := ParseOrderBy([]string{tc.order})
			if err != nil {
				t.Fatal(err)
			}
			runs := sortRuns()
			SortRunsWith(runs, order, uri)
			if got := runIDs(runs); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCompareIDs(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"2", "10", -1},
		{"10", "2", 1},
		{"10", "10", 0},
		{"007", "8", -1},
		{"99999999999999999999999", "100000000000000000000000", -1},
		{"9", "abc", -1},
		{"abc", "9", 1},
		{"abc", "abd", -1},
		{"", "0", 1},
	}
	for _, tc := range cases {
		if got := compareIDs(tc.a, tc.b); got != tc.want {
			t.Errorf("compareIDs(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
