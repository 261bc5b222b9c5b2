package node

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/kilnml/kiln/ml/onnx"
)

// Default ports. One TCP port carries Raft and RPC (the transport multiplexes them),
// gossip has its own TCP+UDP port, HTTP its own.
const (
	DefaultHTTPPort   = 7070
	DefaultRPCPort    = 7071
	DefaultGossipPort = 7072
	DefaultGRPCPort   = 7073
)

// Config is the agent's whole configuration after files and flags are merged.
type Config struct {
	NodeName      string
	DataDir       string
	BindAddr      string // IP for gossip, RPC and HTTP unless overridden
	AdvertiseAddr string // IP other nodes use to reach this one; defaults to BindAddr, or see settleAdvertiseAddr
	HTTPAddr      string // host:port
	RPCPort       int
	GossipPort    int
	// GRPCPort serves the Open Inference Protocol v2 over gRPC on the HTTP
	// address's host; -1 turns it off, 0 takes any free port.
	GRPCPort        int
	BootstrapExpect int
	RetryJoin       []string // host[:gossip_port]
	RetryInterval   time.Duration
	EncryptKey      []byte // 32 bytes, or nil
	LogLevel        string
	LogJSON         bool
	MaxVoters       int
	DeadNodeReap    time.Duration
	// ServerStabilization is how long a non-voter must be healthy before promotion.
	ServerStabilization time.Duration
	SnapshotThreshold   uint64
	SnapshotInterval    time.Duration
	TrailingLogs        uint64
	MaxBodyBytes        int64
	TLS                 *TLSFiles
	GPUs                []GPUDecl
	EnableDebug         bool // exposes fault injection endpoints (tests)
	Dev                 bool

	// HTTPReadTimeout bounds the time to read a request, headers and body
	// (http { read_timeout }); uploads and restores read their body under
	// Limits.UploadIdleTimeout instead.
	HTTPReadTimeout time.Duration
	// HTTPWriteTimeout bounds the time from a request's headers to the end
	// of its answer (http { write_timeout }); uploads and snapshots lift it
	// and write under Limits.UploadIdleTimeout instead.
	HTTPWriteTimeout time.Duration
	// HTTPIdleTimeout closes a keep-alive connection idle this long
	// (http { idle_timeout }).
	HTTPIdleTimeout time.Duration

	// ArtifactReplicas is how many nodes store an uploaded artifact before its
	// version is recorded (capped at the number of alive nodes).
	ArtifactReplicas int
	// MaxArtifactBytes bounds one uploaded artifact.
	MaxArtifactBytes int64
	// BlobGCInterval is how often unreferenced blobs are collected; a blob is
	// collected only once it is older than BlobGCGrace, which covers uploads
	// whose version is not yet committed.
	BlobGCInterval time.Duration
	BlobGCGrace    time.Duration
	// PredictTimeout is the server-side deadline of one prediction (v1
	// :predict and v2 infer) whose deployment sets no timeout_ms; it also
	// bounds a prediction's wait for ?index=.
	PredictTimeout time.Duration

	// Limits bounds the uploads and restores a node takes at once (limits {}).
	Limits LimitsConfig

	// FeatureStore says where online feature lookups read the latest
	// values (feature_store {}).
	FeatureStore FeatureStoreConfig

	// Monitoring is the prediction log and the alert evaluator
	// (monitoring {}).
	Monitoring MonitoringConfig

	// ONNX chooses the runtime of ONNX models (onnx {}).
	ONNX ONNXConfig

	// ACL is access control for the HTTP API (acl {}).
	ACL ACLConfig
	// Exec says which commands this node may run as processes (exec {}).
	Exec ExecConfig
	// HTTPTLS serves the HTTP API over TLS when set (http { tls {} }).
	HTTPTLS *HTTPTLSFiles
	// Insecure lets a non-dev agent with ACLs enabled start without gossip
	// encryption or transport TLS: the operator says they know what is open.
	Insecure bool
}

// Online feature stores.
const (
	OnlineEmbedded = "embedded"
	OnlineRedis    = "redis"
)

// FeatureStoreConfig is the feature_store {} block. With online = "redis"
// the latest value of every entity is mirrored into Redis (or Redis
// Cluster, when redis_addrs lists several nodes of one) and online lookups
// of row features read it there; history, windowed aggregations and
// point-in-time reads stay in Kiln.
type FeatureStoreConfig struct {
	Online     string
	RedisAddrs []string
	// RedisPasswordEnv and RedisPasswordFile name where the password is;
	// the config file never holds it.
	RedisPasswordEnv  string
	RedisPasswordFile string
	// RedisResync is how often the leader rewrites Redis from the store.
	RedisResync time.Duration
	// CompactInterval is how often the leader deletes feature values past
	// their views' retention.
	CompactInterval time.Duration
}

// ONNXConfig is the onnx {} block: which runtime serves ONNX models, and
// where ONNX Runtime's shared library is.
type ONNXConfig struct {
	// Runtime is auto (ONNX Runtime when its library loads, else gonnx),
	// ort (the library must load, or the node does not start) or gonnx.
	Runtime string
	// LibraryPath is ONNX Runtime's shared library; "" looks where
	// scripts/install-onnxruntime installs it, then on the linker's path.
	LibraryPath string
}

