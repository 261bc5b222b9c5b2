package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/raftfsm/structs"
)

func withACL(c *Config) {
	c.ACL.Enabled = true
	c.Insecure = true // one in-process node: no gossip key or TLS to speak of
}

// callAs sends a request with a token (none when tok is "") and decodes a
// JSON object answer.
func callAs(t testing.TB, a *Agent, tok, method, path, body string) apiResp {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+a.HTTPAddr()+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("X-Kiln-Token", tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := apiResp{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	if len(bytes.TrimSpace(b)) > 0 && b[0] == '{' {
		if err := json.Unmarshal(b, &out.body); err != nil {
			t.Fatalf("%s %s: bad JSON %q", method, path, b)
		}
	}
	return out
}

func mustStatus(t testing.TB, r apiResp, want int, what string) {
	t.Helper()
	if r.status != want {
		t.Fatalf("%s: status %d, want %d (%v)", what, r.status, want, r.body)
	}
}

// aclSetup bootstraps an ACL-enabled node and returns it with its
// management secret.
func aclSetup(t testing.TB, opts ...testOpt) (*Agent, string) {
	t.Helper()
	a := testNode(t, append([]testOpt{withACL}, opts...)...)
	waitLeader(t, a)
	r := callAs(t, a, "", "POST", "/v1/acl/bootstrap", "")
	mustStatus(t, r, 200, "bootstrap")
	return a, r.body["secret_id"].(string)
}

// tokenFor writes a policy with rules and returns the secret of a new token
// holding it.
func tokenFor(t testing.TB, a *Agent, mgmt, policy, rules string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"rules": rules})
	mustStatus(t, callAs(t, a, mgmt, "PUT", "/v1/acl/policies/"+policy, string(body)), 200, "put policy "+policy)
	r := callAs(t, a, mgmt, "POST", "/v1/acl/tokens", `{"policies":["`+policy+`"]}`)
	mustStatus(t, r, 200, "create token")
	return r.body["secret_id"].(string)
}

func TestRoutes_DeclareAccess(t *testing.T) {
	a := testNode(t, withACL, func(c *Config) { c.EnableDebug = true })
	seen := map[string]bool{}
	for _, rt := range a.routeTable() {
		t.Run(rt.pattern, func(t *testing.T) {
			if seen[rt.pattern] {
				t.Fatal("pattern listed twice")
			}
			seen[rt.pattern] = true
			if rt.handler == nil {
				t.Fatal("no handler")
			}
			switch rt.need {
			case needRead, needWrite, needAllow:
				if !rt.kind.Known() {
					t.Fatalf("need %d without a known kind (%q)", rt.need, rt.kind)
				}
				if rt.kind.Named() && rt.name == nil {
					t.Fatalf("kind %s is named but the route gives no name function", rt.kind)
				}
				verb := rt.kind == structs.KindPredict || rt.kind == structs.KindExec
				if verb != (rt.need == needAllow) {
					t.Fatalf("kind %s with need %d: predict and exec take allow, the others read or write", rt.kind, rt.need)
				}
			case needList, needBody:
				if !rt.kind.Known() || !rt.kind.Named() {
					t.Fatalf("need %d is for named kinds, not %q", rt.need, rt.kind)
				}
			case needToken:
			case needNone:
				if rt.pattern != "POST /v1/acl/bootstrap" {
					t.Fatalf("only the bootstrap is open to requests without a token")
				}
			case needSession:
				if !strings.Contains(rt.pattern, " /ui/") && rt.pattern != "GET /{$}" {
					t.Fatalf("only the dashboard's pages read a session cookie")
				}
			default:
				t.Fatalf("need is not set")
			}
		})
	}
}

