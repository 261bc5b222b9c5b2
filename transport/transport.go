package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/yamux"
)

// Protocol bytes: the first byte a client writes on a new connection (inside TLS
// when TLS is on) selects what the rest of the connection carries.
const (
	ProtoRaft byte = 1 // a hashicorp/raft NetworkTransport stream
	ProtoRPC  byte = 2 // a yamux session carrying msgpack RPC streams
)

const (
	// handshakeTimeout bounds the TLS handshake and the protocol byte on accepted
	// connections, so a silent client cannot hold a goroutine.
	handshakeTimeout = 10 * time.Second
	// maxAcceptBackoff caps the pause after a failed Accept (e.g. EMFILE).
	maxAcceptBackoff = time.Second
)

// Transport is one node's network endpoint: a single TCP listener shared by
// raft and RPC, a pool of outgoing RPC sessions, and the fault hooks.
type Transport struct {
	cfg      Config
	logger   hclog.Logger
	ln       net.Listener
	addr     string     // advertised host:port
	dialer   net.Dialer // LocalAddr pinned to the bind IP when it is specific
	yamuxCfg *yamux.Config
	faults   *Faults
	raft     *streamLayer

	// ctx is cancelled by Shutdown; it parents every handler context.
	ctx    context.Context
	cancel context.CancelFunc

	handlersMu sync.RWMutex
	handlers   map[string]Handler // guarded by handlersMu

	// mu is read-locked on every call (goFunc, the pooled-session fast path) and
	// write-locked only to change the fields it guards.
	mu      sync.RWMutex
	closed  bool                        // guarded by mu
	peers   map[string]*peer            // guarded by mu: outgoing sessions by address
	inbound map[*yamux.Session]struct{} // guarded by mu: accepted sessions

	wg           sync.WaitGroup // every goroutine started by goFunc
	shutdownOnce sync.Once
}

// New validates cfg, starts listening on cfg.BindAddr and accepting connections.
func New(cfg Config) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	logger = logger.Named("transport")

	ln, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen on %s: %w", cfg.BindAddr, err)
	}
	addr, err := advertiseAddr(cfg.AdvertiseAddr, ln.Addr())
	if err != nil {
		ln.Close()
		return nil, err
	}

	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		cfg:      cfg,
		logger:   logger,
		ln:       ln,
		addr:     addr,
		faults:   newFaults(),
		ctx:      ctx,
		cancel:   cancel,
		handlers: make(map[string]Handler),
		peers:    make(map[string]*peer),
		inbound:  make(map[*yamux.Session]struct{}),
	}
	t.dialer.Timeout = cfg.DialTimeout
	if host, _, _ := net.SplitHostPort(cfg.BindAddr); host != "" {
		// Dial from the bind IP: with several nodes on 127.0.0.x, peers must see
		// the sender's own address, or faults and logs name the wrong node.
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			t.dialer.LocalAddr = &net.TCPAddr{IP: ip}
		}
	}
	t.yamuxCfg = yamux.DefaultConfig()
	t.yamuxCfg.LogOutput = nil
	// yamux logs every broken connection as an error; a peer restarting is
	// routine, and Call reports the failures that matter to its caller.
	t.yamuxCfg.Logger = logger.Named("yamux").StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug})
	// A stream abandoned by a cancelled Call is half-closed; do not keep its
	// buffers for yamux's default five minutes.
	t.yamuxCfg.StreamCloseTimeout = 30 * time.Second
	t.raft = newStreamLayer(t)

	t.goFunc(t.acceptLoop)
	logger.Debug("listening", "bind_addr", ln.Addr().String(), "advertise_addr", addr, "tls", cfg.TLS != nil)
	return t, nil
}

func advertiseAddr(configured string, listen net.Addr) (string, error) {
	if configured != "" {
		return configured, nil
	}
	tcp, ok := listen.(*net.TCPAddr)
	if !ok {
		return listen.String(), nil
	}
	if !tcp.IP.IsUnspecified() {
		return tcp.String(), nil
	}
	ip, err := sockaddr.GetPrivateIP()
	if err != nil || ip == "" {
		return "", fmt.Errorf("%w: bind address %s is unspecified and no private IP was found; set advertise_addr", ErrInvalidConfig, tcp)
	}
	return net.JoinHostPort(ip, strconv.Itoa(tcp.Port)), nil
}