func (o ONNXConfig) validate() error {
	if !slices.Contains(onnx.Runtimes, o.Runtime) {
		return fmt.Errorf("node: onnx.runtime %q: use one of %s", o.Runtime, strings.Join(onnx.Runtimes, ", "))
	}
	return nil
}

// MonitoringConfig is the monitoring {} block.
type MonitoringConfig struct {
	// SampleRate is the share of requests logged for a deployment that
	// has no monitor (a monitor's sample_rate overrides it); 0 logs none.
	SampleRate float64
	// Retention is how long logged predictions and labels are kept, and
	// MaxLogBytes how much room the node's log may take.
	Retention   time.Duration
	MaxLogBytes int64
	// LabelGrace is how long a label that matches no logged request is
	// kept and retried.
	LabelGrace time.Duration
	// AlertInterval is how often the leader evaluates alert rules.
	AlertInterval time.Duration
}

func (m MonitoringConfig) validate() error {
	switch {
	case !(m.SampleRate >= 0 && m.SampleRate <= 1):
		return fmt.Errorf("node: monitoring.sample_rate %v is out of range 0..1", m.SampleRate)
	case m.Retention <= 0 || m.LabelGrace <= 0 || m.AlertInterval <= 0:
		return fmt.Errorf("node: monitoring.retention, label_grace and alert_interval must be positive")
	case m.MaxLogBytes < 1<<20:
		return fmt.Errorf("node: monitoring.max_log_bytes %d is below 1 MiB", m.MaxLogBytes)
	}
	return nil
}

// LimitsConfig is the limits {} block: how much long-running work one node
// takes at once. Past a bound a request is refused at once with 429
// overloaded, not queued.
type LimitsConfig struct {
	// MaxConcurrentUploads bounds model and dataset file uploads in
	// progress (POST /v1/models/{name}/versions and
	// /v1/datasets/{name}/versions), from the first byte read to the
	// version recorded.
	MaxConcurrentUploads int
	// MaxDatasetBytes bounds one uploaded dataset file.
	MaxDatasetBytes int64
	// MaxConcurrentRestores bounds snapshot restores in progress on this
	// node (PUT /v1/snapshot, and those handed to it as the leader).
	MaxConcurrentRestores int
	// UploadIdleTimeout drops an upload or a snapshot restore whose body
	// delivers no bytes for this long, and a snapshot download whose client
	// takes none; a slow transfer that keeps moving is not bounded.
	UploadIdleTimeout time.Duration
}

// ACLConfig is the acl {} block.
type ACLConfig struct {
	Enabled bool
	// DefaultPolicy decides a request of a valid token that no rule of its
	// policies matches: "deny" or "allow". A request without a valid token
	// is always refused while ACLs are enabled.
	DefaultPolicy string
	// TokenTTLCache bounds how long a resolved token is kept in the node's
	// cache; any change to ACL records drops the whole cache at once.
	TokenTTLCache time.Duration
	// MetricsAnonymous lets GET /metrics be scraped without a token.
	MetricsAnonymous bool
	// AuditFile, when set, receives one JSON line per write and per denied
	// request; it is rotated once it grows past AuditMaxBytes.
	AuditFile     string
	AuditMaxBytes int64
}

// ExecConfig is the exec {} block: whether this node runs user commands as
// processes, and which ones.
type ExecConfig struct {
	Enabled bool
	// AllowedCommands are globs (path.Match) over a command's first word, as
	// written and as resolved on PATH. Empty allows nothing.
	AllowedCommands []string
	// User runs processes as this user (the agent must run as root).
	User string
	// AllowedEnv names the variables a version may set that are refused
	// otherwise (LD_PRELOAD, LD_LIBRARY_PATH, PATH).
	AllowedEnv []string
}

// HTTPTLSFiles are the PEM files of the HTTP API's TLS. With ClientCAFile
// set, clients must present a certificate signed by it.
type HTTPTLSFiles struct {
	CertFile     string
	KeyFile      string
	ClientCAFile string
}

// TLSFiles names the PEM files for transport TLS.
type TLSFiles struct {
	CertFile string
	KeyFile  string
	CAFile   string
}

// GPUDecl declares GPUs in config for machines where neither NVML nor nvidia-smi
// can see them (and for tests).
type GPUDecl struct {
	Model    string
	MemoryMB int64
	Count    int
}

