package node

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"

	"github.com/kilnml/kiln/actors"
	"github.com/kilnml/kiln/actors/data"
	"github.com/kilnml/kiln/actors/training"
	"github.com/kilnml/kiln/ml/formats"
	"github.com/kilnml/kiln/ml/onnx"
	"github.com/kilnml/kiln/node/internal/acl"
	"github.com/kilnml/kiln/node/internal/blobs"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// Version is the agent's version, gossiped and shown by `kiln status`.
var Version = "0.1.0-dev"

// Agent is one Kiln node: gossip, Raft over the registry FSM, the actor system, the
// transport and the HTTP API, wired together and owned here.
type Agent struct {
	cfg    Config
	logger hclog.Logger
	id     string

	resources structs.Resources
	// models loads model files, ONNX ones in the runtime onnx {} chose.
	models *formats.Loader
	// api is the HTTP API's handler; the dashboard calls it in-process.
	api http.Handler
	// series keeps the serving time series the dashboard charts, and
	// gpus this node's GPU readings.
	series timeSeries
	gpus   gpuSeries
	// events keeps what this node saw happen to the cluster (events.go).
	events    *eventRing
	trans     *transport.Transport
	fsm       *raftfsm.FSM
	wal       *raftwal.WAL
	snaps     *raft.FileSnapshotStore
	raft      *raft.Raft
	raftTrans *raft.NetworkTransport
	gossip    *gossip
	forwarder *forwarder
	committer *committer
	actors    *actors.System
	blobs     *blobs.Store
	xfer      *blobs.Transfers
	serving   *servingParts
	jobs      *training.Reconciler
	sources   *data.Reconciler
	features  *queryCache
	// sourceTablesIndex is the index of the last change to sources, views
	// or entities, which a running ingestion checks.
	sourceTablesIndex func() uint64
	// pushes holds this node's open segments of push sources' datasets.
	pushes *pushSegments
	// redis mirrors the latest feature values (feature_store { online =
	// "redis" }); nil with the embedded store.
	redis *redisOnline
	// monitoring is the prediction log (monitoring.go); references the
	// drift checks' reference samples this node has read.
	monitoring *monitoring
	references referenceCache
	runLog     *runLogger
	http       *http.Server
	httpLn     net.Listener
	// grpc serves the v2 inference protocol over gRPC (grpc_endpoint.go);
	// nil with ports.grpc = -1.
	grpc   *grpc.Server
	grpcLn net.Listener
	// acl resolves request tokens; nil while ACLs are disabled.
	acl *acl.Resolver
	// audit is the audit log (acl { audit_file }); nil without one.
	audit *auditLog
	// keyring is the gossip keyring; nil without gossip encryption.
	keyring *keyring
	// uploads and restores count the model uploads and snapshot restores in
	// progress, against limits {} (limits.go); their zero values are ready.
	uploadSlots, restores inFlight
	// uploads are the asynchronous uploads this node took (uploads.go).
	uploads uploads

	// leaderReady is true while this node is leader and has passed a barrier in its
	// term, so its FSM holds every committed entry: consistent reads need that.
	leaderReady atomic.Bool

	ctx    context.Context // cancelled by Shutdown; parent of every owned goroutine
	cancel context.CancelFunc
	wg     sync.WaitGroup

	shutdownOnce sync.Once
	shutdownErr  error
}

