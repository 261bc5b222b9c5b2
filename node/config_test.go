package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadFiles_MergesInOrder(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a.hcl", `
node_name = "a"
data_dir = "/tmp/a"
bind_addr = "127.0.0.11"
bootstrap_expect = 3
retry_join = ["127.0.0.12"]
dead_node_reap = "2m"
raft {
  snapshot_threshold = 100
  trailing_logs = 50
}
resources {
  gpu {
    model = "A100"
    memory_mb = 40960
    count = 2
  }
}
`)
	b := writeFile(t, dir, "b.hcl", `
node_name = "b"
log_level = "debug"
http { max_body_bytes = 1024 }
`)
	cfg, err := LoadFiles(DefaultConfig(), []string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NodeName != "b" || cfg.DataDir != "/tmp/a" || cfg.BindAddr != "127.0.0.11" {
		t.Errorf("merge: got name=%q data_dir=%q bind=%q", cfg.NodeName, cfg.DataDir, cfg.BindAddr)
	}
	if cfg.BootstrapExpect != 3 || len(cfg.RetryJoin) != 1 || cfg.DeadNodeReap != 2*time.Minute {
		t.Errorf("got expect=%d join=%v reap=%s", cfg.BootstrapExpect, cfg.RetryJoin, cfg.DeadNodeReap)
	}
	if cfg.SnapshotThreshold != 100 || cfg.TrailingLogs != 50 || cfg.MaxBodyBytes != 1024 || cfg.LogLevel != "debug" {
		t.Errorf("got threshold=%d trailing=%d body=%d level=%s", cfg.SnapshotThreshold, cfg.TrailingLogs, cfg.MaxBodyBytes, cfg.LogLevel)
	}
	if len(cfg.GPUs) != 1 || cfg.GPUs[0].Count != 2 || cfg.GPUs[0].MemoryMB != 40960 {
		t.Errorf("gpus: %+v", cfg.GPUs)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("validate: %v", err)
	}
}

func TestLoadFiles_Errors(t *testing.T) {
	cases := []struct {
		name string
		body string
		want []string // substrings of the error
	}{
		{"unknown key", "node_name = \"x\"\nbogus_key = 1\n", []string{"bad.hcl:2", "bogus_key"}},
		{"unknown block key", "raft {\n  snapshot_treshold = 5\n}\n", []string{"bad.hcl:2", "snapshot_treshold"}},
		{"bad duration", "node_name = \"x\"\ndead_node_reap = \"soon\"\n", []string{"bad.hcl:2", "dead_node_reap"}},
		{"bad nested duration", "raft {\n\n  snapshot_interval = \"x\"\n}\n", []string{"bad.hcl:3", "raft.snapshot_interval"}},
		{"wrong type", "bootstrap_expect = \"three\"\n", []string{"bad.hcl:1", "bootstrap_expect"}},
		{"bad encrypt", "encrypt = \"c2hvcnQ=\"\n", []string{"bad.hcl:1", "encrypt", "32 bytes"}},
		{"syntax", "node_name = \n", []string{"bad.hcl:1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), "bad.hcl", tc.body)
			_, err := LoadFiles(DefaultConfig(), []string{p})
			if err == nil {
				t.Fatal("expected an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestConfig_Validate(t *testing.T) {
	ok := DefaultConfig()
	ok.DataDir = "/tmp/x"
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data_dir"},
		{"bad bind", func(c *Config) { c.BindAddr = "nope" }, "bind_addr"},
		{"expect over max", func(c *Config) { c.BootstrapExpect = 7 }, "bootstrap_expect"},
		{"bad level", func(c *Config) { c.LogLevel = "loud" }, "log_level"},
		{"short key", func(c *Config) { c.EncryptKey = []byte("x") }, "encrypt"},
		{"gpu without model", func(c *Config) { c.GPUs = []GPUDecl{{MemoryMB: 1, Count: 1}} }, "resources.gpu[0].model"},
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults with data_dir should validate: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want error naming %s", err, tc.want)
			}
		})
	}
}

func TestParseNvidiaSMI(t *testing.T) {
	gpus, err := parseNvidiaSMI("0, GPU-aaa, NVIDIA A100-SXM4-80GB, 81920\n1, GPU-bbb, NVIDIA A100-SXM4-80GB, 81920\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) != 2 || gpus[1].UUID != "GPU-bbb" || gpus[0].MemoryMB != 81920 || gpus[0].Model != "NVIDIA A100-SXM4-80GB" {
		t.Errorf("got %+v", gpus)
	}
	if _, err := parseNvidiaSMI("0, GPU-aaa, x\n"); err == nil {
		t.Error("short line should fail")
	}
}

func TestFingerprint_DeclaredGPUs(t *testing.T) {
	res := Fingerprint([]GPUDecl{{Model: "T4", MemoryMB: 16384, Count: 2}}, "n1")
	if res.CPUCores < 1 {
		t.Errorf("cpu cores %d", res.CPUCores)
	}
	if res.GPUSource == "config" {
		if len(res.GPUs) != 2 || res.GPUs[1].Index != 1 || res.GPUs[1].UUID == res.GPUs[0].UUID {
			t.Errorf("declared gpus: %+v", res.GPUs)
		}
	}
}

func TestLoadFiles_AccessBlocks(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "acl.hcl", `
node_name = "n"
data_dir  = "/tmp/n"
insecure  = true
acl {
  enabled           = true
  default_policy    = "allow"
  token_ttl_cache   = "5s"
  metrics_anonymous = true
  audit_file        = "/var/log/kiln/audit.log"
}
exec {
  enabled          = true
  allowed_commands = ["/opt/models/*/serve", "python3"]
  allowed_env      = ["PATH"]
}
http {
  tls {
    cert_file      = "c.pem"
    key_file       = "k.pem"
    client_ca_file = "ca.pem"
  }
}
`)
	cfg, err := LoadFiles(DefaultConfig(), []string{p})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.ACL.Enabled || cfg.ACL.DefaultPolicy != "allow" || cfg.ACL.TokenTTLCache != 5*time.Second || !cfg.ACL.MetricsAnonymous || cfg.ACL.AuditFile == "" {
		t.Errorf("acl: %+v", cfg.ACL)
	}
	if !cfg.Exec.Enabled || len(cfg.Exec.AllowedCommands) != 2 || cfg.Exec.AllowedEnv[0] != "PATH" {
		t.Errorf("exec: %+v", cfg.Exec)
	}
	if cfg.HTTPTLS == nil || cfg.HTTPTLS.ClientCAFile != "ca.pem" || !cfg.Insecure {
		t.Errorf("http.tls %+v insecure %v", cfg.HTTPTLS, cfg.Insecure)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// Unknown keys in the new blocks name themselves.
	bad := writeFile(t, dir, "bad.hcl", "acl {\n  enabeld = true\n}\n")
	if _, err := LoadFiles(DefaultConfig(), []string{bad}); err == nil || !strings.Contains(err.Error(), "enabeld") || !strings.Contains(err.Error(), ":2,") {
		t.Errorf("unknown acl key: %v", err)
	}
}

func TestConfig_ACLNeedsEncryptAndTLS(t *testing.T) {
	base := DefaultConfig()
	base.NodeName, base.DataDir = "n", "/tmp/n"
	base.ACL.Enabled = true
	err := base.Validate()
	if err == nil || !strings.Contains(err.Error(), "encrypt") || !strings.Contains(err.Error(), "tls") || !strings.Contains(err.Error(), "insecure = true") {
		t.Fatalf("acl without encrypt or tls: %v, want a refusal naming both and insecure", err)
	}
	withBoth := base
	withBoth.EncryptKey = make([]byte, 32)
	withBoth.TLS = &TLSFiles{CertFile: "c", KeyFile: "k", CAFile: "ca"}
	if err := withBoth.Validate(); err != nil {
		t.Fatalf("acl with encrypt and tls: %v", err)
	}
	insecure := base
	insecure.Insecure = true
	if err := insecure.Validate(); err != nil {
		t.Fatalf("acl with insecure = true: %v", err)
	}
	dev := base
	dev.Dev = true
	if err := dev.Validate(); err != nil {
		t.Fatalf("acl in -dev: %v", err)
	}
	for _, c := range []func(*Config){
		func(c *Config) { c.ACL.DefaultPolicy = "maybe" },
		func(c *Config) { c.ACL.TokenTTLCache = 0 },
		func(c *Config) { c.Exec.AllowedCommands = []string{"["} },
		func(c *Config) { c.Exec.AllowedEnv = []string{"A=B"} },
		func(c *Config) { c.HTTPTLS = &HTTPTLSFiles{CertFile: "c"} },
	} {
		bad := insecure
		c(&bad)
		if err := bad.Validate(); err == nil {
			t.Errorf("config %+v %+v %+v validated", bad.ACL, bad.Exec, bad.HTTPTLS)
		}
	}
}
