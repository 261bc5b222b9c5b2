package node

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// testIP hands out loopback addresses in 127.0.1.0/24, a range no other test
// package uses, so in-process agents never collide with cluster-tests.
var nextTestIP atomic.Int32

type testOpt func(*Config)

// testNode starts an agent on its own loopback IP with a temp data dir and stops it
// when the test ends.
func testNode(t testing.TB, opts ...testOpt) *Agent {
	t.Helper()
	cfg := DefaultConfig()
	n := nextTestIP.Add(1)
	cfg.NodeName = fmt.Sprintf("t%d", n)
	cfg.BindAddr = fmt.Sprintf("127.0.1.%d", n)
	cfg.DataDir = t.TempDir()
	cfg.BootstrapExpect = 1
	cfg.ServerStabilization = 500 * time.Millisecond
	for _, o := range opts {
		o(&cfg)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: cfg.NodeName, Level: hclog.Warn, Output: io.Discard})
	if testing.Verbose() {
		logger.SetLevel(hclog.Info)
		logger = hclog.New(&hclog.LoggerOptions{Name: cfg.NodeName, Level: hclog.Info})
	}
	a, err := New(cfg, logger)
	if err != nil {
		t.Fatalf("start agent: %v", err)
	}
	t.Cleanup(func() { a.Shutdown() })
	return a
}

type apiResp struct {
	status int
	header http.Header
	body   map[string]any // a JSON object answer
	raw    string         // the answer as it came
}

func call(t testing.TB, a *Agent, method, path, body string) apiResp {
	t.Helper()
	return callAs(t, a, "", method, path, body)
}

func waitLeader(t testing.TB, a *Agent) {
	t.Helper()
	testutil.Until(t, 10*time.Second, "a leader", func() bool { return a.leaderReady.Load() })
}

func TestAgent_ModelAPI(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)

	r := call(t, a, "POST", "/v1/models", `{"name":"iris","owner":"ml","tags":{"stage":"dev","team":"a"}}`)
	if r.status != 201 || r.body["name"] != "iris" || r.header.Get("X-Kiln-Index") == "" {
		t.Fatalf("create: %d %v", r.status, r.body)
	}
	if r := call(t, a, "POST", "/v1/models", `{"name":"iris"}`); r.status != 409 || r.body["code"] != "already_exists" {
		t.Errorf("duplicate create: %d %v", r.status, r.body)
	}
	r = call(t, a, "PATCH", "/v1/models/iris", `{"description":"flowers","tags":{"stage":"prod","team":null}}`)
	tags, _ := r.body["tags"].(map[string]any)
	if r.status != 200 || tags["stage"] != "prod" || tags["team"] != nil || r.body["description"] != "flowers" || r.body["owner"] != "ml" {
		t.Fatalf("patch: %d %v", r.status, r.body)
	}
	r = call(t, a, "GET", "/v1/models/iris?consistency=consistent", "")
	if r.status != 200 || r.header.Get("X-Kiln-Known-Leader") != "true" || r.header.Get("X-Kiln-Index") == "" || r.header.Get("X-Kiln-Last-Contact") == "" {
		t.Fatalf("get: %d %v %v", r.status, r.body, r.header)
	}
	for i := 0; i < 3; i++ {
		call(t, a, "POST", "/v1/models", fmt.Sprintf(`{"name":"m%d"}`, i))
	}
	r = call(t, a, "GET", "/v1/models?limit=2", "")
	if items, _ := r.body["items"].([]any); len(items) != 2 || r.body["next_cursor"] == "" {
		t.Fatalf("page 1: %v", r.body)
	}
	r = call(t, a, "GET", "/v1/models?limit=10&cursor="+r.body["next_cursor"].(string), "")
	if items, _ := r.body["items"].([]any); len(items) != 2 {
		t.Fatalf("page 2: %v", r.body)
	}
	if r := call(t, a, "DELETE", "/v1/models/iris", ""); r.status != 200 {
		t.Fatalf("delete: %d %v", r.status, r.body)
	}
	if r := call(t, a, "GET", "/v1/models/iris", ""); r.status != 404 || r.body["code"] != "not_found" {
		t.Errorf("get deleted: %d %v", r.status, r.body)
	}
}