// DefaultConfig returns the defaults every file and flag is layered on.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		NodeName:            host,
		BindAddr:            "0.0.0.0",
		RPCPort:             DefaultRPCPort,
		GossipPort:          DefaultGossipPort,
		GRPCPort:            DefaultGRPCPort,
		RetryInterval:       time.Second,
		LogLevel:            "info",
		MaxVoters:           5,
		DeadNodeReap:        time.Minute,
		ServerStabilization: 3 * time.Second,
		SnapshotThreshold:   8192,
		SnapshotInterval:    30 * time.Second,
		TrailingLogs:        10240,
		MaxBodyBytes:        8 << 20,
		HTTPReadTimeout:     time.Minute,
		HTTPWriteTimeout:    2 * time.Minute,
		HTTPIdleTimeout:     2 * time.Minute,
		ArtifactReplicas:    2,
		MaxArtifactBytes:    16 << 30,
		BlobGCInterval:      5 * time.Minute,
		BlobGCGrace:         time.Hour,
		PredictTimeout:      30 * time.Second,
		FeatureStore:        FeatureStoreConfig{Online: OnlineEmbedded, RedisResync: 10 * time.Minute, CompactInterval: time.Minute},
		ONNX:                ONNXConfig{Runtime: onnx.RuntimeAuto},
		Monitoring:          MonitoringConfig{SampleRate: 1, Retention: 7 * 24 * time.Hour, MaxLogBytes: 2 << 30, LabelGrace: time.Hour, AlertInterval: 10 * time.Second},
		Limits: LimitsConfig{
			MaxConcurrentUploads:  4,
			MaxConcurrentRestores: 1,
			UploadIdleTimeout:     time.Minute,
			MaxDatasetBytes:       64 << 30,
		},
		ACL: ACLConfig{
			DefaultPolicy: "deny",
			TokenTTLCache: 30 * time.Second,
			AuditMaxBytes: 64 << 20,
		},
	}
}

// DevConfig is DefaultConfig for `kiln agent -dev`: one node, loopback, bootstraps itself.
func DevConfig() Config {
	c := DefaultConfig()
	c.Dev = true
	c.NodeName = "dev"
	c.BindAddr = "127.0.0.1"
	c.BootstrapExpect = 1
	c.LogLevel = "info"
	c.ServerStabilization = time.Second
	return c
}

// Validate checks the merged configuration.
func (c *Config) Validate() error {
	if c.NodeName == "" {
		return errors.New("node: node_name is required")
	}
	if len(c.NodeName) > 64 {
		return fmt.Errorf("node: node_name %q is longer than 64 bytes", c.NodeName)
	}
	if c.DataDir == "" {
		return errors.New("node: data_dir is required (or run with -dev)")
	}
	if net.ParseIP(c.BindAddr) == nil {
		return fmt.Errorf("node: bind_addr %q is not an IP address", c.BindAddr)
	}
	if c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil {
		return fmt.Errorf("node: advertise_addr %q is not an IP address", c.AdvertiseAddr)
	}
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			return fmt.Errorf("node: http_addr %q: %v", c.HTTPAddr, err)
		}
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"ports.rpc", c.RPCPort}, {"ports.gossip", c.GossipPort}} {
		if p.v < 0 || p.v > 65535 {
			return fmt.Errorf("node: %s %d is not a port", p.name, p.v)
		}
	}
	if c.GRPCPort < -1 || c.GRPCPort > 65535 {
		return fmt.Errorf("node: ports.grpc %d is not a port (-1 turns gRPC off)", c.GRPCPort)
	}
	if c.BootstrapExpect < 0 {
		return fmt.Errorf("node: bootstrap_expect must be >= 0, got %d", c.BootstrapExpect)
	}
	if c.MaxVoters < 1 {
		return fmt.Errorf("node: max_voters must be >= 1, got %d", c.MaxVoters)
	}
	if c.BootstrapExpect > c.MaxVoters {
		return fmt.Errorf("node: bootstrap_expect %d is more than max_voters %d", c.BootstrapExpect, c.MaxVoters)
	}
	if c.EncryptKey != nil && len(c.EncryptKey) != 32 {
		return fmt.Errorf("node: encrypt must decode to 32 bytes, got %d", len(c.EncryptKey))
	}
	if _, ok := logLevels[strings.ToLower(c.LogLevel)]; !ok {
		return fmt.Errorf("node: log_level %q is not one of trace, debug, info, warn, error", c.LogLevel)
	}
	if c.MaxBodyBytes <= 0 {
		return fmt.Errorf("node: http.max_body_bytes must be > 0, got %d", c.MaxBodyBytes)
	}
	if c.DeadNodeReap < time.Second {
		return fmt.Errorf("node: dead_node_reap must be at least 1s, got %s", c.DeadNodeReap)
	}
	if c.ArtifactReplicas < 1 {
		return fmt.Errorf("node: serving.artifact_replicas must be >= 1, got %d", c.ArtifactReplicas)
	}
	if c.MaxArtifactBytes <= 0 {
		return fmt.Errorf("node: serving.max_artifact_bytes must be > 0, got %d", c.MaxArtifactBytes)
	}
	if c.BlobGCInterval < time.Second {
		return fmt.Errorf("node: serving.blob_gc_interval must be at least 1s, got %s", c.BlobGCInterval)
	}
	if err := c.ONNX.validate(); err != nil {
		return err
	}
	if err := c.Monitoring.validate(); err != nil {
		return err
	}
	if err := c.FeatureStore.validate(); err != nil {
		return err
	}
	if err := c.validateLimits(); err != nil {
		return err
	}
	if c.TLS != nil && (c.TLS.CertFile == "" || c.TLS.KeyFile == "" || c.TLS.CAFile == "") {
		return errors.New("node: tls needs cert_file, key_file and ca_file")
	}
	if err := c.validateAccess(); err != nil {
		return err
	}
	for i, g := range c.GPUs {
		if g.Model == "" {
			return fmt.Errorf("node: resources.gpu[%d].model is required", i)
		}
		if g.MemoryMB <= 0 {
			return fmt.Errorf("node: resources.gpu[%d].memory_mb must be > 0", i)
		}
		if g.Count < 1 {
			return fmt.Errorf("node: resources.gpu[%d].count must be >= 1", i)
		}
	}
	return nil
}