func TestACL_BootstrapOnceAndReset(t *testing.T) {
	a := testNode(t, withACL)
	waitLeader(t, a)
	first := callAs(t, a, "", "POST", "/v1/acl/bootstrap", "")
	mustStatus(t, first, 200, "first bootstrap")
	if first.body["secret_id"] == "" || first.body["accessor_id"] == "" {
		t.Fatalf("bootstrap answer lacks ids: %v", first.body)
	}
	second := callAs(t, a, "", "POST", "/v1/acl/bootstrap", "")
	mustStatus(t, second, 409, "second bootstrap")
	msg, _ := second.body["error"].(string)
	i := strings.LastIndex(msg, "reset index ")
	if i < 0 {
		t.Fatalf("409 does not give the reset index: %q", msg)
	}
	idx := strings.TrimSuffix(msg[i+len("reset index "):], ")")
	if _, err := strconv.ParseUint(idx, 10, 64); err != nil {
		t.Fatalf("reset index %q in %q", idx, msg)
	}
	reset := filepath.Join(a.cfg.DataDir, aclBootstrapResetFile)
	if err := os.WriteFile(reset, []byte("999999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustStatus(t, callAs(t, a, "", "POST", "/v1/acl/bootstrap", ""), 409, "bootstrap with a wrong reset index")
	if err := os.WriteFile(reset, []byte(idx+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	third := callAs(t, a, "", "POST", "/v1/acl/bootstrap", "")
	mustStatus(t, third, 200, "bootstrap with the reset index")
	// Both management tokens work; the reset index has moved on.
	for _, tok := range []any{first.body["secret_id"], third.body["secret_id"]} {
		mustStatus(t, callAs(t, a, tok.(string), "GET", "/v1/acl/tokens", ""), 200, "list tokens")
	}
	mustStatus(t, callAs(t, a, "", "POST", "/v1/acl/bootstrap", ""), 409, "reset index used twice")
}

func TestACL_EndpointChecks(t *testing.T) {
	a, mgmt := aclSetup(t)
	for _, m := range []string{"fraud-a", "other"} {
		mustStatus(t, callAs(t, a, mgmt, "POST", "/v1/models", `{"name":"`+m+`"}`), 201, "create "+m)
	}
	serving := tokenFor(t, a, mgmt, "serving", `
model "fraud-*"   { policy = "read" }
predict "fraud-*" { policy = "allow" }
`)
	engineer := tokenFor(t, a, mgmt, "engineer", `
model "*"      { policy = "write" }
deployment "*" { policy = "write" }
node           { policy = "read" }
`)
	operator := tokenFor(t, a, mgmt, "ops", `
operator { policy = "write" }
acl      { policy = "read" }
`)
	changed := []byte(serving)
	if changed[0] == 'a' {
		changed[0] = 'b'
	} else {
		changed[0] = 'a'
	}

	tests := []struct {
		name, tok, method, path, body string
		want                          int
		errHas                        string
	}{
		{"no token", "", "GET", "/v1/models", "", 401, "token is required"},
		{"no token on metrics", "", "GET", "/metrics", "", 401, ""},
		{"no token on v2 health", "", "GET", "/v2/health/ready", "", 401, ""},
		{"no token on an unknown route", "", "GET", "/v1/nothing", "", 401, ""},
		{"unknown token", "not-a-token", "GET", "/v1/models", "", 401, "token not found"},
		{"secret with one char changed", string(changed), "GET", "/v1/models/fraud-a", "", 401, "token not found"},
		{"serving reads its model", serving, "GET", "/v1/models/fraud-a", "", 200, ""},
		{"serving cannot read another model", serving, "GET", "/v1/models/other", "", 403, `token lacks "read" on model "other"`},
		{"serving cannot deploy", serving, "PUT", "/v1/deployments/fraud-a", `{"versions":[{"version":1,"weight":1}]}`, 403, `token lacks "write" on deployment "fraud-a"`},
		{"serving cannot push", serving, "POST", "/v1/models/fraud-a/versions?format=linear", "{}", 403, `token lacks "write" on model "fraud-a"`},
		{"serving cannot create a model", serving, "POST", "/v1/models", `{"name":"fraud-b"}`, 403, `token lacks "write" on model "fraud-b"`},
		{"serving may predict (not deployed: 409)", serving, "POST", "/v1/models/fraud-a:predict", `{"instances":[[1]]}`, 409, ""},
		{"serving cannot predict another model", serving, "POST", "/v1/models/other:predict", `{"instances":[[1]]}`, 403, `token lacks "allow" on predict "other"`},
		{"serving v2 infer elsewhere", serving, "POST", "/v2/models/other/infer", `{}`, 403, ""},
		{"serving v2 health", serving, "GET", "/v2/health/live", "", 200, ""},
		{"serving cannot read nodes", serving, "GET", "/v1/nodes", "", 403, `token lacks "read" on node`},
		{"serving cannot list tokens", serving, "GET", "/v1/acl/tokens", "", 403, `token lacks "read" on acl`},
		{"serving reads itself", serving, "GET", "/v1/acl/token/self", "", 200, ""},
		{"engineer reads nodes", engineer, "GET", "/v1/status", "", 200, ""},
		{"engineer cannot predict", engineer, "POST", "/v1/models/fraud-a:predict", `{"instances":[[1]]}`, 403, `token lacks "allow" on predict "fraud-a"`},
		{"engineer cannot push a process version", engineer, "POST", `/v1/models/other/versions?format=process&process={"command":["/bin/true"]}`, "", 403, `token lacks "allow" on exec`},
		{"engineer cannot save a snapshot", engineer, "GET", "/v1/snapshot", "", 403, `token lacks "write" on operator`},
		{"engineer cannot write policies", engineer, "PUT", "/v1/acl/policies/x", `{"rules":""}`, 403, ""},
		{"operator lists peers", operator, "GET", "/v1/operator/raft/peers", "", 200, ""},
		{"operator lists tokens", operator, "GET", "/v1/acl/tokens", "", 200, ""},
		{"operator cannot create tokens", operator, "POST", "/v1/acl/tokens", `{"policies":["ops"]}`, 403, `token lacks "write" on acl`},
		{"malformed policy names its line", mgmt, "PUT", "/v1/acl/policies/bad", `{"rules":"model \"*\" { policy = \"read\" }\nmodle \"x\" { policy = \"read\" }"}`, 400, "line 2"},
		{"unknown policy word", mgmt, "PUT", "/v1/acl/policies/bad", `{"rules":"model \"*\" { policy = \"admin\" }"}`, 400, "line 1"},
		{"management policy is built in", mgmt, "PUT", "/v1/acl/policies/management", `{"rules":""}`, 400, "built in"},
		{"token with an unknown policy", mgmt, "POST", "/v1/acl/tokens", `{"policies":["nope"]}`, 400, `policy "nope" does not exist`},
		{"token with a bad ttl", mgmt, "POST", "/v1/acl/tokens", `{"policies":["ops"],"expiration_ttl":"soon"}`, 400, "expiration_ttl"},
		{"management reads all", mgmt, "GET", "/v1/models/other", "", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := callAs(t, a, tt.tok, tt.method, tt.path, tt.body)
			mustStatus(t, r, tt.want, tt.name)
			if msg, _ := r.body["error"].(string); !strings.Contains(msg, tt.errHas) {
				t.Fatalf("error %q does not contain %q", msg, tt.errHas)
			}
		})
	}

	t.Run("lists hold only what the token may read", func(t *testing.T) {
		r := callAs(t, a, serving, "GET", "/v1/models", "")
		mustStatus(t, r, 200, "list")
		items, _ := r.body["items"].([]any)
		if len(items) != 1 || items[0].(map[string]any)["name"] != "fraud-a" {
			t.Fatalf("serving token lists %v, want only fraud-a", items)
		}
	})
	t.Run("bearer header", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://"+a.HTTPAddr()+"/v1/models/fraud-a", nil)
		req.Header.Set("Authorization", "Bearer "+serving)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

func TestACL_TokenLifecycle(t *testing.T) {
	a, mgmt := aclSetup(t)
	tok := tokenFor(t, a, mgmt, "reader", `model "*" { policy = "read" }`)
	self := callAs(t, a, tok, "GET", "/v1/acl/token/self", "")
	mustStatus(t, self, 200, "self")
	accessor := self.body["accessor_id"].(string)
	if _, ok := self.body["secret_id"]; ok {
		t.Fatalf("token/self shows the secret: %v", self.body)
	}
	list := callAs(t, a, mgmt, "GET", "/v1/acl/tokens", "")
	if b, _ := json.Marshal(list.body); strings.Contains(string(b), tok) {
		t.Fatal("the token list shows a secret")
	}
	mustStatus(t, callAs(t, a, tok, "GET", "/v1/models", ""), 200, "before delete")
	mustStatus(t, callAs(t, a, mgmt, "DELETE", "/v1/acl/tokens/"+accessor, ""), 200, "delete")
	mustStatus(t, callAs(t, a, tok, "GET", "/v1/models", ""), 401, "after delete")
	mustStatus(t, callAs(t, a, mgmt, "DELETE", "/v1/acl/tokens/"+accessor, ""), 404, "delete again")

	r := callAs(t, a, mgmt, "POST", "/v1/acl/tokens", `{"policies":["reader"],"expiration_ttl":"1s"}`)
	mustStatus(t, r, 200, "short token")
	short := r.body["secret_id"].(string)
	mustStatus(t, callAs(t, a, short, "GET", "/v1/models", ""), 200, "before expiry")
	testutil.Until(t, 5*time.Second, "the token to expire", func() bool {
		return callAs(t, a, short, "GET", "/v1/models", "").status == 401
	})

	// A policy change applies at once to tokens that hold it.
	tok2 := tokenFor(t, a, mgmt, "grows", `node { policy = "read" }`)
	mustStatus(t, callAs(t, a, tok2, "GET", "/v1/models", ""), 200, "list (filtered)")
	mustStatus(t, callAs(t, a, tok2, "DELETE", "/v1/models/x", ""), 403, "no model write yet")
	mustStatus(t, callAs(t, a, mgmt, "PUT", "/v1/acl/policies/grows", `{"rules":"model \"*\" { policy = \"write\" }"}`), 200, "grow policy")
	mustStatus(t, callAs(t, a, tok2, "DELETE", "/v1/models/x", ""), 404, "model write now")
}

func TestACL_MetricsAnonymous(t *testing.T) {
	a, _ := aclSetup(t, func(c *Config) { c.ACL.MetricsAnonymous = true })
	mustStatus(t, callAs(t, a, "", "GET", "/metrics", ""), 200, "anonymous scrape")
	mustStatus(t, callAs(t, a, "", "GET", "/v1/status", ""), 401, "status still needs a token")
}

func TestACL_DisabledChecksNothing(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	mustStatus(t, callAs(t, a, "", "GET", "/v1/models", ""), 200, "no token, acl off")
	mustStatus(t, callAs(t, a, "", "GET", "/v1/acl/token/self", ""), 400, "token/self with acl off")
}

func TestACL_AuditLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit", "audit.log")
	a, mgmt := aclSetup(t, func(c *Config) { c.ACL.AuditFile = path })
	reader := tokenFor(t, a, mgmt, "reader", `model "*" { policy = "read" }`)
	mustStatus(t, callAs(t, a, mgmt, "POST", "/v1/models", `{"name":"audited"}`), 201, "create")
	mustStatus(t, callAs(t, a, reader, "GET", "/v1/models/audited", ""), 200, "read (not audited)")
	mustStatus(t, callAs(t, a, reader, "DELETE", "/v1/models/audited", ""), 403, "denied write")
	mustStatus(t, callAs(t, a, "", "GET", "/v1/models", ""), 401, "no token")
	mustStatus(t, callAs(t, a, reader, "POST", "/v1/models/audited:predict", `{"instances":[[1]]}`), 403, "denied predict")

	self := callAs(t, a, mgmt, "GET", "/v1/acl/token/self", "")
	mgmtAccessor := self.body["accessor_id"].(string)
	readerAccessor := callAs(t, a, reader, "GET", "/v1/acl/token/self", "").body["accessor_id"].(string)
	type line struct {
		AccessorID string `json:"accessor_id"`
		Method     string `json:"method"`
		Path       string `json:"path"`
		Status     int    `json:"status"`
		Node       string `json:"node"`
	}
	want := []line{
		{"", "POST", "/v1/acl/bootstrap", 200, a.cfg.NodeName},
		{mgmtAccessor, "PUT", "/v1/acl/policies/reader", 200, a.cfg.NodeName},
		{mgmtAccessor, "POST", "/v1/acl/tokens", 200, a.cfg.NodeName},
		{mgmtAccessor, "POST", "/v1/models", 201, a.cfg.NodeName},
		{readerAccessor, "DELETE", "/v1/models/audited", 403, a.cfg.NodeName},
		{"", "GET", "/v1/models", 401, a.cfg.NodeName},
		{readerAccessor, "POST", "/v1/models/audited:predict", 403, a.cfg.NodeName},
	}
	var got []line
	var raw []byte
	testutil.Until(t, 5*time.Second, "the audit lines", func() bool {
		raw, _ = os.ReadFile(path)
		got = nil
		for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			var x line
			if json.Unmarshal([]byte(l), &x) == nil {
				got = append(got, x)
			}
		}
		return len(got) >= len(want)
	})
	if len(got) != len(want) {
		t.Fatalf("audit lines:\n%s\nwant %d lines", raw, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, secret := range []string{mgmt, reader} {
		if strings.Contains(string(raw), secret) {
			t.Fatal("the audit log holds a token secret")
		}
	}
}

// BenchmarkPredict_ACL is the server's cost of one single-row prediction
// through the whole HTTP handler (routing, the ACL check, JSON, the model),
// without and with ACLs (a token on every request): what the ACL check adds
// to inference, without the network or a load generator in the figure.
//
//	go test -run '^$' -bench Predict_ACL -benchtime 200000x ./node/
func BenchmarkPredict_ACL(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "acl=off"
		if on {
			name = "acl=on"
		}
		b.Run(name, func(b *testing.B) {
			var a *Agent
			token := ""
			if on {
				a, token = aclSetup(b)
			} else {
				a = testNode(b)
				waitLeader(b, a)
			}
			h := a.routes()
			mustStatus(b, callAs(b, a, token, "POST", "/v1/models", `{"name":"iris"}`), 201, "create")
			req, _ := http.NewRequest("POST", "http://"+a.HTTPAddr()+"/v1/models/iris/versions", strings.NewReader(string(readTestdata(b, linearIrisFile))))
			req.Header.Set("X-Kiln-Token", token)
			if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 201 {
				b.Fatalf("push: %v %v", resp, err)
			}
			mustStatus(b, callAs(b, a, token, "PUT", "/v1/deployments/iris", `{"versions":[{"version":1,"weight":1}]}`), 200, "deploy")
			body := `{"instances":[[5.1,3.5,1.4,0.2]]}`
			testutil.Until(b, 20*time.Second, "the replica", func() bool {
				return callAs(b, a, token, "POST", "/v1/models/iris:predict", body).status == 200
			})
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				w := &discardWriter{h: http.Header{}}
				for pb.Next() {
					r, _ := http.NewRequest("POST", "/v1/models/iris:predict", strings.NewReader(body))
					if token != "" {
						r.Header.Set("X-Kiln-Token", token)
					}
					w.status = 0
					clear(w.h)
					h.ServeHTTP(w, r)
					if w.status != 200 {
						b.Fatalf("status %d", w.status)
					}
				}
			})
		})
	}
}

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *discardWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = 200
	}
	return len(b), nil
}

