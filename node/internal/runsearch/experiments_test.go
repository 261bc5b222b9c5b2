package runsearch

import (
	"slices"
	"testing"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

func ms(n int64) time.Time { return time.UnixMilli(n) }

// testExperiments are listed in the order the filter tables list their IDs.
// 1 and 2 were created in the same millisecond; 10 was never updated.
func testExperiments() []*structs.Experiment {
	return []*structs.Experiment{
		{ID: "0", Name: "Default", CreatedAt: ms(1000), UpdatedAt: ms(5000)},
		{ID: "1", Name: "fraud-detection", CreatedAt: ms(3000), UpdatedAt: ms(4000),
			Tags: map[string]string{"team": "risk", "priority": "2"}},
		{ID: "2", Name: "Fraud_v2", CreatedAt: ms(3000), UpdatedAt: ms(6000),
			Tags: map[string]string{"team": "Risk"}},
		{ID: "10", Name: "churn", CreatedAt: ms(2000),
			Tags: map[string]string{"team": "growth", "priority": "10"}},
	}
}

func experimentIDs(exps []*structs.Experiment) []string {
	ids := make([]string, len(exps))
	for i, e := range exps {
		ids[i] = e.ID
	}
	return ids
}

func TestExperimentFilter_Match(t *testing.T) {
	cases := []struct {
		filter string
		want   []string
	}{
		{"", []string{"0", "1", "2", "10"}},
		{"name = 'churn'", []string{"10"}},
		{"attribute.name = 'churn'", []string{"10"}},
		{"name != 'Default'", []string{"1", "2", "10"}},
		{"attribute.name LIKE 'fraud%'", []string{"1"}},
		{"name ILIKE 'fraud%'", []string{"1", "2"}},
		{`name LIKE 'Fraud\_%'`, []string{"2"}},
		{"name like 'fraud_detection'", []string{"1"}},
		{"name LIKE 'fraud.detection'", []string{}},
		{"creation_time > 1500", []string{"1", "2", "10"}},
		{"creation_time = 3000", []string{"1", "2"}},
		{"creation_time != 3000", []string{"0", "10"}},
		{"attribute.creation_time <= 2000", []string{"0", "10"}},
		{"last_update_time >= 5000", []string{"0", "2"}},
		{"last_update_time < 5000", []string{"1"}},
		{"tags.team = 'risk'", []string{"1"}},
		{"tag.team ILIKE 'RISK'", []string{"1", "2"}},
		{"tags.team != 'risk'", []string{"2", "10"}},
		{"tags.team LIKE '%o%'", []string{"10"}},
		{"tags.priority > 5", []string{"10"}},
		{"tags.priority <= '2'", []string{"1"}},
		{"name = 'churn' AND tags.team = 'growth'", []string{"10"}},
		{"name ILIKE '%fraud%' and creation_time = 3000 and tags.team = 'Risk'", []string{"2"}},
	}
	for _, tc := range cases {
		t.Run(tc.filter, func(t *testing.T) {
			f, err := ParseExperimentFilter(tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			got := []string{}
			for _, e := range testExperiments() {
				if f.Match(e) {
					got = append(got, e.ID)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("%q matches %v, want %v", tc.filter, got, tc.want)
			}
		})
	}
	if (ExperimentFilter{}).Match(nil) {
		t.Fatal("a nil experiment matches")
	}
}

func TestParseExperimentFilter_Errors(t *testing.T) {
	cases := []struct {
		filter string
		want   string
	}{
		{"attributes.name = 'x'", "invalid entity type 'attributes'"},
		{"attr.name = 'x'", "invalid entity type 'attr'"},
		{"metrics.auc > 1", "invalid entity type 'metrics'"},
		{"params.a = 'x'", "'params'"},
		{"experiment_id = '1'", "invalid attribute key 'experiment_id'"},
		{"lifecycle_stage = 'active'", "'lifecycle_stage'"},
		{"name IN ('a')", "'IN'"},
		{"name > 'a'", "'>'"},
		{"name = churn", "'churn'"},
		{"creation_time = 'x'", "''x''"},
		{"creation_time LIKE '1%'", "'LIKE'"},
		{"tags.t IN ('a')", "'IN'"},
		{"name = 'a' OR name = 'b'", "'OR'"},
		{"name = 'a' AND", "'AND'"},
	}
	for _, tc := range cases {
		t.Run(tc.filter, func(t *testing.T) {
			_, err := ParseExperimentFilter(tc.filter)
			checkInvalid(t, err, tc.want)
		})
	}
}

func TestSortExperiments(t *testing.T) {
	cases := []struct {
		order []string
		want  []string
	}{
		// MLflow's default: creation_time DESC, experiment_id ASC.
		{nil, []string{"1", "2", "10", "0"}},
		// Byte order: capitals first.
		{[]string{"name"}, []string{"0", "2", "10", "1"}},
		{[]string{"attribute.name DESC"}, []string{"1", "10", "2", "0"}},
		// A zero time sorts last in both directions.
		{[]string{"last_update_time DESC"}, []string{"2", "0", "1", "10"}},
		{[]string{"last_update_time ASC"}, []string{"1", "0", "2", "10"}},
		// An order without experiment_id ends with experiment_id DESC.
		{[]string{"creation_time"}, []string{"0", "10", "2", "1"}},
		{[]string{"creation_time DESC"}, []string{"2", "1", "10", "0"}},
		{[]string{"creation_time DESC", "experiment_id"}, []string{"1", "2", "10", "0"}},
		// IDs compare as numbers: 10 after 2.
		{[]string{"experiment_id"}, []string{"0", "1", "2", "10"}},
		{[]string{"experiment_id desc"}, []string{"10", "2", "1", "0"}},
	}
	for _, tc := range cases {
		t.Run(fmtClauses(tc.order), func(t *testing.T) {
			order, err := ParseExperimentOrderBy(tc.order)
			if err != nil {
				t.Fatal(err)
			}
			for _, exps := range [][]*structs.Experiment{testExperiments(), reversed(testExperiments())} {
				SortExperiments(exps, order)
				if got := experimentIDs(exps); !slices.Equal(got, tc.want) {
					t.Fatalf("order %v gives %v, want %v", tc.order, got, tc.want)
				}
			}
		})
	}
}

func TestSortExperiments_DoesNotWriteOrder(t *testing.T) {
	order := make([]OrderBy, 1, 2)
	order[0] = OrderBy{Entity: EntityAttribute, Key: AttrName, Ascending: true}
	SortExperiments(testExperiments(), order)
	if got := order[:2][1]; got != (OrderBy{}) {
		t.Fatalf("SortExperiments wrote %v into the caller's order", got)
	}
}

func TestParseExperimentOrderBy(t *testing.T) {
	got, err := ParseExperimentOrderBy([]string{"name", "attribute.last_update_time+DESC", "name DESC"})
	if err != nil {
		t.Fatal(err)
	}
	want := []OrderBy{
		{EntityAttribute, AttrName, true},
		{EntityAttribute, AttrLastUpdateTime, false},
		{EntityAttribute, AttrName, false}, // MLflow allows a repeat here
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, tc := range []struct{ clause, want string }{
		{"tags.team", "invalid order_by entity 'tag'"},
		{"metrics.auc", "invalid entity type 'metrics'"},
		{"color", "invalid attribute key 'color'"},
		{"name sideways", "'sideways'"},
		{"", "''"},
	} {
		t.Run(tc.clause, func(t *testing.T) {
			_, err := ParseExperimentOrderBy([]string{tc.clause})
			checkInvalid(t, err, tc.want)
		})
	}
}