func (f FeatureStoreConfig) validate() error {
	if f.CompactInterval <= 0 {
		return fmt.Errorf("node: feature_store.compact_interval must be positive")
	}
	switch f.Online {
	case OnlineEmbedded:
		if len(f.RedisAddrs) > 0 {
			return fmt.Errorf("node: feature_store.redis_addrs is set but online is %q; set online = \"redis\"", f.Online)
		}
	case OnlineRedis:
		if len(f.RedisAddrs) == 0 {
			return fmt.Errorf("node: feature_store.redis_addrs is required with online = \"redis\"")
		}
		for _, a := range f.RedisAddrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return fmt.Errorf("node: feature_store.redis_addrs: %q is not host:port", a)
			}
		}
		if f.RedisPasswordEnv != "" && f.RedisPasswordFile != "" {
			return fmt.Errorf("node: feature_store: give redis_password_env or redis_password_file, not both")
		}
		if f.RedisResync <= 0 {
			return fmt.Errorf("node: feature_store.redis_resync must be positive")
		}
	default:
		return fmt.Errorf("node: feature_store.online %q: use embedded or redis", f.Online)
	}
	return nil
}

// validateLimits checks the HTTP timeouts, the limits {} block and the
// blob collector's grace period, which must outlast an upload's commit.
func (c *Config) validateLimits() error {
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"http.read_timeout", c.HTTPReadTimeout},
		{"http.write_timeout", c.HTTPWriteTimeout},
		{"http.idle_timeout", c.HTTPIdleTimeout},
		{"serving.predict_timeout", c.PredictTimeout},
		{"limits.upload_idle_timeout", c.Limits.UploadIdleTimeout},
	} {
		if d.v <= 0 {
			return fmt.Errorf("node: %s must be > 0, got %s", d.key, d.v)
		}
	}
	if c.HTTPWriteTimeout <= c.PredictTimeout {
		return fmt.Errorf("node: http.write_timeout %s must be longer than serving.predict_timeout %s, so a prediction past its deadline can still be answered", c.HTTPWriteTimeout, c.PredictTimeout)
	}
	if c.Limits.MaxConcurrentUploads < 1 {
		return fmt.Errorf("node: limits.max_concurrent_uploads must be >= 1, got %d", c.Limits.MaxConcurrentUploads)
	}
	if c.Limits.MaxDatasetBytes <= 0 {
		return fmt.Errorf("node: limits.max_dataset_bytes must be > 0, got %d", c.Limits.MaxDatasetBytes)
	}
	if c.Limits.MaxConcurrentRestores < 1 {
		return fmt.Errorf("node: limits.max_concurrent_restores must be >= 1, got %d", c.Limits.MaxConcurrentRestores)
	}
	if floor := c.minBlobGCGrace(); c.BlobGCGrace < floor {
		return fmt.Errorf("node: serving.blob_gc_grace %s is shorter than %s (limits.upload_idle_timeout %s + %s for a proposed version to commit): the file of an upload still in progress could be collected before its version is recorded", c.BlobGCGrace, floor, c.Limits.UploadIdleTimeout, versionCommitWindow)
	}
	return nil
}

// minBlobGCGrace is the shortest blob_gc_grace that covers an upload in
// progress: one stall of its body (upload_idle_timeout) and the longest a
// version can take to be applied once proposed (versionCommitWindow).
func (c *Config) minBlobGCGrace() time.Duration {
	return c.Limits.UploadIdleTimeout + versionCommitWindow
}

// validateAccess checks the acl, exec, http.tls and insecure settings.
func (c *Config) validateAccess() error {
	if c.ACL.DefaultPolicy != "deny" && c.ACL.DefaultPolicy != "allow" {
		return fmt.Errorf("node: acl.default_policy must be \"deny\" or \"allow\", not %q", c.ACL.DefaultPolicy)
	}
	if c.ACL.TokenTTLCache <= 0 {
		return fmt.Errorf("node: acl.token_ttl_cache must be > 0, got %s", c.ACL.TokenTTLCache)
	}
	if c.ACL.AuditMaxBytes < 1<<10 {
		return fmt.Errorf("node: acl.audit_max_bytes must be at least 1024, got %d", c.ACL.AuditMaxBytes)
	}
	for i, pat := range c.Exec.AllowedCommands {
		if pat == "" {
			return fmt.Errorf("node: exec.allowed_commands[%d] is empty", i)
		}
		if _, err := path.Match(pat, ""); err != nil {
			return fmt.Errorf("node: exec.allowed_commands[%d] %q is not a valid glob: %v", i, pat, err)
		}
	}
	for i, name := range c.Exec.AllowedEnv {
		if name == "" || strings.ContainsAny(name, "=\x00") {
			return fmt.Errorf("node: exec.allowed_env[%d] %q is not a variable name", i, name)
		}
	}
	if t := c.HTTPTLS; t != nil && (t.CertFile == "" || t.KeyFile == "") {
		return errors.New("node: http.tls needs cert_file and key_file")
	}
	if c.ACL.Enabled && !c.Dev && !c.Insecure {
		var missing []string
		if c.EncryptKey == nil {
			missing = append(missing, "encrypt (gossip encryption)")
		}
		if c.TLS == nil {
			missing = append(missing, "tls (mutual TLS between nodes)")
		}
		if len(missing) > 0 {
			return fmt.Errorf("node: acl is enabled but %s is not set: without it anyone on the network can join the cluster or call its RPCs and bypass the ACLs; set it, or set insecure = true to start anyway", strings.Join(missing, " and "))
		}
	}
	return nil
}

