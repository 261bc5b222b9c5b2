package node

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// txnSourceJSON is a push source of card transactions.
const txnSourceJSON = `{"name": "txns", "kind": "push",
	"schema": {"user_id": "int", "ts": "timestamp", "amount": "float", "country": "string"},
	"expectations": [{"rule": "range", "column": "amount", "min": 0}]}`

const txnViewJSON = `{"entity": "user", "source": "txns", "timestamp_column": "ts", "ttl": "24h",
	"features": [{"name": "amount"}, {"name": "country"},
		{"name": "amount_cents", "type": "int", "expr": "int(amount * 100)"},
		{"name": "amount_sum_1h", "expr": "sum(amount)", "window": "1h"},
		{"name": "txn_count_1d", "expr": "count()", "window": "1d"}]}`

// featureSetup declares the source, the entity, the view and a service.
func featureSetup(t *testing.T, a *Agent) {
	t.Helper()
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/sources", txnSourceJSON},
		{"PUT", "/v1/entities/user", `{"join_keys": ["user_id"]}`},
		{"PUT", "/v1/feature-views/txn_stats", txnViewJSON},
		{"PUT", "/v1/feature-services/fraud", `{"features": ["txn_stats:amount", "txn_stats:amount_sum_1h", "txn_stats:txn_count_1d"]}`},
	} {
		if res := call(t, a, c.method, c.path, c.body); res.status != http.StatusOK {
			t.Fatalf("%s %s = %d %s", c.method, c.path, res.status, res.raw)
		}
	}
}

func TestAgent_FeaturesPushOnlineHistorical(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	featureSetup(t, a)
	push := strings.Join([]string{
		`{"user_id": 1, "ts": "2026-01-01T10:00:00Z", "amount": 10.5, "country": "fr"}`,
		`{"user_id": 1, "ts": "2026-01-01T10:30:00Z", "amount": 2.25, "country": "de"}`,
		`{"user_id": 1, "ts": "2026-01-01T09:45:00Z", "amount": 100, "country": "us"}`, // arrives late
		`{"user_id": 2, "ts": "2026-01-01T10:00:00Z", "amount": 7, "country": "fr"}`,
		`not json`,
		`{"user_id": "x", "ts": "2026-01-01T10:00:00Z", "amount": 1}`,
		`{"user_id": 3, "ts": "2026-01-01T10:00:00Z", "amount": -5}`,
		`{"ts": "2026-01-01T10:00:00Z", "amount": 1}`,
		``,
	}, "\n")
	res := call(t, a, "POST", "/v1/sources/txns/records", push)
	if res.status != http.StatusOK || res.body["read"] != 8.0 || res.body["accepted"] != 4.0 || res.body["quarantined"] != 4.0 {
		t.Fatalf("push = %d %s; want 8 read, 4 accepted, 4 quarantined", res.status, res.raw)
	}
	for _, want := range []string{`"line 5"`, `"rule":"decode"`, `"line 6"`, `"rule":"schema"`, `"line 7"`, `"rule":"range"`, `"line 8"`, `"rule":"feature_view"`,
		`"raw":"{\"user_id\": 3, \"ts\": \"2026-01-01T10:00:00Z\", \"amount\": -5}"`} {
		if !strings.Contains(res.raw, want) {
			t.Errorf("push answer lacks %s: %s", want, res.raw)
		}
	}
	src := call(t, a, "GET", "/v1/sources/txns", "")
	if src.body["read"] != 8.0 || src.body["accepted"] != 4.0 || src.body["quarantined"] != 4.0 {
		t.Fatalf("source = %s; want the push's counts", src.raw)
	}
	// What the node took becomes a dataset version, its bad records the
	// version's quarantine.
	a.pushes.seal(context.Background(), 0)
	dv := call(t, a, "GET", "/v1/datasets/txns/versions/1", "")
	q, _ := dv.body["quarantine"].(map[string]any)
	if dv.status != http.StatusOK || dv.body["rows"] != 4.0 || dv.body["source"] != "txns" || q == nil || q["rows"] != 4.0 {
		t.Fatalf("push dataset = %d %s; want 4 rows and 4 quarantined", dv.status, dv.raw)
	}

	// Point in time: as of each row's time, never a later value.
	hist := call(t, a, "POST", "/v1/features/historical", `{"feature_service": "fraud", "entity_rows": [
		{"user_id": 1, "ts": "2026-01-01T10:15:00Z"},
		{"user_id": 1, "ts": "2026-01-01T10:30:00Z"},
		{"user_id": 1, "ts": "2026-01-01T09:00:00Z"},
		{"user_id": 1, "ts": "2026-01-03T10:15:00Z"},
		{"user_id": 9, "ts": "2026-01-01T10:15:00Z"}]}`)
	if hist.status != http.StatusOK {
		t.Fatalf("historical = %d %s", hist.status, hist.raw)
	}
	rows := hist.body["rows"].([]any)
	want := []map[string]any{
		{"txn_stats:amount": 10.5, "txn_stats:amount_sum_1h": 110.5, "txn_stats:txn_count_1d": 2.0},
		{"txn_stats:amount": 2.25, "txn_stats:amount_sum_1h": 112.75, "txn_stats:txn_count_1d": 3.0},
		{"txn_stats:amount": nil, "txn_stats:amount_sum_1h": 0.0, "txn_stats:txn_count_1d": 0.0},
		{"txn_stats:amount": nil, "txn_stats:amount_sum_1h": 0.0, "txn_stats:txn_count_1d": 0.0}, // past the 24h TTL
		{"txn_stats:amount": nil, "txn_stats:amount_sum_1h": 0.0, "txn_stats:txn_count_1d": 0.0},
	}
	for i, w := range want {
		got := rows[i].(map[string]any)["values"].(map[string]any)
		for k, v := range w {
			if got[k] != v {
				t.Errorf("row %d: %s = %v, want %v (%v)", i, k, got[k], v, got)
			}
		}
	}

	// Online: the latest values, as of now: the 2026-01-01 values are
	// past the TTL, so fresh ones are pushed.
	res = call(t, a, "POST", "/v1/sources/txns/records", `{"user_id": 2, "ts": "`+nowRFC3339()+`", "amount": 3.5, "country": "it"}`)
	if res.status != http.StatusOK {
		t.Fatalf("push = %d %s", res.status, res.raw)
	}
	online := call(t, a, "POST", "/v1/features/online", `{"features": ["txn_stats:*"], "entities": {"user_id": [2, 1, 42]}}`)
	if online.status != http.StatusOK || online.body["missing"] != 2.0 {
		t.Fatalf("online = %d %s; want users 1 (expired) and 42 (unknown) missing", online.status, online.raw)
	}
	r0 := online.body["rows"].([]any)[0].(map[string]any)
	vals := r0["values"].(map[string]any)
	if r0["user_id"] != 2.0 || vals["txn_stats:amount"] != 3.5 || vals["txn_stats:country"] != "it" || vals["txn_stats:amount_cents"] != 350.0 {
		t.Fatalf("online row 0 = %v; want user 2's latest values", r0)
	}
	if _, ok := r0["timestamps"].(map[string]any)["txn_stats:amount"]; !ok {
		t.Fatalf("online row 0 has no timestamp for amount: %v", r0)
	}
	if names := online.body["features"].([]any); len(names) != 5 || names[0] != "txn_stats:amount" {
		t.Fatalf("features = %v, want the view's five in order", names)
	}
}