// New builds and starts an agent. It returns once every listener is bound and
// Raft is running; joining and leader election continue in the background.
func New(cfg Config, logger hclog.Logger) (a *Agent, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.settleAdvertiseAddr(listInterfaceIPs); err != nil {
		return nil, err
	}
	if err := checkExecUser(cfg.Exec.User, agentEUID()); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	backend, err := onnx.Open(cfg.ONNX.Runtime, cfg.ONNX.LibraryPath)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	logger.Info("onnx runtime", "runtime", backend.Name(), "why", backend.Reason())
	ctx, cancel := context.WithCancel(context.Background())
	a = &Agent{cfg: cfg, logger: logger, ctx: ctx, cancel: cancel, models: formats.NewLoader(backend)}
	a.forwarder = &forwarder{a: a, limit: maxForwardQueue}
	a.committer = &committer{a: a, limit: maxCommitQueue}
	started := a // every error return below sets a to nil
	defer func() {
		if err != nil {
			started.Shutdown()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("node: data_dir: %w", err)
	}
	if a.id, err = loadOrCreateNodeID(cfg.DataDir); err != nil {
		return nil, err
	}
	a.resources = Fingerprint(cfg.GPUs, a.id)

	tcfg := transport.DefaultConfig()
	tcfg.BindAddr = net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.RPCPort))
	tcfg.AdvertiseAddr = net.JoinHostPort(cfg.advertiseIP(), strconv.Itoa(cfg.RPCPort))
	tcfg.Logger = logger.Named("transport")
	if cfg.TLS != nil {
		if tcfg.TLS, err = loadTLS(cfg.TLS); err != nil {
			return nil, err
		}
		if err := checkOwnCert(tcfg.TLS, cfg.TLS.CertFile, cfg.NodeName, a.id); err != nil {
			return nil, err
		}
	}
	if a.trans, err = transport.New(tcfg); err != nil {
		return nil, err
	}

	// HTTP binds early so a port clash fails the start, not a later goroutine.
	if a.httpLn, err = net.Listen("tcp", cfg.httpListenAddr()); err != nil {
		return nil, fmt.Errorf("node: http listen: %w", err)
	}
	if cfg.HTTPTLS != nil {
		hcfg, err := loadHTTPTLS(cfg.HTTPTLS)
		if err != nil {
			return nil, err
		}
		a.httpLn = tls.NewListener(a.httpLn, hcfg)
	}

	fcfg := raftfsm.DefaultConfig()
	fcfg.Dir = filepath.Join(cfg.DataDir, "fsm")
	fcfg.Logger = logger.Named("fsm")
	if a.fsm, err = raftfsm.New(fcfg); err != nil {
		return nil, err
	}
	if err := a.setupRaft(); err != nil {
		return nil, err
	}

	a.actors, err = actors.NewSystem(actors.Config{
		NodeID:    a.id,
		Logger:    logger.Named("actors"),
		Transport: a.trans,
		Resolve:   a.resolveNode,
	})
	if err != nil {
		return nil, err
	}
	if err = a.newBlobs(); err != nil {
		return nil, err
	}
	a.setupServing()
	if err := a.setupMonitoring(); err != nil {
		return nil, err
	}
	a.setupTraining()
	a.setupSources()
	a.features = newQueryCache(a.fsm)
	a.pushes = newPushSegments(a)
	a.sourceTablesIndex = a.fsm.IndexFunc(raftfsm.TableSources, raftfsm.TableFeatureViews, raftfsm.TableEntities)
	if err := a.setupRedis(); err != nil {
		return nil, err
	}
	a.registerRPC()

	meta := memberMeta{
		ID:       a.id,
		RPCAddr:  a.trans.Addr(),
		HTTPAddr: a.advertiseHTTP(),
		Version:  Version,
		Expect:   cfg.BootstrapExpect,
		HasState: a.hasRaftState(),
	}
	if a.keyring, err = loadKeyring(cfg.DataDir, cfg.EncryptKey, logger.Named("gossip")); err != nil {
		return nil, err
	}
	a.events = &eventRing{node: cfg.NodeName}
	if a.gossip, err = newGossip(&a.cfg, meta, a.keyring, a.events, logger.Named("gossip")); err != nil {
		return nil, err
	}

	a.acl = a.newACLResolver()
	if cfg.ACL.AuditFile != "" {
		if a.audit, err = newAuditLog(cfg.ACL.AuditFile, cfg.ACL.AuditMaxBytes, logger); err != nil {
			return nil, err
		}
	}
	a.logAccess()
	// Uploads and snapshots replace the read and write timeouts with an idle
	// bound of their own (limits.go).
	a.api = a.routes()
	a.http = &http.Server{
		Handler:           a.api,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       cfg.HTTPReadTimeout,
		WriteTimeout:      cfg.HTTPWriteTimeout,
		IdleTimeout:       cfg.HTTPIdleTimeout,
	}
	a.goFunc(func() {
		if err := a.http.Serve(a.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.logger.Error("http server stopped", "error", err)
		}
	})
	if err := a.startGRPC(); err != nil {
		return nil, err
	}
	a.goFunc(func() { a.gossip.joinLoop(a.ctx, cfg.RetryJoin, cfg.GossipPort, cfg.RetryInterval) })
	a.goFunc(a.bootstrapLoop)
	a.goFunc(a.monitorLeadership)
	a.goFunc(a.registerSelfLoop)
	a.goFunc(a.reclaimLoop)
	a.goFunc(a.blobGCLoop)
	a.goFunc(func() { a.serving.reconciler.Run(a.ctx) })
	a.goFunc(func() { a.jobs.Run(a.ctx) })
	a.goFunc(func() { a.sources.Run(a.ctx) })
	a.goFunc(func() { a.pushes.run(a.ctx) })
	a.goFunc(a.monitoringLoop)
	a.goFunc(a.timeSeriesLoop)
	a.logger.Info("agent started", "node_id", a.id, "name", cfg.NodeName,
		"http", a.httpLn.Addr().String(), "grpc", a.GRPCAddr(), "rpc", a.trans.Addr(), "gossip_port", cfg.GossipPort)
	return a, nil
}