// Addr returns the advertised host:port, the address peers dial.
func (t *Transport) Addr() string { return t.addr }

// Faults returns the fault hooks of this transport.
func (t *Transport) Faults() *Faults { return t.faults }

// Shutdown closes the listener, the raft stream layer, every session and
// connection, cancels running handlers, and waits for the transport's
// goroutines. It is idempotent; concurrent calls all wait. Handlers must honour
// their context, or Shutdown waits for them.
func (t *Transport) Shutdown() error {
	t.shutdownOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		var sessions []*yamux.Session
		for _, p := range t.peers {
			if p.sess != nil {
				sessions = append(sessions, p.sess)
			}
		}
		for s := range t.inbound {
			sessions = append(sessions, s)
		}
		t.mu.Unlock()

		t.cancel()
		t.ln.Close()
		t.raft.Close()
		for _, s := range sessions {
			s.Close()
		}
		t.faults.closeAll()
		t.wg.Wait()
		t.logger.Debug("shut down")
	})
	return nil
}

// goFunc runs f on a goroutine owned by the transport, unless it is shut down.
func (t *Transport) goFunc(f func()) bool {
	// The read lock keeps Shutdown (which sets closed under the write lock) from
	// starting wg.Wait between the check and wg.Add.
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
	return true
}

func (t *Transport) isClosed() bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.closed
}

func (t *Transport) acceptLoop() {
	var backoff time.Duration
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			if t.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), maxAcceptBackoff)
			t.logger.Error("accept failed", "error", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-t.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		if t.faults.lookup(hostOf(conn.RemoteAddr())).Drop {
			conn.Close()
			continue
		}
		fc, err := t.faults.track(conn, "")
		if err != nil {
			return
		}
		if !t.goFunc(func() { t.serveConn(fc) }) {
			fc.Close()
			return
		}
	}
}

// serveConn completes TLS, reads the protocol byte and hands the connection to
// raft or to the RPC server.
func (t *Transport) serveConn(raw *faultConn) {
	var conn net.Conn = raw
	_ = raw.SetDeadline(time.Now().Add(handshakeTimeout))
	if t.cfg.TLS != nil {
		tc := tls.Server(raw, t.cfg.TLS)
		if err := tc.HandshakeContext(t.ctx); err != nil {
			t.logger.Warn("TLS handshake failed", "remote_addr", raw.RemoteAddr().String(), "error", err)
			raw.Close()
			return
		}
		conn = tc
	}
	var proto [1]byte
	if _, err := io.ReadFull(conn, proto[:]); err != nil {
		t.logger.Debug("no protocol byte", "remote_addr", raw.RemoteAddr().String(), "error", err)
		conn.Close()
		return
	}
	_ = raw.SetDeadline(time.Time{})

	switch proto[0] {
	case ProtoRaft:
		t.raft.handoff(conn)
	case ProtoRPC:
		t.serveSession(conn)
	default:
		t.logger.Warn("unknown protocol byte", "remote_addr", raw.RemoteAddr().String(), "byte", proto[0])
		conn.Close()
	}
}

// dial opens a connection to addr that has passed TLS and carries proto as its
// first byte. Failures wrap ErrUnreachable.
func (t *Transport) dial(ctx context.Context, addr string, proto byte) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, addr, err)
	}
	if t.isClosed() {
		return nil, ErrShutdown
	}
	if t.faults.lookup(normalizeHost(host)).Drop {
		return nil, fmt.Errorf("%w: %s: dropped by fault injection", ErrUnreachable, addr)
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	defer cancel()

	raw, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	fc, err := t.faults.track(raw, host)
	if err != nil {
		return nil, err
	}
	var conn net.Conn = fc
	if t.cfg.TLS != nil {
		cfg := t.cfg.TLS.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		tc := tls.Client(fc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			fc.Close()
			return nil, fmt.Errorf("%w: TLS handshake with %s: %w", ErrUnreachable, addr, err)
		}
		conn = tc
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetWriteDeadline(deadline)
	}
	if _, err := conn.Write([]byte{proto}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, addr, err)
	}
	_ = conn.SetWriteDeadline(time.Time{})
	return conn, nil
}
