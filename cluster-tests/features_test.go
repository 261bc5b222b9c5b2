package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// Data sources and the feature store (DESIGN.md §8) on real clusters: a
// stream read through a kill -9 of the node reading it, a PostgreSQL source
// whose password is rotated under it, and how fast pushed and streamed
// features are ingested and replicated.

// sourceRecord is the part of GET /v1/sources/{name} the tests read.
type sourceRecord struct {
	Paused      bool              `json:"paused"`
	Position    map[string]string `json:"position"`
	Read        int64             `json:"read"`
	Accepted    int64             `json:"accepted"`
	Quarantined int64             `json:"quarantined"`
	Node        string            `json:"node"`
	AssignIndex uint64            `json:"assign_index"`
	Triggers    uint64            `json:"triggers"`
	Runs        uint64            `json:"runs"`
	LastRun     *sourceRun        `json:"last_run"`
	Failures    int               `json:"failures"`
	LastError   string            `json:"last_error"`
}

// sourceRun is the part of a source run the tests read.
type sourceRun struct {
	Seq      uint64 `json:"seq"`
	Trigger  uint64 `json:"trigger"`
	Node     string `json:"node"`
	State    string `json:"state"`
	Read     int64  `json:"read"`
	Accepted int64  `json:"accepted"`
	Error    string `json:"error"`
}

// source reads a source through nd; query is "" or e.g.
// "consistency=consistent".
func (nd *node) source(name, query string) (sourceRecord, error) {
	var s sourceRecord
	path := "/v1/sources/" + name
	if query != "" {
		path += "?" + query
	}
	err := nd.getJSON(path, &s)
	return s, err
}

// sourceRuns lists a source's runs through nd (the first page).
func (nd *node) sourceRuns(name string) ([]sourceRun, error) {
	var page struct {
		Items []sourceRun `json:"items"`
	}
	err := nd.getJSON("/v1/sources/"+name+"/runs?consistency=consistent", &page)
	return page.Items, err
}