// logAccess says at start what guards this node, and what is left open.
func (a *Agent) logAccess() {
	switch {
	case a.cfg.ACL.Enabled:
		a.logger.Info("acl enabled", "default_policy", a.cfg.ACL.DefaultPolicy, "insecure", a.cfg.Insecure)
	case a.cfg.Dev:
		a.logger.Info("acl disabled in -dev mode: any local process can call every endpoint")
	}
	if a.cfg.Dev {
		return
	}
	if open := a.cfg.openings(); len(open) > 0 {
		a.logger.Warn("this node is open to anyone who can reach it: "+strings.Join(open, "; "), "acl", a.cfg.ACL.Enabled)
	}
}

// goFunc runs f on a goroutine owned by the agent; Shutdown waits for it.
func (a *Agent) goFunc(f func()) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f()
	}()
}

// ID is the node's persistent ID.
func (a *Agent) ID() string { return a.id }

// HTTPAddr is the bound HTTP address.
func (a *Agent) HTTPAddr() string { return a.httpLn.Addr().String() }

func (a *Agent) advertiseHTTP() string {
	host, port, _ := net.SplitHostPort(a.httpLn.Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = a.cfg.advertiseIP()
	}
	return net.JoinHostPort(host, port)
}

// setupRaft opens the log (raft-wal), snapshots and the network transport, brings
// the FSM up to the latest snapshot if it is behind, and starts Raft.
func (a *Agent) setupRaft() error {
	raftDir := filepath.Join(a.cfg.DataDir, "raft")
	if err := os.MkdirAll(filepath.Join(raftDir, "wal"), 0o750); err != nil {
		return fmt.Errorf("node: raft dir: %w", err)
	}
	var err error
	if a.wal, err = raftwal.Open(filepath.Join(raftDir, "wal"), raftwal.WithLogger(a.logger.Named("wal"))); err != nil {
		return fmt.Errorf("node: raft log: %w", err)
	}
	if a.snaps, err = raft.NewFileSnapshotStoreWithLogger(raftDir, 2, a.logger.Named("snapshot")); err != nil {
		return fmt.Errorf("node: raft snapshots: %w", err)
	}
	if err := a.catchUpFSM(); err != nil {
		return err
	}
	a.raftTrans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:                a.trans.StreamLayer(),
		MaxPool:               4,
		Timeout:               10 * time.Second,
		Logger:                a.logger.Named("raft-net"),
		ServerAddressProvider: nil,
	})
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(a.id)
	rc.Logger = a.logger.Named("raft")
	rc.SnapshotThreshold = a.cfg.SnapshotThreshold
	rc.SnapshotInterval = a.cfg.SnapshotInterval
	rc.TrailingLogs = a.cfg.TrailingLogs
	// The FSM is persistent and skips entries at or below its stored index, so a
	// restart must not wipe it with the last snapshot (catchUpFSM covers the case
	// where the FSM is behind that snapshot).
	rc.NoSnapshotRestoreOnStart = true
	// Bigger batches: the leader groups queued Applies into one log append and
	// one fsync, and the FSM applies a batch in one Badger transaction.
	rc.MaxAppendEntries = 512
	rc.BatchApplyCh = true
	// Recent entries stay in memory for replication to followers that lag a
	// little; a batch entry can be up to maxCommitBytes, so keep this modest.
	logs, err := raft.NewLogCache(128, a.wal)
	if err != nil {
		return fmt.Errorf("node: raft log cache: %w", err)
	}
	if a.raft, err = raft.NewRaft(rc, a.fsm, logs, a.wal, a.snaps, a.raftTrans); err != nil {
		return fmt.Errorf("node: raft: %w", err)
	}
	return nil
}