// openings lists what an agent leaves open to anyone on its network, for the
// warning logged at start.
func (c *Config) openings() []string {
	var open []string
	if !c.ACL.Enabled {
		open = append(open, "the HTTP API takes any request without a token (acl.enabled = false)")
	}
	if c.HTTPTLS == nil {
		open = append(open, "the HTTP API is plain text (no http.tls)")
	}
	if c.EncryptKey == nil {
		open = append(open, "gossip is not encrypted, so any host that reaches the gossip port can join (no encrypt)")
	}
	if c.TLS == nil {
		open = append(open, "Raft and RPC are not authenticated, so any host that reaches the RPC port can apply registry commands (no tls)")
	}
	return open
}

var logLevels = map[string]bool{"trace": true, "debug": true, "info": true, "warn": true, "error": true}

// advertiseIP is the address peers use to reach this node. New settles an
// unset advertise_addr first (settleAdvertiseAddr), so the loopback answer
// below is left to -dev, where the node is alone.
func (c *Config) advertiseIP() string {
	if c.AdvertiseAddr != "" {
		return c.AdvertiseAddr
	}
	if ip := net.ParseIP(c.BindAddr); ip != nil && ip.IsUnspecified() {
		return "127.0.0.1"
	}
	return c.BindAddr
}

// httpListenAddr is the HTTP listen address.
func (c *Config) httpListenAddr() string {
	if c.HTTPAddr != "" {
		return c.HTTPAddr
	}
	return net.JoinHostPort(c.BindAddr, strconv.Itoa(DefaultHTTPPort))
}

// fileConfig mirrors the HCL file format. Every field is a pointer or a slice so a
// file sets only what it names; later files override earlier ones.
type fileConfig struct {
	NodeName        *string         `hcl:"node_name,optional"`
	DataDir         *string         `hcl:"data_dir,optional"`
	BindAddr        *string         `hcl:"bind_addr,optional"`
	AdvertiseAddr   *string         `hcl:"advertise_addr,optional"`
	HTTPAddr        *string         `hcl:"http_addr,optional"`
	BootstrapExpect *int            `hcl:"bootstrap_expect,optional"`
	RetryJoin       []string        `hcl:"retry_join,optional"`
	RetryInterval   *string         `hcl:"retry_interval,optional"`
	Encrypt         *string         `hcl:"encrypt,optional"`
	LogLevel        *string         `hcl:"log_level,optional"`
	LogJSON         *bool           `hcl:"log_json,optional"`
	MaxVoters       *int            `hcl:"max_voters,optional"`
	DeadNodeReap    *string         `hcl:"dead_node_reap,optional"`
	EnableDebug     *bool           `hcl:"enable_debug,optional"`
	Insecure        *bool           `hcl:"insecure,optional"`
	ACL             *fileACL        `hcl:"acl,block"`
	Exec            *fileExec       `hcl:"exec,block"`
	Ports           *filePorts      `hcl:"ports,block"`
	Raft            *fileRaft       `hcl:"raft,block"`
	HTTP            *fileHTTP       `hcl:"http,block"`
	TLS             *fileTLS        `hcl:"tls,block"`
	Resources       *fileResources  `hcl:"resources,block"`
	Serving         *fileServing    `hcl:"serving,block"`
	Limits          *fileLimits     `hcl:"limits,block"`
	FeatureStore    *fileFeatures   `hcl:"feature_store,block"`
	Monitoring      *fileMonitoring `hcl:"monitoring,block"`
	ONNX            *fileONNX       `hcl:"onnx,block"`
}

type fileONNX struct {
	Runtime     *string `hcl:"runtime,optional"`
	LibraryPath *string `hcl:"library_path,optional"`
}

type fileMonitoring struct {
	SampleRate    *float64 `hcl:"sample_rate,optional"`
	Retention     *string  `hcl:"retention,optional"`
	MaxLogBytes   *int64   `hcl:"max_log_bytes,optional"`
	LabelGrace    *string  `hcl:"label_grace,optional"`
	AlertInterval *string  `hcl:"alert_interval,optional"`
}

type fileFeatures struct {
	Online            *string  `hcl:"online,optional"`
	RedisAddrs        []string `hcl:"redis_addrs,optional"`
	RedisPasswordEnv  *string  `hcl:"redis_password_env,optional"`
	RedisPasswordFile *string  `hcl:"redis_password_file,optional"`
	RedisResync       *string  `hcl:"redis_resync,optional"`
	CompactInterval   *string  `hcl:"compact_interval,optional"`
}

