package node

import (
	"net/http"
	"strings"
	"testing"
)

const pipelineJSON = `{"max_parallel": 2, "params": {"min_auc": 0.85},
	"steps": [
		{"name": "ingest", "type": "ingest", "source": "txns"},
		{"name": "train", "type": "train", "depends_on": ["ingest"], "retries": 2, "timeout": "1h", "cache": true,
		 "job": {"name": "churn", "trainer": {"kind": "builtin", "algorithm": "gbdt"}, "dataset": "${steps.ingest.dataset}", "target": "y"}},
		{"name": "eval", "type": "evaluate", "depends_on": ["train"],
		 "evaluate": {"model": "churn", "version": "${steps.train.model_version}", "dataset": "holdout:1", "target": "y",
		              "gate": "metrics.auc >= 0.85 && metrics.auc >= champion.auc - 0.01"}}]}`

func TestAgent_PipelineAPI(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	r := call(t, a, "PUT", "/v1/pipelines/churn", pipelineJSON)
	if r.status != http.StatusOK || r.body["spec"].(map[string]any)["catch_up"] != "latest" {
		t.Fatalf("put = %d %s", r.status, r.raw)
	}
	if g := call(t, a, "GET", "/v1/pipelines/churn", ""); g.status != http.StatusOK || len(g.body["spec"].(map[string]any)["steps"].([]any)) != 3 {
		t.Fatalf("get = %d %s", g.status, g.raw)
	}
	if l := call(t, a, "GET", "/v1/pipelines", ""); len(l.body["items"].([]any)) != 1 {
		t.Fatalf("list = %s", l.raw)
	}
	bad := func(from, to string) string { return strings.Replace(pipelineJSON, from, to, 1) }
	for _, tt := range []struct{ name, body, text string }{
		{"cycle", bad(`"source": "txns"}`, `"source": "txns", "depends_on": ["eval"]}`), "cycle: ingest -> eval -> train -> ingest"},
		{"unknown dependency", bad(`"depends_on": ["train"]`, `"depends_on": ["train", "fit"]`), `steps.eval.depends_on[1]: no step is named "fit"`},
		{"unknown output", bad("${steps.train.model_version}", "${steps.train.version}"), `a train step has no output "version"`},
		{"unknown type", bad(`"type": "ingest"`, `"type": "load"`), `steps.ingest.type "load"`},
		{"gate that does not compile", bad("metrics.auc >= 0.85 &&", "metrics.auc >>"), "steps.eval.evaluate.gate"},
		{"gate that is not a condition", bad("metrics.auc >= 0.85 && metrics.auc >= champion.auc - 0.01", "metrics.auc + 1"), "steps.eval.evaluate.gate"},
		{"name that differs", bad(`{"max_parallel"`, `{"name": "other", "max_parallel"`), `differs from the path's "churn"`},
		{"bad cron", bad(`{"max_parallel"`, `{"schedule": "61 * * * *", "max_parallel"`), `schedule "61 * * * *"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, a, "PUT", "/v1/pipelines/churn", tt.body)
			if msg, _ := r.body["error"].(string); r.status != http.StatusBadRequest || !strings.Contains(msg, tt.text) {
				t.Fatalf("put = %d %s; want 400 naming %q", r.status, r.raw, tt.text)
			}
		})
	}
	if d := call(t, a, "DELETE", "/v1/pipelines/churn", ""); d.status != http.StatusNoContent {
		t.Fatalf("delete = %d %s", d.status, d.raw)
	}
}