// catchUpFSM restores the FSM from the newest snapshot when the FSM's stored index
// is older than it, which can only happen if Badger lost its tail (power loss) after
// the log was compacted. Otherwise the FSM is current and Raft replays the rest.
func (a *Agent) catchUpFSM() error {
	metas, err := a.snaps.List()
	if err != nil || len(metas) == 0 {
		return err
	}
	latest := metas[0]
	if a.fsm.AppliedIndex() >= latest.Index {
		return nil
	}
	a.logger.Warn("fsm is behind the latest snapshot, restoring it", "fsm_index", a.fsm.AppliedIndex(), "snapshot_index", latest.Index)
	_, rc, err := a.snaps.Open(latest.ID)
	if err != nil {
		return fmt.Errorf("node: open snapshot %s: %w", latest.ID, err)
	}
	if err := a.fsm.Restore(rc); err != nil {
		return fmt.Errorf("node: restore snapshot %s: %w", latest.ID, err)
	}
	return nil
}

func (a *Agent) hasRaftState() bool {
	ok, err := raft.HasExistingState(a.wal, a.wal, a.snaps)
	return err == nil && ok
}

// bootstrapLoop bootstraps a new cluster once bootstrap_expect servers that agree
// on it are alive, none of which already has Raft state. All of them compute the
// same configuration, so concurrent bootstraps agree.
func (a *Agent) bootstrapLoop() {
	if a.hasRaftState() {
		a.gossip.setHasState()
		return
	}
	expect := a.cfg.BootstrapExpect
	warned := map[string]bool{} // members whose certificate refusal was logged
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-tick.C:
		}
		if a.raft.LastIndex() > 0 || a.hasRaftState() {
			// Added to an existing cluster by its leader.
			a.gossip.setHasState()
			return
		}
		if expect == 0 {
			continue
		}
		var servers []raft.Server
		byID := map[raft.ServerID]member{}
		joinExisting := false
		for _, m := range a.gossip.alive() {
			byID[raft.ServerID(m.Meta.ID)] = m
			if m.Meta.HasState {
				joinExisting = true
			}
			if m.Meta.Expect != expect {
				if m.Meta.Expect != 0 {
					a.logger.Warn("member disagrees on bootstrap_expect", "member", m.Name, "expect", m.Meta.Expect)
				}
				continue
			}
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.Meta.ID), Address: raft.ServerAddress(m.Meta.RPCAddr)})
		}
		if joinExisting {
			continue // wait to be added by the existing cluster's leader
		}
		if len(servers) < expect {
			continue
		}
		if len(servers) > expect {
			// More nodes than expected: bootstrap with the first `expect` by ID so
			// every node picks the same set; the rest join as non-voters.
			sortServers(servers)
			servers = servers[:expect]
		}
		if !containsServer(servers, a.id) {
			continue
		}
		sortServers(servers)
		if !a.bootstrapPeersNamed(servers, byID, warned) {
			continue
		}
		a.logger.Info("bootstrapping cluster", "servers", len(servers))
		if err := a.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			a.logger.Error("bootstrap failed", "error", err)
			continue
		}
		a.gossip.setHasState()
		return
	}
}