func TestACL_FilteredListsPageFully(t *testing.T) {
	a, mgmt := aclSetup(t)
	var want []string
	for _, m := range []string{"a1", "fraud-1", "b1", "fraud-2", "c1", "c2", "c3", "fraud-3", "fraud-4", "z1", "fraud-5"} {
		mustStatus(t, callAs(t, a, mgmt, "POST", "/v1/models", `{"name":"`+m+`"}`), 201, "create "+m)
		if strings.HasPrefix(m, "fraud-") {
			want = append(want, m)
		}
	}
	tok := tokenFor(t, a, mgmt, "fraud-reader", `model "fraud-*" { policy = "read" }`)
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("too many pages")
		}
		r := callAs(t, a, tok, "GET", "/v1/models?limit=2&cursor="+cursor, "")
		mustStatus(t, r, 200, "list")
		items, _ := r.body["items"].([]any)
		for _, it := range items {
			got = append(got, it.(map[string]any)["name"].(string))
		}
		cursor, _ = r.body["next_cursor"].(string)
		if cursor == "" {
			break
		}
		if len(items) != 2 {
			t.Fatalf("a page before the last holds %d items, want 2 (%v)", len(items), items)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("paged through %v, want %v", got, want)
	}
}

// TestACL_LeaderRechecksForwardedWrites sends apply_batch to the leader as a
// follower would, with the callers' tokens: the leader checks each token
// again against its own state.
func TestACL_LeaderRechecksForwardedWrites(t *testing.T) {
	a, mgmt := aclSetup(t)
	reader := tokenFor(t, a, mgmt, "reader", `model "*" { policy = "read" }`)
	gone := tokenFor(t, a, mgmt, "writer", `model "*" { policy = "write" }`)
	accessor := callAs(t, a, gone, "GET", "/v1/acl/token/self", "").body["accessor_id"].(string)
	mustStatus(t, callAs(t, a, mgmt, "DELETE", "/v1/acl/tokens/"+accessor, ""), 200, "delete")

	create := func(name string) []byte {
		b, err := structs.Encode(structs.ModelCreateType, &structs.ModelCreateRequest{Model: structs.Model{Name: name, CreatedAt: time.Now().UTC(), UpdatedAt: time.Now().UTC()}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	args := applyBatchArgs{
		Entries: [][]byte{create("by-mgmt"), create("by-reader"), create("by-deleted"), create("by-node")},
		Tokens:  []string{mgmt, reader, gone, ""},
	}
	var reply applyBatchReply
	if err := a.trans.Call(context.Background(), a.trans.Addr(), rpcApplyBatch, &args, &reply); err != nil {
		t.Fatal(err)
	}
	want := []string{"", structs.CodePermissionDenied, structs.CodeUnauthenticated, ""}
	for i, r := range reply.Results {
		if r.Code != want[i] {
			t.Errorf("entry %d: code %q (%s), want %q", i, r.Code, r.Message, want[i])
		}
	}
}

func TestCommandNeeds(t *testing.T) {
	enc := func(typ structs.MessageType, v any) []byte {
		b, err := structs.Encode(typ, v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name string
		data []byte
		want []commandNeed
	}{
		{"model create", enc(structs.ModelCreateType, &structs.ModelCreateRequest{Model: structs.Model{Name: "m"}}), []commandNeed{{structs.KindModel, "m", structs.AccessWrite}}},
		{"process version", enc(structs.VersionCreateType, &structs.VersionCreateRequest{Version: structs.ModelVersion{Model: "m", Format: structs.FormatProcess}}),
			[]commandNeed{{structs.KindModel, "m", structs.AccessWrite}, {structs.KindExec, "", structs.AccessAllow}}},
		{"alias", enc(structs.AliasSetType, &structs.AliasSetRequest{Model: "m"}), []commandNeed{{structs.KindModel, "m", structs.AccessWrite}}},
		{"deployment", enc(structs.DeploymentPutType, &structs.DeploymentPutRequest{Deployment: structs.Deployment{Name: "d"}}), []commandNeed{{structs.KindDeployment, "d", structs.AccessWrite}}},
		{"rollback", enc(structs.DeploymentRollbackType, &structs.DeploymentRollbackRequest{Name: "d"}), []commandNeed{{structs.KindDeployment, "d", structs.AccessWrite}}},
		{"token delete", enc(structs.ACLTokenDeleteType, &structs.ACLTokenDeleteRequest{AccessorID: "x"}), []commandNeed{{structs.KindACL, "", structs.AccessWrite}}},
		{"node upsert is the node's own", enc(structs.NodeUpsertType, &structs.NodeUpsertRequest{}), nil},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := commandNeeds(tt.data)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("commandNeeds = %v, want %v", got, tt.want)
			}
		})
	}
}
