package runsearch

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Filters, order_by clauses and page tokens come from HTTP requests. Each
// fuzz target feeds arbitrary text through one parser: it must never panic,
// every failure must be ErrInvalid, and every success must behave.

var filterSeeds = []string{
	"", "metrics.auc > 0.8", "metrics.`val-loss` < 0.3", `metrics."train/loss" = 0.5`,
	"params.optimizer ILIKE 'a%'", `params.path LIKE 'a\_c'`, "tags.note = 'it''s'", `tags.note = 'it\'s'`,
	"tags.mlflow.runName = 'beta-tag'", `tags."mlflow.runName" = 'x'`, "params.max_depth > 4",
	"params.max_depth >= '10'", "attributes.run_id IN ('a1', 'c3')", "run_id NOT IN ('a1')",
	"created >= 3000", "`Run Name` = 'beta_1'", "end_time != 2000", "artifact_uri LIKE '%'",
	"metrics.auc > 0.5 and params.optimizer = 'adam'", "metrics.auc > 0.5 OR x = 1", "(metrics.auc > 1)",
	"run_id IN ('a',)", "metrics.auc > 4abc", "metrics.val-loss > 1", "run_id = 'a", "metrics.`auc = 1",
	"datasets.name = 'x'", "tags.ключ = 'v'", "metrics.auc > 1e400", "metrics.auc > -.5e-3",
	"name ILIKE 'fraud%' AND tags.priority > 5", "creation_time <= 2000",
}

func fuzzCheckErr(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) || structs.ErrorCode(err) != structs.CodeInvalid {
		t.Fatalf("error %v is not a client error", err)
	}
}

func FuzzParseRunFilter(f *testing.F) {
	for _, s := range filterSeeds {
		f.Add(s)
	}
	uri := func(r *structs.Run) string { return "file:///a/" + r.ID }
	f.Fuzz(func(t *testing.T, s string) {
		filter, err := ParseRunFilter(s)
		if err != nil {
			fuzzCheckErr(t, err)
			return
		}
		runs := append(testRuns(), sortRuns()...)
		runs = append(runs, &structs.Run{})
		want := matchingIDs(filter, runs)
		matchingIDs(filter.WithArtifactURI(uri), runs)
		if strings.TrimSpace(s) == "" {
			return
		}
		// A filter joined to itself with AND parses and selects the same runs.
		twice, err := ParseRunFilter(s + " AND " + s)
		if err != nil {
			t.Fatalf("%q parses but %q does not: %v", s, s+" AND "+s, err)
		}
		if got := matchingIDs(twice, runs); !slices.Equal(got, want) {
			t.Fatalf("%q matches %v, joined to itself %v", s, want, got)
		}
	})
}

func FuzzParseExperimentFilter(f *testing.F) {
	for _, s := range filterSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		filter, err := ParseExperimentFilter(s)
		if err != nil {
			fuzzCheckErr(t, err)
			return
		}
		for _, e := range append(testExperiments(), &structs.Experiment{}) {
			filter.Match(e)
		}
	})
}

func FuzzParseOrderBy(f *testing.F) {
	for _, s := range []string{
		"metrics.auc DESC", "metrics.auc+desc", "params.lr", "start_time", "created desc",
		"tags.`my key` Desc", `tags."mlflow.runName"`, "metrics.auc DOWN", "metrics.auc, params.lr", "",
		"name", "experiment_id DESC", "attribute.last_update_time+ASC",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if order, err := ParseOrderBy([]string{s}); err != nil {
			fuzzCheckErr(t, err)
		} else {
			// The order is total: any starting order gives one result.
			a, b := sortRuns(), reversed(sortRuns())
			SortRuns(a, order)
			SortRuns(b, order)
			if !slices.Equal(runIDs(a), runIDs(b)) {
				t.Fatalf("order %q sorts to %v and %v", s, runIDs(a), runIDs(b))
			}
		}
		if order, err := ParseExperimentOrderBy([]string{s}); err != nil {
			fuzzCheckErr(t, err)
		} else {
			a, b := testExperiments(), reversed(testExperiments())
			SortExperiments(a, order)
			SortExperiments(b, order)
			if !slices.Equal(experimentIDs(a), experimentIDs(b)) {
				t.Fatalf("order %q sorts to %v and %v", s, experimentIDs(a), experimentIDs(b))
			}
		}
	})
}

func FuzzPageToken(f *testing.F) {
	for _, s := range []string{"", encodePageToken(2), b64(`{"offset": "3"}`), "!!!", b64(`{"offset": 0}`), b64("null")} {
		f.Add(s)
	}
	items := []int{0, 1, 2, 3, 4, 5, 6}
	f.Fuzz(func(t *testing.T, token string) {
		page, next, err := Page(items, token, 3)
		if err != nil {
			fuzzCheckErr(t, err)
			return
		}
		if len(page) > 3 {
			t.Fatalf("page of %d items, max 3", len(page))
		}
		if next == "" {
			return
		}
		// The next page starts where this one ends.
		rest, _, err := Page(items, next, 3)
		if err != nil {
			t.Fatalf("our own token %q: %v", next, err)
		}
		if len(page) == 0 || len(rest) == 0 || rest[0] != page[len(page)-1]+1 {
			t.Fatalf("page %v is followed by %v", page, rest)
		}
	})
}
