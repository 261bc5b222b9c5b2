package clustertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// createToken applies a policy with the CLI and creates a token holding it,
// returning the token's accessor ID and secret.
func createToken(t *testing.T, nd *node, policy, rules string, extra ...string) (accessor, secret string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), policy+".hcl")
	if err := os.WriteFile(path, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := nd.cli("acl policy apply", policy, path); err != nil {
		t.Fatalf("acl policy apply %s: %v %s", policy, err, out)
	}
	out, err := nd.cli("acl token create", append([]string{"-policy", policy, "-format", "json"}, extra...)...)
	if err != nil {
		t.Fatalf("acl token create: %v", err)
	}
	var tok struct {
		AccessorID string `json:"accessor_id"`
		SecretID   string `json:"secret_id"`
	}
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.SecretID == "" {
		t.Fatalf("acl token create printed %q (%v)", out, err)
	}
	// The token is committed, but a follower may not have applied it yet: wait
	// until every node knows it, as a client reading its own write would.
	for _, other := range nd.c.running() {
		testutil.WaitFor(t, 10*time.Second, func() error {
			r, err := other.callAs(tok.SecretID, "GET", "/v1/acl/token/self", nil)
			if err != nil || r.status != http.StatusOK {
				return fmt.Errorf("%s does not know the new token yet: %v %v", other.name, r, err)
			}
			return nil
		})
	}
	return tok.AccessorID, tok.SecretID
}

// expectStatus fails the test unless the request as token gets want.
func expectStatus(t testing.TB, nd *node, token, method, path string, body any, want int) *response {
	t.Helper()
	r, err := nd.callAs(token, method, path, body)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, nd.name, err)
	}
	if r.status != want {
		t.Fatalf("%s %s on %s: %s, want HTTP %d", method, path, nd.name, r, want)
	}
	return r
}