func nowRFC3339() string { return time.Now().UTC().Format("2006-01-02T15:04:05.999999999Z07:00") }

func TestAgent_FeaturesBadInput(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	featureSetup(t, a)
	secretFile := filepath.Join(t.TempDir(), "pw")
	tests := []struct {
		name, method, path, body string
		status                   int
		text                     string
	}{
		{"unknown kind", "POST", "/v1/sources", `{"name": "s", "kind": "ftp"}`, 400, `kind "ftp"`},
		{"push without schema", "POST", "/v1/sources", `{"name": "s", "kind": "push"}`, 400, "schema is required"},
		{"password in conn", "POST", "/v1/sources", `{"name": "s", "kind": "postgres", "postgres": {"conn": "postgres://u:secret@db/x", "query": "select 1", "incremental_column": "id"}}`, 400, "holds a password"},
		{"missing credential file", "POST", "/v1/sources", fmt.Sprintf(`{"name": "s", "kind": "postgres", "postgres": {"conn": "postgres://u@db/x", "password": {"file": %q}, "query": "select 1", "incremental_column": "id"}}`, secretFile), 400, secretFile},
		{"missing env", "POST", "/v1/sources", `{"name": "s", "kind": "http", "http": {"url": "http://x/y", "token": {"env": "KILN_TEST_NO_SUCH_VAR"}}}`, 400, "KILN_TEST_NO_SUCH_VAR"},
		{"schedule on a stream", "POST", "/v1/sources", `{"name": "s", "kind": "push", "schema": {"a": "int"}, "schedule": "1m"}`, 400, "schedule"},
		{"bad cron", "POST", "/v1/sources", `{"name": "s", "kind": "http", "http": {"url": "http://x/y"}, "schedule": "every tuesday"}`, 400, "schedule"},
		{"cron out of range", "POST", "/v1/sources", `{"name": "s", "kind": "http", "http": {"url": "http://x/y"}, "schedule": "99 * * * *"}`, 400, "schedule \"99 * * * *\""},
		{"view on a missing column", "PUT", "/v1/feature-views/v2", `{"entity": "user", "source": "txns", "timestamp_column": "ts", "features": [{"name": "price"}]}`, 400, "(price) is not a column"},
		{"view with a wrong type", "PUT", "/v1/feature-views/v2", `{"entity": "user", "source": "txns", "timestamp_column": "ts", "features": [{"name": "country", "type": "float"}]}`, 400, "declared float"},
		{"expr of the wrong type", "PUT", "/v1/feature-views/v2", `{"entity": "user", "source": "txns", "timestamp_column": "ts", "features": [{"name": "c2", "type": "float", "expr": "country + 'x'"}]}`, 400, "gives a string"},
		{"expr on a missing column", "PUT", "/v1/feature-views/v2", `{"entity": "user", "source": "txns", "timestamp_column": "ts", "features": [{"name": "c2", "type": "float", "expr": "price * 2"}]}`, 400, "features[0] (c2)"},
		{"service on a missing feature", "PUT", "/v1/feature-services/s2", `{"features": ["txn_stats:nope"]}`, 400, `no feature "nope"`},
		{"online without entities", "POST", "/v1/features/online", `{"feature_service": "fraud"}`, 400, "entities is required"},
		{"online with uneven keys", "POST", "/v1/features/online", `{"feature_service": "fraud", "entities": {"user_id": [1, 2], "x": [1]}}`, 400, "entities.x"},
		{"online with a wrong key", "POST", "/v1/features/online", `{"feature_service": "fraud", "entities": {"account": 1}}`, 400, "no user_id"},
		{"online unknown service", "POST", "/v1/features/online", `{"feature_service": "nope", "entities": {"user_id": 1}}`, 404, `"nope"`},
		{"historical without time", "POST", "/v1/features/historical", `{"feature_service": "fraud", "entity_rows": [{"user_id": 1}]}`, 400, "entity_rows[0].ts"},
		{"push to a missing source", "POST", "/v1/sources/nope/records", `{"a": 1}`, 404, `"nope"`},
		{"delete a used entity", "DELETE", "/v1/entities/user", "", 409, "txn_stats"},
		{"delete a used view", "DELETE", "/v1/feature-views/txn_stats", "", 409, "fraud"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := call(t, a, tt.method, tt.path, tt.body)
			if msg, _ := res.body["error"].(string); res.status != tt.status || !strings.Contains(msg, tt.text) {
				t.Fatalf("%s %s = %d %s; want %d naming %q", tt.method, tt.path, res.status, res.raw, tt.status, tt.text)
			}
		})
	}
	// With the file in place, the same source is accepted: the check was
	// the file's, not the spec's.
	if err := os.WriteFile(secretFile, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res := call(t, a, "POST", "/v1/sources", fmt.Sprintf(`{"name": "s", "kind": "postgres", "postgres": {"conn": "postgres://u@db/x", "password": {"file": %q}, "query": "select 1", "incremental_column": "id"}}`, secretFile))
	if res.status != http.StatusOK {
		t.Fatalf("source with its password file = %d %s", res.status, res.raw)
	}
	if strings.Contains(strings.ReplaceAll(res.raw, secretFile, ""), `"pw"`) {
		t.Fatalf("the answer holds the password: %s", res.raw)
	}
}