type fileLimits struct {
	MaxConcurrentUploads  *int    `hcl:"max_concurrent_uploads,optional"`
	MaxConcurrentRestores *int    `hcl:"max_concurrent_restores,optional"`
	UploadIdleTimeout     *string `hcl:"upload_idle_timeout,optional"`
	MaxDatasetBytes       *int64  `hcl:"max_dataset_bytes,optional"`
}

type fileServing struct {
	ArtifactReplicas *int    `hcl:"artifact_replicas,optional"`
	MaxArtifactBytes *int64  `hcl:"max_artifact_bytes,optional"`
	BlobGCInterval   *string `hcl:"blob_gc_interval,optional"`
	BlobGCGrace      *string `hcl:"blob_gc_grace,optional"`
	PredictTimeout   *string `hcl:"predict_timeout,optional"`
}

type filePorts struct {
	RPC    *int `hcl:"rpc,optional"`
	Gossip *int `hcl:"gossip,optional"`
	GRPC   *int `hcl:"grpc,optional"`
}

type fileRaft struct {
	SnapshotThreshold   *int    `hcl:"snapshot_threshold,optional"`
	SnapshotInterval    *string `hcl:"snapshot_interval,optional"`
	TrailingLogs        *int    `hcl:"trailing_logs,optional"`
	ServerStabilization *string `hcl:"server_stabilization_time,optional"`
}

type fileHTTP struct {
	MaxBodyBytes *int64       `hcl:"max_body_bytes,optional"`
	ReadTimeout  *string      `hcl:"read_timeout,optional"`
	WriteTimeout *string      `hcl:"write_timeout,optional"`
	IdleTimeout  *string      `hcl:"idle_timeout,optional"`
	TLS          *fileHTTPTLS `hcl:"tls,block"`
}

type fileHTTPTLS struct {
	CertFile     string `hcl:"cert_file"`
	KeyFile      string `hcl:"key_file"`
	ClientCAFile string `hcl:"client_ca_file,optional"`
}

type fileACL struct {
	Enabled          *bool   `hcl:"enabled,optional"`
	DefaultPolicy    *string `hcl:"default_policy,optional"`
	TokenTTLCache    *string `hcl:"token_ttl_cache,optional"`
	MetricsAnonymous *bool   `hcl:"metrics_anonymous,optional"`
	AuditFile        *string `hcl:"audit_file,optional"`
	AuditMaxBytes    *int64  `hcl:"audit_max_bytes,optional"`
}

type fileExec struct {
	Enabled         *bool    `hcl:"enabled,optional"`
	AllowedCommands []string `hcl:"allowed_commands,optional"`
	User            *string  `hcl:"user,optional"`
	AllowedEnv      []string `hcl:"allowed_env,optional"`
}

type fileTLS struct {
	CertFile string `hcl:"cert_file"`
	KeyFile  string `hcl:"key_file"`
	CAFile   string `hcl:"ca_file"`
}

type fileResources struct {
	GPUs []fileGPU `hcl:"gpu,block"`
}

type fileGPU struct {
	Model    string `hcl:"model"`
	MemoryMB int64  `hcl:"memory_mb"`
	Count    *int   `hcl:"count,optional"`
}

// LoadFiles parses each HCL file in order and layers it onto base. An unknown key or
// a bad value is an error naming the file, line and key.
func LoadFiles(base Config, paths []string) (Config, error) {
	parser := hclparse.NewParser()
	for _, path := range paths {
		f, diags := parser.ParseHCLFile(path)
		if diags.HasErrors() {
			return base, diagError(diags, nil)
		}
		var fc fileConfig
		if diags := gohcl.DecodeBody(f.Body, nil, &fc); diags.HasErrors() {
			return base, diagError(diags, f.Body)
		}
		if err := fc.applyTo(&base, f.Body); err != nil {
			return base, fmt.Errorf("node: config: %w", err)
		}
	}
	return base, nil
}

// diagError renders HCL diagnostics of a config file as one error.
func diagError(diags hcl.Diagnostics, body hcl.Body) error {
	return fmt.Errorf("node: config: %w", hclDiagError(diags, body))
}

// hclDiagError renders HCL diagnostics as "file:line,col: key: summary:
// detail", joined by "; ". HCL names the key for unknown keys but not for bad
// values, so the key is looked up from the position in body (nil before
// decoding).
func hclDiagError(diags hcl.Diagnostics, body hcl.Body) error {
	var parts []string
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		s := d.Summary
		if d.Detail != "" {
			s += ": " + d.Detail
		}
		if d.Subject != nil {
			if key := keyAt(body, d.Subject.Start, ""); key != "" && !strings.Contains(s, key) {
				s = key + ": " + s
			}
			s = fmt.Sprintf("%s:%d,%d: %s", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, s)
		}
		parts = append(parts, s)
	}
	return errors.New(strings.Join(parts, "; "))
}

