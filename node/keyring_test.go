package node

import (
	"bytes"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

func TestKeyring_SavedKeyringWinsOverConfig(t *testing.T) {
	dir := t.TempDir()
	cfgKey := bytes.Repeat([]byte{1}, 32)
	newKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
	log := hclog.NewNullLogger()

	if k, err := loadKeyring(dir, nil, log); err != nil || k != nil {
		t.Fatalf("no key, no file: %v %v, want no keyring", k, err)
	}
	k, err := loadKeyring(dir, cfgKey, log)
	if err != nil || !bytes.Equal(k.kr.GetPrimaryKey(), cfgKey) {
		t.Fatalf("first start: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, keyringFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved keyring: %v %v, want mode 0600", fi, err)
	}
	for _, op := range []string{keyringInstall, keyringUse} {
		if _, err := k.apply(op, newKey); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
	}
	if _, err := k.apply(keyringRemove, newKey); err == nil {
		t.Fatal("removed the primary key")
	}
	if _, err := k.apply(keyringRemove, base64.StdEncoding.EncodeToString(cfgKey)); err != nil {
		t.Fatal(err)
	}
	if _, err := k.apply(keyringInstall, "not base64!"); err == nil {
		t.Fatal("installed a bad key")
	}
	// Restarted with the same config: the saved keyring, not the config key.
	k2, err := loadKeyring(dir, cfgKey, log)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := k2.apply(keyringList, "")
	if len(st.Keys) != 1 || st.Primary != newKey {
		t.Fatalf("after restart: %+v, want only the new key as primary", st)
	}
}

// TestKeyring_HTTPRotation rotates the key of two in-process agents through
// the HTTP API, one step after another, and checks the refusals on the way.
func TestKeyring_HTTPRotation(t *testing.T) {
	oldKey := bytes.Repeat([]byte{3}, 32)
	newKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{4}, 32))
	oldB64 := base64.StdEncoding.EncodeToString(oldKey)
	encrypted := func(c *Config) { c.EncryptKey = oldKey }
	a := testNode(t, encrypted)
	b := testNode(t, encrypted, func(c *Config) { c.RetryJoin = []string{a.cfg.BindAddr}; c.BootstrapExpect = 0 })
	bothAlive := func() bool { return len(a.gossip.alive()) == 2 && len(b.gossip.alive()) == 2 }
	testutil.Until(t, 30*time.Second, "the two agents to see each other", bothAlive)

	body := func(key string) string { return `{"key":"` + key + `"}` }
	steps := []struct {
		name, method, body string
		via                *Agent
		status             int
		errHas             string // in the error message; "" for success
	}{
		{"bad key", "POST", body("bm9wZQ=="), a, 400, "16, 24 or 32 bytes"},
		{"use before install", "PUT", body(newKey), a, 409, "not installed"},
		{"install", "POST", body(newKey), a, 200, ""},
		{"remove the primary", "DELETE", body(oldB64), b, 409, "primary"},
		{"use", "PUT", body(newKey), b, 200, ""},
		{"remove the old key", "DELETE", body(oldB64), a, 200, ""},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r := call(t, s.via, s.method, "/v1/operator/keyring", s.body)
			if r.status != s.status {
				t.Fatalf("%s: %d %v, want %d", s.method, r.status, r.body, s.status)
			}
			msg, _ := r.body["error"].(string)
			if s.errHas != "" && !strings.Contains(msg, s.errHas) {
				t.Errorf("error %q, want it to say %q", msg, s.errHas)
			}
			if strings.Contains(msg, newKey) || strings.Contains(msg, oldB64) {
				t.Errorf("error %q gives a whole key away", msg)
			}
			if s.status == 200 && len(r.body["nodes"].([]any)) != 2 {
				t.Errorf("answered for %v, want both nodes", r.body["nodes"])
			}
			if !bothAlive() {
				t.Errorf("a member dropped out after %s", s.name)
			}
		})
	}

	r := call(t, b, "GET", "/v1/operator/keyring", "")
	keys, _ := r.body["keys"].([]any)
	if r.status != 200 || len(keys) != 1 {
		t.Fatalf("list: %d %v, want the new key alone", r.status, r.body)
	}
	k := keys[0].(map[string]any)
	if k["key"] != newKey || k["installed"] != 2.0 || k["primary"] != 2.0 {
		t.Errorf("list: %v, want the new key installed and primary on 2 nodes", k)
	}
	// The two still talk, now with the new key only: a ping each way is
	// encrypted with it and must be answered.
	for _, p := range [][2]*Agent{{a, b}, {b, a}} {
		to := p[1].gossip.ml.LocalNode()
		if _, err := p[0].gossip.ml.Ping(to.Name, &net.UDPAddr{IP: to.Addr, Port: int(to.Port)}); err != nil {
			t.Errorf("%s pinging %s after the rotation: %v", p[0].cfg.NodeName, to.Name, err)
		}
	}
}

func TestKeyring_HTTPEncryptionOff(t *testing.T) {
	a := testNode(t)
	for _, method := range []string{"GET", "POST"} {
		body := ""
		if method == "POST" {
			body = `{"key":"` + base64.StdEncoding.EncodeToString(make([]byte, 32)) + `"}`
		}
		r := call(t, a, method, "/v1/operator/keyring", body)
		if msg, _ := r.body["error"].(string); r.status != 400 || !strings.Contains(msg, "encryption is off") {
			t.Errorf("%s without encrypt: %d %v, want 400 saying encryption is off", method, r.status, r.body)
		}
	}
}