// TestCluster_ACL is the operator's story of the access-control issue on
// three nodes with acl { enabled = true }: a bootstrap raced on every node
// yields one management token; a serving token predicts through every node
// but may not deploy, push or read other models; deleting a token takes
// effect on every node; expired tokens stop working; a process version needs
// the exec capability and stays unplaced where no node allows exec.
func TestCluster_ACL(t *testing.T) {
	c := newCluster(t, 3, withACL())
	nodes := c.all()
	n1 := nodes[0]

	t.Run("bootstrap once", func(t *testing.T) {
		ok := 0
		for _, r := range c.bootstraps {
			if r.status == http.StatusOK {
				ok++
			}
		}
		if ok != 1 {
			t.Fatalf("%d of %d racing bootstraps succeeded, want 1", ok, len(c.bootstraps))
		}
		var list struct {
			Items []struct {
				Policies []string `json:"policies"`
			} `json:"items"`
		}
		if err := n1.getJSON("/v1/acl/tokens?consistency=consistent", &list); err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != 1 {
			t.Fatalf("%d tokens after the bootstrap race, want exactly one: %+v", len(list.Items), list.Items)
		}
		for _, nd := range nodes {
			if out, err := nd.cli("acl bootstrap", "-token", ""); err == nil || !strings.Contains(err.Error(), "already") {
				t.Fatalf("second bootstrap through %s: %q, %v; want it refused", nd.name, out, err)
			}
		}
	})

	t.Run("no token, no entry", func(t *testing.T) {
		for _, nd := range nodes {
			for _, p := range []string{"/v1/models", "/v1/status", "/metrics", "/v2/health/ready", "/v1/snapshot"} {
				expectStatus(t, nd, "", "GET", p, nil, http.StatusUnauthorized)
			}
			expectStatus(t, nd, "", "POST", "/v1/models", map[string]any{"name": "x"}, http.StatusUnauthorized)
		}
	})

	_, engineer := createToken(t, n1, "ml-engineer", `
model "*"      { policy = "write" }
deployment "*" { policy = "write" }
node           { policy = "read" }
`)
	servingAccessor, serving := createToken(t, n1, "fraud-serving", `
predict "fraud-*" { policy = "allow" }
model "fraud-*"   { policy = "read" }
`)

	// The engineer pushes and deploys with the CLI.
	iris := filepath.Join(testdataDir, "linear", "iris.json")
	for _, name := range []string{"fraud-a", "churn"} {
		if out, err := n1.cli("models create", "-token", engineer, name); err != nil {
			t.Fatalf("engineer creates %s: %v %s", name, err, out)
		}
		if out, err := n1.cli("models push", "-token", engineer, name, iris); err != nil {
			t.Fatalf("engineer pushes %s: %v %s", name, err, out)
		}
	}
	if out, err := nodes[1].cli("deploy", "-token", engineer, "-version", "1", "-replicas", "2", "-wait", "60s", "fraud-a"); err != nil {
		t.Fatalf("engineer deploys: %v %s", err, out)
	}
	c.waitRunning(n1, "fraud-a", 2, 1)

	t.Run("serving token predicts everywhere and does nothing else", func(t *testing.T) {
		row := map[string]any{"instances": [][]float64{{5.1, 3.5, 1.4, 0.2}}}
		for _, nd := range nodes {
			r := expectStatus(t, nd, serving, "POST", "/v1/models/fraud-a:predict", row, http.StatusOK)
			var p prediction
			if err := json.Unmarshal(r.body, &p); err != nil || len(p.Predictions) != 1 {
				t.Fatalf("predict through %s: %s (%v)", nd.name, r, err)
			}
			if out, err := nd.cli("predict", "-token", serving, "-data", "[[5.1,3.5,1.4,0.2]]", "fraud-a"); err != nil {
				t.Fatalf("kiln predict through %s: %v %s", nd.name, err, out)
			}
			r = expectStatus(t, nd, serving, "PUT", "/v1/deployments/fraud-a",
				map[string]any{"versions": []map[string]any{{"version": 1, "weight": 100}}}, http.StatusForbidden)
			if !strings.Contains(string(r.body), `token lacks \"write\" on deployment \"fraud-a\"`) {
				t.Fatalf("403 on deploy does not name what is missing: %s", r)
			}
			expectStatus(t, nd, serving, "POST", "/v1/models/fraud-a/versions?format=linear", nil, http.StatusForbidden)
			expectStatus(t, nd, serving, "GET", "/v1/models/churn", nil, http.StatusForbidden)
			expectStatus(t, nd, serving, "POST", "/v1/models/churn:predict", row, http.StatusForbidden)
			expectStatus(t, nd, serving, "GET", "/v1/models/fraud-a", nil, http.StatusOK)
			var list struct {
				Items []model `json:"items"`
			}
			r = expectStatus(t, nd, serving, "GET", "/v1/models", nil, http.StatusOK)
			if err := json.Unmarshal(r.body, &list); err != nil || len(list.Items) != 1 || list.Items[0].Name != "fraud-a" {
				t.Fatalf("serving token's model list through %s: %s", nd.name, r)
			}
		}
		if _, err := n1.cli("deploy", "-token", serving, "-version", "1", "fraud-a"); err == nil || !strings.Contains(err.Error(), "permission_denied") {
			t.Fatalf("kiln deploy with the serving token: %v, want permission_denied", err)
		}
	})

	t.Run("a deleted token is refused on every node", func(t *testing.T) {
		r := expectStatus(t, nodes[2], c.token, "DELETE", "/v1/acl/tokens/"+servingAccessor, nil, http.StatusOK)
		deleted := time.Now()
		// Read at the delete's index, every node has applied it: refused.
		for _, nd := range nodes {
			expectStatus(t, nd, serving, "GET", fmt.Sprintf("/v1/models/fraud-a?index=%d", r.index()), nil, http.StatusUnauthorized)
		}
		// And without waiting for the index: how long until each node refuses it
		// (a figure, logged; the benchmark BenchmarkTokenRevocation measures it).
		for _, nd := range nodes {
			testutil.WaitFor(t, 5*time.Second, func() error {
				r, err := nd.callAs(serving, "GET", "/v1/models/fraud-a", nil)
				if err != nil || r.status != http.StatusUnauthorized {
					return fmt.Errorf("%s still takes the deleted token: %v %v", nd.name, r, err)
				}
				return nil
			})
		}
		t.Logf("deleted token refused on all nodes %s after the DELETE returned", time.Since(deleted))
	})

	t.Run("an expired token is refused", func(t *testing.T) {
		_, short := createToken(t, n1, "short", `model "*" { policy = "read" }`, "-ttl", "2s")
		expectStatus(t, nodes[1], short, "GET", "/v1/models/churn", nil, http.StatusOK)
		testutil.WaitFor(t, 10*time.Second, func() error {
			for _, nd := range nodes {
				if r, err := nd.callAs(short, "GET", "/v1/models/churn", nil); err != nil || r.status != http.StatusUnauthorized {
					return fmt.Errorf("%s: %v %v", nd.name, r, err)
				}
			}
			return nil
		})
	})

	t.Run("process versions need exec, and a node that allows it", func(t *testing.T) {
		spec := url.QueryEscape(`{"command":["/bin/sleep","3600"]}`)
		path := "/v1/models/churn/versions?format=process&process=" + spec
		r := expectStatus(t, nodes[1], engineer, "POST", path, nil, http.StatusForbidden)
		if !strings.Contains(string(r.body), "exec") {
			t.Fatalf("403 does not name exec: %s", r)
		}
		_, runner := createToken(t, n1, "runner", `
model "*"      { policy = "write" }
deployment "*" { policy = "write" }
exec           { policy = "allow" }
`)
		r = expectStatus(t, nodes[1], runner, "POST", path, nil, http.StatusCreated)
		var v version
		if err := json.Unmarshal(r.body, &v); err != nil {
			t.Fatal(err)
		}
		expectStatus(t, nodes[2], runner, "PUT", "/v1/deployments/churn",
			map[string]any{"versions": []map[string]any{{"version": v.Version, "weight": 100}}}, http.StatusOK)
		// No node enables exec: the replica is never placed, and says why.
		var d struct {
			Unplaced      json.RawMessage `json:"unplaced"`
			ReplicaStates []replicaState  `json:"replica_states"`
		}
		testutil.WaitFor(t, 20*time.Second, func() error {
			r, err := n1.callAs(runner, "GET", "/v1/deployments/churn", nil)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(r.body, &d); err != nil {
				return err
			}
			if len(d.Unplaced) == 0 || !strings.Contains(string(d.Unplaced), "exec") {
				return fmt.Errorf("deployment churn: unplaced %s, want a reason naming exec", d.Unplaced)
			}
			return nil
		})
		holdsFor(t, 2*time.Second, func() error {
			if err := n1.getJSON("/v1/deployments/churn", &d); err != nil {
				return err
			}
			if len(d.ReplicaStates) != 0 {
				return fmt.Errorf("a process replica was placed with exec off everywhere: %+v", d.ReplicaStates)
			}
			return nil
		})
	})
}