// keyAt returns the dotted name of the attribute whose definition holds pos.
func keyAt(body hcl.Body, pos hcl.Pos, prefix string) string {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return ""
	}
	for name, a := range sb.Attributes {
		if a.SrcRange.ContainsPos(pos) {
			return prefix + name
		}
	}
	for _, b := range sb.Blocks {
		if b.Range().ContainsPos(pos) {
			return keyAt(b.Body, pos, prefix+b.Type+".")
		}
	}
	return ""
}

// keyPos names a key with its file and line for value errors, e.g.
// "node1.hcl:7: raft.snapshot_interval". key may be dotted into blocks.
func keyPos(body hcl.Body, key string) string {
	sb, ok := body.(*hclsyntax.Body)
	parts := strings.Split(key, ".")
	for ok && len(parts) > 1 {
		var next *hclsyntax.Body
		for _, b := range sb.Blocks {
			if b.Type == parts[0] {
				next = b.Body
			}
		}
		sb, ok = next, next != nil
		parts = parts[1:]
	}
	if ok {
		if a, found := sb.Attributes[parts[0]]; found {
			return fmt.Sprintf("%s:%d: %s", a.SrcRange.Filename, a.SrcRange.Start.Line, key)
		}
	}
	return key
}

func (fc *fileConfig) applyTo(c *Config, body hcl.Body) error {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&c.NodeName, fc.NodeName)
	set(&c.DataDir, fc.DataDir)
	set(&c.BindAddr, fc.BindAddr)
	set(&c.AdvertiseAddr, fc.AdvertiseAddr)
	set(&c.HTTPAddr, fc.HTTPAddr)
	set(&c.LogLevel, fc.LogLevel)
	if fc.BootstrapExpect != nil {
		c.BootstrapExpect = *fc.BootstrapExpect
	}
	if fc.RetryJoin != nil {
		c.RetryJoin = fc.RetryJoin
	}
	if fc.LogJSON != nil {
		c.LogJSON = *fc.LogJSON
	}
	if fc.MaxVoters != nil {
		c.MaxVoters = *fc.MaxVoters
	}
	if fc.EnableDebug != nil {
		c.EnableDebug = *fc.EnableDebug
	}
	if fc.Insecure != nil {
		c.Insecure = *fc.Insecure
	}
	type durationKey struct {
		key string
		src *string
		dst *time.Duration
	}
	durations := []durationKey{
		{"retry_interval", fc.RetryInterval, &c.RetryInterval},
		{"dead_node_reap", fc.DeadNodeReap, &c.DeadNodeReap},
	}
	if fc.Raft != nil {
		durations = append(durations,
			durationKey{"raft.snapshot_interval", fc.Raft.SnapshotInterval, &c.SnapshotInterval},
			durationKey{"raft.server_stabilization_time", fc.Raft.ServerStabilization, &c.ServerStabilization})
		if fc.Raft.SnapshotThreshold != nil {
			if *fc.Raft.SnapshotThreshold < 1 {
				return fmt.Errorf("%s must be >= 1", keyPos(body, "raft.snapshot_threshold"))
			}
			c.SnapshotThreshold = uint64(*fc.Raft.SnapshotThreshold)
		}
		if fc.Raft.TrailingLogs != nil {
			if *fc.Raft.TrailingLogs < 0 {
				return fmt.Errorf("%s must be >= 0", keyPos(body, "raft.trailing_logs"))
			}
			c.TrailingLogs = uint64(*fc.Raft.TrailingLogs)
		}
	}
	if fc.Serving != nil {
		durations = append(durations,
			durationKey{"serving.blob_gc_interval", fc.Serving.BlobGCInterval, &c.BlobGCInterval},
			durationKey{"serving.blob_gc_grace", fc.Serving.BlobGCGrace, &c.BlobGCGrace},
			durationKey{"serving.predict_timeout", fc.Serving.PredictTimeout, &c.PredictTimeout})
		if fc.Serving.ArtifactReplicas != nil {
			c.ArtifactReplicas = *fc.Serving.ArtifactReplicas
		}
		if fc.Serving.MaxArtifactBytes != nil {
			c.MaxArtifactBytes = *fc.Serving.MaxArtifactBytes
		}
	}
	if fc.HTTP != nil {
		durations = append(durations,
			durationKey{"http.read_timeout", fc.HTTP.ReadTimeout, &c.HTTPReadTimeout},
			durationKey{"http.write_timeout", fc.HTTP.WriteTimeout, &c.HTTPWriteTimeout},
			durationKey{"http.idle_timeout", fc.HTTP.IdleTimeout, &c.HTTPIdleTimeout})
	}
	if fc.Limits != nil {
		durations = append(durations, durationKey{"limits.upload_idle_timeout", fc.Limits.UploadIdleTimeout, &c.Limits.UploadIdleTimeout})
		if fc.Limits.MaxConcurrentUploads != nil {
			c.Limits.MaxConcurrentUploads = *fc.Limits.MaxConcurrentUploads
		}
		if fc.Limits.MaxConcurrentRestores != nil {
			c.Limits.MaxConcurrentRestores = *fc.Limits.MaxConcurrentRestores
		}
		if fc.Limits.MaxDatasetBytes != nil {
			c.Limits.MaxDatasetBytes = *fc.Limits.MaxDatasetBytes
		}
	}
	if o := fc.ONNX; o != nil {
		if o.Runtime != nil {
			c.ONNX.Runtime = *o.Runtime
		}
		if o.LibraryPath != nil {
			c.ONNX.LibraryPath = *o.LibraryPath
		}
	}
	if m := fc.Monitoring; m != nil {
		durations = append(durations, durationKey{"monitoring.retention", m.Retention, &c.Monitoring.Retention},
			durationKey{"monitoring.label_grace", m.LabelGrace, &c.Monitoring.LabelGrace},
			durationKey{"monitoring.alert_interval", m.AlertInterval, &c.Monitoring.AlertInterval})
		if m.SampleRate != nil {
			c.Monitoring.SampleRate = *m.SampleRate
		}
		if m.MaxLogBytes != nil {
			c.Monitoring.MaxLogBytes = *m.MaxLogBytes
		}
	}
	if f := fc.FeatureStore; f != nil {
		durations = append(durations, durationKey{"feature_store.redis_resync", f.RedisResync, &c.FeatureStore.RedisResync},
			durationKey{"feature_store.compact_interval", f.CompactInterval, &c.FeatureStore.CompactInterval})
		if f.Online != nil {
			c.FeatureStore.Online = *f.Online
		}
		c.FeatureStore.RedisAddrs = f.RedisAddrs
		if f.RedisPasswordEnv != nil {
			c.FeatureStore.RedisPasswordEnv = *f.RedisPasswordEnv
		}
		if f.RedisPasswordFile != nil {
			c.FeatureStore.RedisPasswordFile = *f.RedisPasswordFile
		}
	}
	if fc.ACL != nil {
		durations = append(durations, durationKey{"acl.token_ttl_cache", fc.ACL.TokenTTLCache, &c.ACL.TokenTTLCache})
		fc.ACL.applyTo(&c.ACL)
	}
	if fc.Exec != nil {
		fc.Exec.applyTo(&c.Exec)
	}
	for _, d := range durations {
		if d.src == nil {
			continue
		}
		v, err := time.ParseDuration(*d.src)
		if err != nil || v < 0 {
			return fmt.Errorf("%s: %q is not a duration like \"30s\" or \"1m\"", keyPos(body, d.key), *d.src)
		}
		*d.dst = v
	}
	if fc.Encrypt != nil {
		key, err := decodeEncryptKey(*fc.Encrypt)
		if err != nil {
			return fmt.Errorf("%s: %w", keyPos(body, "encrypt"), err)
		}
		c.EncryptKey = key
	}
	if fc.Ports != nil {
		if fc.Ports.RPC != nil {
			c.RPCPort = *fc.Ports.RPC
		}
		if fc.Ports.Gossip != nil {
			c.GossipPort = *fc.Ports.Gossip
		}
		if fc.Ports.GRPC != nil {
			c.GRPCPort = *fc.Ports.GRPC
		}
	}
	if fc.HTTP != nil && fc.HTTP.MaxBodyBytes != nil {
		c.MaxBodyBytes = *fc.HTTP.MaxBodyBytes
	}
	if fc.HTTP != nil && fc.HTTP.TLS != nil {
		t := fc.HTTP.TLS
		c.HTTPTLS = &HTTPTLSFiles{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile}
	}
	if fc.TLS != nil {
		c.TLS = &TLSFiles{CertFile: fc.TLS.CertFile, KeyFile: fc.TLS.KeyFile, CAFile: fc.TLS.CAFile}
	}
	if fc.Resources != nil && fc.Resources.GPUs != nil {
		c.GPUs = nil
		for _, g := range fc.Resources.GPUs {
			count := 1
			if g.Count != nil {
				count = *g.Count
			}
			c.GPUs = append(c.GPUs, GPUDecl{Model: g.Model, MemoryMB: g.MemoryMB, Count: count})
		}
	}
	return nil
}