// TestAgent_SourceRunHTTP reads an HTTP source in runs: a run asked for
// commits the records with the cursor, writes a dataset version, and a
// second run reads only what came after.
func TestAgent_SourceRunHTTP(t *testing.T) {
	pages := map[string]string{
		"":   `{"items": [{"user_id": 1, "ts": "2026-01-01T10:00:00Z", "amount": 5}, {"user_id": 2, "ts": "2026-01-01T10:00:00Z", "amount": 6}], "next": "p2"}`,
		"p2": `{"items": [{"user_id": 1, "ts": "2026-01-01T11:00:00Z", "amount": 7}], "next": null}`,
		"p3": `{"items": [{"user_id": 3, "ts": "2026-01-01T12:00:00Z", "amount": 8}], "next": null}`,
	}
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		body, ok := pages[r.URL.Query().Get("cursor")]
		if !ok {
			http.Error(w, "no such page", http.StatusNotFound)
			return
		}
		_, _ = io.WriteString(w, body)
	}))
	defer srv.Close()
	a := testNode(t)
	waitLeader(t, a)
	src := fmt.Sprintf(`{"name": "txns", "kind": "http", "schema": {"user_id": "int", "ts": "timestamp", "amount": "float"},
		"http": {"url": %q, "records_field": "items", "pagination": {"type": "cursor", "param": "cursor", "cursor_field": "next"}}}`, srv.URL)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/sources", src},
		{"PUT", "/v1/entities/user", `{"join_keys": ["user_id"]}`},
		{"PUT", "/v1/feature-views/spend", `{"entity": "user", "source": "txns", "timestamp_column": "ts", "features": [{"name": "amount"}, {"name": "n_1d", "expr": "count()", "window": "1d"}]}`},
		{"POST", "/v1/sources/txns/run", ""},
	} {
		if res := call(t, a, c.method, c.path, c.body); res.status/100 != 2 {
			t.Fatalf("%s %s = %d %s", c.method, c.path, res.status, res.raw)
		}
	}
	lastRun := func() map[string]any {
		res := call(t, a, "GET", "/v1/sources/txns", "")
		run, _ := res.body["last_run"].(map[string]any)
		return run
	}
	ended := func(seq float64) func() bool {
		return func() bool {
			run := lastRun()
			return run != nil && run["seq"] == seq && run["state"] != "running"
		}
	}
	testutil.Until(t, 60*time.Second, "the first run to end", ended(1))
	if run := lastRun(); run["state"] != "succeeded" || run["read"] != 3.0 || run["accepted"] != 3.0 || run["dataset"] != "txns:1" {
		t.Fatalf("run 1 = %v; want 3 records read and accepted into txns:1", run)
	}
	hist := call(t, a, "POST", "/v1/features/historical", `{"features": ["spend:*"], "entity_rows": [{"user_id": 1, "ts": "2026-01-01T11:30:00Z"}]}`)
	vals := hist.body["rows"].([]any)[0].(map[string]any)["values"].(map[string]any)
	if vals["spend:amount"] != 7.0 || vals["spend:n_1d"] != 2.0 {
		t.Fatalf("historical = %s; want user 1's amount 7 from 2 records", hist.raw)
	}
	dv := call(t, a, "GET", "/v1/datasets/txns/versions/1", "")
	if dv.status != http.StatusOK || dv.body["rows"] != 3.0 || dv.body["source"] != "txns" {
		t.Fatalf("dataset version = %d %s; want 3 rows from source txns", dv.status, dv.raw)
	}
	// The cursor was kept: the next run asks for the page after it.
	mu.Lock()
	pages["p2"] = `{"items": [], "next": "p3"}`
	mu.Unlock()
	if res := call(t, a, "POST", "/v1/sources/txns/run", ""); res.status != http.StatusAccepted {
		t.Fatalf("run = %d %s", res.status, res.raw)
	}
	testutil.Until(t, 60*time.Second, "the second run to end", ended(2))
	if run := lastRun(); run["state"] != "succeeded" || run["read"] != 1.0 {
		t.Fatalf("run 2 = %v; want the one record after the cursor", run)
	}
	runs := call(t, a, "GET", "/v1/sources/txns/runs", "")
	if items := runs.body["items"].([]any); len(items) != 2 {
		t.Fatalf("runs = %s; want 2", runs.raw)
	}
	if one := call(t, a, "GET", "/v1/sources/txns/runs/1", ""); one.status != http.StatusOK || one.body["seq"] != 1.0 || one.body["dataset"] != "txns:1" {
		t.Fatalf("run 1 = %d %s", one.status, one.raw)
	}
	if none := call(t, a, "GET", "/v1/sources/txns/runs/9", ""); none.status != http.StatusNotFound {
		t.Fatalf("run 9 = %d %s; want 404", none.status, none.raw)
	}
}