// resolveNode maps a node ID to its RPC address for remote actor delivery.
func (a *Agent) resolveNode(id string) (string, error) {
	if m, ok := a.gossip.aliveMember(id); ok {
		return m.Meta.RPCAddr, nil
	}
	txn := a.fsm.ReadTxn()
	defer txn.Discard()
	n, err := txn.Node(id)
	if err != nil {
		return "", fmt.Errorf("node: unknown node %q", id)
	}
	return n.RPCAddr, nil
}

// registerSelfLoop keeps this node's record in the registry current: written when
// the node first joins and whenever its addresses or resources change.
func (a *Agent) registerSelfLoop() {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		if a.raft.Leader() != "" {
			if err := a.registerSelf(); err != nil {
				a.logger.Debug("node registration pending", "error", err)
			}
		}
		select {
		case <-a.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (a *Agent) registerSelf() error {
	_, err := a.writeSelfRecord(false)
	return err
}

// writeSelfRecord proposes this node's record when it differs from the
// registry's (always with force) and returns the index it committed at (0
// when nothing was written).
func (a *Agent) writeSelfRecord(force bool) (uint64, error) {
	want := structs.Node{
		ID: a.id, Name: a.cfg.NodeName, RPCAddr: a.trans.Addr(), HTTPAddr: a.advertiseHTTP(),
		Version: Version, Resources: a.resources, Exec: a.cfg.Exec.nodeRecord(),
	}
	txn := a.fsm.ReadTxn()
	cur, err := txn.Node(a.id)
	txn.Discard()
	if err == nil && sameNodeRecord(cur, &want) && !force {
		return 0, nil
	}
	now := time.Now().UTC()
	want.UpdatedAt = now
	want.RegisteredAt = now
	if err == nil {
		want.RegisteredAt = cur.RegisteredAt
	}
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	defer cancel()
	return a.propose(ctx, structs.NodeUpsertType, &structs.NodeUpsertRequest{Node: want}, nil)
}

func sameNodeRecord(a, b *structs.Node) bool {
	if a.Name != b.Name || a.RPCAddr != b.RPCAddr || a.HTTPAddr != b.HTTPAddr || a.Version != b.Version {
		return false
	}
	// Placement reads exec from the record: a changed config re-registers.
	if !sameExec(a.Exec, b.Exec) {
		return false
	}
	ra, rb := a.Resources, b.Resources
	if ra.CPUCores != rb.CPUCores || ra.MemoryMB != rb.MemoryMB || ra.GPUSource != rb.GPUSource || len(ra.GPUs) != len(rb.GPUs) {
		return false
	}
	for i := range ra.GPUs {
		if ra.GPUs[i] != rb.GPUs[i] {
			return false
		}
	}
	return true
}

// Leave departs gracefully: a voter asks the leader to remove it from Raft first
// (so the remaining cluster keeps its quorum arithmetic right), then leaves gossip.
func (a *Agent) Leave() {
	if a.raft != nil && a.gossip != nil && len(a.gossip.alive()) > 1 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := a.removePeer(ctx, a.id); err != nil {
			a.logger.Warn("could not remove self from raft before leaving", "error", err)
		}
		cancel()
	}
	if a.gossip != nil {
		if err := a.gossip.leave(5 * time.Second); err != nil {
			a.logger.Warn("gossip leave failed", "error", err)
		}
	}
}

// Shutdown stops everything the agent owns. It is idempotent and waits.
func (a *Agent) Shutdown() error {
	a.shutdownOnce.Do(func() {
		if a.pushes != nil && a.raft != nil {
			// First, while Raft runs: what this node took of push sources
			// becomes dataset versions, not lost with the process.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			a.pushes.seal(ctx, 0)
			cancel()
		}
		a.cancel()
		var errs []error
		if a.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			errs = append(errs, a.http.Shutdown(ctx))
			cancel()
		} else if a.httpLn != nil {
			a.httpLn.Close()
		}
		a.stopGRPC()
		if a.gossip != nil {
			errs = append(errs, a.gossip.shutdown())
		}
		if a.actors != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			errs = append(errs, a.actors.Shutdown(ctx))
			cancel()
		}
		if a.serving != nil {
			a.serving.router.Close()
		}
		if a.raft != nil {
			errs = append(errs, a.raft.Shutdown().Error())
		}
		if a.raftTrans != nil {
			errs = append(errs, a.raftTrans.Close())
		}
		if a.trans != nil {
			errs = append(errs, a.trans.Shutdown())
		}
		a.wg.Wait()
		if a.xfer != nil {
			a.xfer.CloseAll()
		}
		if a.wal != nil {
			errs = append(errs, a.wal.Close())
		}
		if a.audit != nil {
			errs = append(errs, a.audit.Close()) // after HTTP: no request records any more
		}
		if a.redis != nil {
			errs = append(errs, a.redis.client.Close())
		}
		if a.monitoring != nil {
			errs = append(errs, a.monitoring.log.Close()) // after HTTP: nothing logs any more
		}
		if a.fsm != nil {
			errs = append(errs, a.fsm.Close())
		}
		a.shutdownErr = errors.Join(errs...)
	})
	return a.shutdownErr
}

