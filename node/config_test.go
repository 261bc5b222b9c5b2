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
		{"no read timeout", func(c *Config) { c.HTTPReadTimeout = 0 }, "http.read_timeout"},
		{"no write timeout", func(c *Config) { c.HTTPWriteTimeout = 0 }, "http.write_timeout"},
		{"no idle timeout", func(c *Config) { c.HTTPIdleTimeout = 0 }, "http.idle_timeout"},
		{"no predict timeout", func(c *Config) { c.PredictTimeout = 0 }, "serving.predict_timeout"},
		{"write timeout within predict timeout", func(c *Config) { c.PredictTimeout = c.HTTPWriteTimeout }, "http.write_timeout"},
		{"no upload idle timeout", func(c *Config) { c.Limits.UploadIdleTimeout = 0 }, "limits.upload_idle_timeout"},
		{"no uploads", func(c *Config) { c.Limits.MaxConcurrentUploads = 0 }, "limits.max_concurrent_uploads"},
		{"no restores", func(c *Config) { c.Limits.MaxConcurrentRestores = 0 }, "limits.max_concurrent_restores"},
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

func TestParseNvidiaSMIUse(t *testing.T) {
	use, err := parseNvidiaSMIUse("0, 87, 30000\n1, [N/A], [N/A]\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(use) != 2 || use[0].UtilPct == nil || *use[0].UtilPct != 87 || use[0].MemoryUsedMB != 30000 || use[1].UtilPct != nil || use[1].Index != 1 {
		t.Errorf("got %+v", use)
	}
	for _, bad := range []string{"0, 87\n", "x, 87, 3\n"} {
		if _, err := parseNvidiaSMIUse(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
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

func TestConfig_BlobGCGraceCoversAnUpload(t *testing.T) {
	base := DefaultConfig()
	base.DataDir = "/tmp/x"
	base.Limits.UploadIdleTimeout = time.Minute
	floor := time.Minute + versionCommitWindow
	cases := []struct {
		name  string
		grace time.Duration
		idle  time.Duration
		ok    bool
	}{
		{"default", DefaultConfig().BlobGCGrace, time.Minute, true},
		{"at the floor", floor, time.Minute, true},
		{"below the floor", floor - time.Second, time.Minute, false},
		{"a longer idle timeout raises the floor", floor, 2 * time.Minute, false},
		{"zero", 0, time.Minute, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			c.BlobGCGrace, c.Limits.UploadIdleTimeout = tc.grace, tc.idle
			err := c.Validate()
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("blob_gc_grace %s with upload_idle_timeout %s validated", tc.grace, tc.idle)
			}
			for _, w := range []string{"serving.blob_gc_grace", "limits.upload_idle_timeout", "commit"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadFiles_LimitsAndTimeouts(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "limits.hcl", `
http {
  read_timeout  = "20s"
  write_timeout = "90s"
  idle_timeout  = "3m"
}
serving {
  predict_timeout = "5s"
  blob_gc_grace   = "30m"
}
limits {
  max_concurrent_uploads  = 8
  max_concurrent_restores = 2
  upload_idle_timeout     = "45s"
  max_dataset_bytes       = 1000000
}
`)
	cfg, err := LoadFiles(DefaultConfig(), []string{p})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPReadTimeout != 20*time.Second || cfg.HTTPWriteTimeout != 90*time.Second || cfg.HTTPIdleTimeout != 3*time.Minute {
		t.Errorf("http: read %s write %s idle %s", cfg.HTTPReadTimeout, cfg.HTTPWriteTimeout, cfg.HTTPIdleTimeout)
	}
	if cfg.PredictTimeout != 5*time.Second || cfg.BlobGCGrace != 30*time.Minute {
		t.Errorf("serving: predict %s grace %s", cfg.PredictTimeout, cfg.BlobGCGrace)
	}
	if want := (LimitsConfig{MaxConcurrentUploads: 8, MaxDatasetBytes: 1e6, MaxConcurrentRestores: 2, UploadIdleTimeout: 45 * time.Second}); cfg.Limits != want {
		t.Errorf("limits: %+v, want %+v", cfg.Limits, want)
	}
	cfg.DataDir = "/tmp/x"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ body, want string }{
		{"limits {\n  max_concurrent_upload = 2\n}\n", "max_concurrent_upload"},
		{"limits {\n  upload_idle_timeout = \"soon\"\n}\n", "limits.upload_idle_timeout"},
		{"http {\n  write_timeout = \"x\"\n}\n", "http.write_timeout"},
	} {
		p := writeFile(t, dir, "bad.hcl", bad.body)
		if _, err := LoadFiles(DefaultConfig(), []string{p}); err == nil || !strings.Contains(err.Error(), bad.want) || !strings.Contains(err.Error(), "bad.hcl:2") {
			t.Errorf("%q: %v, want an error naming bad.hcl:2 and %s", bad.body, err, bad.want)
		}
	}
}

func TestLoadFiles_Monitoring(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "mon.hcl", `
monitoring {
  sample_rate    = 0.25
  retention      = "24h"
  max_log_bytes  = 104857600
  label_grace    = "10m"
  alert_interval = "2s"
}
`)
	cfg, err := LoadFiles(DefaultConfig(), []string{p})
	if err != nil {
		t.Fatal(err)
	}
	want := MonitoringConfig{SampleRate: 0.25, Retention: 24 * time.Hour, MaxLogBytes: 100 << 20, LabelGrace: 10 * time.Minute, AlertInterval: 2 * time.Second}
	if cfg.Monitoring != want {
		t.Fatalf("monitoring = %+v, want %+v", cfg.Monitoring, want)
	}
	for _, bad := range []struct{ body, want string }{
		{"monitoring {\n  sample_rate = 2\n}\n", "monitoring.sample_rate"},
		{"monitoring {\n  alert_interval = \"0s\"\n}\n", "alert_interval"},
		{"monitoring {\n  max_log_bytes = 10\n}\n", "max_log_bytes"},
		{"monitoring {\n  retention = \"later\"\n}\n", "monitoring.retention"},
	} {
		p := writeFile(t, dir, "bad.hcl", bad.body)
		cfg, err := LoadFiles(DefaultConfig(), []string{p})
		if err == nil {
			cfg.DataDir = dir
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: %v, want an error naming %s", bad.body, err, bad.want)
		}
	}
}