func (f *fileACL) applyTo(c *ACLConfig) {
	if f.Enabled != nil {
		c.Enabled = *f.Enabled
	}
	if f.DefaultPolicy != nil {
		c.DefaultPolicy = *f.DefaultPolicy
	}
	if f.MetricsAnonymous != nil {
		c.MetricsAnonymous = *f.MetricsAnonymous
	}
	if f.AuditFile != nil {
		c.AuditFile = *f.AuditFile
	}
	if f.AuditMaxBytes != nil {
		c.AuditMaxBytes = *f.AuditMaxBytes
	}
}

func (f *fileExec) applyTo(c *ExecConfig) {
	if f.Enabled != nil {
		c.Enabled = *f.Enabled
	}
	if f.AllowedCommands != nil {
		c.AllowedCommands = f.AllowedCommands
	}
	if f.User != nil {
		c.User = *f.User
	}
	if f.AllowedEnv != nil {
		c.AllowedEnv = f.AllowedEnv
	}
}

// decodeEncryptKey reads a gossip key: 32 bytes, standard base64.
func decodeEncryptKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("encrypt is not valid base64: %v", err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("encrypt must decode to 32 bytes, got %d", len(key))
	}
	return key, nil
}

// DecodeEncryptKey is decodeEncryptKey for the -encrypt flag.
func DecodeEncryptKey(s string) ([]byte, error) { return decodeEncryptKey(s) }