// windowTotals asks nd, consistently, for a count() and a sum(column)
// feature of a view for every user in [0, users) as of at, and returns
// their sums over the users: how many values the view holds in the window,
// and the sum of the column over them.
func (nd *node) windowTotals(view, countFeature, sumFeature string, users int, at time.Time) (count int64, sum float64, err error) {
	rows := make([]map[string]any, users)
	for u := range rows {
		rows[u] = map[string]any{"user_id": u, "ts": at.Format(time.RFC3339Nano)}
	}
	features := []string{view + ":" + countFeature, view + ":" + sumFeature}
	r, err := nd.call("POST", "/v1/features/historical?consistency=consistent", map[string]any{"features": features, "entity_rows": rows})
	if err != nil {
		return 0, 0, err
	}
	if r.status != http.StatusOK {
		return 0, 0, fmt.Errorf("historical features on %s: %s", nd.name, r)
	}
	var frame struct {
		Rows []struct {
			UserID int                 `json:"user_id"`
			Values map[string]*float64 `json:"values"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(r.body, &frame); err != nil {
		return 0, 0, err
	}
	if len(frame.Rows) != users {
		return 0, 0, fmt.Errorf("historical features on %s: %d rows for %d users", nd.name, len(frame.Rows), users)
	}
	for _, row := range frame.Rows {
		n, s := row.Values[features[0]], row.Values[features[1]]
		if n == nil || s == nil {
			return 0, 0, fmt.Errorf("historical features on %s: user %d has no value: %s %v, %s %v", nd.name, row.UserID, features[0], n, features[1], s)
		}
		count += int64(*n)
		sum += *s
	}
	return count, sum, nil
}

// postNDJSON sends an NDJSON body, which call would encode as JSON.
func (nd *node) postNDJSON(path string, body []byte) (*response, error) {
	req, err := http.NewRequest("POST", nd.baseURL()+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if nd.c.token != "" {
		req.Header.Set("X-Kiln-Token", nd.c.token)
	}
	resp, err := nd.c.client().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// waitCaughtUp waits until every running node has applied every write
// acknowledged so far: a consistent read through via gives an index at or
// past them (push answers carry no X-Kiln-Index of their own), and each
// node's /v1/status must reach it.
func (c *cluster) waitCaughtUp(via *node, timeout time.Duration) uint64 {
	c.t.Helper()
	r, err := via.call("GET", "/v1/sources?consistency=consistent&limit=1", nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if r.status != http.StatusOK || r.index() == 0 {
		c.t.Fatalf("consistent read on %s: %s, want 200 with X-Kiln-Index", via.name, r)
	}
	idx := r.index()
	testutil.WaitFor(c.t, timeout, func() error {
		for _, nd := range c.running() {
			st, err := nd.status()
			if err != nil {
				return err
			}
			if st.AppliedIndex < idx {
				return fmt.Errorf("%s applied %d, want %d", nd.name, st.AppliedIndex, idx)
			}
		}
		return nil
	})
	return idx
}

// natsServer is a NATS server with JetStream embedded in the test process,
// which the agents read as any other server.
type natsServer struct {
	srv *server.Server
	url string
	js  jetstream.JetStream
}

// startNATS starts a server with a stream of the given name on subjects
// and shuts it down when t ends.
func startNATS(t testing.TB, stream string, subjects ...string) *natsServer {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server is not ready after 10s")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatalf("nats connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: subjects}); err != nil {
		t.Fatalf("create stream %s: %v", stream, err)
	}
	return &natsServer{srv: srv, url: srv.ClientURL(), js: js}
}

// readers counts the open connections of a source's reader: the NATS
// reader names its connection "kiln <source>", and holds it for a session.
func (n *natsServer) readers(source string) (int, error) {
	cz, err := n.srv.Connz(&server.ConnzOptions{Limit: 1024})
	if err != nil {
		return 0, err
	}
	count := 0
	for _, ci := range cz.Conns {
		if ci.Name == "kiln "+source {
			count++
		}
	}
	return count, nil
}

// waitReaders waits until a source has want reader connections.
func (n *natsServer) waitReaders(t testing.TB, source string, want int, timeout time.Duration) {
	t.Helper()
	testutil.WaitFor(t, timeout, func() error {
		got, err := n.readers(source)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("source %s has %d reader connections to NATS, want %d", source, got, want)
		}
		return nil
	})
}

// publish publishes records [from, to) made by record, with the acks
// awaited at the end, and returns the first error.
func (n *natsServer) publish(ctx context.Context, subject string, from, to int, record func(i int) []byte) error {
	const window = 4096 // acks awaited at most
	futures := make([]jetstream.PubAckFuture, 0, window)
	wait := func() error {
		select {
		case <-n.js.PublishAsyncComplete():
		case <-ctx.Done():
			return ctx.Err()
		}
		for _, f := range futures {
			select {
			case err := <-f.Err():
				return fmt.Errorf("publish %s: %w", subject, err)
			default:
			}
		}
		futures = futures[:0]
		return nil
	}
	for i := from; i < to; i++ {
		f, err := n.js.PublishAsync(subject, record(i))
		if err != nil {
			return fmt.Errorf("publish %s: %w", subject, err)
		}
		futures = append(futures, f)
		if len(futures) == window {
			if err := wait(); err != nil {
				return err
			}
		}
	}
	return wait()
}

// eventsSchema is the schema of the streamed events.
var eventsSchema = map[string]string{"id": "int", "user_id": "int", "ts": "timestamp", "amount": "float"}

// eventsEpoch is the timestamp of event 0; event i is i seconds later.
var eventsEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// eventAmount is event i's amount: a multiple of 1/4, so that float64
// sums of them are exact in any order.
func eventAmount(i int) float64 { return float64(i%100) / 4 }

// eventJSON is event i for users users.
func eventJSON(i, users int) []byte {
	return fmt.Appendf(nil, `{"id":%d,"user_id":%d,"ts":%q,"amount":%g}`, i, i%users, eventsEpoch.Add(time.Duration(i)*time.Second).Format(time.RFC3339), eventAmount(i))
}

// eventFeatures are the features of the events view: the last amount, a
// day's count, and a week's count and sum, which hold every event of a
// test.
var eventFeatures = []map[string]any{
	{"name": "amount"},
	{"name": "events_1d", "expr": "count()", "window": "1d"},
	{"name": "events_7d", "expr": "count()", "window": "7d"},
	{"name": "amount_7d", "expr": "sum(amount)", "window": "7d"},
}

// declareNATSSource declares the user entity, a NATS source of the stream
// and a view of it with features, through nd, once the source's first
// session is reading.
//
// A view gets the records committed after it is declared (a running
// session picks it up before its next commit,
// TestCluster_StreamSourceWritesViewDeclaredAfterIt), not those before.
// So that the view holds every event, the source is paused once its
// session reads, the view declared, and the source resumed by the caller.
func declareNATSSource(t testing.TB, nd *node, n *natsServer, name, stream string, schema map[string]string, view string, features []map[string]any) {
	t.Helper()
	nd.write("PUT", "/v1/entities/user", map[string]any{"join_keys": []string{"user_id"}}, http.StatusOK)
	nd.write("POST", "/v1/sources", map[string]any{"name": name, "kind": "nats", "schema": schema,
		"nats": map[string]any{"url": n.url, "stream": stream}}, http.StatusOK)
	n.waitReaders(t, name, 1, 60*time.Second)
	nd.write("POST", "/v1/sources/"+name+"/pause", nil, http.StatusOK)
	n.waitReaders(t, name, 0, 30*time.Second)
	nd.write("PUT", "/v1/feature-views/"+view, map[string]any{"entity": "user", "source": name, "timestamp_column": "ts",
		"features": features}, http.StatusOK)
}

// A stream read through a kill -9 of the node reading it: the leader moves
// the source to a live node, whose actor resumes from the committed
// position, and every event is counted once, in the source's totals and in
// the view's values, read through a survivor.
func TestCluster_StreamingIngestSurvivesKill9(t *testing.T) {
	const (
		n     = 20000
		users = 50
	)
	ns := startNATS(t, "EVENTS", "events.>")
	c := newCluster(t, 3)
	leader := c.waitLeader(leaderTimeout)
	c.waitRegistered(leader, 3)
	declareNATSSource(t, leader, ns, "events", "EVENTS", eventsSchema, "user_events", eventFeatures)
	leader.write("POST", "/v1/sources/events/resume", nil, http.StatusOK)
	ns.waitReaders(t, "events", 1, 60*time.Second)

	// The publisher sends the first half at once and the second once the
	// reader is killed, so that the source's new node has events to read
	// that its old one never saw, besides whatever the old one had read
	// and not committed.
	ctx, cancel := context.WithCancel(context.Background())
	killed := make(chan struct{})
	published := make(chan error, 1)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	var wantSum float64
	for i := range n {
		wantSum += eventAmount(i)
	}
	event := func(i int) []byte { return eventJSON(i, users) }
	wg.Go(func() {
		err := ns.publish(ctx, "events.new", 0, n/2, event)
		if err == nil {
			select {
			case <-killed:
				err = ns.publish(ctx, "events.new", n/2, n, event)
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		published <- err
	})

	var s sourceRecord
	testutil.WaitFor(t, 60*time.Second, func() error {
		var err error
		if s, err = leader.source("events", ""); err != nil {
			return err
		}
		if s.Read == 0 || s.Node == "" {
			return fmt.Errorf("source read %d records on node %q", s.Read, s.Node)
		}
		return nil
	})
	victim := c.byID(s.Node)
	if victim == nil {
		t.Fatalf("source is placed on %q, which is no node of the cluster", s.Node)
	}
	victim.kill()
	close(killed)
	t.Logf("killed %s (kill -9), which had committed %d of %d events at position %v", victim.name, s.Read, n, s.Position)

	survivors := c.others(victim)
	via := c.waitLeaderAmong(leaderTimeout, survivors...)
	testutil.WaitFor(t, 120*time.Second, func() error {
		var err error
		if s, err = via.source("events", "consistency=consistent"); err != nil {
			return err
		}
		if s.Accepted < n {
			return fmt.Errorf("source accepted %d of %d events, on node %q", s.Accepted, n, s.Node)
		}
		return nil
	})
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	mover := c.byID(s.Node)
	if mover == nil || mover == victim {
		t.Fatalf("source is on %q after the kill, want a survivor", s.Node)
	}
	t.Logf("source moved from %s to %s; position %v", victim.name, mover.name, s.Position)

	// The source's position is committed in the same Raft entry as the
	// rows it covers (SourceIngestType), so the new node resumes exactly
	// after the last row committed: nothing read twice, nothing skipped.
	if s.Read != n || s.Accepted != n || s.Quarantined != 0 {
		t.Fatalf("source read %d, accepted %d, quarantined %d; want %d, %d, 0", s.Read, s.Accepted, s.Quarantined, n, n)
	}
	if s.Position["EVENTS"] != fmt.Sprint(n) {
		t.Errorf("position %v, want EVENTS at stream sequence %d", s.Position, n)
	}
	at := eventsEpoch.Add((n + 1) * time.Second)
	for _, nd := range survivors {
		count, sum, err := nd.windowTotals("user_events", "events_7d", "amount_7d", users, at)
		if err != nil {
			t.Fatal(err)
		}
		if count != n || sum != wantSum {
			t.Errorf("through %s the view holds %d values summing to %g, want %d summing to %g", nd.name, count, sum, n, wantSum)
		}
	}
}

// A view declared while a stream source's session reads: the events that
// come after the view are written to it. A minimal case, on one node, of
// what a user who declares a source and then its views meets.
func TestCluster_StreamSourceWritesViewDeclaredAfterIt(t *testing.T) {
	const n, users = 10, 2
	ns := startNATS(t, "EVENTS", "events.>")
	c := newCluster(t, 1)
	nd := c.all()[0]
	nd.write("PUT", "/v1/entities/user", map[string]any{"join_keys": []string{"user_id"}}, http.StatusOK)
	nd.write("POST", "/v1/sources", map[string]any{"name": "events", "kind": "nats", "schema": eventsSchema,
		"nats": map[string]any{"url": ns.url, "stream": "EVENTS"}}, http.StatusOK)
	ns.waitReaders(t, "events", 1, 60*time.Second) // its session reads
	nd.write("PUT", "/v1/feature-views/user_events", map[string]any{"entity": "user", "source": "events", "timestamp_column": "ts",
		"features": eventFeatures}, http.StatusOK)
	if err := ns.publish(context.Background(), "events.new", 0, n, func(i int) []byte { return eventJSON(i, users) }); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		s, err := nd.source("events", "consistency=consistent")
		if err != nil {
			return err
		}
		if s.Accepted != n {
			return fmt.Errorf("source accepted %d of %d events", s.Accepted, n)
		}
		return nil
	})
	var wantSum float64
	for i := range n {
		wantSum += eventAmount(i)
	}
	count, sum, err := nd.windowTotals("user_events", "events_7d", "amount_7d", users, eventsEpoch.Add((n+1)*time.Second))
	if err != nil {
		t.Fatalf("the %d events accepted after the view was declared are not in it: %v", n, err)
	}
	if count != n || sum != wantSum {
		t.Fatalf("the view holds %d values summing to %g, want %d summing to %g", count, sum, n, wantSum)
	}
}

// Pausing and resuming a healthy stream source is no failure: the session
// the pause ended is not recorded as failed with an error, and the resumed
// session does not wait out a backoff that grows with every pause.
func TestCluster_StreamSourcePauseIsNotAFailure(t *testing.T) {
	ns := startNATS(t, "EVENTS", "events.>")
	c := newCluster(t, 1)
	nd := c.all()[0]
	nd.write("POST", "/v1/sources", map[string]any{"name": "events", "kind": "nats", "schema": eventsSchema,
		"nats": map[string]any{"url": ns.url, "stream": "EVENTS"}}, http.StatusOK)
	ns.waitReaders(t, "events", 1, 60*time.Second)
	for round := 1; round <= 2; round++ {
		nd.write("POST", "/v1/sources/events/pause", nil, http.StatusOK)
		ns.waitReaders(t, "events", 0, 30*time.Second)
		nd.write("POST", "/v1/sources/events/resume", nil, http.StatusOK)
		ns.waitReaders(t, "events", 1, 60*time.Second)
		s, err := nd.source("events", "consistency=consistent")
		if err != nil {
			t.Fatal(err)
		}
		if s.Failures != 0 || s.LastError != "" {
			t.Fatalf("after pause and resume %d of a healthy source: failures %d, last error %q; want 0 and none", round, s.Failures, s.LastError)
		}
	}
}

// A PostgreSQL source whose password is rotated under it: runs fail on
// authentication, and are retried with backoff, until the new password is
// in the source's file; the next retry reads the rows the failed runs
// could not, once.
func TestCluster_SourceWithExpiredPasswordRetries(t *testing.T) {
	const users = 10
	pg := testutil.StartPostgres(t)
	pg.Exec(t, `CREATE TABLE events (id serial PRIMARY KEY, user_id int NOT NULL, updated_at timestamptz NOT NULL, amount float8 NOT NULL)`)
	pg.Exec(t, fmt.Sprintf(`GRANT SELECT ON events TO %q`, pg.User))
	// Rows [from, to): row i has user i%users, is updated i seconds after
	// the epoch and has amount eventAmount(i).
	insert := func(from, to int) {
		pg.Exec(t, `INSERT INTO events (user_id, updated_at, amount)
			SELECT g % $3, $4::timestamptz + g * interval '1 second', (g % 100) / 4.0 FROM generate_series($1::int, $2::int - 1) AS g`,
			from, to, users, eventsEpoch)
	}
	insert(0, 100)
	secret := filepath.Join(t.TempDir(), "pg-password")
	if err := os.WriteFile(secret, []byte(pg.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	c := newCluster(t, 1)
	nd := c.all()[0]
	nd.write("PUT", "/v1/entities/user", map[string]any{"join_keys": []string{"user_id"}}, http.StatusOK)
	nd.write("POST", "/v1/sources", map[string]any{"name": "pg_events", "kind": "postgres",
		"schema": map[string]string{"id": "int", "user_id": "int", "updated_at": "timestamp", "amount": "float"},
		"postgres": map[string]any{"conn": pg.ConnString(), "password": map[string]any{"file": secret},
			"query": "SELECT id, user_id, updated_at, amount FROM events", "incremental_column": "updated_at"}}, http.StatusOK)
	nd.write("PUT", "/v1/feature-views/pg_user_events", map[string]any{"entity": "user", "source": "pg_events", "timestamp_column": "updated_at",
		"features": []map[string]any{
			{"name": "events_7d", "expr": "count()", "window": "7d"},
			{"name": "amount_7d", "expr": "sum(amount)", "window": "7d"},
		}}, http.StatusOK)

	// waitRun waits for the source's last run to answer the trigger and be
	// in state.
	waitRun := func(trigger uint64, state string, timeout time.Duration) sourceRecord {
		t.Helper()
		var s sourceRecord
		testutil.WaitFor(t, timeout, func() error {
			var err error
			if s, err = nd.source("pg_events", "consistency=consistent"); err != nil {
				return err
			}
			if r := s.LastRun; r == nil || r.Trigger < trigger || r.State != state {
				return fmt.Errorf("last run %+v (failures %d, last error %q), want one for trigger %d %s", r, s.Failures, s.LastError, trigger, state)
			}
			return nil
		})
		return s
	}
	trigger := func() uint64 {
		t.Helper()
		r := nd.write("POST", "/v1/sources/pg_events/run", nil, http.StatusAccepted)
		var out struct {
			Trigger uint64 `json:"trigger"`
		}
		if err := json.Unmarshal(r.body, &out); err != nil {
			t.Fatal(err)
		}
		return out.Trigger
	}
	checkTotals := func(rows int) {
		t.Helper()
		var wantSum float64
		for i := range rows {
			wantSum += eventAmount(i)
		}
		count, sum, err := nd.windowTotals("pg_user_events", "events_7d", "amount_7d", users, eventsEpoch.Add(time.Duration(rows+1)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if count != int64(rows) || sum != wantSum {
			t.Fatalf("the view holds %d values summing to %g, want %d summing to %g", count, sum, rows, wantSum)
		}
	}

	s := waitRun(trigger(), "succeeded", 60*time.Second)
	if s.Accepted != 100 || s.Read != 100 || s.LastRun.Accepted != 100 {
		t.Fatalf("first run: source accepted %d of %d read, run accepted %d; want 100", s.Accepted, s.Read, s.LastRun.Accepted)
	}
	checkTotals(100)

	// The operator rotates the password; the file still holds the old one.
	pg.SetPassword(t, pg.User, "rotated-"+pg.Password)
	insert(100, 150)
	tr := trigger()
	s = waitRun(tr, "failed", 30*time.Second)
	if !strings.Contains(strings.ToLower(s.LastError), "authentication") {
		t.Fatalf("last error %q, want one about authentication", s.LastError)
	}
	// Retried with backoff (1s, then 2s): the failures in a row grow.
	first := s.Failures
	testutil.WaitFor(t, 30*time.Second, func() error {
		var err error
		if s, err = nd.source("pg_events", "consistency=consistent"); err != nil {
			return err
		}
		if s.Failures < max(first+1, 2) {
			return fmt.Errorf("%d failures in a row (first seen %d), want them to grow as the run is retried", s.Failures, first)
		}
		return nil
	})
	if s.Accepted != 100 {
		t.Fatalf("failed runs accepted rows: source accepted %d, want 100", s.Accepted)
	}
	runs, err := nd.sourceRuns("pg_events")
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, r := range runs {
		if r.State == "failed" {
			failed++
			if !strings.Contains(strings.ToLower(r.Error), "authentication") {
				t.Errorf("failed run %d: error %q, want one about authentication", r.Seq, r.Error)
			}
		}
	}
	if failed < 2 {
		t.Fatalf("runs %+v, want at least two failed", runs)
	}

	// The new password in the file: a retry succeeds, and the rows
	// inserted meanwhile arrive once.
	if err := os.WriteFile(secret, []byte("rotated-"+pg.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = waitRun(tr, "succeeded", 60*time.Second)
	if s.Accepted != 150 || s.Read != 150 || s.Quarantined != 0 {
		t.Fatalf("after the retry: source read %d, accepted %d, quarantined %d; want 150, 150, 0", s.Read, s.Accepted, s.Quarantined)
	}
	if s.Failures != 0 || s.LastError != "" {
		t.Errorf("after a success: failures %d, last error %q; want 0 and none", s.Failures, s.LastError)
	}
	checkTotals(150)
}

// Benchmark sizes: records of ten float features each.
const (
	benchRecords     = 200_000
	benchBodyRecords = 2_000
	benchPushers     = 4
	benchFeatures    = 10
	benchUsers       = 1000
)

// benchSchema is user_id, ts and f0..f9.
func benchSchema() map[string]string {
	s := map[string]string{"user_id": "int", "ts": "timestamp"}
	for j := range benchFeatures {
		s[fmt.Sprintf("f%d", j)] = "float"
	}
	return s
}

// benchViewFeatures are f0..f9.
func benchViewFeatures() []map[string]any {
	var fs []map[string]any
	for j := range benchFeatures {
		fs = append(fs, map[string]any{"name": fmt.Sprintf("f%d", j)})
	}
	return fs
}

// benchRecord is record i: a user, a timestamp i milliseconds after the
// epoch, and ten features.
func benchRecord(b []byte, i int) []byte {
	b = fmt.Appendf(b, `{"user_id":%d,"ts":%q`, i%benchUsers, eventsEpoch.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano))
	for j := range benchFeatures {
		b = fmt.Appendf(b, `,"f%d":%g`, j, float64(i%997)+float64(j)/8)
	}
	return append(b, '}')
}

// reportIngest reports values/s and records/s for records ingested in d.
func reportIngest(b *testing.B, records int, d time.Duration) {
	b.ReportMetric(float64(records*benchFeatures)/d.Seconds(), "values/s")
	b.ReportMetric(float64(records)/d.Seconds(), "records/s")
}

// BenchmarkFeatureIngest_Push pushes 200,000 records of ten features (two
// million values) as NDJSON bodies of 2,000 records, from four goroutines
// each sending to the nodes of a 3-node cluster in turn, and measures until
// the last push is answered and every node has applied it.
//
//	go test -run '^$' -bench FeatureIngest_Push -benchtime 1x ./cluster-tests/
func BenchmarkFeatureIngest_Push(b *testing.B) {
	if testing.Short() {
		b.Skip("a 3-node cluster ingesting two million feature values")
	}
	c := newCluster(b, 3)
	nodes := c.all()
	leader := c.waitLeader(leaderTimeout)
	leader.write("PUT", "/v1/entities/user", map[string]any{"join_keys": []string{"user_id"}}, http.StatusOK)
	leader.write("POST", "/v1/sources", map[string]any{"name": "pushed", "kind": "push", "schema": benchSchema()}, http.StatusOK)
	r := leader.write("PUT", "/v1/feature-views/pushed_user", map[string]any{"entity": "user", "source": "pushed", "timestamp_column": "ts",
		"features": benchViewFeatures()}, http.StatusOK)
	for _, nd := range nodes { // every node knows the view before it is pushed to
		if err := nd.getJSON(fmt.Sprintf("/v1/feature-views/pushed_user?index=%d", r.index()), &struct{}{}); err != nil {
			b.Fatal(err)
		}
	}

	var elapsed time.Duration
	b.ResetTimer()
	for it := range b.N {
		b.StopTimer()
		bodies := make([][]byte, benchRecords/benchBodyRecords)
		for k := range bodies {
			var body []byte
			for i := range benchBodyRecords {
				body = benchRecord(body, (it*benchRecords)+k*benchBodyRecords+i)
				body = append(body, '\n')
			}
			bodies[k] = body
		}
		b.StartTimer()
		start := time.Now()
		work := make(chan int)
		errs := make(chan error, len(bodies))
		var wg sync.WaitGroup
		for p := range benchPushers {
			wg.Go(func() {
				for k := range work {
					nd := nodes[(p+k)%len(nodes)]
					r, err := nd.postNDJSON("/v1/sources/pushed/records", bodies[k])
					if err == nil && r.status != http.StatusOK {
						err = fmt.Errorf("push %d to %s: %s", k, nd.name, r)
					}
					if err == nil {
						var res struct {
							Accepted int64 `json:"accepted"`
						}
						if err = json.Unmarshal(r.body, &res); err == nil && res.Accepted != benchBodyRecords {
							err = fmt.Errorf("push %d to %s accepted %d of %d: %s", k, nd.name, res.Accepted, benchBodyRecords, r)
						}
					}
					if err != nil {
						errs <- err
					}
				}
			})
		}
		for k := range bodies {
			work <- k
		}
		close(work)
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
		pushed := time.Since(start)
		c.waitCaughtUp(leader, 120*time.Second)
		took := time.Since(start)
		elapsed += took
		b.StopTimer()
		b.Logf("iteration %d: pushes answered after %s, every node caught up after %s", it+1, pushed.Round(time.Millisecond), took.Round(time.Millisecond))
		s, err := leader.source("pushed", "consistency=consistent")
		if err != nil {
			b.Fatal(err)
		}
		if want := int64((it + 1) * benchRecords); s.Accepted != want {
			b.Fatalf("source accepted %d, want %d", s.Accepted, want)
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportIngest(b, b.N*benchRecords, elapsed)
}

// BenchmarkFeatureIngest_NATS publishes 200,000 records of ten features to a
// JetStream stream first, then measures from the start of the source's
// session until the source has accepted them all and every node of the
// 3-node cluster has applied them.
//
//	go test -run '^$' -bench FeatureIngest_NATS -benchtime 1x ./cluster-tests/
func BenchmarkFeatureIngest_NATS(b *testing.B) {
	if testing.Short() {
		b.Skip("a 3-node cluster ingesting two million feature values")
	}
	ns := startNATS(b, "BENCH", "bench.>")
	c := newCluster(b, 3)
	leader := c.waitLeader(leaderTimeout)
	c.waitRegistered(leader, 3)
	declareNATSSource(b, leader, ns, "streamed", "BENCH", benchSchema(), "streamed_user", benchViewFeatures())

	var elapsed time.Duration
	b.ResetTimer()
	for it := range b.N {
		b.StopTimer()
		if it > 0 {
			leader.write("POST", "/v1/sources/streamed/pause", nil, http.StatusOK)
			ns.waitReaders(b, "streamed", 0, 30*time.Second)
		}
		if err := ns.publish(context.Background(), "bench.new", it*benchRecords, (it+1)*benchRecords, func(i int) []byte { return benchRecord(nil, i) }); err != nil {
			b.Fatal(err)
		}
		leader.write("POST", "/v1/sources/streamed/resume", nil, http.StatusOK)
		resumed := time.Now()
		// The clock starts with the session.
		ns.waitReaders(b, "streamed", 1, 60*time.Second)
		b.StartTimer()
		start := time.Now()
		want := int64((it + 1) * benchRecords)
		var s sourceRecord
		testutil.WaitFor(b, 300*time.Second, func() error {
			var err error
			if s, err = leader.source("streamed", ""); err != nil {
				return err
			}
			if s.Accepted < want {
				return fmt.Errorf("source accepted %d of %d (last run %+v, last error %q)", s.Accepted, want, s.LastRun, s.LastError)
			}
			return nil
		})
		accepted := time.Since(start)
		c.waitCaughtUp(leader, 120*time.Second)
		took := time.Since(start)
		elapsed += took
		b.StopTimer()
		b.Logf("iteration %d: session started %s after the resume; all accepted after %s, every node caught up after %s",
			it+1, start.Sub(resumed).Round(time.Millisecond), accepted.Round(time.Millisecond), took.Round(time.Millisecond))
		if s, err := leader.source("streamed", "consistency=consistent"); err != nil {
			b.Fatal(err)
		} else if s.Accepted != want || s.Read != want {
			b.Fatalf("source read %d, accepted %d; want %d", s.Read, s.Accepted, want)
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportIngest(b, b.N*benchRecords, elapsed)
}
