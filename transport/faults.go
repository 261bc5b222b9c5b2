package transport

import (
	"fmt"
	"maps"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is an injected network failure towards one host.
type Fault struct {
	// Drop makes dials to the host fail, closes connections accepted from it, and
	// closes the live connections to and from it (raft streams and RPC sessions).
	Drop bool
	// Delay is slept before each write to the host.
	Delay time.Duration
}

// Faults holds the fault rules of one Transport, keyed by remote host (an IP, or
// the host name as dialed), and the connections they apply to. Rules take effect
// on live connections: every connection is wrapped so that each Read and Write
// consults the current rules.
type Faults struct {
	// rules is an immutable map replaced on every change, so the per-Read/Write
	// lookup takes no lock.
	rules atomic.Pointer[map[string]Fault]

	mu     sync.Mutex
	conns  map[*faultConn]struct{} // guarded by mu: every live connection
	closed bool                    // guarded by mu: set by Transport.Shutdown
}

func newFaults() *Faults {
	f := &Faults{conns: make(map[*faultConn]struct{})}
	empty := map[string]Fault{}
	f.rules.Store(&empty)
	return f
}

// Set installs (or replaces) the fault for host. A host given as host:port is
// reduced to its host. With Drop, live connections to and from host are closed at
// once, so that reads blocked on them return too.
func (f *Faults) Set(host string, fault Fault) {
	host = normalizeHost(host)
	f.mu.Lock()
	next := maps.Clone(*f.rules.Load())
	next[host] = fault
	f.rules.Store(&next)
	var victims []*faultConn
	if fault.Drop {
		for c := range f.conns {
			if c.matches(host) {
				victims = append(victims, c)
			}
		}
	}
	f.mu.Unlock()
	for _, c := range victims {
		c.Close()
	}
}

// Clear removes the fault for host.
func (f *Faults) Clear(host string) {
	host = normalizeHost(host)
	f.mu.Lock()
	next := maps.Clone(*f.rules.Load())
	delete(next, host)
	f.rules.Store(&next)
	f.mu.Unlock()
}

// ClearAll removes every fault.
func (f *Faults) ClearAll() {
	f.mu.Lock()
	empty := map[string]Fault{}
	f.rules.Store(&empty)
	f.mu.Unlock()
}

// Rules returns a copy of the installed faults, for display.
func (f *Faults) Rules() map[string]Fault {
	return maps.Clone(*f.rules.Load())
}

// lookup returns the fault that applies to any of hosts; Drop wins, the longest
// Delay wins.
func (f *Faults) lookup(hosts ...string) Fault {
	rules := *f.rules.Load()
	if len(rules) == 0 {
		return Fault{}
	}
	var out Fault
	for _, h := range hosts {
		if h == "" {
			continue
		}
		if r, ok := rules[h]; ok {
			out.Drop = out.Drop || r.Drop
			out.Delay = max(out.Delay, r.Delay)
		}
	}
	return out
}

// track wraps conn, matched by faults on its remote IP and on dialHost, the host
// as dialed (empty for accepted connections). It fails once the Transport is
// shut down, so that no connection escapes closeAll.
func (f *Faults) track(conn net.Conn, dialHost string) (*faultConn, error) {
	c := &faultConn{
		Conn:   conn,
		faults: f,
		closed: make(chan struct{}),
	}
	c.hosts[0] = hostOf(conn.RemoteAddr())
	if h := normalizeHost(dialHost); h != c.hosts[0] {
		c.hosts[1] = h
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		conn.Close()
		return nil, ErrShutdown
	}
	f.conns[c] = struct{}{}
	return c, nil
}

func (f *Faults) untrack(c *faultConn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

// closeAll closes every live connection and refuses new ones.
func (f *Faults) closeAll() {
	f.mu.Lock()
	f.closed = true
	conns := make([]*faultConn, 0, len(f.conns))
	for c := range f.conns {
		conns = append(conns, c)
	}
	f.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// faultConn is the raw TCP connection under TLS and yamux, so that faults act on
// bytes on the wire whatever runs above.
type faultConn struct {
	net.Conn
	faults    *Faults
	hosts     [2]string // remote IP; dialed host name when it differs
	closeOnce sync.Once
	closed    chan struct{}
}

func (c *faultConn) matches(host string) bool {
	return host != "" && (c.hosts[0] == host || c.hosts[1] == host)
}

func (c *faultConn) Read(b []byte) (int, error) {
	if c.faults.lookup(c.hosts[0], c.hosts[1]).Drop {
		c.Close()
		return 0, c.dropErr()
	}
	return c.Conn.Read(b)
}

func (c *faultConn) Write(b []byte) (int, error) {
	f := c.faults.lookup(c.hosts[0], c.hosts[1])
	if f.Drop {
		c.Close()
		return 0, c.dropErr()
	}
	if f.Delay > 0 {
		timer := time.NewTimer(f.Delay)
		select {
		case <-timer.C:
		case <-c.closed:
			timer.Stop()
			return 0, net.ErrClosed
		}
	}
	return c.Conn.Write(b)
}

func (c *faultConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		close(c.closed)
		err = c.Conn.Close()
		c.faults.untrack(c)
	})
	return err
}

func (c *faultConn) dropErr() error {
	return fmt.Errorf("transport: connection to %s dropped by fault injection: %w", c.RemoteAddr(), net.ErrClosed)
}

// normalizeHost strips a port and brackets and canonicalizes IPs, so "::1",
// "[::1]:7071" and "0:0::1" name the same host.
func normalizeHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if ip := net.ParseIP(host); ip != nil {
		return ip.String()
	}
	return strings.ToLower(host)
}

func hostOf(addr net.Addr) string {
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	if addr == nil {
		return ""
	}
	return normalizeHost(addr.String())
}