// TestAgent_SourceSchedule: an interval schedule fires a run per tick,
// each for its own tick, with no run asked for by hand.
func TestAgent_SourceSchedule(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `[{"id": 1}]`)
	}))
	defer srv.Close()
	a := testNode(t)
	waitLeader(t, a)
	src := fmt.Sprintf(`{"name": "ticks", "kind": "http", "schedule": "1s", "schema": {"id": "int"}, "http": {"url": %q}}`, srv.URL)
	if r := call(t, a, "POST", "/v1/sources", src); r.status != http.StatusOK {
		t.Fatalf("source = %d %s", r.status, r.raw)
	}
	var s map[string]any
	testutil.Until(t, 60*time.Second, "three scheduled runs", func() bool {
		s = call(t, a, "GET", "/v1/sources/ticks", "").body
		return s["runs"] != nil && s["runs"].(float64) >= 3
	})
	runs := call(t, a, "GET", "/v1/sources/ticks/runs", "").body["items"].([]any)
	for i, r := range runs {
		if tr := r.(map[string]any)["trigger"]; tr != float64(i+1) {
			t.Fatalf("run %d answered trigger %v: %v", i+1, tr, runs)
		}
	}
	if s["last_scheduled_at"] == nil || s["triggers"].(float64) < 3 {
		t.Fatalf("source = %v; want the schedule's ticks recorded", s)
	}
}