// TestCluster_HTTPS drives a cluster whose API is HTTPS with client
// certificates and ACLs, with the CLI: a client without a certificate is
// refused, and a snapshot restored through a follower reaches the leader
// (over the RPC port: HTTPS between nodes would need client certificates).
func TestCluster_HTTPS(t *testing.T) {
	ca, cert, key := writeTestPKI(t, t.TempDir())
	c := newCluster(t, 3, withHTTPS(ca, cert, key), withACL())
	nodes := c.all()
	if out, err := nodes[0].cli("models create", "over-https"); err != nil {
		t.Fatalf("kiln models create over HTTPS: %v %s", err, out)
	}
	for _, nd := range nodes {
		out, err := nd.cli("models get", "-consistency", "consistent", "over-https")
		if err != nil || !strings.Contains(out, "over-https") {
			t.Fatalf("kiln models get through %s: %v %q", nd.name, err, out)
		}
	}
	// Plain HTTP to the HTTPS port fails, and so does TLS without a client
	// certificate.
	if _, err := runKiln("status", "-address", "http://"+nodes[0].httpAddr()); err == nil {
		t.Fatal("plain HTTP to an HTTPS node succeeded")
	}
	if _, err := runKiln("status", "-address", "https://"+nodes[0].httpAddr(), "-ca-cert", ca); err == nil {
		t.Fatal("HTTPS without a client certificate succeeded")
	}

	file := filepath.Join(t.TempDir(), "registry.snap")
	if out, err := nodes[0].cli("snapshot save", file); err != nil {
		t.Fatalf("snapshot save over HTTPS: %v %s", err, out)
	}
	nodes[0].createModel("after-save", nil)
	leader := c.waitLeader(leaderTimeout)
	if out, err := c.others(leader)[0].cli("snapshot restore", file); err != nil {
		t.Fatalf("snapshot restore through a follower over HTTPS: %v %s", err, out)
	}
	testutil.WaitFor(t, 20*time.Second, func() error {
		names, err := leader.modelNames("consistency=consistent")
		if err != nil {
			return err
		}
		if len(names) != 1 || names[0] != "over-https" {
			return fmt.Errorf("models after the restore: %v, want [over-https]", names)
		}
		return nil
	})
}

// TestCluster_ACLRollingEnable turns ACLs on in a running cluster the way the
// README says: bootstrap while they are off, then restart the nodes one at a
// time with acl { enabled = true }. Writes keep working through the rollout,
// and each restarted node refuses requests without a token.
func TestCluster_ACLRollingEnable(t *testing.T) {
	c := newCluster(t, 3)
	nodes := c.all()
	r := nodes[1].write("POST", "/v1/acl/bootstrap", nil, http.StatusOK)
	var tok struct {
		SecretID string `json:"secret_id"`
	}
	if err := json.Unmarshal(r.body, &tok); err != nil || tok.SecretID == "" {
		t.Fatalf("bootstrap with ACLs off: %s", r)
	}
	c.token = tok.SecretID
	for i, nd := range nodes {
		path := filepath.Join(nd.dir, "acl.hcl")
		if err := os.WriteFile(path, []byte("insecure = true\nacl {\n  enabled = true\n}\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		nd.configs = append(nd.configs, path)
		nd.stop()
		c.others(nd)[0].createModel(fmt.Sprintf("during-%d", i), nil)
		nd.restart()
		c.waitLeader(leaderTimeout)
		c.waitVoters(3, leaderTimeout)
		expectStatus(t, nd, "", "GET", "/v1/models", nil, http.StatusUnauthorized)
		nd.createModel(fmt.Sprintf("after-%d", i), nil)
	}
	names, err := nodes[0].modelNames("consistency=consistent")
	if err != nil || len(names) != 6 {
		t.Fatalf("models after the rollout: %v %v, want 6", names, err)
	}
}