func TestAgent_BadInput(t *testing.T) {
	a := testNode(t, func(c *Config) { c.MaxBodyBytes = 1024 })
	waitLeader(t, a)
	cases := []struct {
		name, method, path, body string
		status                   int
		mention                  string
	}{
		{"malformed json", "POST", "/v1/models", `{"name":`, 400, "malformed"},
		{"unknown field", "POST", "/v1/models", `{"name":"a","colour":"red"}`, 400, "colour"},
		{"wrong type", "POST", "/v1/models", `{"name":"a","tags":{"k":1}}`, 400, "tags"},
		{"missing name", "POST", "/v1/models", `{"owner":"x"}`, 400, "name"},
		{"bad name", "POST", "/v1/models", `{"name":"Bad Name"}`, 400, "name"},
		{"trailing data", "POST", "/v1/models", `{"name":"a"} {}`, 400, "after"},
		{"too large", "POST", "/v1/models", `{"name":"a","description":"` + strings.Repeat("x", 2000) + `"}`, 413, "larger"},
		{"patch unknown model", "PATCH", "/v1/models/nope", `{"tags":{"a":"b"}}`, 404, "nope"},
		{"patch tag value type", "PATCH", "/v1/models/nope", `{"tags":{"a":[1]}}`, 400, "tags"},
		{"bad consistency", "GET", "/v1/models?consistency=strong", "", 400, "consistency"},
		{"bad index", "GET", "/v1/models?index=-1", "", 400, "index"},
		{"bad limit", "GET", "/v1/models?limit=0", "", 400, "limit"},
		{"remove unknown peer", "DELETE", "/v1/operator/raft/peers/nope", "", 404, "nope"},
		{"no route", "GET", "/v1/nothing", "", 404, "no route"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, a, tc.method, tc.path, tc.body)
			msg, _ := r.body["error"].(string)
			if r.status != tc.status || !strings.Contains(msg, tc.mention) || r.body["code"] == "" {
				t.Errorf("got %d %v, want %d mentioning %q", r.status, r.body, tc.status, tc.mention)
			}
		})
	}
	// Nothing was half-applied by the failures above.
	r := call(t, a, "GET", "/v1/models", "")
	if items, _ := r.body["items"].([]any); len(items) != 0 {
		t.Errorf("bad requests left models behind: %v", r.body)
	}
}

func TestAgent_ThreeNodes(t *testing.T) {
	expect := func(c *Config) { c.BootstrapExpect = 3 }
	a := testNode(t, expect)
	join := func(c *Config) { c.RetryJoin = []string{a.cfg.BindAddr} }
	b := testNode(t, expect, join)
	c := testNode(t, expect, join)
	nodes := []*Agent{a, b, c}
	var leader, follower *Agent
	testutil.Until(t, 15*time.Second, "a leader among three", func() bool {
		for _, n := range nodes {
			if n.leaderReady.Load() {
				leader = n
			}
		}
		return leader != nil
	})
	for _, n := range nodes {
		if n != leader {
			follower = n
		}
	}
	// A write through a follower is forwarded; every node can then read it.
	r := call(t, follower, "POST", "/v1/models", `{"name":"fwd","tags":{"k":"v"}}`)
	if r.status != 201 {
		t.Fatalf("create via follower: %d %v", r.status, r.body)
	}
	idx := r.header.Get("X-Kiln-Index")
	for _, n := range nodes {
		r := call(t, n, "GET", "/v1/models/fwd?index="+idx, "")
		if r.status != 200 || r.body["tags"].(map[string]any)["k"] != "v" {
			t.Errorf("%s: %d %v", n.cfg.NodeName, r.status, r.body)
		}
		if r := call(t, n, "GET", "/v1/models/fwd?consistency=consistent", ""); r.status != 200 {
			t.Errorf("%s consistent: %d %v", n.cfg.NodeName, r.status, r.body)
		}
	}
	// Errors cross the forwarding hop with their codes.
	if r := call(t, follower, "POST", "/v1/models", `{"name":"fwd"}`); r.status != 409 {
		t.Errorf("duplicate via follower: %d %v", r.status, r.body)
	}
	// All three become voters and register their node records.
	testutil.Until(t, 15*time.Second, "three voters and three node records", func() bool {
		r := call(t, leader, "GET", "/v1/operator/raft/peers", "")
		voters := 0
		for _, it := range r.body["items"].([]any) {
			if it.(map[string]any)["voter"] == true {
				voters++
			}
		}
		n := call(t, leader, "GET", "/v1/nodes", "")
		return voters == 3 && len(n.body["items"].([]any)) == 3
	})
}

func TestAgent_GossipEncryption(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	encrypted := func(c *Config) { c.EncryptKey = key }
	a := testNode(t, encrypted)
	join := func(c *Config) { c.RetryJoin = []string{a.cfg.BindAddr}; c.BootstrapExpect = 0 }
	b := testNode(t, encrypted, join)
	c := testNode(t, join) // no key: must not get in
	testutil.Until(t, 30*time.Second, "the keyed node to join", func() bool {
		for _, m := range a.gossip.alive() {
			if m.Meta.ID == b.ID() {
				return true
			}
		}
		return false
	})
	// Give the keyless node time to try (its join loop retries every second).
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range a.gossip.alive() {
			if m.Meta.ID == c.ID() {
				t.Fatal("a node without the gossip key joined an encrypted cluster")
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(c.gossip.alive()) != 1 {
		t.Errorf("keyless node sees %d members", len(c.gossip.alive()))
	}
}