// loadOrCreateNodeID returns the node ID persisted in the data dir.
func loadOrCreateNodeID(dir string) (string, error) {
	path := filepath.Join(dir, "node-id")
	if b, err := os.ReadFile(path); err == nil {
		id := strings.TrimSpace(string(b))
		if id != "" {
			return id, nil
		}
	} else if !os.IsNotExist(err) {
		return "", fmt.Errorf("node: read node id: %w", err)
	}
	var buf [16]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return "", err
	}
	h := hex.EncodeToString(buf[:])
	id := h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o640); err != nil {
		return "", fmt.Errorf("node: write node id: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("node: write node id: %w", err)
	}
	return id, nil
}

// loadHTTPTLS builds the HTTP API's server TLS config; with a client CA,
// clients must present a certificate it signed.
func loadHTTPTLS(f *HTTPTLSFiles) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("node: http.tls: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if f.ClientCAFile != "" {
		caPEM, err := os.ReadFile(f.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("node: http.tls client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("node: http.tls client_ca_file %s holds no PEM certificate", f.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// loadTLS builds a mutual-TLS config: every node presents its certificate and
// checks the peer's against the CA.
func loadTLS(f *TLSFiles) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("node: tls: %w", err)
	}
	caPEM, err := os.ReadFile(f.CAFile)
	if err != nil {
		return nil, fmt.Errorf("node: tls ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("node: tls ca_file %s holds no PEM certificate", f.CAFile)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
		// Both ends must be nodes, not just holders of a CA-signed certificate:
		// a CA that also signs HTTPS client certificates would otherwise let a
		// user past the ACLs straight onto the RPC port.
		VerifyPeerCertificate: verifyPeerIsNode,
	}, nil
}
